"""Fixtures to run the same tests on both blob stores: the data dir, and S3.

The S3 store talks to a moto server (an S3-compatible emulator) that these fixtures
start on 127.0.0.1 in its own process; each test gets a bucket of its own.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate.blobs.s3 import S3BlobStore
from imagegate.config import Settings

BACKENDS = ["local", "s3"]
S3_CREDENTIALS = {
    "s3_access_key_id": "testing",
    "s3_secret_access_key": "testing",
    "s3_region": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server for the whole test session."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the S3 emulator did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def backend_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    backend: str | None = None,
    **overrides: object,
) -> Settings:
    """Test settings for ``backend`` (default: the fixture's param), "local" or "s3"."""
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "lease_seconds": 5,
    }
    if (backend or request.param) == "s3":
        values |= S3_CREDENTIALS | {
            "blob_backend": "s3",
            "s3_endpoint_url": request.getfixturevalue("s3_endpoint"),
            "s3_bucket": f"ig-{secrets.token_hex(6)}",
            "s3_prefix": "blobs/",
        }
    values |= overrides
    return Settings(**values)  # type: ignore[arg-type]


async def create_bucket(settings: Settings) -> None:
    if settings.blob_backend != "s3":
        return
    assert settings.s3_bucket is not None
    store = S3BlobStore(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key="testing",
    )
    try:
        await store.create_bucket()
    finally:
        await store.close()
