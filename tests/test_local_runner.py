"""The local runner: a tiny diffusers pipeline with random weights, built here and saved to
a folder, serves jobs through the jobs API on the CPU (real job, ledger and files); same-
shape requests run in one batch; a gateway without the runner leaves its jobs to it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

# The extra imagegate[local]; .ci/run installs it (with the CPU build of PyTorch).
pytest.importorskip("diffusers", reason="pip install torch==2.13.0 -e '.[local]'")
pytest.importorskip("transformers", reason="pip install torch==2.13.0 -e '.[local]'")

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.local.pipeline import LocalPipeline, Shape
from imagegate.local.provider import LocalProvider
from imagegate.local.tiny import build_tiny_pipeline
from imagegate.local.worker import local_gateway
from imagegate.providers.registry import default_registry
from tests.billing_support import credits, grant, kinds
from tests.helpers import decode_image

LOCAL_MODEL = """
models:
  - slug: tiny-local
    name: Tiny local pipeline
    provider: self
    output_formats: [png, jpeg]
    count_field: n
    format_field: output_format
    seed_field: seed
    params:
      prompt: {type: string, required: true, min_length: 1}
      n: {type: integer, default: 1, minimum: 1, maximum: 4}
      size: {type: string, default: 64x64, enum: [64x64, 96x64]}
      num_inference_steps: {type: integer, default: 2, minimum: 1, maximum: 50}
      guidance_scale: {type: number, default: 1.0, minimum: 0, maximum: 20}
      seed: {type: [integer, "null"], default: null}
      output_format: {type: string, default: png, enum: [png, jpeg]}
    sizes:
      field: size
      style: wxh
      default: 64x64
      options: {64x64: [64, 64], 96x64: [96, 64]}
    price: 1
    routes: [{provider: local, upstream_id: tiny}]
    provenance: a pipeline folder of our own
"""


async def _enable(client: httpx.AsyncClient, slug: str) -> None:
    """As an admin enables a model (the first start may have enabled it already)."""
    response = await client.patch(f"/v1/admin/image-models/{slug}", json={"enabled": True})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> LocalPipeline:
    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))
    return LocalPipeline(folder, device="cpu")


@pytest.fixture
def local_settings(settings: Settings) -> Settings:
    catalog = settings.data_dir.parent / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    (catalog / "local.yaml").write_text(LOCAL_MODEL)
    return settings.model_copy(update={"catalog_dirs": [catalog]})


@asynccontextmanager
async def serving(gateway: Gateway, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway.settings, gateway=gateway)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {key or gateway.first_admin_key}"},
        ) as client,
    ):
        yield client


async def _poll(client: httpx.AsyncClient, job_id: str, seconds: float = 60) -> dict[str, Any]:
    for _ in range(int(seconds / 0.05)):
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def _ready(client: httpx.AsyncClient, gateway: Gateway) -> None:
    await _enable(client, "tiny-local")
    await client.patch("/v1/admin/settings", json={"unfiltered_models_allowed": True})
    await grant(client, 10)


async def test_jobs_through_the_tiny_pipeline_on_the_cpu(
    local_settings: Settings, pipeline: LocalPipeline
) -> None:
    provider = LocalProvider(pipeline)
    registry = default_registry(local_settings)
    registry.register(provider)
    gateway = Gateway(local_settings, providers=registry)
    async with serving(gateway) as client:
        await _ready(client, gateway)
        model = (await client.get("/v1/models/tiny-local")).json()
        assert model["safety_filter"] is False
        accepted = await client.post(
            "/v1/jobs/tiny-local", json={"prompt": "a red barn", "size": "96x64", "n": 2}
        )
        assert accepted.status_code == 202, accepted.text
        job = await _poll(client, accepted.json()["job_id"])
        assert job["status"] == "succeeded", job
        assert job["charged_amount"] == 2
        assert [(o["width"], o["height"]) for o in job["outputs"]] == [(96, 64), (96, 64)]
        content = await client.get(f"/v1/files/{job['outputs'][0]['file_id']}/content")
        image = Image.open(io.BytesIO(content.content))
        assert (image.format, image.size) == ("PNG", (96, 64))
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (8, 0)
        assert kinds(balance["entries"]) == ["capture", "grant", "hold"]

        response = await client.post(
            "/v1/images/generations",
            json={"model": "tiny-local", "prompt": "a barn", "output_format": "jpeg"},
        )
        assert response.status_code == 200, response.text
        generated = decode_image(response.json()["data"][0]["b64_json"])
        assert (generated.format, generated.size) == ("JPEG", (64, 64))
    assert provider.device == "cpu"


class _Recording:
    """A pipeline that records its batches and draws flat images of the asked size."""

    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[Shape, list[str]]] = []

    def run(self, shape: Shape, prompts: list[str], seeds: list[int | None]) -> list[Any]:
        self.calls.append((shape, prompts))
        return [Image.new("RGB", (shape.width, shape.height)) for _ in prompts]


def _request(prompt: str, width: int = 64, steps: int = 2) -> Any:
    from imagegate.providers.base import ProviderRequest

    return ProviderRequest(
        job_id=f"job_{prompt}",
        model="tiny-local",
        upstream_model="tiny",
        action="generate",
        params={"num_inference_steps": steps},
        n=1,
        width=width,
        height=64,
        output_format="png",
        timeout_s=30,
        prompt=prompt,
    )


async def test_requests_of_one_shape_that_arrive_together_run_as_one_batch() -> None:
    recording = _Recording()
    provider = LocalProvider(recording, max_batch=8)
    try:
        results = await asyncio.gather(*(provider.generate(_request(f"p{i}")) for i in range(8)))
        assert [len(r.images) for r in results] == [1] * 8
        assert [len(prompts) for _, prompts in recording.calls] == [8]
        assert results[0].usage == {"device": "cpu", "batch_size": 8}

        recording.calls.clear()
        mixed = [_request("a"), _request("b", width=96), _request("c"), _request("d", steps=4)]
        done = await asyncio.gather(*(provider.generate(r) for r in mixed))
        assert [(r.images[0].width, r.images[0].height) for r in done] == [
            (64, 64),
            (96, 64),
            (64, 64),
            (64, 64),
        ]
        assert sorted(prompts for _, prompts in recording.calls) == [["a", "c"], ["b"], ["d"]]
    finally:
        await provider.aclose()


async def test_a_gateway_without_the_runner_leaves_its_jobs_to_the_local_worker(
    local_settings: Settings,
) -> None:
    gateway = Gateway(local_settings)  # imagegate serve: no local runner in this process
    async with serving(gateway) as client:
        await _ready(client, gateway)
        accepted = (await client.post("/v1/jobs/tiny-local", json={"prompt": "a barn"})).json()
        assert accepted["status"] == "queued"
        await gateway.dispatcher.recover()  # a poll: the job is not this process's to run
        # Nor can its runner claim it, however the job's id reaches it.
        assert await gateway.runner.run(accepted["job_id"]) is False
        await asyncio.sleep(0.2)
        job = (await client.get(f"/v1/jobs/{accepted['job_id']}")).json()
        assert job["status"] == "queued"

        # imagegate local-worker, on the same database
        recording = _Recording()
        worker = local_gateway(local_settings, LocalProvider(recording), poll_interval=0.05)
        await worker.start()
        try:
            job = await _poll(client, accepted["job_id"], seconds=30)
        finally:
            await worker.stop()
        assert job["status"] == "succeeded", job
        assert [len(prompts) for _, prompts in recording.calls] == [1]


def test_a_folder_without_a_pipeline_says_what_it_needs(tmp_path: Path) -> None:
    from imagegate.local.pipeline import LocalRunnerError

    with pytest.raises(LocalRunnerError, match=r"model_index\.json"):
        LocalPipeline(tmp_path)
