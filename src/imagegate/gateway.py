"""The running gateway's parts, built from settings; shared by the HTTP app and the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import timedelta

from imagegate.blobs import BlobStore, blob_store
from imagegate.catalog import Catalog, load_catalog
from imagegate.config import Settings
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
        run_workers: bool = True,
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
        self.run_workers = run_workers
        self._signer: Signer | None = None
        self.first_admin_key: str | None = None
        self._maintenance: asyncio.Task[None] | None = None

    @property
    def signer(self) -> Signer:
        assert self._signer is not None, "Gateway.start() has not run"
        return self._signer

    async def start(self) -> None:
        await self.db.migrate()
        async with self.db.session() as session:
            self.first_admin_key = await bootstrap(
                session,
                self.catalog,
                self.settings.bootstrap_workspace,
                configured_providers=self.providers.names(),
            )
            self._signer = await load_signer(session)
        if self.settings.public_url is not None:
            self.runner.input_link = self.input_link
        if self.run_workers:
            await self.dispatcher.start()
            self.start_maintenance()

    async def stop(self) -> None:
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
