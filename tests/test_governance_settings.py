"""Workspace settings: region policy, billing mode, margin; and first-time setup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from imagegate.app import create_app
from imagegate.catalog import ModelSpec
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.providers import FakeProvider, ProviderRequest, ProviderResult
from imagegate.providers.mock import MockProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.services.workspace import charge_policy
from tests.governance import GEN, MODELS, as_key, entry, eu_catalog, listing, new_member, toggle
from tests.helpers import assert_error

SETTINGS = "/v1/admin/settings"


@pytest.fixture
async def gateway(settings: Settings, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The built-in catalog plus two EU-hosted models."""
    gateway = Gateway(settings, catalog=eu_catalog(tmp_path / "catalog"))
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        yield gateway


async def test_settings_show_and_change(client: httpx.AsyncClient) -> None:
    shown = await client.get(SETTINGS)
    assert shown.status_code == 200, shown.text
    assert shown.json() | {"warnings": []} == {
        "object": "workspace_settings",
        "image_generation_enabled": True,
        "billing_mode": "prepaid",
        "region_policy": "any",
        "margin_percent": 20,
        "prc_models_allowed": False,
        "unfiltered_models_allowed": False,
        "default_model": "mock-image",
        "warnings": [],
    }
    changed = await client.patch(SETTINGS, json={"billing_mode": "flat", "margin_percent": 0})
    assert changed.status_code == 200, changed.text
    assert changed.json()["billing_mode"] == "flat"
    assert changed.json()["margin_percent"] == 0
    assert changed.json()["changed"] is True
    assert (await client.get(SETTINGS)).json()["billing_mode"] == "flat"


@pytest.mark.parametrize(
    ("body", "param", "hint"),
    [
        ({"billing_mode": "monthly"}, "billing_mode", "invoiced"),
        ({"region_policy": "eu"}, "region_policy", "eu_only"),
        ({"margin_percent": -1}, "margin_percent", "0"),
        ({"margin_percent": 12.5}, "margin_percent", "integer"),
        ({"margin_percent": True}, "margin_percent", "integer"),
        ({"image_generation_enabled": "off"}, "image_generation_enabled", "boolean"),
        ({"billing_mode": None}, "billing_mode", "null"),
        ({"theme": "dark"}, "theme", "billing_mode"),
    ],
)
async def test_bad_settings_name_the_field_and_what_is_allowed(
    client: httpx.AsyncClient, body: dict[str, object], param: str, hint: str
) -> None:
    error = assert_error(await client.patch(SETTINGS, json=body), 400, "invalid_parameter", param)
    assert hint in error["message"]


async def test_eu_only_needs_an_enabled_eu_model(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.patch(SETTINGS, json={"region_policy": "eu_only"}),
        409,
        "no_model_in_region",
        "region_policy",
    )
    assert {"flux-eu", "flux-eu-preview"} <= set(error["eu_models"])
    assert (await client.get(SETTINGS)).json()["region_policy"] == "any"


async def test_eu_only_disables_non_eu_models_and_moves_the_default_in_one_step(
    client: httpx.AsyncClient,
) -> None:
    _, secret = await new_member(client)
    assert (await toggle(client, "flux-eu", True)).status_code == 200
    assert (await toggle(client, "dall-e-3", True)).status_code == 200

    error = assert_error(
        await client.patch(SETTINGS, json={"region_policy": "eu_only"}),
        409,
        "default_model_requires_replacement",
        "replacement",
    )
    assert error["candidates"] == ["flux-eu"]
    assert (await listing(client))["enabled_models"] == [
        "dall-e-3",
        "flux-eu",
        "mock-image",
        "mock-vector",
    ]

    switched = await client.patch(
        SETTINGS, json={"region_policy": "eu_only", "replacement": "flux-eu"}
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["region_policy"] == "eu_only"
    assert switched.json()["default_model"] == "flux-eu"
    assert switched.json()["disabled_models"] == ["dall-e-3", "mock-image", "mock-vector"]
    body = await listing(client)
    assert body["enabled_models"] == ["flux-eu"]
    assert entry(body, "dall-e-3")["allowed_in_region"] is False
    assert entry(body, "flux-eu-preview")["allowed_in_region"] is True
    assert entry(body, "flux-eu-preview")["preview"] is True

    # Non-EU models can be neither enabled nor used.
    assert_error(await toggle(client, "mock-image", True), 403, "region_not_allowed", "slug")
    async with as_key(client, secret) as member:
        error = assert_error(
            await member.post(GEN, json={"prompt": "p", "model": "mock-image"}),
            403,
            "region_not_allowed",
            "model",
        )
        assert error["enabled_models"] == ["flux-eu"]
        granted = await client.post("/v1/admin/credits/grants", json={"amount": 100})
        assert granted.status_code == 200  # prepaid: the EU model is charged
        made = await member.post(GEN, json={"prompt": "a castle"})
        assert made.status_code == 200, made.text
        assert made.json()["model"] == "flux-eu"
        assert [m["id"] for m in (await member.get("/v1/models")).json()["data"]] == ["flux-eu"]

    # Back to any: the models stay as they are until an admin enables them.
    back = await client.patch(SETTINGS, json={"region_policy": "any"})
    assert back.json()["region_policy"] == "any"
    assert (await toggle(client, "mock-image", True)).status_code == 200


def _model(premium: bool) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "slug": "m",
            "name": "M",
            "provider": "mock",
            "premium": premium,
            "params": {"prompt": {"type": "string"}},
            "price": {"rule": "per_image", "credits": 1},
            "routes": [{"provider": "mock", "upstream_id": "m"}],
            "provenance": "test",
        }
    )


@pytest.mark.parametrize(
    ("mode", "premium", "expected"),
    [
        ("prepaid", False, "charge"),
        ("prepaid", True, "charge"),
        ("flat", False, "included"),
        ("flat", True, "charge"),
        ("invoiced", False, "record"),
        ("invoiced", True, "record"),
    ],
)
def test_charge_policy(mode: str, premium: bool, expected: str) -> None:
    assert charge_policy(mode, _model(premium)) == expected


def test_charge_policy_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown billing mode"):
        charge_policy("monthly", _model(False))


async def test_the_listing_says_how_each_model_is_billed(client: httpx.AsyncClient) -> None:
    await client.patch(SETTINGS, json={"billing_mode": "flat"})
    body = await listing(client)
    assert entry(body, "gpt-image-1")["billing"] == "charge"  # premium
    assert entry(body, "dall-e-3")["billing"] == "included"
    await client.patch(SETTINGS, json={"billing_mode": "invoiced"})
    assert entry(await listing(client), "gpt-image-1")["billing"] == "record"


def _openai_answer(request: ProviderRequest) -> ProviderResult:
    raise AssertionError("not called in these tests")


async def test_first_time_setup_enables_the_configured_providers_models(
    settings: Settings, tmp_path: Path
) -> None:
    registry = ProviderRegistry()
    registry.register(MockProvider())
    registry.register(FakeProvider(_openai_answer, name="openai"))
    gateway = Gateway(settings, catalog=eu_catalog(tmp_path / "catalog"), providers=registry)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as admin:
            body = (await admin.get(MODELS)).json()
    openai_models = sorted(
        m.slug for m in gateway.catalog if m.provider == "openai" and m.status != "legacy"
    )
    assert body["enabled_models"] == openai_models
    # A standard-priced, released model is the sensible default.
    default = gateway.catalog.resolve(body["default_model"])
    assert default is not None and default.provider == "openai" and not default.premium
    openai = next(group for group in body["providers"] if group["id"] == "openai")
    assert openai["configured"] is True


async def test_first_time_setup_without_credentials_enables_the_mock_models(
    client: httpx.AsyncClient,
) -> None:
    body = await listing(client)
    assert body["enabled_models"] == ["mock-image", "mock-vector"]
    assert body["default_model"] == "mock-image"
