#!/usr/bin/env bash
# Release archives of the binary for every target this machine can link, with their
# checksums, into target/dist/:
#
#   scripts/dist.sh [TARGET...]
#
#   switchboard-<version>-x86_64-unknown-linux-gnu.tar.gz   (the native release build)
#   switchboard-<version>-x86_64-pc-windows-gnu.zip         (mingw-w64 cross build)
#   switchboard-<version>-<mac target>.tar.gz               (cargo-zigbuild), see below
#   SHA256SUMS                                              (sha256sum -c SHA256SUMS)
#
# Each archive holds one folder, switchboard-<version>-<target>/, with the binary and
# README.md. Default targets: x86_64-unknown-linux-gnu and x86_64-pc-windows-gnu, plus
# aarch64-apple-darwin and x86_64-apple-darwin when DIST_MACOS=1. Toolchains come from
# scripts/cross.sh (installed when missing). Exits non-zero if a target failed; the
# archives of the others are still written.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
dist=$root/target/dist
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(x86_64-unknown-linux-gnu x86_64-pc-windows-gnu)
    [ "${DIST_MACOS:-0}" = 1 ] && targets+=(aarch64-apple-darwin x86_64-apple-darwin)
fi
# Archives that do not depend on when or by whom they were built. Not exported: build
# scripts that watch SOURCE_DATE_EPOCH would rebuild the whole tree.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}

# build TARGET: the release binary's path on stdout.
build() {
    case "$1" in
    x86_64-unknown-linux-gnu)
        [ "$(uname -sm)" = "Linux x86_64" ] || { echo "not an x86_64 Linux host" >&2; return 1; }
        cargo build --release --locked --bin switchboard >&2 && echo "$root/target/release/switchboard"
        ;;
    x86_64-pc-windows-gnu)
        bash scripts/cross.sh install windows >&2 &&
            bash scripts/cross.sh cargo "$1" build --release --locked --bin switchboard >&2 &&
            echo "$root/target/$1/release/switchboard.exe"
        ;;
    *-apple-darwin)
        bash scripts/cross.sh install macos >&2 &&
            bash scripts/cross.sh zigbuild "$1" --release --locked --bin switchboard >&2 &&
            echo "$root/target/$1/release/switchboard"
        ;;
    *)
        echo "no recipe for $1" >&2
        return 1
        ;;
    esac
}

# package TARGET BINARY: the archive of TARGET in $dist.
package() {
    local target=$1 bin=$2 name="switchboard-$version-$1" stage
    stage=$(mktemp -d)
    mkdir "$stage/$name" && cp "$bin" README.md "$stage/$name/" &&
        touch -d "@$epoch" "$stage/$name" "$stage/$name"/* || return 1
    case "$target" in
    *-windows-*)
        rm -f "$dist/$name.zip"
        (cd "$stage" && python3 -m zipfile -c "$dist/$name.zip" "$name/")
        ;;
    *)
        tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
            -czf "$dist/$name.tar.gz" "$name"
        ;;
    esac
    local rc=$?
    rm -rf "$stage"
    return $rc
}

mkdir -p "$dist"
failed=()
for target in "${targets[@]}"; do
    echo "==> $target"
    if bin=$(build "$target") && package "$target" "$bin"; then
        echo "    $(stat -c %s "$bin") bytes"
    else
        echo "    FAILED" >&2
        failed+=("$target")
    fi
done
(cd "$dist" && rm -f SHA256SUMS && sha256sum -- switchboard-"$version"-* >SHA256SUMS 2>/dev/null)
echo "== $dist"
(cd "$dist" && ls -l -- switchboard-"$version"-* SHA256SUMS 2>/dev/null | awk '{ print $5, $9 }')
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
