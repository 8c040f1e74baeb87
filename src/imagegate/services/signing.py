"""Signed file URLs: HMAC-SHA256 over file, workspace and expiry, with a key id for rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import PermissionDenied
from imagegate.ids import new_id
from imagegate.store.tables import SigningKey


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

    @staticmethod
    def _mac(secret: bytes, file_id: str, workspace_id: str, expires: int) -> str:
        message = f"{file_id}\n{workspace_id}\n{expires}".encode()
        digest = hmac.new(secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(
        self, file_id: str, workspace_id: str, ttl_seconds: int, now: float | None = None
    ) -> SignedLink:
        expires = int((now if now is not None else time.time()) + ttl_seconds)
        signature = self._mac(self._keys[self._current], file_id, workspace_id, expires)
        return SignedLink(expires=expires, kid=self._current, signature=signature)

    def verify(
        self, file_id: str, workspace_id: str, expires: int, kid: str, signature: str
    ) -> None:
        secret = self._keys.get(kid)
        expected = self._mac(secret, file_id, workspace_id, expires) if secret else ""
        if not secret or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise PermissionDenied("This link's signature is not valid.", code="invalid_signature")
        if expires < time.time():
            raise PermissionDenied(
                "This link has expired. Fetch the job or file again for a fresh one.",
                code="link_expired",
            )


async def load_signer(session: AsyncSession) -> Signer:
    """The signer from the stored keys, creating the first key if there is none."""
    rows = (await session.execute(select(SigningKey).order_by(SigningKey.id))).scalars().all()
    if not rows:
        key = SigningKey(kid=new_id("sk")[-10:], secret=secrets.token_hex(32))
        session.add(key)
        await session.flush()
        rows = [key]
    keys = {row.kid: bytes.fromhex(row.secret) for row in rows}
    return Signer(keys, rows[-1].kid)
