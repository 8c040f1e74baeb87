"""The running gateway's parts, built from settings; shared by the HTTP app and the CLI."""

from __future__ import annotations

import logging

from imagegate.blobs import BlobStore, LocalBlobStore
from imagegate.catalog import Catalog, load_catalog
from imagegate.config import Settings
from imagegate.providers.registry import ProviderRegistry, default_registry
from imagegate.services.bootstrap import bootstrap
from imagegate.services.signing import Signer, load_signer
from imagegate.store.db import Database
from imagegate.worker.dispatcher import EmbeddedDispatcher
from imagegate.worker.runner import JobRunner

log = logging.getLogger("imagegate")


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
    ) -> None:
        self.settings = settings
        extra = [settings.catalog_dir] if settings.catalog_dir is not None else []
        self.catalog = catalog or load_catalog(extra, credits_per_usd=settings.credits_per_usd)
        self.providers = providers or default_registry()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.blobs: BlobStore = blobs or LocalBlobStore(settings.blob_dir)
        self.db = Database(settings.resolved_database_url)
        self.runner = JobRunner(
            self.db, self.catalog, self.providers, self.blobs, lease_seconds=settings.lease_seconds
        )
        self.dispatcher = EmbeddedDispatcher(
            self.db, self.runner, concurrency=settings.worker_concurrency
        )
        self.run_workers = run_workers
        self._signer: Signer | None = None
        self.first_admin_key: str | None = None

    @property
    def signer(self) -> Signer:
        assert self._signer is not None, "Gateway.start() has not run"
        return self._signer

    async def start(self) -> None:
        await self.db.migrate()
        async with self.db.session() as session:
            self.first_admin_key = await bootstrap(
                session, self.catalog, self.settings.bootstrap_workspace
            )
            self._signer = await load_signer(session)
        if self.run_workers:
            await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.db.close()
