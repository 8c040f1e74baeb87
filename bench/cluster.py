"""Several imagegate instances as real processes on one PostgreSQL database and one
S3-compatible store (moto's server), in front of the slow fake upstream (upstream.py).

Used by tests/test_scale_out.py (small) and by bench/scale.py and bench/wakeup.py
(large); each process writes its log to a file of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH_CATALOG = ROOT / "bench" / "catalog"
MODEL = "bench-image"
KEY = re.compile(r"\b(ig_[A-Za-z0-9_-]{40})(?![A-Za-z0-9_-])")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-4000:]}")


@dataclass
class Instance:
    name: str
    role: list[str]
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines skipped)."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def rss_peak_mib(self) -> float | None:
        """Peak resident memory of the process (Linux: VmHWM), while it runs."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, within: float) -> int:
        return self.process.wait(timeout=within)


@dataclass
class Cluster:
    """Start with :meth:`start_store`, :meth:`start_upstream`, then :meth:`start` each
    instance (the first one creates the admin key); :meth:`close` stops everything."""

    workdir: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    key: str | None = None

    def start_store(self, endpoint: str | None = None) -> str:
        """moto's S3 server (unless ``endpoint`` names a running one) and a new bucket."""
        if endpoint is None:
            port = free_port()
            log = self.workdir / "moto.log"
            with log.open("ab") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            self.helpers.append(process)
            endpoint = f"http://127.0.0.1:{port}"
            _wait_http(endpoint, process, log)
        bucket = f"ig-{secrets.token_hex(6)}"
        asyncio.run(_create_bucket(endpoint, bucket))
        self.env |= {
            "IMAGEGATE_BLOB_BACKEND": "s3",
            "IMAGEGATE_S3_ENDPOINT_URL": endpoint,
            "IMAGEGATE_S3_BUCKET": bucket,
            "IMAGEGATE_S3_PREFIX": "blobs/",
            "IMAGEGATE_S3_REGION": "us-east-1",
            "IMAGEGATE_S3_ACCESS_KEY_ID": "testing",
            "IMAGEGATE_S3_SECRET_ACCESS_KEY": "testing",
        }
        return endpoint

    def start_upstream(self, latency_ms: int, image_px: int = 64) -> str:
        """The fake OpenAI upstream, answering after ``latency_ms``."""
        port = free_port()
        log = self.workdir / "upstream.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "upstream.py"),
                    "--port",
                    str(port),
                    "--latency-ms",
                    str(latency_ms),
                    "--image-px",
                    str(image_px),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.helpers.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/_stats", process, log)
        self.env |= {
            "IMAGEGATE_OPENAI_BASE_URL": f"{url}/v1",
            "IMAGEGATE_OPENAI_API_KEY": "sk-fake",
            "IMAGEGATE_CATALOG_DIRS": json.dumps([str(BENCH_CATALOG)]),
        }
        return url

    def start(self, name: str, role: list[str], **settings: object) -> Instance:
        """Start ``imagegate <role>`` with the shared settings and ``settings`` on top
        (``IMAGEGATE_<NAME>``), and wait until it answers /healthz."""
        port = free_port()
        log = self.workdir / f"{name}.log"
        env = {
            **os.environ,
            "IMAGEGATE_DATA_DIR": str(self.workdir / name),
            "IMAGEGATE_DATABASE_URL": self.database_url,
            "IMAGEGATE_LOG_FORMAT": "json",
            "IMAGEGATE_METRICS_ENABLED": "true",
            **self.env,
            **{f"IMAGEGATE_{key.upper()}": str(value) for key, value in settings.items()},
        }
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "imagegate", *role, "--port", str(port)],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        instance = Instance(name, role, port, process, log)
        self.instances.append(instance)
        _wait_http(f"{instance.url}/healthz", process, log)
        if self.key is None:
            found = KEY.search(log.read_text())
            if found:
                self.key = found.group(1)
        return instance

    def client(self, instance: Instance, timeout: float = 60) -> httpx.AsyncClient:
        assert self.key is not None, "no admin key: start an API instance first"
        return httpx.AsyncClient(
            base_url=instance.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=timeout,
        )

    def close(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGKILL)
                instance.process.wait(timeout=10)
        for process in self.helpers:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def _create_bucket(endpoint: str, bucket: str) -> None:
    from imagegate.blobs.s3 import S3BlobStore

    store = S3BlobStore(
        bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    try:
        await store.create_bucket()
    finally:
        await store.close()


async def ledger_report(database_url: str) -> dict[str, Any]:
    """What the database says after a run: jobs by state, and every way the ledger and
    the jobs could disagree (each list should be empty)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    checks = {
        "not_terminal": "SELECT id FROM jobs WHERE status NOT IN "
        "('succeeded', 'failed', 'canceled', 'expired')",
        "succeeded_not_captured_once": "SELECT j.id FROM jobs j WHERE j.status = 'succeeded' "
        "AND (SELECT count(*) FROM ledger_entries l WHERE l.job_id = j.id "
        "AND l.kind = 'capture') <> 1",
        "charge_differs_from_capture": "SELECT j.id FROM jobs j WHERE j.status = 'succeeded' "
        "AND j.charged_amount <> (SELECT coalesce(sum(l.amount), 0) FROM ledger_entries l "
        "WHERE l.job_id = j.id AND l.kind = 'capture')",
        "failure_charged": "SELECT j.id FROM jobs j WHERE j.status <> 'succeeded' "
        "AND EXISTS (SELECT 1 FROM ledger_entries l WHERE l.job_id = j.id "
        "AND l.kind = 'capture')",
        "failure_not_released": "SELECT j.id FROM jobs j WHERE j.status <> 'succeeded' "
        "AND EXISTS (SELECT 1 FROM credit_holds h WHERE h.job_id = j.id) "
        "AND (SELECT count(*) FROM ledger_entries l WHERE l.job_id = j.id "
        "AND l.kind = 'release') <> 1",
        "holds_left": "SELECT job_id FROM credit_holds WHERE status = 'held'",
        "succeeded_without_outputs": "SELECT j.id FROM jobs j WHERE j.status = 'succeeded' "
        "AND NOT EXISTS (SELECT 1 FROM files f WHERE f.job_id = j.id)",
    }
    report: dict[str, Any] = {}
    async with engine.connect() as conn:
        states = await conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY status"))
        report["jobs"] = {status: count for status, count in states}
        for name, sql in checks.items():
            report[name] = [row[0] for row in await conn.execute(text(sql))]
        held = await conn.execute(text("SELECT coalesce(sum(held), 0) FROM credit_accounts"))
        report["credits_held"] = int(held.scalar_one())
        outputs = await conn.execute(text("SELECT id FROM files WHERE purpose = 'output'"))
        report["outputs"] = [row[0] for row in outputs]
    await engine.dispose()
    return report


async def create_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server of ``server_url``; its URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"imagegate_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def finished_at(database_url: str, job_ids: list[str]) -> dict[str, float]:
    """Each job's end as the worker recorded it (Unix seconds)."""
    from sqlalchemy import bindparam, text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    statement = text("SELECT id, finished_at FROM jobs WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(statement, {"ids": job_ids})
            return {row[0]: row[1].timestamp() for row in rows if row[1] is not None}
    finally:
        await engine.dispose()
