"""Settings, read from ``IMAGEGATE_*`` environment variables."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Each field is ``IMAGEGATE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(
        default=Path(".imagegate"), description="Where the embedded database and files live."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default SQLite in the data dir. "
        "PostgreSQL: postgresql+asyncpg://user@host/db",
    )
    catalog_dirs: list[Path] = Field(
        default_factory=list,
        description="Extra folders of catalog YAML files, added to the built-in catalog.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL used in signed links; default http://host:port."
    )
    url_ttl_seconds: int = Field(default=3600, ge=1, description="Lifetime of signed output URLs.")
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="Largest request body."
    )
    sync_timeout_seconds: float = Field(
        default=300.0, gt=0, description="How long a synchronous generation waits for its job."
    )
    worker_concurrency: int = Field(
        default=16, ge=1, description="Jobs run at once by this process."
    )
    lease_seconds: float = Field(
        default=30.0, gt=0, description="A worker's lease on a running job."
    )
    retry_base_seconds: float = Field(
        default=1.0,
        gt=0,
        description="First retry delay of a job after a transient provider error.",
    )
    retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest retry delay.")
    max_attempts: int = Field(default=3, ge=1, description="Attempts per job before it fails.")
    provider_concurrency: int = Field(
        default=8, ge=1, description="Jobs this process runs at once against one provider."
    )
    queued_ttl_seconds: float = Field(
        default=3600.0, gt=0, description="A job still queued after this long expires."
    )
    idempotency_ttl_seconds: float = Field(
        default=48 * 3600.0, ge=24 * 3600.0, description="How long idempotency keys are kept."
    )
    webhook_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="First webhook retry delay; later ones grow from it."
    )
    webhooks_allow_loopback: bool = Field(
        default=False, description="Allow webhook URLs on loopback addresses (for tests)."
    )
    mock_latency_seconds: float = Field(
        default=0.0, ge=0, description="Added delay of the mock provider, to simulate upstreams."
    )
    bootstrap_workspace: str = Field(
        default="Default workspace", description="Name of the first workspace."
    )
    log_level: str = "info"
    credit_value_eur: Decimal = Field(
        default=Decimal("0.01"),
        gt=0,
        description="What one credit costs in euro before a workspace's margin (EUR prices).",
    )

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.public_url is not None:
            self.public_url = self.public_url.rstrip("/")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagegate.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
