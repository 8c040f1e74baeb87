"""Dependencies shared by the routers: the gateway, a session, the calling member."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import AuthenticationError, PermissionDenied
from imagegate.gateway import Gateway
from imagegate.services import accounts
from imagegate.services.keys import Principal, authenticate


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop (and
    # a slot of anyio's pool of 40) on every request for one attribute read.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_session(gateway: GatewayDep) -> AsyncIterator[AsyncSession]:
    async with gateway.db.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_member(request: Request, gateway: GatewayDep) -> Principal:
    token = bearer_token(request)
    if token is None and accounts.SESSION_COOKIE in request.cookies:
        return await console_member(request, gateway)
    if token is None:
        raise AuthenticationError(
            "Missing API key. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    principal = gateway.principals.get(token)
    if principal is None:
        generation = gateway.principals.generation
        async with gateway.db.read_session() as session:
            principal = await authenticate(session, token)
        gateway.principals.put(token, principal, looked_up_in=generation)
    return principal


CurrentMember = Annotated[Principal, Depends(current_member)]

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


async def console_member(request: Request, gateway: Gateway) -> Principal:
    """The member signed in to the console, for the API calls its pages make: a request
    that changes anything must carry the session's CSRF token in ``X-CSRF-Token``."""
    signed_in = await accounts.signed_in(gateway.db, request.cookies[accounts.SESSION_COOKIE])
    if signed_in is None:
        raise AuthenticationError(
            "Your console session has ended; sign in again.", code="session_expired"
        )
    if request.method not in _SAFE_METHODS and not signed_in.csrf_ok(
        request.headers.get(accounts.CSRF_HEADER)
    ):
        raise PermissionDenied(
            "Missing or wrong CSRF token: send the page's token in X-CSRF-Token.",
            code="csrf_failed",
        )
    return signed_in.principal


async def current_admin(member: CurrentMember) -> Principal:
    if not member.is_admin:
        raise PermissionDenied("This endpoint is for workspace admins.", code="admin_required")
    return member


CurrentAdmin = Annotated[Principal, Depends(current_admin)]
