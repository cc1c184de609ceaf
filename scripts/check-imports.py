#!/usr/bin/env python3
"""Fails when two modules of the crate import each other (directly or round a loop).

    scripts/check-imports.py [SRC_DIR]

Each file under src/ is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). A module
depends on another when its code names it by path: `crate::x::y`, `super::x`,
`self::x`, or a `use` group such as `use crate::{x, y::z}`. A child's reference to
one of its ancestors (`super::AppState` in a file of `server/`) is the parent's own
interface and not counted; unit-test files (`tests.rs`, `tests/`) are left out.
Prints every cycle found and exits 1, or prints the module count and exits 0.
ARCHITECTURE.md promises that imports only point downward; this keeps it true.
"""

import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def is_test(rel):
    parts = rel.split(os.sep)
    return parts[-1] == "tests.rs" or "tests" in parts[:-1]


files = {}
for root, _, names in os.walk(SRC):
    for name in names:
        if name.endswith(".rs"):
            rel = os.path.relpath(os.path.join(root, name), SRC)
            if not is_test(rel):
                files[module_of(rel)] = os.path.join(root, name)
modules = set(files)


def resolve(current, kind, segments):
    """Returns the deepest known module that a path names, or None."""
    base = {"crate": (), "self": current, "super": current[:-1]}[kind]
    path = base + tuple(segments)
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def expand_groups(text):
    """`crate::a::{b, c::d}` → `crate::a::b crate::a::c::d` (one level of nesting is enough here)."""
    out = []
    for m in GROUP_RE.finditer(text):
        kind, prefix, body = m.group(1), m.group(2), m.group(3)
        for item in re.split(r",", re.sub(r"\{[^}]*\}", "", body)):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self" and re.match(r"^[A-Za-z_][A-Za-z0-9_:]*$", item):
                out.append(f"{kind}{prefix}::{item}")
    return " ".join(out)


edges = {m: set() for m in modules}
for module, path in files.items():
    with open(path, encoding="utf-8") as f:
        text = strip_comments(f.read())
    for m in PATH_RE.finditer(text + "\n" + expand_groups(text)):
        segments = [s for s in m.group(2).split("::") if s]
        target = resolve(module, m.group(1), segments)
        if target is None or target == module:
            continue
        if module[: len(target)] == target:  # a child naming its ancestor's interface
            continue
        edges[module].add(target)

# Tarjan's strongly connected components.
index, low, stack, on_stack, sccs, counter = {}, {}, [], set(), [], [0]


def strongconnect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
        if w not in index:
            strongconnect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        scc = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            scc.append(w)
            if w == v:
                break
        if len(scc) > 1:
            sccs.append(scc)


sys.setrecursionlimit(10000)
for v in sorted(modules):
    if v not in index:
        strongconnect(v)

name = lambda m: "::".join(m) or "crate"  # noqa: E731
if sccs:
    for scc in sccs:
        members = sorted(scc)
        print("import cycle among: " + ", ".join(name(m) for m in members))
        for a in members:
            for b in sorted(edges[a]):
                if b in scc:
                    print(f"  {name(a)} -> {name(b)}")
    sys.exit(1)
print(f"no import cycles among {len(modules)} modules")
