"""Which adapter serves which provider name. Built-ins register like plugins would."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from imagegate.config import Settings
from imagegate.errors import ProviderNotConfigured
from imagegate.providers.base import Provider
from imagegate.providers.mock import MockProvider

if TYPE_CHECKING:
    from imagegate.config import Settings
    from imagegate.providers.common import AdapterOptions

ENTRY_POINT_GROUP = "imagegate.providers"


class ConfiguredProviders(frozenset[str]):
    """The providers that can be called, and what would configure each of the others."""

    what_to_set: dict[str, str]

    def __new__(cls, names: Iterable[str], what_to_set: dict[str, str]) -> ConfiguredProviders:
        configured = super().__new__(cls, names)
        configured.what_to_set = dict(what_to_set)
        return configured


class ProviderRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}
        self._missing: dict[str, str] = {}
        # Providers another process runs (local runners): planned on here, never called.
        self._elsewhere: dict[str, str] = {}
        self._configured = ConfiguredProviders((), {})

    def _refresh(self) -> None:
        self._configured = ConfiguredProviders([*self._providers, *self._elsewhere], self._missing)

    def register(self, provider: Provider) -> None:
        self._providers[provider.name] = provider
        self._missing.pop(provider.name, None)
        self._elsewhere.pop(provider.name, None)
        self._refresh()

    def register_elsewhere(self, name: str, note: str) -> None:
        """A provider that another process runs (``imagegate worker --local``): requests for it
        are accepted and queued here; this process never calls it."""
        if name not in self._providers:
            self._elsewhere[name] = note
            self._missing.pop(name, None)
            self._refresh()

    def register_missing(self, name: str, what_to_set: str) -> None:
        """Remember a known provider that lacks credentials, and what would configure it."""
        if name not in self._providers:
            self._missing[name] = what_to_set
            self._refresh()

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            needs = self._missing.get(name) or self._elsewhere.get(name)
            hint = f"To use it, {needs}" if needs else "Set its credentials"
            raise ProviderNotConfigured(
                f"Provider {name!r} is not configured on this gateway. {hint} "
                f'(see docs/providers.md), or call the model with "mock": true for a placeholder.',
                extra={"provider": name},
            )
        return provider

    def names(self) -> list[str]:
        return sorted(self._providers)

    def configured(self) -> ConfiguredProviders:
        """The providers that can be called: the mock, plus those with credentials."""
        return self._configured

    async def aclose(self) -> None:
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()


def default_registry(
    settings: Settings | None = None, options: AdapterOptions | None = None
) -> ProviderRegistry:
    """The mock, every built-in adapter whose credentials ``settings`` holds, then plugins."""
    registry = ProviderRegistry()
    registry.register(MockProvider(latency=settings.mock_latency_seconds if settings else 0.0))
    if settings is not None:
        from imagegate.providers.setup import configure

        for setup in configure(settings, options):
            if setup.adapter is not None:
                registry.register(setup.adapter)
            elif setup.missing:
                registry.register_missing(setup.name, setup.missing)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        registry.register(entry.load()())
    return registry
