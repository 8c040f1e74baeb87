"""The app factory: ``create_app(settings)`` builds the gateway's HTTP app; nothing at import."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imagegate import __version__
from imagegate.allocator import keep_large_buffers
from imagegate.api import admin, credits, edits, errors, files, images, jobs, me, models, pricing
from imagegate.api.limits import BodySizeLimit, RejectNul
from imagegate.api.responses import JSONResponse
from imagegate.collector import tune_for_serving
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.mcp.http import PATH as MCP_PATH
from imagegate.mcp.http import McpEndpoint

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


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    settings = settings or (gateway.settings if gateway else Settings())
    gw = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        if gw.first_admin_key is not None:
            announce_first_key(gw.first_admin_key)
        if getattr(app.state, "tune_collector", False):
            tune_for_serving()
        try:
            async with mcp.running():
                yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="imagegate",
        version=__version__,
        description="One API for every image model.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.gateway = gw
    mcp = McpEndpoint(gw, app)
    # An ASGI app as the route's endpoint: it answers the exact path, GET, POST and DELETE.
    methods = ["GET", "POST", "DELETE"]
    app.add_route(MCP_PATH, mcp, methods=methods, include_in_schema=False)  # type: ignore[arg-type]
    errors.install(app)
    routers = (models.router, pricing.router, images.router, jobs.router, files.router)
    for router in (*routers, edits.router, credits.router):
        app.include_router(router)
    app.include_router(admin.router)
    app.include_router(me.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RejectNul)
    return app
