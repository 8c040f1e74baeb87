"""``imagegate models --source``: which value of each model came from which file and line."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from imagegate.catalog import Catalog, ModelSpec, load_catalog
from imagegate.catalog.pricing import describe_rule
from imagegate.config import Settings


def _value(model: ModelSpec, field: str) -> str:
    if field == "entry":
        return model.name
    if field == "price":
        return describe_rule(model.price)
    if field == "routes":
        return ", ".join(f"{r.provider}: {r.upstream_id}" for r in model.routes)
    value: Any = getattr(model, field, None)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def load(settings: Settings) -> Catalog:
    return load_catalog(
        settings.catalog_dirs,
        credits_per_usd=settings.credits_per_usd,
        price_sources=settings.price_sources,
    )


def print_sources(catalog: Catalog, out: Console) -> None:
    """Each model with the file and line of its entry, then each field that an overlay
    (or a setting, or the arena snapshot) set, with where it came from."""
    for model in catalog:
        sources = catalog.sources.get(model.slug, {})
        out.print(f"{model.slug}  {sources.get('entry', '')}", markup=False, highlight=False)
        for field, origin in sources.items():
            if field != "entry":
                line = f"  {field}: {_value(model, field)}  <- {origin}"
                out.print(line, markup=False, highlight=False, soft_wrap=True)
    for endpoint in catalog.endpoints.values():
        if endpoint.api_key_env:
            key = f"key from ${endpoint.api_key_env}"
        else:
            key = "key in the file" if endpoint.api_key else "no key of its own"
        out.print(
            f"provider {endpoint.name}: {endpoint.type} at {endpoint.base_url or 'a local runner'}"
            f", {key}  <- {endpoint.origin}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if catalog.hidden:
        out.print(f"hidden: {', '.join(sorted(catalog.hidden))}", markup=False, highlight=False)
