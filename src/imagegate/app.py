"""The app factory: ``create_app(settings)`` builds the gateway's HTTP app; nothing at import."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from imagegate import __version__
from imagegate.allocator import keep_large_buffers
from imagegate.api import (
    admin,
    credits,
    edits,
    errors,
    files,
    health,
    images,
    jobs,
    me,
    models,
    pricing,
    upscale,
)
from imagegate.api.limits import BodySizeLimit, RejectNul
from imagegate.api.openapi import FullAllow, describe_as_answered
from imagegate.api.responses import JSONResponse
from imagegate.collector import tune_for_serving
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.mcp.http import PATH as MCP_PATH
from imagegate.mcp.http import McpEndpoint
from imagegate.observe import logs, tracing
from imagegate.observe.metrics import RequestContext
from imagegate.observe.shutdown import drain_on_signals
from imagegate.web import install as install_console
from imagegate.web.first_start import announce_first_admin_link

log = logging.getLogger("imagegate")


def announce_first_key(key: str) -> None:
    """Print the first admin key once; it is stored hashed and cannot be shown again."""
    print(
        "\n  imagegate created a workspace and its first admin API key.\n"
        "  It is shown only this once; keep it somewhere safe:\n\n"
        f"    {key}\n",
        file=sys.stderr,
        flush=True,
    )


def create_served_app() -> FastAPI:
    """The app of one process of ``imagegate serve --workers N``, from the environment."""
    return served_by_uvicorn(create_app())


def served_by_uvicorn(app: FastAPI) -> FastAPI:
    """Mark ``app`` as run by uvicorn, whose HTTP protocols write any buffer as a response
    body: answers then pass upstream image text on as views, uncopied; and as the app of
    a server process, which keeps large freed buffers and whose cycle collector is tuned
    once the gateway has started."""
    keep_large_buffers()
    app.state.server_takes_views = True
    app.state.tune_collector = True
    return app


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def _in_own_task(context: AbstractAsyncContextManager[None]) -> AsyncIterator[None]:
    """Enter and leave ``context`` in a task of its own. anyio's task groups (the MCP
    sessions') must be left by the task that entered them, and whoever runs a lifespan
    may start it in one task and end it in another (pytest's async fixtures do)."""
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with context:
            entered.set()
            await leave.wait()

    holder = asyncio.create_task(hold())
    waiting = asyncio.create_task(entered.wait())
    await asyncio.wait({holder, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        waiting.cancel()
        holder.result()  # its failure to start, raised here
    try:
        yield
    finally:
        leave.set()
        await holder


def _lifespan(gw: Gateway) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = getattr(app.state, "tune_collector", False)
        if served:  # a server process: its logging, and a graceful stop on SIGTERM
            logs.configure(gw.settings.log_format, gw.settings.log_level)
        await gw.start()
        if gw.first_admin_key is not None:
            announce_first_key(gw.first_admin_key)
            await announce_first_admin_link(gw)
        if served:
            tune_for_serving()
            drain_on_signals(gw)
        try:
            # The MCP endpoint's sessions live as long as the app (the worker app has none).
            mcp = getattr(app.state, "mcp", None)
            async with _in_own_task(mcp.running()) if mcp is not None else _nothing():
                yield
        finally:
            if served:
                # Begun by SIGTERM already, or (a process of `serve --workers N`, which
                # uvicorn stops itself) now: the running jobs still get their grace.
                gw.begin_drain()
            await gw.stop()

    return lifespan


def create_worker_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    """The app of ``imagegate worker``: it runs jobs; its HTTP port answers only
    ``/healthz``, ``/readyz`` and ``/metrics``."""
    settings = settings or (gateway.settings if gateway else Settings())
    gw = gateway or Gateway(settings, run_workers=True)
    app = FastAPI(title="imagegate worker", version=__version__, lifespan=_lifespan(gw))
    app.state.gateway = gw
    errors.install(app)
    app.include_router(health.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(RequestContext, metrics=gw.metrics if settings.metrics_enabled else None)
    tracing.instrument(app, settings)
    return app


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    settings = settings or (gateway.settings if gateway else Settings())
    gw = gateway or Gateway(settings)
    lifespan = _lifespan(gw)

    app = FastAPI(
        title="imagegate",
        version=__version__,
        description="One API for every image model.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.gateway = gw
    mcp = app.state.mcp = McpEndpoint(gw, app)
    # An ASGI app as the route's endpoint: it answers the exact path, GET, POST and DELETE.
    methods = ["GET", "POST", "DELETE"]
    app.add_route(MCP_PATH, mcp, methods=methods, include_in_schema=False)  # type: ignore[arg-type]
    errors.install(app)
    describe_as_answered(app)
    routers = (models.router, pricing.router, images.router, jobs.router, files.router)
    for router in (*routers, edits.router, upscale.router, credits.router):
        app.include_router(router)
    app.include_router(admin.router)
    app.include_router(me.router)
    app.include_router(health.router)
    install_console(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RejectNul)
    app.add_middleware(FullAllow)
    app.add_middleware(RequestContext, metrics=gw.metrics if settings.metrics_enabled else None)
    tracing.instrument(app, settings)
    return app
