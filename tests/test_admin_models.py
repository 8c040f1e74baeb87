"""Settings → Image models through the admin API: the listing and seed 000's rules."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from imagegate.gateway import Gateway
from imagegate.store.tables import Workspace, WorkspaceModel
from tests.governance import MODELS, audit, entry, listing, toggle
from tests.helpers import assert_error


async def test_listing_groups_every_model_by_provider_with_its_badges(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    body = await listing(client)
    groups = {group["id"]: group for group in body["providers"]}
    assert set(groups) == {model.provider for model in gateway.catalog}
    listed = [item["id"] for group in body["providers"] for item in group["models"]]
    assert sorted(listed) == sorted(gateway.catalog.slugs())
    assert groups["openai"]["name"] == "OpenAI"
    assert groups["mock"]["configured"] is True
    assert groups["openai"]["configured"] is False

    gpt = entry(body, "gpt-image-1")
    assert gpt["provider"] == "openai"
    assert gpt["region"] == "us"
    assert gpt["premium"] is True
    assert gpt["reference_images"] is True
    assert gpt["deprecated"] is False and gpt["preview"] is False
    assert gpt["enabled"] is False and gpt["default"] is False
    # 30 credits at 1024x1024, one credit 4600 micro-euros, 20 % margin.
    assert gpt["price"] == {
        "size": "1024x1024",
        "credits": 30,
        "eur": "0.1656",
        "margin_percent": 20,
    }
    assert entry(body, "nano_banana")["stars"] == 5

    assert body["default_model"] == "mock-image"
    assert entry(body, "mock-image")["default"] is True
    assert entry(body, "mock-image")["requires_replacement"] is True
    assert body["enabled_models"] == ["mock-image", "mock-vector"]
    assert body["image_generation_enabled"] is True
    assert body["warnings"] == []


async def test_margin_changes_the_eur_price(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/admin/settings", json={"margin_percent": 50})
    assert response.status_code == 200, response.text
    gpt = entry(await listing(client), "gpt-image-1")
    assert gpt["price"]["eur"] == "0.2070"  # 30 credits x 0.0046 EUR x 1.5
    assert gpt["price"]["margin_percent"] == 50


async def test_enabling_a_model_shows_it_to_members(client: httpx.AsyncClient) -> None:
    response = await toggle(client, "dall-e-3", True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["enabled"] is True
    assert body["changed"] is True
    assert body["default_model"] == "mock-image"
    models = await client.get("/v1/models")
    assert "dall-e-3" in [m["id"] for m in models.json()["data"]]
    again = await toggle(client, "dall-e-3", True)
    assert again.json()["changed"] is False


async def test_the_last_enabled_model_cannot_be_disabled(client: httpx.AsyncClient) -> None:
    assert (await toggle(client, "mock-vector", False)).status_code == 200
    error = assert_error(
        await toggle(client, "mock-image", False), 409, "last_enabled_model", "slug"
    )
    assert "at least one model must stay enabled" in error["message"]
    body = await listing(client)
    assert body["enabled_models"] == ["mock-image"]
    assert entry(body, "mock-image")["locked"] is True
    # Even with a replacement named, the last one stays.
    assert_error(
        await toggle(client, "mock-image", False, "mock-vector"), 409, "last_enabled_model"
    )


async def test_the_default_is_not_disabled_without_a_replacement(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await toggle(client, "mock-image", False),
        409,
        "default_model_requires_replacement",
        "replacement",
    )
    assert error["candidates"] == ["mock-vector"]
    body = await listing(client)
    assert entry(body, "mock-image")["enabled"] is True
    assert body["default_model"] == "mock-image"


async def test_disabling_the_default_with_a_replacement_switches_both_in_one_step(
    client: httpx.AsyncClient,
) -> None:
    response = await toggle(client, "mock-image", False, replacement="mock-vector")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["enabled"] is False
    assert body["default_model"] == "mock-vector"
    assert body["previous_default_model"] == "mock-image"
    listed = await listing(client)
    assert listed["enabled_models"] == ["mock-vector"]
    assert entry(listed, "mock-vector")["default"] is True
    [event] = [e for e in await audit(client) if e["action"] == "image_model.disabled"]
    assert event["before"] == {"enabled": True, "default_model": "mock-image"}
    assert event["after"] == {"enabled": False, "default_model": "mock-vector"}


@pytest.mark.parametrize(
    ("replacement", "status", "code"),
    [
        ("dall-e-3", 409, "replacement_not_enabled"),  # exists but is not enabled
        ("mock-image", 409, "replacement_not_enabled"),  # the model being disabled
        ("no-such-model", 400, "invalid_parameter"),
    ],
)
async def test_the_replacement_must_be_another_enabled_model(
    client: httpx.AsyncClient, replacement: str, status: int, code: str
) -> None:
    error = assert_error(
        await toggle(client, "mock-image", False, replacement), status, code, "replacement"
    )
    assert "mock-vector" in error["message"]
    body = await listing(client)
    assert body["default_model"] == "mock-image"
    assert body["enabled_models"] == ["mock-image", "mock-vector"]


async def test_a_replacement_is_only_for_disabling(client: httpx.AsyncClient) -> None:
    assert_error(
        await toggle(client, "dall-e-3", True, "mock-vector"),
        400,
        "invalid_parameter",
        "replacement",
    )


async def test_setting_the_default(client: httpx.AsyncClient) -> None:
    response = await client.put(f"{MODELS}/default", json={"model": "mock-vector"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "default_model": "mock-vector",
        "previous_default_model": "mock-image",
        "changed": True,
    }
    assert (await listing(client))["default_model"] == "mock-vector"
    # An alias names the same model.
    again = await client.put(f"{MODELS}/default", json={"model": "mock-svg"})
    assert again.json()["changed"] is False


async def test_the_default_must_be_enabled(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.put(f"{MODELS}/default", json={"model": "dall-e-3"}),
        409,
        "model_not_enabled",
        "model",
    )
    assert error["enabled_models"] == ["mock-image", "mock-vector"]
    assert_error(
        await client.put(f"{MODELS}/default", json={"model": "nope"}),
        404,
        "model_not_found",
        "model",
    )
    assert (await listing(client))["default_model"] == "mock-image"


async def test_enabling_while_no_default_is_set_makes_it_the_default(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    # A workspace in first-time setup: nothing enabled, no default.
    async with gateway.db.session() as session:
        await session.execute(update(WorkspaceModel).values(enabled=False))
        await session.execute(update(Workspace).values(default_model=None))
    body = await listing(client)
    assert body["default_model"] is None and body["enabled_models"] == []

    response = await toggle(client, "dall-e-3", True)
    assert response.status_code == 200, response.text
    assert response.json()["default_model"] == "dall-e-3"
    second = await toggle(client, "mock-image", True)
    assert second.json()["default_model"] == "dall-e-3"  # the first one stays the default


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({}, "enabled"),
        ({"enabled": True, "colour": "red"}, "colour"),
        ({"enabled": None}, "enabled"),
        ({"enabled": False, "replacement": 5}, "replacement"),
    ],
)
async def test_bad_toggle_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], param: str
) -> None:
    error = assert_error(
        await client.patch(f"{MODELS}/mock-vector", json=body), 400, "invalid_parameter", param
    )
    assert param in error["message"]


async def test_unknown_field_lists_the_allowed_ones(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.patch(f"{MODELS}/mock-vector", json={"on": True}), 400, "invalid_parameter"
    )
    assert "enabled" in error["message"] and "replacement" in error["message"]


async def test_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        f"{MODELS}/mock-vector", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


async def test_unknown_model_is_a_404(client: httpx.AsyncClient) -> None:
    assert_error(await toggle(client, "no-such-model", True), 404, "model_not_found", "slug")
    assert_error(await client.get(f"{MODELS}/no-such-model"), 404, "model_not_found", "slug")


async def test_one_model_row(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{MODELS}/mock")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "mock-image"
    assert response.json()["default"] is True
