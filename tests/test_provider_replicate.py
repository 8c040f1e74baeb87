"""Replicate predictions (Prefer: wait, polling, cancel) and Recraft generations (SVG)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from imagegate.config import Settings
from imagegate.providers.base import ProviderRequest
from imagegate.providers.common import AdapterOptions
from imagegate.providers.replicate import ReplicateProvider
from tests.fakes.harness import ASPECTS, PROMPT, harness, spec
from tests.fakes.recraft import TOKEN as RECRAFT_TOKEN
from tests.fakes.recraft import FakeRecraft
from tests.fakes.replicate import TOKEN, FakeReplicate
from tests.fakes.server import SVG, Reply

SCHNELL = spec(
    "rep-schnell",
    [{"provider": "replicate", "upstream_id": "black-forest-labs/flux-schnell"}],
    params={
        "prompt": PROMPT,
        "aspect_ratio": ASPECTS,
        "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "output_format": {"type": "string", "default": "webp", "enum": ["webp", "png", "jpg"]},
    },
    sizes={
        "field": "aspect_ratio",
        "style": "aspect_ratio",
        "default": "1:1",
        "options": {"1:1": [1024, 1024], "16:9": [1344, 768], "9:16": [768, 1344]},
    },
    count_field="num_outputs",
    format_field="output_format",
    output_formats=["webp", "png", "jpg"],
)
VECTOR = spec(
    "recraft-vector",
    [{"provider": "recraft", "upstream_id": "recraftv3"}],
    params={
        "prompt": PROMPT,
        "style": {
            "type": "string",
            "default": "vector_illustration",
            "enum": ["vector_illustration", "icon"],
        },
        "n": {"type": "integer", "default": 1, "minimum": 1, "maximum": 2},
    },
    count_field="n",
    vector=True,
    output_formats=["svg"],
)


@pytest.fixture
def replicate() -> Iterator[FakeReplicate]:
    fake = FakeReplicate().start()
    yield fake
    fake.stop()


@pytest.fixture
def recraft() -> Iterator[FakeRecraft]:
    fake = FakeRecraft().start()
    yield fake
    fake.stop()


async def test_prediction_is_polled_to_completion_and_downloaded(
    settings: Settings, replicate: FakeReplicate
) -> None:
    async with harness(settings, [SCHNELL], replicate.settings()) as h:
        job = await h.run(
            {"model": "rep-schnell", "prompt": "a kite", "aspect_ratio": "16:9", "num_outputs": 2}
        )
        assert job["status"] == "succeeded", job
        image = Image.open(io.BytesIO(await h.content(job["outputs"][1])))
        row = await h.job_row(job["id"])
    assert (image.format, image.size) == ("WEBP", (1344, 768))
    [create] = replicate.calls("create")
    assert create.path == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["prefer"] == "wait=20"
    assert create.json == {
        "input": {
            "prompt": "a kite",
            "aspect_ratio": "16:9",
            "num_outputs": 2,
            "output_format": "webp",
        }
    }
    prediction_id = next(iter(replicate.predictions))
    assert [c.path for c in replicate.calls("get")] == [f"/v1/predictions/{prediction_id}"] * 2
    assert row.provider_request_id == prediction_id
    assert len(replicate.calls("download")) == 2


async def test_prefer_wait_answers_without_polling(
    settings: Settings, replicate: FakeReplicate
) -> None:
    replicate.finish_within_wait = True
    async with harness(settings, [SCHNELL], replicate.settings()) as h:
        job = await h.run({"model": "rep-schnell", "prompt": "a kite"})
    assert job["status"] == "succeeded", job
    assert replicate.calls("get") == []


async def test_nsfw_failure_is_a_refusal(settings: Settings, replicate: FakeReplicate) -> None:
    replicate.fail_next = "NSFW content detected. Try running it again, or try a different prompt."
    async with harness(settings, [SCHNELL], replicate.settings()) as h:
        job = await h.run({"model": "rep-schnell", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "content_policy_violation"
    assert job["error"]["provider_reason"].startswith("NSFW content detected")
    assert len(replicate.calls("create")) == 1


async def test_invalid_fields_name_the_param(settings: Settings, replicate: FakeReplicate) -> None:
    replicate.script(
        "create",
        Reply(
            422,
            {
                "title": "Input validation failed",
                "status": 422,
                "detail": "- input.num_outputs: Must be less than or equal to 4",
                "invalid_fields": [
                    {"type": "maximum", "field": "input.num_outputs", "description": "Must be <= 4"}
                ],
            },
        ),
    )
    async with harness(settings, [SCHNELL], replicate.settings()) as h:
        job = await h.run({"model": "rep-schnell", "prompt": "x"})
    assert job["error"]["code"] == "invalid_parameter"
    assert "(num_outputs)" in job["error"]["message"]


async def test_giving_up_cancels_the_prediction(replicate: FakeReplicate) -> None:
    replicate.pending_polls = 10_000
    adapter = ReplicateProvider(
        TOKEN, base_url=f"{replicate.url}/v1", options=AdapterOptions(poll_interval=0.01)
    )
    request = ProviderRequest(
        job_id="job_1",
        model="rep-schnell",
        upstream_model="black-forest-labs/flux-schnell",
        action="generate",
        params={"prompt": "p"},
        n=1,
        width=1024,
        height=1024,
        output_format="webp",
        timeout_s=0.3,
        prompt="p",
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(adapter.generate(request), timeout=0.3)
    [cancel] = replicate.calls("cancel")
    prediction_id = next(iter(replicate.predictions))
    assert cancel.method == "POST"
    assert cancel.path == f"/v1/predictions/{prediction_id}/cancel"
    assert replicate.predictions[prediction_id].status == "canceled"
    await adapter.aclose()


async def test_recraft_vector_model_stores_svg(settings: Settings, recraft: FakeRecraft) -> None:
    async with harness(settings, [VECTOR], recraft.settings()) as h:
        job = await h.run({"model": "recraft-vector", "prompt": "a fox logo", "n": 2})
        assert job["status"] == "succeeded", job
        data = await h.content(job["outputs"][0])
    assert data == SVG
    assert {o["content_type"] for o in job["outputs"]} == {"image/svg+xml"}
    [call] = recraft.calls("generate")
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == f"Bearer {RECRAFT_TOKEN}"
    assert call.json == {
        "prompt": "a fox logo",
        "model": "recraftv3",
        "style": "vector_illustration",
        "size": "1024x1024",
        "n": 2,
        "response_format": "url",
    }


async def test_recraft_inappropriate_prompt_is_a_refusal(
    settings: Settings, recraft: FakeRecraft
) -> None:
    recraft.script(
        "generate",
        Reply(400, {"code": "prompt_is_inappropriate", "message": "Prompt is inappropriate"}),
    )
    async with harness(settings, [VECTOR], recraft.settings()) as h:
        job = await h.run({"model": "recraft-vector", "prompt": "x"})
    assert job["error"]["code"] == "content_policy_violation"
    assert job["error"]["provider_reason"] == "Prompt is inappropriate"
