#!/usr/bin/env python3
"""Applies the guides in docs/guides/ to a copy of the tree, as a reader would follow them.

Each guide's code is taken from its page: a fenced block whose first line names its file
(`// src/routes/greet.rs`) is written to that file, and the one-line edits the guide asks for
are the lines it quotes in backticks. If a page changes, this follows it; if a guide stops
being followable as written, this fails and says where.

Usage:
  guides.py commands COPY PAGE...   runs every `sh` block of the pages in COPY, as a reader
                                    would, except a block right after a comment
                                    `<!-- not run by make test-guides: why -->`
  guides.py code GUIDES_DIR COPY    applies add-an-endpoint.md, add-an-operation-kind.md,
                                    add-a-configuration-key.md, then remove-the-examples.md:
                                    the order a newcomer follows them in
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

NOT_RUN = re.compile(r"<!-- not run by make test-guides: (.+?) -->\s*$")
# The database the guides name; each block that names it gets a fresh one instead, so that
# following a guide leaves nothing in the machine's own.
GUIDES_DATABASE = "postgres://postgres@127.0.0.1:5432/test"
BLOCK_TIMEOUT_S = 900


def page(guides, name):
    path = guides / name
    if not path.is_file():
        sys.exit(f"guides: there is no guide {path}")
    return path.read_text()


def blocks(text, language):
    """The fenced blocks of `text` in `language`, unindented: [(first line, code)]."""
    found = []
    for block in re.finditer(rf"^( *)```{language}\n(.*?)^\1```", text, re.S | re.M):
        indent, code = block.group(1), block.group(2)
        lines = [line[len(indent):] if line.startswith(indent) else line for line in code.splitlines()]
        found.append((lines[0].strip() if lines else "", "\n".join(lines) + "\n"))
    return found


def code_files(text):
    """The fenced Rust blocks of `text` whose first line names a file: {path: code}."""
    return {first[3:].strip(): code for first, code in blocks(text, "rust") if first.startswith("// src/")}


def quoted(text, pattern, what):
    """The one backticked snippet of `text` that matches `pattern`."""
    prose = re.sub(r"^( *)```.*?^\1```", "", text, flags=re.S | re.M)
    found = [snippet for snippet in re.findall(r"`([^`\n]+)`", prose) if re.fullmatch(pattern, snippet)]
    if not found:
        sys.exit(f"guides: the guide no longer quotes {what} (looked for {pattern})")
    return found[0]


def edit(path, old, new):
    text = path.read_text()
    if old not in text:
        sys.exit(f"guides: {path} has no {old!r} to follow the guide with")
    path.write_text(text.replace(old, new, 1))


def write_code_files(guide, copy):
    """Writes each of the guide's code blocks that names its file to that file of the copy."""
    for path, code in code_files(guide).items():
        (copy / path).write_text(code)
        print(f"  wrote {path}")


def add_endpoint(guides, copy):
    guide = page(guides, "add-an-endpoint.md")
    write_code_files(guide, copy)
    module = quoted(guide, r"pub mod \w+;", "the module line")
    route = quoted(guide, r"\.routes\(routes!\(\w+::\w+\)\)", "the route line")
    routes_mod = copy / "src/routes/mod.rs"
    edit(routes_mod, "pub mod root;", f"pub mod root;\n{module}")
    # "one line to `routes()`": after the first route it registers.
    edit(routes_mod, ".routes(routes!(root::root))", f".routes(routes!(root::root))\n        {route}")
    print(f"  added {module!r} and {route!r}")


def add_kind(guides, copy):
    guide = page(guides, "add-an-operation-kind.md")
    write_code_files(guide, copy)
    module = quoted(guide, r"pub mod \w+;", "the module line")
    registered = quoted(guide, r"Registry::new\(\)\.register\(\w+::\w+\)", "the registration")
    kinds = copy / "src/kinds/mod.rs"
    edit(kinds, "pub mod demo;", f"pub mod demo;\n{module}")
    edit(kinds, "Registry::new()", registered)
    print(f"  added {module!r} and {registered!r}")


def add_configuration_key(guides, copy):
    guide = page(guides, "add-a-configuration-key.md")
    write_code_files(guide, copy)
    config = copy / "src/config.rs"
    field = quoted(guide, r"pub \w+: \w+,", "the field")
    edit(config, "pub struct ServiceSettings {", f"pub struct ServiceSettings {{\n    {field}")
    for first, code in blocks(guide, "toml"):
        path = copy / first.lstrip("#").strip()
        path.write_text(path.read_text() + "\n" + code.split("\n", 1)[1])
        print(f"  appended to {first.lstrip('#').strip()}")
    checks = [code for first, code in blocks(guide, "rust") if first == "// ServiceSettings::validate"]
    if len(checks) != 1:
        sys.exit("guides: the configuration guide no longer shows its check")
    check = "".join(f"        {line}\n" for line in checks[0].splitlines()[1:])
    edit(config, "fn validate(&self) -> Result<(), ConfigError> {\n", "fn validate(&self) -> Result<(), ConfigError> {\n" + check)
    print(f"  added {field!r} and the check")


def delete_line(path, snippet):
    """Deletes the one line of `path` whose code holds `snippet`, with the comment lines just above it."""
    lines = path.read_text().splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if snippet in line.split("//")[0]]
    if len(found) != 1:
        sys.exit(f"guides: {path} has {len(found)} lines with {snippet!r}, not one")
    start = found[0]
    while start > 0 and lines[start - 1].strip().startswith("//"):
        start -= 1
    path.write_text("".join(lines[:start] + lines[found[0] + 1:]))


def remove(guide, what, copy):
    """One part of the removal guide: delete a folder and a test module, then two lines of one
    file and the test module's line."""
    part = re.search(rf"^\*\*The {what}\.\*\*\n(.*?)(?=^\*\*|\Z)", guide, re.S | re.M)
    if not part:
        sys.exit(f"guides: the removal guide has no part for the {what}")
    text = part.group(1)
    folder = quoted(text, r"src/[\w/]+/", "the folder to delete")
    test = quoted(text, r"tests/[\w/]+\.rs", "the test module to delete")
    source = quoted(text, r"src/[\w/]+\.rs", "the file to edit")
    module = quoted(text, r"pub mod \w+;", "the module line")
    line = quoted(text, r"\.\w+\(.*\)", "the line to delete")
    test_main = quoted(text, r"tests/\w+/main\.rs", "the test binary to edit")
    test_module = quoted(text, r"mod \w+;", "the test module's line")
    shutil.rmtree(copy / folder)
    (copy / test).unlink()
    delete_line(copy / source, module)
    delete_line(copy / source, line)
    delete_line(copy / test_main, test_module)
    print(f"  deleted {folder} and {test}; {module!r} and {line!r} from {source}; {test_module!r} from {test_main}")


def remove_examples_and_demo_kinds(guides, copy):
    guide = page(guides, "remove-the-examples.md")
    remove(guide, "examples", copy)
    remove(guide, "demo kinds", copy)


def shell_blocks(text):
    """The `sh` blocks of a page: [(line number, code, why it is not run or None)]."""
    found = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        opening = re.match(r"^( *)```sh\s*$", lines[number])
        if not opening:
            number += 1
            continue
        indent, start = opening.group(1), number
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        skipped = NOT_RUN.search(previous)
        number += 1
        code = []
        while number < len(lines) and lines[number] != f"{indent}```":
            code.append(lines[number][len(indent):])
            number += 1
        number += 1
        found.append((start + 1, "\n".join(code) + "\n", skipped.group(1) if skipped else None))
    return found


def psql(sql):
    subprocess.run(["psql", GUIDES_DATABASE, "-q", "-c", sql], check=True)


def run_block(code, copy, where):
    """Runs one block with bash -e in `copy`, then ends whatever it left running."""
    database = None
    if GUIDES_DATABASE in code:
        database = f"keel_guides_{uuid.uuid4().hex[:12]}"
        psql(f"CREATE DATABASE {database}")
        code = code.replace(GUIDES_DATABASE, GUIDES_DATABASE.rsplit("/", 1)[0] + "/" + database)
    process = subprocess.Popen(["bash", "-e", "-c", code], cwd=copy, start_new_session=True)
    try:
        status = process.wait(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        status = "a timeout"
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if database:
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    if status != 0:
        sys.exit(f"guides: the block at {where} failed (exit status {status}):\n{code}")


def run_commands(copy, pages):
    for page in pages:
        for line, code, why in shell_blocks(Path(page).read_text()):
            where = f"{page}:{line}"
            if why:
                print(f"  not run: {where}: {why}")
                continue
            print(f"  running {where}", flush=True)
            run_block(code, copy, where)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "commands":
        run_commands(Path(sys.argv[2]), sys.argv[3:])
        return
    if len(sys.argv) != 4 or sys.argv[1] != "code":
        sys.exit(__doc__)
    guides, copy = Path(sys.argv[2]), Path(sys.argv[3])
    print("guide: add an endpoint")
    add_endpoint(guides, copy)
    print("guide: add an operation kind")
    add_kind(guides, copy)
    print("guide: add a configuration key")
    add_configuration_key(guides, copy)
    print("guide: remove the examples and the demo kinds")
    remove_examples_and_demo_kinds(guides, copy)


if __name__ == "__main__":
    main()
