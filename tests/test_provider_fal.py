"""fal's queue API: submit, status with logs and queue position, result, cancel."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from PIL import Image
from sqlalchemy import update

from imagegate.config import Settings
from imagegate.providers.base import ProviderRequest
from imagegate.providers.common import AdapterOptions
from imagegate.providers.fal import FalProvider, app_id
from imagegate.store.tables import Job
from tests.fakes.fal import KEY, FakeFal
from tests.fakes.harness import PROMPT, harness, spec
from tests.fakes.server import Reply
from tests.helpers import assert_error

SCHNELL = spec(
    "flux-schnell",
    [{"provider": "fal", "upstream_id": "fal-ai/flux/schnell"}],
    params={
        "prompt": PROMPT,
        "image_size": {
            "type": ["string", "object"],
            "default": "landscape_4_3",
            "enum": ["square_hd", "square", "landscape_4_3", "portrait_16_9"],
            "properties": {
                "width": {"type": "integer", "required": True, "minimum": 1, "maximum": 14142},
                "height": {"type": "integer", "required": True, "minimum": 1, "maximum": 14142},
            },
        },
        "num_images": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "num_inference_steps": {"type": "integer", "default": 4, "minimum": 1, "maximum": 12},
        "output_format": {"type": "string", "default": "jpeg", "enum": ["jpeg", "png"]},
        "enable_safety_checker": {"type": "boolean", "default": True},
    },
    sizes={
        "field": "image_size",
        "style": "preset",
        "default": "landscape_4_3",
        "options": {
            "square_hd": [1024, 1024],
            "square": [512, 512],
            "landscape_4_3": [1024, 768],
            "portrait_16_9": [576, 1024],
        },
        "custom": {"min": 1, "max": 14142},
    },
    count_field="num_images",
    format_field="output_format",
    output_formats=["jpeg", "png"],
)


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    fake = FakeFal().start()
    yield fake
    fake.stop()


def test_app_id_drops_the_subpath() -> None:
    assert app_id("fal-ai/flux/schnell") == "fal-ai/flux"
    assert app_id("fal-ai/nano-banana-pro") == "fal-ai/nano-banana-pro"


async def test_queue_job_completes_after_polling(settings: Settings, fal: FakeFal) -> None:
    async with harness(settings, [SCHNELL], fal.settings()) as h:
        job = await h.run(
            {
                "model": "flux-schnell",
                "prompt": "a heron",
                "num_images": 2,
                "image_size": "portrait_16_9",
            }
        )
        assert job["status"] == "succeeded", job
        assert len(job["outputs"]) == 2
        for output in job["outputs"]:
            image = Image.open(io.BytesIO(await h.content(output)))
            assert (image.format, image.size) == ("JPEG", (576, 1024))
        row = await h.job_row(job["id"])

    [submit] = fal.calls("submit")
    assert submit.path == "/queue/fal-ai/flux/schnell"
    assert submit.headers["authorization"] == f"Key {KEY}"
    assert submit.json == {
        "prompt": "a heron",
        "image_size": "portrait_16_9",
        "num_images": 2,
        "num_inference_steps": 4,
        "output_format": "jpeg",
        "enable_safety_checker": True,
    }
    statuses = fal.calls("status")
    assert len(statuses) == 3  # IN_QUEUE, IN_PROGRESS, COMPLETED
    request_id = row.provider_request_id
    assert request_id == next(iter(fal.queued))
    # Status and result live under the app id, without the model's subpath.
    assert all(s.path == f"/queue/fal-ai/flux/requests/{request_id}/status" for s in statuses)
    assert all(s.query == {"logs": "1"} for s in statuses)
    [result] = fal.calls("result")
    assert result.path == f"/queue/fal-ai/flux/requests/{request_id}"
    assert row.result is not None
    assert row.result["usage"]["logs"] == ["step 2"]
    assert row.result["usage"]["seed"] == 42


async def test_custom_size_object_reaches_fal(settings: Settings, fal: FakeFal) -> None:
    async with harness(settings, [SCHNELL], fal.settings()) as h:
        job = await h.run(
            {"model": "flux-schnell", "prompt": "p", "image_size": {"width": 640, "height": 320}}
        )
    assert job["status"] == "succeeded", job
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (640, 320)
    assert fal.calls("submit")[0].json["image_size"] == {"width": 640, "height": 320}


async def test_content_policy_422_is_a_refusal(settings: Settings, fal: FakeFal) -> None:
    detail = [
        {
            "loc": ["body", "prompt"],
            "msg": "The content was flagged by a content checker.",
            "type": "content_policy_violation",
            "categories": ["violence"],
        }
    ]
    fal.script("submit", Reply(422, {"detail": detail}))
    async with harness(settings, [SCHNELL], fal.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "flux-schnell", "prompt": "x"}
        )
    error = assert_error(response, 400, "content_policy_violation")
    assert error["provider_reason"] == "The content was flagged by a content checker. (violence)"
    assert len(fal.calls("submit")) == 1


async def test_flagged_outputs_are_a_refusal(settings: Settings, fal: FakeFal) -> None:
    fal.nsfw_next = True
    async with harness(settings, [SCHNELL], fal.settings()) as h:
        job = await h.run({"model": "flux-schnell", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "content_policy_violation"
    assert "has_nsfw_concepts" in job["error"]["provider_reason"]
    assert fal.calls("download") == []


async def test_validation_422_names_the_param(settings: Settings, fal: FakeFal) -> None:
    detail = [
        {
            "loc": ["body", "num_inference_steps"],
            "msg": "must be at most 12",
            "type": "less_than_equal",
        }
    ]
    fal.script("submit", Reply(422, {"detail": detail}))
    async with harness(settings, [SCHNELL], fal.settings()) as h:
        job = await h.run({"model": "flux-schnell", "prompt": "x"})
    assert job["error"]["code"] == "invalid_parameter"
    assert "num_inference_steps" in job["error"]["message"]


async def test_429_on_status_is_retried(settings: Settings, fal: FakeFal) -> None:
    fal.script("status", Reply(429, {"detail": "rate limited"}, headers={"Retry-After": "0"}))
    async with harness(settings, [SCHNELL], fal.settings()) as h:
        job = await h.run({"model": "flux-schnell", "prompt": "x"})
    assert job["status"] == "succeeded", job
    assert len(fal.calls("status")) == 4


async def test_401_says_which_key_to_check(settings: Settings, fal: FakeFal) -> None:
    async with harness(settings, [SCHNELL], {**fal.settings(), "fal_key": "wrong"}) as h:
        job = await h.run({"model": "flux-schnell", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_auth_failed"
    assert "FAL_KEY" in job["error"]["message"]


def _request(**overrides: object) -> ProviderRequest:
    values: dict[str, object] = {
        "job_id": "job_1",
        "model": "flux-schnell",
        "upstream_model": "fal-ai/flux/schnell",
        "action": "generate",
        "params": {"prompt": "p"},
        "n": 1,
        "width": 1024,
        "height": 768,
        "output_format": "jpeg",
        "timeout_s": 10,
        "prompt": "p",
    }
    values.update(overrides)
    return ProviderRequest(**values)  # type: ignore[arg-type]


async def test_giving_up_cancels_the_queued_request(fal: FakeFal) -> None:
    fal.pending_polls = 10_000
    adapter = FalProvider(
        KEY,
        queue_url=f"{fal.url}/queue",
        options=AdapterOptions(poll_interval=0.01),
    )
    submitted = asyncio.Event()

    async def on_submitted(request_id: str) -> None:
        submitted.set()

    task = asyncio.create_task(adapter.generate(_request(on_submitted=on_submitted)))
    await asyncio.wait_for(submitted.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [cancel] = fal.calls("cancel")
    assert cancel.method == "PUT"
    assert cancel.path.endswith("/cancel") and cancel.path.startswith(
        "/queue/fal-ai/flux/requests/"
    )
    assert cancel.headers["authorization"] == f"Key {KEY}"
    assert next(iter(fal.queued.values())).canceled
    await adapter.aclose()


async def test_cancel_by_request_id(fal: FakeFal) -> None:
    adapter = FalProvider(KEY, queue_url=f"{fal.url}/queue")
    submit = await adapter.http.client.post(
        f"{fal.url}/queue/fal-ai/flux/schnell", json={"prompt": "p"}, headers=adapter.http.headers
    )
    request_id = submit.json()["request_id"]
    assert await adapter.cancel(request_id, "fal-ai/flux/schnell") is True
    assert fal.calls("cancel")[0].path == f"/queue/fal-ai/flux/requests/{request_id}/cancel"
    await adapter.aclose()


async def test_a_canceled_job_stops_its_provider_call(settings: Settings, fal: FakeFal) -> None:
    """A job canceled while it runs loses its lease; the runner stops the adapter, which
    cancels the queued request upstream."""
    fal.pending_polls = 10_000
    async with harness(settings, [SCHNELL], fal.settings(), {"lease_seconds": 0.3}) as h:
        response = await h.submit({"model": "flux-schnell", "prompt": "p"})
        job_id = response.json()["id"]
        drain = asyncio.create_task(h.gateway.dispatcher.drain())
        assert await asyncio.to_thread(fal.polled.wait, 10)
        async with h.gateway.db.session() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(status="canceled"))
        await asyncio.wait_for(drain, 10)
        job = (await h.client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "canceled"
    assert len(fal.calls("cancel")) == 1
