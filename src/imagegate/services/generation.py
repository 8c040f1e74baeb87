"""From what a caller sent to a planned job: model, native parameters, size, price."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Select,
    String,
    bindparam,
    exists,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from imagegate.catalog import Catalog, ModelSpec
from imagegate.catalog.pricing import estimate
from imagegate.catalog.schema import validate_params
from imagegate.catalog.sizes import (
    SizeChoice,
    check_custom,
    fit_custom,
    from_aspect_ratio,
    from_image_size,
    from_wxh,
    output_dimensions,
)
from imagegate.catalog.spec import Route
from imagegate.errors import (
    Conflict,
    ImagegateError,
    InsufficientCredits,
    InvalidParameter,
    ProviderNotConfigured,
)
from imagegate.ids import new_id
from imagegate.services import (
    billing,
    files,
    idempotency,
    jobs,
    model_choice,
    routing,
    sources,
    workspace,
)
from imagegate.services.keys import Principal
from imagegate.store.db import Database, insert_rows, row_values
from imagegate.store.tables import IDEMPOTENCY_KEYS, JOBS, WORKSPACES, Job, UTCDateTime, utcnow
from imagegate.store.tx import Tx, as_tx, combines_writes

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
# Size fields any model understands; each becomes the model's own size field.
SIZE_FIELDS = frozenset({"aspect_ratio", "image_size", "resolution"})
# Model choice: read by choose_model, not passed to the model.
CHOICE_FIELDS = frozenset({"tier", "use_case"})
WRAPPER_FIELDS = frozenset({"mock", "format", "sync_mode", "reference_files", "mask", "mask_file"})
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
    route: Route | None = None
    # The region every route must run in (a use_case's, or the workspace's EU policy).
    region: str | None = None
    sync_mode: bool = False
    reference_files: tuple[str, ...] = ()
    mask_file: str | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "n": self.n,
            "width": self.width,
            "height": self.height,
            "output_format": self.output_format,
            "mock": self.mock,
            "region": self.region,
            "notices": self.notices,
        }
        if self.sync_mode:
            described["sync_mode"] = True
        if self.reference_files:
            described["reference_files"] = list(self.reference_files)
        if self.mask_file:
            described["mask_file"] = self.mask_file
        return described


def deprecation_headers(model: ModelSpec | None, notices: list[str]) -> dict[str, str]:
    """Headers that tell a caller its model is on its way out, and what replaces it."""
    headers: dict[str, str] = {}
    if model is not None and model.status in ("legacy", "deprecated"):
        headers["Deprecation"] = "true"
        if model.replacement is not None:
            headers["Link"] = f'</v1/models/{model.replacement}>; rel="successor-version"'
            headers["X-Imagegate-Replacement"] = model.replacement
    if notices:
        headers["X-Imagegate-Notice"] = " ".join(notices)
    return headers


def _references(model: ModelSpec, native: dict[str, Any]) -> tuple[int, list[str]]:
    """Check the reference images against the model's limits; their count and any notice."""
    limit = model.limits.references
    if limit is None:
        return 0, []
    value = native.get(limit.field)
    count = len(value) if isinstance(value, list) else int(value is not None and value != "")
    plural = "s" if limit.max > 1 else ""
    if count == 0 and limit.required:
        raise InvalidParameter(
            f"Model {model.slug!r} needs a source image: give {limit.field!r} "
            f"(HTTPS URL{plural} of the image{plural} to work on).",
            code="image_url_required",
            param=limit.field,
        )
    if count > limit.max:
        if limit.overflow == "keep_last" and isinstance(value, list):
            native[limit.field] = value[-limit.max :]
            notice = f"{model.slug} uses the last {limit.max} of {count} images in {limit.field!r}."
            return limit.max, [notice]
        raise InvalidParameter(
            f"Model {model.slug!r} takes at most {limit.max} reference image{plural} "
            f"in {limit.field!r}; {count} were given.",
            code="too_many_references",
            param=limit.field,
            extra={"max_references": limit.max},
        )
    return count, []


def _custom_size(model: ModelSpec, native: dict[str, Any], rename: dict[str, str]) -> list[str]:
    field_name = model.sizes.field
    value = native.get(field_name) if field_name is not None else None
    if field_name is None or not isinstance(value, dict):
        return []
    if not all(isinstance(value.get(k), int) for k in ("width", "height")):
        return []  # the schema names what is wrong
    checked, notices = check_custom(model, value, rename.get(field_name, field_name))
    native[field_name] = checked
    return notices


def _plan(
    model: ModelSpec,
    native: dict[str, Any],
    rename: dict[str, str],
    mock: bool,
    notices: list[str] | None = None,
    region: str | None = None,
) -> Plan:
    notices = list(notices or [])
    references, ref_notices = _references(model, native)
    notices += ref_notices + _custom_size(model, native, rename)
    params = validate_params(model, native, rename=rename)
    limits = model.limits
    per_generation = 1
    if limits.outputs_per_generation_field is not None:
        per_generation = int(params.get(limits.outputs_per_generation_field) or 1)
    most = limits.max_total_images
    if most is not None and references + per_generation > most:
        field_name = limits.outputs_per_generation_field or (model.count_field or "n")
        raise InvalidParameter(
            f"Model {model.slug!r} takes at most {limits.max_total_images} images in total "
            f"(inputs plus images made per generation); "
            f"{references} + {per_generation} were asked for.",
            param=rename.get(field_name, field_name),
        )
    n = int(params.get(model.count_field, 1)) if model.count_field else 1
    width, height = output_dimensions(model, params)
    output_format = (
        str(params[model.format_field])
        if model.format_field and params.get(model.format_field) is not None
        else model.default_output_format
    )
    if model.status == "legacy" and model.replacement:
        notices.append(f"{model.slug} is legacy; use {model.replacement} instead.")
    elif model.status == "deprecated":
        notices.append(f"{model.slug} is deprecated by its provider.")
    route = next(iter(routing.allowed_routes(model, region)), model.routes[0])
    provider = "mock" if mock else route.provider
    cost = 0 if mock else estimate(model, params, n * per_generation, width, height)
    return Plan(
        model,
        provider,
        params,
        n,
        width,
        height,
        output_format,
        cost,
        notices=notices,
        mock=mock,
        route=route,
        region=region,
    )


def takes_mask(model: ModelSpec) -> bool:
    """Whether the model's upstream uses a mask (OpenAI's edits, the mock); others would
    ignore it."""
    return any(route.provider in ("openai", "mock") for route in model.routes)


def _source_value(value: Any, param: str) -> Any:
    if sources.source_form(value) is None:
        raise sources.not_a_source(param)
    return value


def _files_wrapper(
    model: ModelSpec, body: dict[str, Any], native: dict[str, Any]
) -> dict[str, Any]:
    """``sync_mode`` (inline data URI, nothing stored), ``reference_files`` (images for the
    model's reference parameter) and ``mask``.

    Every image value must be a source form (URL, data URI, file id, upload); by the
    time a job is submitted :func:`create_job` has made each one a file id.
    """
    sync_mode = body.get("sync_mode", False)
    if not isinstance(sync_mode, bool):
        raise InvalidParameter(
            "Invalid value for 'sync_mode': expected true or false.", param="sync_mode"
        )
    if "sync_mode" in model.params:
        native["sync_mode"] = sync_mode
    extra: dict[str, Any] = {"sync_mode": sync_mode}
    limit = model.limits.references
    given = body.get("reference_files")
    if given is not None:
        if not model.reference_images:
            raise InvalidParameter(
                f"Model {model.slug!r} takes no reference images.", param="reference_files"
            )
        if not isinstance(given, list) or not given:
            raise InvalidParameter(
                "Invalid value for 'reference_files': expected a list of images.",
                param="reference_files",
            )
        if limit is None:  # the images go to the provider as inputs, in no parameter
            if len(given) > files.MAX_REFERENCES:
                raise InvalidParameter(
                    f"Too many reference images: {len(given)}; at most {files.MAX_REFERENCES}.",
                    code="too_many_references",
                    param="reference_files",
                )
            for index, item in enumerate(given):
                _source_value(item, f"reference_files[{index}]")
            extra["reference_files"] = tuple(given)
        elif limit.field in native:
            raise InvalidParameter(
                f"Give the images either in 'reference_files' or in {limit.field!r}, not both.",
                param="reference_files",
            )
        else:
            native[limit.field] = list(given)
    if limit is not None and native.get(limit.field) is not None:
        value = native[limit.field]
        if isinstance(value, list):
            for index, item in enumerate(value):
                _source_value(item, f"{limit.field}[{index}]")
        elif isinstance(value, str) and value:
            _source_value(value, limit.field)
    mask = body.get("mask_file", body.get("mask"))
    if mask is not None:
        if not takes_mask(model):
            raise InvalidParameter(
                f"Model {model.slug!r} takes no mask; edit with a prompt only, or use a "
                "model that takes one (the OpenAI image models).",
                param="mask",
            )
        extra["mask_file"] = _source_value(mask, "mask")
    return extra


def _is_list(model: ModelSpec, field_name: str) -> bool:
    return "array" in model.params[field_name].types


def _with_references(model: ModelSpec, plan: Plan) -> Plan:
    """The plan with ``reference_files``: the images of the model's reference parameter,
    as the model will use them (after the last-N rule)."""
    limit = model.limits.references
    if limit is None:
        return plan
    value = plan.params.get(limit.field)
    if isinstance(value, list):
        images = tuple(v for v in value if isinstance(v, str))
    elif isinstance(value, str) and value:
        images = (value,)
    else:
        images = ()
    return dataclasses.replace(plan, reference_files=images)


def _refuse_extra_references(model: ModelSpec, native: dict[str, Any]) -> None:
    """A single-image parameter given a list: too many references, not a type error."""
    limit = model.limits.references
    if limit is None or _is_list(model, limit.field):
        return
    value = native.get(limit.field)
    if isinstance(value, list):
        if len(value) == 1:
            native[limit.field] = value[0]
        elif len(value) > 1:
            raise InvalidParameter(
                f"Model {model.slug!r} takes at most {limit.max} reference image "
                f"in {limit.field!r}; {len(value)} were given.",
                code="too_many_references",
                param=limit.field,
                extra={"max_references": limit.max},
            )


def plan_edit(model: ModelSpec, body: dict[str, Any], *, region: str | None = None) -> Plan:
    """An OpenAI-style edit: the model must edit, and at least one source image is given."""
    if "edit" not in model.actions:
        editors = "a model whose capabilities include 'edit' (see GET /v1/models?capability=edit)"
        raise InvalidParameter(
            f"Model {model.slug!r} cannot edit images; use {editors}.",
            code="model_cannot_edit",
            param="model",
        )
    if not body.get("reference_files"):
        raise InvalidParameter("'image' is required: the image(s) to edit.", param="image")
    return plan_openai(model, body, region=region)


def upscale_body(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    """An upscale request (``image``, ``upscale_factor``, the model's parameters) with the
    image in the model's own image parameter (``image_url``)."""
    model = catalog.resolve(body["model"]) if isinstance(body.get("model"), str) else None
    limit = model.limits.references if model is not None else None
    if "image" not in body:
        if limit is None or limit.field not in body:
            raise InvalidParameter(
                "'image' is required: the image to upscale (a file, file id, data URI or "
                "http(s) URL).",
                code="image_url_required",
                param="image",
            )
        return body
    if limit is None:  # planning refuses the model and says why
        return body
    if limit.field in body:
        raise InvalidParameter(f"Give either 'image' or {limit.field!r}, not both.", param="image")
    out = {k: v for k, v in body.items() if k != "image"}
    out[limit.field] = body["image"]
    return out


def plan_upscale(model: ModelSpec, body: dict[str, Any], *, region: str | None = None) -> Plan:
    """``POST /v1/images/upscale``: the model must upscale; its own parameters pass through."""
    if "upscale" not in model.actions:
        upscalers = (
            "a model whose capabilities include 'upscale' (GET /v1/models?capability=upscale)"
        )
        raise InvalidParameter(
            f"Model {model.slug!r} cannot upscale images; use {upscalers}.",
            code="model_cannot_upscale",
            param="model",
        )
    skipped = ("model", "response_format", "user")
    return plan_native(model, {k: v for k, v in body.items() if k not in skipped})


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
        value = model.sizes.format_mapping[preset]
        custom = model.sizes.custom
        if isinstance(value, dict) and custom is not None and not custom.scale:
            # Our preset must be valid for the model: keep its shape, scale it into bounds.
            width, height = fit_custom(model.sizes, int(value["width"]), int(value["height"]))
            value = {"width": width, "height": height}
        native[field_name] = value
    return mock


def _native_size_param(model: ModelSpec, name: str) -> bool:
    """Whether ``name`` is the model's own size or resolution field (passed through as is)."""
    return name in (model.sizes.field, model.sizes.resolution_field) and name in model.params


def _size_choice(model: ModelSpec, name: str, value: Any, resolution: Any) -> SizeChoice:
    if name == "size":
        if not isinstance(value, str):
            message = "Invalid value for 'size': expected 'WIDTHxHEIGHT'."
            raise InvalidParameter(message, param="size")
        return from_wxh(model, value, "size", resolution)
    if name == "aspect_ratio":
        return from_aspect_ratio(model, value, "aspect_ratio", resolution)
    return from_image_size(model, value, "image_size")


def preferred_region(catalog: Catalog, body: dict[str, Any]) -> str | None:
    """The region a request's ``use_case`` asks for (``eu-only``), if any."""
    advice = catalog.choices.use_cases.get(str(body.get("use_case")))
    return advice.region if advice is not None else None


def plan_openai(model: ModelSpec, body: dict[str, Any], *, region: str | None = None) -> Plan:
    """Translate an OpenAI Images API body (plus any native parameters) for ``model``.

    ``region`` picks the model's route in that region where it has one.
    """
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
    size_asks: list[tuple[str, Any]] = []
    for name, value in body.items():
        skipped = ("model", "prompt", "response_format", "user")
        if name in skipped or name in WRAPPER_FIELDS or name in CHOICE_FIELDS:
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
        elif name in SIZE_FIELDS and _native_size_param(model, name):
            native[name] = value
            if name == model.sizes.field:
                size_asks.append((name, None))
        elif name == "resolution":
            raise InvalidParameter(
                f"Model {model.slug!r} has no 'resolution'; ask for a size instead "
                f"({', '.join(model.sizes.supported_sizes()) or 'it takes none'}).",
                param="resolution",
            )
        elif name == "size" or name in SIZE_FIELDS:
            size_asks.append((name, value))
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
            known = OPENAI_FIELDS | WRAPPER_FIELDS | CHOICE_FIELDS | SIZE_FIELDS | set(model.params)
            allowed = sorted(known - {model.prompt_field})
            raise InvalidParameter(
                f"Unknown parameter {name!r}. Allowed: {', '.join(allowed)}.", param=name
            )
    notices: list[str] = []
    if len(size_asks) > 1:
        names = sorted(name for name, _ in size_asks)
        raise InvalidParameter(
            f"Give one of {', '.join(repr(n) for n in names)}, not several.", param=names[-1]
        )
    for name, value in size_asks:
        if value is None:
            continue  # the model's own field, passed through
        resolution = native.get(model.sizes.resolution_field or "")
        choice = _size_choice(model, name, value, resolution)
        for key, chosen in choice.native.items():
            native.setdefault(key, chosen)
            rename.setdefault(key, name)
        notices += choice.notices
    mock = _wrapper(model, body, native)
    extra = _files_wrapper(model, body, native)
    _refuse_extra_references(model, native)
    plan = dataclasses.replace(_plan(model, native, rename, mock, notices, region), **extra)
    return _with_references(model, plan)


def plan_native(model: ModelSpec, body: dict[str, Any]) -> Plan:
    """A jobs-API body: the model's own parameters plus the wrapper fields.

    With neither ``format`` nor the model's size field, the model's ``format_mapping``
    default applies (the image model reference: ``format`` defaults per model).
    """
    native = {k: v for k, v in body.items() if k not in WRAPPER_FIELDS}
    mapping = model.sizes.format_mapping
    field_name = model.sizes.field
    no_size = field_name is not None and field_name not in native
    if body.get("format") is None and no_size and "default" in mapping:
        assert field_name is not None
        native[field_name] = mapping["default"]
    mock = _wrapper(model, body, native)
    extra = _files_wrapper(model, body, native)
    _refuse_extra_references(model, native)
    plan = dataclasses.replace(_plan(model, native, {}, mock), **extra)
    return _with_references(model, plan)


async def submit(
    tx: Tx,
    principal: Principal,
    plan: Plan,
    request: dict[str, Any],
    action: str,
    *,
    max_attempts: int = 3,
    webhook_url: str | None = None,
    lease: Lease | None = None,
    idempotency_key: tuple[str, str] | None = None,
) -> Job:
    """Insert the job, place its hold and record its idempotency key (key, request hash):
    402, with nothing written, if the hold does not fit. On PostgreSQL that is one
    statement (the caller may run it in :meth:`Database.autocommit`); elsewhere it takes
    the caller's transaction.

    With ``lease`` the job is inserted already claimed by that owner (attempt 1, running):
    the process that takes the request runs it at once, with no claim of its own.
    """
    state = await workspace.governance(tx, principal.workspace_id)  # cached per transaction
    policy = workspace.charge_policy(state.billing_mode, plan.model)
    now = utcnow()
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
        created_at=now,
    )
    if lease is not None and plan.provider not in lease.elsewhere:
        job.status, job.attempt, job.started_at = jobs.RUNNING, 1, now
        job.lease_owner = lease.owner
        job.lease_expires_at = now + timedelta(seconds=lease.seconds)
    holding = policy == "charge" and plan.estimated_cost > 0
    if combines_writes(tx.dialect_name):
        params = {f"j_{name}": value for name, value in row_values(job).items()}
        params["g_version"] = state.version
        if holding:
            params |= billing.hold_params(principal.workspace_id, job.id, plan.estimated_cost, now)
        if idempotency_key is not None:
            key, request_hash = idempotency_key
            params |= {"k_member_id": principal.member_id, "k_key": key, "k_hash": request_hash}
        statement = _submit_statement(holding, idempotency_key is not None)
        inserted, current = (await tx.execute(statement, params)).first()
        if not current:
            raise workspace.StaleGovernance(principal.workspace_id)
        if inserted != 1:
            raise await billing.insufficient(tx, principal.workspace_id, plan.estimated_cost)
        return job
    await insert_rows(tx, job)
    if holding:
        await billing.hold(tx, principal.workspace_id, job.id, plan.estimated_cost)
    if idempotency_key is not None:
        key, request_hash = idempotency_key
        await idempotency.record(tx, principal.member_id, key, request_hash, job.id)
    return job


@functools.cache
def _submit_statement(holding: bool, keyed: bool) -> Select[int, bool]:
    """The job's insert, its hold and its idempotency key as one statement (PostgreSQL).

    Nothing is written unless the workspace's governance version is still ``g_version``,
    the one the submit was planned on; the job row is inserted only when the hold's
    account update took, and the key only with the job. The statement returns how many
    jobs it inserted (0: stale, or the hold did not fit) and whether the version held.
    """
    current = exists(
        select(WORKSPACES.c.id).where(
            WORKSPACES.c.id == bindparam("j_workspace_id", type_=String()),
            WORKSPACES.c.governance_version == bindparam("g_version", type_=BigInteger()),
        )
    )
    job_values = select(*(bindparam(f"j_{column.key}", type_=column.type) for column in JOBS.c))
    job_values = job_values.where(current)
    ctes: list[CTE] = []
    if holding:
        account, hold_rows = billing.hold_ctes(guard=current)
        job_values = job_values.where(exists(select(account.c.workspace_id)))
        ctes += hold_rows
    job = insert(JOBS).from_select(list(JOBS.c), job_values).returning(JOBS.c.id).cte("job")
    if keyed:
        keys = IDEMPOTENCY_KEYS.c
        key_row = insert(IDEMPOTENCY_KEYS).from_select(
            [keys.member_id, keys.key, keys.request_hash, keys.job_id, keys.created_at],
            select(
                bindparam("k_member_id", type_=String()),
                bindparam("k_key", type_=String()),
                bindparam("k_hash", type_=String()),
                job.c.id,
                bindparam("j_created_at", type_=UTCDateTime()),
            ),
        )
        ctes.append(key_row.cte("idempotency_key"))
    return (
        select(func.count().label("inserted"), current.label("current"))
        .select_from(job)
        .add_cte(*ctes)
    )


Planner = Callable[[ModelSpec, dict[str, Any]], Plan]

# The flat upscale price covers outputs up to about 24 megapixels (Topaz, in the image
# model reference).
DEFAULT_UPSCALE_MAX_PIXELS = 24_000_000
# Body fields that may hold source images, besides each model's reference parameter.
SOURCE_FIELDS = ("reference_files", "mask", "mask_file")


def _auto_sized(plan: Plan) -> bool:
    """Whether the model's size follows the source image (``auto``, ``auto_2K``, …)."""
    field_name = plan.model.sizes.field
    value = plan.params.get(field_name) if field_name else None
    return isinstance(value, str) and value.startswith("auto")


def sized_by_source(plan: Plan, source: tuple[int, int], upscale_max_pixels: int) -> Plan:
    """The plan's output size from its first source image: the input times the factor for
    an upscale (refused beyond ``upscale_max_pixels``), the source's aspect ratio at the
    planned pixel count where the model's size is ``auto``."""
    width, height = source
    if width <= 0 or height <= 0:
        return plan
    if "upscale" in plan.model.actions:
        factor = float(plan.params.get("upscale_factor") or 2)
        out_w, out_h = round(width * factor), round(height * factor)
        if out_w * out_h > upscale_max_pixels:
            most = (upscale_max_pixels / (width * height)) ** 0.5
            hint = (
                f"use upscale_factor {int(most * 100) / 100:g} or less"
                if most >= 1
                else "the input alone is larger than that"
            )
            raise InvalidParameter(
                f"Upscaling {width}x{height} by {factor:g} gives {out_w}x{out_h} "
                f"({out_w * out_h / 1e6:.1f} MP); {plan.model.slug} covers outputs up to "
                f"{upscale_max_pixels / 1e6:g} MP at its price: {hint}.",
                code="upscale_too_large",
                param="upscale_factor",
                extra={"max_output_pixels": upscale_max_pixels},
            )
        return dataclasses.replace(plan, width=out_w, height=out_h)
    pixels = plan.width * plan.height
    out_w = max(1, round((pixels * width / height) ** 0.5))
    out_h = max(1, round(pixels / out_w))
    return dataclasses.replace(plan, width=out_w, height=out_h)


@dataclass(frozen=True, slots=True)
class SourceSlot:
    """One image in a request body that is not a file yet: where it is and how to name it."""

    key: str
    index: int | None
    value: Any
    param: str


def source_slots(catalog: Catalog, body: dict[str, Any], names: dict[str, str]) -> list[SourceSlot]:
    """The images in ``body`` to fetch or store (uploads, data URIs, URLs); file ids and
    values that are no image at all (which the planner refuses) are left alone."""
    keys = {m.limits.references.field for m in catalog if m.limits.references} | {*SOURCE_FIELDS}
    slots = []
    for key in sorted(keys & body.keys()):
        value = body[key]
        shown = names.get(key, key)
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if sources.source_form(item) in ("upload", "data", "url"):
                # The edits route's one ``image`` is named as sent; list items by index.
                single = index is None or (len(items) == 1 and shown == "image")
                param = shown if single else f"{shown}[{index}]"
                slots.append(SourceSlot(key, index, item, param))
    return slots


def _placeholder(index: int) -> str:
    return f"file_pending{index}"


def _with(body: dict[str, Any], slots: list[SourceSlot], values: list[Any]) -> dict[str, Any]:
    out = dict(body)
    for slot, value in zip(slots, values, strict=True):
        if slot.index is None:
            out[slot.key] = value
        else:
            out[slot.key] = list(out[slot.key])
            out[slot.key][slot.index] = value
    return out


async def _fingerprintable(body: dict[str, Any]) -> dict[str, Any]:
    """The body with each upload as the digest of its bytes (for the idempotency hash)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, sources.Upload):
            out[key] = {"upload_sha256": await asyncio.to_thread(_digest, value)}
        elif isinstance(value, list) and any(isinstance(v, sources.Upload) for v in value):
            out[key] = [
                {"upload_sha256": await asyncio.to_thread(_digest, v)}
                if isinstance(v, sources.Upload)
                else v
                for v in value
            ]
        else:
            out[key] = value
    return out


def _digest(upload: sources.Upload) -> str:
    digest = hashlib.sha256()
    upload.handle.seek(0)
    while chunk := upload.handle.read(1024 * 1024):
        digest.update(chunk)
    upload.handle.seek(0)
    return digest.hexdigest()


async def _precheck(
    db: Database,
    catalog: Catalog,
    principal: Principal,
    choice: dict[str, Any],
    body: dict[str, Any],
    planner: Planner,
    slots: list[SourceSlot],
    configured: Collection[str] | None,
) -> None:
    """Everything that can be checked before a source image is fetched or stored: the
    model, the caller's right to use it, every parameter, and whether the credits fit."""
    trial = _with(body, slots, [_placeholder(i) for i in range(len(slots))])
    async with db.read_session() as session:
        chosen = await model_choice.choose_model(session, catalog, principal, choice)
        await model_choice.check_usable(session, principal, chosen.model)
        plan = planner(chosen.model, trial)
        state = await workspace.governance(session, principal.workspace_id)
        if not plan.mock:
            route_plan(plan, state.region_policy, configured)
        policy = workspace.charge_policy(state.billing_mode, plan.model)
        if policy == "charge" and plan.estimated_cost > 0:
            available = (await billing.balance(session, principal.workspace_id, 0)).available
            if available < plan.estimated_cost:
                raise await billing.insufficient(
                    as_tx(session), principal.workspace_id, plan.estimated_cost
                )


async def _resolve_sources(
    images: sources.SourceImages,
    principal: Principal,
    body: dict[str, Any],
    slots: list[SourceSlot],
) -> tuple[dict[str, Any], list[str]]:
    """The body with each slot's image as a file id; the ids of the files made for it."""
    created: list[str] = []
    ids: list[str] = []
    try:
        for slot in slots:
            source = await images.resolve(principal, slot.value, param=slot.param)
            if source.created:
                created.append(source.file_id)
            ids.append(source.file_id)
    except BaseException:
        await asyncio.shield(images.discard(created))
        raise
    return _with(body, slots, ids), created


def route_plan(plan: Plan, region_policy: str, configured: Collection[str] | None) -> Plan:
    """Bind the plan to the workspace's region policy and its first route that can serve it.

    With ``configured`` known, a model none of whose allowed routes has credentials is
    refused here, once, before a hold or a job exists (``provider_not_configured``).
    """
    model = plan.model
    region = plan.region or routing.policy_region(region_policy)
    allowed = routing.allowed_routes(model, region)
    servable = [r for r in allowed if configured is None or r.provider in configured]
    if not servable:
        providers = sorted({route.provider for route in allowed or model.routes})
        where = f" in region {region!r}" if region else ""
        needs: dict[str, str] = getattr(configured, "what_to_set", {})
        todo = "; or ".join(f"{needs[p]} ({p})" for p in providers if p in needs)
        todo = f"To use it, {todo} (see docs/providers.md)" if todo else "See docs/providers.md"
        raise ProviderNotConfigured(
            f"No provider that serves {model.slug!r}{where} is configured on this gateway "
            f"(it needs one of: {', '.join(providers)}). {todo}, "
            'or call it with "mock": true for a free placeholder.',
            param="model",
            extra={"providers": providers},
        )
    route = servable[0]
    return dataclasses.replace(plan, region=region, route=route, provider=route.provider)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who claims a job as it is inserted, and for how long."""

    owner: str
    seconds: float
    # Providers this process does not run (local routes served by another process):
    # their jobs are queued for that process instead.
    elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Submission:
    """A created job with its plan and model choice; both None when it is a replay.
    ``claim`` is set when the job was inserted already claimed (see :func:`submit`)."""

    job: Job
    plan: Plan | None = None
    choice: model_choice.ModelChoice | None = None
    claim: jobs.Claim | None = None

    @property
    def replayed(self) -> bool:
        return self.plan is None


async def _submit_new(
    tx: Tx,
    catalog: Catalog,
    principal: Principal,
    *,
    choice: dict[str, Any],
    body: dict[str, Any],
    planner: Planner,
    action: str,
    max_attempts: int,
    webhook_url: str | None,
    lease: Lease | None,
    idempotency_key: tuple[str, str] | None,
    upscale_max_pixels: int,
    configured: Collection[str] | None,
) -> Submission:
    """Choose the model, plan, check the files and submit, in ``tx``."""
    chosen = await model_choice.choose_model(tx, catalog, principal, choice)
    # A placeholder reaches no provider and costs nothing: any model the workspace could
    # enable may be tried with it.
    mock = body.get("mock") is True
    await model_choice.check_usable(tx, principal, chosen.model, mock=mock)
    plan = planner(chosen.model, body)
    if chosen.notices:
        plan = dataclasses.replace(plan, notices=[*chosen.notices, *plan.notices])
    given = [*plan.reference_files, *filter(None, [plan.mask_file])]
    if any(sources.source_form(image) != "file" for image in given):
        # A caller of this service that did not pass ``source_images``: say so, rather
        # than look URLs up as file ids.
        raise InvalidParameter(
            "Images given as URLs, data URIs or uploads are resolved by the gateway's "
            "source images (create_job(source_images=...)); this request's were not.",
            code="invalid_image_source",
            param="reference_files",
        )
    if not plan.mock:
        state = await workspace.governance(tx, principal.workspace_id)
        plan = route_plan(plan, state.region_policy, configured)
    owner = principal.only_member
    await files.require_files(tx, principal.workspace_id, plan.reference_files, member_id=owner)
    if plan.mask_file is not None:
        await files.require_files(
            tx, principal.workspace_id, [plan.mask_file], param="mask", member_id=owner
        )
    if plan.reference_files and (_auto_sized(plan) or "upscale" in plan.model.actions):
        source = await files.dimensions(tx, principal.workspace_id, plan.reference_files[0])
        if source is not None:
            plan = sized_by_source(plan, source, upscale_max_pixels)
    job = await submit(
        tx,
        principal,
        plan,
        body,
        action,
        max_attempts=max_attempts,
        webhook_url=webhook_url,
        lease=lease,
        idempotency_key=idempotency_key,
    )
    claim = None
    if lease is not None:
        claim = jobs.Claim(job, attempt=1, lease_owner=lease.owner, checked=True)
    return Submission(job, plan, chosen, claim)


async def create_job(
    db: Database,
    catalog: Catalog,
    principal: Principal,
    *,
    choice: dict[str, Any],
    body: dict[str, Any],
    planner: Planner,
    endpoint: str,
    action: str,
    idempotency_key: str | None,
    webhook_url: str | None,
    max_attempts: int,
    lease: Lease | None = None,
    memo: workspace.GovernanceMemo | None = None,
    source_images: sources.SourceImages | None = None,
    source_names: dict[str, str] | None = None,
    upscale_max_pixels: int = DEFAULT_UPSCALE_MAX_PIXELS,
    configured: Collection[str] | None = None,
) -> Submission:
    """Plan, hold and insert a job, once per idempotency key.

    When an earlier request with the same key made the job, that job comes back as a
    replay: the same job, no second hold. With ``lease`` a new job is inserted claimed.
    With ``memo`` (PostgreSQL) the job is planned on the workspace's governance as this
    process last read it, which the insert checks (see :class:`workspace.GovernanceMemo`).

    With ``source_images``, images in the body given as uploads, data URIs or URLs are
    resolved first (:mod:`imagegate.services.sources`), after everything that can be
    checked without them was checked; the job gets them as file ids, and they are
    deleted again if the request is refused or is a replay. With ``configured`` (the
    providers that have credentials) a model that no allowed route can serve is refused
    before anything is held, written or fetched.
    """
    slots = source_slots(catalog, body, source_names or {}) if source_images else []
    request_hash = ""
    if idempotency_key:
        request_hash = idempotency.fingerprint(endpoint, await _fingerprintable(body), webhook_url)
    if not slots:
        return await _create_job(
            db, catalog, principal, choice=choice, body=body, planner=planner,
            action=action, idempotency_key=idempotency_key, request_hash=request_hash,
            webhook_url=webhook_url, max_attempts=max_attempts, lease=lease, memo=memo,
            upscale_max_pixels=upscale_max_pixels, configured=configured,
        )  # fmt: skip
    assert source_images is not None
    if idempotency_key is not None:
        async with db.autocommit() as tx:
            existing = await idempotency.find(
                tx, principal.member_id, idempotency_key, request_hash
            )
        if existing is not None:  # a replay: nothing to fetch or store
            async with db.read_session() as session:
                job = await jobs.get_job(session, principal.workspace_id, existing)
            assert job is not None
            return Submission(job)
    await _precheck(db, catalog, principal, choice, body, planner, slots, configured)
    resolved, created = await _resolve_sources(source_images, principal, body, slots)
    try:
        submission = await _create_job(
            db, catalog, principal, choice=choice, body=resolved, planner=planner,
            action=action, idempotency_key=idempotency_key, request_hash=request_hash,
            webhook_url=webhook_url, max_attempts=max_attempts, lease=lease, memo=memo,
            upscale_max_pixels=upscale_max_pixels, configured=configured,
        )  # fmt: skip
    except BaseException:
        await asyncio.shield(source_images.discard(created))
        raise
    if submission.replayed:
        await source_images.discard(created)
    return submission


async def _create_job(
    db: Database,
    catalog: Catalog,
    principal: Principal,
    *,
    choice: dict[str, Any],
    body: dict[str, Any],
    planner: Planner,
    action: str,
    idempotency_key: str | None,
    request_hash: str,
    webhook_url: str | None,
    max_attempts: int,
    lease: Lease | None,
    memo: workspace.GovernanceMemo | None,
    upscale_max_pixels: int,
    configured: Collection[str] | None,
) -> Submission:
    if memo is not None and not combines_writes(db.dialect_name):
        memo = None  # only the one-statement submit checks the version
    raced = stale = 0
    while True:
        existing: str | None = None
        recalled = False
        try:
            async with db.autocommit() as tx:
                if idempotency_key is not None:
                    existing = await idempotency.find(
                        tx, principal.member_id, idempotency_key, request_hash
                    )
                if existing is None:
                    recalled = memo is not None and memo.recall(tx, principal.workspace_id)
                    try:
                        return await _submit_new(
                            tx,
                            catalog,
                            principal,
                            choice=choice,
                            body=body,
                            planner=planner,
                            action=action,
                            max_attempts=max_attempts,
                            webhook_url=webhook_url,
                            lease=lease,
                            idempotency_key=(
                                None if idempotency_key is None else (idempotency_key, request_hash)
                            ),
                            upscale_max_pixels=upscale_max_pixels,
                            configured=configured,
                        )
                    except ImagegateError as exc:
                        # A refusal planned on a remembered state is checked on a fresh
                        # read; one planned on a fresh state (or a 402, whose statement
                        # confirmed the version) stands.
                        if recalled and not isinstance(exc, InsufficientCredits):
                            raise workspace.StaleGovernance(principal.workspace_id) from None
                        raise
                    finally:
                        # What this unit read is kept, even for a refusal that stands; a
                        # stale state is forgotten again below.
                        if memo is not None:
                            memo.keep(tx, principal.workspace_id)
        except IntegrityError:
            if idempotency_key is None:
                raise
            raced += 1
            if raced > 1:
                raise idempotency.in_flight() from None
            # A concurrent request with the same key won the insert: look again.
            continue
        except workspace.StaleGovernance:
            stale += 1
            if stale > _STALE_RETRIES:
                raise Conflict(
                    "The workspace's settings kept changing while this request was planned; retry.",
                    code="workspace_changing",
                ) from None
            if memo is not None:
                memo.forget(principal.workspace_id)
            continue
        # The job this key made earlier: the same job, no second hold.
        async with db.read_session() as session:
            job = await jobs.get_job(session, principal.workspace_id, existing)
        assert job is not None
        return Submission(job)


# How often a submit is planned again when the workspace's governance changed under it.
_STALE_RETRIES = 3


async def wait_for_job(
    db: Database,
    event: asyncio.Event,
    workspace_id: str,
    job_id: str,
    timeout: float,
    *,
    just_submitted: bool = False,
    finished: Callable[[], Job | None] | None = None,
    runs_here: Callable[[], bool] | None = None,
    recheck_seconds: float = 1.0,
) -> Job:
    """Wait until the job is terminal or ``timeout`` passes; the job as it then is.

    ``just_submitted``: the job was queued a moment ago, so the first look at the
    database is skipped (it could only say "queued"); the event wakes us when it ends.
    ``finished``: the job as it ended when this process ran it (no need to read it back),
    else None. ``runs_here``: whether an attempt at the job runs in this process now; its
    end sets the event, so the database is not polled meanwhile. ``recheck_seconds``: how
    often the database is read while the job runs elsewhere (its end sets the event too
    when instances signal each other; the reads catch a signal that was lost).
    """
    deadline = time.monotonic() + timeout
    skip_read = just_submitted
    while True:
        if skip_read:
            skip_read = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(timeout, recheck_seconds))
            event.clear()
        known = finished() if finished is not None else None
        if known is not None:
            return known
        if runs_here is not None and runs_here() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(deadline - time.monotonic(), 1.0))
            event.clear()
            continue
        async with db.read_session() as session:
            job = await jobs.get_job(session, workspace_id, job_id)
        assert job is not None
        remaining = deadline - time.monotonic()
        if job.status in jobs.TERMINAL or remaining <= 0:
            return job
        # Another process may run the job: look again now and then.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(remaining, recheck_seconds))
        event.clear()
