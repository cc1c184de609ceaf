#!/usr/bin/env bash
# A cached tools/call through the modern front door (MCP 2026-07-28: no session, `_meta`
# and mirrored headers on every request) against the legacy one (an MCP session), in the
# same run: a private redis-server and one worker fronting the demo server, stopped on exit.
#
#   bench/modern.sh
#
# Knobs: MODERN_CONCURRENCY=4, MODERN_SECS=10, MODERN_ROUNDS=2 (legacy and modern
# alternate, so drift hits both). The tool list is fetched first, so the demo server's
# `echo` is cacheable from the first call; each scenario's first call per task is its only
# miss. The per-principal rate limit is off (one token drives the whole load). Prints the
# bench's JSON line per run.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
CONC=${MODERN_CONCURRENCY:-4}
SECS=${MODERN_SECS:-10}
ROUNDS=${MODERN_ROUNDS:-2}
REDIS_PORT=$(port)
PORT=$(port)
start_redis "$REDIS_PORT"

env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn \
    SWITCHBOARD_LISTEN="127.0.0.1:$PORT" SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    SWITCHBOARD_SECRET_KEY="$(head -c32 /dev/urandom | base64)" SWITCHBOARD_AUTH_STATIC_TOKENS=demo \
    SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0 \
    "$SB" serve >"$TMP/worker.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# The tool list, so the cache policy knows `echo`'s annotations before the first call.
curl -fs "http://127.0.0.1:$PORT/mcp" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'authorization: Bearer demo' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' \
    >/dev/null

for _ in $(seq "$ROUNDS"); do
    for scenario in mcp mcp-modern; do
        "$SB" bench --url "http://127.0.0.1:$PORT" --scenario "$scenario" -c "$CONC" -d "${SECS}s" --json
    done
done
