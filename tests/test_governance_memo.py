"""Submits on PostgreSQL plan with the workspace's governance as the process last read it:
the insert checks the workspace's ``governance_version``, so a change (made through the
API, by another process or by hand) is obeyed by the next request all the same."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services import workspace as workspace_service
from tests.billing_support import credits, grant, kinds, running_gateway
from tests.conftest import on_postgres
from tests.governance import GEN
from tests.helpers import assert_error

postgres_only = pytest.mark.skipif(not on_postgres(), reason="the version is PostgreSQL's")


async def _sql(gateway: Gateway, statement: str, **params: Any) -> list[Any]:
    async with gateway.db.session() as session:
        result = await session.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def _workspace(gateway: Gateway) -> str:
    return str((await _sql(gateway, "SELECT id FROM workspaces"))[0].id)


async def _enable_by_hand(gateway: Gateway, workspace: str, model: str, enabled: bool) -> None:
    """A change made in the database, not through the gateway."""
    await _sql(
        gateway,
        "UPDATE workspace_models SET enabled = :e WHERE workspace_id = :w AND model = :m",
        e=enabled,
        w=workspace,
        m=model,
    )


async def _generate(client: httpx.AsyncClient, model: str) -> httpx.Response:
    return await client.post(GEN, json={"prompt": "p", "model": model})


async def test_changes_made_by_hand_are_obeyed_by_the_next_request(settings: Settings) -> None:
    async with running_gateway(settings) as (client, gateway):
        workspace = await _workspace(gateway)
        assert (await _generate(client, "mock-vector")).status_code == 200
        await _enable_by_hand(gateway, workspace, "mock-vector", False)
        assert_error(await _generate(client, "mock-vector"), 403, "model_not_enabled", "model")
        # Remembered now: a state in which mock-vector is off. Turned on by hand, it is
        # usable at once: a refusal planned on a remembered state is checked afresh.
        assert (await _generate(client, "mock-image")).status_code == 200
        await _enable_by_hand(gateway, workspace, "mock-vector", True)
        assert (await _generate(client, "mock-vector")).status_code == 200
        await _sql(
            gateway, "UPDATE workspaces SET image_generation_enabled = false WHERE id = :w",
            w=workspace,
        )  # fmt: skip
        assert_error(await _generate(client, "mock-image"), 403, "image_generation_disabled")


@postgres_only
async def test_a_stale_remembered_state_is_read_again_and_charged_once(
    settings: Settings,
) -> None:
    # Without notifications (as when one is lost), the change does not reach the memo.
    settings = settings.model_copy(update={"listen_notify": False})
    async with running_gateway(settings) as (client, gateway):
        workspace = await _workspace(gateway)
        memo = gateway.governance._states
        await grant(client, 10)
        assert (await _generate(client, "paid-image")).status_code == 200
        disabled = await client.patch("/v1/admin/image-models/mock-vector", json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
        # Remembered from before the change: a state that still allows mock-vector.
        assert "mock-vector" in memo[workspace].enabled
        assert_error(await _generate(client, "mock-vector"), 403, "model_not_enabled", "model")
        # The refusal was checked on a fresh read, and that read is remembered in its place.
        assert "mock-vector" not in memo[workspace].enabled

        assert (await _generate(client, "paid-image")).status_code == 200
        current = memo[workspace]
        # The same state under a version that is no longer current: read and planned
        # again, held and captured once.
        memo[workspace] = dataclasses.replace(current, version=current.version + 1)
        assert (await _generate(client, "paid-image")).status_code == 200
        assert memo[workspace].version == current.version
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (4, 0)
        assert kinds(balance["entries"]) == ["capture"] * 3 + ["grant"] + ["hold"] * 3


@postgres_only
async def test_the_version_changes_with_what_generation_checks_and_only_then(
    settings: Settings,
) -> None:
    async with running_gateway(settings) as (_, gateway):
        workspace = await _workspace(gateway)

        async def version() -> int:
            rows = await _sql(
                gateway, "SELECT governance_version FROM workspaces WHERE id = :w", w=workspace
            )
            return int(rows[0].governance_version)

        changes = [
            "UPDATE workspaces SET default_model = 'mock-vector' WHERE id = :w",
            "UPDATE workspaces SET billing_mode = 'invoiced' WHERE id = :w",
            "UPDATE workspaces SET region_policy = 'eu_only' WHERE id = :w",
            "UPDATE workspaces SET margin_percent = 7 WHERE id = :w",
            "UPDATE workspaces SET image_generation_enabled = false WHERE id = :w",
            "UPDATE workspace_models SET enabled = false WHERE workspace_id = :w",
            "DELETE FROM workspace_models WHERE workspace_id = :w AND model = 'mock-image'",
            "INSERT INTO workspace_models (workspace_id, model, enabled, updated_at) "
            "VALUES (:w, 'mock-image', true, now())",
        ]
        seen = {await version()}
        for change in changes:
            await _sql(gateway, change, w=workspace)
            now = await version()
            assert now not in seen, change
            seen.add(now)
        unchanged = await version()
        for same in (
            "UPDATE workspaces SET name = 'renamed', webhook_secret = 's' WHERE id = :w",
            "UPDATE workspaces SET margin_percent = 7 WHERE id = :w",  # the same value
        ):
            await _sql(gateway, same, w=workspace)
            assert await version() == unchanged, same


@postgres_only
async def test_a_version_that_never_matches_writes_nothing_and_ends_in_409(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_gateway(settings) as (client, _):
        await grant(client, 10)
        read = workspace_service.governance
        reads = 0

        async def always_stale(session: Any, workspace_id: str) -> Any:
            nonlocal reads
            reads += 1
            state = await read(session, workspace_id)
            return dataclasses.replace(state, version=state.version + 1)

        monkeypatch.setattr(workspace_service, "governance", always_stale)
        error = assert_error(await _generate(client, "paid-image"), 409, "workspace_changing")
        assert "retry" in error["message"]
        monkeypatch.undo()
        assert reads >= 4
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (10, 0)
        assert kinds(balance["entries"]) == ["grant"]
        assert (await client.get("/v1/jobs")).json()["data"] == []
