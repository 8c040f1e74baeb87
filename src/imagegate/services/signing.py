"""Signed file URLs: HMAC-SHA256 over file, workspace and expiry, with a key id for rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import PermissionDenied
from imagegate.ids import new_id
from imagegate.store.tables import SigningKey, utcnow


@dataclass(frozen=True, slots=True)
class SignedLink:
    expires: int
    kid: str
    signature: str

    def query(self) -> str:
        return f"expires={self.expires}&kid={self.kid}&signature={self.signature}"


class Signer:
    """Signs with the newest key; verifies with any key it knows."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("current signing key is unknown")
        self._keys = keys
        self._current = current
        self.clock: Callable[[], float] = time.time  # replaceable, so tests need not sleep

    @property
    def current_kid(self) -> str:
        return self._current

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    @staticmethod
    def _mac(secret: bytes, file_id: str, workspace_id: str, expires: int) -> str:
        message = f"{file_id}\n{workspace_id}\n{expires}".encode()
        digest = hmac.new(secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(
        self, file_id: str, workspace_id: str, ttl_seconds: int, now: float | None = None
    ) -> SignedLink:
        # Rounded up: a link lives at least its TTL, never a fraction of a second less.
        expires = math.ceil((now if now is not None else self.clock()) + ttl_seconds)
        signature = self._mac(self._keys[self._current], file_id, workspace_id, expires)
        return SignedLink(expires=expires, kid=self._current, signature=signature)

    def verify(
        self, file_id: str, workspace_id: str, expires: int, kid: str, signature: str
    ) -> None:
        secret = self._keys.get(kid)
        expected = self._mac(secret, file_id, workspace_id, expires) if secret else ""
        if not secret or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise PermissionDenied("This link's signature is not valid.", code="invalid_signature")
        if expires < self.clock():
            raise PermissionDenied(
                "This link has expired. Fetch the job or file again for a fresh one.",
                code="link_expired",
            )


def _new_key() -> SigningKey:
    return SigningKey(kid=new_id("sk")[-10:], secret=secrets.token_hex(32))


async def load_signer(session: AsyncSession) -> Signer:
    """The signer from the stored keys, creating the first key if there is none."""
    rows = (await session.execute(select(SigningKey).order_by(SigningKey.id))).scalars().all()
    if not rows:
        key = _new_key()
        session.add(key)
        await session.flush()
        rows = [key]
    keys = {row.kid: bytes.fromhex(row.secret) for row in rows}
    return Signer(keys, rows[-1].kid)


async def rotate_signing_key(session: AsyncSession) -> str:
    """Add a key that signs from now on; older keys keep verifying the links they signed."""
    key = _new_key()
    session.add(key)
    await session.flush()
    return key.kid


async def newest_key_age(session: AsyncSession) -> timedelta | None:
    created = (
        await session.execute(select(SigningKey.created_at).order_by(SigningKey.id.desc()).limit(1))
    ).scalar_one_or_none()
    return None if created is None else utcnow() - created


async def retire_signing_keys(session: AsyncSession, link_ttl_seconds: int) -> list[str]:
    """Drop keys replaced longer ago than a link lives: nothing they signed is valid any more."""
    rows = (await session.execute(select(SigningKey).order_by(SigningKey.id))).scalars().all()
    cutoff = utcnow() - timedelta(seconds=link_ttl_seconds + 60)
    retired = [older.kid for older, newer in itertools.pairwise(rows) if newer.created_at < cutoff]
    if retired:
        await session.execute(delete(SigningKey).where(SigningKey.kid.in_(retired)))
    return retired
