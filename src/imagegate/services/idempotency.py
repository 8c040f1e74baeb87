"""Idempotency keys: one key, one request, one job, per member.

The key row is written with the job and its hold, in one transaction (on PostgreSQL
one statement: see ``generation.submit``), so "exactly one job" is the database's
unique constraint, not a race we hope to win.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, select

from imagegate.errors import Conflict, ImagegateError, InvalidParameter
from imagegate.store.db import Database, insert_rows
from imagegate.store.tables import IDEMPOTENCY_KEYS, IdempotencyKey, utcnow
from imagegate.store.tx import Tx

MAX_KEY_LENGTH = 255


class IdempotencyMismatch(ImagegateError):
    status_code = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"


def request_key(header: str | None, body: dict[str, Any]) -> str | None:
    """The key from the ``Idempotency-Key`` header or the body's ``idempotency_key``."""
    from_body = body.pop("idempotency_key", None)
    key = header if header is not None else from_body
    if key is None:
        return None
    if from_body is not None and header is not None and from_body != header:
        raise InvalidParameter(
            "The Idempotency-Key header and the body's 'idempotency_key' differ.",
            param="idempotency_key",
        )
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidParameter(
            "Invalid value for 'idempotency_key': a non-empty string of at most "
            f"{MAX_KEY_LENGTH} characters.",
            param="idempotency_key",
        )
    return key


def fingerprint(endpoint: str, body: dict[str, Any], webhook_url: str | None = None) -> str:
    """The hash of everything that decides what the job does and where its result goes:
    the endpoint (with the model of ``/v1/jobs/{model}``), the body and the webhook."""
    request: dict[str, Any] = {"endpoint": endpoint, "body": body}
    if webhook_url is not None:
        request["webhook_url"] = webhook_url
    canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


_FIND = select(IDEMPOTENCY_KEYS.c.request_hash, IDEMPOTENCY_KEYS.c.job_id).where(
    IDEMPOTENCY_KEYS.c.member_id == bindparam("p_member_id"),
    IDEMPOTENCY_KEYS.c.key == bindparam("p_key"),
)


async def find(tx: Tx, member_id: str, key: str, request_hash: str) -> str | None:
    """The job this key already made, or None; 422 if it came with another request."""
    row = (await tx.execute(_FIND, {"p_member_id": member_id, "p_key": key})).first()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request.",
            param="idempotency_key",
        )
    return str(row.job_id)


async def record(tx: Tx, member_id: str, key: str, request_hash: str, job_id: str) -> None:
    """Remember the key with its job, in the job's transaction (a second insert of the same
    key fails there: IntegrityError)."""
    await insert_rows(
        tx,
        IdempotencyKey(member_id=member_id, key=key, request_hash=request_hash, job_id=job_id),
    )


async def purge(db: Database, ttl_seconds: float) -> int:
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    async with db.session() as session:
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def in_flight() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still being created; retry shortly.",
        code="idempotency_in_progress",
        param="idempotency_key",
    )
