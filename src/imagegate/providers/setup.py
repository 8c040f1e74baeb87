"""Credentials resolved in one place, and the built-in adapters built from settings.

Each credential is looked up as: the explicit setting (``IMAGEGATE_…``), then the
provider's own environment variable. A provider without one is not registered; asking
for it raises ``provider_not_configured`` naming what to set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from imagegate.config import Settings
from imagegate.providers.base import Provider
from imagegate.providers.bfl import BFLProvider
from imagegate.providers.common import AdapterOptions
from imagegate.providers.fal import FalProvider
from imagegate.providers.gemini import GeminiProvider
from imagegate.providers.openai import OpenAIProvider, XAIProvider
from imagegate.providers.recraft import RecraftProvider
from imagegate.providers.replicate import ReplicateProvider
from imagegate.providers.vertex import ServiceAccountToken, StaticToken, TokenSource, VertexProvider


@dataclass(frozen=True, slots=True)
class ProviderSetup:
    """One built-in provider: its adapter when configured, else what to set."""

    name: str
    adapter: Provider | None
    source: str | None
    missing: str | None


def _credential(
    explicit: SecretStr | None, setting: str, env_names: tuple[str, ...], env: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The credential and where it came from."""
    if explicit is not None and explicit.get_secret_value():
        return explicit.get_secret_value(), setting
    for name in env_names:
        if env.get(name):
            return env[name], name
    return None, None


def _needs(setting: str, env_names: tuple[str, ...]) -> str:
    return f"set {setting}" + "".join(f" or {name}" for name in env_names)


def configure(
    settings: Settings, options: AdapterOptions | None = None, env: Mapping[str, str] | None = None
) -> list[ProviderSetup]:
    """Every built-in HTTP provider, built where its credentials are present."""
    env = os.environ if env is None else env
    options = options or AdapterOptions.from_settings(settings)
    setups: list[ProviderSetup] = []

    def simple(
        name: str,
        explicit: SecretStr | None,
        setting: str,
        env_names: tuple[str, ...],
        build: Callable[[str], Provider],
    ) -> None:
        value, source = _credential(explicit, setting, env_names, env)
        if value is None:
            setups.append(ProviderSetup(name, None, None, _needs(setting, env_names)))
        else:
            setups.append(ProviderSetup(name, build(value), source, None))

    simple(
        "openai",
        settings.openai_api_key,
        "IMAGEGATE_OPENAI_API_KEY",
        ("OPENAI_API_KEY",),
        lambda key: OpenAIProvider(key, base_url=settings.openai_base_url, options=options),
    )
    simple(
        "bfl",
        settings.bfl_api_key,
        "IMAGEGATE_BFL_API_KEY",
        ("BFL_API_KEY",),
        lambda key: BFLProvider(
            key,
            base_urls={
                "global": settings.bfl_base_url,
                "eu": settings.bfl_eu_base_url,
                "us": settings.bfl_us_base_url,
            },
            region=settings.bfl_region,
            options=options,
        ),
    )
    simple(
        "gemini",
        settings.gemini_api_key,
        "IMAGEGATE_GEMINI_API_KEY",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        lambda key: GeminiProvider(key, base_url=settings.gemini_base_url, options=options),
    )
    setups.append(_vertex(settings, options, env))
    simple(
        "fal",
        settings.fal_key,
        "IMAGEGATE_FAL_KEY",
        ("FAL_KEY",),
        lambda key: FalProvider(
            key, queue_url=settings.fal_queue_url, api_url=settings.fal_api_url, options=options
        ),
    )
    simple(
        "replicate",
        settings.replicate_api_token,
        "IMAGEGATE_REPLICATE_API_TOKEN",
        ("REPLICATE_API_TOKEN",),
        lambda token: ReplicateProvider(
            token, base_url=settings.replicate_base_url, options=options
        ),
    )
    simple(
        "recraft",
        settings.recraft_api_token,
        "IMAGEGATE_RECRAFT_API_TOKEN",
        ("RECRAFT_API_TOKEN",),
        lambda token: RecraftProvider(token, base_url=settings.recraft_base_url, options=options),
    )
    simple(
        "xai",
        settings.xai_api_key,
        "IMAGEGATE_XAI_API_KEY",
        ("XAI_API_KEY",),
        lambda key: XAIProvider(key, base_url=settings.xai_base_url, options=options),
    )
    return setups


def _vertex(settings: Settings, options: AdapterOptions, env: Mapping[str, str]) -> ProviderSetup:
    project = settings.vertex_project or env.get("GOOGLE_CLOUD_PROJECT")
    token, source = _credential(
        settings.vertex_access_token, "IMAGEGATE_VERTEX_ACCESS_TOKEN", ("VERTEX_ACCESS_TOKEN",), env
    )
    tokens: TokenSource | None = StaticToken(token) if token else None
    if tokens is None:
        path = settings.vertex_credentials_file
        source = "IMAGEGATE_VERTEX_CREDENTIALS_FILE"
        if path is None and env.get("GOOGLE_APPLICATION_CREDENTIALS"):
            path, source = (
                Path(env["GOOGLE_APPLICATION_CREDENTIALS"]),
                "GOOGLE_APPLICATION_CREDENTIALS",
            )
        tokens = ServiceAccountToken(path) if path is not None else None
    missing = []
    if tokens is None:
        missing.append(
            "set IMAGEGATE_VERTEX_ACCESS_TOKEN (or VERTEX_ACCESS_TOKEN) or "
            "IMAGEGATE_VERTEX_CREDENTIALS_FILE (or GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if not project:
        missing.append("set IMAGEGATE_VERTEX_PROJECT or GOOGLE_CLOUD_PROJECT")
    if missing or tokens is None or not project:
        return ProviderSetup("vertex", None, None, "; ".join(missing))
    adapter = VertexProvider(
        tokens,
        project=project,
        location=settings.vertex_location,
        base_url=settings.vertex_base_url,
        options=options,
    )
    return ProviderSetup("vertex", adapter, source, None)
