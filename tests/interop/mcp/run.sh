#!/usr/bin/env bash
# Real MCP clients against /mcp of the whole stack as it is deployed: a private
# redis-server, workers sharing it, and nginx from deploy/nginx.conf balancing /mcp
# round-robin over them (so consecutive requests of one session reach different
# workers). Two pairs of workers share the redis-server: a, b front the built-in demo
# server behind nginx-demo; c, d front @modelcontextprotocol/server-everything
# (stdio, system node) behind nginx-everything.
#
#   tests/interop/mcp/run.sh      (scripts/test.sh runs it after cargo build --release)
#
# Checks (one PASS/FAIL line each; exit status non-zero on any FAIL):
#   1. the official Python SDK `mcp` 2.x (target/interop/venv) in auto mode (probes
#      server/discover and lands in the modern era), pinned to 2026-07-28 (no probe, no
#      handshake) and in legacy mode: tools/list (the demo's 5 tools), survey_summary
#      (structured nps 25.7); in legacy mode initialize and close (DELETE; the session's
#      switchboard:{*} keys are gone from Redis);
#   2. the same with `mcp` 1.x (`streamablehttp_client`; target/interop/venv1, created
#      with mcp==1.30.0 when missing);
#   3. server-everything through /mcp with the 2.x SDK: echo, get-sum, and
#      trigger-long-running-operation's progress notifications reaching the client;
#   4. sampling: trigger-sampling-request answered by the SDK's sampling_callback
#      through nginx round-robin, and deterministically with raw HTTP (the call on
#      worker c, the client's answer POSTed to worker d, routed through Redis); and the
#      2.x SDK pinned to 2026-07-28: the same sampling as an InputRequiredResult answered
#      by the callback through nginx, then the call on worker c and its retry on worker
#      d, with a forged requestState, another principal's and a spent one refused;
#   5. mcp-remote (installed into target/interop/npm when missing) as a stdio bridge,
#      driven by the 2.x SDK: tools/list (and an echo) through /mcp;
#   6. figures, not assertions: p50 of tools/call `echo` through /mcp vs POST
#      /call-tool uncached and cached (`switchboard bench`, 200 calls, concurrency 1,
#      worker a directly; /mcp repeats identical arguments, so it measures cache hits);
#   and afterwards no worker, demo-server, server-everything or nginx of this run
#   remains (stopped by pid in the EXIT trap).
#
# Needs the release binary, redis-server, nginx, node and target/interop/ as
# scripts/test.sh installs it. Overrides: SWITCHBOARD_BIN, INTEROP_DIR. Logs are kept
# in target/interop/runs/mcp.* when something failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
VENV=$INTEROP_DIR/venv
VENV1=$INTEROP_DIR/venv1
NPM_DIR=$INTEROP_DIR/npm
EVERYTHING_JS=$NPM_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js
MCP_REMOTE_VERSION=0.15.1
MCP_REMOTE_JS=$NPM_DIR/node_modules/mcp-remote/dist/proxy.js
MCP1_VERSION=1.30.0
SAMPLING_ROUNDS=${SAMPLING_ROUNDS:-6}
PY=python3
started_at=$EPOCHREALTIME

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for f in "$SWITCHBOARD_BIN" "$VENV/bin/python" "$EVERYTHING_JS" "$nginx_bin"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it installs target/interop, nginx)" >&2; exit 1; }
done
for c in redis-server redis-cli node npm; do
    command -v "$c" >/dev/null || { echo "$c not installed" >&2; exit 1; }
done

# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"

# --- installs this test adds to scripts/test.sh's -------------------------------------

if [ "$(cat "$VENV1/.installed" 2>/dev/null)" != "mcp==$MCP1_VERSION" ] || [ ! -x "$VENV1/bin/python" ]; then
    echo "creating $VENV1 with mcp==$MCP1_VERSION"
    rm -rf "$VENV1"
    python3 -m venv "$VENV1" &&
        "$VENV1/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP1_VERSION" </dev/null &&
        echo "mcp==$MCP1_VERSION" >"$VENV1/.installed" ||
        { echo "FAIL installing mcp==$MCP1_VERSION into $VENV1" >&2; exit 1; }
fi
npm_pin "$NPM_DIR" mcp-remote "$MCP_REMOTE_VERSION" || exit 1

new_stack mcp mcp-auth || exit 1
# server-everything children carry $STACK as an extra argument (index.js only reads
# the first one, "stdio"): the leftover check's marker for them.
EVERYTHING_COMMAND="node $EVERYTHING_JS stdio $STACK"

status=0
fail() { echo "FAIL $*"; status=1; }

cleanup() {
    trap - EXIT INT TERM
    for name in nginx-demo nginx-everything worker-a worker-b worker-c worker-d redis; do stop "$name"; done
    check_leftovers "no worker, demo-server, server-everything, mcp-remote or nginx of this run remains" \
        "$STACK" "127.0.0.1:${NGINX_DEMO_PORT:-none}/mcp"
    finish "mcp interop" "logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the stack -------------------------------------------------------------------

read -r REDIS_PORT A_PORT B_PORT C_PORT D_PORT NGINX_DEMO_PORT NGINX_EVERYTHING_PORT < <(free_ports 7)
SECRET_KEY=$(head -c32 /dev/urandom | base64)

start_redis "$REDIS_PORT" || { status=1; exit 1; }
# Without SWITCHBOARD_MCP_COMMAND a worker fronts the built-in demo server.
start_worker worker-a "$A_PORT" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo
start_worker worker-b "$B_PORT" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo
# Two tokens on the server-everything pair: "other" is the second principal whose retry of
# demo's requestState must be refused.
start_worker worker-c "$C_PORT" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo,other \
    SWITCHBOARD_MCP_COMMAND="$EVERYTHING_COMMAND"
start_worker worker-d "$D_PORT" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo,other \
    SWITCHBOARD_MCP_COMMAND="$EVERYTHING_COMMAND"
for w in "worker-a $A_PORT" "worker-b $B_PORT" "worker-c $C_PORT" "worker-d $D_PORT"; do
    # shellcheck disable=SC2086
    wait_worker $w || { status=1; exit 1; }
done
start_nginx nginx-demo "$NGINX_DEMO_PORT" "$A_PORT" "$B_PORT" || { status=1; exit 1; }
start_nginx nginx-everything "$NGINX_EVERYTHING_PORT" "$C_PORT" "$D_PORT" || { status=1; exit 1; }
DEMO_URL=http://127.0.0.1:$NGINX_DEMO_PORT/mcp
EVERYTHING_URL=http://127.0.0.1:$NGINX_EVERYTHING_PORT/mcp
echo "stack: redis :$REDIS_PORT; demo workers :$A_PORT :$B_PORT behind nginx :$NGINX_DEMO_PORT;" \
    "server-everything workers :$C_PORT :$D_PORT behind nginx :$NGINX_EVERYTHING_PORT; all on 127.0.0.1"

# py VENV_DIR ARGS...: checks.py under that venv, bounded in time; a crash or timeout
# without a FAIL line of its own still fails the run.
py_runs=0
py() {
    local venv=$1 rc err
    shift
    py_runs=$((py_runs + 1))
    err=$STACK/logs/checks-$py_runs-$1.err
    timeout 180 "$venv/bin/python" -W ignore "$here/checks.py" "$@" 2>"$err"
    rc=$?
    if [ $rc -ne 0 ]; then
        status=1
        [ $rc -eq 124 ] && echo "FAIL checks.py $1 timed out after 180 s"
        tail -15 "$err" | sed 's/^/   | /'
    fi
}

# --- 1, 2: the official Python SDK against the demo server -----------------------

py "$VENV" demo "$DEMO_URL" "$REDIS_PORT" auto
py "$VENV" demo "$DEMO_URL" "$REDIS_PORT" 2026-07-28
py "$VENV" demo "$DEMO_URL" "$REDIS_PORT" legacy
py "$VENV1" demo "$DEMO_URL" "$REDIS_PORT" v1

# --- 3, 4: server-everything: echo, get-sum, progress, sampling --------------------

py "$VENV" everything "$EVERYTHING_URL" "$SAMPLING_ROUNDS" "$REDIS_PORT"
py "$VENV" sampling-cross "http://127.0.0.1:$C_PORT/mcp" "http://127.0.0.1:$D_PORT/mcp"
py "$VENV" everything-modern "$EVERYTHING_URL" "http://127.0.0.1:$C_PORT/mcp" "http://127.0.0.1:$D_PORT/mcp" \
    "$SAMPLING_ROUNDS" "$REDIS_PORT"

# --- 5: mcp-remote ------------------------------------------------------------------

py "$VENV" remote "$MCP_REMOTE_JS" "$DEMO_URL" "$STACK/mcp-auth"

# Both demo workers served /mcp (nginx balanced over them).
for w in "worker-a $A_PORT" "worker-b $B_PORT" "worker-c $C_PORT" "worker-d $D_PORT"; do
    set -- $w
    counts=$(mcp_requests "$2") || counts=0
    read -r n _ <<<"$counts"
    if [ "${n:-0}" -gt 0 ]; then
        echo "PASS $1 served $n /mcp requests"
    else
        fail "$1 served no /mcp request (nginx did not balance over both workers)"
    fi
done

# --- 6: latency figures: /mcp vs /call-tool, worker a directly ---------------------

bench() { # SCENARIO: p50 in ms
    "$SB" bench --url "http://127.0.0.1:$A_PORT" --scenario "$1" -n 200 -d 60s -c 1 \
        --tool echo --arguments '{"text":"hi"}' --json 2>>"$STACK/logs/bench.err"
}
echo "latency (tools/call echo {\"text\":\"hi\"}, 200 calls, concurrency 1, worker a :$A_PORT directly):"
counters() { # worker a's result-cache hits and MCP server spawns
    http_get "http://127.0.0.1:$A_PORT/metrics" | awk '
        /^switchboard_cache_total\{/ && /op="hit"/ { hits += $NF }
        /^switchboard_mcp_spawns_total/ { spawns += $NF }
        END { print hits + 0, spawns + 0 }'
}
for scenario in mcp call call-cached; do
    read -r hits0 spawns0 < <(counters)
    out=$(bench "$scenario") || { fail "bench --scenario $scenario: $(tail -3 "$STACK/logs/bench.err")"; continue; }
    read -r hits1 spawns1 < <(counters)
    echo "$out" >"$STACK/logs/bench-$scenario.json"
    "$PY" - "$scenario" "$out" "$((hits1 - hits0))" "$((spawns1 - spawns0))" <<'EOF'
import json, sys
scenario, d, hits, spawns = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
route = {"mcp": "POST /mcp tools/call", "call": "POST /call-tool (cache: false)", "call-cached": "POST /call-tool (cache hits)"}[scenario]
print(f"   {route:30s} p50 {d.get('p50_ms')} ms   (p90 {d.get('p90_ms')}, p99 {d.get('p99_ms')}, "
      f"ok {d.get('ok')}, errors {d.get('errors')}; worker: {hits} result-cache hits, {spawns} MCP server spawns)")
EOF
done
echo "   command: switchboard bench --url http://127.0.0.1:PORT --scenario mcp|call|call-cached -n 200 -d 60s -c 1 --tool echo --arguments '{\"text\":\"hi\"}' --json"
