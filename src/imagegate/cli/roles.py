"""``imagegate worker``: an instance that runs jobs and serves no API.

Several instances share one PostgreSQL database (and one S3-compatible store): API-only
ones (``imagegate serve --no-worker``) take requests, workers run the jobs, and plain
``imagegate serve`` does both. A worker's port answers only ``/healthz``, ``/readyz`` and
``/metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegate.cli.main import app, console
from imagegate.config import Settings

if TYPE_CHECKING:
    from imagegate.providers.registry import ProviderRegistry


def worker_settings(
    host: str | None, port: int | None, concurrency: int | None, **more: Any
) -> Settings:
    """The settings of a worker: the environment's, with the command line's options."""
    overrides: dict[str, Any] = {"run_worker": True, **more}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if concurrency is not None:
        overrides["worker_concurrency"] = concurrency
    return Settings(**overrides)


def run_worker(
    settings: Settings,
    *,
    providers: ProviderRegistry | None = None,
    only_providers: list[str] | None = None,
) -> None:
    """Serve a worker until SIGTERM. ``providers``: the registry to run jobs with (a
    worker for a local model passes one that holds its runner); default, the configured
    providers."""
    import uvicorn

    from imagegate.app import create_worker_app, served_by_uvicorn
    from imagegate.gateway import Gateway

    gateway = Gateway(
        settings, providers=providers, run_workers=True, only_providers=only_providers
    )
    worker_app = served_by_uvicorn(create_worker_app(settings, gateway))
    console.print(
        f"imagegate worker: {settings.worker_concurrency} jobs at once; health, readiness "
        f"and metrics on http://{settings.host}:{settings.port}"
    )
    uvicorn.run(
        worker_app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def worker(
    host: Annotated[
        str | None, typer.Option(help="Interface for /healthz, /readyz and /metrics.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port for /healthz, /readyz and /metrics.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once (IMAGEGATE_WORKER_CONCURRENCY)."),
    ] = None,
    local: Annotated[
        Path | None,
        typer.Option(
            "--local",
            exists=True,
            file_okay=False,
            help="Run only the jobs of a local route, through this diffusers pipeline folder "
            "(docs/self-hosted.md; needs imagegate[local]).",
        ),
    ] = None,
    local_name: Annotated[
        str, typer.Option(help="With --local: the provider name of the route it serves.")
    ] = "local",
    device: Annotated[
        str, typer.Option(help="With --local: auto (cuda, mps, cpu) or a torch device.")
    ] = "auto",
    max_batch: Annotated[
        int, typer.Option(min=1, help="With --local: images of one shape in one pass.")
    ] = 8,
) -> None:
    """Run jobs from the shared database, without the API (scales apart from `serve`)."""
    settings = worker_settings(host, port, concurrency)
    if local is None:
        run_worker(settings)
        return
    from imagegate.local.worker import local_runner

    settings, registry, description = local_runner(
        settings, local, name=local_name, device=device, max_batch=max_batch
    )
    console.print(description)
    run_worker(settings, providers=registry, only_providers=[local_name])


@app.command()
def migrate() -> None:
    """Bring the database's schema up to this version (and, on an empty database, create
    the first workspace and admin key), then exit: the step before an upgrade."""
    import asyncio

    from imagegate.app import announce_first_key
    from imagegate.gateway import prepare

    first_key = asyncio.run(prepare(Settings()))
    if first_key is not None:
        announce_first_key(first_key)
    console.print("The database is up to date.")
