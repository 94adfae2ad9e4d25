#!/usr/bin/env python3
"""keel's hand-written parts against the crates a reader expects in their place, measured.

Each patch in `bench/alternatives/` swaps one of keel's own parts for the well-kept crate that
does the same job (its first lines say which). For keel as it is and for each patch applied to
it, this script counts instructions per `GET /` with `bench/instructions.py` (callgrind, exact
from run to run) and measures CPU time per request under wrk (user and system time of the whole
process, plus a `cat` reading its log lines through a pipe, as a container runtime does), in
interleaved rounds. The README's "keel's own parts, against the crates" table comes from here:

    python3 bench/alternatives.py                 # every patch
    python3 bench/alternatives.py tokio-timer     # one

Each patch is applied to a git worktree of HEAD under `target/alternatives/`; they share one
target directory, so only keel itself is rebuilt for each. A patch that no longer applies is
reported and skipped: refresh it from a branch that makes the swap. Needs git, valgrind and wrk
(Debian's packages). Takes about five minutes a patch on two cores.
"""

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "bench" / "alternatives"
WORK = ROOT / "target" / "alternatives"
SHARED_TARGET = WORK / "target"
ROUNDS = 5


def worktree(name, patch):
    """A worktree of HEAD with `patch` applied (none for keel as it is); None if it does not apply."""
    path = WORK / name
    if path.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), "HEAD"], cwd=ROOT, check=True,
                   capture_output=True)
    if patch is not None:
        applied = subprocess.run(["git", "apply", str(patch)], cwd=path, capture_output=True, text=True)
        if applied.returncode != 0:
            print(f"{name}: the patch no longer applies to HEAD, skipped\n{applied.stderr}", file=sys.stderr)
            return None
    (path / "target").symlink_to(SHARED_TARGET)
    return path


def instructions(path):
    """Instructions per GET / from bench/instructions.py, and the binary it measured, kept aside."""
    output = subprocess.run([sys.executable, "bench/instructions.py"], cwd=path, check=True, capture_output=True,
                            text=True).stdout
    count = int(re.search(r"keel \([^)]*\) ([\d,]+)", output).group(1).replace(",", ""))
    binary = WORK / f"{path.name}.bin"
    shutil.copy(SHARED_TARGET / "profiling" / "keel", binary)
    return count, binary


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(binary):
    """Microseconds of CPU per GET / under `wrk -t1 -c32` for 5 s, and requests per second."""
    port = free_port()
    env = {**os.environ, "APP_ENV": "production", "APP_AUTH__ALLOW_ANONYMOUS": "true", "APP_RATE_LIMIT__ENABLED": "false", "APP_SERVER__HOST": "127.0.0.1", "APP_SERVER__PORT": str(port)}
    server = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reader = subprocess.Popen(["cat"], stdin=server.stdout, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} never listened")
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c32", "-d2s", url], check=True, capture_output=True)
        before = cpu_seconds(server.pid) + cpu_seconds(reader.pid)
        output = subprocess.run(["wrk", "-t1", "-c32", "-d5s", url], check=True, capture_output=True,
                                text=True).stdout
        spent = cpu_seconds(server.pid) + cpu_seconds(reader.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=30)
        reader.wait(timeout=30)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return spent / requests * 1e6, rate


def main():
    wanted = sys.argv[1:]
    patches = sorted(p for p in PATCHES.glob("*.patch") if not wanted or p.stem in wanted)
    WORK.mkdir(parents=True, exist_ok=True)
    SHARED_TARGET.mkdir(exist_ok=True)
    measured = {}
    for name, patch in [("keel", None), *((p.stem, p) for p in patches)]:
        path = worktree(name, patch)
        if path is not None:
            measured[name] = instructions(path)
            print(f"{name}: {measured[name][0]:,} instructions per GET /", flush=True)
    rounds = {name: [] for name in measured}
    names = list(measured)
    for round_ in range(ROUNDS):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            rounds[name].append(cpu_per_request(measured[name][1]))
    base_instructions = measured["keel"][0]
    base_cpu = statistics.median(cpu for cpu, _ in rounds["keel"])
    print("\n| keel with | instructions per GET / | CPU per request | requests/s |")
    print("|---|---|---|---|")
    for name in names:
        count = measured[name][0]
        cpu = statistics.median(cpu for cpu, _ in rounds[name])
        rate = statistics.median(rate for _, rate in rounds[name])
        label = "its own parts" if name == "keel" else name
        difference = "" if name == "keel" else (
            f" ({count - base_instructions:+,}, {100 * (count / base_instructions - 1):+.1f}%)")
        cpu_difference = "" if name == "keel" else f" ({100 * (cpu / base_cpu - 1):+.0f}%)"
        print(f"| {label} | {count:,}{difference} | {cpu:.2f} µs{cpu_difference} | {rate:,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
