"""The shapes of the answers, for ``/openapi.json``.

Routes render their answers themselves (orjson, base64 written in place); these models
describe them in the spec (``responses={200: {"model": …}}``) and are not run on each
answer. Objects may carry more fields than listed (``additionalProperties``), so that a
field added to an answer never breaks a client generated from the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CreditAmount = float  # a credit amount: a JSON number, exact to 3 decimals
Timestamp = int  # Unix seconds

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "expired"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- jobs and images -------------------------------------------------------------------


class JobError(_Answer):
    code: str | None
    message: str | None
    provider_reason: str | None


class JobOutput(_Answer):
    """A stored output (``file_id`` and a signed ``url``), or a sync_mode image inline (a
    data URI as ``url``, no ``file_id``)."""

    url: str
    file_id: str | None = None
    url_expires_at: Timestamp | None = None
    width: int | None = None
    height: int | None = None
    content_type: str
    bytes: int | None = None
    expires_at: Timestamp | None = None


class Job(_Answer):
    id: str
    job_id: str
    object: Literal["job"]
    model: str
    status: JobStatus
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    attempt: int
    estimated_cost: CreditAmount
    charged_amount: CreditAmount | None
    error: JobError | None = Field(
        default=None, description="Why a failed, canceled or expired job ended."
    )
    outputs: list[JobOutput] | None = Field(
        default=None, description="The job's images (absent from lists)."
    )
    sync_mode: bool | None = Field(
        default=None, description="true: the images were answered inline and are not kept."
    )
    notice: str | None = None


class JobList(_Answer):
    object: Literal["list"]
    data: list[Job]
    has_more: bool
    next_cursor: str | None


class WebhookDelivery(_Answer):
    id: str
    event_type: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: Timestamp | None
    delivered_at: Timestamp | None
    next_attempt_at: Timestamp | None


class WebhookDeliveryList(_Answer):
    object: Literal["list"]
    data: list[WebhookDelivery]


class ImageData(_Answer):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None
    file_id: str | None = None
    width: int | None = None
    height: int | None = None
    content_type: str | None = None


class ModelFallback(_Answer):
    from_: str = Field(alias="from")
    to: str
    reason: str
    message: str


class ImagesResponse(_Answer):
    """OpenAI's Images API answer, with the job, its size and its cost."""

    created: Timestamp
    data: list[ImageData]
    id: str
    job_id: str
    model: str
    width: int | None
    height: int | None
    output_format: str | None
    estimated_cost: CreditAmount
    charged_amount: CreditAmount
    model_fallback: ModelFallback | None = None


class EstimatePrice(_Answer):
    rule: str
    description: str
    source: str | None


class Estimate(_Answer):
    """What a request would cost and yield (``?dry_run=true``, ``/v1/pricing/estimate``)."""

    object: Literal["estimate"]
    dry_run: bool
    model: str
    provider: str
    region: str | None
    status: str
    replacement: str | None
    params: dict[str, Any]
    n: int
    width: int | None
    height: int | None
    output_format: str | None
    estimated_cost: CreditAmount
    estimated_cost_eur: float
    margin_percent: int
    price: EstimatePrice
    notices: list[str]


# ---- files -----------------------------------------------------------------------------


class FileObject(_Answer):
    id: str
    object: Literal["file"]
    purpose: str
    status: str
    filename: str
    bytes: int
    content_type: str
    width: int | None
    height: int | None
    sha256: str
    job_id: str | None
    created_at: Timestamp | None
    expires_at: Timestamp | None
    url: str
    url_expires_at: Timestamp


class FileList(_Answer):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(_Answer):
    id: str
    object: Literal["file"]
    deleted: bool


# ---- models and prices -----------------------------------------------------------------


class ReferencePrice(_Answer):
    width: int | None
    height: int | None
    credits: CreditAmount
    eur: float


class Price(_Answer):
    rule: str
    currency: str | None
    description: str
    source: str | None
    per_image_1024: ReferencePrice


class Model(_Answer):
    id: str
    object: Literal["model"]
    created: Timestamp
    owned_by: str
    name: str
    provider: str
    description: str | None
    aliases: list[str]
    modality: str
    capabilities: list[str]
    status: str
    deprecated: bool
    preview: bool
    replacement: str | None
    region: str | None
    regions: list[str]
    tier: str | None
    premium: bool
    stars: int | None
    enabled: bool
    default: bool
    allowedParams: dict[str, Any]
    pricing: Price


class ModelDetail(Model):
    input_schema: dict[str, Any]
    limits: dict[str, Any]
    provenance: str | None


class ModelList(_Answer):
    object: Literal["list"]
    data: list[Model]


class PriceRow(Price):
    model: str
    name: str
    provider: str
    tier: str | None
    premium: bool
    status: str
    enabled: bool


class PriceTable(_Answer):
    object: Literal["list"]
    reference_size: str
    credits_per_usd: float
    credit_value_eur: float
    margin_percent: int
    rule: str
    data: list[PriceRow]


# ---- credits, webhooks, the caller ---------------------------------------------------


class LedgerEntry(_Answer):
    id: str
    kind: str
    amount: CreditAmount
    job_id: str | None
    member_id: str | None
    note: str | None
    created_at: Timestamp


class Balance(_Answer):
    object: Literal["credits"]
    available: CreditAmount
    held: CreditAmount


class CreditsOverview(Balance):
    entries: list[LedgerEntry]


class WebhookSecret(_Answer):
    secret: str


class Me(_Answer):
    id: str
    object: Literal["member"]
    name: str
    role: str
    workspace_id: str
    selected_model: str | None
    model: str | None
    default_model: str | None
    image_generation_enabled: bool


# ---- administration ------------------------------------------------------------------


class ImageModelSettings(_Answer):
    """The ``Settings → Image models`` page: every model grouped by provider."""

    object: str
    default_model: str | None
    image_generation_enabled: bool
    billing_mode: str
    region_policy: str
    margin_percent: int
    enabled_models: list[str]
    warnings: list[dict[str, Any]]
    providers: list[dict[str, Any]] | None = None


class AdminImageModel(_Answer):
    id: str
    name: str
    provider: str
    enabled: bool
    default: bool


class DefaultModelChange(_Answer):
    default_model: str | None
    previous_default_model: str | None
    changed: bool


class ModelToggleChange(_Answer):
    model: AdminImageModel
    default_model: str | None
    previous_default_model: str | None
    changed: bool


class WorkspaceSettings(_Answer):
    image_generation_enabled: bool
    billing_mode: str
    region_policy: str
    margin_percent: int


class Member(_Answer):
    id: str
    object: Literal["member"]
    name: str
    role: str
    selected_model: str | None
    created_at: Timestamp


class MemberList(_Answer):
    object: Literal["list"]
    data: list[Member]


class ApiKey(_Answer):
    id: str
    object: Literal["api_key"]
    name: str
    prefix: str
    member_id: str
    created_at: Timestamp
    revoked_at: Timestamp | None


class NewApiKey(ApiKey):
    key: str = Field(description="The secret, shown in this answer only.")


class ApiKeyList(_Answer):
    object: Literal["list"]
    data: list[ApiKey]


class AuditEvent(_Answer):
    id: int
    object: Literal["audit_event"]
    action: str
    target: str | None
    actor: dict[str, Any]
    before: Any
    after: Any
    created_at: Timestamp


class AuditList(_Answer):
    object: Literal["list"]
    data: list[AuditEvent]
    has_more: bool
    next_before: int | None


def ok(model: type[BaseModel], status: int = 200, description: str = "") -> dict[int | str, Any]:
    """``responses`` entry of a route's success answer."""
    entry: dict[str, Any] = {"model": model}
    if description:
        entry["description"] = description
    return {status: entry}
