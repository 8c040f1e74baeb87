"""Which model a request gets: named, a tier preset, ``auto`` with a use case, the
member's remembered selection, or the workspace default; and whether it may be used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.catalog import Catalog, ModelSpec
from imagegate.errors import InvalidParameter, NotFound
from imagegate.services import workspace
from imagegate.services.keys import Principal
from imagegate.store.tables import MEMBERS, WorkspaceModel
from imagegate.store.tx import Tx, as_tx


def _model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model {name!r} does not exist. List models with GET /v1/models.",
        code="model_not_found",
        param="model",
    )


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model a request will use, and why: named in it, a ``tier`` preset, ``auto`` with
    a ``use_case``, the member's remembered selection, or the workspace default.

    ``fallback_from`` is the member's remembered selection when it had been disabled and the
    workspace default was used instead; ``notices`` say when the gateway chose.
    """

    model: ModelSpec
    source: Literal["request", "tier", "auto", "selection", "default"]
    fallback_from: str | None = None
    notices: tuple[str, ...] = ()

    def notice(self) -> str | None:
        if self.fallback_from is None:
            return None
        return (
            f"Your selected model {self.fallback_from} is no longer enabled; "
            f"switched to the workspace default {self.model.slug}."
        )


def _choice_value(body: dict[str, Any], name: str, allowed: list[str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise InvalidParameter(
            f"Invalid value for {name!r}: {value!r}. Allowed: {', '.join(allowed)}.", param=name
        )
    return str(value)


_SELECTED = select(MEMBERS.c.selected_model).where(MEMBERS.c.id == bindparam("p_member_id"))
_SWITCH = (
    update(MEMBERS)
    .where(MEMBERS.c.id == bindparam("p_member_id"))
    .values(selected_model=bindparam("p_model"))
)


async def choose_model(
    session: Tx | AsyncSession, catalog: Catalog, principal: Principal, body: dict[str, Any]
) -> ModelChoice:
    """The model a request gets: by name or alias, by ``tier`` preset, by ``use_case`` for
    ``model: "auto"``, else the member's selection, else the workspace default."""
    state = await workspace.governance(session, principal.workspace_id)
    workspace.ensure_generation_enabled(state)
    choices = catalog.choices
    tier = _choice_value(body, "tier", list(choices.tiers))
    use_case = _choice_value(body, "use_case", list(choices.use_cases))
    name = body.get("model")
    if name == "auto" or (name is None and use_case is not None):
        return await _auto_model(session, catalog, principal, use_case)
    if name is None and tier is not None:
        preset = catalog.resolve(choices.tiers[tier])
        if preset is None:  # the operator's overlay hides the preset's model
            raise InvalidParameter(
                f"The tier {tier!r} is not offered on this gateway (its model "
                f"{choices.tiers[tier]!r} is hidden by the operator). Name a model instead.",
                param="tier",
            )
        return ModelChoice(preset, "tier", notices=(f"tier {tier!r} uses {preset.slug}.",))
    if name is not None:
        if not isinstance(name, str) or not name:
            raise InvalidParameter(
                "Invalid value for 'model': expected a model slug.", param="model"
            )
        model = catalog.resolve(name)
        if model is None:
            raise _model_not_found(name)
        return ModelChoice(model, "request")
    tx = as_tx(session)
    selected = (await tx.execute(_SELECTED, {"p_member_id": principal.member_id})).scalar()
    if selected is not None and selected in workspace.usable_models(catalog, state):
        model = catalog.resolve(selected)
        assert model is not None
        return ModelChoice(model, "selection")
    default = catalog.resolve(state.default_model) if state.default_model else None
    if default is None:
        raise InvalidParameter("No model given and the workspace has no default.", param="model")
    if selected is not None:
        # Auto-switched, as the generator shows it next time.
        await tx.execute(_SWITCH, {"p_member_id": principal.member_id, "p_model": default.slug})
    return ModelChoice(default, "default", fallback_from=selected)


async def resolve_model(
    session: Tx | AsyncSession, catalog: Catalog, principal: Principal, name: Any
) -> ModelSpec:
    """The model asked for by slug or alias, or the member's selection, or the default."""
    return (await choose_model(session, catalog, principal, {"model": name})).model


async def _auto_model(
    session: Tx | AsyncSession, catalog: Catalog, principal: Principal, use_case: str | None
) -> ModelChoice:
    if use_case is None:
        default = await resolve_model(session, catalog, principal, None)
        notice = f"model 'auto' without a use_case uses the workspace default, {default.slug}."
        return ModelChoice(default, "auto", notices=(notice,))
    advice = catalog.choices.use_cases[use_case]
    enabled = (await workspace.governance(session, principal.workspace_id)).enabled
    candidates = [catalog.resolve(name) for name in advice.models]
    if advice.region is not None:
        # Any enabled model that can run there is better than none.
        candidates += [m for m in catalog if m.slug in enabled and advice.region in m.regions]
    for candidate in candidates:
        if candidate is None or candidate.slug not in enabled:
            continue
        if advice.region is None or advice.region in candidate.regions:
            notice = f"use_case {use_case!r} chose {candidate.slug}."
            return ModelChoice(candidate, "auto", notices=(notice,))
    raise InvalidParameter(
        f"No enabled model suits use_case {use_case!r} ({advice.description}). "
        f"Enable one of: {', '.join(advice.models)}.",
        code="no_model_for_use_case",
        param="use_case",
        extra={"recommended_models": advice.models},
    )


async def enabled_models(session: AsyncSession, workspace_id: str) -> set[str]:
    rows = await session.execute(
        select(WorkspaceModel.model).where(
            WorkspaceModel.workspace_id == workspace_id, WorkspaceModel.enabled.is_(True)
        )
    )
    return {row[0] for row in rows}


async def check_usable(
    session: Tx | AsyncSession, principal: Principal, model: ModelSpec, *, mock: bool = False
) -> None:
    """Raise unless the caller's workspace lets members generate with ``model`` now.

    ``mock``: a free placeholder, allowed for any model the workspace could enable.
    """
    state = await workspace.governance(session, principal.workspace_id)
    workspace.ensure_usable(state, model, mock=mock)
