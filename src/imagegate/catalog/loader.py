"""Reads the catalog data files and answers lookups by slug or alias."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from imagegate.catalog.arena import Arena, load_arena
from imagegate.catalog.choice import Choices, load_choices
from imagegate.catalog.overlay import Assembly, CatalogError, Endpoint
from imagegate.catalog.spec import ModelSpec
from imagegate.catalog.yamlpos import load_located

DEFAULT_CREDITS_PER_USD = 200
# Files in data/ that are not model files.
_SPECIAL = {"arena.yaml", "choice.yaml"}


class Catalog:
    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        arena: Arena | None = None,
        choices: Choices | None = None,
        sources: dict[str, dict[str, str]] | None = None,
        endpoints: dict[str, Endpoint] | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        self._models: dict[str, ModelSpec] = {}
        # Where each model's entry and each field an overlay set came from (file:line).
        self.sources = sources or {}
        # Providers of routes with their own base URL and credential, by provider name.
        self.endpoints = endpoints or {}
        # Names the operator hid: presets and replacements naming them are let be.
        self.hidden = frozenset(hidden)
        self._names: dict[str, str] = {}
        for model in models:
            for name in (model.slug, *model.aliases):
                if name in self._names:
                    raise CatalogError(f"{name!r} names both {self._names[name]} and {model.slug}")
                self._names[name] = model.slug
            self._models[model.slug] = model
        for model in self._models.values():
            if model.replacement is not None and model.replacement not in {
                *self._names,
                *self.hidden,
            }:
                raise CatalogError(f"{model.slug}: replacement {model.replacement!r} is unknown")
        self.arena = arena
        self.choices = choices or Choices()
        for slug in self.choices.slugs():
            if slug not in self._names and slug not in self.hidden:
                raise CatalogError(f"choice.yaml: unknown model {slug!r}")

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def resolve(self, name: str) -> ModelSpec | None:
        """A model by slug or alias."""
        slug = self._names.get(name)
        return self._models[slug] if slug is not None else None

    def slugs(self) -> list[str]:
        return list(self._models)


__all__ = ["Catalog", "CatalogError", "load_catalog"]


def load_catalog(
    extra_dirs: Iterable[Path] = (),
    *,
    credits_per_usd: int = DEFAULT_CREDITS_PER_USD,
    price_sources: Iterable[str] = (),
) -> Catalog:
    """The built-in data files plus the operator's overlays (``docs/catalog.md``).

    Prices stated in US dollars become credits at ``credits_per_usd``; quality stars
    come from the recorded arena snapshot (``data/arena.yaml``) unless an overlay sets
    them; ``price_sources`` names, best first, which of a model's shipped prices to use.
    """
    assembly = Assembly(credits_per_usd)
    data = resources.files("imagegate.catalog") / "data"
    for item in sorted(data.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml") and item.name not in _SPECIAL:
            located = load_located(item.read_text(encoding="utf-8"), f"data/{item.name}")
            assembly.add_file(located, overlay=False)
    arena = load_arena((data / "arena.yaml").read_text(encoding="utf-8"))
    choices = load_choices((data / "choice.yaml").read_text(encoding="utf-8"))
    by_name = {
        name: slug
        for slug, entry in assembly.entries.items()
        for name in (slug, *(entry.data.get("aliases") or []))
    }
    unknown = sorted(set(arena.models()) - set(by_name))
    if unknown:
        raise CatalogError(f"arena.yaml: unknown models {unknown}")
    stars = {by_name[name]: value for name, value in arena.stars().items()}
    for slug, value in stars.items():
        assembly.entries[slug].data["stars"] = value
        assembly.entries[slug].sources["stars"] = "data/arena.yaml"
    for directory in extra_dirs:
        if not directory.is_dir():
            raise CatalogError(f"{directory}: not a directory of catalog files")
        for path in sorted(directory.glob("*.yaml")):
            try:
                located = load_located(path.read_text(encoding="utf-8"), str(path))
            except ValueError as exc:
                raise CatalogError(str(exc)) from None
            replacing = _replaced(assembly, located.data)
            assembly.add_file(located, overlay=True)
            for slug in replacing:  # a replaced entry keeps the arena's stars unless it says
                entry = assembly.entries.get(slug)
                if entry is not None and "stars" not in entry.data and slug in stars:
                    entry.data["stars"] = stars[slug]
    assembly.price_sources(price_sources)
    return Catalog(
        assembly.models(),
        arena=arena,
        choices=choices,
        sources=assembly.sources(),
        endpoints=assembly.endpoints,
        hidden=assembly.hidden,
    )


def _replaced(assembly: Assembly, data: Any) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        return []
    return [
        m["slug"]
        for m in data["models"]
        if isinstance(m, dict) and m.get("slug") in assembly.entries
    ]
