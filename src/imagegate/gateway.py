"""The running gateway's parts, built from settings; shared by the HTTP app and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from datetime import timedelta

from sqlalchemy import text

from imagegate.blobs import BlobStore, blob_store
from imagegate.catalog import Catalog, load_catalog
from imagegate.config import Settings
from imagegate.observe.metrics import Metrics
from imagegate.providers.endpoints import register_endpoints
from imagegate.providers.registry import ProviderRegistry, default_registry
from imagegate.services import files, signing
from imagegate.services.bootstrap import bootstrap
from imagegate.services.fetcher import AddressPolicy, Fetcher
from imagegate.services.keys import PrincipalCache
from imagegate.services.signing import Signer, load_signer
from imagegate.services.sources import SourceImages
from imagegate.services.webhooks import WebhookSender
from imagegate.services.workspace import GovernanceMemo
from imagegate.store import signals as sig
from imagegate.store.db import Database
from imagegate.store.tables import File
from imagegate.worker.dispatcher import EmbeddedDispatcher
from imagegate.worker.runner import JobRunner
from imagegate.worker.tasks import cancel_and_wait

log = logging.getLogger("imagegate")

# How long an upstream may take to fetch an input image through its signed link.
INPUT_LINK_SECONDS = 15 * 60


async def prepare(settings: Settings) -> str | None:
    """Migrate and bootstrap without serving; the first admin key if this created it."""
    gateway = Gateway(settings, run_workers=False)
    await gateway.start()
    await gateway.stop()
    return gateway.first_admin_key


class Gateway:
    """Everything a request needs; ``start()`` migrates, bootstraps and starts workers."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        providers: ProviderRegistry | None = None,
        blobs: BlobStore | None = None,
        run_workers: bool | None = None,
        only_providers: Collection[str] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog(
            settings.catalog_dirs,
            credits_per_usd=settings.credits_per_usd,
            price_sources=settings.price_sources,
        )
        self.providers = providers or default_registry(settings)
        register_endpoints(self.providers, self.catalog.endpoints, settings)
        # Local routes another process serves (imagegate worker --local): not run here.
        elsewhere = [
            name
            for name, endpoint in self.catalog.endpoints.items()
            if endpoint.type == "local" and name not in self.providers.names()
        ]
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.blobs: BlobStore = blobs or blob_store(settings)
        self.db = Database(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout_seconds,
        )
        self.principals = PrincipalCache(settings.auth_cache_seconds)
        # Submits plan on the governance last read here; the insert checks it is current.
        self.governance = GovernanceMemo()
        self.runner = JobRunner(
            self.db,
            self.catalog,
            self.providers,
            self.blobs,
            lease_seconds=settings.lease_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            provider_concurrency=settings.provider_concurrency,
            output_retention_seconds=settings.output_retention_seconds,
        )
        # Every URL a caller gives (image sources, webhooks) is reached through this.
        self.fetcher = Fetcher(
            AddressPolicy(allowed_hosts=settings.fetch_allowed_hosts),
            max_bytes=settings.fetch_max_bytes,
            connect_timeout=settings.fetch_connect_timeout_seconds,
            total_timeout=settings.fetch_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
        )
        self.sources = SourceImages(
            self.db,
            self.blobs,
            self.fetcher,
            max_bytes=settings.upload_max_bytes,
            max_pixels=settings.upload_max_pixels,
            retention_seconds=settings.source_retention_seconds,
            decode_slots=settings.source_decode_slots,
        )
        self.webhooks = WebhookSender(
            self.db,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            allow_loopback=settings.webhooks_allow_loopback,
            allowed_hosts=settings.fetch_allowed_hosts,
        )
        self.dispatcher = EmbeddedDispatcher(
            self.db,
            self.runner,
            concurrency=settings.worker_concurrency,
            queued_ttl_seconds=settings.queued_ttl_seconds,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
            webhooks=self.webhooks,
            only=only_providers,
            elsewhere=elsewhere,
        )
        self.runner.only_providers = self.dispatcher.only
        self.runner.elsewhere_providers = self.dispatcher.elsewhere
        self.run_workers = settings.run_worker if run_workers is None else run_workers
        # An API-only instance (not a CLI command's gateway) still sweeps and picks up
        # rotated signing keys.
        self._serves_api_only = run_workers is None and not settings.run_worker
        self._signer: Signer | None = None
        self.first_admin_key: str | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self.metrics = Metrics()
        self.runner.metrics = self.metrics
        self.webhooks.metrics = self.metrics
        self.signals = sig.Signals(self.db.engine, enabled=settings.listen_notify)
        self._wire_signals()
        self.dispatcher.poll_every = self.recheck_seconds
        self.runner.on_finished = self._attempt_ended
        self.dispatcher.announce_queued = lambda ids: self.signals.publish(sig.JOB_QUEUED, *ids)
        self.started = False
        self.draining = False
        self._drain: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None

    def _wire_signals(self) -> None:
        """What each signal from another instance does here."""
        signals = self.signals

        def ended(job_ids: list[str]) -> None:
            for job_id in job_ids:
                self.dispatcher.notify(job_id)

        def canceled(job_ids: list[str]) -> None:
            for job_id in job_ids:
                if self.dispatcher.cancel_local(job_id):
                    log.info("job %s canceled elsewhere; stopped here", job_id)
                self.dispatcher.notify(job_id)

        def governance(workspace_ids: list[str]) -> None:
            for workspace_id in workspace_ids:
                self.governance.forget(workspace_id)

        signals.on(sig.JOB_ENDED, ended)
        signals.on(sig.JOB_CANCELED, canceled)
        signals.on(sig.JOB_QUEUED, self.dispatcher.offer)
        signals.on(sig.KEYS_CHANGED, lambda _: self.principals.clear())
        signals.on(sig.GOVERNANCE_CHANGED, governance)
        signals.on_connect(self._resync)

    def _resync(self) -> None:
        """The listener (re)connected: what was sent meanwhile is lost, so forget what the
        caches hold and let every waiting request look at its job again."""
        self.principals.clear()
        self.governance.clear()
        self.dispatcher.notify_all()

    def recheck_seconds(self) -> float:
        """How often a waiting request or an idle worker looks at the database itself."""
        return self.settings.notify_fallback_seconds if self.signals.live else 1.0

    def _attempt_ended(self, job_id: str) -> None:
        self.dispatcher.notify(job_id)
        self.signals.publish(sig.JOB_ENDED, job_id)

    def queue_job(self, job_id: str) -> None:
        """A job queued without a worker of this process on it: this process takes it when
        a slot is free, and every other worker hears of it at once."""
        if self.dispatcher.running:
            self.dispatcher.submit(job_id)
        self.signals.publish(sig.JOB_QUEUED, job_id)

    @property
    def ready(self) -> bool:
        """Whether this instance takes new requests (started, not shutting down)."""
        return self.started and not self.draining

    def begin_drain(self) -> None:
        """Start a graceful shutdown: unready at once, no new attempts here, running ones
        get ``shutdown_grace_seconds`` to finish, then the rest are handed back."""
        if self._drain is None:
            self.draining = True
            self.metrics.draining.set(1)
            self._drain = asyncio.create_task(self._wind_down(self.settings.shutdown_grace_seconds))

    async def _wind_down(self, grace_seconds: float) -> None:
        if not self.run_workers:
            return
        log.info("shutting down: no new jobs here; %gs for the running ones", grace_seconds)
        try:
            queued = await self.dispatcher.wind_down(grace_seconds)
        except Exception:
            log.exception("handing back this instance's jobs failed; their leases will expire")
            return
        self.signals.publish(sig.JOB_QUEUED, *queued)
        await self.signals.flush()

    @contextlib.asynccontextmanager
    async def _startup_lock(self) -> AsyncIterator[None]:
        """One instance at a time migrates and bootstraps (PostgreSQL): several starting
        together would race to create the schema and the first workspace."""
        if self.db.dialect_name != "postgresql":
            yield
            return
        async with self.db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(7120190822)"))
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(7120190822)"))
                await conn.commit()

    @property
    def signer(self) -> Signer:
        assert self._signer is not None, "Gateway.start() has not run"
        return self._signer

    async def start(self) -> None:
        async with self._startup_lock():
            await self.db.migrate()
            async with self.db.session() as session:
                self.first_admin_key = await bootstrap(
                    session,
                    self.catalog,
                    self.settings.bootstrap_workspace,
                    configured_providers=self.providers.names(),
                )
                self._signer = await load_signer(session)
        if self.run_workers or self._serves_api_only:  # not for a CLI command's gateway
            await self.signals.start()
        if self.settings.public_url is not None:
            self.runner.input_link = self.input_link
        if self.run_workers:
            await self.dispatcher.start()
        if self.run_workers or self._serves_api_only:
            self.start_maintenance()
        if self.settings.metrics_enabled:
            self._metrics_task = asyncio.create_task(self.metrics.refresh_every(self.db, 5.0))
        self.started = True

    async def stop(self) -> None:
        if self.started and self.run_workers:
            if self._drain is None:
                # Stopped without a signal first (tests, an embedding program): no grace,
                # the jobs still running here are handed back now.
                self.draining = True
                self._drain = asyncio.create_task(self._wind_down(0))
            await self._drain
        self.started = False
        await cancel_and_wait(self._metrics_task)
        await self.signals.stop()
        await self.stop_maintenance()
        await self.dispatcher.stop()
        await self.webhooks.close()
        await self.fetcher.aclose()
        await self.providers.aclose()

        await self.blobs.close()
        await self.db.close()

    def input_link(self, file: File) -> str:
        """A short-lived signed link to a job's input image, for upstreams that fetch
        images by URL; only made where ``IMAGEGATE_PUBLIC_URL`` says how they reach us."""
        link = self.signer.sign(file.id, file.workspace_id, INPUT_LINK_SECONDS)
        return f"{self.settings.base_url}/v1/files/{file.id}/content?{link.query()}"

    async def refresh_signer(self) -> None:
        """Pick up keys rotated by another process (or the CLI)."""
        async with self.db.read_session() as session:
            self._signer = await load_signer(session)

    async def rotate_signing_key(self) -> str:
        async with self.db.session() as session:
            kid = await signing.rotate_signing_key(session)
        await self.refresh_signer()
        return kid

    async def sweep(self) -> int:
        """One maintenance pass: purge expired files, rotate and retire signing keys."""
        purged = await files.purge_expired(self.db, self.blobs)
        every = self.settings.signing_key_rotation_days
        if every > 0:
            async with self.db.read_session() as session:
                age = await signing.newest_key_age(session)
            if age is None or age > timedelta(days=every):
                await self.rotate_signing_key()
        async with self.db.session() as session:
            await signing.retire_signing_keys(session, self.settings.url_ttl_seconds)
        await self.refresh_signer()
        return purged

    def start_maintenance(self) -> None:
        """Run :meth:`sweep` now and every ``retention_sweep_seconds`` in the background."""
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(self._maintain())

    async def stop_maintenance(self) -> None:
        await cancel_and_wait(self._maintenance)
        self._maintenance = None

    async def _maintain(self) -> None:
        while True:
            try:
                purged = await self.sweep()
                if purged:
                    log.info("purged %d expired files", purged)
            except Exception:
                log.exception("maintenance pass failed")
            await asyncio.sleep(self.settings.retention_sweep_seconds)
