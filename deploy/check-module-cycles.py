#!/usr/bin/env python3
"""Fails when modules of one crate use each other, directly or round a loop.

A module's uses are its module-level `use` items and the `crate::`/`super::`
paths in its code (test modules left out). A name a parent re-exports from a
child (`pub use child::Item`) counts as a use of the child, and a use of an
item an ancestor defines does not count: a module's parent is its namespace,
and the loops that hurt are between siblings (`a` uses `b`, which uses `a`).

usage: deploy/check-module-cycles.py [WORKSPACE_ROOT]   (default: this checkout)
Exit status 1 and each loop with the lines that make it, when there is one.
"""

import os
import re
import sys

MOD_DECL = re.compile(r"^(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
USE_START = re.compile(r"^(?:pub(?:\([^)]*\))?\s+)?use\s")
INLINE_PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")


def strip_tests(lines):
    """The lines before any inline `#[cfg(test)]` module (tests come last by
    convention); a `#[cfg(test)] mod x;` declaration is dropped alone."""
    out = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("#[cfg(test)]"):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if nxt.endswith(";"):
                i += 2
                continue
            break
        out.append(lines[i])
        i += 1
    return out


def code_lines(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [(n + 1, l) for n, l in enumerate(strip_tests(lines)) if not l.strip().startswith("//")]


def expand_use(text):
    """`a::{b, c::{d, e as f}, self}` -> [(["a","b"], "b"), ...] with the name each binds."""
    text = re.sub(r"\s+", "", text)
    out = []

    def tree(s, i, prefix):
        # Parses one use tree at s[i:]; returns the index after it.
        segs = list(prefix)
        while True:
            if s.startswith("{", i):
                i += 1
                while not s.startswith("}", i):
                    i = tree(s, i, segs)
                    if s.startswith(",", i):
                        i += 1
                return i + 1
            m = re.compile(r"\*|\w+").match(s, i)
            if not m:
                return len(s)
            word = m.group(0)
            i = m.end()
            if s.startswith("::", i):
                segs.append(word)
                i += 2
                continue
            alias = None
            am = re.compile(r"as(\w+)").match(s, i)
            if am and word != "*":
                alias = am.group(1)
                i = am.end()
            if word == "self":
                out.append((segs, alias or (segs[-1] if segs else "self")))
            else:
                out.append((segs + [word], alias or word))
            return i

    tree(text, 0, [])
    return out


class Crate:
    def __init__(self, name, root_file):
        self.name = name
        self.files = {}  # module path (tuple) -> file
        self.walk(root_file, ())
        self.uses = {m: [] for m in self.files}  # module -> [(segments, name, line)]
        self.reexports = {m: {} for m in self.files}  # module -> {name: segments}
        for m, f in self.files.items():
            self.read(m, f)

    def walk(self, path, module):
        self.files[module] = path
        base = os.path.basename(path)
        d = os.path.dirname(path) if base in ("mod.rs", "lib.rs", "main.rs") else path[:-3]
        lines = open(path, encoding="utf-8").read().splitlines()
        for _, line in enumerate(strip_tests(lines)):
            m = MOD_DECL.match(line)
            if not m:
                continue
            child = m.group(1)
            for cand in (os.path.join(d, child + ".rs"), os.path.join(d, child, "mod.rs")):
                if os.path.isfile(cand):
                    self.walk(cand, module + (child,))
                    break

    def read(self, module, path):
        lines = code_lines(path)
        i = 0
        while i < len(lines):
            n, line = lines[i]
            if USE_START.match(line):
                stmt = line
                while ";" not in stmt and i + 1 < len(lines):
                    i += 1
                    stmt += lines[i][1]
                body = USE_START.sub("", stmt, count=1).split(";")[0]
                public = stmt.lstrip().startswith("pub")
                for segs, name in expand_use(body):
                    self.uses[module].append((segs, n))
                    if public and name not in ("*", "self"):
                        self.reexports[module][name] = segs
            else:
                for m in INLINE_PATH.finditer(line):
                    segs = [m.group(1)] + m.group(2).split("::")[1:]
                    self.uses[module].append((segs, n))
            i += 1

    def resolve(self, module, segs, seen=None):
        """The module of this crate that `segs`, used in `module`, names (or None)."""
        segs = list(segs)
        if not segs:
            return None
        if segs[0] == "crate":
            base, rest = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = module
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    base = base[:-1]
            rest = segs
        elif module + (segs[0],) in self.files:
            base, rest = module, segs
        else:
            return None  # another crate, or std
        m = base
        for k, s in enumerate(rest):
            if m + (s,) in self.files:
                m = m + (s,)
                continue
            seen = seen or set()
            target = self.reexports.get(m, {}).get(s)
            if target is not None and (m, s) not in seen:
                seen.add((m, s))
                via = self.resolve(m, target + rest[k + 1 :], seen)
                if via is not None:
                    return via
            break
        return m

    def graph(self):
        edges = {m: {} for m in self.files}
        for m, uses in self.uses.items():
            for segs, line in uses:
                t = self.resolve(m, segs)
                # A module's ancestors hold it: the items a parent defines
                # for its children (an error type, a shared trait) are their
                # context, not a sibling they depend on.
                if t is not None and t != m[: len(t)]:
                    edges[m].setdefault(t, line)
        return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def crate_roots(root):
    for d in sorted(os.listdir(root)):
        src = os.path.join(root, d, "src")
        if d in ("target", "fuzz") or not os.path.isdir(src):
            continue
        for f in ("lib.rs", "main.rs"):
            p = os.path.join(src, f)
            if os.path.isfile(p):
                yield f"{d} ({f})", p


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    found = 0
    for name, path in crate_roots(root):
        crate = Crate(name, path)
        edges = crate.graph()
        for comp in cycles(edges):
            found += 1
            label = lambda m: "::".join(m) or "(root)"
            print(f"module cycle in {name}: {', '.join(label(m) for m in comp)}")
            for a in comp:
                for b, line in sorted(edges[a].items()):
                    if b in comp:
                        rel = os.path.relpath(crate.files[a], root)
                        print(f"  {label(a)} -> {label(b)}  ({rel}:{line})")
    if found:
        print(f"{found} module cycle(s): move what both sides need into a module of its own", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
