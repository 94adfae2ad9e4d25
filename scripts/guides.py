#!/usr/bin/env python3
"""Applies the guides in docs/guides/ to a copy of the tree, as a reader would follow them.

Each guide's code is taken from its page: a fenced block whose first line names its file
(`// src/routes/greet.rs`) is written to that file, and the one-line edits the guide asks for
are the lines it quotes in backticks. If a page changes, this follows it; if a guide stops
being followable as written, this fails and says where.

Usage: guides.py GUIDES_DIR COPY
(applies add-an-endpoint.md, add-an-operation-kind.md, add-a-configuration-key.md, then
remove-the-examples.md: the order a newcomer follows them in)
"""

import re
import shutil
import sys
from pathlib import Path


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


def main():
    guides, copy = Path(sys.argv[1]), Path(sys.argv[2])
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
