# shellcheck shell=bash disable=SC2154 # root, STACK, SB, PY, started_at, status: the caller sets them
# Shell helpers for the scripts that start a private stack (sourced, not run):
# tests/interop/conformance/run.sh, tests/interop/mcp/run.sh, tests/interop/oauth/run.sh,
# tests/interop/upgrade/run.sh, tests/interop/bridge/stack.sh and bench/scale.sh. A private redis-server, workers
# from a private copy of the binary, nginx from deploy/nginx.conf: every process on
# free 127.0.0.1 ports, recorded in `pids` and stopped by pid.
#
# The caller sets: root (the repository), STACK (a run folder holding logs/), SB (the
# private binary copy), PY (python3); RUN_DIR (where redis-server and the workers run,
# default $STACK) when it differs; FIXTURE (a private copy of the conformance fixture
# binary) when the workers spawn it. Knobs a caller may change after sourcing:
#   note            function: a message about the stack, on stderr
#   not_ready       prefix of wait_until's message ("FAIL start-up: ")
#   poll            wait_until's interval in seconds (0.1)
#   ready_probe     command that succeeds when a URL answers 2xx (http_get)
#   log_indent      prefix of the log lines shown when something did not start ("   | ")
#   WORKER_RUST_LOG the workers' RUST_LOG (the caller's RUST_LOG, else info)

declare -A pids=()

note() { echo "$*" >&2; }
not_ready="FAIL start-up: "
poll=0.1
ready_probe=http_get
log_indent="   | "
WORKER_RUST_LOG=${RUST_LOG:-info}

free_ports() { # N distinct free loopback ports (all bound at once, then released)
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# npm_pin DIR PACKAGE VERSION: PACKAGE@VERSION installed into DIR/node_modules unless that
# version is there already (DIR gets a private package.json); a FAIL line if it cannot be.
npm_pin() {
    local dir=$1 pkg=$2 version=$3 manifest=$1/node_modules/$2/package.json
    grep -q "\"version\": *\"$version\"" "$manifest" 2>/dev/null && return 0
    echo "installing $pkg@$version into $dir"
    mkdir -p "$dir" &&
        (cd "$dir" &&
            { [ -f package.json ] || echo "{\"name\":\"switchboard-$(basename "$dir")\",\"private\":true}" >package.json; } &&
            npm install --no-audit --no-fund --loglevel=error "$pkg@$version" >/dev/null </dev/null) &&
        grep -q "\"version\": *\"$version\"" "$manifest" ||
        { echo "FAIL installing $pkg@$version into $dir" >&2; return 1; }
}

# new_stack NAME [DIR...]: STACK, a fresh run folder NAME.XXXXXX under RUNS_DIR (default
# $INTEROP_DIR/runs) with bin/, logs/ and each DIR; SB, a private copy of $SWITCHBOARD_BIN in
# it: every worker of the run then has /proc/PID/exe == $SB, which is how the leftover check
# tells ours apart from other such processes on the machine.
new_stack() {
    local name=$1 runs=${RUNS_DIR:-$INTEROP_DIR/runs} d
    shift
    mkdir -p "$runs" && STACK=$(mktemp -d "$runs/$name.XXXXXX") && mkdir -p "$STACK/bin" "$STACK/logs" || return 1
    for d in "$@"; do mkdir -p "$STACK/$d" || return 1; done
    cp "$SWITCHBOARD_BIN" "$STACK/bin/switchboard" && SB=$STACK/bin/switchboard
}

http_get() { # URL: body on stdout; fails unless 2xx
    "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

alive() { # pid: running and not a zombie
    [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every $poll seconds.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            note "${not_ready}$what not ready after ${secs}s"
            return 1
        fi
        sleep "$poll"
    done
}

show_log() { # FILE: its last 20 lines on stderr
    tail -20 "$1" | sed "s/^/$log_indent/" >&2
}

stop() { # NAME: SIGTERM, SIGKILL after 10 s
    local name=$1 pid=${pids[$1]:-}
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            note "$name (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null
    unset "pids[$name]"
}

# ours [MARKER...]: pids of live processes running $SB (workers, demo-servers) or
# $FIXTURE (conformance fixtures), or whose command line contains one of the MARKERs (e.g. the
# server-everything children carry $STACK as an extra argument; nginx's master has
# $STACK in its -p).
ours() {
    local p cmd m exe
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$$" ] && continue
        exe=$(readlink "$p/exe" 2>/dev/null)
        if [ -n "$exe" ] && { [ "$exe" = "$SB" ] || [ "$exe" = "${FIXTURE:-}" ]; }; then
            awk '{ exit !($3 != "Z") }' "$p/stat" 2>/dev/null && echo "${p#/proc/}"
            continue
        fi
        [ $# -gt 0 ] || continue
        awk '{ exit !($3 != "Z") }' "$p/stat" 2>/dev/null || continue
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

# check_leftovers WHAT [MARKER...]: once the stack was stopped, waits up to 5 s for
# `ours MARKER...` to be empty; then a PASS line ("no process left behind: WHAT"), or
# a FAIL line listing them (they are SIGKILLed and status set to 1).
check_leftovers() {
    local what=$1 left="" _ p
    shift
    for _ in $(seq 50); do # workers kill and reap their children on shutdown
        left=$(ours "$@")
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        echo "FAIL no process left behind: $(echo "$left" | wc -w) still running"
        for p in $left; do echo "   $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
        # shellcheck disable=SC2086 # one word per pid
        kill -KILL $left 2>/dev/null
        status=1
    else
        echo "PASS no process left behind: $what"
    fi
}

# finish LABEL KEPT: the closing line (time since $started_at); removes $STACK when
# status is 0, else says KEPT (e.g. "logs") are kept there; exits with status.
finish() {
    local secs
    secs=$(awk -v a="$started_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if [ $status -eq 0 ]; then
        rm -rf "$STACK"
        echo "$1: passed (${secs}s); removed $STACK"
    else
        echo "$1: FAILED (${secs}s); $2 kept in $STACK"
    fi
    exit $status
}

start_redis() { # PORT: no persistence, run from $RUN_DIR, log in $STACK/logs/redis.log
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "${RUN_DIR:-$STACK}" >"$STACK/logs/redis.log" 2>&1 </dev/null &
    pids[redis]=$!
    wait_until 10 redis-server redis-cli -p "$1" ping
}

# worker_command PORT REDIS_PORT SECRET_KEY [VAR=VALUE...]: sets the array worker_cmd
# to `$SB serve` with a clean environment (only what is set here, plus the VARs), so
# neither the caller's SWITCHBOARD_* variables nor a switchboard.toml leak in (run it
# from a folder without one).
worker_command() {
    local port=$1 redis_port=$2 key=$3
    shift 3
    worker_cmd=(env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG="$WORKER_RUST_LOG"
        SWITCHBOARD_LISTEN="127.0.0.1:$port"
        SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$redis_port"
        SWITCHBOARD_SECRET_KEY="$key"
        "$@" "$SB" serve)
}

# start_worker NAME PORT REDIS_PORT SECRET_KEY [VAR=VALUE...]: worker_command run
# from $RUN_DIR, log in $STACK/logs/NAME.log.
start_worker() {
    local name=$1
    shift
    worker_command "$@"
    (cd "${RUN_DIR:-$STACK}" && exec "${worker_cmd[@]}" >"$STACK/logs/$name.log" 2>&1 </dev/null) &
    pids[$name]=$!
}

wait_worker() { # NAME PORT
    wait_until 30 "$1 (/readyz)" "$ready_probe" "http://127.0.0.1:$2/readyz" || {
        show_log "$STACK/logs/$1.log"
        return 1
    }
}

# nginx_conf CONF DIR PORT UPSTREAM_PORT...: writes CONF, deploy/nginx.conf with its
# marked lines pointed at this run (one upstream server line per worker port, the
# listen port, the pid file and private temp paths in DIR); fails unless the marked
# lines were found.
nginx_conf() {
    local conf=$1 dir=$2 port=$3
    shift 3
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
                # Private temp paths (the compiled-in ones are under /var/lib/nginx).
                n = split("client_body proxy fastcgi uwsgi scgi", t, " ")
                for (i = 1; i <= n; i++) printf "    %s_temp_path %s/%s;\n", t[i], dir, t[i]
            }
        ' "$root/deploy/nginx.conf"
    } >"$conf"
    [ "$(grep -c '# upstream-server$' "$conf")" -eq $# ] && grep -q "listen 127.0.0.1:$port; # listen" "$conf"
}

# start_nginx NAME PORT UPSTREAM_PORT...: nginx_conf in $STACK/NAME, run in the
# foreground of a background job, log in $STACK/logs/NAME.log; waits for /readyz
# through it.
start_nginx() {
    local name=$1 port=$2
    shift 2
    local dir=$STACK/$name nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    mkdir -p "$dir"
    nginx_conf "$dir/nginx.conf" "$dir" "$port" "$@" || {
        echo "FAIL start-up: could not rewrite deploy/nginx.conf (marked lines missing)"
        return 1
    }
    "$nginx_bin" -e stderr -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' >"$STACK/logs/$name.log" 2>&1 </dev/null &
    pids[$name]=$!
    wait_until 15 "$name (/readyz through it)" "$ready_probe" "http://127.0.0.1:$port/readyz" || {
        show_log "$STACK/logs/$name.log"
        return 1
    }
}

mcp_requests() { # PORT: "total by-status" of /mcp requests from the worker's /metrics
    http_get "http://127.0.0.1:$1/metrics" | awk '
        /^switchboard_http_requests_total\{/ && /route="\/mcp"/ {
            match($0, /status="[0-9]+"/); s = substr($0, RSTART + 8, RLENGTH - 9)
            total += $NF; by[s] += $NF
        }
        END { out = total + 0; for (s in by) out = out " " s "=" by[s]; print out }'
}
