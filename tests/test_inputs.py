"""Source images through the API: every form (upload, file id, data URI, URL) for the
editors and the upscaler, the checks made on each, and what a refused request leaves."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.fake import FakeProvider
from imagegate.services import files
from imagegate.services.keys import Principal
from imagegate.store.tables import utcnow
from tests.helpers import assert_error, decode_image, enable_models
from tests.images import bomb_png, data_uri, noisy, solid, truncated
from tests.loopback import Loopback, loopback_server

EDITORS = ("seedream_v5_edit", "seedream_v45_edit", "nano_banana_edit", "flux-kontext-pro")
WAIT = {"Prefer": "wait=20"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the loopback file server stands in for an allowed internal asset server
    return settings.model_copy(update={"fetch_allowed_hosts": ["127.0.0.1"]})


@pytest.fixture
async def server() -> Any:
    async with loopback_server() as running:
        yield running


@pytest.fixture
async def enabled(gateway: Gateway) -> None:
    await enable_models(gateway, *EDITORS, "topaz_upscale_image", "flux-2-pro")


def stored_files(gateway: Gateway) -> list[Path]:
    return [p for p in gateway.settings.blob_dir.rglob("*") if p.is_file()]


async def upload(client: httpx.AsyncClient, data: bytes) -> str:
    response = await client.post(
        "/v1/files", files={"file": ("a.png", data, "image/png")}, data={"purpose": "reference"}
    )
    assert response.status_code == 201, response.text
    file_id: str = response.json()["id"]
    return file_id


async def run_job(client: httpx.AsyncClient, model: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/v1/jobs/{model}", json={"mock": True, **body}, headers=WAIT)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "succeeded", job
    return job


async def output_image(client: httpx.AsyncClient, job: dict[str, Any]) -> Image.Image:
    content = await client.get(f"/v1/files/{job['outputs'][0]['file_id']}/content")
    image = Image.open(io.BytesIO(content.content))
    image.load()
    return image


@pytest.mark.usefixtures("enabled")
async def test_every_form_reaches_every_editor(
    client: httpx.AsyncClient, gateway: Gateway, server: Loopback
) -> None:
    url = server.serve("/src.png", solid(300, 200))
    file_id = await upload(client, solid(300, 200, (10, 200, 10)))
    for model in EDITORS:
        field = "image_url" if model == "flux-kontext-pro" else "image_urls"
        for form in (url, data_uri(solid(300, 200)), file_id):
            value = form if field == "image_url" else [form]
            job = await run_job(client, model, {"prompt": "make it winter", field: value})
            row = await client.get(f"/v1/jobs/{job['id']}")
            assert row.json()["status"] == "succeeded"
    # sources made for the requests were kept for their jobs only: gone once they ended
    sources = (await client.get("/v1/files", params={"purpose": "source", "limit": 100})).json()
    assert sources["data"] == []
    assert (await client.get(f"/v1/files/{file_id}")).status_code == 200  # a file stays


async def test_sources_expire_as_a_backstop_and_are_purged(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    me = (await client.get("/v1/me")).json()
    principal = Principal(me["workspace_id"], me["id"], "admin", "key")
    source = await gateway.sources.resolve(principal, data_uri(solid(64, 64)), param="image")
    meta = (await client.get(f"/v1/files/{source.file_id}")).json()
    assert (meta["purpose"], meta["expires_at"] - meta["created_at"]) == ("source", 7200)
    later = utcnow() + timedelta(seconds=7201)
    assert await files.purge_expired(gateway.db, gateway.blobs, now=later) == 1
    assert stored_files(gateway) == []


@pytest.mark.usefixtures("enabled")
async def test_uploads_work_with_the_editors_kontext_and_topaz(client: httpx.AsyncClient) -> None:
    for model in EDITORS:
        response = await client.post(
            "/v1/images/edits",
            files={"image": ("a.png", solid(320, 160), "image/png")},
            data={"prompt": "add snow", "model": model, "mock": "true"},
        )
        assert response.status_code == 200, (model, response.text)
    upscaled = await client.post(
        "/v1/images/upscale",
        files={"image": ("a.png", solid(120, 80), "image/png")},
        data={"upscale_factor": "2", "mock": "true"},
    )
    assert upscaled.status_code == 200, upscaled.text
    body = upscaled.json()
    assert (body["model"], body["width"], body["height"]) == ("topaz_upscale_image", 240, 160)


@pytest.mark.usefixtures("enabled")
async def test_an_upscale_is_the_input_times_the_factor(
    client: httpx.AsyncClient, server: Loopback
) -> None:
    url = server.serve("/small.jpg", solid(150, 100, (20, 40, 220), "JPEG"), "image/jpeg")
    response = await client.post(
        "/v1/images/upscale", json={"image": url, "upscale_factor": 3, "mock": True}
    )
    assert response.status_code == 200, response.text
    image = decode_image(response.json()["data"][0]["b64_json"])
    assert image.size == (450, 300)
    red, _, blue = image.convert("RGB").getpixel((225, 150))
    assert blue > 180 and red < 60  # the input, resized: not a placeholder
    # the jobs API takes the same image forms and gives the same size
    job = await run_job(client, "topaz_upscale_image", {"image_url": url, "upscale_factor": 2})
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (300, 200)


@pytest.mark.usefixtures("enabled")
async def test_an_upscale_beyond_the_flat_price_is_a_clear_400(client: httpx.AsyncClient) -> None:
    big = data_uri(solid(3000, 2500))
    response = await client.post(
        "/v1/images/upscale", json={"image": big, "upscale_factor": 2, "mock": True}
    )
    error = assert_error(response, 400, "upscale_too_large", "upscale_factor")
    assert "6000x5000" in error["message"] and "1.78" in error["message"]
    assert (await client.get("/v1/files", params={"purpose": "source"})).json()["data"] == []
    missing = await client.post("/v1/images/upscale", json={"upscale_factor": 2})
    assert_error(missing, 400, "image_url_required", "image")
    editor = await client.post(
        "/v1/images/upscale", json={"image": big, "model": "seedream_v5_edit"}
    )
    assert_error(editor, 400, "model_cannot_upscale", "model")


@pytest.mark.usefixtures("enabled")
async def test_the_mock_keeps_the_aspect_and_limits_an_edit_to_its_mask(
    client: httpx.AsyncClient,
) -> None:
    job = await run_job(
        client,
        "nano_banana_edit",
        {"prompt": "add snow", "image_urls": [data_uri(solid(400, 200))]},
    )
    width, height = job["outputs"][0]["width"], job["outputs"][0]["height"]
    assert abs(width / height - 2) < 0.01
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # transparent left half: edit there
    out = io.BytesIO()
    mask.save(out, "PNG")
    response = await client.post(
        "/v1/images/edits",
        files=[
            ("image", ("a.png", solid(64, 64, (255, 0, 0)), "image/png")),
            ("mask", ("m.png", out.getvalue(), "image/png")),
        ],
        data={"prompt": "add snow", "model": "mock-image", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    image = decode_image(response.json()["data"][0]["b64_json"]).convert("RGB")
    assert image.getpixel((200, 200)) == (255, 0, 0)  # outside the mask: the source
    assert image.getpixel((20, 250)) != (255, 0, 0)  # inside: changed


@pytest.mark.usefixtures("enabled")
async def test_pixel_bombs_are_refused_from_the_header(
    client: httpx.AsyncClient, gateway: Gateway, server: Loopback
) -> None:
    bomb = bomb_png(10_000, 10_000)  # 100 MP in 12 KB
    url = server.serve("/bomb.png", bomb)
    for value, param in ((url, "image_urls[0]"), (data_uri(bomb), "image_urls[0]")):
        response = await client.post(
            "/v1/jobs/seedream_v5_edit",
            json={"prompt": "add snow", "image_urls": [value], "mock": True},
        )
        error = assert_error(response, 422, "image_too_large", param)
        assert "89,478,485" in error["message"]
    edit = await client.post(
        "/v1/images/edits",
        files={"image": ("b.png", bomb, "image/png")},
        data={"prompt": "add snow", "model": "nano_banana_edit", "mock": "true"},
    )
    assert_error(edit, 422, "image_too_large", "image")
    upscale = await client.post(
        "/v1/images/upscale", files={"image": ("b.png", bomb, "image/png")}, data={"mock": "true"}
    )
    assert_error(upscale, 422, "image_too_large", "image")
    assert stored_files(gateway) == []


@pytest.mark.usefixtures("enabled")
async def test_truncated_and_false_images_are_refused(
    client: httpx.AsyncClient, server: Loopback
) -> None:
    cases = [
        truncated(noisy(64, 64, "PNG")),
        truncated(noisy(64, 64, "JPEG")),
        truncated(noisy(64, 64, "WEBP")),
        b"<html><script>alert(1)</script></html>",
    ]
    for index, data in enumerate(cases):
        url = server.serve(f"/bad{index}", data, "image/png")
        response = await client.post(
            "/v1/jobs/nano_banana_edit",
            json={"prompt": "add snow", "image_urls": [url], "mock": True},
        )
        assert_error(response, 400, "invalid_image", "image_urls[0]")


@pytest.mark.usefixtures("enabled")
async def test_reference_rules_are_checked_before_anything_is_fetched(
    client: httpx.AsyncClient, gateway: Gateway, server: Loopback
) -> None:
    url = server.serve("/a.png", solid(64, 64))
    two = await client.post(
        "/v1/jobs/flux-2-pro", json={"prompt": "add snow", "image_urls": [url, url], "mock": True}
    )
    assert_error(two, 400, "too_many_references", "image_urls")
    kontext = await client.post(
        "/v1/jobs/flux-kontext-pro", json={"prompt": "add snow", "mock": True}
    )
    assert_error(kontext, 400, "image_url_required", "image_url")
    too_many = await client.post(
        "/v1/jobs/seedream_v5_edit",
        json={"prompt": "add snow", "image_urls": [url] * 10, "max_images": 6, "mock": True},
    )
    assert_error(too_many, 400, "invalid_parameter", "max_images")
    unknown = await client.post(
        "/v1/jobs/seedream_v5_edit",
        json={"prompt": "add snow", "image_urls": [url], "colour": "red", "mock": True},
    )
    assert_error(unknown, 400, "invalid_parameter", "colour")
    assert server.accepted == 0
    assert stored_files(gateway) == []
    # more than 10: the last 10 are used, and the answer says so
    sources = [{"image_url": data_uri(solid(32, 32, (i * 20, 0, 0)))} for i in range(11)]
    response = await client.post(
        "/v1/images/edits",
        json={"prompt": "add snow", "images": sources, "model": "seedream_v5_edit", "mock": True},
    )
    assert response.status_code == 200, response.text
    assert "last 10 of 11" in response.headers["x-imagegate-notice"]


async def test_refused_requests_leave_nothing_behind(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    image = solid(256, 256)
    refused = [
        # a model this workspace has not enabled
        client.post(
            "/v1/images/edits",
            files={"image": ("a.png", image, "image/png")},
            data={"prompt": "add snow", "model": "seedream_v5_edit"},
        ),
        # a parameter the model does not take
        client.post(
            "/v1/images/edits",
            files={"image": ("a.png", image, "image/png")},
            data={"prompt": "add snow", "model": "mock-image", "colour": "red"},
        ),
        # a mask for a model that would ignore it
        client.post(
            "/v1/images/edits",
            files=[
                ("image", ("a.png", image, "image/png")),
                ("mask", ("m.png", image, "image/png")),
            ],
            data={"prompt": "add snow", "model": "nano_banana_edit", "mock": "true"},
        ),
    ]
    for call in refused:
        response = await call
        assert 400 <= response.status_code < 500, response.text
    await enable_models(gateway, "seedream_v5_edit")
    # fal configured (never called: the hold is refused first), the workspace has no credits
    gateway.providers.register(FakeProvider(_never_called, name="fal"))
    no_credits = await client.post(
        "/v1/images/edits",
        files={"image": ("a.png", image, "image/png")},
        data={"prompt": "add snow", "model": "seedream_v5_edit"},
    )
    assert_error(no_credits, 402, "insufficient_credits")
    assert stored_files(gateway) == []
    assert (await client.get("/v1/files")).json()["data"] == []


async def _never_called(request: ProviderRequest) -> ProviderResult:
    raise AssertionError("a refused request reached the provider")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_memory_stays_bounded_for_ten_large_uploads_at_once(
    client: httpx.AsyncClient,
) -> None:
    bomb = bomb_png(9400, 9400)  # 88 MP, under the cap: a full decode holds 88 MB
    peak = idle = _rss()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/files",
                    files={"file": (f"{i}.png", bomb, "image/png")},
                    data={"purpose": "reference"},
                )
                for i in range(10)
            )
        )
    finally:
        stop.set()
        sampler.join()
    assert [r.status_code for r in responses] == [201] * 10
    assert responses[0].json()["width"] == 9400
    print(f"RSS grew by {(peak - idle) >> 20} MB")
    assert peak - idle < 300 * 1024 * 1024, f"RSS grew by {(peak - idle) >> 20} MB"


async def test_a_replayed_edit_fetches_and_stores_nothing(
    client: httpx.AsyncClient, gateway: Gateway, server: Loopback
) -> None:
    url = server.serve("/a.png", solid(64, 64))
    headers = {"Idempotency-Key": "edit-1"}
    body = {"prompt": "add snow", "model": "mock-image", "images": [{"image_url": url}]}
    first = await client.post("/v1/images/edits", json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = await client.post("/v1/images/edits", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    assert server.accepted == 1  # the replay fetched nothing
    upload = {"image": ("a.png", solid(64, 64), "image/png")}
    one = await client.post(
        "/v1/images/edits", files=upload, data={"prompt": "p"}, headers={"Idempotency-Key": "u"}
    )
    two = await client.post(
        "/v1/images/edits", files=upload, data={"prompt": "p"}, headers={"Idempotency-Key": "u"}
    )
    assert one.status_code == two.status_code == 200
    assert one.json()["job_id"] == two.json()["job_id"]  # the same upload: the same request
    other = await client.post(
        "/v1/images/edits",
        files={"image": ("a.png", solid(64, 64, (0, 0, 0)), "image/png")},
        data={"prompt": "p"},
        headers={"Idempotency-Key": "u"},
    )
    assert_error(other, 422, "idempotency_key_reused")
    assert (await client.get("/v1/files", params={"purpose": "source"})).json()["data"] == []
