"""The operator's catalog overlays: files that add models and routes, change single fields
of shipped models, re-price and hide them. Each value remembers the file and line it came
from, and every error names the file, the line and the field.

An overlay file (any ``*.yaml`` in a directory of ``IMAGEGATE_CATALOG_DIRS``) may hold:

``models``       full entries, as in the shipped data files: new models, or a shipped
                 slug's whole entry replaced;
``change``       slug (or alias) -> fields to set on a model: ``price`` (a rule, or a
                 number of credits per image), ``price_source``, ``margin_percent``,
                 ``status``, ``tier``, ``stars``, ... ;
``add_routes``   slug -> routes appended to the model's own;
``hide``         slugs (or aliases) to leave out of the catalog;
``provider``,    defaults for the ``models`` entries, as in the shipped files;
``provider_name``
``x-...``        anything (YAML anchors to reuse).

A route may carry its own ``base_url`` and credential (``api_key_env`` names an
environment variable, ``api_key`` holds the key itself); it then gets a provider of its
own (an :class:`Endpoint`), named by ``name`` or after the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagegate.catalog.spec import ModelSpec, Region
from imagegate.catalog.yamlpos import Located

# Adapter types a route with its own base URL may name.
ENDPOINT_TYPES = (
    "openai_compatible", "openai", "bfl", "gemini", "fal", "replicate", "recraft", "local",
)  # fmt: skip
# Routes of these types reach servers the operator runs: no provider safety filter.
SELF_HOSTED_TYPES = frozenset({"openai_compatible", "local"})
SECTIONS = ("models", "change", "add_routes", "hide", "provider", "provider_name")
# Fields a change may not set: the slug is the key, routes are added with add_routes.
UNCHANGEABLE = frozenset({"slug", "routes"})
MAX_PROVIDER_NAME = 50  # jobs.provider


class CatalogError(ValueError):
    """A data or overlay file is malformed; the message names the file, line and field."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A provider of a route's own: an adapter type at its own base URL and credential."""

    name: str
    type: str
    base_url: str | None
    origin: str
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def self_hosted(self) -> bool:
        return self.type in SELF_HOSTED_TYPES


class RouteEntry(BaseModel):
    """A route as an overlay writes it."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    upstream_id: str
    region: Region | None = None
    name: str | None = Field(default=None, min_length=1, max_length=MAX_PROVIDER_NAME)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key: str | None = None

    @property
    def own_endpoint(self) -> bool:
        return (
            self.base_url is not None
            or self.provider in SELF_HOSTED_TYPES
            or self.name is not None
            or self.api_key_env is not None
            or self.api_key is not None
        )


def describe_errors(exc: ValidationError, located: Located, prefix: tuple[str | int, ...]) -> str:
    """A pydantic error as ``file:line: field: message`` lines."""
    lines = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _is_tag(part))
        path = (*prefix, *loc)
        name = ".".join(str(p) for p in loc) or str(prefix[-1] if prefix else "entry")
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{located.where(path)}: {name}: {message}")
    return "\n".join(lines)


def _is_tag(part: Any) -> bool:
    # pydantic names union members and conversions in locations; they are not fields.
    return isinstance(part, str) and (
        part.startswith(("function-", "literal[", "tagged-union")) or part in ("str", "int")
    )


def fail(located: Located, path: tuple[str | int, ...], message: str) -> CatalogError:
    return CatalogError(f"{located.where(path)}: {'.'.join(map(str, path))}: {message}")


@dataclass
class Entry:
    """A model's raw data while the catalog is assembled, and where each field came from."""

    data: dict[str, Any]
    located: Located
    path: tuple[str | int, ...]
    sources: dict[str, str]
    # Set by the operator (an overlay's price or price_source): IMAGEGATE_PRICE_SOURCES
    # does not apply to it.
    priced_by_operator: bool = False


class Assembly:
    """The catalog being assembled: shipped entries, then each overlay file in order."""

    def __init__(self, credits_per_usd: int) -> None:
        self.credits_per_usd = credits_per_usd
        self.entries: dict[str, Entry] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.hidden: set[str] = set()

    # ---- lookups ----------------------------------------------------------------------

    def slug_of(self, name: str) -> str | None:
        if name in self.entries:
            return name
        for slug, entry in self.entries.items():
            if name in (entry.data.get("aliases") or []):
                return slug
        return None

    def validate(
        self, entry: Entry, blame: tuple[Located, tuple[str | int, ...]] | None = None
    ) -> ModelSpec:
        """The entry as a model; errors point at ``blame`` (a file and a path in it; default:
        the entry's own place)."""
        try:
            return ModelSpec.model_validate(self._priced(entry.data))
        except ValidationError as exc:
            located, prefix = blame if blame is not None else (entry.located, entry.path)
            raise CatalogError(describe_errors(exc, located, prefix)) from None

    def _priced(self, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        rate = {"credits_per_usd": self.credits_per_usd}
        if isinstance(data.get("price"), dict):
            data["price"] = {**data["price"], **rate}
        if isinstance(data.get("prices"), dict):
            data["prices"] = {
                k: {**v, **rate} if isinstance(v, dict) else v for k, v in data["prices"].items()
            }
        return data

    # ---- the shipped data and overlays --------------------------------------------------

    def add_file(self, located: Located, *, overlay: bool) -> None:
        data = located.data
        if data is None:
            return
        if not isinstance(data, dict):
            raise fail(located, (), "expected a mapping of sections")
        if overlay:
            for key in data:
                if key not in SECTIONS and not str(key).startswith("x-"):
                    raise fail(
                        located,
                        (key,),
                        f"unknown section; expected one of {', '.join(SECTIONS)} (or x-...)",
                    )
        defaults = {
            "provider": data.get("provider"),
            "provider_name": data.get("provider_name", ""),
        }
        models = data.get("models") or []
        if not isinstance(models, list):
            raise fail(located, ("models",), "expected a list of model entries")
        for index, raw in enumerate(models):
            self._add_model(located, index, {**defaults, **raw}, overlay=overlay)
        if overlay:
            self._change(located, data.get("change") or {})
            self._add_routes(located, data.get("add_routes") or {})
            self._hide(located, data.get("hide") or [])

    def _add_model(
        self, located: Located, index: int, raw: dict[str, Any], *, overlay: bool
    ) -> None:
        path: tuple[str | int, ...] = ("models", index)
        slug = raw.get("slug")
        if not isinstance(slug, str) or not slug:
            raise fail(located, path, "an entry needs a slug")
        if not overlay and slug in self.entries:
            raise fail(located, (*path, "slug"), f"{slug!r} is defined twice")
        entry = Entry(dict(raw), located, path, {"entry": located.where(path)})
        entry.priced_by_operator = overlay and ("price" in raw or "price_source" in raw)
        if overlay:
            if "price" in raw:
                entry.data["price"] = self._price(located, (*path, "price"), raw["price"])
            entry.data["routes"] = self._routes(located, (*path, "routes"), slug, raw.get("routes"))
            if "safety_filter" not in raw and self._all_self_hosted(entry.data["routes"]):
                entry.data["safety_filter"] = False
                entry.sources["safety_filter"] = entry.sources["entry"] + " (self-hosted routes)"
            if slug in self.entries:
                entry.sources["entry"] += " (replaces the shipped entry)"
            self.validate(entry)  # shipped entries are validated once, at the end
        self.entries[slug] = entry

    def _all_self_hosted(self, routes: Any) -> bool:
        providers = [r.get("provider") for r in routes or [] if isinstance(r, dict)]
        return bool(providers) and all(
            p in self.endpoints and self.endpoints[p].self_hosted for p in providers
        )

    def _routes(
        self, located: Located, path: tuple[str | int, ...], slug: str, routes: Any
    ) -> list[Any]:
        if not isinstance(routes, list):
            return routes  # type: ignore[no-any-return]  # the model's validation says what is wrong
        return [
            self._route(located, (*path, i), slug, raw) if isinstance(raw, dict) else raw
            for i, raw in enumerate(routes)
        ]

    def _route(
        self, located: Located, path: tuple[str | int, ...], slug: str, raw: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            route = RouteEntry.model_validate(raw)
        except ValidationError as exc:
            raise CatalogError(describe_errors(exc, located, path)) from None
        if not route.own_endpoint:
            return route.model_dump(include={"provider", "upstream_id", "region"})
        if route.provider not in ENDPOINT_TYPES:
            raise fail(
                located,
                (*path, "provider"),
                f"{route.provider!r} cannot take a base URL; one of {', '.join(ENDPOINT_TYPES)}",
            )
        if route.base_url is None and route.provider != "local":
            raise fail(located, (*path, "base_url"), "a route of its own needs a base_url")
        name = route.name or self._endpoint_name(route.provider, slug)
        if route.name is None and route.provider == "local" and "local" not in self.endpoints:
            name = "local"  # the local runner's default name (imagegate worker --local)
        if name in self.endpoints:
            raise fail(located, (*path, "name"), f"the provider name {name!r} is taken")
        self.endpoints[name] = Endpoint(
            name=name,
            type=route.provider,
            base_url=route.base_url.rstrip("/") if route.base_url else None,
            origin=located.where(path),
            api_key_env=route.api_key_env,
            api_key=route.api_key,
        )
        return {"provider": name, "upstream_id": route.upstream_id, "region": route.region}

    def _endpoint_name(self, kind: str, slug: str) -> str:
        base = f"{kind}:{slug}"[:MAX_PROVIDER_NAME]
        name, n = base, 1
        while name in self.endpoints:
            n += 1
            name = f"{base[: MAX_PROVIDER_NAME - 4]}#{n}"
        return name

    def _named(self, located: Located, path: tuple[str | int, ...], name: Any) -> Entry:
        slug = self.slug_of(name) if isinstance(name, str) else None
        if slug is None:
            raise fail(located, path, f"unknown model {name!r}")
        return self.entries[slug]

    def _change(self, located: Located, changes: Any) -> None:
        if not isinstance(changes, dict):
            raise fail(located, ("change",), "expected a mapping of model -> fields")
        for name, fields in changes.items():
            path: tuple[str | int, ...] = ("change", name)
            entry = self._named(located, path, name)
            if not isinstance(fields, dict) or not fields:
                raise fail(located, path, "expected a mapping of fields to set")
            before = entry.data
            data = dict(before)
            for key, value in fields.items():
                if key in UNCHANGEABLE:
                    hint = " (use add_routes)" if key == "routes" else ""
                    raise fail(located, (*path, key), f"cannot be changed{hint}")
                if key not in ModelSpec.model_fields:
                    raise fail(located, (*path, key), "not a field of a model entry")
                if key == "price":
                    value = self._price(located, (*path, key), value)
                    data.pop("price_source", None)
                data[key] = value
                entry.sources[key] = located.where((*path, key))
            if "price_source" in fields:
                self._check_price_source(located, (*path, "price_source"), data)
            entry.data = data
            entry.priced_by_operator |= "price" in fields or "price_source" in fields
            self.validate(entry, blame=(located, path))

    def _price(self, located: Located, path: tuple[str | int, ...], value: Any) -> Any:
        """A price as an overlay may write it: a number of credits per image, or a rule."""
        where = located.where(path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"rule": "per_image", "amount": value, "source": f"operator price ({where})"}
        if isinstance(value, dict) and "source" not in value:
            return {**value, "source": f"operator price ({where})"}
        return value

    def _check_price_source(
        self, located: Located, path: tuple[str | int, ...], data: dict[str, Any]
    ) -> None:
        key = data.get("price_source")
        known = sorted((data.get("prices") or {}).keys())
        if key is not None and key not in known:
            offered = ", ".join(known) if known else "none (the model has one price)"
            raise fail(located, path, f"unknown price source {key!r}; this model has {offered}")

    def _add_routes(self, located: Located, additions: Any) -> None:
        if not isinstance(additions, dict):
            raise fail(located, ("add_routes",), "expected a mapping of model -> routes")
        for name, routes in additions.items():
            path: tuple[str | int, ...] = ("add_routes", name)
            entry = self._named(located, path, name)
            if not isinstance(routes, list) or not routes:
                raise fail(located, path, "expected a list of routes")
            added = self._routes(located, path, entry.data["slug"], routes)
            entry.data = {**entry.data, "routes": [*entry.data["routes"], *added]}
            entry.sources.setdefault("routes", "")
            entry.sources["routes"] = ", ".join(
                s for s in (entry.sources["routes"], located.where(path)) if s
            )
            self.validate(entry, blame=(located, path))

    def _hide(self, located: Located, names: Any) -> None:
        if not isinstance(names, list):
            raise fail(located, ("hide",), "expected a list of model slugs")
        for index, name in enumerate(names):
            entry = self._named(located, ("hide", index), name)
            slug = entry.data["slug"]
            self.hidden.update([slug, *(entry.data.get("aliases") or [])])
            del self.entries[slug]

    # ---- the end ------------------------------------------------------------------------

    def price_sources(self, preference: Iterable[str]) -> None:
        """Put in force, for every model not priced by an overlay, the first source of
        ``preference`` that the model has (``IMAGEGATE_PRICE_SOURCES``)."""
        order = list(preference)
        for entry in self.entries.values():
            if entry.priced_by_operator or not order:
                continue
            prices = entry.data.get("prices") or {}
            key = next((k for k in order if k in prices), None)
            if key is not None:
                entry.data = {**entry.data, "price_source": key}
                entry.sources["price_source"] = "IMAGEGATE_PRICE_SOURCES"

    def models(self) -> list[ModelSpec]:
        models = []
        for entry in self.entries.values():
            data = entry.data
            key = data.get("price_source")
            if key is not None:
                prices = dict(data.get("prices") or {})
                if key not in prices:
                    raise CatalogError(
                        f"{entry.sources['entry']}: price_source: {key!r} is not among the "
                        f"model's prices ({', '.join(sorted(prices)) or 'none'})"
                    )
                # The shipped choice stays on offer as "default".
                prices.setdefault("default", data["price"])
                data = {**data, "price": prices[key], "prices": prices}
            try:
                models.append(ModelSpec.model_validate(self._priced(data)))
            except ValidationError as exc:
                raise CatalogError(describe_errors(exc, entry.located, entry.path)) from None
        return models

    def sources(self) -> dict[str, dict[str, str]]:
        return {slug: dict(entry.sources) for slug, entry in self.entries.items()}
