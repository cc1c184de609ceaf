#!/usr/bin/env bash
# A local 3-master Redis Cluster for development (no replicas, no persistence, loopback only).
#
#   deploy/redis-cluster.sh start DIR [BASE_PORT]   # nodes on BASE_PORT, +1, +2 (default: free ports)
#   deploy/redis-cluster.sh stop  DIR               # stops the nodes recorded in DIR (by pidfile)
#
# DIR holds the pidfiles, logs and cluster config files. On success `start` prints, on stdout,
# lines that a shell can `eval` (values contain no spaces):
#   NODES=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   SEED_URLS=redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3   (one URL per seed node)
#   SWITCHBOARD_REDIS_URL=redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3  (the worker's form)
# Everything else goes to stderr. `start` on a DIR whose cluster is already up prints the same
# lines again; a stopped or half-started DIR is cleaned and started afresh (empty), on the same
# ports as before when no BASE_PORT is given and they are still free.
# Cluster nodes also listen on their bus port (port + 10000), which must be free too.
# Set REDIS_SERVER / REDIS_CLI to use other binaries (Redis 7.0 or later).
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
HOST=127.0.0.1
NODES_COUNT=3
STOPPED=0
STATE_FILE=cluster.ports

die() { echo "redis-cluster: error: $*" >&2; exit 1; }
say() { echo "redis-cluster: $*" >&2; }

usage() {
    echo "usage: $0 start DIR [BASE_PORT] | $0 stop DIR" >&2
    exit 2
}

# True when something accepts connections on HOST:$1.
port_busy() {
    timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# True when $1 is a usable node port: in range, not 6379, and it and its bus port are free.
port_usable() {
    local p=$1
    [[ $p -ge 1024 && $p -le 55535 && $p -ne 6379 && $((p + 10000)) -ne 6379 ]] || return 1
    ! port_busy "$p" && ! port_busy $((p + 10000))
}

# The pid in pidfile $1 if that process is a redis-server serving HOST:$2, else nothing.
# Checking the process title keeps a recycled pid (or anyone else's Redis) safe from us.
our_pid() {
    local pidfile=$1 port=$2 pid cmd
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
    [[ $cmd == redis-server*"$HOST:$port"* ]] && echo "$pid"
    return 0
}

# True while pid $1 runs (a zombie waiting for its parent to reap it counts as gone).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

cli() { "$REDIS_CLI" -h "$HOST" -p "$1" "${@:2}"; }

read_ports() {
    PORTS=()
    [[ -s $DIR/$STATE_FILE ]] && read -r -a PORTS <"$DIR/$STATE_FILE"
    return 0
}

print_result() {
    local nodes="" urls="" p
    for p in "${PORTS[@]}"; do
        nodes+="${nodes:+,}$HOST:$p"
        urls+="${urls:+,}redis://$HOST:$p"
    done
    say "cluster up: ${#PORTS[@]} masters, logs and pidfiles in $DIR"
    say "stop it with: $0 stop $DIR"
    echo "NODES=$nodes"
    echo "SEED_URLS=$urls"
    echo "SWITCHBOARD_REDIS_URL=redis+cluster://$nodes"
}

stop_cluster() {
    read_ports
    local p pid pids=()
    for p in "${PORTS[@]}"; do
        pid=$(our_pid "$DIR/redis-$p.pid" "$p")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            STOPPED=$((STOPPED + 1))
            pids+=("$pid")
        fi
    done
    # Wait up to 10 s for a clean exit, then SIGKILL what is left.
    for _ in $(seq 100); do
        local left=()
        for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
        pids=("${left[@]}")
        [[ ${#pids[@]} -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        say "node pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
    for p in "${PORTS[@]}"; do
        rm -f "$DIR/redis-$p.pid" "$DIR/nodes-$p.conf"
    done
    return 0
}

# 0 = every recorded node runs, 1 = none, 2 = some.
running_state() {
    read_ports
    [[ ${#PORTS[@]} -eq 0 ]] && return 1
    local p up=0
    for p in "${PORTS[@]}"; do
        [[ -n $(our_pid "$DIR/redis-$p.pid" "$p") ]] && up=$((up + 1))
    done
    [[ $up -eq ${#PORTS[@]} ]] && return 0
    [[ $up -eq 0 ]] && return 1
    return 2
}

cluster_ok() {
    local p info
    for p in "${PORTS[@]}"; do
        info=$(cli "$p" CLUSTER INFO 2>/dev/null) || return 1
        [[ $info == *cluster_state:ok* && $info == *cluster_known_nodes:${#PORTS[@]}* ]] || return 1
    done
}

# True when NODES_COUNT node ports from $1 on are all usable.
block_usable() {
    local i
    for ((i = 0; i < NODES_COUNT; i++)); do port_usable $(($1 + i)) || return 1; done
}

pick_ports() {
    local base=$1 i
    PORTS=()
    if [[ -n $base ]]; then
        [[ $base =~ ^[0-9]+$ ]] || die "BASE_PORT must be a number, got '$base'"
        for ((i = 0; i < NODES_COUNT; i++)); do
            local p=$((base + i))
            [[ $p -ne 6379 ]] || die "port 6379 is reserved for the system Redis; pick another BASE_PORT"
            [[ $p -ge 1024 && $p -le 55535 ]] || die "port $p out of range (1024-55535, its bus port is +10000)"
            port_busy "$p" && die "port $p is already in use"
            port_busy $((p + 10000)) && die "cluster bus port $((p + 10000)) (port $p + 10000) is already in use"
            PORTS+=("$p")
        done
        return 0
    fi
    # Below the usual ephemeral range (32768+), bus ports included.
    for _ in $(seq 50); do
        base=$((15000 + RANDOM % 7000))
        block_usable "$base" || continue
        for ((i = 0; i < NODES_COUNT; i++)); do PORTS+=($((base + i))); done
        return 0
    done
    die "found no ${NODES_COUNT} free consecutive ports (with bus ports); pass BASE_PORT"
}

start_cluster() {
    local base=${1:-}
    command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found (Debian: apt-get install redis-server)"
    command -v "$REDIS_CLI" >/dev/null || die "$REDIS_CLI not found (Debian: apt-get install redis-tools)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)

    local state=0
    running_state || state=$?
    if [[ $state -eq 0 ]]; then
        if [[ -n $base && ${PORTS[0]} != "$base" ]]; then
            die "a cluster already runs from $DIR on ports ${PORTS[*]}; stop it first"
        fi
        cluster_ok || die "nodes on ports ${PORTS[*]} run but the cluster is not ok; run '$0 stop $DIR' and start again"
        say "already running"
        print_result
        return 0
    fi
    if [[ $state -eq 2 ]]; then
        say "some nodes of a previous start are gone; stopping the rest first"
    fi
    local previous=${PORTS[0]:-}
    stop_cluster

    # Without BASE_PORT, a restart keeps the previous ports (and so the URL) when they are free.
    if [[ -z $base && -n $previous ]] && block_usable "$previous"; then
        base=$previous
    fi
    pick_ports "$base"
    echo "${PORTS[*]}" >"$DIR/$STATE_FILE"

    local p
    for p in "${PORTS[@]}"; do
        rm -f "$DIR/nodes-$p.conf" "$DIR/redis-$p.log"
        "$REDIS_SERVER" \
            --port "$p" --bind "$HOST" --protected-mode yes \
            --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 5000 \
            --save '' --appendonly no \
            --daemonize yes --dir "$DIR" --pidfile "$DIR/redis-$p.pid" --logfile "$DIR/redis-$p.log" \
            >/dev/null || { stop_cluster; die "redis-server failed to start on port $p"; }
    done
    # --daemonize returns before the node listens: wait for PONG from each.
    for p in "${PORTS[@]}"; do
        local ok=""
        for _ in $(seq 100); do
            if [[ $(cli "$p" PING 2>/dev/null) == PONG ]]; then ok=1; break; fi
            sleep 0.1
        done
        if [[ -z $ok ]]; then
            tail -n 5 "$DIR/redis-$p.log" >&2 2>/dev/null || true
            stop_cluster
            die "node on port $p did not answer PING within 10 s (log above)"
        fi
    done

    local addrs=()
    for p in "${PORTS[@]}"; do addrs+=("$HOST:$p"); done
    if ! "$REDIS_CLI" --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        >"$DIR/cluster-create.log" 2>&1; then
        tail -n 20 "$DIR/cluster-create.log" >&2
        stop_cluster
        die "redis-cli --cluster create failed (output above)"
    fi

    for _ in $(seq 300); do
        if cluster_ok; then
            print_result
            return 0
        fi
        sleep 0.1
    done
    cli "${PORTS[0]}" CLUSTER INFO >&2 || true
    stop_cluster
    die "cluster_state did not become ok within 30 s"
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
case $CMD in
    start)
        [[ $# -le 3 ]] || usage
        start_cluster "${3:-}"
        ;;
    stop)
        [[ $# -le 3 ]] || usage # a BASE_PORT is accepted and ignored: DIR records the ports
        if [[ ! -d $DIR ]]; then
            say "no such directory $DIR; nothing to stop"
            exit 0
        fi
        DIR=$(cd "$DIR" && pwd)
        read_ports
        if [[ ${#PORTS[@]} -eq 0 ]]; then
            say "no cluster recorded in $DIR; nothing to stop"
            exit 0
        fi
        stop_cluster
        if [[ $STOPPED -eq 0 ]]; then
            say "nothing was running (ports ${PORTS[*]})"
        else
            say "stopped $STOPPED process(es) (ports ${PORTS[*]})"
        fi
        ;;
    *) usage ;;
esac
