#!/usr/bin/env bash
# The processes the bridge checks run against: one redis-server and two workers
# (a, b) sharing it, each on a free 127.0.0.1 port, started in the background and
# stopped by pid. State lives in $STACK (set by run.sh): bin/switchboard (the
# binary under test), pids/NAME.pid, logs/NAME.log, stack.env.
#
#   stack.sh up               start redis-server and workers a and b; write stack.env
#   stack.sh stop-worker X    SIGTERM worker X (SIGKILL after 10 s) and wait until it is gone
#   stack.sh start-worker X   start worker X again on its port and wait for /readyz
#   stack.sh pid NAME         print the pid of NAME (redis, worker-a, worker-b)
#   stack.sh down             stop everything above that is still running
#
# The workers run with a clean environment (only what is set here), from $STACK,
# so neither the caller's SWITCHBOARD_* variables nor a switchboard.toml leak in.
set -euo pipefail
: "${STACK:?run.sh sets STACK}"
STACK=$(cd "$STACK" && pwd)
SB=$STACK/bin/switchboard
PY=${PYTHON:-python3}
mkdir -p "$STACK/pids" "$STACK/logs"

# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
note() { echo "stack: $*" >&2; }
not_ready=""
poll=0.05

pid_of() { cat "$STACK/pids/$1.pid" 2>/dev/null; }

# stop NAME: SIGTERM (plus SIGCONT, in case a check left it stopped), SIGKILL after 10 s.
# Not lib.sh's stop or start_worker: every stack.sh command is a process of its own,
# so the pids live in files and the workers are not its children.
stop() {
    local name=$1 pid
    pid=$(pid_of "$name") || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            echo "stack: $name (pid $pid) ignored SIGTERM for 10 s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        fi
    fi
    rm -f "$STACK/pids/$name.pid"
}

http_ok() {
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"
}

start_worker() {
    local name=$1 port
    # shellcheck disable=SC1091 # REDIS_PORT, SECRET_KEY, WORKER_*_PORT come from stack.env
    source "$STACK/stack.env"
    port=$(eval echo "\$WORKER_${name^^}_PORT")
    # shellcheck disable=SC2153 # from stack.env
    worker_command "$port" "$REDIS_PORT" "$SECRET_KEY" SWITCHBOARD_AUTH_STATIC_TOKENS=demo SWITCHBOARD_IDLE_TTL_SECS=600
    # Appended to: a worker stopped and started again keeps one log.
    (cd "$STACK" && exec "${worker_cmd[@]}" >>"$STACK/logs/worker-$name.log" 2>&1) &
    echo $! >"$STACK/pids/worker-$name.pid"
    wait_until 20 "worker $name" http_ok "http://127.0.0.1:$port/readyz" || {
        tail -20 "$STACK/logs/worker-$name.log" >&2
        return 1
    }
}

case "${1:-}" in
up)
    rport=$(free_ports 1)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$STACK" >"$STACK/logs/redis.log" 2>&1 &
    echo $! >"$STACK/pids/redis.pid"
    wait_until 10 redis redis-cli -p "$rport" ping
    {
        echo "REDIS_PORT=$rport"
        echo "WORKER_A_PORT=$(free_ports 1)"
        echo "WORKER_B_PORT=$(free_ports 1)"
        echo "SECRET_KEY=$("$PY" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
    } >"$STACK/stack.env"
    start_worker a
    start_worker b
    ;;
start-worker) start_worker "$2" ;;
stop-worker) stop "worker-$2" ;;
pid) pid_of "$2" ;;
down)
    for name in worker-a worker-b redis; do stop "$name"; done
    ;;
*)
    echo "usage: stack.sh up|down|start-worker X|stop-worker X|pid NAME" >&2
    exit 2
    ;;
esac
