"""Reads the catalog data files and answers lookups by slug or alias."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from imagegate.catalog.spec import ModelSpec


class CatalogError(ValueError):
    """A data file is malformed; the message names the file and the model."""


class Catalog:
    def __init__(self, models: Iterable[ModelSpec]) -> None:
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


def _parse_file(path: Path | Any, name: str) -> list[ModelSpec]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    provider = data.get("provider")
    models = []
    for entry in data.get("models", []):
        entry = {"provider": provider, **entry}
        try:
            models.append(ModelSpec.model_validate(entry))
        except ValueError as exc:
            raise CatalogError(f"{name}: {entry.get('slug', '?')}: {exc}") from exc
    return models


def load_catalog(extra_dirs: Iterable[Path] = ()) -> Catalog:
    """The built-in data files plus any operator-supplied directories."""
    models: list[ModelSpec] = []
    data = resources.files("imagegate.catalog") / "data"
    for item in sorted(data.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            models.extend(_parse_file(item, item.name))
    for directory in extra_dirs:
        for path in sorted(directory.glob("*.yaml")):
            models.extend(_parse_file(path, str(path)))
    return Catalog(models)
