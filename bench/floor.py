#!/usr/bin/env python3
"""The direct-spawn floor: what one call costs with no gateway at all.

Per run, sequentially: spawn the stdio MCP server -> initialize -> reply ->
notifications/initialized + tools/call -> reply ("result": the latency a user
of a spawn-per-call design cannot go below), then close stdin and reap the
process ("exit"; a gateway need not wait for it). The same measurement as the
peer comparisons of BENCHMARKS.md; stdlib only.

usage: floor.py --runs N --tool echo --arguments '{"message":"hi"}' [--out FILE] -- ARGV...
Environment of the server: this process's (set DEMO_TOKEN etc. before).
Prints one line; --out writes the JSON summary (milliseconds).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROTOCOL = "2025-11-25"


def read_until_id(stream, want_id, deadline):
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("no reply")
        line = stream.readline()
        if not line:
            raise EOFError("server closed stdout")
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("id") == want_id and ("result" in msg or "error" in msg):
            return msg


def reap(p, grace):
    """Wait with os.wait4 for the child's CPU time; SIGTERM after grace s, SIGKILL after 2*grace."""
    killed = False
    end = time.monotonic() + grace
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return killed, ru
        if time.monotonic() > end:
            if not killed:
                killed = True
                p.terminate()
                end = time.monotonic() + grace
            else:
                p.kill()
        time.sleep(0.0005)


def one_run(argv, tool, arguments):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "switchboard-floor", "version": "1"}}}
    inited = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        p.stdin.write((json.dumps(init) + "\n").encode())
        p.stdin.flush()
        read_until_id(p.stdout, 1, deadline)
        t1 = time.perf_counter()
        p.stdin.write((json.dumps(inited) + "\n" + json.dumps(call) + "\n").encode())
        p.stdin.flush()
        reply = read_until_id(p.stdout, 2, deadline)
        t2 = time.perf_counter()
        ok = "result" in reply and not (reply.get("result") or {}).get("isError")
    except (OSError, ValueError, TimeoutError, EOFError):
        ok, t1, t2 = False, time.perf_counter(), time.perf_counter()
    try:
        p.stdin.close()
    except OSError:
        pass
    killed, ru = reap(p, 5.0)
    t3 = time.perf_counter()
    p.stdout.close()
    return {"init": (t1 - t0) * 1e3, "call": (t2 - t1) * 1e3, "result": (t2 - t0) * 1e3,
            "exit": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
            "cpu": (ru.ru_utime + ru.ru_stime) * 1e3, "ok": ok, "killed": killed}


def pct(xs, q):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tool", default="echo")
    ap.add_argument("--arguments", default='{"message":"hi"}')
    ap.add_argument("--out")
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    arguments = json.loads(a.arguments)
    runs = [one_run(a.argv, a.tool, arguments) for _ in range(a.warmup + a.runs)][a.warmup:]
    good = [r for r in runs if r["ok"]]
    out = {"argv": a.argv, "runs": len(runs), "errors": len(runs) - len(good),
           "killed": sum(r["killed"] for r in runs)}
    for phase in ("init", "call", "result", "exit", "total", "cpu"):
        xs = [r[phase] for r in good]
        if xs:
            out[phase] = {"min": min(xs), "p50": statistics.median(xs),
                          "p90": pct(xs, 90), "p99": pct(xs, 99), "max": max(xs)}
    line = f"floor {' '.join(a.argv)[:60]}: n={out['runs']} err={out['errors']}"
    for phase in ("result", "exit", "cpu"):
        if phase in out:
            line += f" | {phase} p50 {out[phase]['p50']:.1f} ms p99 {out[phase]['p99']:.1f} ms"
    print(line, file=sys.stderr, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
