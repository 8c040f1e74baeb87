"""Routes and regions as a caller and an admin see them: which routes a request may take,
what happens when none has credentials, and what the admin listing says."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.errors import TransientUpstreamError
from imagegate.gateway import Gateway
from imagegate.providers import FakeProvider, ProviderRequest, ProviderResult
from imagegate.providers.base import GeneratedImage
from imagegate.providers.mock import MockProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.services.workspace import first_time_models
from tests.governance import GEN, MODELS
from tests.helpers import assert_error, enable_models

SETTINGS = "/v1/admin/settings"


def _png(request: ProviderRequest) -> ProviderResult:
    buffer = io.BytesIO()
    Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
    return ProviderResult(
        [GeneratedImage(buffer.getvalue(), "image/png", *Image.open(buffer).size)]
    )


def _down(request: ProviderRequest) -> ProviderResult:
    raise TransientUpstreamError("down for maintenance")


async def _serve(settings: Settings, *fakes: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    registry = ProviderRegistry()
    registry.register(MockProvider())
    for fake in fakes:
        registry.register(fake)
    gateway = Gateway(settings, providers=registry)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as client:
            # Invoiced: usage is recorded, nothing is held, so no credits are needed here.
            invoiced = await client.patch(SETTINGS, json={"billing_mode": "invoiced"})
            assert invoiced.status_code == 200, invoiced.text
            yield client


@pytest.fixture
async def gemini_only(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FakeProvider]]:
    """A gateway with Gemini API credentials only: no Vertex, no fal."""
    gemini = FakeProvider(_png, name="gemini")
    async for client in _serve(settings, gemini):
        yield client, gemini


async def test_fallback_walks_every_route_not_only_the_first_ones_region(
    gemini_only: tuple[httpx.AsyncClient, FakeProvider],
) -> None:
    client, gemini = gemini_only
    # The first route (Vertex, EU) has no credentials; the Gemini API serves it.
    response = await client.post(
        GEN, json={"model": "gemini-2.5-flash-image", "prompt": "a fox", "size": "1024x1024"}
    )
    assert response.status_code == 200, response.text
    assert [r.upstream_model for r in gemini.requests] == ["gemini-2.5-flash-image"]


async def test_a_transient_failure_moves_on_to_a_route_in_another_region(
    settings: Settings,
) -> None:
    settings.max_attempts = 1
    vertex = FakeProvider(_down, name="vertex")
    fal = FakeProvider(_png, name="fal")
    async for client in _serve(settings, vertex, fal):
        response = await client.post(
            GEN, json={"model": "gemini-2.5-flash-image", "prompt": "a fox"}
        )
        assert response.status_code == 200, response.text
        assert len(vertex.requests) == 1 and len(fal.requests) == 1


async def test_eu_only_filters_routes_not_models(settings: Settings) -> None:
    vertex = FakeProvider(_png, name="vertex")
    gemini = FakeProvider(_png, name="gemini")
    openai = FakeProvider(_png, name="openai")
    async for client in _serve(settings, vertex, gemini, openai):
        listing = (await client.get(MODELS)).json()
        rows = {m["id"]: m for group in listing["providers"] for m in group["models"]}
        assert (rows["gpt-image-2"]["region"], rows["gpt-image-2"]["regions"]) == (
            "eu",
            ["us", "eu"],
        )
        switched = await client.patch(
            SETTINGS, json={"region_policy": "eu_only", "replacement": "gpt-image-2"}
        )
        assert switched.status_code == 200, switched.text
        assert "gpt-image-2" not in switched.json()["disabled_models"]
        await enable_models_over_http(client, "gemini-2.5-flash-image")
        response = await client.post(GEN, json={"model": "gpt-image-2", "prompt": "p"})
        assert response.status_code == 200, response.text
        assert [r.region for r in openai.requests] == ["eu"]
        # Under eu_only the Gemini API (global) is not a fallback for the Vertex EU route.
        vertex_calls = len(vertex.requests)
        response = await client.post(GEN, json={"model": "gemini-2.5-flash-image", "prompt": "p"})
        assert response.status_code == 200, response.text
        assert len(vertex.requests) == vertex_calls + 1 and gemini.requests == []


async def enable_models_over_http(client: httpx.AsyncClient, *slugs: str) -> None:
    for slug in slugs:
        response = await client.patch(f"{MODELS}/{slug}", json={"enabled": True})
        assert response.status_code == 200, response.text


async def test_a_model_no_route_can_serve_is_refused_once_before_any_hold(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "dall-e-3")  # OpenAI only; no credentials here
    response = await client.post(GEN, json={"model": "dall-e-3", "prompt": "p"})
    error = assert_error(response, 503, "provider_not_configured", "model")
    assert response.headers["x-should-retry"] == "false"  # the OpenAI SDKs do not retry it
    assert error["providers"] == ["openai"]
    assert "mock" in error["message"]
    assert (await client.get("/v1/jobs")).json()["data"] == []
    entries = (await client.get("/v1/credits")).json()
    assert [
        e for e in entries.get("entries", entries.get("data", [])) if e.get("kind") == "hold"
    ] == []
    # The placeholder still answers.
    mocked = await client.post(GEN, json={"model": "dall-e-3", "prompt": "p", "mock": True})
    assert mocked.status_code == 200, mocked.text


async def test_mock_works_for_models_not_enabled_but_not_outside_the_region_policy(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    mocked = await client.post(GEN, json={"model": "flux-2-pro", "prompt": "p", "mock": True})
    assert mocked.status_code == 200, mocked.text
    assert mocked.json()["charged_amount"] == 0
    await enable_models(gateway, "flux-2-pro")
    switched = await client.patch(
        SETTINGS, json={"region_policy": "eu_only", "replacement": "flux-2-pro"}
    )
    assert switched.status_code == 200, switched.text
    refused = await client.post(GEN, json={"model": "dall-e-3", "prompt": "p", "mock": True})
    assert_error(refused, 403, "region_not_allowed", "model")


async def test_configured_follows_the_models_routes(settings: Settings) -> None:
    fal = FakeProvider(_png, name="fal")
    async for client in _serve(settings, fal):
        listing = (await client.get(MODELS)).json()
    groups = {group["id"]: group for group in listing["providers"]}
    rows = {m["id"]: m for group in listing["providers"] for m in group["models"]}
    assert groups["topaz"]["configured"] is True
    assert groups["bytedance"]["configured"] is True
    assert rows["topaz_upscale_image"]["configured"] is True
    assert rows["dall-e-3"]["configured"] is False
    # First start enabled what fal serves, and nothing that no configured route reaches.
    assert {"topaz_upscale_image", "seedream_v5_edit", "flux-2-pro"} <= set(
        listing["enabled_models"]
    )
    assert "dall-e-3" not in listing["enabled_models"]
    assert "mock-image" not in listing["enabled_models"]


def test_first_start_enables_models_by_route(tmp_path: Path) -> None:
    from imagegate.catalog import load_catalog

    catalog = load_catalog()
    enabled = first_time_models(catalog, ["mock", "fal"])
    assert "topaz_upscale_image" in enabled and "gpt-image-1" not in enabled
    assert first_time_models(catalog, ["mock"]) == ["mock-image", "mock-vector"]


async def test_quality_names_its_source_and_date_or_says_not_rated(
    client: httpx.AsyncClient,
) -> None:
    models = (await client.get("/v1/models", params={"all": "true"})).json()["data"]
    by_id = {model["id"]: model for model in models}
    rated = by_id["nano_banana"]["quality"]
    assert rated["stars"] == 5 and rated["label"] == "5 of 5"
    assert rated["source"].startswith("https://") and rated["snapshot_date"]
    unrated = by_id["flux_schnell"]["quality"]
    assert (unrated["stars"], unrated["label"]) == (None, "not rated")
    assert unrated["snapshot_date"] == rated["snapshot_date"]
