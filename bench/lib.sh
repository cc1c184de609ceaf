# Shared scaffolding of the bench scripts (sourced, not run): ROOT and SB (the release
# binary, or SWITCHBOARD_BIN), a scratch folder TMP, every process whose pid is added to
# `pids` stopped on exit (then TMP removed), and helpers for free loopback ports and a
# private redis-server. Source it right after `set -euo pipefail`.
# shellcheck shell=bash disable=SC2034 # ROOT and SB are for the sourcing script

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
TMP=$(mktemp -d)
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# port: a free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something accepts on 127.0.0.1:PORT (30 s at most).
wait_port() {
    local _
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# start_redis PORT: a private redis-server on 127.0.0.1:PORT without persistence, in TMP;
# returns once it answers PING (10 s at most).
start_redis() {
    local _
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
