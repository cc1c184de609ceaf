#!/usr/bin/env bash
# compare.sh: switchboard and a peer gateway (supergateway 4.0.0, stateless
# Streamable HTTP) side by side, in one run, on loopback, in front of the same
# stdio MCP servers, loaded by `switchboard bench`; plus the direct-spawn floor.
#
# usage: bench/compare.sh            (after `cargo build --release`)
# Prints a markdown table on stdout; raw JSON, logs and exact command lines go
# to target/bench-results/<UTC timestamp>/ (target/bench-results/latest links it).
#
# Knobs (environment):
#   BENCH_DURATION=10s          timed phase per point
#   BENCH_CONCURRENCY="1 8 32"  closed-loop clients per point
#   BENCH_SERVERS="everything demo"
#   BENCH_GATEWAYS="supergateway switchboard"
#   BENCH_SWITCHBOARD_SCENARIOS="call mcp"
#   BENCH_FLOOR_RUNS=30         direct-spawn floor runs per server (plus 3 warm-ups)
#   BENCH_SETTLE=7              seconds after the last point before counting leftover children
#   BENCH_TOKEN=demo            credential for /init and `Authorization: Bearer`
#   BENCH_CACHE                 where npm packages go (default $XDG_CACHE_HOME/switchboard-bench,
#                               else target/bench-cache); never system-wide
#   BENCH_OUT                   results directory
#   SWITCHBOARD_BIN             the switchboard binary (default target/release/switchboard)
#   BENCH_BIN                   the load generator, called as `$BENCH_BIN bench ...` (default SWITCHBOARD_BIN)
#
# Everything listens on 127.0.0.1 only (supergateway through loopback.cjs).
# Every process this script starts is stopped by pid (gateways by their own
# process group, started with setsid) on exit, including Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SWITCHBOARD=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
BENCH_BIN=${BENCH_BIN:-$SWITCHBOARD}
if [[ -n ${XDG_CACHE_HOME:-} ]]; then DEFAULT_CACHE=$XDG_CACHE_HOME/switchboard-bench; else DEFAULT_CACHE=$ROOT/target/bench-cache; fi
CACHE=${BENCH_CACHE:-$DEFAULT_CACHE}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$ROOT/target/bench-results/$STAMP}
DURATION=${BENCH_DURATION:-10s}
CONCURRENCY=${BENCH_CONCURRENCY:-1 8 32}
SERVERS=${BENCH_SERVERS:-everything demo}
GATEWAYS=${BENCH_GATEWAYS:-supergateway switchboard}
SWITCHBOARD_SCENARIOS=${BENCH_SWITCHBOARD_SCENARIOS:-call mcp}
FLOOR_RUNS=${BENCH_FLOOR_RUNS:-30}
SETTLE=${BENCH_SETTLE:-7}
TOKEN=${BENCH_TOKEN:-demo}
PEER_VERSION=4.0.0
EVERYTHING_VERSION=${BENCH_EVERYTHING_VERSION:-2026.8.31}
TAG=sbbench-$$-$STAMP   # in every gateway's environment, inherited by its children: finds orphans

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- cleanup: everything we started, by pid -------------------------------
GROUP_PIDS=()   # started with setsid: pid == process group id
HELPER_PIDS=()  # plain background helpers (RSS sampler)
cleanup() {
  local pid
  for pid in "${HELPER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${GROUP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${GROUP_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------
# The real interpreter, not a pyenv shim (a shim costs ~90 ms per start).
PYTHON=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
NODE=${NODE:-$(command -v node || true)}
[[ -x $PYTHON ]] || die "python3 not found"
[[ -n $NODE ]] || die "node not found (needed for supergateway and server-everything)"
command -v npm >/dev/null || die "npm not found"
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN is missing: run 'cargo build --release' first (or set BENCH_BIN)"
[[ $("$BENCH_BIN" bench --help 2>&1) == *Usage* ]] || die "$BENCH_BIN has no 'bench' subcommand"
procs() { "$PYTHON" "$HERE/procs.py" "$@"; }

NPM_DIR=$CACHE/npm-supergateway-$PEER_VERSION-everything-$EVERYTHING_VERSION
SG_JS=$NPM_DIR/node_modules/supergateway/dist/index.js
EVERYTHING_JS=$NPM_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js
if [[ ! -f $SG_JS || ! -f $EVERYTHING_JS ]]; then
  log "installing supergateway@$PEER_VERSION and server-everything@$EVERYTHING_VERSION into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  [[ -f $NPM_DIR/package.json ]] || echo '{"private": true}' > "$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error \
    "supergateway@$PEER_VERSION" "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >&2
fi
[[ -f $SG_JS ]] || die "supergateway did not install into $NPM_DIR"
[[ -f $EVERYTHING_JS ]] || die "server-everything did not install into $NPM_DIR"

# What this binary can do yet: the worker and the demo server are optional
# so the peer half can be measured on its own.
HAVE_SERVE=0; HAVE_DEMO=0
# (clap prints "Usage" for --help; an unknown subcommand fails or prints nothing)
[[ -x $SWITCHBOARD && $("$SWITCHBOARD" serve --help 2>&1) == *Usage* ]] && HAVE_SERVE=1
[[ -x $SWITCHBOARD && $("$SWITCHBOARD" demo-server --help 2>&1) == *Usage* ]] && HAVE_DEMO=1

mkdir -p "$OUT/points" "$OUT/gw" "$OUT/floor"
ln -sfn "$OUT" "$(dirname "$OUT")/latest" 2>/dev/null || true
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "results in $OUT"

# server name -> argv (array SERVER_ARGV), tool arguments, extra environment
set_server() {
  case $1 in
    everything)
      SERVER_ARGV=("$NODE" "$EVERYTHING_JS" stdio)
      TOOL_ARGS='{"message":"hi"}'
      SERVER_ENV=() ;;
    demo)
      SERVER_ARGV=("$SWITCHBOARD" demo-server)
      TOOL_ARGS='{"text":"hi"}'
      SERVER_ENV=("DEMO_TOKEN=$TOKEN") ;;   # the worker maps it from session credentials itself
    *) die "unknown server $1" ;;
  esac
  SERVER_CMD=$(printf '%q ' "${SERVER_ARGV[@]}"); SERVER_CMD=${SERVER_CMD% }
}

wait_port() { # port pid
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

bench_point() { # server gateway scenario concurrency url
  local name=$1__$2__$3__c$4 cmd
  cmd=("$BENCH_BIN" bench --url "$5" --scenario "$3" --concurrency "$4" --duration "$DURATION"
       --tool echo --arguments "$TOOL_ARGS" --token "$TOKEN" --json)
  printf '%q ' "${cmd[@]}" > "$OUT/points/$name.cmd"
  if "${cmd[@]}" > "$OUT/points/$name.json" 2> "$OUT/points/$name.err"; then
    log "$name: $(cat "$OUT/points/$name.json")"
  else
    log "$name: FAILED: $(tail -c 300 "$OUT/points/$name.err")"
  fi
}

run_gateway() { # server gateway
  local server=$1 gw=$2 dir="$OUT/gw/$1__$2" port url scenarios cmd pid sampler c s
  mkdir -p "$dir"
  port=$(procs free-port)
  case $gw in
    supergateway)
      cmd=(env "BENCH_TAG=$TAG" "${SERVER_ENV[@]}" "NODE_OPTIONS=--require $HERE/loopback.cjs"
           "$NODE" "$SG_JS" --stdio "$SERVER_CMD" --outputTransport streamableHttp
           --port "$port" --logLevel none)
      url=http://127.0.0.1:$port/mcp
      scenarios=mcp ;;
    switchboard)
      # The demo server is the worker's default, with DEMO_TOKEN mapped from the session's token.
      if [[ $server == demo ]]; then
        cmd=(env "BENCH_TAG=$TAG" "SWITCHBOARD_LISTEN=127.0.0.1:$port" "SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0" "$SWITCHBOARD" serve)
      else
        cmd=(env "BENCH_TAG=$TAG" "SWITCHBOARD_LISTEN=127.0.0.1:$port" "SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0" "SWITCHBOARD_MCP_COMMAND=$SERVER_CMD"
             "$SWITCHBOARD" serve)
      fi
      url=http://127.0.0.1:$port
      scenarios=$SWITCHBOARD_SCENARIOS ;;
    *) die "unknown gateway $gw" ;;
  esac
  printf '%q ' "${cmd[@]}" > "$dir/command.txt"
  setsid "${cmd[@]}" > "$dir/stdout.log" 2> "$dir/stderr.log" < /dev/null &
  pid=$!
  GROUP_PIDS+=("$pid")
  log "$server behind $gw: pid $pid on $url"
  if ! wait_port "$port" "$pid"; then
    log "$gw did not start listening: $(tail -c 300 "$dir/stderr.log")"
    stop_gateway "$pid" "$dir"
    return 0
  fi
  ss -ltnp 2>/dev/null | grep "pid=$pid," > "$dir/listen.txt" || true
  # smoke test (also the warm-up), then idle RSS
  if ! "$BENCH_BIN" bench --url "$url" --scenario "${scenarios%% *}" --concurrency 1 --requests 5 --duration 60s \
       --tool echo --arguments "$TOOL_ARGS" --token "$TOKEN" --json > "$dir/smoke.json" 2> "$dir/smoke.err"; then
    log "$gw smoke test failed: $(tail -c 300 "$dir/smoke.err")"
  fi
  procs rss "$pid" > "$dir/rss_idle.json"
  # not through the procs function: $! must be python's own pid, not a subshell's
  "$PYTHON" "$HERE/procs.py" sample "$pid" "$dir/rss_peak.json" &
  sampler=$!
  HELPER_PIDS+=("$sampler")
  for c in $CONCURRENCY; do
    for s in $scenarios; do
      bench_point "$server" "$gw" "$s" "$c" "$url"
    done
  done
  kill -TERM "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sleep "$SETTLE"
  procs tree "$pid" > "$dir/after_load.json"
  stop_gateway "$pid" "$dir"
}

stop_gateway() { # pid dir: SIGTERM, wait up to 10 s, count what of its tree survives, then kill that
  local pid=$1 dir=$2 left
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && log "pid $pid survived SIGTERM for 10 s"
  sleep 0.5
  procs tagged "$TAG" > "$dir/after_stop.json"
  kill -KILL -- "-$pid" 2>/dev/null || true
  for left in $("$PYTHON" -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["pids"])))' "$dir/after_stop.json"); do
    kill -KILL "$left" 2>/dev/null || true
  done
  wait "$pid" 2>/dev/null || true
}

run_floor() { # server
  local cmd
  cmd=(env "${SERVER_ENV[@]}" "$PYTHON" "$HERE/floor.py" --runs "$FLOOR_RUNS" --tool echo
       --arguments "$TOOL_ARGS" --out "$OUT/floor/$1.json" -- "${SERVER_ARGV[@]}")
  printf '%q ' "${cmd[@]}" > "$OUT/floor/$1.cmd"
  "${cmd[@]}" || log "floor for $1 failed"
}

for server in $SERVERS; do
  if [[ $server == demo && $HAVE_DEMO == 0 ]]; then
    log "skipping the demo server: '$SWITCHBOARD demo-server' is not available yet"
    continue
  fi
  set_server "$server"
  run_floor "$server"
  for gw in $GATEWAYS; do
    if [[ $gw == switchboard && $HAVE_SERVE == 0 ]]; then
      log "skipping the switchboard worker: '$SWITCHBOARD serve' is not available yet"
      continue
    fi
    run_gateway "$server" "$gw"
  done
done

"$PYTHON" - "$OUT/run.json" <<EOF
import json, os, platform, subprocess, sys
def out(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"
def pkg(path):
    try:
        return json.load(open(path))["version"]
    except Exception:
        return "?"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
    "started": "$STAMP", "duration": "$DURATION", "concurrency": "$CONCURRENCY", "settle": "${SETTLE} s",
    "peer_version": "$PEER_VERSION",
    "machine": f"{os.cpu_count()} vCPU {cpu}, kernel {platform.release()}",
    "loadavg_start": "$LOADAVG_START", "loadavg_end": open("/proc/loadavg").read().split()[:3],
    "versions": {
        "switchboard": out("$SWITCHBOARD", "--version") or "?",
        "supergateway": pkg("$NPM_DIR/node_modules/supergateway/package.json"),
        "server-everything": pkg("$NPM_DIR/node_modules/@modelcontextprotocol/server-everything/package.json"),
        "node": out("$NODE", "--version"),
        "python": platform.python_version(),
    },
}, open(sys.argv[1], "w"), indent=1)
EOF

"$PYTHON" "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.md"
