#!/usr/bin/env bash
# scale.sh: how switchboard scales out and what it costs, in one run, on loopback
# (issues 5, 6 and 7): a private redis-server (--save '' --appendonly no), up to
# three `switchboard serve` workers sharing it, a private nginx from
# deploy/nginx.conf, and `switchboard bench` as the load.
#
#   1. through nginx with 1, 2 and 3 workers: `--scenario call` (cache misses, a
#      spawn of the demo server per call) at concurrency 8 and 32
#   2. cache hits vs misses, one worker (straight, no nginx), one Redis:
#      `call-cached` and `call` at concurrency 1, 8, 32
#   3. cost as sessions grow: Redis used_memory before and after 100,000 sessions
#      made with `--scenario init` (plus a sample of sessions given a small
#      `state`), and cache-hit / uncached p50 at concurrency 1 with ~100 sessions
#      vs after the 100,000
#   4. worker RSS: idle (after start and 5 calls) and peak during every
#      concurrency-32 run (VmRSS every 0.2 s, the worker alone)
#   5. child processes of the workers left after the last run (must be 0), and
#      processes of the run left after the workers were stopped
#
# usage: bench/scale.sh       (needs target/release/switchboard, redis-server,
#                              redis-cli, nginx, python3)
# Prints markdown on stdout (also summary.md); raw JSON, logs and command lines go
# to target/bench-results/scale-<UTC timestamp>/.
#
# Knobs (environment):
#   SCALE_DURATION=10s              per point of parts 1 and 2
#   SCALE_SESSION_DURATION=5s       per p50 point of part 3
#   SCALE_WORKERS="1 2 3"           fleet sizes behind nginx (at most 3)
#   SCALE_NGINX_CONCURRENCY="8 32"
#   SCALE_CACHE_CONCURRENCY="1 8 32"
#   SCALE_SESSIONS=100000           sessions made by part 3's init run
#   SCALE_BASE_SESSIONS=100         sessions existing for the "before" p50
#   SCALE_INIT_DURATION=300s        upper bound of the init run
#   SCALE_STATE_SAMPLE=1000         sessions given a small state (0: skip)
#   SCALE_SETTLE=5                  seconds after the last run before counting children
#   SCALE_TOOL=echo SCALE_ARGUMENTS='{"text":"hello"}' SCALE_TOKEN=demo
#   SCALE_RUST_LOG=info             the workers' log filter
#   SCALE_OUT                       results directory
#   SWITCHBOARD_BIN                 the binary (default target/release/switchboard)
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped by
# its pid on exit (EXIT trap, also on Ctrl-C); nothing is stopped by name.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/../tests/interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
SWITCHBOARD=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${SCALE_OUT:-$ROOT/target/bench-results/scale-$STAMP}
DURATION=${SCALE_DURATION:-10s}
SESSION_DURATION=${SCALE_SESSION_DURATION:-5s}
WORKERS_LIST=${SCALE_WORKERS:-1 2 3}
NGINX_CONCURRENCY=${SCALE_NGINX_CONCURRENCY:-8 32}
CACHE_CONCURRENCY=${SCALE_CACHE_CONCURRENCY:-1 8 32}
SESSIONS=${SCALE_SESSIONS:-100000}
BASE_SESSIONS=${SCALE_BASE_SESSIONS:-100}
INIT_DURATION=${SCALE_INIT_DURATION:-300s}
STATE_SAMPLE=${SCALE_STATE_SAMPLE:-1000}
SETTLE=${SCALE_SETTLE:-5}
TOOL=${SCALE_TOOL:-echo}
DEFAULT_ARGUMENTS='{"text":"hello"}'
ARGUMENTS=${SCALE_ARGUMENTS:-$DEFAULT_ARGUMENTS}
TOKEN=${SCALE_TOKEN:-demo}
WORKER_RUST_LOG=${SCALE_RUST_LOG:-info}
MAX_WORKERS=3

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PY=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $SWITCHBOARD ]] || die "$SWITCHBOARD is missing: run 'cargo build --release' first"
[[ -x $NGINX ]] || die "nginx not found"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "redis-server/redis-cli not installed"
for n in $WORKERS_LIST; do ((n >= 1 && n <= MAX_WORKERS)) || die "SCALE_WORKERS: $n is not in 1..$MAX_WORKERS"; done

mkdir -p "$OUT"/{points,rss,logs,nginx,run,bin,metrics} || die "cannot create $OUT"
# A private copy of the binary for the workers (and so their demo-server children):
# processes of this run are then told apart from any other by /proc/PID/exe.
# The load generator runs a second copy, so a rebuild of target/ during the run changes nothing.
mkdir -p "$OUT/bin/load" || die "cannot create $OUT/bin/load"
cp "$SWITCHBOARD" "$OUT/bin/switchboard" && cp "$SWITCHBOARD" "$OUT/bin/load/switchboard" || die "cannot copy the binary"
SB=$OUT/bin/switchboard
LOAD=$OUT/bin/load/switchboard
BINARY_SHA=$(sha256sum "$SB" | cut -c1-16)
BINARY_MTIME=$(date -u -r "$SWITCHBOARD" +%Y-%m-%dT%H:%M:%SZ)
printf '%q ' "$0" "$@" >"$OUT/command.txt"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "results in $OUT"

# --- processes, stopped by pid -------------------------------------------------------

# tests/interop/lib.sh starts and stops them: pids (name -> pid: redis, worker1..3,
# nginx), stop NAME, ours (pids still running this run's binary copy), wait_until.
root=$ROOT STACK=$OUT RUN_DIR=$OUT/run
note() { log "$*"; }
not_ready=""
ready_probe=http_ok
log_indent=""
SAMPLERS=()          # RSS samplers of the current point

samplers_stop() {
    local pid
    for pid in "${SAMPLERS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    SAMPLERS=()
}

cleanup() {
    trap - EXIT INT TERM
    samplers_stop
    local name left p
    for name in nginx worker1 worker2 worker3 redis; do stop "$name"; done
    for _ in $(seq 50); do left=$(ours); [[ -z $left ]] && break; sleep 0.1; done
    for p in $left; do log "killing leftover pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; kill -KILL "$p" 2>/dev/null; done
    rm -rf "$OUT/bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1"; }

redis() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
used_memory() { redis info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }
session_count() { redis --scan --pattern 'switchboard:{*}' | wc -l; }

bench_point() { # NAME URL SCENARIO CONCURRENCY DURATION [more bench args]
    local name=$1 url=$2 scenario=$3 c=$4 d=$5; shift 5
    local cmd=("$LOAD" bench --url "$url" --scenario "$scenario" --concurrency "$c" --duration "$d"
               --tool "$TOOL" --arguments "$ARGUMENTS" --token "$TOKEN" --json "$@")
    printf '%q ' "$SWITCHBOARD" "${cmd[@]:1}" >"$OUT/points/$name.cmd"   # (run from a copy of it)
    if "${cmd[@]}" >"$OUT/points/$name.json" 2>"$OUT/points/$name.err"; then
        log "$name: $(cat "$OUT/points/$name.json")"
    else
        log "$name: FAILED: $(tail -c 300 "$OUT/points/$name.err")"
    fi
}

rss_sample() { # LABEL WORKER_IDS...: peak VmRSS of each worker until samplers_stop
    local label=$1 i; shift
    for i in "$@"; do
        "$PY" "$HERE/procs.py" sample "${pids[worker$i]}" "$OUT/rss/peak__${label}__worker$i.json" 0.2 &
        SAMPLERS+=($!)
    done
}

# --- the stack -----------------------------------------------------------------------

read -r REDIS_PORT W1 W2 W3 NGINX_PORT < <(free_ports 5)
WORKER_PORTS=("" "$W1" "$W2" "$W3")
SECRET_KEY=$(head -c32 /dev/urandom | base64)
# One token drives the whole fleet here (and part 3 makes 100,000 sessions with it): the
# per-principal limits, meant for many clients, are off.
NO_LIMITS=(SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0 SWITCHBOARD_LIMITS_SESSIONS_PER_PRINCIPAL=0)

start_redis "$REDIS_PORT" || exit 1

scale_worker() { # I: worker I on WORKER_PORTS[I]; worker 1's command line goes to worker_command.txt
    local i=$1 port=${WORKER_PORTS[$1]}
    if [[ $i == 1 ]]; then
        local shown
        worker_command "$port" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS="$TOKEN" "${NO_LIMITS[@]}"
        shown=$(printf '%q ' "${worker_cmd[@]}")
        shown=${shown//"$SECRET_KEY"/'<base64 of 32 random bytes>'}
        printf '%s  # (run from a copy of it)\n' "${shown//"$SB"/"$SWITCHBOARD"}" >"$OUT/worker_command.txt"
    fi
    start_worker "worker$i" "$port" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS="$TOKEN" "${NO_LIMITS[@]}"
}
WORKER_IDS=()
for i in $(seq "$MAX_WORKERS"); do
    for n in $WORKERS_LIST; do ((n >= i)) && { WORKER_IDS+=("$i"); break; }; done
done
((${#WORKER_IDS[@]})) || WORKER_IDS=(1)
for i in "${WORKER_IDS[@]}"; do scale_worker "$i"; done
for i in "${WORKER_IDS[@]}"; do wait_worker "worker$i" "${WORKER_PORTS[$i]}" || exit 1; done
log "redis :$REDIS_PORT, workers $(for i in "${WORKER_IDS[@]}"; do printf ':%s(pid %s) ' "${WORKER_PORTS[$i]}" "${pids[worker$i]}"; done)"

# Idle RSS: after start and a few calls.
for i in "${WORKER_IDS[@]}"; do
    "$LOAD" bench --url "http://127.0.0.1:${WORKER_PORTS[$i]}" --scenario call --concurrency 1 --requests 5 \
        --duration 60s --tool "$TOOL" --arguments "$ARGUMENTS" --token "$TOKEN" --json \
        >"$OUT/rss/smoke__worker$i.json" 2>"$OUT/rss/smoke__worker$i.err" ||
        log "worker$i smoke calls failed: $(tail -c 300 "$OUT/rss/smoke__worker$i.err")"
    sleep 0.5
    "$PY" "$HERE/procs.py" rss "${pids[worker$i]}" >"$OUT/rss/idle__worker$i.json"
done

start_nginx() { # N: deploy/nginx.conf with its marked lines pointed at workers 1..N
    local n=$1 conf=$OUT/nginx/nginx-w$1.conf servers=() i
    for i in $(seq "$n"); do servers+=("${WORKER_PORTS[$i]}"); done
    mkdir -p "$OUT/nginx/tmp-w$n"
    nginx_conf "$conf" "$OUT/nginx/tmp-w$n" "$NGINX_PORT" "${servers[@]}" ||
        { log "could not rewrite deploy/nginx.conf (marked lines missing)"; return 1; }
    "$NGINX" -e stderr -p "$OUT/nginx/tmp-w$n/" -c "$conf" -g 'daemon off;' >"$OUT/logs/nginx-w$n.log" 2>&1 </dev/null &
    pids[nginx]=$!
    wait_until 15 "nginx (/readyz through it)" http_ok "http://127.0.0.1:$NGINX_PORT/readyz" ||
        { tail -20 "$OUT/logs/nginx-w$n.log" >&2; return 1; }
}

# --- 1. through nginx, 1..3 workers --------------------------------------------------

for n in $WORKERS_LIST; do
    if ! start_nginx "$n"; then stop nginx; continue; fi
    log "part 1: nginx :$NGINX_PORT (pid ${pids[nginx]}) over $n worker(s)"
    for c in $NGINX_CONCURRENCY; do
        [[ $c == 32 ]] && rss_sample "part1-w$n-c32" $(seq "$n")
        bench_point "part1__w${n}__call__c$c" "http://127.0.0.1:$NGINX_PORT" call "$c" "$DURATION"
        samplers_stop
    done
    stop nginx
done

# --- 2. cache hits vs misses, one worker ---------------------------------------------

W1_URL=http://127.0.0.1:$W1
"$PY" "$HERE/scale.py" tools "$W1_URL" "$TOKEN" >"$OUT/part2_tools.json" || log "listing /tools failed: $(cat "$OUT/part2_tools.json")"
for c in $CACHE_CONCURRENCY; do
    for s in call-cached call; do
        [[ $c == 32 ]] && rss_sample "part2-$s-c32" 1
        bench_point "part2__${s}__c$c" "$W1_URL" "$s" "$c" "$DURATION"
        samplers_stop
    done
done

# --- 3. cost as sessions grow ----------------------------------------------------------

bench_point part3__base "$W1_URL" init 8 60s --requests "$BASE_SESSIONS"
SESSIONS_BASE=$(session_count)
"$PY" "$HERE/scale.py" tools "$W1_URL" "$TOKEN" >/dev/null
for s in call-cached call; do
    bench_point "part3__before__${s}__c1" "$W1_URL" "$s" 1 "$SESSION_DURATION"
done
sleep 1   # the activity-log writes of the last calls land
SESSIONS_BEFORE=$(session_count)
MEM_BEFORE=$(used_memory)
log "part 3: $SESSIONS_BEFORE sessions, used_memory $MEM_BEFORE; making $SESSIONS more"
bench_point part3__init "$W1_URL" init 32 "$INIT_DURATION" --requests "$SESSIONS"
sleep 1
SESSIONS_AFTER=$(session_count)
MEM_AFTER=$(used_memory)
log "part 3: $SESSIONS_AFTER sessions, used_memory $MEM_AFTER"
MEM_AFTER_STATE=null
if ((STATE_SAMPLE > 0)); then
    "$PY" "$HERE/scale.py" state "$W1_URL" "$TOKEN" "$STATE_SAMPLE" >"$OUT/part3_state.json"
    log "part 3: state sample $(cat "$OUT/part3_state.json")"
    sleep 1
    MEM_AFTER_STATE=$(used_memory)
fi
SESSIONS_FINAL=$(session_count)
"$PY" "$HERE/scale.py" tools "$W1_URL" "$TOKEN" >/dev/null
for s in call-cached call; do
    bench_point "part3__after__${s}__c1" "$W1_URL" "$s" 1 "$SESSION_DURATION"
done
cat >"$OUT/part3.json" <<EOF
{"sessions_base": $SESSIONS_BASE, "sessions_before_init": $SESSIONS_BEFORE, "used_memory_before_init": $MEM_BEFORE,
 "sessions_after_init": $SESSIONS_AFTER, "used_memory_after_init": $MEM_AFTER,
 "used_memory_after_state": $MEM_AFTER_STATE, "sessions_final": $SESSIONS_FINAL}
EOF

# --- 5. children left ------------------------------------------------------------------

sleep "$SETTLE"
for i in "${WORKER_IDS[@]}"; do
    "$PY" "$HERE/procs.py" tree "${pids[worker$i]}" >"$OUT/children__worker$i.json"
    curl -fsS --max-time 5 "http://127.0.0.1:${WORKER_PORTS[$i]}/metrics" >"$OUT/metrics/worker$i.txt" 2>/dev/null
done
for i in "${WORKER_IDS[@]}"; do stop "worker$i"; done
sleep 0.5
LEFT=$(ours)
"$PY" - "$OUT/leftover.json" $LEFT <<'EOF'
import json, sys
pids = sys.argv[2:]
detail = []
for p in pids:
    try:
        detail.append(p + ": " + open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip())
    except OSError:
        pass
json.dump({"count": len(pids), "detail": "; ".join(detail)}, open(sys.argv[1], "w"))
EOF

# --- report ------------------------------------------------------------------------------

ARGUMENTS=$ARGUMENTS "$PY" - "$OUT/run.json" <<EOF
import json, os, platform, subprocess, sys
def out(*argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except Exception:
        return "?"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
redis_v = out("redis-server", "--version").split()
json.dump({
    "started": "$STAMP", "duration": "$DURATION", "session_duration": "$SESSION_DURATION",
    "workers_list": [int(x) for x in "$WORKERS_LIST".split()], "worker_ids": [int(x) for x in "${WORKER_IDS[*]}".split()],
    "nginx_concurrency": [int(x) for x in "$NGINX_CONCURRENCY".split()],
    "cache_concurrency": [int(x) for x in "$CACHE_CONCURRENCY".split()],
    "sessions": $SESSIONS, "settle": $SETTLE, "tool": "$TOOL", "arguments": os.environ["ARGUMENTS"],
    "rust_log": "$WORKER_RUST_LOG", "max_children": os.cpu_count(),
    "machine": f"{os.cpu_count()} vCPU {cpu}, kernel {platform.release()}",
    "loadavg_start": "$LOADAVG_START", "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3]),
    "version": out("$SB", "--version") + " (binary sha256 $BINARY_SHA…, built $BINARY_MTIME)",
    "redis_version": next((w[2:] for w in redis_v if w.startswith("v=")), "?"),
    "nginx_version": out("$NGINX", "-v").split("/")[-1],
}, open(sys.argv[1], "w"), indent=1)
EOF

"$PY" "$HERE/scale.py" report "$OUT" | tee "$OUT/summary.md"
