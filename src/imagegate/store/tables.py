"""Tables. Money columns are integers in millicredits (1 credit = 1000)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_model: Mapped[str | None] = mapped_column(String(100))
    image_generation_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    billing_mode: Mapped[str] = mapped_column(String(20), default="prepaid")
    region_policy: Mapped[str] = mapped_column(String(20), default="any")
    margin_percent: Mapped[int] = mapped_column(Integer, default=20)
    # The admin's opt-in to models made by PRC-based companies (migration 0011).
    prc_models_allowed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Whether members may use models without a provider safety filter (self-hosted).
    unfiltered_models_allowed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Changed by the database on every change to what generation checks (migration 0005).
    governance_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Member(Base):
    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # The instance-wide operator role, apart from the workspace role (migration 0007).
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    selected_model: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class WorkspaceModel(Base):
    """Whether a catalog model is enabled in a workspace (absent row: disabled)."""

    __tablename__ = "workspace_models"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_workspace_created", "workspace_id", "id"),
        Index("ix_jobs_status_not_before", "status", "not_before"),
        Index("ix_jobs_workspace_member", "workspace_id", "member_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    model: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(20), default="generate")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    estimated_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_amount: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    not_before: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    provider_reason: Mapped[str | None] = mapped_column(Text)
    provider_request_id: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    charge_policy: Mapped[str] = mapped_column(String(20), default="charge")


class File(Base):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_workspace_created", "workspace_id", "id"),
        Index("ix_files_expires_at", "expires_at"),
        Index("ix_files_workspace_member", "workspace_id", "member_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    # Whose file it is (an output: its job's member); None: the workspace admins' alone.
    member_id: Mapped[str | None] = mapped_column(String(40))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    output_index: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()


class SigningKey(Base):
    """Keys for signed file URLs; the newest signs, all unexpired ones verify."""

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("kid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kid: Mapped[str] = mapped_column(String(40))
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditAccount(Base):
    """A workspace's balance: ``available`` can be spent, ``held`` is reserved by jobs.

    Changed only by conditional UPDATEs in services/billing.py, never read-modify-write.
    """

    __tablename__ = "credit_accounts"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditHold(Base):
    """The hold a job placed; settled exactly once (captured or released)."""

    __tablename__ = "credit_holds"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="held")
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column()


class LedgerEntry(Base):
    """Append-only: grant, hold, capture, release, usage (recorded, not charged)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_workspace_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(40), index=True)
    member_id: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A caller's key bound to the request it first came with and the job it made."""

    __tablename__ = "idempotency_keys"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookDelivery(Base):
    """The outbox of webhook events, written with the job's terminal state; its log too."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(Base):
    """One admin change: who made it, to what, the state before and after, and when."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_workspace_id_id", "workspace_id", "id"),)

    # A sequence, not a time-based id: one workspace's changes are serialised, so its
    # events number in the order they were made.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    actor_member_id: Mapped[str | None] = mapped_column(String(40))
    actor_key_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The tables behind the models, for Core statements on hot paths: a statement on a table
# skips the ORM's layers (bulk update, row loading), about a tenth of a millisecond each.
# Name the table's columns in it too (``JOBS.c.id``, not ``Job.id``): one mapped attribute
# anywhere in a statement makes it an ORM statement again.
WORKSPACES = cast(Table, Workspace.__table__)
WORKSPACE_MODELS = cast(Table, WorkspaceModel.__table__)
JOBS = cast(Table, Job.__table__)
CREDIT_ACCOUNTS = cast(Table, CreditAccount.__table__)
CREDIT_HOLDS = cast(Table, CreditHold.__table__)
LEDGER_ENTRIES = cast(Table, LedgerEntry.__table__)
FILES = cast(Table, File.__table__)
MEMBERS = cast(Table, Member.__table__)
IDEMPOTENCY_KEYS = cast(Table, IdempotencyKey.__table__)
