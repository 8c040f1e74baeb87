"""The docs cover every endpoint, setting, CLI command and error code."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from imagegate.app import create_app
from imagegate.cli import app as cli_app
from imagegate.config import Settings
from tests.helpers import api_routes

ROOT = Path(__file__).resolve().parent.parent
DOCS = (
    "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    + (ROOT / "README.md").read_text()
)


def test_every_endpoint_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = api_routes(app.routes)
    assert len(routes) > 30
    paths = {route.path for route in routes}
    missing = sorted(p for p in paths if p not in DOCS)
    assert not missing, f"endpoints missing from docs/: {missing}"


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"IMAGEGATE_{name.upper()}" not in DOCS]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def _commands(app: typer.Typer, prefix: str = "imagegate") -> list[str]:
    found = []
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        found.append(f"{prefix} {name.replace('_', '-')}")
    for group in app.registered_groups:
        assert group.typer_instance is not None and group.name is not None
        found.extend(_commands(group.typer_instance, f"{prefix} {group.name}"))
    return found


def test_every_cli_command_is_documented() -> None:
    missing = [command for command in _commands(cli_app) if command not in DOCS]
    assert not missing, f"CLI commands missing from docs/: {missing}"


def test_every_error_code_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "imagegate").rglob("*.py"))
    codes = set(re.findall(r'\bcode\s*=\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'^\s+"([a-z_]+)": \(\d{3}, ', source, re.M))
    missing = sorted(code for code in codes if f"`{code}`" not in DOCS)
    assert not missing, f"error codes missing from docs/api.md: {missing}"
