"""``/v1/models``: the catalog as the caller may use it."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.api import schemas
from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.api.openapi import AUTHENTICATED, errors
from imagegate.api.pricing import price_object, workspace_rates
from imagegate.api.schemas import ok
from imagegate.catalog import ModelSpec
from imagegate.catalog.arena import Arena
from imagegate.catalog.pricing import Rates
from imagegate.catalog.schema import json_schema
from imagegate.catalog.sizes import aspect_ratios
from imagegate.catalog.spec import Action, Region, Status
from imagegate.errors import InvalidParameter, NotFound
from imagegate.services import routing
from imagegate.services.model_choice import enabled_models
from imagegate.store.tables import Workspace

router = APIRouter(prefix="/v1", tags=["models"], responses=errors(*AUTHENTICATED))

CREATED = 1_700_000_000  # catalog entries carry no creation time; a fixed one keeps lists stable
CAPABILITIES = [*get_args(Action), "vector", "reference_images"]
REGIONS = list(get_args(Region))
STATUSES = list(get_args(Status))
MODALITIES = ["image"]


def allowed_params(model: ModelSpec) -> dict[str, Any]:
    sizes = model.sizes
    allowed: dict[str, Any] = {
        "supported_sizes": sizes.supported_sizes(),
        "aspect_ratios": aspect_ratios(sizes),
        "output_formats": model.output_formats,
    }
    if sizes.style == "preset":
        allowed["image_size_presets"] = list(sizes.options)
    if sizes.custom is not None:
        allowed["custom_size"] = sizes.custom.model_dump(exclude_none=True, exclude={"scale"})
    if sizes.resolution_field is not None:
        allowed["resolutions"] = list(sizes.resolution_scale)
    if model.count_field is not None:
        spec = model.params[model.count_field]
        allowed["max_images"] = int(spec.maximum) if spec.maximum is not None else 1
    else:
        allowed["max_images"] = 1
    if model.limits.references is not None:
        allowed["max_reference_images"] = model.limits.references.max
    return allowed


def quality(model: ModelSpec, arena: Arena | None) -> dict[str, Any]:
    """The model's stars with their source and date, or ``not rated``."""
    if arena is not None:
        return arena.quality([model.slug, *model.aliases])
    label = f"{model.stars} of 5" if model.stars else "not rated"
    return {"stars": model.stars, "label": label}


def model_object(
    model: ModelSpec, enabled: bool, default: bool, rates: Rates, arena: Arena | None = None
) -> dict[str, Any]:
    return {
        "id": model.slug,
        "object": "model",
        "created": CREATED,
        "owned_by": model.provider,
        "name": model.name,
        "provider": model.provider,
        "provider_name": model.provider_name,
        "description": model.description,
        "aliases": model.aliases,
        "modality": model.modality,
        "capabilities": model.capabilities,
        "status": model.status,
        "deprecated": model.status in ("deprecated", "legacy"),
        "preview": model.status == "preview",
        "replacement": model.replacement,
        "region": routing.hosting_region(model),
        "regions": model.regions,
        "routes": [route.model_dump() for route in model.routes],
        "tier": model.tier,
        "premium": model.premium,
        "reference_images": model.reference_images,
        "stars": model.stars,
        "quality": quality(model, arena),
        "safety_filter": model.safety_filter,
        "mode": model.mode,
        "enabled": enabled,
        "default": default,
        "allowedParams": allowed_params(model),
        "pricing": price_object(model, rates),
    }


def _check(value: str | None, allowed: list[str], param: str) -> None:
    if value is not None and value not in allowed:
        raise InvalidParameter(
            f"Invalid value for {param!r}: {value!r}. Allowed: {', '.join(allowed)}.", param=param
        )


def _matches(
    model: ModelSpec,
    modality: str | None,
    capability: str | None,
    region: str | None,
    provider: str | None,
    status: str | None,
) -> bool:
    return (
        (modality is None or model.modality == modality)
        and (capability is None or capability in model.capabilities)
        and (region is None or region in model.regions)
        and (provider is None or provider in model.providers)
        and (status is None or model.status == status)
    )


@router.get("/models", response_model=None, responses=ok(schemas.ModelList))
async def list_models(
    member: CurrentMember,
    gateway: GatewayDep,
    session: Session,
    modality: str | None = Query(
        default=None,
        description="Only models of this modality (image).",
        json_schema_extra={"enum": MODALITIES},
    ),
    capability: str | None = Query(
        default=None,
        description="generate, edit, upscale, vector or reference_images.",
        json_schema_extra={"enum": CAPABILITIES},
    ),
    region: str | None = Query(
        default=None,
        description="eu, us or global: models that can run there.",
        json_schema_extra={"enum": REGIONS},
    ),
    provider: str | None = Query(
        default=None,
        description="A maker (openai, bfl, google, …) or a route's provider (fal, …); "
        "the spec lists this gateway's.",
    ),
    status: str | None = Query(
        default=None,
        description="ga, preview, deprecated or legacy.",
        json_schema_extra={"enum": STATUSES},
    ),
    all: bool = Query(default=False, description="Admins: include models not enabled."),
) -> dict[str, Any]:
    _check(modality, MODALITIES, "modality")
    _check(capability, CAPABILITIES, "capability")
    _check(region, REGIONS, "region")
    _check(status, STATUSES, "status")
    providers = sorted({name for model in gateway.catalog for name in model.providers})
    _check(provider, providers, "provider")
    enabled = await enabled_models(session, member.workspace_id)
    default = await _default_model(session, member.workspace_id)
    rates = await workspace_rates(session, gateway, member.workspace_id)
    show_all = all and member.is_admin
    arena = gateway.catalog.arena
    data = [
        model_object(model, model.slug in enabled, model.slug == default, rates, arena)
        for model in gateway.catalog
        if _matches(model, modality, capability, region, provider, status)
        and (show_all or model.slug in enabled)
    ]
    return {"object": "list", "data": data}


@router.get(
    "/models/{slug}", response_model=None, responses={**ok(schemas.ModelDetail), **errors(404)}
)
async def get_model(
    slug: str, member: CurrentMember, gateway: GatewayDep, session: Session
) -> dict[str, Any]:
    model = gateway.catalog.resolve(slug)
    enabled = await enabled_models(session, member.workspace_id)
    if model is None or (model.slug not in enabled and not member.is_admin):
        raise NotFound(f"The model {slug!r} does not exist.", code="model_not_found", param="model")
    default = await _default_model(session, member.workspace_id)
    rates = await workspace_rates(session, gateway, member.workspace_id)
    body = model_object(
        model, model.slug in enabled, model.slug == default, rates, gateway.catalog.arena
    )
    body["input_schema"] = json_schema(model)
    body["limits"] = model.limits.model_dump(exclude_none=True)
    body["provenance"] = model.provenance
    return body


async def _default_model(session: AsyncSession, workspace_id: str) -> str | None:
    workspace = await session.get(Workspace, workspace_id)
    return workspace.default_model if workspace is not None else None
