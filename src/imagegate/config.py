"""Settings, read from ``IMAGEGATE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Each field is ``IMAGEGATE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(default=Path(".imagegate"), description="Where the embedded database and files live.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default SQLite in the data dir. "
        "PostgreSQL: postgresql+asyncpg://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL used in signed links; default http://host:port."
    )
    url_ttl_seconds: int = Field(default=3600, ge=1, description="Lifetime of signed output URLs.")
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="Largest request body.")
    sync_timeout_seconds: float = Field(
        default=300.0, gt=0, description="How long a synchronous generation waits for its job."
    )
    worker_concurrency: int = Field(default=16, ge=1, description="Jobs run at once by this process.")
    lease_seconds: float = Field(default=30.0, gt=0, description="A worker's lease on a running job.")
    bootstrap_workspace: str = Field(default="Default workspace", description="Name of the first workspace.")
    credits_per_usd: int = Field(
        default=200, ge=1, description="Credits charged per US dollar of a price stated in USD."
    )
    catalog_dir: Path | None = Field(
        default=None,
        description="Extra catalog files; an entry with a built-in slug replaces that one.",
    )
    credit_value_micro_eur: int = Field(
        default=4600, ge=1, description="One credit in micro-euros, for EUR price display."
    )
    log_level: str = "info"

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
