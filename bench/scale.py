#!/usr/bin/env python3
"""Helper for scale.sh; stdlib only.

  scale.py tools URL TOKEN          /init, GET /tools once (fills the shared tool list the cache
                                    policy reads), DELETE the session; prints
                                    '{"tools":N,"echo_annotations":{...}}'
  scale.py state URL TOKEN N        N sessions made by /init, each given a small `state` with
                                    PATCH /session (kept); prints '{"created":N,"errors":N,...}'
  scale.py report OUT               the markdown report of one scale.sh results directory
"""
import glob
import http.client
import json
import os
import sys
import time
import urllib.parse

SMALL_STATE = {"workflow": {"step": "review", "items": [1, 2, 3], "note": "small state for the scale bench"}}


# --- HTTP ------------------------------------------------------------------------------

class Client:
    """One keep-alive connection to URL's host."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.base = u.path.rstrip("/")
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, self.base + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                text = resp.read()
                return resp.status, text
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def init(self, token):
        status, text = self.request("POST", "/init", {"credentials": {"token": token}})
        if status != 200:
            raise RuntimeError(f"/init: HTTP {status}: {text[:200]!r}")
        return json.loads(text)["session_id"]


def cmd_tools(url, token):
    c = Client(url)
    sid = c.init(token)
    status, text = c.request("GET", "/tools", headers={"Mcp-Session-Id": sid})
    c.request("DELETE", "/session", headers={"Mcp-Session-Id": sid})
    if status != 200:
        print(json.dumps({"error": f"/tools: HTTP {status}: {text[:200]!r}"}))
        return 1
    tools = json.loads(text).get("tools", [])
    echo = next((t for t in tools if t.get("name") == "echo"), {})
    print(json.dumps({"tools": len(tools), "echo_annotations": echo.get("annotations")}))
    return 0


def cmd_state(url, token, n):
    c = Client(url)
    created = errors = 0
    started = time.monotonic()
    for _ in range(n):
        try:
            sid = c.init(token)
            status, _ = c.request("PATCH", "/session", SMALL_STATE, headers={"Mcp-Session-Id": sid})
            if status == 200:
                created += 1
            else:
                errors += 1
        except (OSError, RuntimeError, http.client.HTTPException, ValueError):
            errors += 1
    print(json.dumps({"created": created, "errors": errors, "secs": round(time.monotonic() - started, 2),
                      "state_bytes": len(json.dumps(SMALL_STATE, separators=(",", ":")))}))
    return 0


# --- report ----------------------------------------------------------------------------

def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def fmt(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"


def mib(kib):
    return None if kib is None else kib / 1024.0


def errs(r):
    if not r:
        return "failed"
    kinds = r.get("errors_by_kind") or {}
    e = r.get("errors", 0)
    s = str(e)
    if kinds:
        s += " (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"
    if r.get("cancelled"):
        s += f"; {r['cancelled']} in flight at the end"
    return s


def report(out):
    run = load(os.path.join(out, "run.json")) or {}
    pt = lambda name: load(os.path.join(out, "points", name + ".json"))  # noqa: E731
    lines = []
    w = lines.append
    w(f"# switchboard scale run — {run.get('started', '?')}")
    w("")
    w(f"Machine: {run.get('machine', '?')}; loadavg {run.get('loadavg_start', '?')} → {run.get('loadavg_end', '?')}; "
      f"{run.get('version', '?')}; redis {run.get('redis_version', '?')}, nginx {run.get('nginx_version', '?')}. "
      f"Everything on 127.0.0.1; load from `switchboard bench` (closed loop, one session per client, opened "
      f"before timing); tool `{run.get('tool', 'echo')}` {run.get('arguments', '')} of the demo server; "
      f"workers with default settings (max_children {run.get('max_children', '?')}, RUST_LOG={run.get('rust_log', '?')}).")
    w("")

    # 1
    w(f"## 1. Through nginx with 1, 2 and 3 workers (cache misses, `--scenario call`, {run.get('duration')} per point)")
    w("")
    w("| workers | concurrency | calls/s | p50 ms | p99 ms | max ms | ok | errors |")
    w("|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in run.get("workers_list", []):
        for c in run.get("nginx_concurrency", []):
            r = pt(f"part1__w{n}__call__c{c}") or {}
            w(f"| {n} | {c} | {fmt(r.get('calls_per_sec'))} | {fmt(r.get('p50_ms'), 2)} | {fmt(r.get('p99_ms'), 2)} | "
              f"{fmt(r.get('max_ms'), 2)} | {r.get('ok', '-')} | {errs(r) if r else 'failed'} |")
    w("")
    w("nginx from deploy/nginx.conf (upstream keepalive 64, `worker_processes auto`), its upstream lines pointed "
      "at the first N workers; the load generator, nginx, the workers, their demo-server children and Redis "
      "share the machine's cores.")
    w("")

    # 2
    w(f"## 2. Cache hits vs misses (one worker, one Redis, straight to the worker, {run.get('duration')} per point)")
    w("")
    w("| concurrency | hit calls/s | hit p50 ms | hit p99 ms | hits/ok | hit errors | miss calls/s | miss p50 ms | "
      "miss p99 ms | miss errors | hit/miss calls/s |")
    w("|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|")
    for c in run.get("cache_concurrency", []):
        h = pt(f"part2__call-cached__c{c}") or {}
        m = pt(f"part2__call__c{c}") or {}
        ratio = None
        if h.get("calls_per_sec") and m.get("calls_per_sec"):
            ratio = h["calls_per_sec"] / m["calls_per_sec"]
        w(f"| {c} | {fmt(h.get('calls_per_sec'))} | {fmt(h.get('p50_ms'), 3)} | {fmt(h.get('p99_ms'), 3)} | "
          f"{h.get('cached', '-')}/{h.get('ok', '-')} | {errs(h) if h else 'failed'} | "
          f"{fmt(m.get('calls_per_sec'))} | {fmt(m.get('p50_ms'), 2)} | {fmt(m.get('p99_ms'), 2)} | "
          f"{errs(m) if m else 'failed'} | {fmt(ratio)}× |")
    tools = load(os.path.join(out, "part2_tools.json")) or {}
    w("")
    w(f"Hits: `--scenario call-cached` (one untimed warm-up call per client, then the session's cached result). "
      f"`/tools` was listed once before (tool list: {tools.get('tools', '?')} tools, echo annotations "
      f"`{json.dumps(tools.get('echo_annotations'))}`). Misses: `--scenario call` (`\"cache\": false`, a spawn per call).")
    w("")

    # 3
    p3 = load(os.path.join(out, "part3.json")) or {}
    w("## 3. Cost as sessions grow (one worker, one Redis)")
    w("")
    init = pt("part3__init") or {}
    grown = p3.get("sessions_after_init", 0) - p3.get("sessions_before_init", 0)
    mem_delta = None
    per = None
    if p3.get("used_memory_after_init") is not None and p3.get("used_memory_before_init") is not None:
        mem_delta = p3["used_memory_after_init"] - p3["used_memory_before_init"]
        per = mem_delta / grown if grown > 0 else None
    w("| | value |")
    w("|---|---:|")
    w(f"| sessions in Redis before (base set) | {p3.get('sessions_before_init', '-')} |")
    w(f"| `bench --scenario init --requests {run.get('sessions')} --concurrency 32`: ok / errors / calls/s / p50 / p99 ms | "
      f"{init.get('ok', '-')} / {errs(init) if init else 'failed'} / {fmt(init.get('calls_per_sec'))} / "
      f"{fmt(init.get('p50_ms'), 2)} / {fmt(init.get('p99_ms'), 2)} |")
    w(f"| sessions in Redis after | {p3.get('sessions_after_init', '-')} |")
    w(f"| Redis used_memory before → after | {p3.get('used_memory_before_init', '-')} → "
      f"{p3.get('used_memory_after_init', '-')} B ({fmt(mib(mem_delta / 1024) if mem_delta is not None else None)} MiB more) |")
    w(f"| **bytes per session (no state)** | **{fmt(per, 0)}** |")
    st = load(os.path.join(out, "part3_state.json")) or {}
    sp = None
    if st.get("created") and p3.get("used_memory_after_state") is not None:
        sp = (p3["used_memory_after_state"] - p3["used_memory_after_init"]) / st["created"]
    w(f"| sample: {st.get('created', '-')} more sessions, each `PATCH /session` with a {st.get('state_bytes', '?')}-byte "
      f"state (errors {st.get('errors', '-')}): bytes per session | {fmt(sp, 0)} |")
    w("")
    w(f"| p50 ms, concurrency 1, {run.get('session_duration')} each | with ~{p3.get('sessions_base', '?')} sessions | "
      f"after +{run.get('sessions')} | after/before |")
    w("|---|---:|---:|---:|")
    for label, s in (("cache hit (`call-cached`)", "call-cached"), ("uncached (`call`)", "call")):
        b = pt(f"part3__before__{s}__c1") or {}
        a = pt(f"part3__after__{s}__c1") or {}
        ratio = a["p50_ms"] / b["p50_ms"] if a.get("p50_ms") and b.get("p50_ms") else None
        w(f"| {label} | {fmt(b.get('p50_ms'), 3)} (p99 {fmt(b.get('p99_ms'), 3)}, {fmt(b.get('calls_per_sec'))}/s, "
          f"err {errs(b) if b else 'failed'}) | {fmt(a.get('p50_ms'), 3)} (p99 {fmt(a.get('p99_ms'), 3)}, "
          f"{fmt(a.get('calls_per_sec'))}/s, err {errs(a) if a else 'failed'}) | {fmt(ratio, 3)} |")
    w("")
    w("Sessions counted with `SCAN MATCH switchboard:{*}` (session hashes only). used_memory from `INFO memory`, "
      "read after the init run ended; sessions made by `init` carry sealed credentials and an empty state.")
    w("")

    # 4
    w("## 4. Worker RSS (the worker process alone, VmRSS; children not counted)")
    w("")
    w("| worker | idle MiB (after start + 5 calls) | peak MiB during each concurrency-32 run (sampled every 0.2 s) | "
      "peak MiB |")
    w("|---|---:|---|---:|")
    for i in run.get("worker_ids", []):
        idle = load(os.path.join(out, "rss", f"idle__worker{i}.json")) or {}
        peaks = []
        for path in sorted(glob.glob(os.path.join(out, "rss", f"peak__*__worker{i}.json"))):
            r = load(path) or {}
            label = os.path.basename(path)[len("peak__"):-len(f"__worker{i}.json")]
            peaks.append((label, r.get("gw_kib")))
        top = max((p for _, p in peaks if p is not None), default=None)
        w(f"| {i} | {fmt(mib(idle.get('gw_kib')))} | "
          + ", ".join(f"{label} {fmt(mib(p))}" for label, p in peaks) + f" | {fmt(mib(top))} |")
    w("")

    # 5
    w("## 5. Child processes left")
    w("")
    w("| worker | descendants after the last run + settle (alive / zombie) | processes of this run's binary left after "
      "SIGTERM to all workers |")
    w("|---|---|---|")
    left = load(os.path.join(out, "leftover.json")) or {}
    for i in run.get("worker_ids", []):
        t = load(os.path.join(out, f"children__worker{i}.json")) or {}
        w(f"| {i} | {t.get('alive', '-')} / {t.get('zombie', '-')} | |")
    w(f"| all | | {left.get('count', '-')} {left.get('detail', '')} |")
    w("")
    w(f"Settle before counting: {run.get('settle', '?')} s. Workers and their demo-server children run a private "
      "copy of the binary, so any escaped process is found by /proc/PID/exe.")
    w("")

    failures = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(out, "points", "*.err"))
                      if text(p) and not load(p[:-4] + ".json"))
    if failures:
        w("## Points that failed")
        w("")
        for name in failures:
            first = text(os.path.join(out, "points", name + ".err")).splitlines()
            w(f"- {name}: {(first[-1] if first else '')[:300]}")
        w("")

    w("## Commands")
    w("")
    w("```sh")
    w(text(os.path.join(out, "command.txt")))
    w("# workers 1..3 (ports and the secret key differ), then the load in the order it ran:")
    w(text(os.path.join(out, "worker_command.txt")))
    for path in sorted(glob.glob(os.path.join(out, "points", "*.cmd")), key=os.path.getmtime):
        w(text(path))
    w("```")
    print("\n".join(lines))
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "tools" and len(argv) == 4:
        return cmd_tools(argv[2], argv[3])
    if cmd == "state" and len(argv) == 5:
        return cmd_state(argv[2], argv[3], int(argv[4]))
    if cmd == "report" and len(argv) == 3:
        return report(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
