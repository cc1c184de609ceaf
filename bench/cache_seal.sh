#!/usr/bin/env bash
# cache_seal.sh: what sealing cached results at rest (`cache_seal`) costs per cache hit.
# One private redis-server; one worker at a time on it, alternately with
# SWITCHBOARD_CACHE_SEAL=true and =false, `switchboard bench --scenario call-cached`
# against it (the demo server's echo; every call after the first is a hit), in the
# same run, ROUNDS times each, so the two settings share the machine's load.
#
# usage: bench/cache_seal.sh    (needs target/release/switchboard, redis-server, redis-cli, python3)
# Knobs: SEAL_DURATION=10s SEAL_CONCURRENCY=8 SEAL_ROUNDS=2
#        SEAL_ARGUMENTS='{"text":"hello"}' (a larger text, a larger entry)
# Prints one markdown row per run; raw JSON and logs go to target/bench-results/seal-<UTC>/.
# Everything listens on 127.0.0.1; every process started here is stopped by its pid.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$HERE/.." && pwd)
PY=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
# shellcheck source=SCRIPTDIR/../tests/interop/lib.sh
source "$root/tests/interop/lib.sh"
STACK=$root/target/bench-results/seal-$(date -u +%Y%m%dT%H%M%SZ)
SB=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
DURATION=${SEAL_DURATION:-10s}
CONCURRENCY=${SEAL_CONCURRENCY:-8}
ROUNDS=${SEAL_ROUNDS:-2}
DEFAULT_ARGUMENTS='{"text":"hello"}'
ARGUMENTS=${SEAL_ARGUMENTS:-$DEFAULT_ARGUMENTS}
KEY=$(head -c32 /dev/urandom | base64)
WORKER_RUST_LOG=warn
mkdir -p "$STACK/logs" "$STACK/points" || exit 1
trap 'for name in "${!pids[@]}"; do stop "$name"; done' EXIT

read -r redis_port worker_port <<<"$(free_ports 2)"
start_redis "$redis_port" || exit 1
echo "| round | cache_seal | calls/s c=$CONCURRENCY | p50 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---|"
for round in $(seq "$ROUNDS"); do
    for seal in true false; do
        start_worker worker "$worker_port" "$redis_port" "$KEY" \
            SWITCHBOARD_AUTH_STATIC_TOKENS=demo SWITCHBOARD_CACHE_SEAL="$seal"
        wait_worker worker "$worker_port" || exit 1
        point="$STACK/points/$round-$seal.json"
        "$SB" bench --url "http://127.0.0.1:$worker_port" --scenario call-cached \
            -c "$CONCURRENCY" -d "$DURATION" --arguments "$ARGUMENTS" --json >"$point" || exit 1
        "$PY" - "$point" "$round" "$seal" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['calls_per_sec']:,.1f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r.get('errors', 0)} |")
PYEOF
        stop worker
    done
done
