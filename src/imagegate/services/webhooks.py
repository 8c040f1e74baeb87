"""Webhooks: Standard Webhooks events for terminal jobs, from an outbox, with retries.

The event row is written in the same transaction as the job's terminal state, so an
event is never lost; the sender delivers it later, at least once, with a stable
``webhook-id`` across retries, signed with the workspace's ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import logging
import random
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from imagegate.errors import InvalidParameter
from imagegate.ids import new_id
from imagegate.money import as_credits
from imagegate.observe.metrics import Metrics
from imagegate.services.fetcher import AddressPolicy, Fetcher, Resolver, URLRefused
from imagegate.store.db import Database, insert_rows
from imagegate.store.tables import FILES, JOBS, File, Job, WebhookDelivery, Workspace, utcnow
from imagegate.store.tx import Tx

log = logging.getLogger("imagegate.webhooks")

MAX_ATTEMPTS = 8
# Delays before each retry, as multiples of the configured base (5 s by default):
# 5 s, 30 s, 2.5 min, 10 min, 30 min, 1 h, 2 h.
SCHEDULE = (1, 6, 30, 120, 360, 720, 1440)
# How long past its timeout an attempt keeps its claim on a delivery.
CLAIM_MARGIN_SECONDS = 30.0


async def validate_url(
    url: Any,
    *,
    allow_loopback: bool,
    param: str = "webhook_url",
    allowed_hosts: Sequence[str] = (),
    resolver: Resolver | None = None,
) -> str:
    """An http(s) URL whose host resolves only to public addresses (or loopback if allowed);
    the rules are the fetcher's (:mod:`imagegate.services.fetcher`)."""
    policy = AddressPolicy(
        allowed_hosts=allowed_hosts, allow_loopback=allow_loopback, resolver=resolver
    )
    try:
        return await policy.check_url(url, param=param)
    except URLRefused as exc:
        raise InvalidParameter(exc.message, param=param) from None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def workspace_secret(
    session: AsyncSession, workspace_id: str, *, rotate: bool = False
) -> str:
    workspace = await session.get(Workspace, workspace_id)
    assert workspace is not None
    if workspace.webhook_secret is None or rotate:
        workspace.webhook_secret = new_secret()
        await session.flush()
    return workspace.webhook_secret


def job_event(job: Job, files: list[File]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "model": job.model,
        "status": job.status,
        "estimated_cost": as_credits(job.estimated_cost),
        "charged_amount": as_credits(job.charged_amount or 0),
        "outputs": [
            {
                "file_id": f.id,
                "content_path": f"/v1/files/{f.id}/content",
                "width": f.width,
                "height": f.height,
                "content_type": f.content_type,
                "bytes": f.bytes,
            }
            for f in files
        ],
    }
    if job.status != "succeeded":
        data["error"] = {
            "code": job.error_code,
            "message": job.error_message,
            "provider_reason": job.provider_reason,
        }
    return {"type": f"job.{job.status}", "timestamp": utcnow().isoformat(), "data": data}


_JOB_ROW = select(JOBS).where(JOBS.c.id == bindparam("p_job_id"))
_FILE_ROWS = (
    select(FILES).where(FILES.c.job_id == bindparam("p_job_id")).order_by(FILES.c.output_index)
)


async def enqueue_for_job(tx: Tx, job_id: str) -> None:
    """Queue the job's event for its webhook, if it has one, in the transaction given."""
    await tx.flush()
    job = Job(**(await tx.execute(_JOB_ROW, {"p_job_id": job_id})).first()._asdict())
    if not job.webhook_url:
        return
    rows = await tx.execute(_FILE_ROWS, {"p_job_id": job_id})
    files = [File(**row._asdict()) for row in rows]
    delivery = WebhookDelivery(
        id=new_id("msg"),
        workspace_id=job.workspace_id,
        job_id=job.id,
        url=job.webhook_url,
        event_type=f"job.{job.status}",
        payload=job_event(job, files),
        status="pending",
        next_attempt_at=utcnow(),
    )
    await insert_rows(tx, delivery)


class WebhookSender:
    """Delivers due events; run by the dispatcher's loop, or ``deliver_due()`` in tests."""

    def __init__(
        self,
        db: Database,
        *,
        retry_base_seconds: float,
        allow_loopback: bool,
        allowed_hosts: Sequence[str] = (),
        timeout: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.db = db
        self.retry_base_seconds = retry_base_seconds
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        # Pinned: each connection goes to an address checked as it connects, so a name
        # cannot pass the check and then resolve to a private address (DNS rebinding).
        # No redirects: a 3xx is the receiver's answer, not a place to go.
        self.policy = AddressPolicy(
            allowed_hosts=allowed_hosts, allow_loopback=allow_loopback, resolver=resolver
        )
        self.fetcher = Fetcher(self.policy, max_bytes=1, total_timeout=timeout)
        self.metrics: Metrics | None = None  # set by the gateway

    async def close(self) -> None:
        await self.fetcher.aclose()

    async def deliver_due(self, limit: int = 50) -> int:
        """Attempt every due delivery once; how many were attempted."""
        async with self.db.read_session() as session:
            due = list(
                (
                    await session.execute(
                        select(WebhookDelivery)
                        .where(
                            WebhookDelivery.status == "pending",
                            WebhookDelivery.next_attempt_at <= utcnow(),
                        )
                        .order_by(WebhookDelivery.next_attempt_at)
                        .limit(limit)
                    )
                ).scalars()
            )
        attempted = 0
        for delivery in due:
            if await self._claim(delivery):
                await self._attempt(delivery)
                attempted += 1
        return attempted

    async def _claim(self, delivery: WebhookDelivery) -> bool:
        """Take ``delivery`` for one attempt; False if another process took it first.

        Every server process delivers: the claim moves the next attempt past this one's
        timeout, so no other process sends the same event meanwhile, and a process that
        dies mid-attempt leaves the delivery to be tried again after that.
        """
        now = utcnow()
        until = now + timedelta(seconds=self.timeout + CLAIM_MARGIN_SECONDS)
        async with self.db.session() as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.attempts == delivery.attempts,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=until)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        async with self.db.session() as session:
            secret = await workspace_secret(session, delivery.workspace_id)
        body = orjson.dumps(delivery.payload).decode()
        timestamp = utcnow()
        signature = Webhook(secret).sign(delivery.id, timestamp, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature,
            "user-agent": "imagegate-webhooks",
        }
        status_code: int | None = None
        error: str | None = None
        try:
            await self.policy.check_url(delivery.url, param="webhook_url")
            response = await self.fetcher.post(
                delivery.url, content=body, headers=headers, timeout=self.timeout
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except InvalidParameter as exc:
            error = exc.message
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        await self._record(delivery, status_code, error)

    async def _record(
        self, delivery: WebhookDelivery, status_code: int | None, error: str | None
    ) -> None:
        attempts = delivery.attempts + 1
        if self.metrics is not None:
            outcome = "delivered" if error is None else "retry"
            outcome = "failed" if error is not None and attempts >= MAX_ATTEMPTS else outcome
            self.metrics.webhooks.labels(outcome).inc()
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error,
        }
        if error is None:
            values.update(status="delivered", delivered_at=utcnow(), next_attempt_at=None)
        elif attempts >= MAX_ATTEMPTS:
            values.update(status="failed", next_attempt_at=None)
            log.warning(
                "webhook %s for %s failed for good: %s", delivery.id, delivery.job_id, error
            )
        else:
            delay = SCHEDULE[min(attempts, len(SCHEDULE)) - 1] * self.retry_base_seconds
            values["next_attempt_at"] = utcnow() + timedelta(
                seconds=delay * random.uniform(0.8, 1.2)
            )
        async with self.db.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id, WebhookDelivery.attempts == delivery.attempts
                )
                .values(**values)
            )


async def deliveries_for_job(session: AsyncSession, job_id: str) -> list[WebhookDelivery]:
    rows = await session.execute(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id)
    )
    return list(rows.scalars())


def delivery_object(delivery: WebhookDelivery) -> dict[str, Any]:
    def ts(value: datetime | None) -> int | None:
        return int(value.timestamp()) if value else None

    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": ts(delivery.created_at),
        "delivered_at": ts(delivery.delivered_at),
        "next_attempt_at": ts(delivery.next_attempt_at),
    }
