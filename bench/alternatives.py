#!/usr/bin/env python3
"""keel's own parts against the stock ones they stand in for: each patch in bench/alternatives/
swaps one part of keel for the ecosystem's, and this measures keel as production ships it
against each swapped build, in one run, rounds interleaved (as bench.py measures).

- tracing-appender.patch: tracing-appender's non-blocking writer for keel's batching writer;
- stock-json.patch: tracing-subscriber's JSON formatter (flattened event, current span and span
  list) for keel's flat `FormatEvent`;
- system-allocator.patch: glibc's malloc for mimalloc.

Each patched tree is a git worktree of HEAD in a temporary folder, built with release settings
into a shared target folder. Prints a table for docs/performance.md; asserts nothing.

    python3 bench/alternatives.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bench
from bench import ROOT, ROUTE_OPERATION, ROUTE_ROOT, ROUNDS, SECONDS, Server, free_port, summarise, wrk

PATCHES = sorted((ROOT / "bench" / "alternatives").glob("*.patch"))


def build_alternatives(work):
    """The baseline and each patched build: name -> binary."""
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "keel", "--bin", "keel"], cwd=ROOT, check=True)
    binaries = {"keel as shipped": work / "keel"}
    shutil.copy(ROOT / "target" / "release" / "keel", binaries["keel as shipped"])
    target = work / "target"
    for patch in PATCHES:
        tree = work / patch.stem
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            subprocess.run(["git", "apply", str(patch)], cwd=tree, check=True)
            subprocess.run(["cargo", "build", "--release", "-p", "keel", "--bin", "keel"], cwd=tree, check=True,
                           env={**os.environ, "CARGO_TARGET_DIR": str(target)})
            binaries[f"with {patch.stem}"] = work / f"keel-{patch.stem}"
            shutil.copy(target / "release" / "keel", binaries[f"with {patch.stem}"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    return binaries


def main():
    with tempfile.TemporaryDirectory(prefix="keel-alternatives-") as folder:
        work = Path(folder)
        binaries = build_alternatives(work)
        servers, runs, pids = [], [], {}
        header = f"Authorization: Bearer {bench.BENCH_KEY}"
        try:
            for name, binary in binaries.items():
                port = free_port()
                env = {"APP_ENV": "production", "APP_CONFIG_FILE": str(bench.production_config()),
                       "APP_SERVER__HOST": "127.0.0.1", "APP_SERVER__PORT": str(port)}
                servers.append(Server([str(binary)], env, f"http://127.0.0.1:{port}/readyz"))
                pids[name] = servers[-1].process.pid
                runs.append((ROUTE_ROOT, name, f"http://127.0.0.1:{port}/", None))
                operation = f"http://127.0.0.1:{port}/v1/operations/{bench.submit_one(port)}"
                runs.append((ROUTE_OPERATION, name, operation, header))
            for _, _, url, extra in runs:
                wrk(url, 2, header=extra)  # warm-up
            rounds = {(route, name): [] for route, name, _, _ in runs}
            for round_number in range(ROUNDS):
                shift = round_number % len(runs)
                for route, name, url, extra in runs[shift:] + runs[:shift]:
                    rounds[(route, name)].append(wrk(url, SECONDS, header=extra, pid=pids[name]))
        finally:
            for server in servers:
                server.__exit__()
    for route in (ROUTE_ROOT, ROUTE_OPERATION):
        base = summarise(rounds[(route, "keel as shipped")])
        print(f"\n| {route} | requests/s | p99 | server CPU per request | CPU / keel as shipped |")
        print("|---|---|---|---|---|")
        for name in binaries:
            result = summarise(rounds[(route, name)])
            print(f"| {name} | {result['rps']:,.0f} | {result['p99_ms']:.2f} ms | {result['cpu_us']:.1f} µs | "
                  f"{result['cpu_us'] / base['cpu_us']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
