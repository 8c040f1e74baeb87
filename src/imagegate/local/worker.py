"""A worker process for local routes: it runs only the jobs routed to its pipeline.

The gateway (``imagegate serve``) queues jobs of a ``local`` route without running them;
this process, next to it on the same database, claims them, runs them through the
pipeline in batches and records outputs, charges and webhooks as any worker does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.local.pipeline import LocalPipeline
from imagegate.local.provider import LocalProvider
from imagegate.providers.registry import ProviderRegistry

log = logging.getLogger("imagegate.local")


def local_runner(
    settings: Settings,
    model_dir: Path,
    *,
    name: str = "local",
    device: str | None = None,
    dtype: str | None = None,
    max_batch: int = 8,
) -> tuple[Settings, ProviderRegistry, str]:
    """For ``imagegate worker --local``: the pipeline loaded, a registry holding only its
    runner, the settings that let a batch fill, and the device in words."""
    pipeline = LocalPipeline(model_dir, device=device, dtype=dtype)
    provider = LocalProvider(pipeline, name=name, max_batch=max_batch)
    registry = ProviderRegistry()
    registry.register(provider)
    concurrency = max(settings.provider_concurrency, max_batch)
    settings = settings.model_copy(
        update={
            "provider_concurrency": concurrency,
            "worker_concurrency": max(settings.worker_concurrency, concurrency),
        }
    )
    description = (
        f"local runner {name!r}: {pipeline.name} from {model_dir} on "
        f"{pipeline.device_description} ({pipeline.dtype}), batches of up to {max_batch}"
    )
    return settings, registry, description


def local_gateway(
    settings: Settings, provider: LocalProvider, *, poll_interval: float = 0.1
) -> Gateway:
    """A gateway whose workers take only the jobs of ``provider``'s routes."""
    registry = ProviderRegistry()
    registry.register(provider)
    # Enough attempts at once to fill a batch.
    concurrency = max(settings.provider_concurrency, provider.max_batch)
    settings = settings.model_copy(
        update={
            "provider_concurrency": concurrency,
            "worker_concurrency": max(settings.worker_concurrency, concurrency),
        }
    )
    gateway = Gateway(settings, providers=registry, only_providers=[provider.name])
    gateway.dispatcher.poll_interval = poll_interval
    return gateway


async def serve_local(
    settings: Settings,
    model_dir: Path,
    *,
    name: str = "local",
    device: str | None = None,
    dtype: str | None = None,
    max_batch: int = 8,
    poll_interval: float = 0.1,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Load the pipeline, then run the jobs of route ``name`` until ``stop`` is set."""
    pipeline = await asyncio.to_thread(LocalPipeline, model_dir, device=device, dtype=dtype)
    provider = LocalProvider(pipeline, name=name, max_batch=max_batch)
    gateway = local_gateway(settings, provider, poll_interval=poll_interval)
    if name not in gateway.catalog.endpoints:
        log.warning("no catalog route names provider %r: no job will come here", name)
    await gateway.start()
    announce(
        f"local runner {name!r}: {pipeline.name} from {model_dir} on "
        f"{pipeline.device_description} ({pipeline.dtype}), batches of up to {max_batch}"
    )
    if stop is None:  # a process of its own: SIGTERM and Ctrl-C stop it cleanly
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
