"""Console sign-in: members' passwords, invite links, sessions and failed sign-ins.

A password is set through a one-time invite link that an admin creates (no mail server
needed) and stored as an argon2 hash. Signing in opens a server-side session: the
browser's cookie holds 256 random bits, the table their SHA-256, so a session ends for
certain when it is signed out, expires, or its member's access is taken away. Repeated
wrong passwords lock the login name for a while.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import AuthenticationError, Conflict, InvalidParameter, NotFound
from imagegate.ids import new_id
from imagegate.services.keys import Principal, authenticate
from imagegate.services.workspace import lock_workspace, record
from imagegate.store.console_tables import (
    ConsoleInvite,
    ConsoleSession,
    LoginAttempts,
    MemberPassword,
)
from imagegate.store.db import Database
from imagegate.store.tables import ApiKey, Member, utcnow

SESSION_COOKIE = "imagegate_session"
CSRF_HEADER = "x-csrf-token"
# A session ends after this long without a request, and in any case after SESSION_MAX.
SESSION_IDLE = timedelta(hours=12)
SESSION_MAX = timedelta(days=7)
INVITE_TTL = timedelta(days=7)
# After MAX_FAILURES wrong passwords within LOCK_WINDOW, the login is locked for LOCK_TIME.
MAX_FAILURES = 5
LOCK_WINDOW = timedelta(minutes=15)
LOCK_TIME = timedelta(minutes=15)
MIN_PASSWORD = 10
# A session's last_seen_at is written at most this often (not on every request).
TOUCH_EVERY = timedelta(minutes=1)

_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._@+-]{1,63}$")
_hasher = PasswordHasher()
# Verified against for an unknown login, so that it takes as long as a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normal_login(login: str) -> str:
    return login.strip().lower()


# ---- invites --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingInvite:
    invite: ConsoleInvite
    member: Member
    login: str | None  # the member's login if a password was set before


async def create_invite(
    session: AsyncSession,
    actor: Principal | None,
    workspace_id: str,
    member_id: str,
    *,
    audit: bool = True,
) -> tuple[ConsoleInvite, str]:
    """A one-time link for a member to set (or reset) their password; the token once.

    ``audit=False`` only for the link printed at first start, which is no admin's change.
    """
    await lock_workspace(session, workspace_id)
    member = await session.get(Member, member_id)
    if member is None or member.workspace_id != workspace_id:
        raise NotFound(
            f"No member {member_id!r} in this workspace.", code="member_not_found", param="member"
        )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invite = ConsoleInvite(
        id=new_id("inv"),
        workspace_id=workspace_id,
        member_id=member.id,
        token_hash=token_hash(token),
        created_by=actor.member_id if actor else None,
        created_at=now,
        expires_at=now + INVITE_TTL,
    )
    session.add(invite)
    await session.flush()
    if audit:
        after = {"member_id": member.id, "expires_at": int(invite.expires_at.timestamp())}
        await record(session, actor, workspace_id, "invite.created", invite.id, None, after)
    return invite, token


async def pending_invites(
    session: AsyncSession, workspace_id: str
) -> list[tuple[ConsoleInvite, Member]]:
    rows = await session.execute(
        select(ConsoleInvite, Member)
        .join(Member, Member.id == ConsoleInvite.member_id)
        .where(
            ConsoleInvite.workspace_id == workspace_id,
            ConsoleInvite.used_at.is_(None),
            ConsoleInvite.revoked_at.is_(None),
            ConsoleInvite.expires_at > utcnow(),
        )
        .order_by(ConsoleInvite.id)
    )
    return [(invite, member) for invite, member in rows.all()]


async def revoke_invite(session: AsyncSession, actor: Principal, invite_id: str) -> None:
    await lock_workspace(session, actor.workspace_id)
    invite = await session.get(ConsoleInvite, invite_id)
    if invite is None or invite.workspace_id != actor.workspace_id:
        raise NotFound(
            f"No invite {invite_id!r} in this workspace.", code="invite_not_found", param="invite"
        )
    if invite.revoked_at is None and invite.used_at is None:
        invite.revoked_at = utcnow()
        await record(
            session, actor, actor.workspace_id, "invite.revoked", invite.id, None, {"revoked": True}
        )


async def revoke_sign_in(session: AsyncSession, actor: Principal, member_id: str) -> bool:
    """Take a member's console access away: their password, sessions and open invite
    links (their API keys are revoked on their own). Whether they had any."""
    await lock_workspace(session, actor.workspace_id)
    member = await session.get(Member, member_id)
    if member is None or member.workspace_id != actor.workspace_id:
        raise NotFound(
            f"No member {member_id!r} in this workspace.", code="member_not_found", param="member"
        )
    if member.id == actor.member_id:
        raise Conflict("You cannot revoke your own sign-in; ask another admin.", code="own_sign_in")
    now = utcnow()
    password = await session.get(MemberPassword, member.id)
    ended = await session.execute(
        delete(ConsoleSession).where(ConsoleSession.member_id == member.id)
    )
    invites = await session.execute(
        update(ConsoleInvite)
        .where(
            ConsoleInvite.member_id == member.id,
            ConsoleInvite.used_at.is_(None),
            ConsoleInvite.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    if password is not None:
        await session.delete(password)
    had = password is not None or bool(ended.rowcount) or bool(invites.rowcount)  # type: ignore[attr-defined]
    if had:
        before = {"login": password.login if password else None}
        await record(
            session, actor, actor.workspace_id, "member.sign_in_revoked", member.id, before, None
        )
    return had


def _invalid_invite() -> NotFound:
    return NotFound(
        "This invite link is not valid: it was used, revoked or has expired. "
        "Ask a workspace admin for a new one.",
        code="invite_not_valid",
    )


async def open_invite(session: AsyncSession, token: str) -> PendingInvite:
    invite = (
        await session.execute(
            select(ConsoleInvite).where(ConsoleInvite.token_hash == token_hash(token))
        )
    ).scalar_one_or_none()
    if (
        invite is None
        or invite.used_at is not None
        or invite.revoked_at is not None
        or invite.expires_at <= utcnow()
    ):
        raise _invalid_invite()
    member = await session.get(Member, invite.member_id)
    if member is None:
        raise _invalid_invite()
    password = await session.get(MemberPassword, member.id)
    return PendingInvite(invite, member, password.login if password else None)


def check_login(login: str) -> str:
    name = normal_login(login)
    if not _LOGIN.match(name):
        raise InvalidParameter(
            "A login is 2 to 64 characters: letters, digits and . _ @ + - "
            "(an e-mail address works).",
            param="login",
        )
    return name


def check_password(password: str, login: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidParameter(
            f"The password must be at least {MIN_PASSWORD} characters long.", param="password"
        )
    if len(password) > 1024:
        raise InvalidParameter("The password must be at most 1024 characters.", param="password")
    if password.lower() == login:
        raise InvalidParameter("The password must not be the login.", param="password")


async def accept_invite(session: AsyncSession, token: str, login: str, password: str) -> Member:
    """Set the invited member's login and password; the link is used up and the member's
    other sessions end."""
    pending = await open_invite(session, token)
    name = check_login(login)
    check_password(password, name)
    taken = (
        await session.execute(select(MemberPassword).where(MemberPassword.login == name))
    ).scalar_one_or_none()
    if taken is not None and taken.member_id != pending.member.id:
        raise Conflict(f"The login {name!r} is taken; choose another.", code="login_taken")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    row = await session.get(MemberPassword, pending.member.id)
    if row is None:
        session.add(
            MemberPassword(member_id=pending.member.id, login=name, password_hash=password_hash)
        )
    else:
        row.login, row.password_hash, row.updated_at = name, password_hash, utcnow()
    pending.invite.used_at = utcnow()
    await session.execute(
        delete(ConsoleSession).where(ConsoleSession.member_id == pending.member.id)
    )
    await session.execute(delete(LoginAttempts).where(LoginAttempts.login == name))
    await session.flush()
    return pending.member


async def logins(session: AsyncSession, workspace_id: str) -> dict[str, str]:
    """Member id → login, for the members who have a password."""
    rows = await session.execute(
        select(MemberPassword.member_id, MemberPassword.login)
        .join(Member, Member.id == MemberPassword.member_id)
        .where(Member.workspace_id == workspace_id)
    )
    return {member_id: login for member_id, login in rows.all()}


# ---- signing in -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str
    csrf_token: str
    member: Member


def _locked(until: datetime) -> AuthenticationError:
    minutes = max(1, int((until - utcnow()).total_seconds() // 60) + 1)
    return AuthenticationError(
        f"Too many wrong passwords for this login. Try again in {minutes} minutes, "
        "or ask a workspace admin for a new invite link.",
        code="sign_in_locked",
        status_code=429,
    )


def _wrong() -> AuthenticationError:
    return AuthenticationError("Wrong login or password.", code="invalid_credentials")


async def _failed(session: AsyncSession, login: str) -> None:
    now = utcnow()
    row = await session.get(LoginAttempts, login)
    if row is None:
        session.add(LoginAttempts(login=login, failures=1, first_failure_at=now))
        return
    if row.first_failure_at < now - LOCK_WINDOW:
        row.failures, row.first_failure_at, row.locked_until = 1, now, None
        return
    row.failures += 1
    if row.failures >= MAX_FAILURES:
        row.locked_until = now + LOCK_TIME


async def _verify(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def check_password_sign_in(
    session: AsyncSession, login: str, password: str
) -> Member | AuthenticationError:
    """The member whose login and password these are, or the error to show. A wrong
    password is counted (returned, not raised, so that the count is committed); too many
    lock the login for a while."""
    name = normal_login(login)[:200]
    attempts = await session.get(LoginAttempts, name)
    if attempts and attempts.locked_until is not None and attempts.locked_until > utcnow():
        return _locked(attempts.locked_until)
    row = (
        await session.execute(select(MemberPassword).where(MemberPassword.login == name))
    ).scalar_one_or_none()
    ok = await _verify(row.password_hash if row else _DUMMY_HASH, password)
    if row is None or not ok:
        await _failed(session, name)
        return _wrong()
    if attempts is not None:
        await session.delete(attempts)
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = await asyncio.to_thread(_hasher.hash, password)
    member = await session.get(Member, row.member_id)
    assert member is not None
    return member


async def open_session(
    session: AsyncSession, member: Member, key_id: str | None = None
) -> OpenedSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    # Forget the sessions that have ended unused (a sign-in is rare enough to pay for it).
    await session.execute(
        delete(ConsoleSession).where(
            (ConsoleSession.expires_at <= now) | (ConsoleSession.last_seen_at <= now - SESSION_IDLE)
        )
    )
    session.add(
        ConsoleSession(
            token_hash=token_hash(token),
            workspace_id=member.workspace_id,
            member_id=member.id,
            key_id=key_id,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_MAX,
        )
    )
    await session.flush()
    return OpenedSession(token, csrf, member)


async def sign_in_with_key(session: AsyncSession, secret: str) -> OpenedSession:
    """A session for the member an API key belongs to (the first admin's printed key)."""
    principal = await authenticate(session, secret.strip())
    member = await session.get(Member, principal.member_id)
    assert member is not None
    return await open_session(session, member, key_id=principal.key_id)


# ---- the session behind a request --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The member behind a session cookie, as the console and the API see them."""

    principal: Principal
    name: str
    csrf_token: str

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


async def signed_in(db: Database, token: str) -> SignedIn | None:
    """The member behind a session token, or None when it is unknown or has expired.

    Read without a write lock (pages and the generator's polling call this on every
    request); written only to forget an ended session or, once a minute, to note that it
    is still in use.
    """
    key = token_hash(token)
    now = utcnow()
    async with db.read_session() as session:
        row = await session.get(ConsoleSession, key)
        if row is None:
            return None
        member = await session.get(Member, row.member_id)
        ended = member is None or row.expires_at <= now or row.last_seen_at + SESSION_IDLE <= now
        if not ended and row.key_id is not None:
            api_key = await session.get(ApiKey, row.key_id)
            ended = api_key is None or api_key.revoked_at is not None
        touch = row.last_seen_at + TOUCH_EVERY <= now
        key_id, csrf = row.key_id, row.csrf_token
    if ended or touch:
        async with db.session() as session:
            if ended:
                await session.execute(
                    delete(ConsoleSession).where(ConsoleSession.token_hash == key)
                )
            else:
                await session.execute(
                    update(ConsoleSession)
                    .where(ConsoleSession.token_hash == key)
                    .values(last_seen_at=now)
                )
    if ended or member is None:
        return None
    principal = Principal(
        workspace_id=member.workspace_id,
        member_id=member.id,
        role=member.role,
        key_id=key_id or "console",
        operator=bool(member.operator),
    )
    return SignedIn(principal, member.name, csrf)


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(
        delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token))
    )
