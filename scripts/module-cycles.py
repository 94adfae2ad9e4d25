#!/usr/bin/env python3
"""Fails if the modules of a crate of this workspace import one another in a circle.

A module is a file (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`). A module depends on another
when it names it, or an item in it, with a `crate::` or `super::` path. A module's own
submodules are part of it, not dependencies: a parent that declares and re-exports them does
not depend on them, while a submodule that uses its parent's items does. Every other cycle,
between siblings or further apart, is reported with its path. Run by `make lint`.

Usage: module-cycles.py [ROOT]
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")
GROUP = re.compile(r"\b(crate|super)((?:::\w+)*)::\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", re.S)


def module_of(source, file):
    parts = list(file.relative_to(source).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def references(text):
    """(`crate` or `super`, [segments]) for every path in the text, groups expanded one level."""
    for root, prefix, inner in GROUP.findall(text):
        base = [s for s in prefix.split("::") if s]
        for item in inner.split(","):
            head = re.match(r"\s*(\w+)", item)
            if head:
                yield root, base + [head.group(1)]
    for root, rest in PATH.findall(text):
        yield root, [s for s in rest.split("::") if s]


def resolve(module, root, segments, modules):
    """The longest known module the path names, or None."""
    base = () if root == "crate" else module[:-1]
    while segments and segments[0] == "super":
        base, segments = base[:-1], segments[1:]
    candidate = base + tuple(segments)
    while candidate and candidate not in modules:
        candidate = candidate[:-1]
    return candidate if candidate in modules else None


def crate_cycles(source):
    files = {module_of(source, f): f for f in source.rglob("*.rs")}
    modules = set(files) | {()}
    graph = {m: set() for m in modules}
    for module, file in files.items():
        for root, segments in references(strip_comments(file.read_text())):
            target = resolve(module, root, segments, modules)
            if target is None or target == module or target[: len(module)] == module:
                continue  # itself, or one of its own submodules
            graph[module].add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    sources = [root / "src"] + sorted(p / "src" for p in (root / "crates").glob("*") if (p / "src").is_dir())
    found = 0
    for source in sources:
        for cycle in crate_cycles(source):
            found += 1
            shown = " -> ".join("::".join(("crate",) + m) for m in cycle)
            print(f"module-cycles: {source.parent.name or 'root'}: {shown}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
