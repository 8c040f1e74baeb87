"""``imagegate admin …`` as an operator types it, against the gateway in the data dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from imagegate.cli import app


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "COLUMNS": "200",
        "IMAGEGATE_URL": "",
    }


async def imagegate(env: dict[str, str], *args: str) -> Result:
    # The CLI runs its own event loop, so it runs in a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def test_models_list_enable_disable_default(env: dict[str, str]) -> None:
    listed = await imagegate(env, "admin", "models", "list")
    assert listed.exit_code == 0, listed.output
    assert "OpenAI" in listed.stdout and "gpt-image-1" in listed.stdout
    assert "premium" in listed.stdout
    assert "default model: mock-image" in listed.stdout

    enabled = await imagegate(env, "admin", "models", "enable", "dall-e-3")
    assert enabled.exit_code == 0, enabled.output
    assert enabled.stdout.strip() == "dall-e-3 enabled; default model: mock-image"

    refused = await imagegate(env, "admin", "models", "disable", "mock-image")
    assert refused.exit_code == 1
    assert "default_model_requires_replacement" in refused.output

    disabled = await imagegate(
        env, "admin", "models", "disable", "mock-image", "--replacement", "dall-e-3"
    )
    assert disabled.exit_code == 0, disabled.output
    assert disabled.stdout.strip() == "mock-image disabled; default model: dall-e-3"

    default = await imagegate(env, "admin", "models", "default", "mock-vector")
    assert default.exit_code == 0, default.output
    assert default.stdout.strip() == "default model: mock-vector (was dall-e-3)"

    unknown = await imagegate(env, "admin", "models", "default", "nope")
    assert unknown.exit_code == 1
    assert "model_not_found" in unknown.output

    audit = await imagegate(env, "admin", "audit")
    assert audit.exit_code == 0, audit.output
    for action in ("image_model.enabled", "image_model.disabled", "default_model.changed"):
        assert action in audit.stdout


async def test_settings_show_and_change(env: dict[str, str]) -> None:
    shown = await imagegate(env, "admin", "settings")
    assert shown.exit_code == 0, shown.output
    assert "image_generation_enabled: true" in shown.stdout
    assert "billing_mode: prepaid" in shown.stdout

    changed = await imagegate(
        env,
        "admin",
        "settings",
        "--no-image-generation",
        "--billing-mode",
        "flat",
        "--margin",
        "30",
    )
    assert changed.exit_code == 0, changed.output
    assert "image_generation_enabled: false" in changed.stdout
    assert "billing_mode: flat" in changed.stdout
    assert "margin_percent: 30" in changed.stdout
    assert "image_generation_disabled" in changed.output  # the warning

    bad = await imagegate(env, "admin", "settings", "--billing-mode", "monthly")
    assert bad.exit_code == 1
    assert "invalid_parameter" in bad.output and "invoiced" in bad.output

    listed = await imagegate(env, "admin", "models", "list")
    assert "image_generation_disabled" in listed.output
