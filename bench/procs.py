#!/usr/bin/env python3
"""Process facts for compare.sh, read from /proc; stdlib only.

  procs.py free-port                 print a free loopback TCP port
  procs.py rss PID                   print '{"gw_kib":N,"tree_kib":N}' for PID and its descendants
  procs.py sample PID OUT [SECS]     every SECS (0.5) until SIGTERM or PID's end, keep the peak RSS of PID and
                                     of PID + descendants; write '{"gw_kib":..,"tree_kib":..}' to OUT
  procs.py tree PID                  print '{"alive":N,"zombie":N}': descendants of PID
  procs.py tagged TAG [EXCEPT_PID]   print '{"alive":N,"zombie":N,"pids":[..]}': processes whose
                                     environment holds BENCH_TAG=TAG (orphans included)
"""
import json
import os
import signal
import socket
import sys
import time


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append((int(entry), fields[0]))
    return kids


def descendants(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        for child, state in kids.get(todo.pop(), []):
            out.append((child, state))
            todo.append(child)
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss(pid):
    gw = rss_kib(pid)
    return {"gw_kib": gw, "tree_kib": gw + sum(rss_kib(c) for c, _ in descendants(pid))}


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "free-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
    elif cmd == "rss":
        print(json.dumps(rss(int(argv[2]))))
    elif cmd == "sample":
        pid, out = int(argv[2]), argv[3]
        every = float(argv[4]) if len(argv) > 4 else 0.5
        peak = {"gw_kib": 0, "tree_kib": 0}
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop and os.path.exists(f"/proc/{pid}"):
            now = rss(pid)
            peak = {k: max(peak[k], now[k]) for k in peak}
            with open(out, "w") as f:
                json.dump(peak, f)
            time.sleep(every)
    elif cmd == "tree":
        states = [s for _, s in descendants(int(argv[2]))]
        print(json.dumps({"alive": sum(s != "Z" for s in states), "zombie": states.count("Z")}))
    elif cmd == "tagged":
        needle = f"BENCH_TAG={argv[2]}".encode()
        skip = {os.getpid(), int(argv[3]) if len(argv) > 3 else -1}
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in skip:
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if needle in env:
                found.append((int(entry), stat[stat.rfind(")") + 2:].split()[0]))
        print(json.dumps({"alive": sum(s != "Z" for _, s in found),
                          "zombie": sum(s == "Z" for _, s in found),
                          "pids": [p for p, _ in found]}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
