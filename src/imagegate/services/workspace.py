"""Workspace governance: enabled models, the default, settings, members, keys and the audit log.

Every admin change runs in one unit of work that first locks the workspace row
(``SELECT … FOR UPDATE`` on PostgreSQL; a SQLite write transaction already holds the
database's write lock), so concurrent changes to one workspace apply one after another
and each one checks the rules against the state the previous one left. After every
change: at least one model is enabled, and the default is one of the enabled models.

Generation sees a change at once, in every process. A job attempt reads the state
afresh. A submit on PostgreSQL may plan with the state this process last read
(:class:`GovernanceMemo`, no round trip), but its one write statement checks that the
workspace's ``governance_version`` is still the one read, and writes nothing otherwise:
the submit is then planned again on a fresh read. A refusal planned on a remembered state
is never given without a fresh read either.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from cachetools import LRUCache
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.catalog import Catalog, ModelSpec
from imagegate.catalog.pricing import Rates, estimate
from imagegate.errors import Conflict, InvalidParameter, NotFound, PermissionDenied
from imagegate.services import routing
from imagegate.services.keys import Principal
from imagegate.store.db import Database
from imagegate.store.tables import (
    WORKSPACE_MODELS,
    WORKSPACES,
    AuditEvent,
    Member,
    Workspace,
    WorkspaceModel,
    utcnow,
)
from imagegate.store.tx import Tx, as_tx

BILLING_MODES = ("prepaid", "flat", "invoiced")
REGION_POLICIES = ("any", "eu_only")
REFERENCE_SIZE = (1024, 1024)
SETTINGS_FIELDS = (
    "image_generation_enabled",
    "billing_mode",
    "region_policy",
    "margin_percent",
    "prc_models_allowed",
    "unfiltered_models_allowed",
)

ChargePolicy = Literal["charge", "included", "record"]

_SNAPSHOTS = "imagegate.governance"


# ---- pure rules -------------------------------------------------------------------------


def charge_policy(billing_mode: str, model: ModelSpec) -> ChargePolicy:
    """How a generation with ``model`` is billed under ``billing_mode``.

    ``charge``: taken from the workspace's credits (a hold that can be refused);
    ``included``: covered by the flat plan, no credits move;
    ``record``: usage is recorded for the invoice and never blocked.
    """
    if billing_mode == "prepaid":
        return "charge"
    if billing_mode == "flat":
        return "charge" if model.premium else "included"
    if billing_mode == "invoiced":
        return "record"
    raise ValueError(f"unknown billing mode {billing_mode!r}; expected one of {BILLING_MODES}")


def region_allows(region_policy: str, model: ModelSpec) -> bool:
    """Whether the workspace's region policy lets ``model`` be enabled and used: it leaves
    the model at least one route (under ``eu_only``, one that runs in the EU)."""
    return routing.region_allows(region_policy, model)


def reference_price(model: ModelSpec) -> int:
    """Millicredits for one image at 1024x1024 with the model's default parameters."""
    params = {name: spec.default for name, spec in model.params.items() if spec.has_default}
    return estimate(model, params, 1, *REFERENCE_SIZE)


def price_eur(millicredits: int, micro_eur_per_credit: int, margin_percent: int) -> Decimal:
    """A credit amount in euro including the margin, to a hundredth of a cent."""
    micro_eur = Rates(micro_eur_per_credit, margin_percent).micro_eur(millicredits)
    return (Decimal(micro_eur) / 1_000_000).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def first_time_models(catalog: Catalog, configured_providers: list[str]) -> list[str]:
    """The models a new workspace starts with: those a configured provider serves through
    one of their routes, else the mock ones."""
    configured = set(configured_providers) - {"mock"}
    slugs = [
        m.slug
        for m in catalog
        if m.status != "legacy"
        and not m.prc  # these two need the admin's opt-in first
        and m.safety_filter
        and routing.is_configured(m, configured)
        and m.provider != "mock"
    ]
    return slugs or [m.slug for m in catalog if m.provider == "mock"]


def pick_default(catalog: Catalog, slugs: list[str]) -> str | None:
    """A sensible default among ``slugs``: a cheap, released, standard model, best rated first."""
    models = [m for m in (catalog.resolve(s) for s in slugs) if m is not None]
    if not models:
        return None

    def rank(model: ModelSpec) -> tuple[bool, bool, int, int, str]:
        return (
            model.status != "ga",
            model.premium,
            reference_price(model),
            -(model.stars or 0),
            model.slug,
        )

    return min(models, key=rank).slug


# ---- reading the state, as generation sees it --------------------------------------------


@dataclass(frozen=True, slots=True)
class Governance:
    """A workspace's settings and enabled models, as of one moment."""

    workspace_id: str
    default_model: str | None
    enabled: frozenset[str]
    image_generation_enabled: bool
    billing_mode: str
    region_policy: str
    margin_percent: int
    prc_models_allowed: bool = False
    # Members may use models without a provider safety filter (self-hosted ones).
    unfiltered_models_allowed: bool = False
    # The workspace's governance_version as read (see migration 0005).
    version: int = 0


class StaleGovernance(Exception):
    """The workspace's governance changed after the state a submit was planned on was
    read; nothing was written."""


class GovernanceMemo:
    """Workspaces' governance as this process last read it, for submits on PostgreSQL.

    Only for a unit of work whose write checks the version (:func:`generation.submit`):
    a remembered state that went stale costs a second read and plan, never a job that
    the current rules refuse.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._states: LRUCache[str, Governance] = LRUCache(size)

    def recall(self, session: Tx | AsyncSession, workspace_id: str) -> bool:
        """Give ``session`` the remembered state of the workspace, if any: True if it did."""
        state = self._states.get(workspace_id)
        if state is None:
            return False
        snapshots = as_tx(session).info.setdefault(_SNAPSHOTS, {})
        snapshots.setdefault(workspace_id, state)
        return snapshots[workspace_id] is state

    def keep(self, session: Tx | AsyncSession, workspace_id: str) -> None:
        """Remember the state ``session`` read (or was given) for the workspace."""
        state = as_tx(session).info.get(_SNAPSHOTS, {}).get(workspace_id)
        if state is not None:
            self._states[workspace_id] = state

    def forget(self, workspace_id: str) -> None:
        self._states.pop(workspace_id, None)

    def clear(self) -> None:
        self._states.clear()


# Read by submits (see GovernanceMemo) and job attempts: built once (building and keying it
# costs about as much as running it), on the tables, so its rows are plain rows.
_WS, _WM = WORKSPACES.c, WORKSPACE_MODELS.c
_GOVERNANCE = (
    select(
        _WS.default_model,
        _WS.image_generation_enabled,
        _WS.billing_mode,
        _WS.region_policy,
        _WS.margin_percent,
        _WS.prc_models_allowed,
        _WS.unfiltered_models_allowed,
        _WS.governance_version,
        _WM.model,
    )
    .select_from(WORKSPACES)
    .outerjoin(
        WORKSPACE_MODELS,
        (_WM.workspace_id == _WS.id) & _WM.enabled.is_(True),
    )
    .where(_WS.id == bindparam("p_workspace_id"))
)


async def governance(session: Tx | AsyncSession, workspace_id: str) -> Governance:
    """The workspace's state, read in one statement so it is one consistent snapshot.

    Kept for the rest of the transaction so that choosing a model and checking it agree.
    """
    tx = as_tx(session)
    snapshots: dict[str, Governance] = tx.info.setdefault(_SNAPSHOTS, {})
    if workspace_id in snapshots:
        return snapshots[workspace_id]
    rows = (await tx.execute(_GOVERNANCE, {"p_workspace_id": workspace_id})).all()
    if not rows:
        raise NotFound("This workspace no longer exists.", code="workspace_not_found")
    first = rows[0]
    snapshot = Governance(
        workspace_id=workspace_id,
        default_model=first.default_model,
        enabled=frozenset(row.model for row in rows if row.model is not None),
        image_generation_enabled=first.image_generation_enabled,
        billing_mode=first.billing_mode,
        region_policy=first.region_policy,
        margin_percent=first.margin_percent,
        prc_models_allowed=first.prc_models_allowed,
        unfiltered_models_allowed=first.unfiltered_models_allowed,
        version=first.governance_version,
    )
    snapshots[workspace_id] = snapshot
    return snapshot


def usable_models(catalog: Catalog, state: Governance) -> list[str]:
    """The enabled models a member may use now, sorted."""
    return sorted(
        slug
        for slug in state.enabled
        if (model := catalog.resolve(slug)) is not None
        and region_allows(state.region_policy, model)
        and (state.prc_models_allowed or not model.prc)
        and (model.safety_filter or state.unfiltered_models_allowed)
    )


def ensure_generation_enabled(state: Governance) -> None:
    if not state.image_generation_enabled:
        raise PermissionDenied(
            "Image generation is turned off in this workspace. A workspace admin can turn it on "
            'with PATCH /v1/admin/settings {"image_generation_enabled": true}.',
            code="image_generation_disabled",
        )


def ensure_usable(state: Governance, model: ModelSpec, *, mock: bool = False) -> None:
    """Raise unless a member of the workspace may generate with ``model`` right now.

    ``mock``: a free placeholder, which reaches no provider: any model the workspace
    could enable may be used, enabled or not.
    """
    ensure_generation_enabled(state)
    enabled = sorted(state.enabled)
    if not region_allows(state.region_policy, model):
        raise PermissionDenied(
            f"The model {model.slug!r} has no route in the EU; this workspace "
            f"requires EU hosting. Enabled: {', '.join(enabled)}.",
            code="region_not_allowed",
            param="model",
            extra={
                "region": model.region,
                "region_policy": state.region_policy,
                "enabled_models": enabled,
            },
        )
    if model.prc and not state.prc_models_allowed:
        raise prc_opt_in_required(model)
    if not model.safety_filter and not state.unfiltered_models_allowed:
        raise PermissionDenied(
            f"The model {model.slug!r} runs without a provider safety filter (self-hosted), "
            "and this workspace does not allow such models. A workspace admin can allow them "
            'with PATCH /v1/admin/settings {"unfiltered_models_allowed": true}.',
            code="unfiltered_model_not_allowed",
            param="model",
            extra={"safety_filter": False},
        )
    if model.slug not in state.enabled and not mock:
        raise PermissionDenied(
            f"The model {model.slug!r} is not enabled in this workspace. "
            f"Enabled: {', '.join(enabled)}.",
            code="model_not_enabled",
            param="model",
            extra={"enabled_models": enabled},
        )


def prc_opt_in_required(model: ModelSpec) -> PermissionDenied:
    return PermissionDenied(
        f"The model {model.slug!r} is made by a PRC-based company; a workspace admin must "
        'opt in first: PATCH /v1/admin/settings {"prc_models_allowed": true}.',
        code="prc_opt_in_required",
        param="model",
    )


async def check_job_allowed(
    db: Database, catalog: Catalog, workspace_id: str, model_slug: str, *, mock: bool = False
) -> Governance | None:
    """A worker's check before it calls a provider: the rules as they are now, not at
    submit. The state it checked against (None when the model left the catalog)."""
    model = catalog.resolve(model_slug)
    if model is None:
        return None  # the runner reports a model that left the catalog
    async with db.read_session() as session:
        state = await governance(session, workspace_id)
    ensure_usable(state, model, mock=mock)
    return state


# ---- changes ------------------------------------------------------------------------------


async def lock_workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    """The workspace row, locked until the unit of work ends; each governance change starts here."""
    session.info.pop(_SNAPSHOTS, None)
    workspace = (
        await session.execute(
            select(Workspace)
            .where(Workspace.id == workspace_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if workspace is None:
        raise NotFound("This workspace no longer exists.", code="workspace_not_found")
    return workspace


async def record(
    session: AsyncSession,
    actor: Principal | None,
    workspace_id: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEvent:
    event = AuditEvent(
        workspace_id=workspace_id,
        actor_member_id=actor.member_id if actor else None,
        actor_key_id=actor.key_id if actor else None,
        action=action,
        target=target,
        before=before,
        after=after,
    )
    session.add(event)
    await session.flush()
    return event


def _catalog_model(catalog: Catalog, name: str, param: str) -> ModelSpec:
    model = catalog.resolve(name)
    if model is None:
        raise NotFound(
            f"The model {name!r} does not exist. List models with GET /v1/admin/image-models.",
            code="model_not_found",
            param=param,
        )
    return model


async def _model_rows(
    session: AsyncSession, catalog: Catalog, workspace_id: str
) -> dict[str, WorkspaceModel]:
    rows = await session.execute(
        select(WorkspaceModel).where(WorkspaceModel.workspace_id == workspace_id)
    )
    known = set(catalog.slugs())
    return {row.model: row for row in rows.scalars() if row.model in known}


def _enabled(rows: dict[str, WorkspaceModel]) -> set[str]:
    return {slug for slug, row in rows.items() if row.enabled}


def _replacement(
    catalog: Catalog, name: str | None, disabling: set[str], candidates: set[str], what: str
) -> str:
    """The replacement default named in the request, checked against the enabled models left."""
    listed = ", ".join(sorted(candidates)) or "none"
    if name is None:
        raise Conflict(
            f"{what} Name a replacement default among the enabled models in 'replacement': "
            f"{listed}.",
            code="default_model_requires_replacement",
            param="replacement",
            extra={"candidates": sorted(candidates)},
        )
    model = catalog.resolve(name)
    if model is None:
        raise InvalidParameter(
            f"Invalid value for 'replacement': no model {name!r}. Choose one of: {listed}.",
            param="replacement",
            extra={"candidates": sorted(candidates)},
        )
    if model.slug in disabling or model.slug not in candidates:
        raise Conflict(
            f"The replacement {model.slug!r} is not among the enabled models that remain: "
            f"{listed}.",
            code="replacement_not_enabled",
            param="replacement",
            extra={"candidates": sorted(candidates)},
        )
    return model.slug


@dataclass(frozen=True, slots=True)
class Change:
    """What an admin request did: the state before and after, and whether anything changed."""

    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def set_model_enabled(
    session: AsyncSession,
    catalog: Catalog,
    actor: Principal,
    name: str,
    enabled: bool,
    replacement: str | None = None,
) -> Change:
    """Enable or disable a model under the Manage image models rules (see docs/admin.md)."""
    model = _catalog_model(catalog, name, "slug")
    workspace = await lock_workspace(session, actor.workspace_id)
    rows = await _model_rows(session, catalog, workspace.id)
    enabled_now = _enabled(rows)
    before = {"enabled": model.slug in enabled_now, "default_model": workspace.default_model}
    if enabled:
        if replacement is not None:
            raise InvalidParameter(
                "'replacement' only applies when disabling the default model.", param="replacement"
            )
        if model.prc and not workspace.prc_models_allowed:
            raise prc_opt_in_required(model)
        if not region_allows(workspace.region_policy, model):
            raise PermissionDenied(
                f"The model {model.slug!r} has no route in the EU; this workspace "
                "requires EU hosting (region_policy eu_only).",
                code="region_not_allowed",
                param="slug",
                extra={"region": model.region, "region_policy": workspace.region_policy},
            )
        row = rows.get(model.slug)
        if row is None:
            session.add(WorkspaceModel(workspace_id=workspace.id, model=model.slug, enabled=True))
        else:
            row.enabled, row.updated_at = True, utcnow()
        if workspace.default_model is None or workspace.default_model not in enabled_now:
            workspace.default_model = model.slug
    elif model.slug in enabled_now:
        if enabled_now == {model.slug}:
            raise Conflict(
                f"{model.slug!r} is the last enabled model; at least one model must stay enabled. "
                "Enable another model first.",
                code="last_enabled_model",
                param="slug",
            )
        if workspace.default_model == model.slug:
            workspace.default_model = _replacement(
                catalog,
                replacement,
                {model.slug},
                enabled_now - {model.slug},
                f"{model.slug!r} is the default model and cannot be disabled on its own.",
            )
        rows[model.slug].enabled, rows[model.slug].updated_at = False, utcnow()
    after = {"enabled": enabled, "default_model": workspace.default_model}
    change = Change(before, after)
    if change.changed:
        action = "image_model.enabled" if enabled else "image_model.disabled"
        await record(session, actor, workspace.id, action, model.slug, before, after)
    return change


async def set_default_model(
    session: AsyncSession, catalog: Catalog, actor: Principal, name: str
) -> Change:
    """Make an enabled model the default (what requests that name no model get)."""
    model = _catalog_model(catalog, name, "model")
    workspace = await lock_workspace(session, actor.workspace_id)
    enabled_now = _enabled(await _model_rows(session, catalog, workspace.id))
    if model.slug not in enabled_now:
        listed = sorted(enabled_now)
        raise Conflict(
            f"The default must be an enabled model; {model.slug!r} is not enabled. "
            f"Enable it first, or choose one of: {', '.join(listed)}.",
            code="model_not_enabled",
            param="model",
            extra={"enabled_models": listed},
        )
    before = {"default_model": workspace.default_model}
    workspace.default_model = model.slug
    change = Change(before, {"default_model": model.slug})
    if change.changed:
        await record(
            session, actor, workspace.id, "default_model.changed", model.slug, before, change.after
        )
    return change


def settings_of(workspace: Workspace) -> dict[str, Any]:
    return {name: getattr(workspace, name) for name in SETTINGS_FIELDS}


async def update_settings(
    session: AsyncSession,
    catalog: Catalog,
    actor: Principal,
    changes: dict[str, Any],
    replacement: str | None = None,
) -> Change:
    """Change workspace settings; requiring EU hosting disables the enabled non-EU models."""
    workspace = await lock_workspace(session, actor.workspace_id)
    before, models_after = settings_of(workspace), None
    if changes.get("prc_models_allowed") is False and workspace.prc_models_allowed:
        await _refuse_opt_out_with_prc_models(session, catalog, workspace)
    if changes.get("region_policy") == "eu_only" and workspace.region_policy != "eu_only":
        before |= {"default_model": workspace.default_model}
        models_after = await _require_eu(session, catalog, workspace, replacement, before)
    for name, value in changes.items():
        setattr(workspace, name, value)
    after = settings_of(workspace)
    if models_after is not None:
        after |= {"default_model": workspace.default_model, "enabled_models": models_after}
    change = Change(before, after)
    if change.changed:
        await record(session, actor, workspace.id, "settings.updated", "settings", before, after)
    return change


async def _refuse_opt_out_with_prc_models(
    session: AsyncSession, catalog: Catalog, workspace: Workspace
) -> None:
    rows = await _model_rows(session, catalog, workspace.id)
    enabled = sorted(s for s in _enabled(rows) if (m := catalog.resolve(s)) is not None and m.prc)
    if enabled:
        raise Conflict(
            f"Disable the models made by PRC-based companies first: {', '.join(enabled)}.",
            code="prc_models_enabled",
            param="prc_models_allowed",
            extra={"enabled_models": enabled},
        )


async def _require_eu(
    session: AsyncSession,
    catalog: Catalog,
    workspace: Workspace,
    replacement: str | None,
    before: dict[str, Any],
) -> list[str]:
    """Disable the enabled models hosted outside the EU; the enabled models that remain."""
    rows = await _model_rows(session, catalog, workspace.id)
    enabled_now = _enabled(rows)
    before["enabled_models"] = sorted(enabled_now)
    keep = {s for s in enabled_now if region_allows("eu_only", _catalog_model(catalog, s, "model"))}
    if not keep:
        eu = sorted(m.slug for m in catalog if routing.hosting_region(m) == "eu")
        raise Conflict(
            "No EU-hosted model is enabled, so requiring EU hosting would leave none. Enable one "
            f"first: {', '.join(eu) or 'the catalog has none'}.",
            code="no_model_in_region",
            param="region_policy",
            extra={"eu_models": eu},
        )
    if workspace.default_model not in keep:
        workspace.default_model = _replacement(
            catalog,
            replacement,
            enabled_now - keep,
            keep,
            f"The default model {workspace.default_model!r} is not hosted in the EU.",
        )
    for slug in enabled_now - keep:
        rows[slug].enabled, rows[slug].updated_at = False, utcnow()
    return sorted(keep)


async def list_audit(
    session: AsyncSession, workspace_id: str, *, limit: int, before: int | None = None
) -> list[tuple[AuditEvent, str | None]]:
    """Newest first, with the acting member's name; ``before`` pages back from an event id."""
    query = (
        select(AuditEvent, Member.name)
        .outerjoin(Member, Member.id == AuditEvent.actor_member_id)
        .where(AuditEvent.workspace_id == workspace_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return [(first, second) for first, second in (await session.execute(query)).all()]
