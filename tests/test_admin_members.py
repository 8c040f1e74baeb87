"""Members, roles and keys through the admin API; admin-only and scoped to one workspace."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.api import deps
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services.bootstrap import create_member, create_workspace
from imagegate.services.keys import Principal, PrincipalCache, create_key, hash_key
from imagegate.store.tables import ApiKey, utcnow
from tests.billing_support import running_gateway
from tests.governance import MODELS, as_key, audit, new_member
from tests.helpers import assert_error

ADMIN_REQUESTS = [
    ("GET", MODELS, None),
    ("GET", f"{MODELS}/mock-image", None),
    ("PATCH", f"{MODELS}/mock-vector", {"enabled": False}),
    ("PUT", f"{MODELS}/default", {"model": "mock-vector"}),
    ("GET", "/v1/admin/settings", None),
    ("PATCH", "/v1/admin/settings", {"billing_mode": "flat"}),
    ("GET", "/v1/admin/members", None),
    ("POST", "/v1/admin/members", {"name": "eve"}),
    ("GET", "/v1/admin/keys", None),
    ("GET", "/v1/admin/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_REQUESTS)
async def test_admin_endpoints_refuse_members(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    member_id, secret = await new_member(client)
    async with as_key(client, secret) as member:
        error = assert_error(await member.request(method, path, json=body), 403, "admin_required")
        assert "admin" in error["message"]
        assert_error(
            await member.post(f"/v1/admin/members/{member_id}/keys", json={}), 403, "admin_required"
        )
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with anonymous:
        assert_error(await anonymous.request(method, path, json=body), 401, "missing_api_key")
    # Nothing changed.
    assert (await client.get("/v1/admin/settings")).json()["billing_mode"] == "prepaid"


async def test_members_and_their_keys(client: httpx.AsyncClient) -> None:
    member_id, secret = await new_member(client, name="alex")
    members = (await client.get("/v1/admin/members")).json()["data"]
    by_name = {m["name"]: m for m in members}
    assert by_name["alex"]["role"] == "member"
    assert by_name["alex"]["active_keys"] == 1
    assert by_name["admin"]["role"] == "admin"

    keys = (await client.get("/v1/admin/keys", params={"member_id": member_id})).json()["data"]
    [key] = keys
    assert key["prefix"] == secret[:11]
    assert key["member_id"] == member_id and key["member_name"] == "alex"
    assert key["revoked_at"] is None
    assert "key" not in key and "secret_hash" not in key
    everything = (await client.get("/v1/admin/keys")).text
    assert secret not in everything

    async with as_key(client, secret) as alex:
        assert (await alex.get("/v1/me")).json()["name"] == "alex"
        revoked = await client.post(f"/v1/admin/keys/{key['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        assert_error(await alex.get("/v1/models"), 401, "invalid_api_key")
    again = await client.post(f"/v1/admin/keys/{key['id']}/revoke")
    assert again.json()["changed"] is False


async def test_roles_change_and_the_last_admin_stays(client: httpx.AsyncClient) -> None:
    member_id, secret = await new_member(client, name="kim")
    promoted = await client.patch(f"/v1/admin/members/{member_id}", json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    async with as_key(client, secret) as kim:
        assert (await kim.get(MODELS)).status_code == 200
        me = (await kim.get("/v1/me")).json()
        first_admin = next(
            m for m in (await kim.get("/v1/admin/members")).json()["data"] if m["name"] == "admin"
        )
        # kim demotes the first admin, then cannot demote herself: she is the last one.
        assert (
            await kim.patch(f"/v1/admin/members/{first_admin['id']}", json={"role": "member"})
        ).status_code == 200
        assert_error(
            await kim.patch(f"/v1/admin/members/{me['id']}", json={"role": "member"}),
            409,
            "last_admin",
            "role",
        )
        # Nor revoke the last working admin key.
        [kim_key] = (await kim.get("/v1/admin/keys", params={"member_id": me["id"]})).json()["data"]
        assert_error(
            await kim.post(f"/v1/admin/keys/{kim_key['id']}/revoke"), 409, "last_admin_key"
        )
    assert_error(await client.get(MODELS), 403, "admin_required")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "role": "owner"}, "role"),
        ({"role": "member"}, "name"),
        ({"name": "x", "email": "x@example.com"}, "email"),
    ],
)
async def test_bad_member_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], param: str
) -> None:
    assert_error(await client.post("/v1/admin/members", json=body), 400, "invalid_parameter", param)


async def test_lookups_are_scoped_to_the_callers_workspace(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    async with gateway.db.session() as session:
        other = await create_workspace(session, gateway.catalog, "Other")
        stranger = await create_member(session, other, "stranger", "admin")
        stranger_key, stranger_secret = await create_key(session, stranger, "theirs")

    assert_error(
        await client.patch(f"/v1/admin/members/{stranger.id}", json={"role": "member"}),
        404,
        "member_not_found",
    )
    assert_error(
        await client.post(f"/v1/admin/members/{stranger.id}/keys", json={}), 404, "member_not_found"
    )
    assert_error(
        await client.post(f"/v1/admin/keys/{stranger_key.id}/revoke"), 404, "key_not_found"
    )
    assert_error(
        await client.get("/v1/admin/keys", params={"member_id": stranger.id}),
        404,
        "member_not_found",
    )
    names = [m["name"] for m in (await client.get("/v1/admin/members")).json()["data"]]
    assert "stranger" not in names

    # Each workspace governs its own models.
    disabled = await client.patch(
        f"{MODELS}/mock-image", json={"enabled": False, "replacement": "mock-vector"}
    )
    assert disabled.status_code == 200, disabled.text
    async with as_key(client, stranger_secret) as theirs:
        listed = (await theirs.get(MODELS)).json()
        assert listed["default_model"] == "mock-image"
        assert listed["enabled_models"] == ["mock-image", "mock-vector"]
        assert (await theirs.get("/v1/admin/audit")).json()["data"] == []


async def test_every_admin_change_is_in_the_audit_log(client: httpx.AsyncClient) -> None:
    member_id, _ = await new_member(client, name="lee")
    await client.patch(f"{MODELS}/dall-e-3", json={"enabled": True})
    await client.put(f"{MODELS}/default", json={"model": "dall-e-3"})
    await client.patch(
        "/v1/admin/settings", json={"billing_mode": "invoiced", "margin_percent": 25}
    )
    await client.patch(f"/v1/admin/members/{member_id}", json={"role": "admin"})
    await client.patch(f"{MODELS}/dall-e-3", json={"enabled": True})  # no change: not logged

    events = await audit(client)
    assert [e["action"] for e in events] == [
        "member.role_changed",
        "settings.updated",
        "default_model.changed",
        "image_model.enabled",
        "key.created",
        "member.created",
    ]
    settings_event = events[1]
    assert settings_event["actor"]["name"] == "admin"
    assert settings_event["before"]["billing_mode"] == "prepaid"
    assert settings_event["after"]["billing_mode"] == "invoiced"
    assert settings_event["after"]["margin_percent"] == 25
    assert isinstance(settings_event["created_at"], int)
    assert events[2]["before"] == {"default_model": "mock-image"}
    assert events[2]["after"] == {"default_model": "dall-e-3"}
    assert events[3]["target"] == "dall-e-3"

    page = (await client.get("/v1/admin/audit", params={"limit": 2})).json()
    assert [e["action"] for e in page["data"]] == ["member.role_changed", "settings.updated"]
    assert page["has_more"] is True
    rest = (
        await client.get("/v1/admin/audit", params={"limit": 10, "before": page["next_before"]})
    ).json()
    assert rest["data"][0]["action"] == "default_model.changed"
    assert_error(
        await client.get("/v1/admin/audit", params={"limit": 0}), 400, "invalid_parameter", "limit"
    )


async def test_a_look_up_that_spans_a_revoke_does_not_bring_the_key_back(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    member_id, secret = await new_member(client, name="sam")
    [key] = (await client.get("/v1/admin/keys", params={"member_id": member_id})).json()["data"]
    read, release = asyncio.Event(), asyncio.Event()
    real = deps.authenticate

    async def slow(session: AsyncSession, token: str) -> Principal:
        principal = await real(session, token)
        if token == secret:  # the key was read as valid; hold on before caching it
            read.set()
            await release.wait()
        return principal

    monkeypatch.setattr(deps, "authenticate", slow)
    async with as_key(client, secret) as sam:
        first = asyncio.create_task(sam.get("/v1/me"))
        await read.wait()
        revoked = await client.post(f"/v1/admin/keys/{key['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
        release.set()
        assert (await first).status_code == 200  # it was let in before the revoke
        # The revoke took effect at once: the look-up that read the key before it is
        # not kept.
        assert_error(await sam.get("/v1/me"), 401, "invalid_api_key")


async def test_a_key_revoked_by_another_process_stops_working_within_the_cache_ttl(
    settings: Settings,
) -> None:
    # Without notifications (as when one is lost); with them the change arrives at once
    # (tests/test_instances.py).
    settings = settings.model_copy(update={"listen_notify": False})
    async with running_gateway(settings) as (client, gateway):
        now = [1000.0]
        gateway.principals = PrincipalCache(5.0, clock=lambda: now[0])
        _, secret = await new_member(client, name="sam")
        async with as_key(client, secret) as sam:
            assert (await sam.get("/v1/me")).status_code == 200  # looked up, now cached
            # Another process revokes the key: this one's cache does not hear of it...
            async with gateway.db.session() as session:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.secret_hash == hash_key(secret))
                    .values(revoked_at=utcnow())
                )
            now[0] += 4.0
            assert (await sam.get("/v1/me")).status_code == 200
            # ...until the entry is older than the TTL.
            now[0] += 1.5
            assert_error(await sam.get("/v1/me"), 401, "invalid_api_key")
