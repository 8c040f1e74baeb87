"""Reads the catalog data files and answers lookups by slug or alias."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from imagegate.catalog import _yaml
from imagegate.catalog.arena import Arena, load_arena
from imagegate.catalog.choice import Choices, load_choices
from imagegate.catalog.spec import ModelSpec

DEFAULT_CREDITS_PER_USD = 200
# Files in data/ that are not model files.
_SPECIAL = {"arena.yaml", "choice.yaml"}


class CatalogError(ValueError):
    """A data file is malformed; the message names the file and the model."""


class Catalog:
    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        arena: Arena | None = None,
        choices: Choices | None = None,
    ) -> None:
        self._models: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for model in models:
            for name in (model.slug, *model.aliases):
                if name in self._names:
                    raise CatalogError(f"{name!r} names both {self._names[name]} and {model.slug}")
                self._names[name] = model.slug
            self._models[model.slug] = model
        for model in self._models.values():
            if model.replacement is not None and model.replacement not in self._names:
                raise CatalogError(f"{model.slug}: replacement {model.replacement!r} is unknown")
        self.arena = arena
        self.choices = choices or Choices()
        for slug in self.choices.slugs():
            if slug not in self._names:
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


def _parse_file(path: Traversable | Path, name: str, credits_per_usd: int) -> list[ModelSpec]:
    data = _yaml.load(path.read_text(encoding="utf-8"))
    defaults = {"provider": data.get("provider"), "provider_name": data.get("provider_name", "")}
    models = []
    for entry in data.get("models", []):
        entry = {**defaults, **entry}
        price: Any = entry.get("price")
        if isinstance(price, dict):
            entry["price"] = {**price, "credits_per_usd": credits_per_usd}
        try:
            models.append(ModelSpec.model_validate(entry))
        except ValueError as exc:
            raise CatalogError(f"{name}: {entry.get('slug', '?')}: {exc}") from exc
    return models


def load_catalog(
    extra_dirs: Iterable[Path] = (), *, credits_per_usd: int = DEFAULT_CREDITS_PER_USD
) -> Catalog:
    """The built-in data files plus any operator-supplied directories.

    Prices stated in US dollars become credits at ``credits_per_usd``; quality stars
    come from the recorded arena snapshot (``data/arena.yaml``).
    """
    models: list[ModelSpec] = []
    data = resources.files("imagegate.catalog") / "data"
    for item in sorted(data.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml") and item.name not in _SPECIAL:
            models.extend(_parse_file(item, item.name, credits_per_usd))
    builtin = {m.slug for m in models}
    for directory in extra_dirs:
        if not directory.is_dir():
            raise CatalogError(f"{directory}: not a directory of catalog files")
        for path in sorted(directory.glob("*.yaml")):
            # An operator's entry with a built-in slug replaces the built-in one (re-pricing).
            extra = _parse_file(path, str(path), credits_per_usd)
            replaced = {m.slug for m in extra} & builtin
            models = [m for m in models if m.slug not in replaced] + extra
    arena = load_arena((data / "arena.yaml").read_text(encoding="utf-8"))
    choices = load_choices((data / "choice.yaml").read_text(encoding="utf-8"))
    names = {name for m in models for name in (m.slug, *m.aliases)}
    unknown = sorted(set(arena.models()) - names)
    if unknown:
        raise CatalogError(f"arena.yaml: unknown models {unknown}")
    stars = arena.stars()
    by_name = {name: m.slug for m in models for name in (m.slug, *m.aliases)}
    filled = {by_name[name]: value for name, value in stars.items()}
    models = [
        m.model_copy(update={"stars": filled[m.slug]}) if m.slug in filled else m for m in models
    ]
    return Catalog(models, arena=arena, choices=choices)
