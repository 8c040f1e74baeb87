"""API keys: high entropy, shown once, stored as a SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import AuthenticationError
from imagegate.ids import new_id
from imagegate.store.tables import ApiKey, Member

KEY_PREFIX = "ig_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a member of one workspace, through one key."""

    workspace_id: str
    member_id: str
    role: str
    key_id: str
    # The instance-wide operator role, apart from the workspace role (docs/admin.md).
    operator: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def only_member(self) -> str | None:
        """Whose jobs and files this caller sees and acts on: its own (a member), or all
        of the workspace's (an admin: None)."""
        return None if self.is_admin else self.member_id


def hash_key(secret: str) -> str:
    # Keys carry 240 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def make_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


async def create_key(session: AsyncSession, member: Member, name: str) -> tuple[ApiKey, str]:
    secret = make_secret()
    key = ApiKey(
        id=new_id("key"),
        workspace_id=member.workspace_id,
        member_id=member.id,
        name=name,
        prefix=secret[:11],
        secret_hash=hash_key(secret),
    )
    session.add(key)
    await session.flush()
    return key, secret


class PrincipalCache:
    """Who a key belongs to, remembered for ``ttl_seconds`` so that a request does not
    look its key up every time. :meth:`clear` after any change to keys or members made
    in this process; changes made elsewhere arrive within the TTL.

    A look-up notes :attr:`generation` before it reads the database and hands it to
    :meth:`put`: one that began before a :meth:`clear` (a revoke, a role change) may have
    read the old state, and is not kept."""

    def __init__(
        self, ttl_seconds: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = ttl_seconds > 0
        self._cache: TTLCache[str, Principal] = TTLCache(
            maxsize=size, ttl=max(ttl_seconds, 0.001), timer=clock
        )
        self.generation = 0

    def get(self, secret: str) -> Principal | None:
        return self._cache.get(hash_key(secret)) if self.enabled else None

    def put(self, secret: str, principal: Principal, *, looked_up_in: int) -> None:
        """Remember ``principal``, read in ``looked_up_in`` (the generation at the start
        of its look-up), unless the cache was cleared since."""
        if self.enabled and looked_up_in == self.generation:
            self._cache[hash_key(secret)] = principal

    def clear(self) -> None:
        self.generation += 1
        self._cache.clear()


async def authenticate(session: AsyncSession, secret: str) -> Principal:
    if not secret.startswith(KEY_PREFIX):
        raise AuthenticationError("Invalid API key. Keys start with 'ig_'.")
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.workspace_id, ApiKey.member_id, Member.role, Member.operator)
            .join(Member, Member.id == ApiKey.member_id)
            .where(ApiKey.secret_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        raise AuthenticationError("Invalid or revoked API key.")
    return Principal(
        workspace_id=row.workspace_id,
        member_id=row.member_id,
        role=row.role,
        key_id=row.id,
        operator=bool(row.operator),
    )
