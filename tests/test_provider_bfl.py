"""Black Forest Labs: submit, poll the returned polling_url, download result.sample."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from imagegate.catalog import ModelSpec
from imagegate.config import Settings
from imagegate.worker import runner
from tests.fakes.bfl import KEY, FakeBFL
from tests.fakes.fal import FakeFal
from tests.fakes.harness import ASPECTS, PROMPT, aspect_sizes, harness, spec
from tests.fakes.server import Reply
from tests.helpers import assert_error

FLUX_PARAMS = {
    "prompt": PROMPT,
    "aspect_ratio": ASPECTS,
    "seed": {"type": ["integer", "null"], "default": None},
    "output_format": {"type": "string", "default": "jpeg", "enum": ["jpeg", "png"]},
    "safety_tolerance": {"type": "string", "default": "2", "enum": ["1", "2", "3", "4", "5", "6"]},
}
FLUX_SIZES = aspect_sizes({"1:1": [1024, 1024], "16:9": [1344, 768], "9:16": [768, 1344]})


def flux(slug: str, routes: list[dict[str, str]], **fields: Any) -> ModelSpec:
    return spec(
        slug,
        routes,
        params=FLUX_PARAMS,
        sizes=FLUX_SIZES,
        output_formats=["jpeg", "png"],
        format_field="output_format",
        seed_field="seed",
        **fields,
    )


ULTRA = flux("flux-ultra", [{"provider": "bfl", "upstream_id": "flux-pro-1.1-ultra"}])
ULTRA_EU = flux(
    "flux-ultra-eu", [{"provider": "bfl", "upstream_id": "flux-pro-1.1-ultra", "region": "eu"}]
)
ULTRA_ANYWHERE = flux(
    "flux-ultra-fallback",
    [
        {"provider": "bfl", "upstream_id": "flux-pro-1.1-ultra"},
        {"provider": "fal", "upstream_id": "fal-ai/flux-pro/v1.1-ultra"},
    ],
)
SLOW = flux("flux-slow", [{"provider": "bfl", "upstream_id": "flux-pro-1.1-ultra"}], timeout_s=0.5)
MODELS = [ULTRA, ULTRA_EU, ULTRA_ANYWHERE, SLOW]


@pytest.fixture
def bfl() -> Iterator[FakeBFL]:
    fake = FakeBFL().start()
    yield fake
    fake.stop()


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    fake = FakeFal().start()
    yield fake
    fake.stop()


@pytest.fixture
def no_job_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Job-level retries fall due at once, so a burst drain runs every attempt."""
    monkeypatch.setattr(runner, "backoff_seconds", lambda *args: 0.0)


async def test_submit_poll_and_download_make_a_stored_file(
    settings: Settings, bfl: FakeBFL
) -> None:
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run(
            {"model": "flux-ultra", "prompt": "a fox", "aspect_ratio": "16:9", "seed": 5}
        )
        assert job["status"] == "succeeded", job
        [output] = job["outputs"]
        assert (output["width"], output["height"]) == (1344, 768)
        assert output["content_type"] == "image/jpeg"
        image = Image.open(io.BytesIO(await h.content(output)))
        assert (image.format, image.size) == ("JPEG", (1344, 768))
        assert job["charged_amount"] == job["estimated_cost"] == 4

    [submit] = bfl.calls("submit")
    assert submit.method == "POST"
    assert submit.path == "/global/v1/flux-pro-1.1-ultra"
    assert submit.headers["x-key"] == KEY
    assert submit.json == {
        "prompt": "a fox",
        "aspect_ratio": "16:9",
        "seed": 5,
        "output_format": "jpeg",
        "safety_tolerance": 2,
    }
    polls = bfl.calls("poll")
    assert len(polls) == 3  # Pending, Pending, Ready
    task_id = next(iter(bfl.tasks))
    # The polling URL is used as given, on the host BFL named (not the submit host).
    assert {p.host for p in polls} == {f"localhost:{bfl.port}"}
    assert all(p.query == {"id": task_id} and p.headers["x-key"] == KEY for p in polls)
    [download] = bfl.calls("download")
    assert "x-key" not in download.headers  # the delivery URL is signed; our key stays home


async def test_provider_request_id_is_recorded_on_the_job(settings: Settings, bfl: FakeBFL) -> None:
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
        row = await h.job_row(job["id"])
    assert row.provider_request_id == next(iter(bfl.tasks))
    assert row.result is not None and row.result["provider"] == "bfl"


async def test_eu_route_submits_to_the_eu_endpoint(settings: Settings, bfl: FakeBFL) -> None:
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra-eu", "prompt": "a castle"})
    assert job["status"] == "succeeded", job
    [submit] = bfl.calls("submit")
    assert submit.path == "/eu/v1/flux-pro-1.1-ultra"
    assert all(p.path == "/eu/v1/get_result" for p in bfl.calls("poll"))


async def test_workspace_region_applies_when_the_route_names_none(
    settings: Settings, bfl: FakeBFL
) -> None:
    async with harness(settings, MODELS, bfl.settings(), {"bfl_region": "us"}) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a canyon"})
    assert job["status"] == "succeeded", job
    assert bfl.calls("submit")[0].path == "/us/v1/flux-pro-1.1-ultra"


async def test_moderation_is_a_400_with_the_reason_and_no_retry(
    settings: Settings, bfl: FakeBFL
) -> None:
    bfl.finish_next("Content Moderated", {"Moderation Reasons": ["Derivative Works"]})
    async with harness(settings, MODELS, bfl.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "flux-ultra", "prompt": "x"}
        )
        error = assert_error(response, 400, "content_policy_violation")
        assert error["provider_reason"] == "Content Moderated: Derivative Works"
        job = (await h.client.get(f"/v1/jobs/{error['job_id']}")).json()
    assert job["status"] == "failed"
    assert job["charged_amount"] == 0
    assert job["attempt"] == 1
    assert len(bfl.calls("submit")) == 1


async def test_request_moderated_does_not_fall_back(
    settings: Settings, bfl: FakeBFL, fal: FakeFal
) -> None:
    bfl.finish_next("Request Moderated")
    async with harness(settings, MODELS, bfl.settings(), fal.settings()) as h:
        job = await h.run({"model": "flux-ultra-fallback", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "content_policy_violation"
    assert job["error"]["provider_reason"] == "Request Moderated"
    assert fal.requests == []


async def test_unknown_and_not_found_statuses_keep_polling(
    settings: Settings, bfl: FakeBFL
) -> None:
    bfl.script(
        "poll", Reply(200, {"status": "Task not found"}), Reply(200, {"status": "Queued-Somewhere"})
    )
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
    assert job["status"] == "succeeded", job
    assert len(bfl.calls("poll")) == 5


async def test_429_is_retried_after_retry_after(settings: Settings, bfl: FakeBFL) -> None:
    bfl.script(
        "submit", Reply(429, {"detail": "Too many active tasks"}, headers={"Retry-After": "1"})
    )
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
    assert job["status"] == "succeeded", job
    first, second = bfl.calls("submit")
    assert second.at - first.at >= 1.0
    assert job["attempt"] == 1  # retried inside the attempt, not by re-queuing the job


async def test_long_retry_after_requeues_the_job_instead_of_waiting(
    settings: Settings, bfl: FakeBFL
) -> None:
    bfl.script("submit", Reply(429, {"detail": "slow down"}, headers={"Retry-After": "120"}))
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
        row = await h.job_row(job["id"])
    assert job["status"] == "queued"
    assert row.error_code == "upstream_rate_limited"
    assert row.not_before is not None and row.created_at is not None
    assert (row.not_before - row.created_at).total_seconds() >= 119
    assert len(bfl.calls("submit")) == 1


async def test_500s_exhaust_retries_then_fail_with_503(
    settings: Settings, bfl: FakeBFL, no_job_backoff: None
) -> None:
    bfl.script("submit", *[Reply(500, {"detail": "boom"})] * 9)
    async with harness(settings, MODELS, bfl.settings()) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_unavailable"
    assert job["attempt"] == 3
    assert job["charged_amount"] == 0
    assert len(bfl.calls("submit")) == 9  # 3 tries per attempt, 3 attempts


async def test_a_slow_upstream_times_out_and_is_retried_at_job_level(
    settings: Settings, bfl: FakeBFL, no_job_backoff: None
) -> None:
    bfl.script("submit", Reply(0, delay=2.0), Reply(0, delay=2.0), Reply(0, delay=2.0))
    async with harness(settings, MODELS, bfl.settings()) as h:
        response = await h.submit({"model": "flux-slow", "prompt": "a fox"})
        job_id = response.json()["id"]
        await h.gateway.dispatcher.drain()
        job = (await h.client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_timeout"
    assert job["attempt"] == 3


async def test_outputs_over_the_size_cap_fail_the_job(settings: Settings, bfl: FakeBFL) -> None:
    async with harness(settings, MODELS, bfl.settings(), {"provider_max_output_bytes": 2048}) as h:
        job = await h.run({"model": "flux-ultra", "prompt": "a fox"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_output_too_large"
    assert job["charged_amount"] == 0


async def test_validation_error_names_the_param(settings: Settings, bfl: FakeBFL) -> None:
    detail = [
        {"loc": ["body", "aspect_ratio"], "msg": "unsupported aspect ratio", "type": "value_error"}
    ]
    bfl.script("submit", Reply(422, {"detail": detail}))
    async with harness(settings, MODELS, bfl.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "flux-ultra", "prompt": "x"}
        )
    error = assert_error(response, 400, "invalid_parameter")
    assert "aspect_ratio" in error["message"] and "unsupported aspect ratio" in error["message"]
    assert len(bfl.calls("submit")) == 1


async def test_transient_failure_falls_back_to_the_next_route(
    settings: Settings, bfl: FakeBFL, fal: FakeFal
) -> None:
    bfl.script("submit", *[Reply(503, {"detail": "overloaded"})] * 3)
    async with harness(settings, MODELS, bfl.settings(), fal.settings()) as h:
        job = await h.run(
            {"model": "flux-ultra-fallback", "prompt": "a fox", "aspect_ratio": "9:16"}
        )
        row = await h.job_row(job["id"])
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 1
    assert row.result is not None and row.result["provider"] == "fal"
    assert row.provider == "fal"  # a cancel of this job reaches the provider serving it
    assert row.provider_request_id == next(iter(fal.queued))
    [submit] = fal.calls("submit")
    assert submit.path == "/queue/fal-ai/flux-pro/v1.1-ultra"
    assert submit.json["aspect_ratio"] == "9:16"
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (768, 1376)


async def test_unconfigured_route_is_skipped(
    settings: Settings, fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BFL_API_KEY", raising=False)
    async with harness(settings, MODELS, fal.settings()) as h:
        job = await h.run({"model": "flux-ultra-fallback", "prompt": "a fox"})
    assert job["status"] == "succeeded", job
    assert len(fal.calls("submit")) == 1


async def test_a_model_whose_provider_is_unconfigured_says_what_to_set(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BFL_API_KEY", raising=False)
    async with harness(settings, MODELS, run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "flux-ultra", "prompt": "x"}
        )
    error = assert_error(response, 503, "provider_not_configured")
    assert "IMAGEGATE_BFL_API_KEY" in error["message"] and "BFL_API_KEY" in error["message"]
