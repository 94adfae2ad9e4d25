#!/usr/bin/env python3
"""Turns this clone of keel into your own service: `make rename NAME=billing-service`.

Every text file of the tree is rewritten (build output, dependencies and virtualenvs left
alone), in this order, so that each kind of name gets the spelling its context needs:

  CARGO_BIN_EXE_keel   -> CARGO_BIN_EXE_billing-service   the binary, as Cargo names it to tests
  keel::               -> billing_service::               the library, in Rust paths
  keel=debug           -> billing_service=debug           log filters, which name module paths
  KEEL_                -> BILLING_SERVICE_                environment variables, build arguments
  keel_ (word start)   -> billing_service_                tables, metrics (keel_build_info), identifiers
  _keel- / _keel       -> _billing-service- / _billing_service   names inside names (a compose
                                                          container, a test's name)
  keel (whole word)    -> billing-service                 the package, binary, image, Kubernetes and
                                                          compose names, log and README text

Then every file and folder whose name says keel is renamed the same way (crates/keel-http ->
crates/billing-service-http): the library crates are the service's too.

This script is the one file left as it is: it names what it replaces.

The name must be a valid crate name in kebab case (lower-case letters and digits, words joined
by single hyphens, starting with a letter), and not one Rust, Cargo or a dependency already uses.
The script says what it changed, then checks that no `keel` is left anywhere, and fails if one is.

Usage: python3 scripts/rename.py NAME [ROOT]
"""

import os
import re
import sys
from pathlib import Path

OLD = "keel"
SKIPPED_DIRS = {".git", "target", "node_modules", ".venv", ".venv-bench", ".tools", "dist", "generated",
                "__pycache__", ".hypothesis", ".schemathesis"}
# Names a crate cannot take, or should not: Rust's keywords and its own crates, and names that
# would clash with the build (a crate named `test`, or one of the dependencies).
RESERVED = {
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract",
    "become", "box", "do", "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual",
    "yield", "std", "core", "alloc", "proc-macro", "test", "build", "main", "bench", "bare-axum", OLD,
}
VALID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def dependencies(root):
    """The names of the crates the workspace depends on, which a package must not shadow."""
    names, section = set(), None
    manifests = [root / "Cargo.toml", *sorted((root / "crates").glob("*/Cargo.toml"))]
    for line in (line for manifest in manifests for line in manifest.read_text().splitlines()):
        header = re.match(r"^\[(.+)\]\s*$", line)
        if header:
            section = header.group(1)
            continue
        dependency = re.match(r"^([A-Za-z0-9_-]+)\s*=", line)
        if dependency and section in {"dependencies", "dev-dependencies", "build-dependencies",
                                      "workspace.dependencies"}:
            names.add(dependency.group(1).replace("_", "-"))
    return {name for name in names if not name.startswith(f"{OLD}-")}


def library_crates(root):
    """The suffixes of the library crates (http for crates/keel-http), renamed with the service."""
    return sorted(path.name[len(OLD) + 1:] for path in (root / "crates").glob(f"{OLD}-*") if path.is_dir())


def refusal(name, root):
    """Why `name` cannot be the service's name, or None."""
    if not VALID.match(name):
        return ("must be lower-case letters and digits, words joined by single hyphens, starting with a letter "
                "(for example billing-service)")
    if len(name) > 64:
        return "must be at most 64 characters"
    if name in RESERVED or name.replace("-", "_") in RESERVED:
        return "is reserved by Rust or Cargo, or is the starter's own name"
    taken = dependencies(root)
    if name in taken:
        return "is the name of one of the dependencies"
    clash = [f"{name}-{suffix}" for suffix in library_crates(root) if f"{name}-{suffix}" in taken]
    if clash:
        return f"would name a library crate {clash[0]}, which is one of the dependencies"
    return None


def rules(name):
    snake = name.replace("-", "_")
    return [
        (re.compile(r"CARGO_BIN_EXE_keel\b"), f"CARGO_BIN_EXE_{name}"),
        (re.compile(r"\bkeel::"), f"{snake}::"),
        (re.compile(r"\bkeel(?==[a-z])"), snake),
        (re.compile(r"\bKEEL_"), f"{snake.upper()}_"),
        (re.compile(r"\bkeel_"), f"{snake}_"),
        (re.compile(r"(?<=_)keel(?=-)"), name),
        (re.compile(r"(?<=_)keel"), snake),
        (re.compile(r"\bkeel\b"), name),
    ]


def rules_applied(text, name):
    for pattern, replacement in rules(name):
        text = pattern.sub(replacement, text)
    return text


def paths_named(root):
    """Files and folders whose own name says keel, deepest first once sorted."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRS)
        for entry in [*subdirectories, *files]:
            if OLD in entry.lower() and entry != "rename.py":
                yield Path(directory) / entry


def text_files(root):
    this_script = (root / "scripts" / "rename.py").resolve()
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRS)
        for file in sorted(files):
            path = Path(directory) / file
            if path.resolve() == this_script:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if b"\0" in data:
                continue
            try:
                yield path, data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    name = sys.argv[1].strip()
    root = Path(sys.argv[2] if len(sys.argv) == 3 else Path(__file__).resolve().parent.parent)
    why = refusal(name, root)
    if why:
        print(f"rename: {name!r} {why}", file=sys.stderr)
        return 2
    if not any(OLD in text.lower() for _, text in text_files(root)):
        print(f"rename: nothing here says {OLD}: renamed already?", file=sys.stderr)
        return 2
    changed = 0
    for path, text in text_files(root):
        renamed, replacements = text, 0
        for pattern, replacement in rules(name):
            renamed, count = pattern.subn(replacement, renamed)
            replacements += count
        if replacements:
            path.write_text(renamed, encoding="utf-8")
            changed += 1
            print(f"  {path.relative_to(root)}: {replacements} name(s)")
    for path in sorted(paths_named(root), key=lambda p: len(p.parts), reverse=True):
        target = path.with_name(rules_applied(path.name, name))
        path.rename(target)
        print(f"  {path.relative_to(root)} -> {target.relative_to(root)}")
    print(f"rename: {changed} files now say {name} (crate {name}, library {name.replace('-', '_')}, "
          f"binary {name}, image {name})")
    left = [(path, number, line.strip()) for path, text in text_files(root)
            for number, line in enumerate(text.splitlines(), 1) if OLD in line.lower()]
    left += [(path, 0, "(its name)") for path in paths_named(root)]
    for path, number, line in left:
        print(f"rename: left behind: {path.relative_to(root)}:{number}: {line}", file=sys.stderr)
    if left:
        return 1
    print("rename: no `keel` left. Next: cargo build (Cargo.lock follows), make test, and a first commit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
