"""What each upstream receives for an image given to a model: the exact request each
provider route that takes images sends to its fake, for images sent as data URIs."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from imagegate.catalog import ModelSpec, load_catalog
from imagegate.catalog.spec import Route
from imagegate.config import Settings
from imagegate.errors import TransientUpstreamError, UpstreamError
from imagegate.providers.base import InputImage, ProviderRequest
from imagegate.providers.vertex import VertexProvider
from tests.fakes.bfl import FakeBFL
from tests.fakes.fal import FakeFal
from tests.fakes.google import FakeGemini
from tests.fakes.harness import Harness, harness
from tests.fakes.openai import FakeOpenAI
from tests.fakes.replicate import FakeReplicate
from tests.fakes.server import FakeUpstream
from tests.images import data_uri, solid

CATALOG = load_catalog()
SOURCE = solid(96, 64, (250, 120, 0))
SOURCE_URI = data_uri(SOURCE)
SOURCE_B64 = base64.b64encode(SOURCE).decode()


def on(slug: str, provider: str, upstream_id: str) -> ModelSpec:
    """The catalog's model with one route only (standing alone: no replacement named)."""
    model = CATALOG.resolve(slug)
    assert model is not None
    route = Route(provider=provider, upstream_id=upstream_id)
    return model.model_copy(update={"routes": [route], "status": "ga", "replacement": None})


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    started: dict[str, FakeUpstream] = {
        "fal": FakeFal().start(),
        "bfl": FakeBFL().start(),
        "openai": FakeOpenAI().start(),
        "gemini": FakeGemini().start(),
        "replicate": FakeReplicate().start(),
    }
    yield started
    for fake in started.values():
        fake.stop()


@asynccontextmanager
async def gateway_on(
    settings: Settings, fake: FakeUpstream, *models: ModelSpec, **extra: Any
) -> AsyncIterator[Harness]:
    async with harness(settings, list(models), fake.settings(), extra) as h:
        yield h


async def run_job(h: Harness, model: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await h.client.post(
        f"/v1/jobs/{model}", json=body, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    await h.gateway.dispatcher.drain()
    job: dict[str, Any] = (await h.client.get(f"/v1/jobs/{response.json()['id']}")).json()
    assert job["status"] == "succeeded", job
    return job


async def test_fal_gets_a_list_for_image_urls_and_one_string_for_image_url(
    settings: Settings, fakes: dict[str, FakeUpstream]
) -> None:
    fal = fakes["fal"]
    editor = on("seedream_v5_edit", "fal", "fal-ai/bytedance/seedream/v5/lite/edit")
    topaz = on("topaz_upscale_image", "fal", "fal-ai/topaz/upscale/image")
    async with gateway_on(settings, fal, editor, topaz) as h:
        await run_job(h, "seedream_v5_edit", {"prompt": "add snow", "image_urls": [SOURCE_URI]})
        await run_job(h, "topaz_upscale_image", {"image_url": SOURCE_URI, "upscale_factor": 2})
    edit, upscale = (call.json for call in fal.calls("submit"))
    assert edit["image_urls"] == [SOURCE_URI]
    assert upscale["image_url"] == SOURCE_URI  # one string, not a list
    assert upscale["upscale_factor"] == 2


async def test_with_a_public_url_fal_gets_a_signed_link_to_the_gateways_copy(
    settings: Settings, fakes: dict[str, FakeUpstream]
) -> None:
    fal = fakes["fal"]
    topaz = on("topaz_upscale_image", "fal", "fal-ai/topaz/upscale/image")
    public = {"public_url": "https://images.example.com"}
    async with gateway_on(settings, fal, topaz, **public) as h:
        await run_job(h, "topaz_upscale_image", {"image_url": SOURCE_URI})
        link = httpx.URL(fal.calls("submit")[0].json["image_url"])
        assert str(link).startswith("https://images.example.com/v1/files/file_")
        file_id = link.path.split("/")[3]
        me = (await h.client.get("/v1/me")).json()
        expires = int(link.params["expires"])
        h.gateway.signer.verify(
            file_id, me["workspace_id"], expires, link.params["kid"], link.params["signature"]
        )
        assert 0 < expires - time.time() <= 15 * 60 + 1  # short-lived
        # the gateway's copy lived as long as the job needed it
        assert (await h.client.get(f"/v1/files/{file_id}")).status_code == 404


async def test_bfl_gets_base64_as_input_image_or_image_prompt(
    settings: Settings, fakes: dict[str, FakeUpstream]
) -> None:
    bfl = fakes["bfl"]
    kontext = on("flux-kontext-pro", "bfl", "flux-kontext-pro")
    ultra = on("flux_pro", "bfl", "flux-pro-1.1-ultra")
    async with gateway_on(settings, bfl, kontext, ultra) as h:
        await run_job(h, "flux-kontext-pro", {"prompt": "add snow", "image_url": SOURCE_URI})
        await run_job(h, "flux_pro", {"prompt": "a fox", "image_url": SOURCE_URI})
    edit, conditioned = (call.json for call in bfl.calls("submit"))
    assert edit["input_image"] == SOURCE_B64 and "image_url" not in edit
    assert conditioned["image_prompt"] == SOURCE_B64 and "input_image" not in conditioned


async def test_openai_gets_image_urls_as_multipart_image_parts(
    settings: Settings, fakes: dict[str, FakeUpstream]
) -> None:
    openai = fakes["openai"]
    gpt = on("gpt-image-1", "openai", "gpt-image-1")
    async with gateway_on(settings, openai, gpt) as h:
        job = await h.run(
            {"model": "gpt-image-1", "prompt": "a fox like this", "image_urls": [SOURCE_URI]}
        )
        assert job["status"] == "succeeded", job
        mask = solid(96, 64, (0, 0, 0))
        edited = await h.client.post(
            "/v1/images/edits",
            json={
                "model": "gpt-image-1",
                "prompt": "add snow",
                "images": [{"image_url": SOURCE_URI}],
                "mask": {"image_url": data_uri(mask)},
            },
            headers={"Prefer": "respond-async"},
        )
        assert edited.status_code == 202, edited.text
        await h.gateway.dispatcher.drain()
    assert openai.calls("generations") == []  # an image given: the edits endpoint
    first, second = openai.calls("edits")
    assert [part[1] for part in first.form["image[]"]] == [SOURCE]
    assert "image_urls" not in first.form
    assert [part[1] for part in second.form["mask"]] == [mask]


async def test_gemini_gets_inline_data(settings: Settings, fakes: dict[str, FakeUpstream]) -> None:
    gemini = fakes["gemini"]
    editor = on("nano_banana_edit", "gemini", "gemini-3-pro-image-preview")
    async with gateway_on(settings, gemini, editor) as h:
        await run_job(h, "nano_banana_edit", {"prompt": "add snow", "image_urls": [SOURCE_URI]})
    [call] = gemini.calls("generate")
    parts = call.json["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": SOURCE_B64}}


async def test_replicate_gets_the_image_in_the_models_own_field(
    settings: Settings, fakes: dict[str, FakeUpstream]
) -> None:
    replicate = fakes["replicate"]
    ultra = on("flux_pro", "replicate", "black-forest-labs/flux-1.1-pro-ultra")
    async with gateway_on(settings, replicate, ultra) as h:
        await run_job(h, "flux_pro", {"prompt": "a fox", "image_url": SOURCE_URI})
    [call] = replicate.calls("create")
    assert call.json["input"]["image_url"] == SOURCE_URI


async def test_a_route_that_takes_no_images_moves_on_instead_of_dropping_them() -> None:
    vertex = VertexProvider(None, project="p", location="europe-west4")  # type: ignore[arg-type]
    request = ProviderRequest(
        job_id="job_1", model="gemini-2.5-flash-image", upstream_model="gemini-2.5-flash-image",
        action="edit", params={}, n=1, width=1024, height=1024, output_format="png",
        timeout_s=5, prompt="add snow", inputs=(InputImage(SOURCE, "image/png"),),
    )  # fmt: skip
    with pytest.raises(UpstreamError) as caught:
        await vertex.generate(request)
    assert "takes no input images" in caught.value.message
    assert not isinstance(caught.value, TransientUpstreamError)  # no retry of the same route
