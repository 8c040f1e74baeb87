"""The job state machine: queued → running → succeeded | failed | canceled | expired.

Every transition is one conditional UPDATE, so two workers can never both own a job:
a worker's writes name the attempt it claimed, and a stale attempt's write changes no
row (fencing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.store.db import Database
from imagegate.store.tables import File, Job, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED, EXPIRED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "canceled",
    "expired",
)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED, EXPIRED})


@dataclass(frozen=True, slots=True)
class Claim:
    job: Job
    attempt: int
    lease_owner: str


async def claim(db: Database, job_id: str, owner: str, lease_seconds: float) -> Claim | None:
    """Take a queued, due job for ``owner``; None if someone else has it or it is not due."""
    now = utcnow()
    async with db.session() as session:
        result = await session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == QUEUED,
                (Job.not_before.is_(None)) | (Job.not_before <= now),
            )
            .values(
                status=RUNNING,
                attempt=Job.attempt + 1,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()
    return Claim(job=job, attempt=job.attempt, lease_owner=owner)


def _owned(claim: Claim) -> Any:
    return (
        (Job.id == claim.job.id)
        & (Job.status == RUNNING)
        & (Job.attempt == claim.attempt)
        & (Job.lease_owner == claim.lease_owner)
    )


async def renew(db: Database, claim: Claim, lease_seconds: float) -> bool:
    async with db.session() as session:
        result = await session.execute(
            update(Job)
            .where(_owned(claim))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def succeed(
    session: AsyncSession,
    claim: Claim,
    files: list[File],
    *,
    charged_amount: int,
    result: dict[str, Any],
    provider_request_id: str | None,
) -> bool:
    """Record outputs and success in the caller's transaction; False if fenced off."""
    updated = await session.execute(
        update(Job)
        .where(_owned(claim))
        .values(
            status=SUCCEEDED,
            finished_at=utcnow(),
            charged_amount=charged_amount,
            result=result,
            provider_request_id=provider_request_id,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add_all(files)
    await session.flush()
    return True


async def note_provider_request(
    db: Database, claim: Claim, provider: str, provider_request_id: str
) -> bool:
    """Record which provider took the work and its request id, while the attempt owns the job."""
    async with db.session() as session:
        result = await session.execute(
            update(Job)
            .where(_owned(claim))
            .values(provider=provider, provider_request_id=provider_request_id[:200])
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def fail(
    db: Database,
    claim: Claim,
    *,
    code: str,
    message: str,
    provider_reason: str | None = None,
    retry_at: datetime | None = None,
) -> bool:
    """Fail the attempt: back to queued (due at ``retry_at``) or failed for good."""
    values: dict[str, Any] = {
        "error_code": code,
        "error_message": message,
        "provider_reason": provider_reason,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if retry_at is not None:
        values.update(status=QUEUED, not_before=retry_at)
    else:
        values.update(status=FAILED, finished_at=utcnow(), charged_amount=0)
    async with db.session() as session:
        result = await session.execute(
            update(Job).where(_owned(claim)).values(**values).execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def recover_expired_leases(db: Database) -> list[str]:
    """Running jobs whose worker vanished: requeue them, or fail those out of attempts."""
    now = utcnow()
    async with db.session() as session:
        stale = (
            await session.execute(
                select(Job.id, Job.attempt, Job.max_attempts).where(
                    Job.status == RUNNING, Job.lease_expires_at < now
                )
            )
        ).all()
        requeued = []
        for job_id, attempt, max_attempts in stale:
            if attempt < max_attempts:
                values: dict[str, Any] = {"status": QUEUED, "not_before": now}
                requeued.append(job_id)
            else:
                values = {
                    "status": FAILED,
                    "finished_at": now,
                    "charged_amount": 0,
                    "error_code": "worker_lost",
                    "error_message": "The worker running this job stopped; no attempts are left.",
                }
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == RUNNING, Job.attempt == attempt)
                .values(lease_owner=None, lease_expires_at=None, **values)
                .execution_options(synchronize_session=False)
            )
    return requeued


async def due_queued(db: Database, limit: int = 100) -> list[str]:
    now = utcnow()
    async with db.session() as session:
        rows = await session.execute(
            select(Job.id)
            .where(Job.status == QUEUED, (Job.not_before.is_(None)) | (Job.not_before <= now))
            .order_by(Job.id)
            .limit(limit)
        )
        return [row[0] for row in rows]


async def get_job(session: AsyncSession, workspace_id: str, job_id: str) -> Job | None:
    return (
        await session.execute(select(Job).where(Job.id == job_id, Job.workspace_id == workspace_id))
    ).scalar_one_or_none()


async def job_outputs(session: AsyncSession, job_id: str) -> list[File]:
    rows = await session.execute(select(File).where(File.job_id == job_id).order_by(File.output_index))
    return list(rows.scalars())
