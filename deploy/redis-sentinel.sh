#!/usr/bin/env bash
# A local Redis Sentinel setup for development: one master, one replica and three sentinels
# (quorum 2) watching the master name `switchboard`. No persistence, loopback only.
#
#   deploy/redis-sentinel.sh start DIR [BASE_PORT]  # master BASE_PORT, replica +1, sentinels +2..+4
#   deploy/redis-sentinel.sh stop  DIR              # stops the processes recorded in DIR (by pidfile)
#
# DIR holds the generated config files (sentinels rewrite theirs as they learn the topology),
# pidfiles and logs. On success `start` prints, on stdout, lines that a shell can `eval`:
#   MASTER=127.0.0.1:M
#   REPLICA=127.0.0.1:R
#   SENTINELS=127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3
#   SWITCHBOARD_REDIS_URL=redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/switchboard
# `start` on a DIR whose setup is already up prints them again; a stopped or half-started DIR is
# cleaned and started afresh (empty), on the same ports when no BASE_PORT is given and they are
# still free. Everything else goes to stderr. MASTER and REPLICA are the roles when printed;
# they swap on a failover (ask: redis-cli -p S1 SENTINEL get-master-addr-by-name switchboard).
# Set REDIS_SERVER / REDIS_CLI to use other binaries (Redis 7.0 or later).
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
HOST=127.0.0.1
NAME=switchboard
QUORUM=2
STOPPED=0
STATE_FILE=sentinel.ports

die() { echo "redis-sentinel: error: $*" >&2; exit 1; }
say() { echo "redis-sentinel: $*" >&2; }

usage() {
    echo "usage: $0 start DIR [BASE_PORT] | $0 stop DIR" >&2
    exit 2
}

port_busy() {
    timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

port_usable() {
    [[ $1 -ge 1024 && $1 -le 65535 && $1 -ne 6379 ]] && ! port_busy "$1"
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

# PORTS = (first master, first replica, sentinel 1, 2, 3); pidfiles are named by port.
read_ports() {
    PORTS=()
    [[ -s $DIR/$STATE_FILE ]] && read -r -a PORTS <"$DIR/$STATE_FILE"
    return 0
}
pidfile_of() { # index
    if [[ $1 -lt 2 ]]; then echo "$DIR/redis-${PORTS[$1]}.pid"; else echo "$DIR/sentinel-${PORTS[$1]}.pid"; fi
}

print_result() {
    local sentinels="$HOST:${PORTS[2]},$HOST:${PORTS[3]},$HOST:${PORTS[4]}"
    # The roles as the sentinels see them now (they swap on a failover).
    local master replica
    master=$(cli "${PORTS[2]}" SENTINEL GET-MASTER-ADDR-BY-NAME "$NAME" 2>/dev/null | tail -n 1)
    if [[ $master == "${PORTS[1]}" ]]; then replica=${PORTS[0]}; else master=${PORTS[0]} replica=${PORTS[1]}; fi
    say "up: master $HOST:$master, replica $HOST:$replica, sentinels $sentinels (quorum $QUORUM)"
    say "logs, configs and pidfiles in $DIR; stop with: $0 stop $DIR"
    echo "MASTER=$HOST:$master"
    echo "REPLICA=$HOST:$replica"
    echo "SENTINELS=$sentinels"
    echo "SWITCHBOARD_REDIS_URL=redis+sentinel://$sentinels/$NAME"
}

# Sentinels first (so they do not fail over while the data nodes go), then the data nodes.
stop_all() {
    read_ports
    local group i pid
    for group in "2 3 4" "0 1"; do
        local pids=()
        for i in $group; do
            [[ -n ${PORTS[$i]:-} ]] || continue
            pid=$(our_pid "$(pidfile_of "$i")" "${PORTS[$i]}")
            if [[ -n $pid ]]; then
                kill -TERM "$pid" 2>/dev/null || true
                STOPPED=$((STOPPED + 1))
                pids+=("$pid")
            fi
        done
        for _ in $(seq 100); do
            local left=()
            for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
            pids=("${left[@]}")
            [[ ${#pids[@]} -eq 0 ]] && break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do
            say "pid $pid ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for i in "${!PORTS[@]}"; do rm -f "$(pidfile_of "$i")" "$DIR/dump-${PORTS[$i]}.rdb"; done
    return 0
}

# 0 = every recorded process runs, 1 = none, 2 = some.
running_state() {
    read_ports
    [[ ${#PORTS[@]} -eq 5 ]] || return 1
    local i up=0
    for i in 0 1 2 3 4; do
        [[ -n $(our_pid "$(pidfile_of "$i")" "${PORTS[$i]}") ]] && up=$((up + 1))
    done
    [[ $up -eq 5 ]] && return 0
    [[ $up -eq 0 ]] && return 1
    return 2
}

# Value of field $2 in the flat `SENTINEL MASTER` reply of the sentinel on port $1.
master_field() {
    cli "$1" SENTINEL MASTER "$NAME" 2>/dev/null | awk -v k="$2" 'found { print; exit } $0 == k { found = 1 }'
}

# Every sentinel sees a healthy master with one healthy replica and the two other sentinels.
sentinels_ready() {
    local s flags
    for s in "${PORTS[@]:2:3}"; do
        flags=$(master_field "$s" flags)
        [[ $flags == master ]] || return 1
        [[ $(master_field "$s" num-slaves) == 1 ]] || return 1
        [[ $(master_field "$s" num-other-sentinels) == 2 ]] || return 1
        cli "$s" SENTINEL REPLICAS "$NAME" 2>/dev/null | grep -qx 'slave' || return 1
        cli "$s" SENTINEL REPLICAS "$NAME" 2>/dev/null | grep -Eq 's_down|o_down|disconnected' && return 1
    done
    return 0
}

pick_ports() {
    local base=$1 i
    PORTS=()
    if [[ -n $base ]]; then
        [[ $base =~ ^[0-9]+$ ]] || die "BASE_PORT must be a number, got '$base'"
        for i in 0 1 2 3 4; do
            local p=$((base + i))
            [[ $p -ne 6379 ]] || die "port 6379 is reserved for the system Redis; pick another BASE_PORT"
            [[ $p -ge 1024 && $p -le 65535 ]] || die "port $p out of range (1024-65535)"
            port_busy "$p" && die "port $p is already in use"
            PORTS+=("$p")
        done
        return 0
    fi
    for _ in $(seq 50); do
        base=$((22000 + RANDOM % 9000))
        for i in 0 1 2 3 4; do port_usable $((base + i)) || continue 2; done
        for i in 0 1 2 3 4; do PORTS+=($((base + i))); done
        return 0
    done
    die "found no 5 free consecutive ports; pass BASE_PORT"
}

block_usable() {
    local i
    for i in 0 1 2 3 4; do port_usable $(($1 + i)) || return 1; done
}

wait_pong() { # port logfile
    for _ in $(seq 100); do
        [[ $(cli "$1" PING 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    tail -n 5 "$2" >&2 2>/dev/null || true
    stop_all
    die "the process on port $1 did not answer PING within 10 s (log above)"
}

start_all() {
    local base=${1:-}
    command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found (Debian: apt-get install redis-server)"
    command -v "$REDIS_CLI" >/dev/null || die "$REDIS_CLI not found (Debian: apt-get install redis-tools)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)

    local state=0
    running_state || state=$?
    if [[ $state -eq 0 ]]; then
        if [[ -n $base && ${PORTS[0]} != "$base" ]]; then
            die "a setup already runs from $DIR on ports ${PORTS[*]}; stop it first"
        fi
        sentinels_ready || die "processes on ports ${PORTS[*]} run but the sentinels do not see a master and a replica; run '$0 stop $DIR' and start again"
        say "already running"
        print_result
        return 0
    fi
    [[ $state -eq 2 ]] && say "some processes of a previous start are gone; stopping the rest first"
    local previous=${PORTS[0]:-}
    stop_all
    # Without BASE_PORT, a restart keeps the previous ports (and so the URL) when they are free.
    if [[ -z $base && -n $previous ]] && block_usable "$previous"; then
        base=$previous
    fi
    pick_ports "$base"
    echo "${PORTS[*]}" >"$DIR/$STATE_FILE"

    local m=${PORTS[0]} r=${PORTS[1]} i p conf
    # Data nodes get config files so that sentinels' CONFIG REWRITE after a failover works.
    for i in 0 1; do
        p=${PORTS[$i]}
        conf=$DIR/redis-$p.conf
        # A replica keeps the RDB of its full sync on disk; a fresh start must not load an old one.
        rm -f "$DIR/redis-$p.log" "$DIR/dump-$p.rdb"
        {
            echo "port $p"
            echo "bind $HOST"
            echo "protected-mode yes"
            echo "save \"\""
            echo "appendonly no"
            echo "dbfilename dump-$p.rdb"
            echo "daemonize yes"
            echo "dir \"$DIR\""
            echo "pidfile \"$DIR/redis-$p.pid\""
            echo "logfile \"$DIR/redis-$p.log\""
            [[ $i -eq 1 ]] && echo "replicaof $HOST $m"
        } >"$conf"
        "$REDIS_SERVER" "$conf" >/dev/null || { stop_all; die "redis-server failed to start on port $p"; }
        wait_pong "$p" "$DIR/redis-$p.log"
    done
    # The replica must be in sync before the sentinels look, or they start with no replica.
    local synced=""
    for _ in $(seq 100); do
        if cli "$r" INFO replication 2>/dev/null | grep -q '^master_link_status:up'; then synced=1; break; fi
        sleep 0.1
    done
    [[ -n $synced ]] || { stop_all; die "the replica on port $r did not sync with the master within 10 s"; }

    for i in 2 3 4; do
        p=${PORTS[$i]}
        conf=$DIR/sentinel-$p.conf
        rm -f "$DIR/sentinel-$p.log"
        cat >"$conf" <<EOF
port $p
bind $HOST
protected-mode yes
daemonize yes
dir "$DIR"
pidfile "$DIR/sentinel-$p.pid"
logfile "$DIR/sentinel-$p.log"
sentinel monitor $NAME $HOST $m $QUORUM
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 5000
sentinel parallel-syncs $NAME 1
EOF
        "$REDIS_SERVER" "$conf" --sentinel >/dev/null || { stop_all; die "sentinel failed to start on port $p"; }
        wait_pong "$p" "$DIR/sentinel-$p.log"
    done

    # Sentinels discover the replica and each other through the master (hello messages every 2 s).
    for _ in $(seq 300); do
        if sentinels_ready; then
            print_result
            return 0
        fi
        sleep 0.1
    done
    cli "${PORTS[2]}" SENTINEL MASTER "$NAME" >&2 || true
    stop_all
    die "the sentinels did not all see the master, the replica and each other within 30 s"
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
case $CMD in
    start)
        [[ $# -le 3 ]] || usage
        start_all "${3:-}"
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
            say "no setup recorded in $DIR; nothing to stop"
            exit 0
        fi
        stop_all
        if [[ $STOPPED -eq 0 ]]; then
            say "nothing was running (ports ${PORTS[*]})"
        else
            say "stopped $STOPPED process(es) (ports ${PORTS[*]})"
        fi
        ;;
    *) usage ;;
esac
