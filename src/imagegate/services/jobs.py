"""The job state machine: queued → running → succeeded | failed | canceled | expired.

Every transition is one conditional UPDATE, so two workers can never both own a job:
a worker's writes name the attempt it claimed, and a stale attempt's write changes no
row (fencing).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    Update,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.services import billing, webhooks
from imagegate.store.db import Database, insert_rows, row_values
from imagegate.store.tables import CREDIT_HOLDS, FILES, JOBS, File, Job, utcnow
from imagegate.store.tx import SessionTx, Tx, combines_writes

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
    """One attempt's ownership of a job. ``checked``: the workspace's rules were checked in
    the transaction that took it (a job claimed as it was inserted), so need no new look."""

    job: Job
    attempt: int
    lease_owner: str
    checked: bool = False


_CLAIM = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("p_id"),
        JOBS.c.status == QUEUED,
        JOBS.c.not_before.is_(None) | (JOBS.c.not_before <= bindparam("p_now")),
    )
    .values(
        status=RUNNING,
        attempt=JOBS.c.attempt + 1,
        lease_owner=bindparam("p_owner"),
        lease_expires_at=bindparam("p_expires"),
        started_at=bindparam("p_now"),
    )
    .returning(*JOBS.c)
)


@functools.lru_cache(maxsize=16)
def _claim_of(only: frozenset[str] | None, elsewhere: frozenset[str]) -> Any:
    """The claim, for a process that runs only the jobs of some providers, or not those of
    others (local routes, which their own worker runs)."""

    # The names are written into the statement: one compiled for the driver (store/tx.py)
    # takes no list parameters.
    def names(providers: frozenset[str]) -> list[Any]:
        return [literal_column("'" + name.replace("'", "''") + "'") for name in sorted(providers)]

    statement = _CLAIM
    if only is not None:
        statement = statement.where(JOBS.c.provider.in_(names(only)))
    if elsewhere:
        statement = statement.where(JOBS.c.provider.not_in(names(elsewhere)))
    return statement


async def claim(
    db: Database,
    job_id: str,
    owner: str,
    lease_seconds: float,
    *,
    only: frozenset[str] | None = None,
    elsewhere: frozenset[str] = frozenset(),
) -> Claim | None:
    """Take a queued, due job for ``owner``; None if someone else has it, it is not due, or
    it is not for this process (``only`` / ``elsewhere``: by the job's provider).

    One statement (the update returns the claimed row), so a unit that commits it alone."""
    now = utcnow()
    params = {
        "p_id": job_id,
        "p_now": now,
        "p_owner": owner,
        "p_expires": now + timedelta(seconds=lease_seconds),
    }
    async with db.autocommit() as tx:
        statement = _CLAIM if only is None and not elsewhere else _claim_of(only, elsewhere)
        row = (await tx.execute(statement, params)).first()
    if row is None:
        return None
    job = Job(**row._asdict())
    return Claim(job=job, attempt=job.attempt, lease_owner=owner)


# Fencing: every write of an attempt names the attempt it claimed, so a stale worker's
# write (its lease expired and the job was taken over, or it was canceled) changes nothing.
_OWNED = (
    (JOBS.c.id == bindparam("p_id"))
    & (JOBS.c.status == RUNNING)
    & (JOBS.c.attempt == bindparam("p_attempt"))
    & (JOBS.c.lease_owner == bindparam("p_owner"))
)


def _owned(claim: Claim) -> dict[str, Any]:
    """The parameters of :data:`_OWNED` for ``claim``."""
    return {"p_id": claim.job.id, "p_attempt": claim.attempt, "p_owner": claim.lease_owner}


async def renew_owned(db: Database, owner: str, lease_seconds: float) -> set[tuple[str, int]]:
    """Extend every running lease ``owner`` holds, in one statement; (job id, attempt) of
    each job it still owns."""
    async with db.session() as session:
        rows = await session.execute(
            update(JOBS)
            .where(JOBS.c.lease_owner == owner, JOBS.c.status == RUNNING)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            .returning(JOBS.c.id, JOBS.c.attempt)
        )
        return {(job_id, attempt) for job_id, attempt in rows}


# Run for every image: built once (building and keying it costs about as much as running it).
def _succeed_update() -> Update:
    return (
        update(JOBS)
        .where(_OWNED)
        .values(
            status=SUCCEEDED,
            finished_at=bindparam("p_now"),
            result=bindparam("p_result"),
            provider_request_id=bindparam("p_request_id"),
            lease_owner=None,
            lease_expires_at=None,
            charged_amount=bindparam("p_charged"),
        )
    )


_SUCCEED = _succeed_update()


_CHARGED = (
    update(JOBS).where(JOBS.c.id == bindparam("p_id")).values(charged_amount=bindparam("p_charged"))
)


def _in_one_statement(dialect_name: str, job: Job) -> bool:
    """Whether :func:`succeed` writes this job's success as one statement on that database:
    a charged job with no webhook, where the database combines writes."""
    return combines_writes(dialect_name) and job.charge_policy == "charge" and not job.webhook_url


def success_unit(db: Database, job: Job) -> AbstractAsyncContextManager[Tx]:
    """The unit of work to run :func:`succeed` for ``job`` in: no transaction when the
    success is one statement (:meth:`Database.autocommit`), else a transaction."""
    return db.autocommit() if _in_one_statement(db.dialect_name, job) else db.transaction()


async def succeed(
    tx: Tx,
    claim: Claim,
    files: list[File],
    *,
    actual_cost: int,
    result: dict[str, Any],
    provider_request_id: str | None,
) -> int | None:
    """Record outputs, capture the cost and succeed, in the caller's transaction; the
    amount charged.

    None, with nothing written, when this attempt no longer owns the job (fencing).
    """
    job = claim.job
    now = utcnow()
    params = {
        **_owned(claim),
        "p_now": now,
        "p_result": result,
        "p_request_id": provider_request_id,
    }
    if _in_one_statement(tx.dialect_name, job):
        params |= billing.settle_params(job.id, "captured", actual_cost, now)
        for index, file in enumerate(files):
            params |= {f"f{index}_{name}": value for name, value in row_values(file).items()}
        row = (await tx.execute(_succeed_statement(len(files)), params)).first()
        return None if row.succeeded != 1 else row.charged
    # What the capture will take: the actual cost, never more than the hold (which was
    # placed at the estimate, and only when it was above zero).
    charging = job.charge_policy == "charge"
    charged = min(actual_cost, job.estimated_cost) if charging else 0
    updated = await tx.execute(_SUCCEED, params | {"p_charged": charged})
    if updated.rowcount != 1:
        return None
    if charging:
        captured = await billing.capture(tx, job.id, actual_cost)
        if captured != charged:  # the ledger is the truth
            charged = captured
            await tx.execute(_CHARGED, {"p_id": job.id, "p_charged": charged})
    else:
        await billing.record_usage(tx, job.workspace_id, job.id, actual_cost, job.charge_policy)
    await insert_rows(tx, *files)
    if job.webhook_url:
        await webhooks.enqueue_for_job(tx, job.id)
    return charged


@functools.cache
def _succeed_statement(outputs: int) -> Select[Any]:
    """A charged job's success as one statement (PostgreSQL): the fenced job update, the
    capture (settlement CTEs) and ``outputs`` file rows, each written only when the job
    update took. Returns whether it took, and the amount charged: what the capture took
    from the hold (the job's ``charged_amount`` is set to the same, in the same update).
    """
    holds = CREDIT_HOLDS.c
    capture = func.least(holds.amount, bindparam("s_charge", type_=BigInteger))
    held = (
        select(capture)
        .where(holds.job_id == bindparam("p_id"), holds.status == "held")
        .scalar_subquery()
    )
    # A statement of its own, not one derived from _SUCCEED: once _SUCCEED has run (an
    # invoiced job's success), a RETURNING added to it did not show in the CTE's columns.
    succeeded = (
        _succeed_update()
        .values(charged_amount=func.coalesce(held, 0))
        .returning(JOBS.c.id)
        .cte("succeeded")
    )
    settled, settle_rows = billing.settle_ctes(select(succeeded.c.id).scalar_subquery())
    ctes = list(settle_rows)
    if outputs:
        rows = [
            select(
                *(bindparam(f"f{index}_{column.key}", type_=column.type) for column in FILES.c)
            ).where(exists(select(succeeded.c.id)))
            for index in range(outputs)
        ]
        ctes.append(insert(FILES).from_select(list(FILES.c), union_all(*rows)).cte("outputs"))
    return select(
        select(func.count()).select_from(succeeded).scalar_subquery().label("succeeded"),
        func.coalesce(select(settled.c.captured).scalar_subquery(), 0).label("charged"),
    ).add_cte(*ctes)


async def note_provider_request(
    db: Database, claim: Claim, provider: str, provider_request_id: str
) -> bool:
    """Record which provider took the work and its request id, while the attempt owns the job."""
    async with db.session() as session:
        result = await session.execute(
            update(JOBS)
            .where(_OWNED)
            .values(provider=provider, provider_request_id=provider_request_id[:200]),
            _owned(claim),
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def fail(
    session: AsyncSession,
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
    result = await session.execute(update(JOBS).where(_OWNED).values(**values), _owned(claim))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if retry_at is None:
        await _on_terminal(SessionTx(session), claim.job.id, FAILED)
    return True


async def _on_terminal(tx: Tx, job_id: str, status: str) -> None:
    """What every terminal transition does, in its own transaction: release what is
    still held (nothing after a capture) and queue the webhook event."""
    if status != SUCCEEDED:
        await billing.release(tx, job_id, note=status)
    await webhooks.enqueue_for_job(tx, job_id)


async def cancel(
    session: AsyncSession, workspace_id: str, job_id: str, *, member_id: str | None = None
) -> tuple[Job | None, bool]:
    """Cancel a queued or running job (of ``member_id`` only, when given); the job as it
    then is (None if not found), and whether this call canceled it.

    A running attempt that finishes later is fenced off: its writes need ``running``.
    """
    owned = JOBS.c.workspace_id == workspace_id
    if member_id is not None:
        owned = owned & (JOBS.c.member_id == member_id)
    result = await session.execute(
        update(JOBS)
        .where(JOBS.c.id == job_id, owned, JOBS.c.status.in_((QUEUED, RUNNING)))
        .values(
            status=CANCELED,
            finished_at=utcnow(),
            charged_amount=0,
            lease_owner=None,
            lease_expires_at=None,
            error_code="canceled",
            error_message="The job was canceled.",
        )
    )
    canceled = result.rowcount == 1  # type: ignore[attr-defined]
    if canceled:
        await _on_terminal(SessionTx(session), job_id, CANCELED)
    job = await get_job(session, workspace_id, job_id, fresh=True, member_id=member_id)
    return job, canceled


async def hand_back(db: Database, owner: str) -> list[str]:
    """Put the jobs ``owner`` runs back in the queue, due now (a graceful shutdown whose
    attempts ran out of time): another worker takes them without waiting for the leases
    to expire. The stopped attempt does not count against the job's attempts; a write it
    might still make is fenced off by its lease owner."""
    async with db.session() as session:
        rows = await session.execute(
            update(JOBS)
            .where(JOBS.c.lease_owner == owner, JOBS.c.status == RUNNING)
            .values(
                status=QUEUED,
                not_before=utcnow(),
                attempt=JOBS.c.attempt - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(JOBS.c.id)
        )
        return [row[0] for row in rows]


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
            else:
                values = {
                    "status": FAILED,
                    "finished_at": now,
                    "charged_amount": 0,
                    "error_code": "worker_lost",
                    "error_message": "The worker running this job stopped; no attempts are left.",
                }
            result = await session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING, JOBS.c.attempt == attempt)
                .values(lease_owner=None, lease_expires_at=None, **values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                continue
            if values["status"] == QUEUED:
                requeued.append(job_id)
            else:
                await _on_terminal(SessionTx(session), job_id, FAILED)
    return requeued


async def expire_stale(db: Database, queued_ttl_seconds: float) -> list[str]:
    """Queued jobs nobody ran within ``queued_ttl_seconds`` expire, their holds released."""
    cutoff = utcnow() - timedelta(seconds=queued_ttl_seconds)
    async with db.session() as session:
        ids = [
            row[0]
            for row in await session.execute(
                select(Job.id).where(Job.status == QUEUED, Job.created_at < cutoff).limit(500)
            )
        ]
        expired = []
        for job_id in ids:
            result = await session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == QUEUED)
                .values(
                    status=EXPIRED,
                    finished_at=utcnow(),
                    charged_amount=0,
                    error_code="job_expired",
                    error_message="The job waited too long in the queue and expired.",
                )
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                await _on_terminal(SessionTx(session), job_id, EXPIRED)
                expired.append(job_id)
    return expired


async def due_queued(
    db: Database,
    limit: int = 100,
    *,
    only: Collection[str] | None = None,
    elsewhere: Collection[str] = (),
) -> list[str]:
    """Queued jobs that are due; ``only`` those of these providers, none of ``elsewhere``."""
    now = utcnow()
    query = select(Job.id).where(
        Job.status == QUEUED, (Job.not_before.is_(None)) | (Job.not_before <= now)
    )
    if only is not None:
        query = query.where(Job.provider.in_(list(only)))
    if elsewhere:
        query = query.where(Job.provider.not_in(list(elsewhere)))
    async with db.session() as session:
        rows = await session.execute(query.order_by(Job.id).limit(limit))
        return [row[0] for row in rows]


async def next_due_in(db: Database) -> float | None:
    """Seconds until the earliest queued job falls due; None when nothing is queued."""
    async with db.read_session() as session:
        row = (
            await session.execute(
                select(Job.not_before).where(Job.status == QUEUED).order_by(Job.not_before).limit(1)
            )
        ).first()
    if row is None:
        return None
    if row[0] is None:
        return 0.0
    return max(0.0, (row[0] - utcnow()).total_seconds())


async def get_job(
    session: AsyncSession,
    workspace_id: str,
    job_id: str,
    *,
    fresh: bool = False,
    member_id: str | None = None,
) -> Job | None:
    """The job if it is in this workspace (and ``member_id``'s, when given: a member sees
    its own jobs only, an admin all of the workspace's)."""
    statement = select(Job).where(Job.id == job_id, Job.workspace_id == workspace_id)
    if member_id is not None:
        statement = statement.where(Job.member_id == member_id)
    if fresh:
        statement = statement.execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def job_outputs(session: AsyncSession, job_id: str) -> list[File]:
    rows = await session.execute(
        select(File).where(File.job_id == job_id).order_by(File.output_index)
    )
    return list(rows.scalars())
