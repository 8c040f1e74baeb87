"""``/v1/pricing``: the price table, and estimates (dry runs) of any request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.api import schemas
from imagegate.api.common import json_object
from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.api.openapi import AUTHENTICATED, IMAGES_BODY, errors, json_body
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.catalog import ModelSpec, PriceSpec
from imagegate.catalog.pricing import (
    REFERENCE_SIZE,
    Rates,
    describe_rule,
    estimate,
    reference_params,
)
from imagegate.catalog.sizes import output_dimensions
from imagegate.errors import InvalidParameter
from imagegate.gateway import Gateway
from imagegate.services import generation, model_choice
from imagegate.services.keys import Principal
from imagegate.services.workspace import governance
from imagegate.store.tables import Workspace

router = APIRouter(prefix="/v1/pricing", tags=["pricing"], responses=errors(*AUTHENTICATED))

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def credits(millicredits: int) -> int | float:
    """Integer millicredits as a credit amount for JSON (exact for 3 decimals)."""
    whole, rest = divmod(millicredits, 1000)
    return whole if rest == 0 else millicredits / 1000


def euros(micro_eur: int) -> float:
    """Micro-euros as a euro amount for JSON, to a hundredth of a cent."""
    return round(micro_eur / 1_000_000, 4)


def dry_run(request: Request) -> bool:
    """``?dry_run=true``: estimate instead of generating."""
    value = request.query_params.get("dry_run")
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise InvalidParameter(
        f"Invalid value for 'dry_run': {value!r}. Allowed: true, false.", param="dry_run"
    )


async def workspace_rates(session: AsyncSession, gateway: Gateway, workspace_id: str) -> Rates:
    workspace = await session.get(Workspace, workspace_id)
    margin = workspace.margin_percent if workspace is not None else 20
    return Rates(gateway.settings.credit_value_micro_eur, margin)


def model_rates(model: ModelSpec, rates: Rates) -> Rates:
    """The workspace's rates with the operator's margin for this model, where it has one."""
    if model.margin_percent is None:
        return rates
    return Rates(rates.micro_eur_per_credit, model.margin_percent)


def price_at_reference(
    model: ModelSpec, rates: Rates, price: PriceSpec | None = None
) -> dict[str, Any]:
    """One image at the standard 1024x1024 (or the model's nearest 1:1 size)."""
    params = reference_params(model)
    width, height = output_dimensions(model, params)
    if price is not None:
        model = model.model_copy(update={"price": price})
    cost = estimate(model, params, 1, width, height)
    return {
        "width": width,
        "height": height,
        "credits": credits(cost),
        "eur": euros(model_rates(model, rates).micro_eur(cost)),
    }


def price_set_by(model: ModelSpec, sources: dict[str, str]) -> str:
    """Who chose the rule in force: the catalog, the operator's overlay, or the setting."""
    if "price" in sources or (
        "price_source" in sources and "IMAGEGATE" not in sources["price_source"]
    ):
        return "operator overlay"
    if "price_source" in sources:
        return "IMAGEGATE_PRICE_SOURCES"
    if "replaces" in sources.get("entry", ""):
        return "operator overlay"
    return "catalog"


def price_object(
    model: ModelSpec, rates: Rates, sources: dict[str, str] | None = None
) -> dict[str, Any]:
    price = model.price
    return {
        "rule": price.rule,
        "currency": price.currency,
        "description": describe_rule(price),
        "source": price.source,
        "price_source": model.price_source or "default",
        "set_by": price_set_by(model, sources or {}),
        "margin_percent": model_rates(model, rates).margin_percent,
        "per_image_1024": price_at_reference(model, rates),
        "alternatives": {
            key: {
                "description": describe_rule(alt),
                "source": alt.source,
                "per_image_1024": price_at_reference(model, rates, alt),
            }
            for key, alt in model.prices.items()
            if key != model.price_source
        },
    }


async def estimate_response(
    gateway: Gateway, member: Principal, body: dict[str, Any]
) -> JSONResponse:
    """What the request would cost and yield, without generating anything."""
    body = {k: v for k, v in body.items() if k not in ("idempotency_key", "webhook_url")}
    async with gateway.db.session() as session:
        choice = await model_choice.choose_model(session, gateway.catalog, member, body)
        model = choice.model
        if not member.is_admin:
            await model_choice.check_usable(session, member, model)
        region = generation.preferred_region(gateway.catalog, body)
        plan = generation.plan_openai(model, body, region=region)
        if not plan.mock:
            state = await governance(session, member.workspace_id)
            plan = generation.route_plan(plan, state.region_policy, None)
        rates = model_rates(model, await workspace_rates(session, gateway, member.workspace_id))
    notices = [*choice.notices, *plan.notices]
    payload = {
        "object": "estimate",
        "dry_run": True,
        "model": model.slug,
        "provider": plan.provider,
        "region": plan.route.region if plan.route else None,
        "status": model.status,
        "replacement": model.replacement,
        "params": plan.params,
        "n": plan.n,
        "width": plan.width,
        "height": plan.height,
        "output_format": plan.output_format,
        "estimated_cost": credits(plan.estimated_cost),
        "estimated_cost_eur": euros(rates.micro_eur(plan.estimated_cost)),
        "margin_percent": rates.margin_percent,
        "price": {
            "rule": model.price.rule,
            "description": describe_rule(model.price),
            "source": model.price.source,
        },
        "notices": notices,
    }
    headers = generation.deprecation_headers(model, notices)
    return JSONResponse(payload, headers=headers)


@router.get("", response_model=None, responses=ok(schemas.PriceTable))
async def price_table(
    member: CurrentMember, gateway: GatewayDep, session: Session
) -> dict[str, Any]:
    """Every model's price rule and its price per image at 1024x1024, in credits and EUR."""
    rates = await workspace_rates(session, gateway, member.workspace_id)
    enabled = await model_choice.enabled_models(session, member.workspace_id)
    data = [
        {
            "model": model.slug,
            "name": model.name,
            "provider": model.provider,
            "tier": model.tier,
            "premium": model.premium,
            "status": model.status,
            "safety_filter": model.safety_filter,
            "enabled": model.slug in enabled,
            **price_object(model, rates, gateway.catalog.sources.get(model.slug)),
        }
        for model in gateway.catalog
    ]
    return {
        "object": "list",
        "reference_size": f"{REFERENCE_SIZE[0]}x{REFERENCE_SIZE[1]}",
        "credits_per_usd": gateway.settings.credits_per_usd,
        "credit_value_eur": gateway.settings.credit_value_micro_eur / 1_000_000,
        "margin_percent": rates.margin_percent,
        "price_sources": gateway.settings.price_sources,
        "rule": (
            "Prices stated in USD become credits at credits_per_usd; EUR prices are "
            "credits x credit_value_eur x (100 + margin_percent) / 100, with the model's own "
            "margin_percent where the operator set one. price_source names which of a "
            "model's published prices is in force (alternatives lists the others); set_by "
            "says who chose it."
        ),
        "data": data,
    }


@router.post(
    "/estimate",
    response_model=None,
    responses={**ok(schemas.Estimate), **errors(403, 404)},
    openapi_extra=json_body(IMAGES_BODY),
)
async def estimate_request(
    request: Request, member: CurrentMember, gateway: GatewayDep
) -> JSONResponse:
    """The same body as POST /v1/images/generations; returns the estimate, generates nothing."""
    body = await json_object(request)
    return await estimate_response(gateway, member, body)
