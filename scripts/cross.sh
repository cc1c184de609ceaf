#!/usr/bin/env bash
# The targets built here besides Linux: their toolchains, and cargo for one of them.
#
#   scripts/cross.sh install windows        the rust target x86_64-pc-windows-gnu and
#                                           Debian's gcc-mingw-w64-x86-64 (C compiler, linker)
#   scripts/cross.sh install wine           Debian's wine64 (runs the Windows binary in tests)
#   scripts/cross.sh install macos          the rust targets aarch64/x86_64-apple-darwin, and
#                                           zig (PyPI's ziglang) with cargo-zigbuild (PyPI) in
#                                           a venv, target/interop/zig (ZIG_VENV)
#   scripts/cross.sh cargo TARGET ARGS...   `cargo ARGS --target TARGET`, with the C compiler
#                                           for TARGET set (zig, through scripts/zig/, for macOS)
#   scripts/cross.sh zigbuild TARGET ARGS...  the same through cargo-zigbuild, which also
#                                           links (macOS binaries)
#
# Each install is skipped when what it installs is present (Debian packages through
# scripts/apt-install.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ZIG_VENV=${ZIG_VENV:-$root/target/interop/zig}
ZIG_PACKAGES=(ziglang==0.17.0 cargo-zigbuild==0.24.0)
WINE=/usr/lib/wine/wine64

rust_targets() { # TARGET...: rustup target add for those not installed
    local have missing=() t
    have=$(rustup target list --installed)
    for t in "$@"; do grep -qx "$t" <<<"$have" || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] || rustup target add "${missing[@]}"
}

install() {
    case "$1" in
    windows)
        rust_targets x86_64-pc-windows-gnu
        command -v x86_64-w64-mingw32-gcc >/dev/null || bash "$root/scripts/apt-install.sh" gcc-mingw-w64-x86-64
        ;;
    wine)
        [ -x "$WINE" ] || bash "$root/scripts/apt-install.sh" wine64
        ;;
    macos)
        rust_targets aarch64-apple-darwin x86_64-apple-darwin
        local want=${ZIG_PACKAGES[*]}
        if [ "$(cat "$ZIG_VENV/.installed" 2>/dev/null)" != "$want" ]; then
            echo "creating $ZIG_VENV with $want"
            rm -rf "$ZIG_VENV"
            python3 -m venv "$ZIG_VENV" &&
                "$ZIG_VENV/bin/pip" install --quiet --disable-pip-version-check "${ZIG_PACKAGES[@]}" &&
                echo "$want" >"$ZIG_VENV/.installed"
        fi
        ;;
    *)
        echo "install what? windows, wine or macos" >&2
        return 2
        ;;
    esac
}

# target_env TARGET: the C compiler and archiver cc-rs uses for TARGET (mingw's
# x86_64-w64-mingw32-gcc is found by name for Windows; Linux needs nothing).
target_env() {
    case "$1" in
    aarch64-apple-darwin | x86_64-apple-darwin)
        local var=${1//-/_} arch=${1%%-*}
        export "CC_$var=$root/scripts/zig/cc-$arch-macos" "AR_$var=$root/scripts/zig/ar"
        ;;
    esac
}

case "${1:-}" in
install)
    shift
    for what in "$@"; do install "$what"; done
    ;;
cargo)
    target=$2 command=$3
    shift 3
    target_env "$target"
    exec cargo "$command" --target "$target" "$@"
    ;;
zigbuild)
    target=$2
    shift 2
    # cargo-zigbuild finds zig as `python3 -m ziglang` with the venv first on PATH.
    export PATH="$ZIG_VENV/bin:$PATH"
    exec "$ZIG_VENV/bin/cargo-zigbuild" zigbuild --target "$target" "$@"
    ;;
*)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
