#!/usr/bin/env bash
# The Windows binary as Claude Desktop on Windows runs it: `switchboard.exe bridge`,
# cross-built here for x86_64-pc-windows-gnu and run under Wine, against Linux workers
# (a private redis-server and two `switchboard serve` on free 127.0.0.1 ports, from
# tests/interop/bridge/stack.sh). The same checks as tests/interop/bridge, from
# bridge_checks.py, in both transports (--transport legacy, mcp): the official Python
# SDK's stdio client (initialize, tools/list, tools/call), the session wiped from
# Redis (invisible re-init), a gateway down (isError at once) and back (works), and
# malformed lines on raw stdio.
#
#   tests/interop/windows/run.sh      (scripts/test.sh runs it with the other suites)
#
# Installs what is missing (the rust target, Debian's mingw-w64 and wine64: see
# scripts/cross.sh) and builds the .exe (one release cross build) and the ProcessPrng
# shim DLL Wine 8 lacks (bcp.c). Needs the Linux release binary for the workers and
# target/interop/ as scripts/test.sh installs them; overrides: SWITCHBOARD_BIN,
# INTEROP_DIR, INTEROP_PYTHON. Everything it starts is stopped by pid (and the Wine
# prefix's wineserver with `wineserver -k`) on exit; it fails if a worker or bridge
# of the run is left behind. Logs are kept in target/interop/runs/windows.* on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"
PY=$PYTHON
started_at=$EPOCHREALTIME
for f in "$SWITCHBOARD_BIN" "$PYTHON"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it builds it and installs target/interop)" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 1; }

t0=$EPOCHREALTIME
build_windows || { echo "FAIL build: switchboard.exe for $TARGET and the shim DLL"; exit 1; }
echo "built $(basename "$EXE") ($(stat -c %s "$EXE") bytes) in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

mkdir -p "$INTEROP_DIR/runs"
STACK=$(mktemp -d "$INTEROP_DIR/runs/windows.XXXXXX")
export STACK PYTHON
mkdir -p "$STACK/bin" "$STACK/logs"
# Private copies: the workers are then the processes whose /proc/PID/exe is $SB, and
# the bridges those whose command line holds $STACK (the leftover check's marker).
cp "$SWITCHBOARD_BIN" "$STACK/bin/switchboard"
install_exe "$STACK/bin"
SB=$STACK/bin/switchboard
export SWITCHBOARD_BRIDGE_CMD="$WINE $STACK/bin/switchboard.exe bridge"

# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"

status=0
cleanup() {
    trap - EXIT INT TERM
    bash "$here/../bridge/stack.sh" down
    check_leftovers "no worker or Windows bridge of this run remains" "$STACK"
    wine_stop
    finish "windows interop" "logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The first start in a new prefix creates it (seconds); every later start is quick.
t0=$EPOCHREALTIME
if ! version=$("$WINE" "$STACK/bin/switchboard.exe" --version 2>"$STACK/logs/wine-first-start.log"); then
    echo "FAIL switchboard.exe --version under Wine"
    show_log "$STACK/logs/wine-first-start.log"
    status=1
    exit 1
fi
echo "wine: $("$WINE" --version), $version (first start $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)"

bash "$here/../bridge/stack.sh" up || { echo "FAIL start-up: redis-server and two workers"; status=1; exit 1; }

for transport in legacy mcp; do
    BRIDGE_TRANSPORT=$transport timeout 600 "$PYTHON" "$here/../bridge/bridge_checks.py" \
        sdk session-deleted gateway-down malformed || status=1
done
