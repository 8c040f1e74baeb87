"""``/v1/credits`` and the admin's grants; ``/v1/webhooks/secret``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Query, Request

from imagegate.api import schemas
from imagegate.api.common import json_object
from imagegate.api.deps import CurrentAdmin, CurrentMember, GatewayDep, Session
from imagegate.api.openapi import AUTHENTICATED, errors, json_body
from imagegate.api.schemas import ok
from imagegate.errors import InvalidParameter
from imagegate.money import as_credits
from imagegate.services import billing, roles, webhooks
from imagegate.store.tables import LedgerEntry

MAX_GRANT = 10**12  # millicredits

router = APIRouter(tags=["credits"], responses=errors(*AUTHENTICATED))

_GRANT = {
    "type": "object",
    "required": ["amount"],
    "properties": {
        "amount": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_GRANT // 1000,
            "multipleOf": 0.001,
            "description": "Credits, a JSON number with at most 3 decimals.",
        },
        "note": {"type": ["string", "null"], "maxLength": 500},
        "workspace_id": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "Operators: the workspace to grant to; default the caller's.",
        },
    },
    "additionalProperties": False,
}


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


@router.get("/v1/credits", response_model=None, responses=ok(schemas.CreditsOverview))
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
    """A positive credit amount (at most 3 decimals) as millicredits. Only a JSON number
    is an amount: a string ("5") or a boolean is refused, not read as one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
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


@router.post(
    "/v1/admin/credits/grants",
    response_model=None,
    responses={**ok(schemas.Balance), **errors(403, 404)},
    openapi_extra=json_body(_GRANT),
)
async def grant_credits(
    request: Request, member: CurrentMember, session: Session, gateway: GatewayDep
) -> dict[str, Any]:
    """Add credits to a workspace: an operator to any, a workspace admin to its own where
    ``IMAGEGATE_ADMIN_CREDIT_GRANTS`` allows."""
    body = await json_object(request)
    unknown = set(body) - {"amount", "note", "workspace_id"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(
            f"Unknown parameter {name!r}. Allowed: amount, note, workspace_id.", param=name
        )
    workspace_id = body.get("workspace_id")
    if workspace_id is not None and (not isinstance(workspace_id, str) or not workspace_id):
        raise InvalidParameter(
            "Invalid value for 'workspace_id': a workspace id.", param="workspace_id"
        )
    amount = parse_credits(body.get("amount"))
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise InvalidParameter(
            "Invalid value for 'note': a string of at most 500 characters.", param="note"
        )
    target = await roles.credit_grant_workspace(
        session, member, workspace_id, gateway.settings.admin_credit_grants
    )
    await billing.grant(session, target, amount, member_id=member.member_id, note=note)
    balance = await billing.balance(session, target, limit=1)
    return {
        "object": "credits",
        "available": as_credits(balance.available),
        "held": as_credits(balance.held),
    }


@router.get(
    "/v1/webhooks/secret",
    response_model=None,
    responses={**ok(schemas.WebhookSecret), **errors(403)},
)
async def webhook_secret(admin: CurrentAdmin, session: Session) -> dict[str, str]:
    """The workspace's webhook signing secret (admins)."""
    return {"secret": await webhooks.workspace_secret(session, admin.workspace_id)}


@router.post(
    "/v1/webhooks/secret/rotate",
    response_model=None,
    responses={**ok(schemas.WebhookSecret), **errors(403)},
)
async def rotate_webhook_secret(admin: CurrentAdmin, session: Session) -> dict[str, str]:
    """Replace the webhook signing secret (admins); events are signed with the new one."""
    return {"secret": await webhooks.workspace_secret(session, admin.workspace_id, rotate=True)}
