"""``/v1/credits`` and the admin's grants; ``/v1/webhooks/secret``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Query, Request

from imagegate.api.common import json_object
from imagegate.api.deps import CurrentAdmin, CurrentMember, Session
from imagegate.errors import InvalidParameter
from imagegate.money import as_credits
from imagegate.services import billing, webhooks
from imagegate.store.tables import LedgerEntry

router = APIRouter(tags=["credits"])

MAX_GRANT = 10**12  # millicredits


def _entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": as_credits(entry.amount),
        "job_id": entry.job_id,
        "member_id": entry.member_id,
        "note": entry.note,
        "created_at": int(entry.created_at.timestamp()),
    }


@router.get("/v1/credits")
async def get_credits(
    member: CurrentMember,
    session: Session,
    limit: int = Query(default=50, ge=1, le=500, description="Recent ledger entries to include."),
) -> dict[str, Any]:
    """The workspace's balance: available, held, and the most recent ledger entries."""
    balance = await billing.balance(session, member.workspace_id, limit)
    return {
        "object": "credits",
        "available": as_credits(balance.available),
        "held": as_credits(balance.held),
        "entries": [_entry(e) for e in balance.entries],
    }


def parse_credits(value: Any, param: str = "amount") -> int:
    """A positive credit amount (at most 3 decimals) as millicredits."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParameter(
            f"Invalid value for {param!r}: expected a number of credits.", param=param
        )
    try:
        amount = Decimal(str(value)) * 1000
    except InvalidOperation:
        raise InvalidParameter(
            f"Invalid value for {param!r}: expected a number of credits.", param=param
        ) from None
    if (
        not amount.is_finite()
        or amount != amount.to_integral_value()
        or not 0 < amount <= MAX_GRANT
    ):
        raise InvalidParameter(
            f"Invalid value for {param!r}: a positive number of credits with at most 3 decimals, "
            f"up to {MAX_GRANT // 1000}.",
            param=param,
        )
    return int(amount)


@router.post("/v1/admin/credits/grants")
async def grant_credits(request: Request, admin: CurrentAdmin, session: Session) -> dict[str, Any]:
    """Add credits to the workspace (admins)."""
    body = await json_object(request)
    unknown = set(body) - {"amount", "note"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(f"Unknown parameter {name!r}. Allowed: amount, note.", param=name)
    amount = parse_credits(body.get("amount"))
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise InvalidParameter(
            "Invalid value for 'note': a string of at most 500 characters.", param="note"
        )
    await billing.grant(session, admin.workspace_id, amount, member_id=admin.member_id, note=note)
    balance = await billing.balance(session, admin.workspace_id, limit=1)
    return {
        "object": "credits",
        "available": as_credits(balance.available),
        "held": as_credits(balance.held),
    }


@router.get("/v1/webhooks/secret")
async def webhook_secret(admin: CurrentAdmin, session: Session) -> dict[str, str]:
    """The workspace's webhook signing secret (admins)."""
    return {"secret": await webhooks.workspace_secret(session, admin.workspace_id)}


@router.post("/v1/webhooks/secret/rotate")
async def rotate_webhook_secret(admin: CurrentAdmin, session: Session) -> dict[str, str]:
    """Replace the webhook signing secret (admins); events are signed with the new one."""
    return {"secret": await webhooks.workspace_secret(session, admin.workspace_id, rotate=True)}
