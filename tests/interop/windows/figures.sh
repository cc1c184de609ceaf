#!/usr/bin/env bash
# Figures for the Windows bridge, not assertions: the sizes of the Linux and Windows
# release binaries; bridge start -> initialize answered (median of 20 launches) and
# the p50 a tools/call `echo` adds over a direct POST /call-tool (200 calls each,
# cached and uncached), for the Linux bridge and for the Windows bridge under Wine,
# in one run against the same workers (bridge_checks.py's `figures` check, twice).
#
#   tests/interop/windows/figures.sh
#
# Same needs and overrides as run.sh (it builds the .exe the same way).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"
build_windows >/dev/null || { echo "building the Windows binary failed" >&2; exit 1; }

mkdir -p "$INTEROP_DIR/runs"
STACK=$(mktemp -d "$INTEROP_DIR/runs/figures.XXXXXX")
export STACK PYTHON
mkdir -p "$STACK/bin" "$STACK/logs"
cp "$SWITCHBOARD_BIN" "$STACK/bin/switchboard"
install_exe "$STACK/bin"
trap 'bash "$here/../bridge/stack.sh" down; wine_stop; rm -rf "$STACK"' EXIT
bash "$here/../bridge/stack.sh" up || exit 1

echo "size: Linux $(stat -c %s "$SWITCHBOARD_BIN") bytes (x86_64-unknown-linux-gnu), Windows $(stat -c %s "$EXE") bytes ($TARGET)"
for which in linux windows; do
    cmd="$STACK/bin/switchboard bridge"
    if [ $which = windows ]; then
        cmd="$WINE $STACK/bin/switchboard.exe bridge"
        "$WINE" "$STACK/bin/switchboard.exe" --version >/dev/null # Wine's own start-up (wineserver) off the clock
    fi
    SWITCHBOARD_BRIDGE_CMD=$cmd "$PYTHON" "$here/../bridge/bridge_checks.py" figures | sed "s/^/$which: /"
done
