"""Settings → Image models: which models members may use, the default, prices, the guide.

Every rule lives in :mod:`imagegate.services.workspace`; this page shows the state the
admin API lists (the same rows, locks and warnings) and sends the same changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.admin import _listing
from imagegate.errors import ImagegateError
from imagegate.gateway import Gateway
from imagegate.services import workspace
from imagegate.services.accounts import SignedIn
from imagegate.web import flash
from imagegate.web.render import page
from imagegate.web.session import Admin, AdminForm, text

router = APIRouter(include_in_schema=False)

REGION_LABELS = {"eu": "EU", "us": "US", "global": "Global"}


def guide(gateway: Gateway, enabled: frozenset[str] | set[str]) -> list[dict[str, Any]]:
    """'Which model when', from the same advice that ``model: "auto"`` follows."""
    rows = []
    for use_case, advice in gateway.catalog.choices.use_cases.items():
        models = []
        for slug in advice.models:
            model = gateway.catalog.resolve(slug)
            if model is not None:
                models.append({"slug": model.slug, "name": model.name, "enabled": slug in enabled})
        rows.append(
            {
                "use_case": use_case,
                "description": advice.description,
                "region": advice.region,
                "models": models,
            }
        )
    return rows


def _price(eur: str) -> str:
    """'0.0480' → '€0.048' (at least two decimals, no trailing zeros beyond)."""
    whole, _, cents = eur.partition(".")
    cents = cents.rstrip("0").ljust(2, "0")
    return f"€{whole}.{cents}"


async def _render(
    request: Request,
    user: SignedIn,
    *,
    error: str | None = None,
    replacing: str | None = None,
    status_code: int = 200,
) -> Response:
    gateway: Gateway = request.app.state.gateway
    async with gateway.db.read_session() as session:
        state = await workspace.governance(session, user.principal.workspace_id)
    listing = _listing(gateway, state)
    names = {model.slug: model.name for model in gateway.catalog}
    for provider in listing["providers"]:
        if provider["name"] == provider["id"] and provider["models"]:
            first = gateway.catalog.resolve(provider["models"][0]["id"])
            provider["name"] = (first.provider_name if first else "") or provider["name"]
        for row in provider["models"]:
            model = gateway.catalog.resolve(row["id"])
            assert model is not None
            row["regions"] = [(r, REGION_LABELS.get(r, r)) for r in model.regions]
            row["price_text"] = _price(row["price"]["eur"])
            row["replacement_name"] = names.get(row["replacement"] or "", row["replacement"])
    enabled = [(slug, names.get(slug, slug)) for slug in listing["enabled_models"]]
    response = page(
        request,
        "image_models.html",
        user,
        status_code=status_code,
        listing=listing,
        enabled=enabled,
        default_name=names.get(listing["default_model"] or ""),
        guide=guide(gateway, state.enabled),
        error=error,
        replacing=replacing or listing["default_model"],
        replacing_open=replacing is not None,
        notice=flash.notice(request),
    )
    flash.take(request, response)
    return response


@router.get("/settings/image-models")
async def image_models(request: Request, user: Admin) -> Response:
    return await _render(request, user)


def _name(gateway: Gateway, slug: str | None) -> str:
    model = gateway.catalog.resolve(slug) if slug else None
    return model.name if model else str(slug)


@router.post("/settings/image-models/default")
async def set_default(request: Request, user: Admin, form: AdminForm) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        async with gateway.db.session() as session:
            change = await workspace.set_default_model(
                session, gateway.catalog, user.principal, text(form, "model")
            )
    except ImagegateError as exc:
        return await _render(request, user, error=exc.message, status_code=exc.status_code)
    notice = f"{_name(gateway, change.after['default_model'])} is now the default model."
    return flash.redirect(request, "/settings/image-models", notice if change.changed else None)


@router.post("/settings/image-models/{slug}")
async def toggle(request: Request, slug: str, user: Admin, form: AdminForm) -> Response:
    gateway: Gateway = request.app.state.gateway
    enabled = text(form, "enabled") == "true"
    replacement = text(form, "replacement") or None
    try:
        async with gateway.db.session() as session:
            change = await workspace.set_model_enabled(
                session, gateway.catalog, user.principal, slug, enabled, replacement
            )
    except ImagegateError as exc:
        if exc.code == "default_model_requires_replacement":
            return await _render(request, user, replacing=slug, status_code=exc.status_code)
        return await _render(request, user, error=exc.message, status_code=exc.status_code)
    name = _name(gateway, slug)
    notice = f"{name} is {'enabled' if enabled else 'disabled'}."
    before, after = change.before["default_model"], change.after["default_model"]
    if after != before:
        notice += f" {_name(gateway, after)} is now the default model."
    return flash.redirect(
        request, f"/settings/image-models#model-{slug}", notice if change.changed else None
    )
