"""The real server on a free port, driven by the official ``openai`` SDK, as a new user would."""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

# A key may end in "-", so it ends where no key character follows, not at a word boundary.
_FIRST_KEY = re.compile(r"\b(ig_[A-Za-z0-9_-]{40})(?![A-Za-z0-9_-])")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(tmp_path: Path, database_url: str, *args: str) -> Iterator[tuple[str, str, str]]:
    """``imagegate serve *args`` on a free port: its base URL, first admin key and log."""
    port = _free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_PORT": str(port),
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagegate", "serve", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert process.poll() is None, log.read_text()
        match = _FIRST_KEY.search(log.read_text())
        assert match, log.read_text()
        yield base, match.group(1), str(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    with _serving(tmp_path, database_url) as (base, key, _):
        yield base, key


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """``openai.OpenAI`` clients, closed after the test: an unclosed client's pooled sockets
    are only reclaimed when the garbage collector happens to run (a ResourceWarning)."""
    clients: list[openai.OpenAI] = []

    def client(**options: Any) -> openai.OpenAI:
        clients.append(openai.OpenAI(**options))
        return clients[-1]

    yield client
    for made in clients:
        made.close()


def _server_processes(pid: str) -> int:
    """How many processes ``pid`` spawned to serve (its multiprocessing children, not
    multiprocessing's resource tracker), from /proc."""
    found = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        found += fields[1] == pid and b"spawn_main" in command
    return found


def test_openai_sdk_lists_models_and_generates(
    server: tuple[str, str], sdk: Callable[..., openai.OpenAI]
) -> None:
    base, key = server
    client = sdk(base_url=f"{base}/v1", api_key=key)

    models = [m.id for m in client.models.list()]
    assert "mock-image" in models

    result = client.images.generate(
        prompt="a lighthouse", size="1024x1024", response_format="b64_json"
    )
    assert result.data is not None
    png = base64.b64decode(result.data[0].b64_json or "")
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (1024, 1024))

    again = client.images.generate(
        prompt="a lighthouse", size="1024x1024", response_format="b64_json"
    )
    assert again.data is not None
    assert again.data[0].b64_json == result.data[0].b64_json  # deterministic placeholder

    linked = client.images.generate(
        model="mock-image", prompt="a fox", n=2, size="512x512", response_format="url"
    )
    assert linked.data is not None and len(linked.data) == 2
    fetched = httpx.get(linked.data[0].url or "")
    assert fetched.status_code == 200
    image = Image.open(io.BytesIO(fetched.content))
    assert (image.format, image.size) == ("PNG", (512, 512))


def test_openai_sdk_sees_errors_in_openai_shape(
    server: tuple[str, str], sdk: Callable[..., openai.OpenAI]
) -> None:
    base, key = server
    client = sdk(base_url=f"{base}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as not_found:
        client.images.generate(model="no-such-model", prompt="p")
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(prompt="p", size="13x7")  # type: ignore[arg-type]
    assert bad_size.value.param == "size"
    wrong_key = sdk(base_url=f"{base}/v1", api_key="ig_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()


def test_openai_sdk_edits_an_image(
    server: tuple[str, str], sdk: Callable[..., openai.OpenAI]
) -> None:
    base, key = server
    client = sdk(base_url=f"{base}/v1", api_key=key)
    source = io.BytesIO()
    Image.new("RGB", (300, 200), "orange").save(source, "PNG")
    edited = client.images.edit(
        model="mock-image",
        image=("portrait.png", source.getvalue(), "image/png"),
        prompt="Replace the background with a tropical beach",
        size="1024x1024",
    )
    assert edited.data is not None
    image = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json or "")))
    assert (image.format, image.size) == ("PNG", (1024, 1024))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_several_server_processes_share_the_port(
    tmp_path: Path, database_url: str, sdk: Callable[..., openai.OpenAI]
) -> None:
    with _serving(tmp_path, database_url, "--workers", "2") as (base, key, pid):
        log = (tmp_path / "server.log").read_text()
        assert len(set(_FIRST_KEY.findall(log))) == 1  # one first key
        assert _server_processes(pid) == 2
        client = sdk(base_url=f"{base}/v1", api_key=key)

        def generate(index: int) -> tuple[str, int]:
            result = client.images.generate(
                prompt=f"a lighthouse {index}", size="256x256", response_format="b64_json"
            )
            assert result.data is not None
            image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
            return image.format or "", image.size[0]

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(generate, range(16))) == [("PNG", 256)] * 16

        # An async job is queued by one process and may be run by either.
        headers = {"Authorization": f"Bearer {key}"}
        submitted = httpx.post(
            f"{base}/v1/jobs/mock-image", json={"prompt": "p", "size": "256x256"}, headers=headers
        )
        assert submitted.status_code == 202, submitted.text
        job_url = f"{base}/v1/jobs/{submitted.json()['job_id']}"
        deadline = time.monotonic() + 30
        job = httpx.get(job_url, headers=headers).json()
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = httpx.get(job_url, headers=headers).json()
        assert job["status"] == "succeeded", job
        history = httpx.get(f"{base}/v1/jobs", params={"limit": 100}, headers=headers).json()
        assert len(history["data"]) == 17
