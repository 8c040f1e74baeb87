"""Dependencies shared by the routers: the gateway, a session, the calling member."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.errors import AuthenticationError, PermissionDenied
from imagegate.gateway import Gateway
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


async def current_admin(member: CurrentMember) -> Principal:
    if not member.is_admin:
        raise PermissionDenied("This endpoint is for workspace admins.", code="admin_required")
    return member


CurrentAdmin = Annotated[Principal, Depends(current_admin)]
