#!/usr/bin/env python3
"""Instructions per `GET /`, counted by callgrind, for keel and for bare axum.

Throughput on a shared VM drifts by a quarter within minutes; an instruction count does not:
the same binary, requests and environment give the same count whatever else the machine is
doing. This is how docs/performance.md's per-request figures are measured, and the quickest way to see
what a change to the request path costs:

    .venv-bench/bin/python bench/instructions.py            # keel (production config) and bare axum
    .venv-bench/bin/python bench/instructions.py RUST_LOG=off   # keel with extra environment

Each server answers WARM_UP requests on one keep-alive connection, then the counters are
zeroed and REQUESTS more are counted: the figure is the whole process's instructions (every
thread: tokio's workers, hyper, keel, the log writer) divided by REQUESTS. keel is built with
the `profiling` profile (release, with symbols), so `callgrind_annotate` on the kept output
files (`target/callgrind/`) shows where they go. Needs valgrind (Debian's package).
"""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "callgrind"
WARM_UP = 300
REQUESTS = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count(name, command, env, prepare=None, headers=None):
    """Runs `command` under callgrind, sends it the requests, returns instructions per request.

    The request is `GET /`, or `GET <path>` for the path `prepare(connection)` returns once the
    server answers; `headers` go with every request."""
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob(f"{name}.*"):
        old.unlink()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={OUT / name}.%p", *command],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port = int(env["PORT_FOR_BENCH"])
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            get(connection)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"{name} never answered")
            time.sleep(0.2)
    path = prepare(connection) if prepare else "/"
    for _ in range(WARM_UP):
        get(connection, path, headers)
    callgrind_control("-z", server.pid)  # start counting here
    for _ in range(REQUESTS):
        get(connection, path, headers)
    callgrind_control("-d", server.pid)  # the counted part, dumped as `<name>.<pid>.1`
    server.terminate()
    server.wait(timeout=60)
    return instructions(OUT / f"{name}.{server.pid}.1") / REQUESTS


def callgrind_control(flag, pid):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def get(connection, path="/", headers=None):
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}")


def instructions(path):
    output = subprocess.run(["callgrind_annotate", str(path)], check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        if "PROGRAM TOTALS" in line:
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError(f"no totals in {path}")


def main():
    extra = dict(arg.split("=", 1) for arg in sys.argv[1:])
    subprocess.run(["cargo", "build", "--profile", "profiling", "--locked", "--bin", "keel"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "bare-axum"], cwd=ROOT, check=True)
    keel_port, bare_port = free_port(), free_port()
    keel_env = {
        "APP_ENV": "production", "APP_AUTH__ALLOW_ANONYMOUS": "true", "APP_RATE_LIMIT__ENABLED": "false", "APP_SERVER__HOST": "127.0.0.1", "APP_SERVER__PORT": str(keel_port),
        "PORT_FOR_BENCH": str(keel_port), **extra,
    }
    service = count("keel", [str(ROOT / "target" / "profiling" / "keel")], keel_env)
    bare = count("bare-axum", [str(ROOT / "target" / "release" / "bare-axum"), f"127.0.0.1:{bare_port}"],
                 {"PORT_FOR_BENCH": str(bare_port)})
    label = " ".join(sys.argv[1:]) or "production configuration"
    print(f"instructions per GET /: keel ({label}) {service:,.0f}; bare axum {bare:,.0f}; keel / bare {service / bare:.2f}")


if __name__ == "__main__":
    sys.exit(main())
