#!/usr/bin/env bash
# modern_back.sh: what the modern era saves on the back door. Two workers in front of the
# same dual-era stdio server (mcp-server-time, PyPI), one with `protocol = "legacy"`
# (initialize + notifications/initialized + the call on every spawned child), one with
# `protocol = "modern"` (the call alone, with its _meta); uncached `switchboard bench
# --scenario call` (a fresh child behind every call), one client at a time, the two
# workers measured in alternating rounds so both see the same machine load.
#
# usage: bench/modern_back.sh   (after `cargo build --release`; mcp-server-time from
#                               target/interop/venv, as scripts/test.sh installs it)
# Knobs: MODERN_ROUNDS=3, MODERN_DURATION=10s, TIME_SERVER=<path of mcp-server-time>.
# Prints a markdown table (p50/p90 of each round, and the median p50 of all rounds).
# Loopback only; everything started here is stopped by pid.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
TIME_SERVER=${TIME_SERVER:-${INTEROP_DIR:-$ROOT/target/interop}/venv/bin/mcp-server-time}
ROUNDS=${MODERN_ROUNDS:-3}
DURATION=${MODERN_DURATION:-10s}
[[ -x $SB && -x $TIME_SERVER ]] || { echo "need $SB and $TIME_SERVER" >&2; exit 1; }

declare -A ports
for era in legacy modern; do
  ports[$era]=$(port)
  cat >"$TMP/$era.toml" <<TOML
[servers.default]
command = ["$TIME_SERVER", "--local-timezone", "UTC"]
protocol = "$era"
TOML
  SWITCHBOARD_LISTEN=127.0.0.1:${ports[$era]} "$SB" --config "$TMP/$era.toml" serve 2>"$TMP/$era.log" &
  pids+=($!)
done
for era in legacy modern; do wait_port "${ports[$era]}"; done

ARGS='{"source_timezone":"UTC","time":"12:00","target_timezone":"Asia/Tokyo"}'
run() { # era -> "p50 p90 calls errors"
  "$SB" bench --url "http://127.0.0.1:${ports[$1]}" --scenario call -c 1 -d "$DURATION" \
    --tool convert_time --arguments "$ARGS" --token demo --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["p50_ms"], r["p90_ms"], r["ok"], r["errors"])'
}
run legacy >/dev/null; run modern >/dev/null # warm-up: tool lists learnt, page cache hot

declare -A p50s
echo "| round | back door | p50 ms | p90 ms | calls | errors |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for era in legacy modern; do
    read -r p50 p90 ok errors < <(run "$era")
    p50s[$era]+="$p50 "
    echo "| $round | $era | $p50 | $p90 | $ok | $errors |"
  done
done
median() { python3 -c 'import sys,statistics as s; print(f"{s.median(float(x) for x in sys.argv[1:]):.1f}")' $1; }
legacy=$(median "${p50s[legacy]}"); modern=$(median "${p50s[modern]}")
echo
echo "median p50: legacy $legacy ms, modern $modern ms, saved $(python3 -c "print(f'{$legacy-$modern:.1f} ms ({($legacy-$modern)/$legacy*100:.0f}%)')")"
