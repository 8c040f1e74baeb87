"""Settings, read from ``IMAGEGATE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    log_level: str = "info"

    # Files and storage (docs/files.md).
    blob_backend: Literal["local", "s3"] = Field(
        default="local", description="Where file bytes live: the data dir, or S3-compatible storage"
    )
    s3_bucket: str | None = Field(default=None, description="Bucket for blob_backend=s3.")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. imagegate/.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, R2, …); default AWS."
    )
    s3_region: str | None = Field(default=None, description="Region of the bucket.")
    s3_access_key_id: str | None = Field(
        default=None, description="Default: the AWS credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret for s3_access_key_id."
    )
    s3_presigned_urls: bool = Field(
        default=False, description="Hand out the store's own presigned URLs for raster outputs."
    )
    output_retention_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="How long generated outputs are kept unless kept as files.",
    )
    retention_sweep_seconds: float = Field(
        default=60.0, gt=0, description="How often expired files are purged with their blobs."
    )
    upload_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest uploaded file."
    )
    upload_max_pixels: int = Field(
        default=89_478_485, ge=1, description="Largest uploaded image in pixels (width x height)."
    )
    signing_key_rotation_days: float = Field(
        default=0, ge=0, description="Rotate the URL signing key this often; 0: only by command."
    )

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.public_url is not None:
            self.public_url = self.public_url.rstrip("/")
        if self.blob_backend == "s3" and not self.s3_bucket:
            raise ValueError("blob_backend=s3 needs IMAGEGATE_S3_BUCKET")
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
