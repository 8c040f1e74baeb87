"""Settings, read from ``IMAGEGATE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The user's own data dir (``$XDG_DATA_HOME/imagegate``, else
    ``~/.local/share/imagegate`` on Linux), the same from whichever folder a command runs."""
    return user_data_path("imagegate", appauthor=False)


class Settings(BaseSettings):
    """Everything an operator can set. Each field is ``IMAGEGATE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded database and files live; default the user's data dir.",
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
    price_sources: list[str] = Field(
        default_factory=list,
        description="Which of a model's shipped prices to use where public sources disagree, "
        'best first, as a JSON list (e.g. ["usd_list", "tier_table"]); docs/catalog.md.',
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        description="Database connections kept per process (PostgreSQL may open as many again).",
    )
    database_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long a request waits for a free connection."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(
        default=1,
        ge=1,
        description=(
            "Server processes sharing the port (`imagegate serve`). Each runs its own workers "
            "and connection pool; jobs are leased through the database."
        ),
    )
    public_url: str | None = Field(
        default=None, description="Base URL used in signed links; default http://host:port."
    )
    url_ttl_seconds: int = Field(default=3600, ge=1, description="Lifetime of signed output URLs.")
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="Largest request body."
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a process trusts an API key it has looked up. A key revoked, or a role "
            "changed, through this process applies at once; through another within this time. "
            "0 looks every key up on every request."
        ),
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
    credits_per_usd: int = Field(
        default=200, ge=1, description="Credits charged per US dollar of a price stated in USD."
    )
    credit_value_micro_eur: int = Field(
        default=4600, ge=1, description="One credit in micro-euros, for EUR price display."
    )
    log_level: str = "info"

    # Several instances (docs/deployment.md).
    run_worker: bool = Field(
        default=True,
        description="Run jobs in this process; false (`imagegate serve --no-worker`): API only.",
    )
    listen_notify: bool = Field(
        default=True,
        description=(
            "On PostgreSQL, wake other instances with LISTEN/NOTIFY (job ends, new jobs, "
            "cancels, key and governance changes); false: they find out by polling."
        ),
    )
    notify_fallback_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "While notifications arrive, how often waiting requests and idle workers still "
            "look at the database, in case one was missed (without them: every second)."
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "On SIGTERM, how long running jobs may take to finish before their leases are "
            "handed back to other instances."
        ),
    )
    shutdown_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description=(
            "On SIGTERM, how long the server keeps accepting requests while /readyz says "
            "unready, so that a load balancer stops sending new ones first."
        ),
    )
    metrics_enabled: bool = Field(
        default=False, description="Serve Prometheus metrics at /metrics (no key needed)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per log line, with request_id and job_id.",
    )
    otel_enabled: bool = Field(
        default=False,
        description=(
            "Send OpenTelemetry traces (needs the imagegate[otel] extra; the exporter is "
            "set with the standard OTEL_* variables)."
        ),
    )

    # Providers (docs/providers.md). A credential left unset here falls back to the
    # provider's own environment variable (OPENAI_API_KEY, BFL_API_KEY, ...).
    openai_api_key: SecretStr | None = Field(
        default=None, description="OpenAI key; else OPENAI_API_KEY."
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", description="OpenAI API base URL."
    )
    bfl_api_key: SecretStr | None = Field(
        default=None, description="Black Forest Labs key; else BFL_API_KEY."
    )
    bfl_region: Literal["global", "eu", "us"] = Field(
        default="global", description="BFL endpoint when a model's route names no region."
    )
    bfl_base_url: str = Field(default="https://api.bfl.ai/v1", description="BFL global endpoint.")
    bfl_eu_base_url: str = Field(default="https://api.eu.bfl.ai/v1", description="BFL EU endpoint.")
    bfl_us_base_url: str = Field(default="https://api.us.bfl.ai/v1", description="BFL US endpoint.")
    gemini_api_key: SecretStr | None = Field(
        default=None, description="Gemini API key; else GEMINI_API_KEY or GOOGLE_API_KEY."
    )
    gemini_base_url: str = Field(
        default="https://generativelanguage.googleapis.com/v1beta",
        description="Gemini API base URL.",
    )
    vertex_access_token: SecretStr | None = Field(
        default=None, description="OAuth bearer token for Vertex AI; else VERTEX_ACCESS_TOKEN."
    )
    vertex_credentials_file: Path | None = Field(
        default=None,
        description="Service-account JSON for Vertex AI; else GOOGLE_APPLICATION_CREDENTIALS.",
    )
    vertex_project: str | None = Field(
        default=None, description="Google Cloud project; else GOOGLE_CLOUD_PROJECT."
    )
    vertex_location: str = Field(
        default="europe-west4", description="Vertex AI region when a route names none."
    )
    vertex_base_url: str | None = Field(
        default=None,
        description="Vertex AI base URL; default https://LOCATION-aiplatform.googleapis.com/v1.",
    )
    fal_key: SecretStr | None = Field(default=None, description="fal key; else FAL_KEY.")
    fal_queue_url: str = Field(default="https://queue.fal.run", description="fal queue base URL.")
    fal_api_url: str = Field(
        default="https://api.fal.ai/v1", description="fal platform API (used by checks)."
    )
    replicate_api_token: SecretStr | None = Field(
        default=None, description="Replicate token; else REPLICATE_API_TOKEN."
    )
    replicate_base_url: str = Field(
        default="https://api.replicate.com/v1", description="Replicate API base URL."
    )
    recraft_api_token: SecretStr | None = Field(
        default=None, description="Recraft token; else RECRAFT_API_TOKEN."
    )
    recraft_base_url: str = Field(
        default="https://external.api.recraft.ai/v1", description="Recraft API base URL."
    )
    xai_api_key: SecretStr | None = Field(default=None, description="xAI key; else XAI_API_KEY.")
    xai_base_url: str = Field(default="https://api.x.ai/v1", description="xAI API base URL.")
    provider_retries: int = Field(
        default=3, ge=1, le=10, description="Tries per upstream HTTP call on 429, 5xx and timeouts."
    )
    provider_backoff_seconds: float = Field(
        default=0.5, ge=0, description="Base of the jittered exponential backoff between tries."
    )
    provider_backoff_max_seconds: float = Field(
        default=8.0, ge=0, description="Longest backoff between tries."
    )
    provider_max_retry_after_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest Retry-After waited inside one attempt; longer ones re-queue the job.",
    )
    provider_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="Pause between status polls of queued upstream work."
    )
    provider_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Connect timeout upstream."
    )
    provider_body_reads: int = Field(
        default=8,
        ge=1,
        description=(
            "Upstream response bodies this process reads at once: a burst of multi-megabyte "
            "answers arriving together is taken a few at a time, which bounds memory."
        ),
    )
    provider_max_output_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Largest image downloaded from a provider."
    )

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
    source_retention_seconds: int = Field(
        default=2 * 3600,
        ge=60,
        description=(
            "How long a source image sent with a request (upload, data URI, URL) is kept for "
            "its job; a refused request's sources are deleted at once. Keep it above "
            "queued_ttl_seconds."
        ),
    )
    source_decode_slots: int = Field(
        default=2,
        ge=1,
        description="Large source images (over 4 megapixels) decoded at once by this process.",
    )
    fetch_allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names that image URLs and webhooks may reach on private addresses "
            "(an internal asset server). Empty: only public addresses."
        ),
    )
    fetch_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest image fetched from a URL."
    )
    fetch_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect timeout when fetching an image URL."
    )
    fetch_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Whole-fetch timeout of an image URL."
    )
    fetch_max_redirects: int = Field(
        default=3, ge=0, le=10, description="Redirects followed (each checked) per image URL."
    )
    upscale_max_output_pixels: int = Field(
        default=24_000_000,
        ge=1,
        description="Largest upscale output (input pixels x factor squared) the flat price covers.",
    )
    signing_key_rotation_days: float = Field(
        default=0, ge=0, description="Rotate the URL signing key this often; 0: only by command."
    )
    # Who may mint credits (docs/admin.md, "Roles").
    admin_credit_grants: Literal["single_workspace", "always", "never"] = Field(
        default="single_workspace",
        description=(
            "Whether workspace admins may grant credits to their own workspace: only while "
            "the instance hosts a single workspace, always, or never (operators only)."
        ),
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
