"""From what a caller sent to a planned job: model, native parameters, size, price."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.catalog import Catalog, ModelSpec
from imagegate.catalog.pricing import estimate
from imagegate.catalog.schema import validate_params
from imagegate.catalog.sizes import native_size, output_dimensions
from imagegate.errors import InvalidParameter, NotFound
from imagegate.ids import new_id
from imagegate.services import billing, files, idempotency, jobs, workspace
from imagegate.services.files import check_reference_ids
from imagegate.services.keys import Principal
from imagegate.store.db import Database
from imagegate.store.tables import Job, Member, Workspace, WorkspaceModel

# OpenAI Images API fields, and what each becomes.
OPENAI_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "response_format",
        "output_format",
        "quality",
        "seed",
        "style",
        "background",
        "moderation",
        "output_compression",
        "user",
    }
)
WRAPPER_FIELDS = frozenset({"mock", "format", "sync_mode", "reference_files"})
RESPONSE_FORMATS = ("url", "b64_json")
FORMAT_PRESETS = ("shorts", "reels", "horizontal")


@dataclass(frozen=True, slots=True)
class Plan:
    """A request made concrete: what will be asked of which provider, and what it yields."""

    model: ModelSpec
    provider: str
    params: dict[str, Any]
    n: int
    width: int
    height: int
    output_format: str
    estimated_cost: int
    notices: list[str] = field(default_factory=list)
    mock: bool = False
    sync_mode: bool = False
    reference_files: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "n": self.n,
            "width": self.width,
            "height": self.height,
            "output_format": self.output_format,
            "mock": self.mock,
        }
        if self.sync_mode:
            described["sync_mode"] = True
        if self.reference_files:
            described["reference_files"] = list(self.reference_files)
        return described


def _model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model {name!r} does not exist. List models with GET /v1/models.",
        code="model_not_found",
        param="model",
    )


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model a request will use, and why: named in it, the member's selection, or the default.

    ``fallback_from`` is the member's remembered selection when it had been disabled and the
    workspace default was used instead.
    """

    model: ModelSpec
    source: Literal["request", "selection", "default"]
    fallback_from: str | None = None

    def notice(self) -> str | None:
        if self.fallback_from is None:
            return None
        return (
            f"Your selected model {self.fallback_from} is no longer enabled; "
            f"switched to the workspace default {self.model.slug}."
        )


async def choose_model(
    session: AsyncSession, catalog: Catalog, principal: Principal, name: Any
) -> ModelChoice:
    """The model asked for by slug or alias; else the member's selection; else the default."""
    state = await workspace.governance(session, principal.workspace_id)
    workspace.ensure_generation_enabled(state)
    if name is not None:
        if not isinstance(name, str) or not name:
            raise InvalidParameter(
                "Invalid value for 'model': expected a model slug.", param="model"
            )
        model = catalog.resolve(name)
        if model is None:
            raise _model_not_found(name)
        return ModelChoice(model, "request")
    member = await session.get(Member, principal.member_id)
    selected = member.selected_model if member is not None else None
    if selected is not None and selected in workspace.usable_models(catalog, state):
        model = catalog.resolve(selected)
        assert model is not None
        return ModelChoice(model, "selection")
    default = catalog.resolve(state.default_model) if state.default_model else None
    if default is None:
        raise InvalidParameter("No model given and the workspace has no default.", param="model")
    if member is not None and selected is not None:
        member.selected_model = default.slug  # auto-switched, as the generator shows it next time
    return ModelChoice(default, "default", fallback_from=selected)


async def resolve_model(
    session: AsyncSession, catalog: Catalog, principal: Principal, name: Any
) -> ModelSpec:
    """The model asked for by slug or alias, or the member's selection, or the default."""
    return (await choose_model(session, catalog, principal, name)).model


async def enabled_models(session: AsyncSession, workspace_id: str) -> set[str]:
    rows = await session.execute(
        select(WorkspaceModel.model).where(
            WorkspaceModel.workspace_id == workspace_id, WorkspaceModel.enabled.is_(True)
        )
    )
    return {row[0] for row in rows}


def _plan(model: ModelSpec, native: dict[str, Any], rename: dict[str, str], mock: bool) -> Plan:
    params = validate_params(model, native, rename=rename)
    n = int(params.get(model.count_field, 1)) if model.count_field else 1
    width, height = output_dimensions(model, params)
    output_format = (
        str(params[model.format_field])
        if model.format_field and params.get(model.format_field) is not None
        else model.default_output_format
    )
    notices = []
    if model.status == "legacy" and model.replacement:
        notices.append(f"{model.slug} is legacy; use {model.replacement} instead.")
    provider = "mock" if mock else model.routes[0].provider
    cost = 0 if mock else estimate(model, params, n, width, height)
    return Plan(model, provider, params, n, width, height, output_format, cost, notices, mock)


def _files_wrapper(
    model: ModelSpec, body: dict[str, Any], native: dict[str, Any]
) -> dict[str, Any]:
    """``sync_mode`` (inline data URI, nothing stored) and ``reference_files`` (file ids)."""
    sync_mode = body.get("sync_mode", False)
    if not isinstance(sync_mode, bool):
        raise InvalidParameter(
            "Invalid value for 'sync_mode': expected true or false.", param="sync_mode"
        )
    if "sync_mode" in model.params:
        native["sync_mode"] = sync_mode
    extra: dict[str, Any] = {"sync_mode": sync_mode}
    if body.get("reference_files") is not None:
        if not model.reference_images:
            raise InvalidParameter(
                f"Model {model.slug!r} takes no reference images.", param="reference_files"
            )
        extra["reference_files"] = check_reference_ids(body["reference_files"])
    return extra


def _wrapper(model: ModelSpec, body: dict[str, Any], native: dict[str, Any]) -> bool:
    """Apply the wrapper fields (``format``, ``mock``) to ``native``; whether to mock."""
    mock = body.get("mock", False)
    if not isinstance(mock, bool):
        raise InvalidParameter("Invalid value for 'mock': expected true or false.", param="mock")
    preset = body.get("format")
    if preset is not None:
        if preset not in FORMAT_PRESETS:
            raise InvalidParameter(
                f"Invalid value for 'format': {preset!r}. Allowed: {', '.join(FORMAT_PRESETS)}.",
                param="format",
            )
        field_name = model.sizes.field
        if field_name is None or preset not in model.sizes.format_mapping:
            raise InvalidParameter(f"Model {model.slug!r} has no size presets.", param="format")
        if field_name in native:
            raise InvalidParameter(
                f"Give either 'format' or '{field_name}', not both.", param="format"
            )
        native[field_name] = model.sizes.format_mapping[preset]
    return mock


def plan_openai(model: ModelSpec, body: dict[str, Any]) -> Plan:
    """Translate an OpenAI Images API body (plus any native parameters) for ``model``."""
    native: dict[str, Any] = {}
    rename: dict[str, str] = {}
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameter(
            "'prompt' is required and must be a non-empty string.", param="prompt"
        )
    if model.prompt_field is None:
        raise InvalidParameter(f"Model {model.slug!r} takes no prompt.", param="prompt")
    native[model.prompt_field] = prompt
    for name, value in body.items():
        if name in ("model", "prompt", "response_format", "user") or name in WRAPPER_FIELDS:
            continue
        if name == "n":
            if model.count_field is None:
                if value != 1:
                    raise InvalidParameter(
                        f"Model {model.slug!r} makes one image per request; 'n' must be 1.",
                        param="n",
                    )
                continue
            native[model.count_field] = value
            rename[model.count_field] = "n"
        elif name == "size":
            if not isinstance(value, str):
                raise InvalidParameter(
                    "Invalid value for 'size': expected 'WIDTHxHEIGHT'.", param="size"
                )
            native_value = native_size(model, value)  # raises when the model takes no size
            assert model.sizes.field is not None
            native[model.sizes.field] = native_value
            rename[model.sizes.field] = "size"
        elif name == "output_format":
            if model.format_field is None:
                if value not in model.output_formats:
                    raise InvalidParameter(
                        f"Invalid value for 'output_format': {value!r}. Model {model.slug!r} "
                        f"returns {', '.join(model.output_formats)}.",
                        param="output_format",
                    )
                continue
            native[model.format_field] = value
            rename[model.format_field] = "output_format"
        elif name == "seed" and model.seed_field is not None:
            native[model.seed_field] = value
            rename[model.seed_field] = "seed"
        elif name == "quality" and "quality" not in model.params and value in ("auto", "standard"):
            continue  # OpenAI's "let the model decide" is what every model does
        elif name in model.params:
            native[name] = value
        elif name in OPENAI_FIELDS:
            raise InvalidParameter(f"Model {model.slug!r} does not support {name!r}.", param=name)
        else:
            allowed = sorted(
                (OPENAI_FIELDS | WRAPPER_FIELDS | set(model.params)) - {model.prompt_field}
            )
            raise InvalidParameter(
                f"Unknown parameter {name!r}. Allowed: {', '.join(allowed)}.", param=name
            )
    mock = _wrapper(model, body, native)
    extra = _files_wrapper(model, body, native)
    return dataclasses.replace(_plan(model, native, rename, mock), **extra)


def plan_native(model: ModelSpec, body: dict[str, Any]) -> Plan:
    """A jobs-API body: the model's own parameters plus the wrapper fields."""
    native = {k: v for k, v in body.items() if k not in WRAPPER_FIELDS}
    mock = _wrapper(model, body, native)
    extra = _files_wrapper(model, body, native)
    return dataclasses.replace(_plan(model, native, {}, mock), **extra)


async def check_usable(session: AsyncSession, principal: Principal, model: ModelSpec) -> None:
    """Raise unless the caller's workspace lets members generate with ``model`` now."""
    state = await workspace.governance(session, principal.workspace_id)
    workspace.ensure_usable(state, model)


async def submit(
    session: AsyncSession,
    principal: Principal,
    plan: Plan,
    request: dict[str, Any],
    action: str,
    *,
    max_attempts: int = 3,
    webhook_url: str | None = None,
) -> Job:
    """Insert the job and place its hold, in the caller's transaction (402 if it does not fit)."""
    owner = await session.get(Workspace, principal.workspace_id)
    assert owner is not None
    policy = workspace.charge_policy(owner.billing_mode, plan.model)
    job = Job(
        id=new_id("job"),
        workspace_id=principal.workspace_id,
        member_id=principal.member_id,
        model=plan.model.slug,
        provider=plan.provider,
        action=action,
        status=jobs.QUEUED,
        request={"body": request, "plan": plan.describe()},
        params=plan.params,
        estimated_cost=plan.estimated_cost,
        attempt=0,
        max_attempts=max_attempts,
        webhook_url=webhook_url,
        charge_policy=policy,
    )
    session.add(job)
    await session.flush()
    if policy == "charge":
        await billing.hold(session, principal.workspace_id, job.id, plan.estimated_cost)
    return job


Planner = Callable[[ModelSpec, dict[str, Any]], Plan]


@dataclass(frozen=True, slots=True)
class Submission:
    """A created job with its plan and model choice; both None when it is a replay."""

    job: Job
    plan: Plan | None = None
    choice: ModelChoice | None = None

    @property
    def replayed(self) -> bool:
        return self.plan is None


async def create_job(
    db: Database,
    catalog: Catalog,
    principal: Principal,
    *,
    model_name: Any,
    body: dict[str, Any],
    planner: Planner,
    endpoint: str,
    action: str,
    idempotency_key: str | None,
    webhook_url: str | None,
    max_attempts: int,
) -> Submission:
    """Plan, hold and insert a job, once per idempotency key.

    When an earlier request with the same key made the job, that job comes back as a
    replay: the same job, no second hold.
    """
    request_hash = idempotency.fingerprint(endpoint, body) if idempotency_key else ""
    for _ in range(2):
        try:
            async with db.session() as session:
                if idempotency_key is not None:
                    existing = await idempotency.find(
                        session, principal.member_id, idempotency_key, request_hash
                    )
                    if existing is not None:
                        job = await jobs.get_job(session, principal.workspace_id, existing)
                        assert job is not None
                        return Submission(job)
                choice = await choose_model(session, catalog, principal, model_name)
                await check_usable(session, principal, choice.model)
                plan = planner(choice.model, body)
                await files.require_files(session, principal.workspace_id, plan.reference_files)
                job = await submit(
                    session,
                    principal,
                    plan,
                    body,
                    action,
                    max_attempts=max_attempts,
                    webhook_url=webhook_url,
                )
                if idempotency_key is not None:
                    idempotency.record(
                        session, principal.member_id, idempotency_key, request_hash, job.id
                    )
                    await session.flush()
                return Submission(job, plan, choice)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key won the insert: look again.
            continue
    raise idempotency.in_flight()


async def wait_for_job(
    db: Database, event: asyncio.Event, workspace_id: str, job_id: str, timeout: float
) -> Job:
    """Wait until the job is terminal or ``timeout`` passes; the job as it then is."""
    deadline = time.monotonic() + timeout
    while True:
        async with db.read_session() as session:
            job = await jobs.get_job(session, workspace_id, job_id)
        assert job is not None
        remaining = deadline - time.monotonic()
        if job.status in jobs.TERMINAL or remaining <= 0:
            return job
        # Another process may run the job: look again at least every second.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(remaining, 1.0))
        event.clear()
