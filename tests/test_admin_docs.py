"""docs/admin.md keeps up with the code: every admin endpoint, error code and command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from imagegate.api import admin, me
from imagegate.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "admin.md").read_text()
SOURCES = [
    "services/workspace.py",
    "services/members.py",
    "api/admin.py",
    "api/me.py",
    "api/deps.py",
]


def _routes() -> list[str]:
    found = []
    for route in [*admin.router.routes, *me.router.routes]:
        assert isinstance(route, APIRoute)
        found.extend(f"{method} {route.path}" for method in sorted(route.methods))
    assert len(found) >= 15
    return found


@pytest.mark.parametrize("route", _routes())
def test_every_admin_endpoint_is_documented(route: str) -> None:
    assert route in DOC


def _codes() -> set[str]:
    codes: set[str] = set()
    for name in SOURCES:
        codes |= set(
            re.findall(r'code="([a-z_]+)"', (ROOT / "src" / "imagegate" / name).read_text())
        )
    return codes


@pytest.mark.parametrize("code", sorted(_codes()))
def test_every_error_code_is_documented(code: str) -> None:
    assert f"`{code}`" in DOC


@pytest.mark.parametrize(
    "command",
    [
        "admin models list",
        "admin models enable",
        "admin models disable",
        "admin models default",
        "admin settings",
        "admin audit",
    ],
)
def test_every_admin_command_is_documented(command: str) -> None:
    assert f"imagegate {command}" in DOC


def test_the_setting_is_documented() -> None:
    assert "IMAGEGATE_CREDIT_VALUE_MICRO_EUR" in DOC
    assert "credit_value_micro_eur" in Settings.model_fields
