"""``/v1/admin``: what a workspace admin governs. Admins only; every lookup is scoped to
the caller's workspace. The ``Settings → Image models`` page sits on these endpoints."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagegate.api import schemas
from imagegate.api.common import json_object
from imagegate.api.deps import CurrentAdmin, GatewayDep
from imagegate.api.models import quality
from imagegate.api.openapi import AUTHENTICATED, errors, json_body
from imagegate.api.schemas import ok
from imagegate.catalog import ModelSpec
from imagegate.errors import InvalidParameter, NotFound
from imagegate.gateway import Gateway
from imagegate.services import members, routing, workspace
from imagegate.services.workspace import Governance
from imagegate.store.tables import ApiKey, AuditEvent, Member

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], responses=errors(*AUTHENTICATED, 403, 404, 409)
)

PROVIDER_NAMES = {
    "bfl": "Black Forest Labs",
    "fal": "fal",
    "google": "Google Vertex",
    "mock": "imagegate (built-in placeholders)",
    "openai": "OpenAI",
    "recraft": "Recraft",
    "replicate": "Replicate",
}

# ---- request bodies ----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelToggle(_Body):
    enabled: bool = Field(description="true enables the model, false disables it.")
    replacement: str | None = Field(
        default=None,
        description="When disabling the default model: the enabled model that becomes the default.",
    )


class DefaultModel(_Body):
    model: str = Field(description="An enabled model's slug or alias.")


class SettingsUpdate(_Body):
    image_generation_enabled: bool | None = Field(
        default=None, description="Off: every generation endpoint answers 403."
    )
    billing_mode: Literal["prepaid", "flat", "invoiced"] | None = None
    region_policy: Literal["any", "eu_only"] | None = None
    margin_percent: int | None = Field(default=None, ge=0, le=1000)
    prc_models_allowed: bool | None = Field(
        default=None,
        description="Opt in to models made by PRC-based companies (e.g. qwen-image).",
    )
    unfiltered_models_allowed: bool | None = Field(
        default=None,
        description="Whether members may use models without a provider safety filter "
        "(self-hosted models, safety_filter false in the catalog).",
    )
    replacement: str | None = Field(
        default=None,
        description="When requiring EU hosting disables the default model: the new default.",
    )


class MemberCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "member"] = "member"


class MemberUpdate(_Body):
    role: Literal["admin", "member"]


class KeyCreate(_Body):
    name: str = Field(default="api key", min_length=1, max_length=200)


B = TypeVar("B", bound=_Body)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The body's schema as :func:`_parse` reads it: null only where a field takes it."""
    schema = model.model_json_schema()
    for name, field in schema.get("properties", {}).items():
        options = field.get("anyOf", [])
        if name != "replacement" and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del field["anyOf"]
            field.pop("default", None)
            field.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    return json_body(schema)


async def _parse(request: Request, model: type[B]) -> B:
    """The JSON body as ``model``; a 400 that names the field and what it may be otherwise."""
    body = await json_object(request)
    allowed = list(model.model_fields)
    for name, value in body.items():
        if name not in allowed:
            raise InvalidParameter(
                f"Unknown field {name!r}. Allowed: {', '.join(allowed)}.", param=name
            )
        if value is None and name != "replacement":
            raise InvalidParameter(f"Invalid value for {name!r}: null is not allowed.", param=name)
    for name, value in body.items():
        # 58.0 is the integer 58 in JSON (and in JSON Schema): strict parsing would refuse it.
        takes_int = int in get_args(model.model_fields[name].annotation) or (
            model.model_fields[name].annotation is int
        )
        if takes_int and isinstance(value, float) and value.is_integer():
            body[name] = int(value)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidParameter(
            f"Invalid value for {param!r}: {first['msg']}.", param=param
        ) from None


# ---- image models ------------------------------------------------------------------------


def _price(gateway: Gateway, state: Governance, model: ModelSpec) -> dict[str, Any]:
    millicredits = workspace.reference_price(model)
    margin = state.margin_percent if model.margin_percent is None else model.margin_percent
    eur = workspace.price_eur(millicredits, gateway.settings.credit_value_micro_eur, margin)
    return {
        "size": "1024x1024",
        "credits": millicredits / 1000,
        "eur": str(eur),
        "margin_percent": margin,
    }


def _model_entry(gateway: Gateway, state: Governance, model: ModelSpec) -> dict[str, Any]:
    enabled = model.slug in state.enabled
    default = model.slug == state.default_model
    return {
        "id": model.slug,
        "name": model.name,
        "provider": model.provider,
        "region": routing.hosting_region(model),
        "regions": model.regions,
        # Some route of the model reaches a provider with credentials.
        "configured": routing.is_configured(model, gateway.providers.configured()),
        "premium": model.premium,
        "reference_images": model.reference_images,
        "prc": model.prc,
        "deprecated": model.status in ("deprecated", "legacy"),
        "preview": model.status == "preview",
        "status": model.status,
        "replacement": model.replacement,
        "tier": model.tier,
        "stars": model.stars,
        "quality": quality(model, gateway.catalog.arena),
        "safety_filter": model.safety_filter,
        "price": _price(gateway, state, model),
        "billing": workspace.charge_policy(state.billing_mode, model),
        "enabled": enabled,
        "default": default,
        "allowed_in_region": workspace.region_allows(state.region_policy, model),
        # What the page shows: the last enabled model's toggle is locked, and turning off
        # the default asks for a replacement.
        "locked": enabled and len(state.enabled) == 1,
        "requires_replacement": default,
    }


def _warnings(state: Governance) -> list[dict[str, str]]:
    if state.image_generation_enabled:
        return []
    return [
        {
            "code": "image_generation_disabled",
            "message": "Image generation is turned off in this workspace: members cannot "
            "generate images until it is turned on in the workspace settings.",
            "settings": "/v1/admin/settings",
        }
    ]


def _listing(gateway: Gateway, state: Governance) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for model in gateway.catalog:
        groups.setdefault(model.provider, []).append(_model_entry(gateway, state, model))
    return {
        "object": "image_model_settings",
        "default_model": state.default_model,
        "image_generation_enabled": state.image_generation_enabled,
        "billing_mode": state.billing_mode,
        "region_policy": state.region_policy,
        "margin_percent": state.margin_percent,
        "unfiltered_models_allowed": state.unfiltered_models_allowed,
        "enabled_models": sorted(state.enabled),
        "warnings": _warnings(state),
        "providers": [
            {
                "id": provider,
                "name": PROVIDER_NAMES.get(provider, provider),
                "configured": any(model["configured"] for model in models),
                "models": models,
            }
            for provider, models in groups.items()
        ],
    }


async def _state(gateway: Gateway, admin: CurrentAdmin) -> Governance:
    async with gateway.db.read_session() as session:
        return await workspace.governance(session, admin.workspace_id)


@router.get("/image-models", response_model=None, responses=ok(schemas.ImageModelSettings))
async def list_image_models(admin: CurrentAdmin, gateway: GatewayDep) -> dict[str, Any]:
    """Every catalog model grouped by provider, with what the admin page shows per row."""
    return _listing(gateway, await _state(gateway, admin))


@router.get("/image-models/{slug}", response_model=None, responses=ok(schemas.AdminImageModel))
async def get_image_model(slug: str, admin: CurrentAdmin, gateway: GatewayDep) -> dict[str, Any]:
    model = gateway.catalog.resolve(slug)
    if model is None:
        raise NotFound(f"The model {slug!r} does not exist.", code="model_not_found", param="slug")
    return _model_entry(gateway, await _state(gateway, admin), model)


@router.put(
    "/image-models/default",
    response_model=None,
    responses=ok(schemas.DefaultModelChange),
    openapi_extra=_schema(DefaultModel),
)
async def set_default_model(
    request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    """Make an enabled model the default for requests that name none."""
    body = await _parse(request, DefaultModel)
    async with gateway.db.session() as session:
        change = await workspace.set_default_model(session, gateway.catalog, admin, body.model)
    return {
        "default_model": change.after["default_model"],
        "previous_default_model": change.before["default_model"],
        "changed": change.changed,
    }


@router.patch(
    "/image-models/{slug}",
    response_model=None,
    responses=ok(schemas.ModelToggleChange),
    openapi_extra=_schema(ModelToggle),
)
async def toggle_image_model(
    slug: str, request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    """Enable or disable a model; disabling the default needs a ``replacement`` in the body."""
    body = await _parse(request, ModelToggle)
    async with gateway.db.session() as session:
        change = await workspace.set_model_enabled(
            session, gateway.catalog, admin, slug, body.enabled, body.replacement
        )
    model = gateway.catalog.resolve(slug)
    assert model is not None
    state = await _state(gateway, admin)
    return {
        "model": _model_entry(gateway, state, model),
        "default_model": state.default_model,
        "previous_default_model": change.before["default_model"],
        "changed": change.changed,
    }


# ---- settings ----------------------------------------------------------------------------


def _settings(state: Governance) -> dict[str, Any]:
    return {
        "object": "workspace_settings",
        "image_generation_enabled": state.image_generation_enabled,
        "billing_mode": state.billing_mode,
        "region_policy": state.region_policy,
        "margin_percent": state.margin_percent,
        "prc_models_allowed": state.prc_models_allowed,
        "unfiltered_models_allowed": state.unfiltered_models_allowed,
        "default_model": state.default_model,
        "warnings": _warnings(state),
    }


@router.get("/settings", response_model=None, responses=ok(schemas.WorkspaceSettings))
async def get_settings(admin: CurrentAdmin, gateway: GatewayDep) -> dict[str, Any]:
    return _settings(await _state(gateway, admin))


@router.patch(
    "/settings",
    response_model=None,
    responses=ok(schemas.WorkspaceSettings),
    openapi_extra=_schema(SettingsUpdate),
)
async def update_settings(
    request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    body = await _parse(request, SettingsUpdate)
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "replacement"}
    async with gateway.db.session() as session:
        change = await workspace.update_settings(
            session, gateway.catalog, admin, changes, body.replacement
        )
    result = _settings(await _state(gateway, admin))
    result["changed"] = change.changed
    disabled = sorted(
        set(change.before.get("enabled_models", [])) - set(change.after.get("enabled_models", []))
    )
    if disabled:
        result["disabled_models"] = disabled
    return result


# ---- members and keys ------------------------------------------------------------------------


def _member(member: Member, active_keys: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": member.id,
        "object": "member",
        "name": member.name,
        "role": member.role,
        "selected_model": member.selected_model,
        "created_at": int(member.created_at.timestamp()),
    }
    if active_keys is not None:
        body["active_keys"] = active_keys
    return body


def _key(key: ApiKey, member: Member | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "prefix": key.prefix,
        "member_id": key.member_id,
        "created_at": int(key.created_at.timestamp()),
        "revoked_at": int(key.revoked_at.timestamp()) if key.revoked_at else None,
    }
    if member is not None:
        body["member_name"], body["role"] = member.name, member.role
    return body


@router.get("/members", response_model=None, responses=ok(schemas.MemberList))
async def list_members(admin: CurrentAdmin, gateway: GatewayDep) -> dict[str, Any]:
    async with gateway.db.read_session() as session:
        rows = await members.list_members(session, admin.workspace_id)
    return {"object": "list", "data": [_member(member, count) for member, count in rows]}


@router.post(
    "/members",
    status_code=201,
    response_model=None,
    responses=ok(schemas.Member, 201),
    openapi_extra=_schema(MemberCreate),
)
async def create_member(
    request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    body = await _parse(request, MemberCreate)
    async with gateway.db.session() as session:
        member = await members.add_member(session, admin, body.name, body.role)
    return _member(member, 0)


@router.patch(
    "/members/{member_id}",
    response_model=None,
    responses=ok(schemas.Member),
    openapi_extra=_schema(MemberUpdate),
)
async def update_member(
    member_id: str, request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    body = await _parse(request, MemberUpdate)
    async with gateway.db.session() as session:
        change = await members.set_member_role(session, admin, member_id, body.role)
        member = await members.get_member(session, admin.workspace_id, member_id)
    gateway.principals.clear()  # the member's keys now carry the new role
    return _member(member) | {"changed": change.changed}


@router.post(
    "/members/{member_id}/keys",
    status_code=201,
    response_model=None,
    responses=ok(schemas.NewApiKey, 201),
    openapi_extra=_schema(KeyCreate),
)
async def create_key(
    member_id: str, request: Request, admin: CurrentAdmin, gateway: GatewayDep
) -> dict[str, Any]:
    """A new key for a member. The secret is in this response only; it is stored hashed."""
    body = await _parse(request, KeyCreate)
    async with gateway.db.session() as session:
        key, secret = await members.add_key(session, admin, member_id, body.name)
    return _key(key) | {"key": secret}


@router.get("/keys", response_model=None, responses=ok(schemas.ApiKeyList))
async def list_keys(
    admin: CurrentAdmin,
    gateway: GatewayDep,
    member_id: str | None = Query(default=None, description="Only this member's keys."),
) -> dict[str, Any]:
    """Keys with their prefix only; a key's secret is never shown again."""
    async with gateway.db.read_session() as session:
        if member_id is not None:
            await members.get_member(session, admin.workspace_id, member_id)
        rows = await members.list_keys(session, admin.workspace_id, member_id)
    return {"object": "list", "data": [_key(key, member) for key, member in rows]}


@router.post("/keys/{key_id}/revoke", response_model=None, responses=ok(schemas.ApiKey))
async def revoke_key(key_id: str, admin: CurrentAdmin, gateway: GatewayDep) -> dict[str, Any]:
    async with gateway.db.session() as session:
        key, change = await members.revoke_key(session, admin, key_id)
    gateway.principals.clear()  # the key stops working at once
    return _key(key) | {"changed": change.changed}


# ---- audit log -------------------------------------------------------------------------------


def _event(event: AuditEvent, actor_name: str | None) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "audit_event",
        "action": event.action,
        "target": event.target,
        "actor": {
            "member_id": event.actor_member_id,
            "name": actor_name,
            "key_id": event.actor_key_id,
        },
        "before": event.before,
        "after": event.after,
        "created_at": int(event.created_at.timestamp()),
    }


@router.get("/audit", response_model=None, responses=ok(schemas.AuditList))
async def list_audit(
    admin: CurrentAdmin,
    gateway: GatewayDep,
    limit: int = Query(default=50, ge=1, le=500, description="Events per page, newest first."),
    # Event ids are a 32-bit sequence: a larger one names no event (and PostgreSQL would
    # refuse to compare with it).
    before: int | None = Query(
        default=None, ge=1, le=2**31 - 1, description="Page back from this event id."
    ),
) -> dict[str, Any]:
    """Every admin change in this workspace: who, what, before, after, when."""
    async with gateway.db.read_session() as session:
        rows = await workspace.list_audit(session, admin.workspace_id, limit=limit, before=before)
    data = [_event(event, name) for event, name in rows]
    return {
        "object": "list",
        "data": data,
        "has_more": len(data) == limit,
        "next_before": data[-1]["id"] if len(data) == limit else None,
    }
