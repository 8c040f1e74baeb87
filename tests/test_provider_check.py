"""Credentials, the registry, and ``imagegate providers check``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegate.cli import app
from imagegate.config import Settings
from imagegate.errors import ProviderNotConfigured
from imagegate.providers.registry import default_registry
from tests.fakes.bfl import FakeBFL
from tests.fakes.openai import FakeOpenAI

# Every environment variable a provider's credentials may come from.
CREDENTIAL_ENV = (
    "OPENAI_API_KEY", "BFL_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VERTEX_ACCESS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "FAL_KEY", "REPLICATE_API_TOKEN",
    "RECRAFT_API_TOKEN",
)  # fmt: skip


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"IMAGEGATE_{name}", raising=False)


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def bfl() -> Iterator[FakeBFL]:
    fake = FakeBFL().start()
    yield fake
    fake.stop()


def test_only_configured_providers_are_registered(no_credentials: None, tmp_path: Path) -> None:
    registry = default_registry(Settings(data_dir=tmp_path, fal_key="k"))
    assert registry.names() == ["fal", "mock"]
    with pytest.raises(ProviderNotConfigured) as missing:
        registry.get("replicate")
    assert "IMAGEGATE_REPLICATE_API_TOKEN or REPLICATE_API_TOKEN" in missing.value.message
    assert missing.value.extra == {"provider": "replicate"}


def test_environment_variables_are_the_fallback(
    no_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BFL_API_KEY", "from-env")
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    registry = default_registry(Settings(data_dir=tmp_path))
    assert registry.names() == ["bfl", "gemini", "mock"]
    assert registry.get("bfl").http.headers["x-key"] == "from-env"  # type: ignore[attr-defined]


def test_vertex_needs_a_project_and_a_credential(no_credentials: None, tmp_path: Path) -> None:
    registry = default_registry(Settings(data_dir=tmp_path, vertex_access_token="t"))
    with pytest.raises(ProviderNotConfigured) as missing:
        registry.get("vertex")
    assert "IMAGEGATE_VERTEX_PROJECT" in missing.value.message
    registry = default_registry(
        Settings(data_dir=tmp_path, vertex_access_token="t", vertex_project="p")
    )
    assert "vertex" in registry.names()


def test_providers_check_reports_each_provider(
    no_credentials: None, tmp_path: Path, openai: FakeOpenAI, bfl: FakeBFL
) -> None:
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path),
        "IMAGEGATE_OPENAI_API_KEY": "sk-test-openai",
        "IMAGEGATE_OPENAI_BASE_URL": f"{openai.url}/v1",
        "BFL_API_KEY": "bfl-test-key",
        "IMAGEGATE_BFL_BASE_URL": f"{bfl.url}/global/v1",
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(app, ["providers", "check"], env=env)
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ")}
    assert (
        "from IMAGEGATE_OPENAI_API_KEY" in lines["openai"]
        and "ok: endpoint answers" in lines["openai"]
    )
    assert "from BFL_API_KEY" in lines["bfl"] and "ok: endpoint answers" in lines["bfl"]
    assert "missing" in lines["fal"] and "FAL_KEY" in lines["fal"]
    assert "missing" in lines["vertex"]
    # Nothing was generated: one free call per configured provider.
    assert [(c.method, c.path) for c in openai.requests] == [("GET", "/v1/models")]
    assert [(c.method, c.path) for c in bfl.requests] == [("GET", "/global/v1/credits")]


def test_providers_check_fails_on_rejected_credentials(
    no_credentials: None, tmp_path: Path, openai: FakeOpenAI
) -> None:
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path),
        "OPENAI_API_KEY": "sk-wrong",
        "IMAGEGATE_OPENAI_BASE_URL": f"{openai.url}/v1",
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(app, ["providers", "check"], env=env)
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.startswith("│ openai")]
    assert "FAILED: upstream_auth_failed" in line


def test_docs_name_every_provider_setting_and_error_code() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "providers.md").read_text()
    prefixes = (
        "openai_",
        "bfl_",
        "gemini_",
        "vertex_",
        "fal_",
        "replicate_",
        "recraft_",
        "provider_",
    )
    settings = [name for name in Settings.model_fields if name.startswith(prefixes)]
    assert len(settings) > 20
    undocumented = [name for name in settings if f"IMAGEGATE_{name.upper()}" not in docs]
    assert undocumented == []
    source = "\n".join(
        p.read_text()
        for p in (Path(__file__).parent.parent / "src/imagegate/providers").glob("*.py")
    )
    codes = set(re.findall(r'code="([a-z_]+)"', source))
    assert "upstream_auth_failed" in codes
    assert [code for code in sorted(codes) if f"`{code}`" not in docs] == []
