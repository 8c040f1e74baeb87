"""Which adapter serves which provider name. Built-ins register like plugins would."""

from __future__ import annotations

from importlib.metadata import entry_points

from imagegate.config import Settings
from imagegate.errors import ProviderNotConfigured
from imagegate.providers.base import Provider
from imagegate.providers.mock import MockProvider

ENTRY_POINT_GROUP = "imagegate.providers"


class ProviderRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}

    def register(self, provider: Provider) -> None:
        self._providers[provider.name] = provider

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            raise ProviderNotConfigured(
                f"Provider {name!r} is not configured on this gateway. Set its credentials "
                f'(see docs/providers.md) or call the model with "mock": true for a placeholder.',
                extra={"provider": name},
            )
        return provider

    def names(self) -> list[str]:
        return sorted(self._providers)


def default_registry(settings: Settings | None = None) -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register(MockProvider(latency=settings.mock_latency_seconds if settings else 0.0))
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        registry.register(entry.load()())
    return registry
