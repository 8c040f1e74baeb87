"""Liveness, readiness and metrics: what a load balancer, an orchestrator and Prometheus ask."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from imagegate.api.responses import JSONResponse
from imagegate.errors import NotFound

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 while this instance takes new work and reaches its database; 503 before it has
    started, once a graceful shutdown began (SIGTERM), or while the database is away."""
    gateway = request.app.state.gateway
    if gateway.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not gateway.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        async with asyncio.timeout(2.0), gateway.db.read_session() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "database_unreachable"}, status_code=503)
    return JSONResponse(
        {
            "status": "ready",
            "worker": gateway.run_workers,
            "signals": gateway.signals.live,
        }
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; 404 unless ``IMAGEGATE_METRICS_ENABLED`` is set."""
    gateway = request.app.state.gateway
    if not gateway.settings.metrics_enabled:
        raise NotFound("Metrics are off; set IMAGEGATE_METRICS_ENABLED=true.")
    gateway.metrics.signals_received.set(gateway.signals.received)
    body, content_type = gateway.metrics.exposition()
    return Response(body, media_type=content_type)
