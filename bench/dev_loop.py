#!/usr/bin/env python3
"""The dev loop, measured: how long `make test` takes after a one-line edit to a handler.

For each commit named (by default the last one-crate layout, 4b6179e, and HEAD), a clean clone
with its own target folder is built and tested once, so that everything is compiled; then a
comment line is added to the `GET /` handler and the test command is timed, split into the
rebuild (`cargo test --no-run`) and the run. Rounds alternate between the commits, so that
the machine's state weighs on both alike. Writes the table between docs/performance.md's
`dev-loop` markers. A benchmark, not a test: it asserts nothing.

Usage: python3 bench/dev_loop.py [ROUNDS] [COMMIT...]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ["src/routes/root.rs", "src/http/routes/root.rs"]  # the layout after, and before


def run(command, cwd, env):
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(commit, work):
    tree = work / commit
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tree)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=tree, check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(tree / "target"), CI="true")
    run(["cargo", "test", "--all-targets", "--locked", "--no-run"], tree, env)
    binaries = subprocess.run(["cargo", "test", "--all-targets", "--locked", "--no-run"], cwd=tree, env=env,
                              capture_output=True, text=True, check=True).stderr.count("Executable")
    return tree, env, binaries


def one_round(tree, env):
    handler = next(tree / path for path in HANDLERS if (tree / path).exists())
    with handler.open("a") as file:
        file.write(f"// dev-loop edit {time.time_ns()}\n")
    started = time.monotonic()
    run(["cargo", "test", "--all-targets", "--locked", "--no-run"], tree, env)
    built = time.monotonic()
    run(["cargo", "test", "--all-targets", "--locked"], tree, env)
    return built - started, time.monotonic() - built


def update_doc(text):
    path = ROOT / "docs" / "performance.md"
    page = path.read_text()
    start, end = "<!-- dev-loop:start -->", "<!-- dev-loop:end -->"
    before, rest = page.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{text}{end}{after}")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    commits = sys.argv[2:] or ["4b6179e", "HEAD"]
    commits = [subprocess.run(["git", "rev-parse", "--short=7", c], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() for c in commits]
    with tempfile.TemporaryDirectory(prefix="keel-dev-loop-") as work:
        trees = {commit: prepare(commit, Path(work)) for commit in commits}
        times = {commit: [] for commit in commits}
        for _ in range(rounds):
            for commit, (tree, env, _) in trees.items():
                times[commit].append(one_round(tree, env))
    rows = ["| commit | test binaries (unit and integration) | rebuild after the edit, s | tests run, s | edit → tests done, s |",
            "|---|---|---|---|---|"]
    for commit in commits:
        builds = [b for b, _ in times[commit]]
        runs = [r for _, r in times[commit]]
        totals = [b + r for b, r in times[commit]]
        rows.append(f"| `{commit}` | {trees[commit][2]} | {statistics.median(builds):.1f} "
                    f"({min(builds):.1f}–{max(builds):.1f}) | {statistics.median(runs):.1f} | "
                    f"{statistics.median(totals):.1f} |")
    table = "\n".join(rows) + "\n"
    print(table)
    update_doc(table + f"\nMedian of {rounds} rounds (min–max), alternating; `python3 bench/dev_loop.py`.\n")


if __name__ == "__main__":
    main()
