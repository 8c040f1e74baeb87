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

from sqlalchemy import BigInteger, bindparam, case, func, select, update
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
# call costs about as much as running it.
_HOLD = (
    update(CREDIT_ACCOUNTS)
    .where(
        CreditAccount.workspace_id == bindparam("p_workspace_id"),
        CreditAccount.available >= bindparam("p_amount", type_=BigInteger),
    )
    .values(
        available=CreditAccount.available - bindparam("p_amount", type_=BigInteger),
        held=CreditAccount.held + bindparam("p_amount", type_=BigInteger),
        updated_at=bindparam("p_now"),
    )
)
_SETTLE_HOLD = (
    update(CREDIT_HOLDS)
    .where(CreditHold.job_id == bindparam("p_job_id"), CreditHold.status == "held")
    .values(
        status=bindparam("p_status"),
        captured=case(
            (CreditHold.amount < bindparam("p_charge", type_=BigInteger), CreditHold.amount),
            else_=bindparam("p_charge", type_=BigInteger),
        ),
        settled_at=bindparam("p_now"),
    )
    .returning(CreditHold.workspace_id, CreditHold.amount)
)
_SETTLE_ACCOUNT = (
    update(CREDIT_ACCOUNTS)
    .where(CreditAccount.workspace_id == bindparam("p_workspace_id"))
    .values(
        held=CreditAccount.held - bindparam("p_amount", type_=BigInteger),
        available=CreditAccount.available + bindparam("p_back", type_=BigInteger),
        updated_at=bindparam("p_now"),
    )
)


async def hold(session: AsyncSession, workspace_id: str, job_id: str, amount: int) -> None:
    """Reserve ``amount`` for a job, or raise 402 if it does not fit."""
    if amount <= 0:
        return
    result = await session.execute(
        _HOLD, {"p_workspace_id": workspace_id, "p_amount": amount, "p_now": utcnow()}
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        account = await session.get(CreditAccount, workspace_id)
        available = account.available if account else 0
        raise InsufficientCredits(
            f"This generation needs {credits_text(amount)} credits; "
            f"{credits_text(available)} are available.",
            extra={"available": as_credits(available), "needed": as_credits(amount)},
        )
    await insert_rows(
        session,
        CreditHold(job_id=job_id, workspace_id=workspace_id, amount=amount, status="held"),
        _entry(workspace_id, "hold", amount, job_id=job_id),
    )


async def _settle(
    session: AsyncSession, job_id: str, status: str, charge: int
) -> tuple[str, int] | None:
    """Move the job's hold out of ``held``; (workspace, held amount), or None if none was.

    One conditional UPDATE: of two settlements racing, only one moves the hold."""
    now = utcnow()
    params = {"p_job_id": job_id, "p_status": status, "p_charge": charge, "p_now": now}
    row = (await session.execute(_SETTLE_HOLD, params)).first()
    if row is None:
        return None
    workspace_id, amount = row
    charged = min(charge, amount)
    await session.execute(
        _SETTLE_ACCOUNT,
        {
            "p_workspace_id": workspace_id,
            "p_amount": amount,
            "p_back": amount - charged,
            "p_now": now,
        },
    )
    return workspace_id, amount


async def capture(session: AsyncSession, job_id: str, actual: int) -> int:
    """Charge the actual cost (never above the hold) and release the rest; the amount charged."""
    settled = await _settle(session, job_id, "captured", actual)
    if settled is None:
        return 0
    workspace_id, amount = settled
    charged = min(actual, amount)
    entries = [_entry(workspace_id, "capture", charged, job_id=job_id)]
    if amount > charged:
        entries.append(_entry(workspace_id, "release", amount - charged, job_id=job_id))
    await insert_rows(session, *entries)
    return charged


async def release(session: AsyncSession, job_id: str, note: str | None = None) -> int:
    """Give the whole hold back (failure, expiry, cancel); the amount released."""
    settled = await _settle(session, job_id, "released", 0)
    if settled is None:
        return 0
    workspace_id, amount = settled
    session.add(_entry(workspace_id, "release", amount, job_id=job_id, note=note))
    await session.flush()
    return amount


async def record_usage(
    session: AsyncSession, workspace_id: str, job_id: str, amount: int, policy: str
) -> None:
    """Usage that is not charged (included in a flat plan, or invoiced later)."""
    if amount > 0:
        await insert_rows(
            session, _entry(workspace_id, "usage", amount, job_id=job_id, note=policy)
        )


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
