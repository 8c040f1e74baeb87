"""Run every benchmark scenario and write docs/benchmarks.md.

    bash bench/run.sh            # what the docs call: sets up, then runs this file
    .venv/bin/python bench/run.py --quick   # shorter runs, fewer jobs

Starts, on 127.0.0.1 only: the fake OpenAI upstream (bench/upstream.py), the gateway on
PostgreSQL and on SQLite (through the real OpenAI adapter, model ``bench-image`` from
bench/catalog), and the LiteLLM proxy (one worker, no database) in its own virtual
environment. wrk drives the load (bench/wrk/*.lua). Each server's CPU seconds and peak
RSS come from psutil, sampled while its scenario runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
LUA = BENCH / "wrk"
TRASH = OUT / "trash"
VENV_BIN = Path(sys.executable).parent
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_VERSION = os.environ.get("BENCH_LITELLM", "litellm[proxy]")

UPSTREAM_PORT = 18100
PORTS = {"postgres": 18201, "sqlite": 18202}
LITELLM_PORT = 18300
LITELLM_KEY = "sk-bench-" + "0" * 32
PG_ADMIN_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "imagegate_bench"

PROMPT = "a lighthouse on a cliff at dusk, photorealistic"
B64_BODY = json.dumps({"model": "bench-image", "prompt": PROMPT, "response_format": "b64_json"})
URL_BODY = json.dumps({"model": "bench-image", "prompt": PROMPT, "response_format": "url"})
UPSTREAM_BODY = json.dumps({"model": "gpt-image-1", "prompt": PROMPT})


@functools.cache
def upstream_png() -> bytes:
    """The image the fake upstream sends (the same seed: the same bytes)."""
    from upstream import noise_png

    return noise_png()


JOB_BODY = json.dumps({"prompt": PROMPT})


# ---- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


class Sampler:
    """Peak RSS of a server while a scenario runs (sampled every 50 ms)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> Sampler:
        self.cpu_start = self.server.cpu_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = self.server.cpu_seconds() - self.cpu_start


def start(name: str, port: int, argv: list[str], env: dict[str, str]) -> Server:
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
    )
    server = Server(name, port, process, log)
    try:
        wait_http(server, "/healthz" if name != "litellm" else "/health/liveliness")
    except BaseException:
        stop(server)
        raise
    return server


def wait_http(server: Server, path: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited; see {server.log}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{server.name} did not come up in {timeout:g}s; see {server.log}")


def stop(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def call(server: Server, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if server.key:
        request.add_header("Authorization", f"Bearer {server.key}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


# ---- setup -------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get)...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing LiteLLM into bench/.venv-litellm...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_VERSION]
        subprocess.run(pip, check=True)
    return binary


def litellm_version() -> str:
    python = LITELLM_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or "?"


def fresh_postgres_db() -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-q", "-c", f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"],
        check=True,
    )
    subprocess.run(["psql", PG_ADMIN_URL, "-q", "-c", f"CREATE DATABASE {PG_DB}"], check=True)
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{PG_DB}"


def set_aside(path: Path) -> None:
    """Move a data directory into the trash, which is emptied when the run is over.

    Deleting a gateway's outputs just before the next one starts can slow that one down:
    ext4 without a journal (this machine's root) skips, when it allocates an inode, the
    inodes of the group deleted within the last one to six minutes, looking each up in the
    buffer cache. After a few runs' outputs had been deleted within minutes, creating an
    empty file in bench/out took 0.3-0.6 ms (20-90 µs elsewhere on the same disk), and
    the inode allocator had 6-7 % of the gateway's CPU. A rename deletes nothing.
    """
    if path.exists():
        TRASH.mkdir(parents=True, exist_ok=True)
        path.rename(TRASH / f"{path.name}-{time.time_ns()}")


def empty_trash() -> None:
    """Delete what earlier gateways left, once nothing is being measured."""
    shutil.rmtree(TRASH, ignore_errors=True)


def start_gateway(kind: str, workers: int, processes: int = 1) -> Server:
    """The gateway on ``kind``'s database, serving with ``processes`` server processes."""
    data_dir = OUT / f"data-{kind}"
    set_aside(data_dir)
    env = {
        "IMAGEGATE_DATA_DIR": str(data_dir),
        "IMAGEGATE_OPENAI_API_KEY": "sk-bench",
        "IMAGEGATE_OPENAI_BASE_URL": f"http://127.0.0.1:{UPSTREAM_PORT}/v1",
        "IMAGEGATE_CATALOG_DIRS": json.dumps([str(BENCH / "catalog")]),
        "IMAGEGATE_LOG_LEVEL": "warning",
        "IMAGEGATE_WORKER_CONCURRENCY": str(workers),
        "IMAGEGATE_PROVIDER_CONCURRENCY": str(workers),
        "IMAGEGATE_PROVIDER_RETRIES": "1",
    }
    if kind == "postgres":
        env["IMAGEGATE_DATABASE_URL"] = fresh_postgres_db()
    argv = [str(VENV_BIN / "imagegate"), "serve", "--port", str(PORTS[kind])]
    argv += ["--workers", str(processes)]
    name = f"gateway-{kind}" if processes == 1 else f"gateway-{kind}-{processes}proc"
    server = start(name, PORTS[kind], argv, env)
    server.key = first_key(server.log)
    call(server, "PATCH", "/v1/admin/image-models/bench-image", {"enabled": True})
    # Prepaid, as a new workspace is: every image takes the hold -> capture path.
    call(server, "PATCH", "/v1/admin/settings", {"billing_mode": "prepaid"})
    call(server, "POST", "/v1/admin/credits/grants", {"amount": 100_000_000, "note": "bench"})
    return server


def first_key(log: Path) -> str:
    for word in log.read_text().split():
        if word.startswith("ig_"):
            return word
    raise SystemExit(f"no admin key in {log}")


def start_litellm(binary: Path) -> Server:
    config = OUT / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-image\n"
        "    litellm_params:\n"
        "      model: openai/gpt-image-1\n"
        f"      api_base: http://127.0.0.1:{UPSTREAM_PORT}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
    )
    argv = [
        str(binary), "--config", str(config), "--host", "127.0.0.1",
        "--port", str(LITELLM_PORT), "--num_workers", "1",
    ]  # fmt: skip
    env = {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": LITELLM_KEY}
    env["PATH"] = f"{binary.parent}:{os.environ.get('PATH', '')}"
    server = start("litellm", LITELLM_PORT, argv, env)
    server.key = LITELLM_KEY
    return server


# ---- load --------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int
    rss_mb: float
    cpu_per_1000: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def wrk(
    wrk_bin: str,
    url: str,
    script: str,
    *,
    connections: int,
    seconds: float,
    env: dict[str, str],
    timeout_s: int = 30,
    done_file: Path | None = None,
    progress: Path | None = None,
) -> dict[str, Any]:
    threads = max(1, min(2, connections)) if done_file is None else 1
    result = Path(tempfile.mktemp(prefix="wrk-", suffix=".json", dir=OUT))
    argv = [
        wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s",
        f"--timeout={timeout_s}s", "-s", str(LUA / script), url,
    ]  # fmt: skip
    full_env = {**os.environ, **env, "BENCH_RESULT": str(result), "BENCH_LUA_DIR": str(LUA)}
    process = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done_file is not None:
        # wrk always runs its full duration; a script that finished early leaves a file,
        # and SIGINT makes wrk stop and report at once.
        # A request that timed out never reaches the script, so a script counting answers
        # also stops once its progress file has not grown for longer than wrk's timeout.
        size, changed = -1, time.monotonic()
        while process.poll() is None:
            now_size = progress.stat().st_size if progress and progress.exists() else 0
            if now_size != size:
                size, changed = now_size, time.monotonic()
            stalled = progress is not None and time.monotonic() - changed > timeout_s + 5
            if done_file.exists() or stalled:
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.1)
    output, _ = process.communicate()
    if not result.exists():
        raise SystemExit(f"wrk wrote no result:\n{output.decode()}")
    summary: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    return summary


def settle(server: Server, window: float = 0.2, idle: float = 0.05, limit: float = 60.0) -> None:
    """Wait until ``server`` is idle: its CPU below ``idle`` of a core over ``window``.

    wrk stops at the end of its duration with requests in flight; the server goes on with
    them (a generation already submitted runs to its end). A row started at once would
    queue behind that work and count its time and memory as its own: a c=1 row after a
    c=64 row had a p99 of 200 ms, and the peak RSS of 64 requests."""
    deadline = time.monotonic() + limit
    before = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(window)
        now = server.cpu_seconds()
        if now - before < idle * window:
            return
        before = now


def errors_of(summary: dict[str, Any]) -> int:
    keys = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    return sum(int(summary[k]) for k in keys)


def load_row(
    wrk_bin: str,
    scenario: str,
    server: Server,
    path: str,
    body: str,
    concurrency: int,
    seconds: float,
    *,
    timeout_s: int = 30,
    note: str = "",
) -> Row:
    env = {"BENCH_BODY": body, "BENCH_KEY": server.key}
    settle(server)
    with Sampler(server) as sample:
        summary = wrk(
            wrk_bin, server.url + path, "post.lua",
            connections=concurrency, seconds=seconds, env=env, timeout_s=timeout_s,
        )  # fmt: skip
    errors = errors_of(summary)
    good = max(1, int(summary["requests"]) - int(summary["status_errors"]))
    row = Row(
        scenario=scenario,
        target=server.name,
        concurrency=concurrency,
        rps=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        errors=errors,
        requests=int(summary["requests"]),
        rss_mb=sample.peak / 2**20,
        cpu_per_1000=sample.cpu / good * 1000,
        note=note,
    )
    print(format_line(row), flush=True)
    return row


def jobs_row(wrk_bin: str, server: Server, jobs: int, budget_s: float) -> Row:
    """Scenario E: submit ``jobs`` async jobs, then poll every one of them to the end."""
    ids = OUT / f"ids-{server.name}.txt"
    submitted, finished = OUT / "submitted.flag", OUT / "finished.flag"
    for path in (ids, submitted, finished):
        path.unlink(missing_ok=True)
    env = {"BENCH_KEY": server.key, "BENCH_JOBS": str(jobs), "BENCH_IDS": str(ids)}
    env |= {"BENCH_BODY": JOB_BODY, "BENCH_PATH": "/v1/jobs/bench-image"}
    settle(server)
    started = time.monotonic()
    with Sampler(server) as sample:
        submit = wrk(
            wrk_bin, server.url, "submit_jobs.lua", connections=32, seconds=budget_s,
            env=env | {"BENCH_DONE": str(submitted)}, done_file=submitted, progress=ids,
        )  # fmt: skip
        submit_s = time.monotonic() - started
        poll = wrk(
            wrk_bin, server.url, "poll_jobs.lua", connections=8, seconds=budget_s,
            env=env | {"BENCH_DONE": str(finished)}, done_file=finished,
        )  # fmt: skip
        total_s = time.monotonic() - started
    outcome = json.loads(finished.read_text()) if finished.exists() else {"succeeded": 0}
    submitted_ids = len(ids.read_text().split()) if ids.exists() else 0
    done = int(outcome.get("succeeded", 0))
    failed = jobs - done
    row = Row(
        scenario="E",
        target=server.name,
        concurrency=jobs,
        rps=done / total_s,
        p50_ms=submit["p50_us"] / 1000,
        p90_ms=submit["p90_us"] / 1000,
        p99_ms=submit["p99_us"] / 1000,
        errors=failed + errors_of(submit) + errors_of(poll),
        requests=submitted_ids,
        rss_mb=sample.peak / 2**20,
        cpu_per_1000=sample.cpu / max(1, done) * 1000,
        note=f"{jobs} jobs, upstream 30 s",
        extra={
            "submit_s": submit_s,
            "total_s": total_s,
            "submit_rps": submitted_ids / submit_s,
            "poll_requests": poll["requests"],
            "poll_p50_ms": poll["p50_us"] / 1000,
            "poll_p90_ms": poll["p90_us"] / 1000,
            "poll_p99_ms": poll["p99_us"] / 1000,
            "succeeded": done,
            "rejected": _rejected(Path(f"{ids}.rejected")),
        },
    )
    print(format_line(row), json.dumps(row.extra), flush=True)
    return row


def _rejected(path: Path) -> dict[str, int]:
    """Submits answered with something else than a job: count per status and error code."""
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            status, _, body = line.partition(" ")
            code = body.split('"code":"', 1)[1].split('"', 1)[0] if '"code":"' in body else ""
            key = f"{status} {code}".strip()
            counts[key] = counts.get(key, 0) + 1
    return counts


def set_latency(ms: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{UPSTREAM_PORT}/_latency?ms={ms}", method="PUT", data=b""
    )
    urllib.request.urlopen(request, timeout=5).close()


def warm(server: Server, path: str, body: str, count: int = 20) -> None:
    """``count`` requests before the load; a ``b64_json`` answer must carry the upstream's
    image byte for byte (a fast wrong answer is no result)."""
    data = body.encode()
    for _ in range(count):
        request = urllib.request.Request(server.url + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if server.key:
            request.add_header("Authorization", f"Bearer {server.key}")
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = response.read()
    if json.loads(body).get("response_format") == "b64_json":
        image = base64.b64decode(json.loads(answer)["data"][0]["b64_json"], validate=True)
        if image != upstream_png():
            raise SystemExit(f"{server.name} answered with an image that is not the upstream's")


# ---- report ------------------------------------------------------------------------------


def format_line(row: Row) -> str:
    return (
        f"{row.scenario:<2} {row.target:<17} c={row.concurrency:<5} {row.rps:9.1f} req/s  "
        f"p50 {row.p50_ms:8.1f}  p90 {row.p90_ms:8.1f}  p99 {row.p99_ms:8.1f} ms  "
        f"err {row.errors:<4} rss {row.rss_mb:7.0f} MB  cpu {row.cpu_per_1000:6.2f} s/1000"
    )


def ratio(value: float, base: float | None) -> str:
    if base is None or base == 0:
        return "–"
    return f"{value / base:.2f}"


def table(rows: list[Row]) -> str:
    floor = {r.concurrency: r for r in rows if r.scenario == "A"}
    peer = {r.concurrency: r for r in rows if r.scenario == "F"}
    head = (
        "| scenario | target | conc. | req/s | ×A | ×F | p50 ms | ×A | ×F | p90 ms | ×A | ×F "
        "| p99 ms | ×A | ×F | errors | peak RSS MB | ×F | CPU s / 1000 img | ×A | ×F |"
    )
    lines = [head, "|" + "---|" * 21]
    for row in rows:
        a = floor.get(row.concurrency) or floor.get(64)
        f = peer.get(row.concurrency) or peer.get(64)
        cells = [row.scenario, row.target, str(row.concurrency)]
        for name, digits in (("rps", 1), ("p50_ms", 1), ("p90_ms", 1), ("p99_ms", 1)):
            value = getattr(row, name)
            cells += [f"{value:,.{digits}f}", ratio(value, a and getattr(a, name))]
            cells.append(ratio(value, f and getattr(f, name)))
        cells += [str(row.errors), f"{row.rss_mb:,.0f}", ratio(row.rss_mb, f and f.rss_mb)]
        cells += [f"{row.cpu_per_1000:.2f}", ratio(row.cpu_per_1000, a and a.cpu_per_1000)]
        cells.append(ratio(row.cpu_per_1000, f and f.cpu_per_1000))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}"


# ---- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="imagegate benchmarks (docs/benchmarks.md)")
    parser.add_argument("--seconds", type=float, default=8, help="duration of each B/C/F run")
    parser.add_argument("--floor-seconds", type=float, default=5, help="duration of each A run")
    parser.add_argument("--d-seconds", type=float, default=15, help="duration of scenario D")
    parser.add_argument("--jobs", type=int, default=5000, help="scenario E's job count")
    parser.add_argument("--e-workers", type=int, default=1000, help="E: jobs run at once")
    parser.add_argument("--e-budget", type=float, default=600, help="E: longest submit/poll phase")
    parser.add_argument("--databases", default="postgres,sqlite", help="gateways to run")
    parser.add_argument("--concurrency", default="1,16,64", help="B/C/F concurrency levels")
    parser.add_argument(
        "--processes",
        default="2",
        help="B again with the gateway serving from these process counts above 1 (empty: none)",
    )
    parser.add_argument("--skip", default="", help="scenarios to leave out, e.g. E,F")
    parser.add_argument("--quick", action="store_true", help="short runs, 500 jobs")
    parser.add_argument(
        "--write-docs",
        help="report file to write (default: docs/benchmarks.md, on a run of every scenario)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.floor_seconds, args.d_seconds, args.jobs = 4, 3, 8, 500
    levels = [int(c) for c in args.concurrency.split(",")]
    skip = set(filter(None, args.skip.upper().split(",")))
    if args.write_docs is None and not skip:
        args.write_docs = str(ROOT / "docs" / "benchmarks.md")
    databases = [d for d in args.databases.split(",") if d]
    OUT.mkdir(parents=True, exist_ok=True)
    wrk_bin = ensure_wrk()
    litellm = ensure_litellm() if "F" not in skip else None
    began = time.monotonic()
    rows: list[Row] = []
    servers: list[Server] = []
    try:
        upstream = start(
            "upstream", UPSTREAM_PORT,
            [sys.executable, str(BENCH / "upstream.py"), "--port", str(UPSTREAM_PORT)], {},
        )  # fmt: skip
        servers.append(upstream)
        png_bytes = json.loads(urllib.request.urlopen(upstream.url + "/_stats").read())["png_bytes"]
        print(f"machine: {machine()}\nupstream PNG: {png_bytes:,} bytes", flush=True)
        from floor import measure

        bytes_floor = measure()
        steps = ", ".join(f"{name} {ms:.2f}" for name, ms in bytes_floor.steps.items())
        print(f"bytes' floor: {bytes_floor.total:.2f} ms of CPU per image ({steps})", flush=True)
        set_latency(0)
        if "A" not in skip:
            warm(upstream, "/v1/images/generations", UPSTREAM_BODY)
            for c in levels:
                path, seconds = "/v1/images/generations", args.floor_seconds
                rows.append(load_row(wrk_bin, "A", upstream, path, UPSTREAM_BODY, c, seconds))
        if litellm is not None:
            peer = start_litellm(litellm)
            servers.append(peer)
            warm(peer, "/v1/images/generations", B64_BODY)
            for c in levels:
                rows.append(
                    load_row(
                        wrk_bin, "F", peer, "/v1/images/generations", B64_BODY, c, args.seconds
                    )
                )
            stop(peer)
            servers.remove(peer)
        for kind in databases:
            gateway = start_gateway(kind, workers=512)
            servers.append(gateway)
            warm(gateway, "/v1/images/generations", B64_BODY)
            for scenario, body in (("B", B64_BODY), ("C", URL_BODY)):
                if scenario in skip:
                    continue
                for c in levels:
                    path = "/v1/images/generations"
                    rows.append(load_row(wrk_bin, scenario, gateway, path, body, c, args.seconds))
            if "D" not in skip:
                set_latency(2000)
                path, seconds = "/v1/images/generations", args.d_seconds
                row = load_row(
                    wrk_bin, "D", gateway, path, B64_BODY, 256, seconds,
                    timeout_s=60, note="upstream 2 s",
                )  # fmt: skip
                rows.append(row)
                set_latency(0)
            stop(gateway)
            servers.remove(gateway)
            for processes in [int(p) for p in args.processes.split(",") if p and int(p) > 1]:
                if "B" in skip:
                    break
                gateway = start_gateway(kind, workers=512, processes=processes)
                servers.append(gateway)
                warm(gateway, "/v1/images/generations", B64_BODY)
                for c in levels:
                    path = "/v1/images/generations"
                    rows.append(load_row(wrk_bin, "B", gateway, path, B64_BODY, c, args.seconds))
                stop(gateway)
                servers.remove(gateway)
            if "E" not in skip:
                gateway = start_gateway(kind, workers=args.e_workers)
                servers.append(gateway)
                set_latency(30000)
                rows.append(jobs_row(wrk_bin, gateway, args.jobs, budget_s=args.e_budget))
                set_latency(0)
                stop(gateway)
                servers.remove(gateway)
    finally:
        for server in reversed(servers):
            stop(server)
        empty_trash()
    elapsed = time.monotonic() - began
    load_rows = [row for row in rows if row.scenario != "E"]
    print()
    print(table(load_rows))
    results = {
        "machine": machine(),
        "png_bytes": png_bytes,
        "bytes_floor_ms": bytes_floor.steps,
        "litellm": litellm_version() if litellm else None,
        "elapsed_s": elapsed,
        "args": vars(args),
        "rows": [row.__dict__ for row in rows],
    }
    # A run that skips scenarios keeps its results apart: report.py re-renders the page
    # from results.json, the last run of every scenario.
    name = "results-partial.json" if skip else "results.json"
    (OUT / name).write_text(json.dumps(results, indent=2))
    if args.write_docs:
        from report import write_report

        write_report(Path(args.write_docs), results, table(load_rows))
        print(f"\nwrote {args.write_docs} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
