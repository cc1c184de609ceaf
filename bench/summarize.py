#!/usr/bin/env python3
"""Markdown tables from one compare.sh results directory; stdlib only.

usage: summarize.py RESULTS_DIR

Layout read (written by compare.sh):
  run.json                                   machine, versions, settings, loadavg
  floor/SERVER.json                          floor.py summary
  points/SERVER__GATEWAY__SCENARIO__cN.json  `switchboard bench --json` output (or empty on failure)
  points/...cN.cmd / .err                    the exact command line / its stderr
  gw/SERVER__GATEWAY/{command.txt,rss_idle.json,rss_peak.json,after_load.json,after_stop.json}
"""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def fmt(value, digits=1):
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def mib(kib):
    return None if kib is None else kib / 1024.0


def main(root):
    run = load(os.path.join(root, "run.json")) or {}
    concurrency = [int(c) for c in str(run.get("concurrency", "1 8 32")).split()]
    points = {}
    for path in sorted(glob.glob(os.path.join(root, "points", "*.json"))):
        name = os.path.basename(path)[:-5]
        server, gateway, scenario, conc = name.split("__")
        points[(server, gateway, scenario, int(conc[1:]))] = {
            "report": load(path),
            "cmd": read_text(path[:-5] + ".cmd"),
            "err": read_text(path[:-5] + ".err"),
        }
    floors = {os.path.basename(p)[:-5]: load(p) for p in glob.glob(os.path.join(root, "floor", "*.json"))}

    out = []
    out.append(f"# switchboard vs supergateway {run.get('peer_version', '4.0.0')} — {run.get('started', '')}")
    out.append("")
    out.append(f"Machine: {run.get('machine', '?')}; loadavg {run.get('loadavg_start', '?')} → "
               f"{run.get('loadavg_end', '?')}; {run.get('duration', '?')} per point; "
               f"versions: {run.get('versions', '?')}.")
    out.append("")
    out.append("## Direct-spawn floor (no gateway; ms)")
    out.append("")
    out.append("| server | runs | errors | spawn→result p50 | p99 | call p50 | stdin EOF→exit p50 | child CPU p50 |")
    out.append("|---|---|---|---|---|---|---|---|")
    for server, f in sorted(floors.items()):
        if not f:
            out.append(f"| {server} | - | failed | - | - | - | - | - |")
            continue
        g = lambda ph, q: (f.get(ph) or {}).get(q)  # noqa: E731
        out.append(f"| {server} | {f.get('runs')} | {f.get('errors')} | {fmt(g('result', 'p50'))} | "
                   f"{fmt(g('result', 'p99'))} | {fmt(g('call', 'p50'), 2)} | {fmt(g('exit', 'p50'))} | "
                   f"{fmt(g('cpu', 'p50'))} |")
    out.append("")
    out.append("## Gateways (`switchboard bench`, closed loop)")
    out.append("")
    head = "| server | gateway | scenario | p50 ms c=1 | p99 ms c=1 | added p50 over floor c=1 |"
    sep = "|---|---|---|---|---|---|"
    for c in concurrency:
        head += f" calls/s c={c} | p99 ms c={c} |"
        sep += "---|---|"
    head += " errors/requests | RSS MiB idle / peak gw (tree) | procs left after load; after stop |"
    sep += "---|---|---|"
    out.append(head)
    out.append(sep)
    rows = sorted({k[:3] for k in points})
    for server, gateway, scenario in rows:
        def rep(c):
            return (points.get((server, gateway, scenario, c)) or {}).get("report") or {}
        first = rep(concurrency[0]) if concurrency else {}
        floor_p50 = ((floors.get(server) or {}).get("result") or {}).get("p50")
        added = None
        if first.get("ok") and floor_p50 is not None:
            added = first.get("p50_ms", 0.0) - floor_p50
        row = (f"| {server} | {gateway} | {scenario} | {fmt(first.get('p50_ms'), 2)} | "
               f"{fmt(first.get('p99_ms'), 2)} | {fmt(added, 2)} |")
        ok = errors = 0
        for c in concurrency:
            r = rep(c)
            row += f" {fmt(r.get('calls_per_sec'))} | {fmt(r.get('p99_ms'), 2)} |"
            ok += r.get("ok", 0)
            errors += r.get("errors", 0)
        gw = os.path.join(root, "gw", f"{server}__{gateway}")
        idle = load(os.path.join(gw, "rss_idle.json")) or {}
        peak = load(os.path.join(gw, "rss_peak.json")) or {}
        after_load = load(os.path.join(gw, "after_load.json")) or {}
        after_stop = load(os.path.join(gw, "after_stop.json")) or {}
        row += (f" {errors}/{ok + errors} | {fmt(mib(idle.get('gw_kib')))} / {fmt(mib(peak.get('gw_kib')))} "
                f"({fmt(mib(peak.get('tree_kib')))}) | "
                f"{after_load.get('alive', '-')}+{after_load.get('zombie', '-')}Z; "
                f"{after_stop.get('alive', '-')} |")
        out.append(row)
    out.append("")
    out.append("Latency is of successful calls; \"added p50\" is the gateway's p50 at concurrency 1 minus the "
               "floor's spawn→result p50 (negative when the gateway does not spawn per call). RSS: the gateway "
               "process alone, and in parentheses with all its descendants, idle after a 5-call smoke test and "
               "peak sampled every 0.5 s under load. Procs left: descendants of the gateway (alive+zombie) "
               f"{run.get('settle', '?')} after its last point; processes of its tree still alive after it "
               "was stopped with SIGTERM.")
    failures = [(k, p) for k, p in sorted(points.items()) if not p["report"]]
    if failures:
        out.append("")
        out.append("## Points that failed")
        for (server, gateway, scenario, c), p in failures:
            lines = [line for line in p["err"].splitlines() if line.strip()]
            first = next((line for line in lines if "rror" in line), lines[0] if lines else "no output")
            out.append(f"- {server} {gateway} {scenario} c={c}: {first[:300]}")
        out.append("")
    out.append("")
    out.append("## Commands")
    out.append("")
    out.append("```sh")
    for server, gateway in sorted({k[:2] for k in points}):
        cmd = read_text(os.path.join(root, "gw", f"{server}__{gateway}", "command.txt"))
        if cmd:
            out.append(f"# {server} behind {gateway}")
            out.append(cmd)
    for k, p in sorted(points.items()):
        out.append(p["cmd"])
    for server, f in sorted(floors.items()):
        cmd = read_text(os.path.join(root, "floor", f"{server}.cmd"))
        if cmd:
            out.append(cmd)
    out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
