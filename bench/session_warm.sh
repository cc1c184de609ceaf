#!/usr/bin/env bash
# session_warm.sh: warm starts for servers that take the session's credentials, side by side in one
# run: an interactive session (a call every $GAP s, $CALLS calls, "cache": false) through
# nginx over 3 workers on one Redis, cold (warm_idle_secs = 0) vs warm with round-robin vs
# warm with `hash $http_mcp_session_id consistent;`, for a Python server (mcp-server-time)
# and a Node server (server-everything), each with a credential mapped into its env. Then
# `switchboard bench --scenario call-cached -c 8` on a fresh worker with no prior /tools,
# and the memory of warm children and of a worker.
#
# usage: bench/session_warm.sh   (after `cargo build --release`)
# Knobs: WARM_CALLS=20 WARM_GAP=2 TIME_SERVER=<mcp-server-time executable>
#        EVERYTHING_JS=<server-everything dist/index.js> SWITCHBOARD_BIN CACHED_SECS=10
# Everything listens on 127.0.0.1; every process started here is stopped by pid on exit.
# Prints a markdown table; logs go to target/bench-results/warm-<stamp>/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
CALLS=${WARM_CALLS:-20}
GAP=${WARM_GAP:-2}
CACHED_SECS=${CACHED_SECS:-10}
TIME_SERVER=${TIME_SERVER:-$ROOT/target/figures/venv/bin/mcp-server-time}
EVERYTHING_JS=${EVERYTHING_JS:-$ROOT/target/interop/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js}
OUT=$ROOT/target/bench-results/warm-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
[[ -x $BIN ]] || { echo "build first: $BIN" >&2; exit 1; }
[[ -x $TIME_SERVER ]] || { echo "mcp-server-time not found at $TIME_SERVER (pip install it into a venv)" >&2; exit 1; }
[[ -f $EVERYTHING_JS ]] || { echo "server-everything not found at $EVERYTHING_JS" >&2; exit 1; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

REDIS_PORT=$(port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" > "$OUT/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
KEY=$(head -c32 /dev/urandom | base64)
NODE=$(command -v node)

# config <warm_idle_secs>: both servers, the credential mapped into their environment.
config() {
  cat <<EOF
[servers.time]
command = ["$TIME_SERVER", "--local-timezone", "UTC"]
env = { SANDSIV_TOKEN = "{credentials.token}" }
warm_idle_secs = $1
[servers.everything]
command = ["$NODE", "$EVERYTHING_JS", "stdio"]
env = { SANDSIV_TOKEN = "{credentials.token}" }
warm_idle_secs = $1
EOF
}

WORKER_PIDS=()
start_workers() { # label warm_idle_secs
  config "$2" > "$OUT/$1.toml"
  WORKER_PORTS=()
  WORKER_PIDS=()
  for i in 1 2 3; do
    local p; p=$(port)
    SWITCHBOARD_LISTEN=127.0.0.1:$p SWITCHBOARD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
      SWITCHBOARD_SECRET_KEY=$KEY SWITCHBOARD_AUTH_MODE=none SWITCHBOARD_KEY_PREFIX="warm-$1:" RUST_LOG=warn \
      "$BIN" --config "$OUT/$1.toml" serve > "$OUT/$1-worker$i.log" 2>&1 &
    PIDS+=($!); WORKER_PIDS+=($!); WORKER_PORTS+=("$p")
  done
  for p in "${WORKER_PORTS[@]}"; do wait_port "$p"; done
}

stop_workers() {
  local pid
  for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

start_nginx() { # label hash(0|1)
  local dir=$OUT/nginx-$1; mkdir -p "$dir"
  NGINX_PORT=$(port)
  "$PYTHON" - "$ROOT/deploy/nginx.conf" "$dir/nginx.conf" "$NGINX_PORT" "$2" "$dir" "${WORKER_PORTS[@]}" <<'EOF'
import sys
src, dst, port, hashed, d, *workers = sys.argv[1:]
out, done = ["user root;\n"] if __import__("os").geteuid() == 0 else [], False
for line in open(src):
    s = line.strip()
    if s.startswith("server ") and s.endswith("# upstream-server"):
        if not done:
            out += [f"        server 127.0.0.1:{w} max_fails=3 fail_timeout=10s;\n" for w in workers]
            done = True
        continue
    if s.startswith("# hash $http_mcp_session_id") and hashed == "1":
        line = line.replace("# hash", "hash")
    if s.endswith("# listen"):
        line = f"        listen 127.0.0.1:{port};\n"
    if s.startswith("pid "):
        line = f"pid {d}/nginx.pid;\n"
    out.append(line)
open(dst, "w").write("".join(out))
EOF
  nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" -g 'daemon off;' > "$dir/out.log" 2>&1 &
  NGINX_PID=$!; PIDS+=("$NGINX_PID")
  wait_port "$NGINX_PORT"
}

stop_nginx() { kill -TERM "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; }

# session <base url> <tool> <arguments> <out json>: one interactive session, timed client-side.
session() {
  "$PYTHON" - "$1" "$2" "$3" "$CALLS" "$GAP" "$4" <<'EOF'
import json, sys, time, urllib.request
base, tool, args, calls, gap, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
def post(path, body, session=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **({"mcp-session-id": session} if session else {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())
sid = post("/init", {"credentials": {"token": "sandsiv-secret-42"}})["session_id"]
ms = []
for i in range(calls):
    t = time.perf_counter()
    reply = post("/call-tool", {"tool": tool, "arguments": args, "cache": False}, sid)
    ms.append((time.perf_counter() - t) * 1000)
    assert not reply["result"].get("isError"), reply
    time.sleep(gap)
req = urllib.request.Request(base + "/session", method="DELETE", headers={"mcp-session-id": sid})
urllib.request.urlopen(req, timeout=10).read()
s = sorted(ms)
q = lambda p: s[min(len(s) - 1, int(round(p * (len(s) - 1))))]
json.dump({"ms": ms, "p50": q(0.5), "p90": q(0.9)}, open(out, "w"))
EOF
}

metric_sum() { # name: summed over the workers
  local total=0 p v
  for p in "${WORKER_PORTS[@]}"; do
    v=$(curl -sf "http://127.0.0.1:$p/metrics" | awk -v n="$1" '$1 == n {print $2}')
    total=$("$PYTHON" -c "print(${total} + ${v:-0})")
  done
  echo "$total"
}

declare -A P50 P90
for mode in cold warm-rr warm-hash; do
  idle=60; [[ $mode == cold ]] && idle=0
  hashed=0; [[ $mode == warm-hash ]] && hashed=1
  start_workers "$mode" "$idle"
  start_nginx "$mode" "$hashed"
  base=http://127.0.0.1:$NGINX_PORT
  echo "$(date +%T) $mode: two sessions, $CALLS calls every $GAP s" >&2
  session "$base" time.get_current_time '{"timezone":"Europe/Zurich"}' "$OUT/$mode-time.json" &
  t=$!
  sleep 1
  session "$base" everything.echo '{"message":"hi"}' "$OUT/$mode-everything.json"
  wait "$t"
  for s in time everything; do
    P50[$mode-$s]=$("$PYTHON" -c "import json; print(round(json.load(open('$OUT/$mode-$s.json'))['p50'], 1))")
    P90[$mode-$s]=$("$PYTHON" -c "import json; print(round(json.load(open('$OUT/$mode-$s.json'))['p90'], 1))")
  done
  if [[ $mode == warm-hash ]]; then
    # A warm child of each server, held after a call, and a worker's own memory.
    probe=$("$PYTHON" - "$base" <<'EOF'
import json, sys, time, urllib.request
base = sys.argv[1]
def post(path, body, session=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **({"mcp-session-id": session} if session else {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())
sid = post("/init", {"credentials": {"token": "probe"}})["session_id"]
post("/call-tool", {"tool": "time.get_current_time", "arguments": {"timezone": "UTC"}, "cache": False}, sid)
time.sleep(3)
print(sid)
EOF
)
    WARM_N=$(metric_sum switchboard_warm_children); WARM_RSS=$(metric_sum switchboard_warm_rss_bytes)
    WORKER_RSS=$(awk '/VmRSS/ {print $2}' "/proc/${WORKER_PIDS[0]}/status")
    HITS=$(metric_sum 'switchboard_warm_starts_total{server="time",outcome="hit"}')
  fi
  stop_nginx
  stop_workers
done

# call-cached on a fresh worker (the demo server), no prior /tools, c=8.
p=$(port)
SWITCHBOARD_LISTEN=127.0.0.1:$p SWITCHBOARD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT SWITCHBOARD_SECRET_KEY=$KEY \
  SWITCHBOARD_AUTH_STATIC_TOKENS=demo SWITCHBOARD_LIMITS_REQUESTS_PER_SEC=0 SWITCHBOARD_KEY_PREFIX="warm-cached:" RUST_LOG=warn "$BIN" serve > "$OUT/cached-worker.log" 2>&1 &
PIDS+=($!); wait_port "$p"
"$BIN" bench --url "http://127.0.0.1:$p" --scenario call-cached -c 8 -d "${CACHED_SECS}s" --json > "$OUT/call-cached.json"
CACHED=$("$PYTHON" -c "import json; r=json.load(open('$OUT/call-cached.json')); print(r)" | head -c 600)

echo
echo "| server | cold p50 / p90 ms | warm round-robin p50 / p90 | warm consistent-hash p50 / p90 |"
echo "|---|---:|---:|---:|"
for s in time everything; do
  echo "| $s | ${P50[cold-$s]} / ${P90[cold-$s]} | ${P50[warm-rr-$s]} / ${P90[warm-rr-$s]} | ${P50[warm-hash-$s]} / ${P90[warm-hash-$s]} |"
done
echo
echo "warm children held after one call (3 workers): $WARM_N, RSS $WARM_RSS bytes; worker RSS ${WORKER_RSS} kB; warm hits (time, hash run): $HITS"
echo "call-cached (fresh worker, no /tools, c=8): $CACHED"
echo "(raw: $OUT)"
