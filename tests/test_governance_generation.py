"""What governance does to members and their generations, immediately and with no restart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from tests.governance import GEN, MODELS, as_key, listing, new_member, toggle
from tests.helpers import assert_error


@pytest.fixture
async def member(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    _, secret = await new_member(client)
    async with as_key(client, secret) as member_client:
        yield member_client


async def _model_ids(member: httpx.AsyncClient) -> list[str]:
    response = await member.get("/v1/models")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def test_a_member_sees_only_enabled_models(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    assert sorted(await _model_ids(member)) == ["mock-image", "mock-vector"]
    # Asking for all is an admin's privilege; a member still gets the enabled ones.
    response = await member.get("/v1/models", params={"all": "true"})
    assert sorted(item["id"] for item in response.json()["data"]) == ["mock-image", "mock-vector"]
    assert_error(await member.get("/v1/models/dall-e-3"), 404, "model_not_found")

    await toggle(client, "dall-e-3", True)
    assert "dall-e-3" in await _model_ids(member)
    await toggle(client, "mock-vector", False)
    assert "mock-vector" not in await _model_ids(member)
    assert_error(await member.get("/v1/models/mock-vector"), 404, "model_not_found")


async def test_a_disabled_model_is_refused_listing_the_enabled_ones(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    ok = await member.post(GEN, json={"prompt": "p", "model": "mock-vector"})
    assert ok.status_code == 200, ok.text
    await toggle(client, "mock-vector", False)
    error = assert_error(
        await member.post(GEN, json={"prompt": "p", "model": "mock-vector"}),
        403,
        "model_not_enabled",
        "model",
    )
    assert error["enabled_models"] == ["mock-image"]
    assert "mock-image" in error["message"]
    # A free placeholder reaches no provider: it works for any model the workspace could
    # enable, so an integration can be tested before the admin turns the model on.
    placeholder = await member.post(GEN, json={"prompt": "p", "model": "mock-vector", "mock": True})
    assert placeholder.status_code == 200, placeholder.text
    assert placeholder.json()["charged_amount"] == 0


async def test_a_members_selection_is_used_then_falls_back_to_the_default(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    selected = await member.put("/v1/me/selected-model", json={"model": "mock-svg"})
    assert selected.status_code == 200, selected.text
    assert selected.json()["selected_model"] == "mock-vector"
    assert selected.json()["model"] == "mock-vector"

    first = await member.post(GEN, json={"prompt": "a logo"})
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "mock-vector"
    assert "model_fallback" not in first.json()

    await toggle(client, "mock-vector", False, replacement="mock-image")  # not the default: ignored
    after = await member.post(GEN, json={"prompt": "a logo"})
    assert after.status_code == 200, after.text
    body = after.json()
    assert body["model"] == "mock-image"
    assert body["model_fallback"]["from"] == "mock-vector"
    assert body["model_fallback"]["to"] == "mock-image"
    assert "no longer enabled" in body["model_fallback"]["message"]
    assert after.headers["X-Imagegate-Model-Fallback"] == "mock-vector -> mock-image"

    # The member was switched to the default: the next one says nothing more.
    me = (await member.get("/v1/me")).json()
    assert me["selected_model"] == "mock-image"
    again = await member.post(GEN, json={"prompt": "a logo"})
    assert again.json()["model"] == "mock-image"
    assert "model_fallback" not in again.json()


async def test_changing_the_default_changes_only_requests_that_choose_nothing(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    _, other_secret = await new_member(client, name="sam")
    await toggle(client, "dall-e-3", True)
    assert (
        await member.put("/v1/me/selected-model", json={"model": "mock-image"})
    ).status_code == 200

    assert (await client.put(f"{MODELS}/default", json={"model": "mock-vector"})).status_code == 200
    async with as_key(client, other_secret) as never_chose:
        fresh = await never_chose.post(GEN, json={"prompt": "p"})
        assert fresh.json()["model"] == "mock-vector"
        assert (await never_chose.get("/v1/me")).json()["model"] == "mock-vector"
    kept = await member.post(GEN, json={"prompt": "p"})
    assert kept.json()["model"] == "mock-image"
    explicit = await member.post(GEN, json={"prompt": "p", "model": "mock-vector"})
    assert explicit.json()["model"] == "mock-vector"


async def test_a_member_can_only_select_an_enabled_model(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    assert_error(
        await member.put("/v1/me/selected-model", json={"model": "dall-e-3"}),
        403,
        "model_not_enabled",
        "model",
    )
    assert_error(
        await member.put("/v1/me/selected-model", json={"model": "nope"}),
        404,
        "model_not_found",
        "model",
    )
    assert_error(
        await member.put("/v1/me/selected-model", json={"model": 3}),
        400,
        "invalid_parameter",
        "model",
    )
    assert_error(
        await member.put("/v1/me/selected-model", json={"modle": "x"}),
        400,
        "invalid_parameter",
        "modle",
    )
    cleared = await member.put("/v1/me/selected-model", json={"model": None})
    assert cleared.json()["selected_model"] is None
    assert cleared.json()["model"] == "mock-image"


async def test_with_image_generation_off_nothing_is_generated(
    client: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    off = await client.patch("/v1/admin/settings", json={"image_generation_enabled": False})
    assert off.status_code == 200, off.text
    assert off.json()["warnings"][0]["code"] == "image_generation_disabled"
    listed = await listing(client)
    assert [w["code"] for w in listed["warnings"]] == ["image_generation_disabled"]

    for body in (
        {"prompt": "p"},
        {"prompt": "p", "model": "mock-image"},
        {"prompt": "p", "mock": True},
    ):
        error = assert_error(await member.post(GEN, json=body), 403, "image_generation_disabled")
        assert "turned off" in error["message"]
        assert_error(
            await member.post(GEN, json=body, headers={"Prefer": "respond-async"}),
            403,
            "image_generation_disabled",
        )
    # Admins are members too: no generation for them either.
    assert_error(await client.post(GEN, json={"prompt": "p"}), 403, "image_generation_disabled")

    on = await client.patch("/v1/admin/settings", json={"image_generation_enabled": True})
    assert on.json()["warnings"] == []
    assert (await member.post(GEN, json={"prompt": "p"})).status_code == 200


@pytest.fixture
async def paused_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose worker runs only when the test drains it."""
    gateway = Gateway(settings, run_workers=False)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        yield gateway


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"path": f"{MODELS}/mock-vector", "json": {"enabled": False}}, "model_not_enabled"),
        (
            {"path": "/v1/admin/settings", "json": {"image_generation_enabled": False}},
            "image_generation_disabled",
        ),
    ],
)
async def test_a_queued_job_obeys_a_change_made_before_a_worker_runs_it(
    paused_gateway: Gateway, change: dict[str, object], code: str
) -> None:
    app = create_app(paused_gateway.settings, gateway=paused_gateway)
    headers = {"Authorization": f"Bearer {paused_gateway.first_admin_key}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as admin:
        submitted = await admin.post(
            GEN, json={"prompt": "p", "model": "mock-vector"}, headers={"Prefer": "respond-async"}
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        assert (await admin.patch(str(change["path"]), json=change["json"])).status_code == 200

        await paused_gateway.dispatcher.drain()
        job = (await admin.get(f"/v1/jobs/{job_id}")).json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == code
        assert job["outputs"] == []
        assert job["charged_amount"] == 0
