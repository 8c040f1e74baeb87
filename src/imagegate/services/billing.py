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
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    BindParameter,
    ColumnElement,
    String,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import InsufficientCredits, InvalidParameter
from imagegate.ids import new_id
from imagegate.money import as_credits
from imagegate.store.db import insert_rows
from imagegate.store.tables import (
    CREDIT_ACCOUNTS,
    CREDIT_HOLDS,
    LEDGER_ENTRIES,
    CreditAccount,
    CreditHold,
    LedgerEntry,
    UTCDateTime,
    utcnow,
)
from imagegate.store.tx import Tx, combines_writes


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
# that moves the hold out of ``held`` writes anything. The CTEs are offered to callers
# that fold more writes into the same statement (the job's insert, its success).


def _param(name: str, type_: Any = BigInteger) -> BindParameter[Any]:
    return bindparam(name, type_=type_)


def hold_ctes(guard: ColumnElement[bool] | None = None) -> tuple[CTE, tuple[CTE, ...]]:
    """A hold as CTEs: the account UPDATE (one row returned when the hold fits, none when
    it does not), and the hold and ledger inserts that follow from that row. With
    ``guard`` the account is updated only where the guard holds too.

    Parameters: ``h_workspace_id``, ``h_job_id``, ``h_amount``, ``h_now``, ``h_entry_id``.
    """
    amount = _param("h_amount")
    now = _param("h_now", UTCDateTime())
    job_id = _param("h_job_id", String())
    account = (
        update(CREDIT_ACCOUNTS)
        .where(
            CREDIT_ACCOUNTS.c.workspace_id == _param("h_workspace_id", String()),
            CREDIT_ACCOUNTS.c.available >= amount,
            *([] if guard is None else [guard]),
        )
        .values(
            available=CREDIT_ACCOUNTS.c.available - amount,
            held=CREDIT_ACCOUNTS.c.held + amount,
            updated_at=now,
        )
        .returning(CREDIT_ACCOUNTS.c.workspace_id)
        .cte("account")
    )
    holds = CREDIT_HOLDS.c
    hold_row = insert(CREDIT_HOLDS).from_select(
        [holds.job_id, holds.workspace_id, holds.amount, holds.status, holds.captured,
         holds.created_at],
        select(job_id, account.c.workspace_id, amount, literal("held"), literal(0, BigInteger),
               now),
    )  # fmt: skip
    entry = insert(LEDGER_ENTRIES).from_select(
        _ENTRY_COLUMNS,
        select(_param("h_entry_id", String()), account.c.workspace_id, literal("hold"), amount,
               job_id, literal(None, String()), now),
    )  # fmt: skip
    return account, (hold_row.cte("hold"), entry.cte("hold_entry"))


def settle_ctes(job_id: ColumnElement[Any]) -> tuple[CTE, tuple[CTE, ...]]:
    """A settlement as CTEs: the hold's UPDATE out of ``held`` (its row returned:
    workspace, amount, captured), and the account update and ledger entries that follow.

    ``job_id`` names the job (a parameter, or a subquery of a CTE it depends on).
    Parameters: ``s_status``, ``s_charge``, ``s_now``, ``s_note``, ``s_capture_id``,
    ``s_release_id``, ``s_job_id``.
    """
    now = _param("s_now", UTCDateTime())
    status = _param("s_status", String())
    holds = CREDIT_HOLDS.c
    hold = (
        update(CREDIT_HOLDS)
        .where(holds.job_id == job_id, holds.status == "held")
        .values(
            status=status,
            captured=func.least(holds.amount, _param("s_charge")),
            settled_at=now,
        )
        .returning(holds.workspace_id, holds.amount, holds.captured)
        .cte("settled")
    )
    accounts = CREDIT_ACCOUNTS.c
    account = (
        update(CREDIT_ACCOUNTS)
        .where(accounts.workspace_id == hold.c.workspace_id)
        .values(
            held=accounts.held - hold.c.amount,
            available=accounts.available + hold.c.amount - hold.c.captured,
            updated_at=now,
        )
    )
    job = _param("s_job_id", String())
    capture_entry = insert(LEDGER_ENTRIES).from_select(
        _ENTRY_COLUMNS,
        select(_param("s_capture_id", String()), hold.c.workspace_id, literal("capture"),
               hold.c.captured, job, literal(None, String()), now)
        .where(status == "captured"),
    )  # fmt: skip
    release_entry = insert(LEDGER_ENTRIES).from_select(
        _ENTRY_COLUMNS,
        select(_param("s_release_id", String()), hold.c.workspace_id, literal("release"),
               hold.c.amount - hold.c.captured, job, _param("s_note", String()), now)
        .where(hold.c.amount > hold.c.captured),
    )  # fmt: skip
    return hold, (
        account.cte("settled_account"),
        capture_entry.cte("capture_entry"),
        release_entry.cte("release_entry"),
    )


def settle_params(
    job_id: str, status: str, charge: int, now: datetime, note: str | None = None
) -> dict[str, Any]:
    """The parameters of :func:`settle_ctes`."""
    return {
        "s_job_id": job_id,
        "s_status": status,
        "s_charge": charge,
        "s_now": now,
        "s_note": note,
        "s_capture_id": new_id("le"),
        "s_release_id": new_id("le"),
    }


_ENTRY_COLUMNS = [
    LEDGER_ENTRIES.c[name]
    for name in ("id", "workspace_id", "kind", "amount", "job_id", "note", "created_at")
]
_HOLD_ACCOUNT, _HOLD_ROWS = hold_ctes()
_HOLD_ONE_STATEMENT = (
    select(func.count().label("held")).select_from(_HOLD_ACCOUNT).add_cte(*_HOLD_ROWS)
)
_SETTLED, _SETTLE_ROWS = settle_ctes(_param("s_job_id", String()))
_SETTLE_ONE_STATEMENT = select(_SETTLED.c.amount, _SETTLED.c.captured).add_cte(*_SETTLE_ROWS)


_AVAILABLE = select(CREDIT_ACCOUNTS.c.available).where(
    CREDIT_ACCOUNTS.c.workspace_id == bindparam("p_workspace_id")
)


async def hold(tx: Tx, workspace_id: str, job_id: str, amount: int) -> None:
    """Reserve ``amount`` for a job, or raise 402 if it does not fit."""
    if amount <= 0:
        return
    now = utcnow()
    if combines_writes(tx.dialect_name):
        params = hold_params(workspace_id, job_id, amount, now)
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
        raise await insufficient(tx, workspace_id, amount)


def hold_params(workspace_id: str, job_id: str, amount: int, now: datetime) -> dict[str, Any]:
    """The parameters of :func:`hold_ctes`."""
    return {
        "h_workspace_id": workspace_id,
        "h_job_id": job_id,
        "h_amount": amount,
        "h_now": now,
        "h_entry_id": new_id("le"),
    }


async def insufficient(tx: Tx, workspace_id: str, amount: int) -> InsufficientCredits:
    """The 402 for a hold of ``amount`` that did not fit, with what is available now."""
    available = (await tx.execute(_AVAILABLE, {"p_workspace_id": workspace_id})).scalar() or 0
    return InsufficientCredits(
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
    if combines_writes(tx.dialect_name):
        params = settle_params(job_id, status, charge, now, note)
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
