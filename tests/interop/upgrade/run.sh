#!/usr/bin/env bash
# A rolling upgrade from the previous release to this build, and a rollback, under load,
# behind real nginx (deploy/README.md, "Rolling upgrades across versions").
#
#   tests/interop/upgrade/run.sh      (scripts/test.sh runs it after cargo build --release)
#
# The previous release is the commit named in tests/interop/upgrade/PREVIOUS (each
# release bumps it to itself). Its binary is built once from `git archive` of that commit
# and cached in target/upgrade/<commit>/switchboard; the build runs in
# target/upgrade-build, seeded with hard links of target/release, so only the workspace
# crate compiles again (dependency artifacts are reused).
#
# Steps, under a private redis-server and nginx (deploy/nginx.conf) over three workers:
#   1. all three workers run the previous release; sessions are created through nginx on
#      both doors (/init and /mcp initialize), half of them with state and a cached result;
#   2. 16 connections of calls start (client.py load: /call-tool echo and cached
#      survey_summary, PATCH /session, /mcp tools/call) and run to the end;
#   3. the workers are replaced one by one with this build (SIGTERM, drain, start, ready),
#      calls flowing on each mixed fleet; new sessions are created on the new fleet;
#   4. every session is served by each new worker directly;
#   5. one worker is rolled back to the previous release; every session, including those
#      the new workers wrote, is served by it and by a new worker directly;
# and then: 0 failed calls, and no worker, MCP server or nginx of this run remains.
# Figures: calls during the upgrade and the rollback, failed calls, wall time.
#
# Needs redis-server, nginx, git, cargo (for the first build of the previous release),
# python3. Overrides: SWITCHBOARD_BIN (this build), UPGRADE_FROM (a commit instead of
# PREVIOUS), INTEROP_DIR. Logs are kept in target/interop/runs/upgrade.* on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
PREVIOUS=${UPGRADE_FROM:-$(tr -d '[:space:]' <"$here/PREVIOUS")}
CONCURRENCY=16
SESSIONS_PER_DOOR=8
PY=python3
started_at=$EPOCHREALTIME

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for f in "$SWITCHBOARD_BIN" "$nginx_bin"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it builds and installs nginx)" >&2; exit 1; }
done
for c in redis-server redis-cli git cargo python3; do
    command -v "$c" >/dev/null || { echo "$c not installed" >&2; exit 1; }
done

# --- the previous release, built once -------------------------------------------------

previous_build() { # prints the path of the previous release's binary, building it if needed
    local commit out src build secs start
    commit=$(git -C "$root" rev-parse --verify --quiet "$PREVIOUS^{commit}") || {
        echo "the previous release $PREVIOUS is not in this clone's history (a shallow clone? fetch it)" >&2
        return 1
    }
    out=$root/target/upgrade/$commit/switchboard
    if [ -x "$out" ]; then
        echo "previous release ${commit:0:12}: cached $out" >&2
        echo "$out"
        return 0
    fi
    src=$root/target/upgrade/src
    build=$root/target/upgrade-build
    rm -rf "$src" && mkdir -p "$src" "$build" || return 1
    git -C "$root" archive "$commit" | tar -x -C "$src" || return 1
    if [ ! -d "$build/release" ] && [ -d "$root/target/release" ]; then
        # Hard links: the dependencies' artifacts are reused (they are fresh, so never
        # written again), nothing is copied. The workspace crate's artifacts have the same
        # names in both trees and its sources here are older than them (git archive keeps
        # the commit's time): they are removed, so it is compiled anew into files of its
        # own instead of passing for fresh or writing through the links into target/release.
        cp -al "$root/target/release" "$build/release" || return 1
    fi
    rm -rf "$build/release/.cargo-lock" "$build/release/.fingerprint"/switchboard-* \
        "$build/release/build"/switchboard-* "$build/release/deps"/switchboard-* \
        "$build/release/deps"/libswitchboard-* "$build/release"/switchboard "$build/release"/switchboard.d \
        "$build/release/incremental"
    echo "previous release ${commit:0:12}: building into $build (once; cached in $out)" >&2
    start=$EPOCHREALTIME
    (cd "$src" && CARGO_TARGET_DIR=$build cargo build --release --locked --bin switchboard) >&2 || return 1
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    echo "previous release ${commit:0:12}: built in ${secs}s" >&2
    mkdir -p "$(dirname "$out")" && cp "$build/release/switchboard" "$out.tmp" && mv "$out.tmp" "$out" || return 1
    rm -rf "$src"
    echo "$out"
}

OLD_BIN=$(previous_build) || { echo "FAIL building the previous release $PREVIOUS"; exit 1; }
if cmp -s "$OLD_BIN" "$SWITCHBOARD_BIN"; then
    echo "FAIL the previous release's binary $OLD_BIN is this very build; remove it to build it again"
    exit 1
fi

mkdir -p "$INTEROP_DIR/runs"
STACK=$(mktemp -d "$INTEROP_DIR/runs/upgrade.XXXXXX")
mkdir -p "$STACK/new" "$STACK/old" "$STACK/logs"
# Private copies: every worker and demo-server of this run has /proc/PID/exe == $SB or
# $FIXTURE (the previous release), which is how the leftover check tells ours apart.
cp "$SWITCHBOARD_BIN" "$STACK/new/switchboard"
cp "$OLD_BIN" "$STACK/old/switchboard"
NEW=$STACK/new/switchboard
OLD=$STACK/old/switchboard
SB=$NEW
FIXTURE=$OLD

# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
WORKER_RUST_LOG=${RUST_LOG:-warn}

status=0
fail() { echo "FAIL $*"; status=1; }

cleanup() {
    trap - EXIT INT TERM
    touch "$STACK/stop-load"
    [ -n "${pids[load]:-}" ] && wait "${pids[load]}" 2>/dev/null
    for name in nginx worker-a worker-b worker-c redis; do stop "$name"; done
    check_leftovers "no worker, MCP server or nginx of this run remains" "$STACK"
    finish "upgrade from ${PREVIOUS:0:12}" "logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r REDIS_PORT A_PORT B_PORT C_PORT NGINX_PORT < <(free_ports 5)
declare -A port=([worker-a]=$A_PORT [worker-b]=$B_PORT [worker-c]=$C_PORT)
SECRET_KEY=$(head -c32 /dev/urandom | base64)

run_version() { # NAME old|new: (re)starts the worker on its port with that build
    local name=$1 SB
    SB=$([ "$2" = old ] && echo "$OLD" || echo "$NEW")
    stop "$name"
    # One token drives the whole load (c=16): no per-principal rate limit here (the previous
    # release ignores the variable).
    start_worker "$name" "${port[$name]}" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo \
        SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0
    wait_worker "$name" "${port[$name]}"
}

client() { timeout 120 "$PY" "$here/client.py" "$@"; }
calls() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls"])' "$STACK/load.json" 2>/dev/null || echo 0; }
calls_reach() { [ "$(calls)" -ge "$1" ]; }
check_sessions() { # WHAT PORT FILE
    local out
    if out=$(client check "http://127.0.0.1:$2" "$3" 2>&1); then
        echo "PASS $1: every session served ($out)"
    else
        fail "$1: $out"
    fi
}

start_redis "$REDIS_PORT" || { status=1; exit 1; }
for w in worker-a worker-b worker-c; do run_version "$w" old || { status=1; exit 1; }; done
start_nginx nginx "$NGINX_PORT" "$A_PORT" "$B_PORT" "$C_PORT" || { status=1; exit 1; }
BASE=http://127.0.0.1:$NGINX_PORT
echo "stack: redis :$REDIS_PORT; workers :$A_PORT :$B_PORT :$C_PORT behind nginx :$NGINX_PORT; previous release ${PREVIOUS:0:12}"
echo "versions: old: $("$OLD" --version | head -1); new: $("$NEW" --version | tr '\n' ' ')"

# --- 1. sessions on the previous release -----------------------------------------------

client create "$BASE" "$SESSIONS_PER_DOOR" "$STACK/sessions.json" || { fail "creating sessions on the previous release"; exit 1; }
check_sessions "the previous release" "$A_PORT" "$STACK/sessions.json"

# --- 2. load, 3. the upgrade, one worker at a time -------------------------------------

"$PY" "$here/client.py" load "$BASE" "$STACK/sessions.json" "$STACK/load.json" "$STACK/stop-load" \
    "$CONCURRENCY" 600 1000000 >"$STACK/logs/load.log" 2>&1 &
pids[load]=$!
wait_until 60 "load" calls_reach 200 || { fail "no calls flowing"; exit 1; }
upgrade_from=$(calls)
upgrade_start=$EPOCHREALTIME
for w in worker-a worker-b worker-c; do
    run_version "$w" new || { fail "$w did not start on this build"; exit 1; }
    # Calls run on each mixed fleet before the next worker goes.
    at=$(calls)
    wait_until 60 "calls after $w was upgraded" calls_reach $((at + 300)) || fail "calls stalled after upgrading $w"
    # A rollout's pacing, not a wait for the build: nginx takes a restarting worker out for
    # fail_timeout (10 s, deploy/nginx.conf) after its refused connects, so the next worker
    # goes only once this one is back in the pool (otherwise nginx has no live upstream).
    sleep 11
done
upgrade_calls=$(($(calls) - upgrade_from))
upgrade_secs=$(awk -v a="$upgrade_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "upgrade: $upgrade_calls calls in ${upgrade_secs}s while the three workers were replaced"

# --- 4. every session on every new worker ----------------------------------------------

client create "$BASE" 2 "$STACK/sessions-new.json" || fail "creating sessions on this build"
"$PY" -c 'import json,sys; json.dump(json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])), open(sys.argv[3], "w"))' \
    "$STACK/sessions.json" "$STACK/sessions-new.json" "$STACK/sessions-all.json"
for w in worker-a worker-b worker-c; do check_sessions "$w on this build" "${port[$w]}" "$STACK/sessions-all.json"; done

# --- 5. roll one worker back -------------------------------------------------------------

rollback_from=$(calls)
run_version worker-c old || { fail "worker-c did not start on the previous release"; exit 1; }
at=$(calls)
wait_until 60 "calls after the rollback" calls_reach $((at + 300)) || fail "calls stalled after the rollback"
check_sessions "worker-c rolled back to the previous release (records this build wrote)" "$C_PORT" "$STACK/sessions-all.json"
check_sessions "worker-a on this build, after the rollback" "$A_PORT" "$STACK/sessions-all.json"
rollback_calls=$(($(calls) - rollback_from))

# --- the calls -----------------------------------------------------------------------------

touch "$STACK/stop-load"
wait "${pids[load]}" 2>/dev/null
unset "pids[load]"
read -r total failed < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["calls"], d["failed"])' "$STACK/load.json")
echo "calls: $total in all; $upgrade_calls during the upgrade, $rollback_calls during the rollback; $failed failed"
if [ "${failed:-1}" -eq 0 ] && [ "${total:-0}" -gt 0 ]; then
    echo "PASS 0 failed calls of $total (concurrency $CONCURRENCY, through nginx)"
else
    fail "$failed of $total calls failed: $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"][:5])' "$STACK/load.json")"
fi
