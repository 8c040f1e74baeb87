"""The credits ledger: grant, hold, capture, release.

Balances change only through conditional UPDATEs (``available >= amount``), so no
interleaving of requests can overspend, and every change appends a ledger entry in
the same transaction. Invariants, for every workspace:

- ``available >= 0`` and ``held >= 0``;
- ``held`` equals the sum of its holds that are still ``held``;
- ``available + held == grants - captures``.

A hold is settled once: the UPDATE that moves it out of ``held`` is conditional too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import InsufficientCredits, InvalidParameter
from imagegate.ids import new_id
from imagegate.money import as_credits
from imagegate.store.db import insert_rows
from imagegate.store.tables import (
    CREDIT_ACCOUNTS,
    CREDIT_HOLDS,
    CreditAccount,
    CreditHold,
    LedgerEntry,
    utcnow,
)
from imagegate.store.tx import Tx


def credits_text(millicredits: int) -> str:
    whole, rest = divmod(millicredits, 1000)
    return f"{whole}" if rest == 0 else f"{whole}.{rest:03d}".rstrip("0")


async def ensure_account(session: AsyncSession, workspace_id: str) -> None:
    if await session.get(CreditAccount, workspace_id) is None:
        session.add(CreditAccount(workspace_id=workspace_id, available=0, held=0))
        await session.flush()


def _entry(
    workspace_id: str,
    kind: str,
    amount: int,
    *,
    job_id: str | None = None,
    member_id: str | None = None,
    note: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        id=new_id("le"),
        workspace_id=workspace_id,
        kind=kind,
        amount=amount,
        job_id=job_id,
        member_id=member_id,
        note=note,
    )


async def grant(
    session: AsyncSession,
    workspace_id: str,
    amount: int,
    *,
    member_id: str | None,
    note: str | None,
) -> None:
    if amount <= 0:
        raise InvalidParameter(
            "Invalid value for 'amount': a grant must be positive.", param="amount"
        )
    await ensure_account(session, workspace_id)
    await session.execute(
        update(CREDIT_ACCOUNTS)
        .where(CreditAccount.workspace_id == workspace_id)
        .values(available=CreditAccount.available + amount, updated_at=utcnow())
    )
    session.add(_entry(workspace_id, "grant", amount, member_id=member_id, note=note))
    await session.flush()


# The statements of every generation, built once: building and keying a statement on each
# call costs about as much as running it. They name the tables' columns, not the mapped
# classes' attributes, so they take Core's path, with no ORM bulk-update step that keys the
# statement anew on every run.
_HOLD = (
    update(CREDIT_ACCOUNTS)
    .where(
        CREDIT_ACCOUNTS.c.workspace_id == bindparam("p_workspace_id"),
        CREDIT_ACCOUNTS.c.available >= bindparam("p_amount", type_=BigInteger),
    )
    .values(
        available=CREDIT_ACCOUNTS.c.available - bindparam("p_amount", type_=BigInteger),
        held=CREDIT_ACCOUNTS.c.held + bindparam("p_amount", type_=BigInteger),
        updated_at=bindparam("p_now"),
    )
)
_SETTLE_HOLD = (
    update(CREDIT_HOLDS)
    .where(CREDIT_HOLDS.c.job_id == bindparam("p_job_id"), CREDIT_HOLDS.c.status == "held")
    .values(
        status=bindparam("p_status"),
        captured=case(
            (
                CREDIT_HOLDS.c.amount < bindparam("p_charge", type_=BigInteger),
                CREDIT_HOLDS.c.amount,
            ),
            else_=bindparam("p_charge", type_=BigInteger),
        ),
        settled_at=bindparam("p_now"),
    )
    .returning(CREDIT_HOLDS.c.workspace_id, CREDIT_HOLDS.c.amount)
)
_SETTLE_ACCOUNT = (
    update(CREDIT_ACCOUNTS)
    .where(CREDIT_ACCOUNTS.c.workspace_id == bindparam("p_workspace_id"))
    .values(
        held=CREDIT_ACCOUNTS.c.held - bindparam("p_amount", type_=BigInteger),
        available=CREDIT_ACCOUNTS.c.available + bindparam("p_back", type_=BigInteger),
        updated_at=bindparam("p_now"),
    )
)


# On PostgreSQL a hold, and a settlement with its ledger entries, are each one statement
# (data-modifying CTEs): one round trip where SQLite runs three to five statements. Both
# keep the same conditions: the account UPDATE cannot overspend, and only the settlement
# that moves the hold out of ``held`` writes anything.
_HOLD_ONE_STATEMENT = text(
    """
WITH account AS (
    UPDATE credit_accounts
       SET available = available - CAST(:amount AS BIGINT),
           held = held + CAST(:amount AS BIGINT),
           updated_at = CAST(:now AS TIMESTAMPTZ)
     WHERE workspace_id = CAST(:workspace_id AS VARCHAR)
       AND available >= CAST(:amount AS BIGINT)
 RETURNING workspace_id
), hold AS (
    INSERT INTO credit_holds (job_id, workspace_id, amount, status, captured, created_at)
    SELECT CAST(:job_id AS VARCHAR), workspace_id, CAST(:amount AS BIGINT), 'held', 0,
           CAST(:now AS TIMESTAMPTZ)
      FROM account
), entry AS (
    INSERT INTO ledger_entries (id, workspace_id, kind, amount, job_id, created_at)
    SELECT CAST(:entry_id AS VARCHAR), workspace_id, 'hold', CAST(:amount AS BIGINT),
           CAST(:job_id AS VARCHAR), CAST(:now AS TIMESTAMPTZ)
      FROM account
)
SELECT count(*) FROM account
"""
)
_SETTLE_ONE_STATEMENT = text(
    """
WITH hold AS (
    UPDATE credit_holds
       SET status = CAST(:status AS VARCHAR),
           captured = LEAST(amount, CAST(:charge AS BIGINT)),
           settled_at = CAST(:now AS TIMESTAMPTZ)
     WHERE job_id = CAST(:job_id AS VARCHAR) AND status = 'held'
 RETURNING workspace_id, amount, captured
), account AS (
    UPDATE credit_accounts
       SET held = credit_accounts.held - hold.amount,
           available = credit_accounts.available + hold.amount - hold.captured,
           updated_at = CAST(:now AS TIMESTAMPTZ)
      FROM hold
     WHERE credit_accounts.workspace_id = hold.workspace_id
), capture_entry AS (
    INSERT INTO ledger_entries (id, workspace_id, kind, amount, job_id, created_at)
    SELECT CAST(:capture_id AS VARCHAR), workspace_id, 'capture', captured,
           CAST(:job_id AS VARCHAR), CAST(:now AS TIMESTAMPTZ)
      FROM hold
     WHERE CAST(:status AS VARCHAR) = 'captured'
), release_entry AS (
    INSERT INTO ledger_entries (id, workspace_id, kind, amount, job_id, note, created_at)
    SELECT CAST(:release_id AS VARCHAR), workspace_id, 'release', amount - captured,
           CAST(:job_id AS VARCHAR), CAST(:note AS VARCHAR), CAST(:now AS TIMESTAMPTZ)
      FROM hold
     WHERE amount > captured
)
SELECT amount, captured FROM hold
"""
)


_AVAILABLE = select(CREDIT_ACCOUNTS.c.available).where(
    CREDIT_ACCOUNTS.c.workspace_id == bindparam("p_workspace_id")
)


def _one_statement(tx: Tx) -> bool:
    """Whether the database runs the hold and the settlement as one statement each."""
    return tx.dialect_name == "postgresql"


async def hold(tx: Tx, workspace_id: str, job_id: str, amount: int) -> None:
    """Reserve ``amount`` for a job, or raise 402 if it does not fit."""
    if amount <= 0:
        return
    now = utcnow()
    if _one_statement(tx):
        params = {
            "workspace_id": workspace_id,
            "job_id": job_id,
            "amount": amount,
            "now": now,
            "entry_id": new_id("le"),
        }
        held = (await tx.execute(_HOLD_ONE_STATEMENT, params)).scalar_one() == 1
    else:
        result = await tx.execute(
            _HOLD, {"p_workspace_id": workspace_id, "p_amount": amount, "p_now": now}
        )
        held = result.rowcount == 1
        if held:
            await insert_rows(
                tx,
                CreditHold(job_id=job_id, workspace_id=workspace_id, amount=amount, status="held"),
                _entry(workspace_id, "hold", amount, job_id=job_id),
            )
    if not held:
        available = (await tx.execute(_AVAILABLE, {"p_workspace_id": workspace_id})).scalar() or 0
        raise InsufficientCredits(
            f"This generation needs {credits_text(amount)} credits; "
            f"{credits_text(available)} are available.",
            extra={"available": as_credits(available), "needed": as_credits(amount)},
        )


async def _settle(
    tx: Tx, job_id: str, status: str, charge: int, note: str | None = None
) -> tuple[int, int] | None:
    """Move the job's hold out of ``held``, give back what is not charged and write the
    ledger entries: (held amount, amount captured), or None if no hold was held.

    The hold moves in one conditional UPDATE: of two settlements racing, only one does."""
    now = utcnow()
    if _one_statement(tx):
        params = {
            "job_id": job_id,
            "status": status,
            "charge": charge,
            "now": now,
            "note": note,
            "capture_id": new_id("le"),
            "release_id": new_id("le"),
        }
        row = (await tx.execute(_SETTLE_ONE_STATEMENT, params)).first()
        return None if row is None else (row.amount, row.captured)
    params = {"p_job_id": job_id, "p_status": status, "p_charge": charge, "p_now": now}
    row = (await tx.execute(_SETTLE_HOLD, params)).first()
    if row is None:
        return None
    workspace_id, amount = row
    charged = min(charge, amount)
    await tx.execute(
        _SETTLE_ACCOUNT,
        {
            "p_workspace_id": workspace_id,
            "p_amount": amount,
            "p_back": amount - charged,
            "p_now": now,
        },
    )
    entries = []
    if status == "captured":
        entries.append(_entry(workspace_id, "capture", charged, job_id=job_id))
    if amount > charged:
        entries.append(_entry(workspace_id, "release", amount - charged, job_id=job_id, note=note))
    await insert_rows(tx, *entries)
    return amount, charged


async def capture(tx: Tx, job_id: str, actual: int) -> int:
    """Charge the actual cost (never above the hold) and release the rest; the amount charged."""
    settled = await _settle(tx, job_id, "captured", actual)
    return 0 if settled is None else settled[1]


async def release(tx: Tx, job_id: str, note: str | None = None) -> int:
    """Give the whole hold back (failure, expiry, cancel); the amount released."""
    settled = await _settle(tx, job_id, "released", 0, note)
    return 0 if settled is None else settled[0]


async def record_usage(tx: Tx, workspace_id: str, job_id: str, amount: int, policy: str) -> None:
    """Usage that is not charged (included in a flat plan, or invoiced later)."""
    if amount > 0:
        await insert_rows(tx, _entry(workspace_id, "usage", amount, job_id=job_id, note=policy))


@dataclass(frozen=True, slots=True)
class Balance:
    available: int
    held: int
    entries: list[LedgerEntry]


async def balance(session: AsyncSession, workspace_id: str, limit: int = 50) -> Balance:
    account = await session.get(CreditAccount, workspace_id)
    entries = (
        await session.execute(
            select(LedgerEntry)
            .where(LedgerEntry.workspace_id == workspace_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
    ).scalars()
    return Balance(
        available=account.available if account else 0,
        held=account.held if account else 0,
        entries=list(entries),
    )


async def totals(session: AsyncSession, workspace_id: str) -> dict[str, int]:
    """Sum of ledger entries by kind (for audits and the invariant tests)."""
    rows = await session.execute(
        select(LedgerEntry.kind, func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.workspace_id == workspace_id)
        .group_by(LedgerEntry.kind)
    )
    return {kind: int(total) for kind, total in rows}
