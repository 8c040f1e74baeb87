"""qwen-image and other models made by PRC-based companies need the admin's opt-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from alembic import command
from sqlalchemy import create_engine, event, text

from imagegate.store.db import alembic_config
from tests.governance import GEN, MODELS
from tests.helpers import assert_error

SETTINGS = "/v1/admin/settings"


async def test_a_prc_model_needs_the_opt_in_to_be_enabled_or_used(
    client: httpx.AsyncClient,
) -> None:
    settings = (await client.get(SETTINGS)).json()
    assert settings["prc_models_allowed"] is False
    assert_error(
        await client.patch(f"{MODELS}/qwen-image", json={"enabled": True}),
        403,
        "prc_opt_in_required",
        "model",
    )
    assert_error(
        await client.post(GEN, json={"model": "qwen-image", "prompt": "p", "mock": True}),
        403,
        "prc_opt_in_required",
    )
    opted = await client.patch(SETTINGS, json={"prc_models_allowed": True})
    assert opted.status_code == 200, opted.text
    assert opted.json()["prc_models_allowed"] is True
    enabled = await client.patch(f"{MODELS}/qwen-image", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    mocked = await client.post(GEN, json={"model": "qwen-image", "prompt": "p", "mock": True})
    assert mocked.status_code == 200, mocked.text
    # Opting out while the model is enabled would leave it usable: disable it first.
    error = assert_error(
        await client.patch(SETTINGS, json={"prc_models_allowed": False}),
        409,
        "prc_models_enabled",
        "prc_models_allowed",
    )
    assert error["enabled_models"] == ["qwen-image"]
    await client.patch(f"{MODELS}/qwen-image", json={"enabled": False})
    assert (await client.patch(SETTINGS, json={"prc_models_allowed": False})).status_code == 200
    audit = (await client.get("/v1/admin/audit")).json()["data"]
    assert any(e["after"].get("prc_models_allowed") is True for e in audit)


def test_the_migration_keeps_an_existing_sqlite_workspace(tmp_path: Path) -> None:
    # The column is added in place: copying the table would drop ``workspaces`` under
    # the rows that refer to it.
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")

    @event.listens_for(engine, "connect")
    def _foreign_keys(connection: Any, record: Any) -> None:
        connection.execute("PRAGMA foreign_keys=ON")

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0005")
        connection.execute(
            text(
                "INSERT INTO workspaces (id, name, image_generation_enabled, billing_mode, "
                "region_policy, margin_percent, created_at) "
                "VALUES ('ws_1', 'w', 1, 'prepaid', 'any', 20, '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO members (id, workspace_id, name, role, created_at) "
                "VALUES ('mem_1', 'ws_1', 'a', 'admin', '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_keys (id, workspace_id, member_id, name, prefix, secret_hash, created_at) "
                "VALUES ('key_1', 'ws_1', 'mem_1', 'k', 'ig_x', 'h', '2026-01-01 00:00:00')"
            )
        )
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
        allowed = connection.execute(text("SELECT prc_models_allowed FROM workspaces")).all()
    assert [row[0] for row in allowed] == [0]
    engine.dispose()
