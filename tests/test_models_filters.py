"""GET /v1/models and /v1/models/{slug} as admins and members see them."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import assert_error


async def _ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/v1/models", params={"all": "true", **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def test_capability_filter(client: httpx.AsyncClient) -> None:
    assert set(await _ids(client, capability="upscale")) == {"topaz_upscale_image"}
    vector = await _ids(client, capability="vector")
    assert {"recraft-v4-vector", "recraft-v3-svg", "mock-vector"} <= set(vector)
    assert "recraft-v4" not in vector
    edit = await _ids(client, capability="edit")
    assert {"flux-kontext-pro", "nano_banana_edit", "seedream_v5_edit", "gpt-image-2"} <= set(edit)
    assert "flux_schnell" not in edit
    assert "flux-kontext-max" in await _ids(client, capability="reference_images")


async def test_region_filter_counts_every_route(client: httpx.AsyncClient) -> None:
    eu = await _ids(client, region="eu")
    # seed 000: FLUX family, Gemini 2.5 Flash and GPT Image 2 (EU) for strict EU hosting
    assert {
        "flux-2-pro",
        "flux-2-flex",
        "flux-kontext-max",
        "gemini-2.5-flash-image",
        "gpt-image-2",
    } <= set(eu)
    assert "dall-e-3" not in eu
    assert "mock-image" in await _ids(client, region="global")


async def test_provider_filter_matches_maker_or_route(client: httpx.AsyncClient) -> None:
    bfl = await _ids(client, provider="bfl")
    assert "flux-2-pro" in bfl and "flux_schnell" in bfl
    fal = await _ids(client, provider="fal")
    assert "flux_schnell" in fal and "nano_banana" in fal and "dall-e-3" not in fal
    assert set(await _ids(client, provider="xai")) == {"grok-image"}


async def test_status_filter(client: httpx.AsyncClient) -> None:
    assert set(await _ids(client, status="legacy")) == {"flux_pro", "recraft-v3"}
    assert "gemini-3.1-flash-image" in await _ids(client, status="preview")
    assert "flux_pro" not in await _ids(client, status="ga")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("capability", "sing"),
        ("region", "mars"),
        ("provider", "acme"),
        ("status", "beta"),
        ("modality", "video"),
    ],
)
async def test_an_unknown_filter_value_is_400_listing_the_allowed(
    client: httpx.AsyncClient, param: str, value: str
) -> None:
    error = assert_error(
        await client.get("/v1/models", params={param: value}), 400, "invalid_parameter", param
    )
    assert "Allowed:" in error["message"]


async def test_without_all_only_enabled_models_are_listed(client: httpx.AsyncClient) -> None:
    # without all=true even an admin sees only what is enabled (the mock models at first)
    assert set(await _ids(client, all="false")) == {"mock-image", "mock-vector"}


async def test_a_model_shows_its_admin_metadata(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models/gpt-image-2")).json()
    assert body["premium"] is True
    assert body["reference_images"] is True
    assert body["tier"] == "advanced"
    assert "eu" in body["regions"]
    assert body["allowedParams"]["supported_sizes"] == ["1024x1024", "1536x1024", "1024x1536"]
    assert body["pricing"]["per_image_1024"]["credits"] == 20
    assert body["provenance"].startswith("the jobs API price list")
    nano = (await client.get("/v1/models/nano_banana")).json()
    assert nano["stars"] == 5  # recorded arena snapshot, see data/arena.yaml
    assert nano["allowedParams"]["resolutions"] == ["1K", "2K", "4K"]
    flux2 = (await client.get("/v1/models/flux-2-pro")).json()
    assert flux2["allowedParams"]["max_reference_images"] == 1
    assert flux2["allowedParams"]["custom_size"] == {"min": 64, "max": 4096, "max_pixels": 4194304}
    assert flux2["routes"][0] == {"provider": "bfl", "upstream_id": "flux-2-pro", "region": "eu"}


async def test_an_alias_finds_the_model(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models/flux-1-quick")).json()
    assert body["id"] == "flux_schnell"
    assert "flux-1-quick" in body["aliases"]
