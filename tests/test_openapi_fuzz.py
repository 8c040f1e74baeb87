"""The spec is the truth: a seeded schemathesis run with every check against a running
gateway, and a client generated from ``/openapi.json`` doing the main calls."""

from __future__ import annotations

import base64
import importlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED = 20261207


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """``imagegate serve`` on this test's database: (base URL, the first admin's key)."""
    port = _free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_PORT": str(port),
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "imagegate"), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        key = re.search(r"ig_[A-Za-z0-9_-]{40}", log.read_text())
        assert key is not None, log.read_text()
        yield url, key.group(0)
    finally:
        server.terminate()
        server.wait(10)


def test_a_seeded_schemathesis_run_with_every_check_passes(
    served: tuple[str, str], tmp_path: Path
) -> None:
    url, key = served
    command = [
        str(BIN / "st"),
        "--config-file",
        str(ROOT / "tests" / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        "3",
        "--workers",
        "1",
        "--phases",
        "coverage,fuzzing,stateful",
        "--no-shrink",
        "--no-color",
    ]
    # In a folder of its own: the run keeps its example database there.
    ran = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0, ran.stdout[-20000:] + ran.stderr[-5000:]
    assert "failures" not in ran.stdout.splitlines()[-1], ran.stdout[-5000:]


def _generate_client(url: str, where: Path) -> Any:
    spec = where / "openapi.json"
    spec.write_bytes(httpx.get(f"{url}/openapi.json").content)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    generated = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(where / "imagegate_spec_client"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # The generator reads no image answers (the file content's 200): it leaves that one out.
    warned = re.findall(r"WARNING parsing (\S+ \S+)", generated.stdout + generated.stderr)
    assert set(warned) <= {"GET /v1/files/{file_id}/content"}, generated.stdout
    sys.path.insert(0, str(where))
    return importlib.import_module("imagegate_spec_client")


def test_a_client_generated_from_the_spec_makes_the_main_calls(
    served: tuple[str, str], tmp_path: Path
) -> None:
    url, key = served
    package = _generate_client(url, tmp_path)
    try:
        _main_calls(package, url, key)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("imagegate_spec_client")]:
            del sys.modules[name]


def _main_calls(package: Any, url: str, key: str) -> None:
    def api(module: str) -> Any:
        return importlib.import_module(f"imagegate_spec_client.api.{module}")

    models = importlib.import_module("imagegate_spec_client.models")
    client = package.AuthenticatedClient(base_url=url, token=key)
    with client:
        listed = api("models.list_models_v1_models_get").sync(client=client)
        assert isinstance(listed, models.ModelList)
        assert "mock-image" in [model.id for model in listed.data]

        body = models.CreateImageV1ImagesGenerationsPostBody(prompt="a lighthouse")
        body["size"] = "256x256"  # a model's own parameter, beside the declared ones
        images = api("images.create_image_v1_images_generations_post").sync(
            client=client, body=body
        )
        assert isinstance(images, models.ImagesResponse), images
        png = base64.b64decode(images.data[0].b64_json)
        assert png.startswith(b"\x89PNG")

        submitted = api("jobs.submit_job_v1_jobs_model_post").sync_detailed(
            "mock-image",
            client=client,
            body=models.SubmitJobV1JobsModelPostBody.from_dict({"prompt": "p"}),
            idempotency_key="spec-client",
            prefer="wait=20",
        )
        assert submitted.status_code == 200, submitted.content
        job = submitted.parsed
        assert isinstance(job, models.Job) and job.status == models.JobStatus.SUCCEEDED
        polled = api("jobs.get_job_v1_jobs_job_id_get").sync(job.job_id, client=client)
        assert isinstance(polled, models.Job) and polled.outputs[0].file_id

        balance = api("credits_.get_credits_v1_credits_get").sync(client=client)
        assert isinstance(balance, models.CreditsOverview)

        missing = api("jobs.get_job_v1_jobs_job_id_get").sync("job_nope", client=client)
        assert isinstance(missing, models.ErrorBody)
        assert missing.error.code == "job_not_found"
