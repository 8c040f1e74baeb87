"""Prometheus metrics of one instance (``IMAGEGATE_METRICS_ENABLED``, served at /metrics).

Counters and histograms count what this instance did; the gauges named "whole database"
(queue depth, oldest queued job, jobs running, credits held) are read from the database
every few seconds and are the same on every instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.observe import context
from imagegate.store.db import Database
from imagegate.store.tables import CREDIT_ACCOUNTS, JOBS, utcnow

log = logging.getLogger("imagegate.metrics")

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The instance's metrics, in a registry of its own (one per gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "imagegate_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "imagegate_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.jobs = Counter(
            "imagegate_jobs",
            "Jobs that reached a state in this instance (queued: submitted here; running: "
            "an attempt started here; retried: an attempt failed and the job was queued again).",
            ["state", "model", "provider"],
            registry=r,
        )
        self.provider_latency = Histogram(
            "imagegate_provider_request_duration_seconds",
            "Time of one provider call (an attempt's generation, polls included).",
            ["provider", "model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.provider_errors = Counter(
            "imagegate_provider_errors",
            "Provider calls that failed, by error code.",
            ["provider", "code"],
            registry=r,
        )
        self.credits = Counter(
            "imagegate_credits",
            "Credits held at submit and captured at success, by requests and jobs of this "
            "instance.",
            ["kind"],
            registry=r,
        )
        self.webhooks = Counter(
            "imagegate_webhook_deliveries",
            "Webhook delivery attempts: delivered, retry (will be tried again), failed (for good).",
            ["outcome"],
            registry=r,
        )
        self.attempts_running = Gauge(
            "imagegate_attempts_running", "Job attempts running in this instance.", registry=r
        )
        self.draining = Gauge(
            "imagegate_draining", "1 while this instance shuts down gracefully.", registry=r
        )
        self.signals_received = Gauge(
            "imagegate_signals_received",
            "Notifications received from other instances since start.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "imagegate_queue_depth", "Jobs queued (whole database).", registry=r
        )
        self.queue_oldest_age = Gauge(
            "imagegate_queue_oldest_age_seconds",
            "Age of the oldest queued job (whole database; 0 when none).",
            registry=r,
        )
        self.jobs_running = Gauge(
            "imagegate_jobs_running", "Jobs running (whole database).", registry=r
        )
        self.credits_held = Gauge(
            "imagegate_credits_held", "Credits held now (whole database).", registry=r
        )
        for kind in ("held", "captured"):
            self.credits.labels(kind)
        for outcome in ("delivered", "retry", "failed"):
            self.webhooks.labels(outcome)

    def job(self, state: str, model: str, provider: str | None) -> None:
        self.jobs.labels(state, model, provider or "").inc()

    def provider_call(self, provider: str, model: str, seconds: float, error: str | None) -> None:
        self.provider_latency.labels(provider, model).observe(seconds)
        if error is not None:
            self.provider_errors.labels(provider, error).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def refresh(self, db: Database) -> None:
        """Read the whole-database gauges."""
        async with db.read_session() as session:
            counts: dict[str, int] = dict(
                (
                    await session.execute(
                        select(JOBS.c.status, func.count())
                        .where(JOBS.c.status.in_(("queued", "running")))
                        .group_by(JOBS.c.status)
                    )
                ).all()
            )
            oldest = (
                await session.execute(
                    select(func.min(JOBS.c.created_at)).where(JOBS.c.status == "queued")
                )
            ).scalar()
            held = (await session.execute(select(func.sum(CREDIT_ACCOUNTS.c.held)))).scalar()
        self.queue_depth.set(counts.get("queued", 0))
        self.jobs_running.set(counts.get("running", 0))
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=utcnow().tzinfo)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        self.queue_oldest_age.set(age)
        self.credits_held.set(held or 0)

    async def refresh_every(self, db: Database, seconds: float) -> None:
        while True:
            try:
                await self.refresh(db)
            except Exception:
                log.exception("reading the queue's metrics failed")
            await asyncio.sleep(seconds)


class RequestContext:
    """Outermost middleware: a request id for every request (the caller's ``X-Request-ID``
    if it sent a plain one), echoed in the answer and set for log lines; and, with
    ``metrics``, the request counted by route template and status and timed."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                header = value.decode("latin-1")
                break
        rid = context.request_id_from(header)
        token = context.request_id.set(rid)
        encoded = rid.encode()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers: list[Any] = list(message.get("headers", ()))
                headers.append((b"x-request-id", encoded))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.request_id.reset(token)
            if self.metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = scope["method"]
                self.metrics.http_requests.labels(method, template, str(status)).inc()
                self.metrics.http_latency.labels(method, template).observe(
                    time.perf_counter() - started
                )
