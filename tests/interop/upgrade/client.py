"""HTTP client of the upgrade test (stdlib only): creates sessions, checks them, runs load.

    python3 client.py create BASE_URL COUNT OUT_JSON
        COUNT sessions on each door: /init (half of them get state with PATCH /session and
        a cached result) and /mcp initialize (half get a cached result). OUT_JSON:
        [{"door": "legacy"|"mcp", "id", "state": {...}}].
    python3 client.py check BASE_URL SESSIONS_JSON
        Every session served: GET /session (its state as set) or /mcp tools/list. Prints
        "ok N"; exits 1 naming the first failures.
    python3 client.py load BASE_URL SESSIONS_JSON STATUS_FILE STOP_FILE CONCURRENCY MAX_SECONDS MAX_CALLS
        Closed-loop calls on the sessions until STOP_FILE exists, MAX_SECONDS passed or
        MAX_CALLS were made (all bounded): a legacy session gets POST /call-tool echo,
        POST /call-tool survey_summary (a cached result) or PATCH /session; an /mcp
        session tools/call echo or survey_summary. A call fails when its status is not
        200, it has a JSON-RPC error or a tool error, or the transport failed. STATUS_FILE
        is rewritten every 0.2 s and at the end: {"calls", "failed", "done", "errors"}.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

PROTOCOL = "2025-11-25"
mode, base = sys.argv[1], sys.argv[2]
url = urllib.parse.urlparse(base)
lock = threading.Lock()
counts = {"calls": 0, "failed": 0, "errors": []}


def connect():
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def mcp_headers(sid=None):
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer demo",
    }
    if sid:
        headers.update({"Mcp-Session-Id": sid, "Mcp-Protocol-Version": PROTOCOL})
    return headers


def request(conn, method, path, body, headers, want=None):
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    text = response.read().decode("utf-8", "replace")
    if want is not None and response.status != want:
        raise RuntimeError(f"{method} {path}: {response.status} {text[:300]}")
    return response.status, text, response.getheader("mcp-session-id")


def rpc_answer(text, rid):
    """The JSON-RPC message with id `rid` of a JSON or SSE body."""
    if text.lstrip().startswith("{"):
        candidates = [json.loads(text)]
    else:
        candidates = [json.loads(l[5:]) for l in text.splitlines() if l.startswith("data:") and l[5:].strip()]
    return next((m for m in candidates if m.get("id") == rid), None)


def one_call(conn, session, n):
    sid = session["id"]
    if session["door"] == "legacy":
        headers = {"Content-Type": "application/json", "Mcp-Session-Id": sid}
        kind = n % 3
        if kind == 2:
            status, text, _ = request(conn, "PATCH", "/session", {"n": n}, headers)
        else:
            tool, args = ("echo", {"text": f"c{n}"}) if kind == 0 else ("survey_summary", {"survey": "support-q3"})
            status, text, _ = request(conn, "POST", "/call-tool", {"tool": tool, "arguments": args}, headers)
        return status == 200, f"{status} {text[:200]}"
    headers = mcp_headers(sid)
    tool, args = ("echo", {"text": f"m{n}"}) if n % 2 == 0 else ("survey_summary", {"survey": "support-q3"})
    body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": tool, "arguments": args}}
    status, text, _ = request(conn, "POST", "/mcp", body, headers)
    if status != 200:
        return False, f"{status} {text[:200]}"
    answer = rpc_answer(text, n)
    ok = answer is not None and "result" in answer and not answer["result"].get("isError")
    return ok, f"{status} {text[:200]}"


def load_worker(index):
    conn = connect()
    n = index
    while time.monotonic() < deadline and not os.path.exists(stop_path):
        with lock:
            if counts["calls"] >= cap:
                return
        session = sessions[n % len(sessions)]
        try:
            ok, detail = one_call(conn, session, n)
        except Exception as e:  # a transport failure is a failed call
            ok, detail = False, f"{type(e).__name__}: {e}"
            conn.close()
            conn = connect()
        with lock:
            counts["calls"] += 1
            if not ok:
                counts["failed"] += 1
                if len(counts["errors"]) < 20:
                    counts["errors"].append(f"{session['door']} {detail}")
        n += step


def create(count, out):
    conn, sessions = connect(), []
    for i in range(count):
        _, text, _ = request(conn, "POST", "/init", {"credentials": {"token": "demo"}}, {"Content-Type": "application/json"}, 200)
        session = {"door": "legacy", "id": json.loads(text)["session_id"], "state": {}}
        if i % 2 == 0:
            headers = {"Content-Type": "application/json", "Mcp-Session-Id": session["id"]}
            session["state"] = {"step": i, "who": "upgrade"}
            request(conn, "PATCH", "/session", session["state"], headers, 200)
            call = {"tool": "survey_summary", "arguments": {"survey": "support-q3"}}
            request(conn, "POST", "/call-tool", call, headers, 200)
        sessions.append(session)
    for i in range(count):
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "upgrade", "version": "0"}}}
        _, _, sid = request(conn, "POST", "/mcp", init, mcp_headers(), 200)
        request(conn, "POST", "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, mcp_headers(sid), 202)
        if i % 2 == 0:
            ok, detail = one_call(conn, {"door": "mcp", "id": sid}, 1)
            if not ok:
                raise RuntimeError(f"cached call on a new /mcp session: {detail}")
        sessions.append({"door": "mcp", "id": sid, "state": {}})
    json.dump(sessions, open(out, "w"))
    print(f"created {len(sessions)} sessions")


def check(sessions):
    conn, bad = connect(), []
    for n, session in enumerate(sessions):
        try:
            if session["door"] == "legacy":
                _, text, _ = request(conn, "GET", "/session", None, {"Mcp-Session-Id": session["id"]}, 200)
                state = json.loads(text).get("state", {})
                if any(state.get(k) != v for k, v in session["state"].items()):
                    bad.append(f"legacy {session['id'][:8]}: state {state} lacks {session['state']}")
            else:
                body = {"jsonrpc": "2.0", "id": 1000 + n, "method": "tools/list"}
                _, text, _ = request(conn, "POST", "/mcp", body, mcp_headers(session["id"]), 200)
                answer = rpc_answer(text, 1000 + n)
                if not answer or not answer.get("result", {}).get("tools"):
                    bad.append(f"mcp {session['id'][:8]}: {text[:200]}")
        except Exception as e:
            bad.append(f"{session['door']} {session['id'][:8]}: {e}")
            conn.close()
            conn = connect()
    if bad:
        print(f"{len(bad)} of {len(sessions)} sessions not served: {bad[:5]}")
        sys.exit(1)
    print(f"ok {len(sessions)}")


def load(sessions_file, status_file, stop_file, concurrency, max_seconds, max_calls):
    global sessions, deadline, stop_path, cap, step
    sessions, stop_path, cap, step = json.load(open(sessions_file)), stop_file, max_calls, concurrency
    deadline = time.monotonic() + max_seconds

    def write_status(done):
        with lock:
            snapshot = dict(counts, done=done)
        tmp = status_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snapshot, f)
        os.replace(tmp, status_file)

    threads = [threading.Thread(target=load_worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        write_status(False)
        time.sleep(0.2)
    write_status(True)


if mode == "create":
    create(int(sys.argv[3]), sys.argv[4])
elif mode == "check":
    check(json.load(open(sys.argv[3])))
elif mode == "load":
    load(sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8]))
else:
    sys.exit(f"unknown mode {mode}")
