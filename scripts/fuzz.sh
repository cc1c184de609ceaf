#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60; scripts/test.sh runs it with 30)
#
# 1. Installs cargo-fuzz (pinned, --locked) when it is missing or another version; needs
#    the `nightly` rustup toolchain (installed with the minimal profile when missing).
# 2. Checks the fuzz crate's formatting, then builds all targets once: `cargo +nightly fuzz
#    build` (optimised, debug assertions and overflow checks on), into
#    target/fuzz/build-<sanitizer>. No sanitizer by default: the crate forbids unsafe code,
#    and without AddressSanitizer a target runs 3 to 7 times as many inputs and builds
#    with about 40% less CPU; FUZZ_SANITIZER=address for a deeper run.
# 3. Runs each target for SECONDS_PER_TARGET on a corpus under target/fuzz/corpus/<target>,
#    seeded from the checked-in fuzz/seeds/<target>/ (the repository is never written),
#    with bounded memory (-rss_limit_mb) and input size (-max_len), and the tokens of
#    fuzz/dicts/<target>.dict when there is one.
# Prints the executions of each target and the total. Exits 1 if any target crashed
# (a panic, a failed assertion, a hang past -timeout, or memory past the limit), after
# printing the crashing input's path (under target/fuzz/artifacts/) and how to replay it;
# exits 2 if it could not build or run at all.
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (none, address, …:
# cargo fuzz's -s; default none), FUZZ_BUILD_FLAGS (extra flags for `cargo fuzz build`),
# FUZZ_RSS_LIMIT_MB (default 1024), FUZZ_MAX_LEN (default 16384).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

CARGO_FUZZ_VERSION=0.13.2
TOOLCHAIN=nightly
SECONDS_PER_TARGET=${1:-60}
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-1024}
MAX_LEN=${FUZZ_MAX_LEN:-16384}
SANITIZER=${FUZZ_SANITIZER:-none}
OUT=$ROOT/target/fuzz
BUILD_DIR=$OUT/build-$SANITIZER

if ! [[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (a positive integer)" >&2
    exit 2
fi

# --- 1. tools -----------------------------------------------------------------

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "installing the $TOOLCHAIN toolchain (minimal profile)"
    rustup toolchain install "$TOOLCHAIN" --profile minimal || exit 2
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked || exit 2
fi

# --- 2. build -------------------------------------------------------------------

# The fuzz crate is a workspace of its own, so the root's `cargo fmt --check` skips it.
cargo fmt --manifest-path fuzz/Cargo.toml --check || exit 2
started=$EPOCHREALTIME
# shellcheck disable=SC2086 # FUZZ_BUILD_FLAGS is a list of flags
cargo "+$TOOLCHAIN" fuzz build -s "$SANITIZER" --target-dir "$BUILD_DIR" ${FUZZ_BUILD_FLAGS:-} || exit 2
build_secs=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
host=$(rustup run "$TOOLCHAIN" rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$BUILD_DIR/$host/release
read -ra targets <<<"${FUZZ_TARGETS:-$(cargo "+$TOOLCHAIN" fuzz list | tr '\n' ' ')}"
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets" >&2; exit 2; }

# --- 3. run ---------------------------------------------------------------------

# executions LOG: the number of inputs libFuzzer ran, from its final statistics (or, failing
# those, from its last status line, `#N ...`).
executions() {
    local n
    n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$1" | tail -n 1)
    [ -n "$n" ] || n=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$1" | tail -n 1)
    echo "${n:-0}"
}

rows=()
crashed=()
total=0
for target in "${targets[@]}"; do
    bin=$BIN_DIR/$target
    corpus=$OUT/corpus/$target
    artifacts=$OUT/artifacts/$target
    log=$OUT/logs/$target.log
    if [ ! -x "$bin" ]; then
        echo "no fuzz target binary $bin" >&2
        exit 2
    fi
    mkdir -p "$corpus" "$artifacts" "$OUT/logs"
    if [ -d "fuzz/seeds/$target" ]; then
        cp -p fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null
    fi
    dict=()
    [ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
    printf '\n--> %s (%ss)\n' "$target" "$SECONDS_PER_TARGET"
    "$bin" "$corpus" "${dict[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_LIMIT_MB" \
        -max_len="$MAX_LEN" \
        -timeout=10 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    status=$?
    runs=$(executions "$log")
    total=$((total + runs))
    if [ "$status" -eq 0 ]; then
        outcome=ok
    else
        outcome=CRASH
        crashed+=("$target")
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "$target crashed (exit $status); the end of its log ($log):"
        tail -n 40 "$log"
        echo "crashing input: ${input:-(none written; see the log)}"
        [ -n "$input" ] && echo "replay: $bin $input   (or: cargo +$TOOLCHAIN fuzz run $target $input)"
    fi
    rows+=("$(printf '%-18s %-6s %12s executions %10s/s  corpus %s' "$target" "$outcome" "$runs" \
        "$((runs / SECONDS_PER_TARGET))" "$(find "$corpus" -type f | wc -l)")")
done

printf '\n== fuzz: %ss per target, build %ss, %ss in all\n' "$SECONDS_PER_TARGET" "$build_secs" "$SECONDS"
printf '%s\n' "${rows[@]}"
echo "total: $total executions in ${#targets[@]} targets"
if [ ${#crashed[@]} -gt 0 ]; then
    echo "crashed: ${crashed[*]}"
    exit 1
fi
