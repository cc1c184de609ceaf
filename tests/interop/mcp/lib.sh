# Shell helpers for tests/interop/mcp/run.sh (sourced, not run): the same way of
# starting a stack as tests/interop/conformance/run.sh — a private redis-server,
# workers from a private copy of the binary, nginx from deploy/nginx.conf — every
# process on free 127.0.0.1 ports, recorded in `pids` and stopped by pid.
#
# The caller sets: root (the repository), STACK (a fresh run folder holding
# bin/ logs/ nginx*/), SB (the private binary copy), PY (python3).

declare -A pids=()

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

# ours MARKER...: pids of live processes running $SB (workers, demo-servers) or whose
# command line contains one of the MARKERs (the server-everything children carry
# $STACK as an extra argument; nginx's master has $STACK in its -p).
ours() {
    local p cmd m
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$$" ] && continue
        awk '{ exit !($3 != "Z") }' "$p/stat" 2>/dev/null || continue
        if [ "$(readlink "$p/exe" 2>/dev/null)" = "$SB" ]; then
            echo "${p#/proc/}"
            continue
        fi
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        for m in "$@"; do
            case "$cmd" in *"$m"*)
                echo "${p#/proc/}"
                break
                ;;
            esac
        done
    done
}

start_redis() { # PORT
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$STACK" >"$STACK/logs/redis.log" 2>&1 </dev/null &
    pids[redis]=$!
    wait_until 10 redis-server redis-cli -p "$1" ping
}

# start_worker NAME PORT REDIS_PORT SECRET_KEY [MCP_COMMAND]: a worker with a clean
# environment (only what is set here), run from $STACK, so neither the caller's
# SWITCHBOARD_* variables nor a switchboard.toml leak in. Without MCP_COMMAND it fronts
# the built-in demo server.
start_worker() {
    local name=$1 port=$2 redis_port=$3 key=$4 command=${5:-}
    local extra=()
    [ -n "$command" ] && extra=(SWITCHBOARD_MCP_COMMAND="$command")
    (cd "$STACK" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG="${RUST_LOG:-info}" \
        SWITCHBOARD_LISTEN="127.0.0.1:$port" \
        SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$redis_port" \
        SWITCHBOARD_SECRET_KEY="$key" \
        SWITCHBOARD_AUTH_STATIC_TOKENS=demo \
        "${extra[@]}" \
        "$SB" serve >"$STACK/logs/$name.log" 2>&1 </dev/null) &
    pids[$name]=$!
}

wait_worker() { # NAME PORT
    wait_until 30 "$1 (/readyz)" http_get "http://127.0.0.1:$2/readyz" || {
        tail -20 "$STACK/logs/$1.log" | sed 's/^/   | /' >&2
        return 1
    }
}

# start_nginx NAME PORT UPSTREAM_PORT...: deploy/nginx.conf with its marked lines
# pointed at this run (one upstream server line per worker port, the listen port, the
# pid file and temp paths in $STACK/NAME), exactly as tests/interop/conformance/run.sh.
start_nginx() {
    local name=$1 port=$2
    shift 2
    local dir=$STACK/$name nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    mkdir -p "$dir"
    local conf=$dir/nginx.conf
    {
        [ "$(id -u)" -eq 0 ] && echo "user root;"
        awk -v ups="$*" -v port="$port" -v dir="$dir" '
            /# upstream-server[[:space:]]*$/ {
                if (!done) {
                    n = split(ups, u, " ")
                    for (i = 1; i <= n; i++)
                        printf "        server 127.0.0.1:%s max_fails=3 fail_timeout=10s; # upstream-server\n", u[i]
                    done = 1
                }
                next
            }
            /# listen[[:space:]]*$/ { printf "        listen 127.0.0.1:%s; # listen\n", port; next }
            /^[[:space:]]*pid[[:space:]]/ { printf "pid %s/nginx.pid;\n", dir; next }
            { print }
            /^http[[:space:]]*\{/ {
                n = split("client_body proxy fastcgi uwsgi scgi", t, " ")
                for (i = 1; i <= n; i++) printf "    %s_temp_path %s/%s;\n", t[i], dir, t[i]
            }
        ' "$root/deploy/nginx.conf"
    } >"$conf"
    [ "$(grep -c '# upstream-server$' "$conf")" -eq $# ] && grep -q "listen 127.0.0.1:$port; # listen" "$conf" || {
        echo "FAIL start-up: could not rewrite deploy/nginx.conf (marked lines missing)"
        return 1
    }
    "$nginx_bin" -e stderr -p "$dir/" -c "$conf" -g 'daemon off;' >"$STACK/logs/$name.log" 2>&1 </dev/null &
    pids[$name]=$!
    wait_until 15 "$name (/readyz through it)" http_get "http://127.0.0.1:$port/readyz" || {
        tail -20 "$STACK/logs/$name.log" | sed 's/^/   | /' >&2
        return 1
    }
}

mcp_requests() { # PORT: total /mcp requests from the worker's /metrics
    http_get "http://127.0.0.1:$1/metrics" | awk '
        /^switchboard_http_requests_total\{/ && /route="\/mcp"/ { total += $NF }
        END { print total + 0 }'
}
