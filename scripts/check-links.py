#!/usr/bin/env python3
"""Fails if a Markdown file of the tree links to a file or folder that does not exist, or to a
heading its target lacks. Links to other sites are not followed. Run by `make lint`.

Usage: check-links.py [ROOT]
"""

import re
import subprocess
import sys
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's anchors for the headings of `path`."""
    found = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"^#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    broken = []
    for name in files:
        page = root / name
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.exists():
                broken.append(f"{name}: {target}: no such file")
            elif anchor and resolved.is_file() and anchor not in anchors(resolved):
                broken.append(f"{name}: {target}: no such heading")
    for line in broken:
        print(f"check-links: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
