"""Providers of overlay routes that have their own base URL and credential.

Each such route (``docs/catalog.md``, ``add_routes``) is an :class:`Endpoint`: an adapter
type, a base URL and a credential, registered under a provider name of its own so that
the job runner reaches it like any other provider. The credential is the route's
``api_key``, else its ``api_key_env`` variable, else (for a hosted provider's type) that
provider's usual setting. ``local`` routes are served by ``imagegate worker --local``
processes, which register them themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from imagegate.catalog.overlay import Endpoint
from imagegate.config import Settings
from imagegate.providers.base import Provider
from imagegate.providers.bfl import BFLProvider
from imagegate.providers.common import AdapterOptions
from imagegate.providers.compatible import OpenAICompatibleProvider
from imagegate.providers.fal import FalProvider
from imagegate.providers.gemini import GeminiProvider
from imagegate.providers.openai import OpenAIProvider
from imagegate.providers.recraft import RecraftProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.providers.replicate import ReplicateProvider

Builder = Callable[[str, str, AdapterOptions], Provider]

_BUILDERS: dict[str, Builder] = {
    "openai": lambda key, url, o: OpenAIProvider(key, base_url=url, options=o),
    "bfl": lambda key, url, o: BFLProvider(
        key, base_urls={"global": url, "eu": url, "us": url}, options=o
    ),
    "gemini": lambda key, url, o: GeminiProvider(key, base_url=url, options=o),
    "fal": lambda key, url, o: FalProvider(key, queue_url=url, api_url=url, options=o),
    "replicate": lambda key, url, o: ReplicateProvider(key, base_url=url, options=o),
    "recraft": lambda key, url, o: RecraftProvider(key, base_url=url, options=o),
}
# A hosted type's usual credential: the setting, then its environment variables.
_USUAL: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("openai_api_key", ("OPENAI_API_KEY",)),
    "bfl": ("bfl_api_key", ("BFL_API_KEY",)),
    "gemini": ("gemini_api_key", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
    "fal": ("fal_key", ("FAL_KEY",)),
    "replicate": ("replicate_api_token", ("REPLICATE_API_TOKEN",)),
    "recraft": ("recraft_api_token", ("RECRAFT_API_TOKEN",)),
}


def credential(
    endpoint: Endpoint, settings: Settings, env: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The endpoint's key, or None and what to set for it."""
    if endpoint.api_key:
        return endpoint.api_key, None
    if endpoint.api_key_env:
        value = env.get(endpoint.api_key_env)
        return (value, None) if value else (None, f"set {endpoint.api_key_env}")
    usual = _USUAL.get(endpoint.type)
    if usual is None:
        return None, None  # a self-hosted server without a key
    setting, names = usual
    explicit = getattr(settings, setting)
    if explicit is not None and explicit.get_secret_value():
        return explicit.get_secret_value(), None
    for name in names:
        if env.get(name):
            return env[name], None
    hint = f"set the route's api_key_env, IMAGEGATE_{setting.upper()}" + "".join(
        f" or {n}" for n in names
    )
    return None, hint


def build(
    endpoint: Endpoint,
    settings: Settings,
    options: AdapterOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Provider | None, str | None]:
    """The endpoint's adapter, or None and what would configure it."""
    env = os.environ if env is None else env
    options = options or AdapterOptions.from_settings(settings)
    key, missing = credential(endpoint, settings, env)
    if missing is not None:
        return None, missing
    assert endpoint.base_url is not None, "the loader requires a base URL"
    if endpoint.type == "openai_compatible":
        adapter: Provider = OpenAICompatibleProvider(
            key, base_url=endpoint.base_url, options=options, name=endpoint.name
        )
        return adapter, None
    assert key is not None
    adapter = _BUILDERS[endpoint.type](key, endpoint.base_url, options)
    adapter.name = endpoint.name  # registered, and named in errors, as the route's own
    return adapter, None


def register_endpoints(
    registry: ProviderRegistry,
    endpoints: Mapping[str, Endpoint],
    settings: Settings,
    options: AdapterOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Register every endpoint's adapter (local ones excepted) not registered yet."""
    present = set(registry.names())
    for name, endpoint in endpoints.items():
        if name in present:
            continue
        if endpoint.type == "local":
            registry.register_elsewhere(
                name, f"run `imagegate worker --local MODEL_DIR --local-name {name}` beside it"
            )
            continue
        adapter, missing = build(endpoint, settings, options, env)
        if adapter is not None:
            registry.register(adapter)
        elif missing is not None:
            registry.register_missing(name, missing)
