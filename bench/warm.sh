#!/usr/bin/env bash
# warm.sh: what spawn-ahead buys a user. Calls arrive one at a time with a pause between
# them (an interactive user, not a closed loop), so a warm pool has time to refill; the
# same paced calls go to a switchboard worker without spawn-ahead, one with
# `prespawn = 1`, and supergateway 4.0.0 (stateless), in front of server-everything.
#
# usage: bench/warm.sh   (after `cargo build --release` and one run of bench/compare.sh,
#                         which installs supergateway and server-everything)
# Knobs: WARM_CALLS=20 (calls per gateway), WARM_PAUSE=1 (seconds between calls).
# Prints a markdown table; loopback only; everything started here is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SB=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
CALLS=${WARM_CALLS:-20}
PAUSE=${WARM_PAUSE:-1}
NPM=$(ls -d "$ROOT"/target/bench-cache/npm-supergateway-* 2>/dev/null | head -n1)
[[ -x $SB && -n $NPM ]] || { echo "build first and run bench/compare.sh once (installs the peer)" >&2; exit 1; }
NODE=$(command -v node)
EVERYTHING="$NPM/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
SG="$NPM/node_modules/supergateway/dist/index.js"
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# paced URL SCENARIO: CALLS single calls PAUSE seconds apart; prints the median and p90 in ms.
paced() {
  local url=$1 scenario=$2 out=()
  for _ in $(seq "$CALLS"); do
    sleep "$PAUSE"
    out+=("$("$SB" bench --url "$url" --scenario "$scenario" -n 1 -d 30s --tool echo \
      --arguments '{"message":"hi"}' --token demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["p50_ms"])')")
  done
  printf '%s\n' "${out[@]}" | python3 -c 'import sys,statistics as s; v=sorted(float(x) for x in sys.stdin); print(f"{s.median(v):.1f} | {v[int(len(v)*0.9)-1]:.1f}")'
}

cold=$(port); warm=$(port); peer=$(port)
SWITCHBOARD_LISTEN=127.0.0.1:$cold SWITCHBOARD_MCP_COMMAND="$NODE $EVERYTHING stdio" "$SB" serve 2>"$TMP/cold.log" &
pids+=($!)
cat > "$TMP/warm.toml" <<TOML
[servers.default]
command = ["$NODE", "$EVERYTHING", "stdio"]
prespawn = 1
TOML
SWITCHBOARD_LISTEN=127.0.0.1:$warm "$SB" --config "$TMP/warm.toml" serve 2>"$TMP/warm.log" &
pids+=($!)
NODE_OPTIONS="--require $ROOT/bench/loopback.cjs" "$NODE" "$SG" --stdio "$NODE $EVERYTHING stdio" \
  --outputTransport streamableHttp --port "$peer" --logLevel none >/dev/null 2>&1 &
pids+=($!)
wait_port "$cold"; wait_port "$warm"; wait_port "$peer"
sleep 2 # let the warm pool fill

echo "| gateway (server-everything echo, one call every ${PAUSE}s, $CALLS calls) | p50 ms | p90 ms |"
echo "|---|---|---|"
echo "| supergateway 4.0.0 stateless (mcp) | $(paced "http://127.0.0.1:$peer/mcp" mcp) |"
echo "| switchboard, no spawn-ahead (call, uncached) | $(paced "http://127.0.0.1:$cold" call) |"
echo "| switchboard, prespawn = 1 (call, uncached) | $(paced "http://127.0.0.1:$warm" call) |"
