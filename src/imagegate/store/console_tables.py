"""The console's tables (migration 0006): passwords, invite links, sessions, failed sign-ins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from imagegate.store.tables import Base, utcnow


class MemberPassword(Base):
    """A member's console sign-in: a unique login name and an argon2 hash."""

    __tablename__ = "member_passwords"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)
    login: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleInvite(Base):
    """A one-time link that lets a member set their password."""

    __tablename__ = "console_invites"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class ConsoleSession(Base):
    """A signed-in browser; the cookie holds the token, the table its hash."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    # Set when the session was opened with an API key: it ends when the key is revoked.
    key_id: Mapped[str | None] = mapped_column(String(40))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class LoginAttempts(Base):
    """Failed sign-ins per login name, and until when it is locked."""

    __tablename__ = "login_attempts"

    login: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()
