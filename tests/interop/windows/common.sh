# shellcheck shell=bash disable=SC2154 # root, here: the caller sets them
# Sourced by run.sh and figures.sh: the Windows binary, built and made runnable under
# Wine. Sets the paths the callers share (SWITCHBOARD_BIN, the Linux binary the workers
# run; INTEROP_DIR; PYTHON, a python with the official SDK `mcp`), each overridable as
# in tests/interop/bridge/run.sh. build_windows installs what is missing (scripts/cross.sh install windows wine),
# cross-builds the release binary for x86_64-pc-windows-gnu (one build; a no-op when
# it is up to date) and the ProcessPrng shim DLL (bcp.c), and sets:
#   EXE     target/x86_64-pc-windows-gnu/release/switchboard.exe
#   DLL     the shim, target/x86_64-pc-windows-gnu/release/wine/bcryptprimitives.dll
#   WINE    Debian's wine64
# and exports WINEPREFIX (a private prefix, target/interop/wineprefix, kept between runs:
# creating it takes seconds) and WINEDEBUG=-all (Wine's fixme lines off stderr).
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
PYTHON=${INTEROP_PYTHON:-$INTEROP_DIR/venv/bin/python}
TARGET=x86_64-pc-windows-gnu
WINE=/usr/lib/wine/wine64
export WINEPREFIX=${WINEPREFIX:-$INTEROP_DIR/wineprefix} WINEDEBUG=${WINEDEBUG:--all}

build_windows() {
    bash "$root/scripts/cross.sh" install windows wine || return 1
    local out=$root/target/$TARGET/release
    EXE=$out/switchboard.exe
    DLL=$out/wine/bcryptprimitives.dll
    (cd "$root" && nice -n 10 bash scripts/cross.sh cargo "$TARGET" build --release --locked --bin switchboard) ||
        return 1
    if [ ! -e "$DLL" ] || [ "$here/bcp.c" -nt "$DLL" ]; then
        mkdir -p "$out/wine" && x86_64-w64-mingw32-gcc -shared -O2 -o "$DLL" "$here/bcp.c" -ladvapi32 || return 1
    fi
}

# install_exe DIR: EXE and the shim DLL next to it in DIR (Windows looks for DLLs in the
# folder of the .exe first).
install_exe() {
    cp "$EXE" "$DLL" "$1/"
}

# wine_stop: ends the wineserver of WINEPREFIX and every Wine process of the prefix
# (the bridges exit on stdin EOF; this catches what the prefix itself started).
wine_stop() {
    "$(dirname "$WINE")/wineserver" -k 2>/dev/null || true
}
