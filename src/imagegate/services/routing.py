"""Which of a model's routes a request may take.

Every route counts: a model is EU-hosted when one of its routes runs in the EU, the
workspace's region policy and a request's ``use_case`` filter routes (not models), and a
job walks every route left, in catalog order, skipping providers without credentials.
"""

from __future__ import annotations

from collections.abc import Collection

from imagegate.catalog import ModelSpec
from imagegate.catalog.spec import Route

EU = "eu"


def route_region(model: ModelSpec, route: Route) -> str:
    """Where a route runs: its own region, else the model's."""
    return route.region or model.region


def policy_region(region_policy: str) -> str | None:
    """The region every route must run in under a workspace's region policy."""
    return EU if region_policy == "eu_only" else None


def hosting_region(model: ModelSpec) -> str:
    """The model's region flag: ``eu`` when any route runs in the EU, else its own region."""
    if any(route_region(model, route) == EU for route in model.routes):
        return EU
    return model.region


def allowed_routes(model: ModelSpec, *regions: str | None) -> list[Route]:
    """The routes that run in every region given (``None``: no constraint), in order."""
    wanted = {region for region in regions if region is not None}
    return [r for r in model.routes if all(route_region(model, r) == w for w in wanted)]


def region_allows(region_policy: str, model: ModelSpec) -> bool:
    """Whether the region policy leaves the model at least one route."""
    return bool(allowed_routes(model, policy_region(region_policy)))


def servable_routes(
    model: ModelSpec, configured: Collection[str], *regions: str | None
) -> list[Route]:
    """The allowed routes whose provider has credentials on this gateway."""
    return [route for route in allowed_routes(model, *regions) if route.provider in configured]


def is_configured(model: ModelSpec, configured: Collection[str]) -> bool:
    """Whether some route of the model reaches a provider with credentials."""
    return any(route.provider in configured for route in model.routes)
