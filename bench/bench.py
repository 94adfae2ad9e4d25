#!/usr/bin/env python3
"""keel's benchmark: `make bench` runs it.

On one machine, in one run, with the same load generator (wrk) and settings, the rounds of
every program interleaved, on `GET /` and on an authenticated `GET /v1/operations/{id}`:
  1. keel as production ships it (`APP_ENV=production`: API-key auth, rate limits, JSON access
     log, request ids, timeout, metrics), and again without each of those parts in turn;
  2. the standard stack (bench/standard-axum): axum with tower-http's stock layers, JSON logs
     through tracing-subscriber and tracing-appender, Prometheus metrics by route;
  3. bare axum (bench/bare-axum), `GET /` only.
Then the operation layer: submit-to-completion throughput of a trivial operation over HTTP,
memory per queued and per finished operation, start-up time to a ready /readyz, idle memory,
and the release binary's size. Then the Postgres store, on the machine's Postgres
(BENCH_DATABASE_URL): the same throughput with one replica and with two (configured alike,
and sharing one pool's connections), pgbench's built-in simple-update rate on the same server
in the same run (the ceiling), and the queue latency (submission to start) at half the
one-replica throughput. The database is on the same host, so keel and pgbench connect without
TLS (`sslmode=disable`), as to a database on a private network; one replica is measured with
`sslmode=prefer` as well (TLS, as this server offers it), which is what a URL without `sslmode`
gets.

Writes bench/results.json and bench/results.png, and rewrites docs/performance.md's tables
between its markers. A benchmark, not a test: it asserts nothing.
"""

import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = 2
OPERATIONS = int(os.environ.get("BENCH_OPERATIONS", "100000"))
ACCESS_LOG_OFF = "info,keel_http::middleware=warn"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# A replica's pool when tuned for this machine: the throughput of one replica grows with its
# pool up to about this size (each submission holds a connection through its flushed commit).
TUNED_POOL = 32
# The pool a replica gets as shipped, read where it is set.
SHIPPED_POOL = tomllib.loads((ROOT / "config" / "default.toml").read_text())["database"]["max_connections"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} never answered 200")


class Server:
    """A server process, stopped on exit, its output discarded (as a log shipper would take it)."""

    def __init__(self, command, env=None, ready_url=None, cwd=None):
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if ready_url:
            wait_until_ready(ready_url)

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve(port, extra_env=None, **settings):
    env = {"APP_ENV": "production", "APP_AUTH__ALLOW_ANONYMOUS": "true", "APP_RATE_LIMIT__ENABLED": "false", "APP_SERVER__HOST": "127.0.0.1", "APP_SERVER__PORT": str(port)}
    env.update({f"APP_{key.upper()}": str(value) for key, value in settings.items()})
    env.update(extra_env or {})
    return Server([str(RELEASE / "keel")], env, f"http://127.0.0.1:{port}/readyz")


def parse_duration_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid):
    """The user and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, seconds, script=None, header=None, pid=None):
    """One wrk run; with the server's `pid`, also the server's CPU time per request, which this
    VM's drift moves far less than requests per second."""
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    if header:
        command[1:1] = ["-H", header]
    cpu_before = cpu_seconds(pid) if pid else None
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": parse_duration_ms(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99_ms": parse_duration_ms(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }
    if pid:
        requests = int(re.search(r"(\d+) requests in", output).group(1))
        result["cpu_us"] = (cpu_seconds(pid) - cpu_before) * 1e6 / max(requests, 1)
    return result


def measure(url, script=None):
    wrk(url, 2, script)  # warm-up
    return summarise([wrk(url, SECONDS, script) for _ in range(ROUNDS)])


def summarise(rounds):
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us") if all("cpu_us" in r for r in rounds) else ("rps", "p50_ms", "p99_ms")
    median = {key: statistics.median(r[key] for r in rounds) for key in keys}
    median["errors"] = sum(r["errors"] for r in rounds)
    return median


BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"
ROUTE_ROOT = "GET /"
ROUTE_OPERATION = "GET /v1/operations/{id}, authenticated"


def production_config():
    """keel's production configuration as an operator would write it: API keys, rate limits on.

    The limits are raised far above what wrk sends, so that the one caller is never refused:
    every request is still counted against them."""
    import hashlib

    digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
    path = ROOT / "target" / "bench-production.toml"
    path.write_text(f"""
[auth]
mode = "api_key"
metrics_sha256 = "{digest}"
[[auth.api_keys]]
id = "bench"
sha256 = "{digest}"
scopes = ["operations:read", "operations:write"]

[rate_limit]
enabled = true
reads_per_second = 100000000
reads_burst = 100000000
""")
    return path


def keel_production(port, extra_env=None):
    env = {"APP_ENV": "production", "APP_CONFIG_FILE": str(production_config()),
           "APP_SERVER__HOST": "127.0.0.1", "APP_SERVER__PORT": str(port)}
    env.update(extra_env or {})
    return Server([str(RELEASE / "keel")], env, f"http://127.0.0.1:{port}/readyz")


def submit_one(port):
    """An operation to read back: its id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/operations", method="POST",
        data=json.dumps({"kind": "sleep", "input": {"ms": 1}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["id"]


# keel as production ships it, and with one of its parts taken away at a time: the cost of each.
KEEL_VARIANTS = {
    "keel, production": {},
    "keel without auth": {"APP_AUTH__MODE": "none", "APP_AUTH__ALLOW_ANONYMOUS": "true"},
    "keel without rate limits": {"APP_RATE_LIMIT__ENABLED": "false"},
    "keel without access log": {"RUST_LOG": ACCESS_LOG_OFF},
    "keel without metrics": {"APP_METRICS__ENABLED": "false"},
}


def bench_http():
    """GET / and an authenticated GET /v1/operations/{id} on keel as production ships it (and
    without each of its parts), the standard stack (bench/standard-axum) and bare axum (GET /
    only), all running at once, their rounds interleaved.

    This VM's throughput drifts by a quarter over minutes. Measured one after the other, a
    program that happened to run in a slow minute would look slower than it is; interleaved,
    each round of each program meets the same drift, so the ratios hold still. Each round
    rotates the order, so no program always follows the same one.
    """
    servers, urls, pids = [], {ROUTE_ROOT: {}, ROUTE_OPERATION: {}}, {}
    try:
        for name, env in KEEL_VARIANTS.items():
            port = free_port()
            servers.append(keel_production(port, env))
            pids[name] = servers[-1].process.pid
            urls[ROUTE_ROOT][name] = f"http://127.0.0.1:{port}/"
            urls[ROUTE_OPERATION][name] = f"http://127.0.0.1:{port}/v1/operations/{submit_one(port)}"
        port = free_port()
        servers.append(Server([str(RELEASE / "standard-axum"), f"127.0.0.1:{port}"], {"BENCH_API_KEY": BENCH_KEY},
                              ready_url=f"http://127.0.0.1:{port}/"))
        pids["standard stack"] = servers[-1].process.pid
        urls[ROUTE_ROOT]["standard stack"] = f"http://127.0.0.1:{port}/"
        urls[ROUTE_OPERATION]["standard stack"] = f"http://127.0.0.1:{port}/v1/operations/0123456789abcdef0123456789abcdef"
        port = free_port()
        servers.append(Server([str(RELEASE / "bare-axum"), f"127.0.0.1:{port}"], ready_url=f"http://127.0.0.1:{port}/"))
        pids["bare axum"] = servers[-1].process.pid
        urls[ROUTE_ROOT]["bare axum"] = f"http://127.0.0.1:{port}/"
        runs = [(route, name, url) for route, by_name in urls.items() for name, url in by_name.items()]
        header = f"Authorization: Bearer {BENCH_KEY}"
        for route, _, url in runs:
            wrk(url, 2, header=header if route == ROUTE_OPERATION else None)  # warm-up
        rounds = {(route, name): [] for route, name, _ in runs}
        for round_number in range(ROUNDS):
            shift = round_number % len(runs)
            for route, name, url in runs[shift:] + runs[:shift]:
                result = wrk(url, SECONDS, header=header if route == ROUTE_OPERATION else None, pid=pids[name])
                rounds[(route, name)].append(result)
    finally:
        for server in servers:
            server.__exit__()
    results = {route: {} for route in urls}
    for (route, name), measured in rounds.items():
        results[route][name] = summarise(measured)
    return results


def operation_throughput():
    port = free_port()
    with serve(port, operations__max_running=4096, operations__queue_capacity=100000, operations__retention_ms=5000):
        return measure(f"http://127.0.0.1:{port}/v1/operations", ROOT / "bench" / "submit.lua")


def submit(port, count, body):
    subprocess.run(
        [str(RELEASE / "examples" / "submit_operations"), f"http://127.0.0.1:{port}", str(count), "64", body],
        check=True, capture_output=True,
    )


def scrape(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def memory_per_operation():
    """RSS before and after OPERATIONS operations, queued (behind one that holds the only slot)
    and finished (kept for retention)."""
    port = free_port()
    with serve(port, operations__max_running=1, operations__queue_capacity=OPERATIONS + 10) as server:
        submit(port, 1, '{"kind":"sleep","input":{"ms":3600000}}')
        before = server.rss_kib()
        submit(port, OPERATIONS, '{"kind":"sleep","input":{"ms":1}}')
        queued = (server.rss_kib() - before) * 1024 / OPERATIONS
    port = free_port()
    with serve(port, operations__max_running=256, operations__queue_capacity=OPERATIONS + 10) as server:
        before = server.rss_kib()
        submit(port, OPERATIONS, '{"kind":"sleep","input":{"ms":0}}')
        while scrape(port, "operations_queued") + scrape(port, "operations_running") > 0:
            time.sleep(0.1)
        finished = (server.rss_kib() - before) * 1024 / OPERATIONS
    return {"queued_bytes": queued, "finished_bytes": finished}


def psql(sql, database=DATABASE_URL):
    subprocess.run(["psql", database, "-qAtc", sql], check=True, capture_output=True)


class Schema:
    """A schema of its own for one measurement, dropped after."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        psql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE; CREATE SCHEMA {self.name}")
        separator = "&" if "?" in DATABASE_URL else "?"
        return f"{DATABASE_URL}{separator}options=-c%20search_path%3D{self.name}"

    def __exit__(self, *_):
        psql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def postgres_replicas(url, count, pool):
    """`count` keel replicas on the Postgres store, each with a pool of `pool` connections (the
    configured default when `None`)."""
    servers = []
    for _ in range(count):
        port = free_port()
        settings = {} if pool is None else {"database__max_connections": pool}
        servers.append((port, serve(
            port, {"DATABASE_URL": url}, operations__store="postgres", operations__max_running=256,
            operations__queue_capacity=100000, operations__retention_ms=5000, **settings,
        )))
    return servers


def postgres_throughput(count, pool, sslmode="disable"):
    """Submit-to-completion (Prefer: wait) throughput with `count` replicas, wrk on each at once."""
    with Schema(f"keel_bench_{count}") as url:
        servers = postgres_replicas(f"{url}&sslmode={sslmode}", count, pool)
        try:
            urls = [f"http://127.0.0.1:{port}/v1/operations" for port, _ in servers]
            script = ROOT / "bench" / "submit.lua"

            def round_(seconds):
                command = lambda u: ["wrk", "-t1", f"-c{CONNECTIONS // count}", f"-d{seconds}s", "--latency", "-s", str(script), u]
                runs = [subprocess.Popen(command(u), stdout=subprocess.PIPE, text=True) for u in urls]
                outputs = [run.communicate()[0] for run in runs]
                rps = sum(float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1)) for o in outputs)
                p99 = max(parse_duration_ms(re.search(r"\s99%\s+(\S+)", o).group(1)) for o in outputs)
                errors = sum(int(m.group(1)) for o in outputs for m in [re.search(r"Non-2xx or 3xx responses: (\d+)", o)] if m)
                return {"rps": rps, "p50_ms": 0.0, "p99_ms": p99, "errors": errors}

            round_(2)  # warm-up
            return summarise([round_(SECONDS) for _ in range(ROUNDS)])
        finally:
            for _, server in servers:
                server.__exit__()


def pgbench_rate():
    """pgbench's built-in simple-update script on the same server: its commit ceiling here."""
    database = "keel_bench_pgbench"
    admin = DATABASE_URL
    psql(f"DROP DATABASE IF EXISTS {database}", admin)
    psql(f"CREATE DATABASE {database}", admin)
    parts = urllib.parse.urlsplit(admin)
    query = "&".join(part for part in (parts.query, "sslmode=disable") if part)
    target = parts._replace(path=f"/{database}", query=query).geturl()
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "4", target], check=True, capture_output=True)
        output = subprocess.run(["pgbench", "-N", "-c", "16", "-j", "2", "-T", str(SECONDS), target],
                                check=True, capture_output=True, text=True).stdout
        return float(re.search(r"tps = ([\d.]+)", output).group(1))
    finally:
        psql(f"DROP DATABASE IF EXISTS {database}", admin)


def queue_latency(rate):
    """Submission to start at a fixed `rate` (half the one-replica throughput), one replica."""
    with Schema("keel_bench_latency") as url:
        servers = postgres_replicas(f"{url}&sslmode=disable", 1, TUNED_POOL)
        try:
            output = subprocess.run(
                [str(RELEASE / "examples" / "queue_latency"), str(int(rate)), str(SECONDS),
                 *[f"http://127.0.0.1:{port}" for port, _ in servers]],
                check=True, capture_output=True, text=True,
            ).stdout
            return {"rate": int(rate), **json.loads(output)}
        finally:
            for _, server in servers:
                server.__exit__()


def bench_postgres():
    """Replicas configured alike, as an operator scales out (the shipped pool each); one replica
    with a bigger pool, the most it does here, and two replicas sharing that pool's connections;
    the bigger pool again over TLS."""
    one = postgres_throughput(1, TUNED_POOL)
    results = {
        "one": one,
        "two_shared": postgres_throughput(2, TUNED_POOL // 2),
        "one_default": postgres_throughput(1, None),
        "two_default": postgres_throughput(2, None),
        "one_tls": postgres_throughput(1, TUNED_POOL, sslmode="prefer"),
    }
    return {**results, "pgbench_tps": pgbench_rate(), "latency": queue_latency(one["rps"] / 2)}


def startup():
    times, idle = [], []
    for _ in range(5):
        port = free_port()
        started = time.monotonic()
        with serve(port) as server:
            times.append((time.monotonic() - started) * 1000)
            idle.append(server.rss_kib() / 1024)
    return {"ready_ms": statistics.median(times), "idle_rss_mib": statistics.median(idle)}


def chart(http, path):
    http = http[ROUTE_ROOT]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(http)
    colours = ["#2b6cb0"] + ["#63b3ed"] * (len(names) - 3) + ["#c05621", "#718096"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.bar(names, [http[n]["rps"] for n in names], color=colours)
    left.set_title("GET /: requests per second (higher is better)")
    right.bar(names, [http[n]["p99_ms"] for n in names], color=colours)
    right.set_title("GET /: p99 latency, ms (lower is better)")
    right.set_yscale("log")
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
        axis.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"wrk -t{THREADS} -c{CONNECTIONS}, median of {ROUNDS} x {SECONDS} s, {machine()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def table(results):
    ops, mem, start = results["operations"], results["memory"], results["startup"]
    lines = [
        f"Measured {results['date']} on {results['machine']}; wrk -t{THREADS} -c{CONNECTIONS}, "
        f"median of {ROUNDS} interleaved rounds of {SECONDS} s, load generator and server on the same machine.",
        "",
        "| operation layer and process | measured | target |",
        "|---|---|---|",
        f"| trivial operations, submit to completion over HTTP | {ops['rps']:,.0f} /s (p99 {ops['p99_ms']:.1f} ms) | 20,000 /s |",
        f"| memory per queued operation | {mem['queued_bytes']:,.0f} bytes | under 2 KB |",
        f"| memory per finished operation kept for retention | {mem['finished_bytes']:,.0f} bytes | |",
        f"| start-up to a ready /readyz | {start['ready_ms']:.0f} ms | |",
        f"| idle memory (RSS) | {start['idle_rss_mib']:.1f} MiB | |",
        f"| release binary | {results['binary_mib']:.1f} MiB | |",
    ]
    pg = results.get("postgres")
    if pg:
        lines += [
            "",
            "| Postgres store (the machine's PostgreSQL 15, same run, without TLS unless said) | measured | target |",
            "|---|---|---|",
            f"| trivial operations, submit to completion over HTTP: one replica, pool of {TUNED_POOL} | {rate(pg['one'])} | 2,000 /s |",
            f"| two replicas sharing those {TUNED_POOL} connections ({TUNED_POOL // 2} each) | {rate(pg['two_shared'])} | |",
            f"| one replica as shipped (`database.max_connections` {SHIPPED_POOL}) | {rate(pg['one_default'])} | |",
            f"| two replicas as shipped ({SHIPPED_POOL} connections each) | {rate(pg['two_default'])} | not slower than one as shipped |",
            f"| one replica, pool of {TUNED_POOL}, with `sslmode=prefer` (TLS here, what a URL without `sslmode` gets) | {rate(pg['one_tls'])} | |",
            f"| pgbench simple-update (`-N -c16 -j2`), the ceiling | {pg['pgbench_tps']:,.0f} transactions/s | |",
            f"| queue latency (submission to start) at {pg['latency']['rate']:,} /s, p50 / p99 "
            f"| {pg['latency']['p50_ms']:.3f} ms / {pg['latency']['p99_ms']:.3f} ms | |",
        ]
    return "\n".join(lines)


def rate(run):
    return f"{run['rps']:,.0f} /s (p99 {run['p99_ms']:.1f} ms)"


def table_http(http):
    lines = []
    for route, by_name in http.items():
        keel = by_name["keel, production"]["rps"]
        standard = by_name["standard stack"]["rps"]
        keel_cpu, standard_cpu = by_name["keel, production"]["cpu_us"], by_name["standard stack"]["cpu_us"]
        lines += [f"| {route} | requests/s | p50 | p99 | non-2xx | / standard stack | server CPU per request |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in by_name.items():
            lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                         f"{r['errors']} | {r['rps'] / standard:.2f} | {r['cpu_us']:.1f} µs |")
        note = (f"keel in production / standard stack: **{keel / standard:.2f}** in requests/s (goal at least "
                f"1.2, never below 1.0), **{standard_cpu / keel_cpu:.2f}** in server CPU per request")
        if "bare axum" in by_name:
            note += f"; keel in production / bare axum: **{keel / by_name['bare axum']['rps']:.2f}**"
        lines += ["", note + ".", ""]
    return lines[:-1]


def update_doc(marker, text):
    """Replaces what docs/performance.md holds between `<!-- {marker}:start -->` and its end."""
    doc = ROOT / "docs" / "performance.md"
    content = doc.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start in content and end in content:
        before, rest = content.split(start, 1)
        _, after = rest.split(end, 1)
        doc.write_text(f"{before}{start}\n{text}\n{end}{after}")


def main():
    # The binary on its own, as `make run` and the Dockerfile build it: built together with the
    # examples it would get the dev-dependencies' features too (tokio's test-util puts a lock
    # in every reading of tokio's clock).
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "keel"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "bare-axum", "-p", "standard-axum"],
                   cwd=ROOT, check=True)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    print("GET / and GET /v1/operations/{id} on keel, the standard stack and bare axum ...", flush=True)
    results["http"] = bench_http()
    if "--http-only" in sys.argv[1:]:
        # For trying a change: the GET / table alone, nothing written.
        print("\n".join(table_http(results["http"])))
        return
    # The operation measurements' client; `--http-only` has no need of it.
    subprocess.run(["cargo", "build", "--release", "--locked", "--example", "submit_operations",
                    "--example", "queue_latency"], cwd=ROOT, check=True)
    print("operation throughput ...", flush=True)
    results["operations"] = operation_throughput()
    print(f"memory per operation ({OPERATIONS} operations) ...", flush=True)
    results["memory"] = memory_per_operation()
    print("start-up ...", flush=True)
    results["startup"] = startup()
    results["binary_mib"] = (RELEASE / "keel").stat().st_size / (1024 * 1024)
    if "--no-postgres" not in sys.argv[1:]:
        print("Postgres store: one and two replicas, pgbench, queue latency ...", flush=True)
        results["postgres"] = bench_postgres()
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results["http"], ROOT / "bench" / "results.png")
    update_doc("request-path", "\n".join(table_http(results["http"])))
    text = table(results)
    update_doc("bench", text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
