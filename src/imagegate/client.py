"""One way to call the API: over HTTP to a running gateway, or in-process over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from imagegate.config import Settings


@asynccontextmanager
async def remote_client(
    url: str, key: str, timeout: float = 600.0
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), headers=headers, timeout=timeout
    ) as client:
        yield client


@asynccontextmanager
async def local_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway on the local data dir, in this process, as the workspace's first admin.

    A short-lived key is minted for the call and revoked afterwards.
    """
    # Imported here: a command that calls a remote gateway needs none of the server.
    from sqlalchemy import select

    from imagegate.app import create_app
    from imagegate.gateway import Gateway
    from imagegate.services.keys import create_key
    from imagegate.store.tables import ApiKey, Member, utcnow

    gateway = Gateway(settings)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        async with gateway.db.session() as session:
            admin = (
                await session.execute(
                    select(Member)
                    .where(Member.role == "admin")
                    .order_by(Member.created_at)
                    .limit(1)
                )
            ).scalar_one()
            key, secret = await create_key(session, admin, "cli (in-process)")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://imagegate.local",
                headers=headers,
                timeout=600.0,
            ) as client:
                yield client
        finally:
            async with gateway.db.session() as session:
                stored = await session.get(ApiKey, key.id)
                assert stored is not None
                stored.revoked_at = utcnow()
