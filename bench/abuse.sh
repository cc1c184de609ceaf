#!/usr/bin/env bash
# What one token can do to a fleet: a flood of /init with big credentials, a flood of small
# /init, and a request flood beside a second client. Loopback only, bounded in count and time;
# a private redis-server and one worker, stopped on exit.
#
#   bench/abuse.sh                       # the binary under test
#   SWITCHBOARD_BIN=/path/to/old/switchboard bench/abuse.sh   # the same flood against another
#
# Knobs: ABUSE_BIG=300 (/init with ~1 MB credentials; each is stored by a binary without
# limits, so keep it to what the machine's memory holds), ABUSE_SMALL=5000 (small /init),
# ABUSE_SECS=10 (length of the request flood), ABUSE_CONCURRENCY=16 (the flooder's).
# Prints one JSON object: Redis used_memory growth and sessions per phase, and the second
# client's requests/s alone and during the flood.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
BIG=${ABUSE_BIG:-300}
SMALL=${ABUSE_SMALL:-5000}
SECS=${ABUSE_SECS:-10}
CONC=${ABUSE_CONCURRENCY:-16}
REDIS_PORT=$(port)
PORT=$(port)
start_redis "$REDIS_PORT"

env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn \
    SWITCHBOARD_LISTEN="127.0.0.1:$PORT" SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    SWITCHBOARD_SECRET_KEY="$(head -c32 /dev/urandom | base64)" SWITCHBOARD_AUTH_STATIC_TOKENS=flood,victim \
    "$SB" serve >"$TMP/worker.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$PORT" "$REDIS_PORT" "$BIG" "$SMALL" "$SECS" "$CONC" <<'PY'
import http.client, json, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

port, redis_port, big, small, secs, conc = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
local = threading.local()

def request(method, path, body=None, session=None):
    headers = {"content-type": "application/json"}
    if session:
        headers["mcp-session-id"] = session
    for attempt in range(2):
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        local.conn = conn
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            local.conn = None
    return 0, b""

def redis(*args):
    return subprocess.run(["redis-cli", "-p", redis_port, *args], capture_output=True, text=True).stdout

def used_memory():
    return next(int(l.split(":")[1]) for l in redis("INFO", "memory").splitlines() if l.startswith("used_memory:"))

def sessions():
    return sum(1 for k in redis("--scan", "--pattern", "switchboard:{*}").splitlines() if k.endswith("}"))

def flood_init(count, credentials):
    body = json.dumps({"credentials": credentials})
    before, started = used_memory(), time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: request("POST", "/init", body)[0], range(count)))
    return {
        "requests": count,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "used_memory_growth_mb": round((used_memory() - before) / 2**20, 1),
        "sessions_after": sessions(),
    }

report = {"big_credentials": flood_init(big, {"token": "flood", "padding": "x" * 1_000_000})}
redis("FLUSHALL")
report["small_init"] = flood_init(small, {"token": "flood"})

def session_of(token):
    return json.loads(request("POST", "/init", json.dumps({"credentials": {"token": token}}))[1])["session_id"]

victim, flooder = session_of("victim"), session_of("flood")

def victim_rate(duration):
    done, bad, end = 0, 0, time.monotonic() + duration
    while time.monotonic() < end:
        status, _ = request("GET", "/session", session=victim)
        done, bad = done + 1, bad + (status != 200)
    return {"requests_per_sec": round(done / duration, 1), "not_200": bad}

report["victim_alone"] = victim_rate(secs / 2)
stop, flood_statuses = threading.Event(), []
def flood():
    mine = []
    while not stop.is_set():
        mine.append(request("GET", "/session", session=flooder)[0])
    flood_statuses.extend(mine)
threads = [threading.Thread(target=flood) for _ in range(conc)]
for t in threads:
    t.start()
report["victim_during_flood"] = victim_rate(secs)
stop.set()
for t in threads:
    t.join()
report["flood"] = {str(s): flood_statuses.count(s) for s in sorted(set(flood_statuses))}
print(json.dumps(report, indent=2))
PY
