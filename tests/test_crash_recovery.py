"""A gateway SIGKILLed mid-job and restarted: the job finishes, charged once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.billing_support import write_paid_catalog
from tests.test_server_openai import _free_port


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "imagegate", "serve"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(log.read_text())


def test_sigkill_mid_job_then_restart(tmp_path: Path, database_url: str) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_PORT": str(port),
        "IMAGEGATE_CATALOG_DIRS": f'["{write_paid_catalog(tmp_path / "catalog")}"]',
        "IMAGEGATE_MOCK_LATENCY_SECONDS": "2",
        "IMAGEGATE_LEASE_SECONDS": "1.5",
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = _start(env, log)
    try:
        _wait_healthy(base, process, log)
        key = re.search(r"\b(ig_[A-Za-z0-9_-]{40})(?![A-Za-z0-9_-])", log.read_text())
        assert key
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            assert client.post("/v1/admin/credits/grants", json={"amount": 10}).status_code == 200
            job_id = client.post("/v1/jobs/paid-image", json={"prompt": "p"}).json()["job_id"]
            for _ in range(200):
                if client.get(f"/v1/jobs/{job_id}").json()["status"] == "running":
                    break
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

            process = _start(env, log)
            _wait_healthy(base, process, log)
            for _ in range(600):
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] not in ("queued", "running"):
                    break
                time.sleep(0.05)
            assert job["status"] == "succeeded", job
            assert job["attempt"] == 2
            assert job["charged_amount"] == 2
            balance = client.get("/v1/credits", params={"limit": 100}).json()
            assert (balance["available"], balance["held"]) == (8, 0)
            assert sorted(e["kind"] for e in balance["entries"]) == ["capture", "grant", "hold"]
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
