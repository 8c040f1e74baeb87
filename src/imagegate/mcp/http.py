"""Streamable HTTP, mounted on the gateway at ``/mcp``, with the gateway's API keys.

A request without a key, or with a revoked one, is answered 401 before the MCP layer
sees it. A session belongs to the member whose key opened it. Each tool call then goes
to the API in process (``httpx.ASGITransport``), with the caller's own key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from imagegate.api.deps import current_member
from imagegate.api.responses import JSONResponse
from imagegate.errors import ImagegateError
from imagegate.gateway import Gateway
from imagegate.mcp.server import ImagegateServer

PATH = "/mcp"


class McpEndpoint:
    """The ``/mcp`` ASGI endpoint of one app; :meth:`running` belongs in its lifespan."""

    def __init__(self, gateway: Gateway, app: ASGIApp) -> None:
        self.gateway = gateway
        self.app = app
        self.server = ImagegateServer(gateway.catalog, self._client_for)
        # Sessions live in one process: with several sharing the port, each request
        # stands alone (progress still streams back on its own response).
        stateless = gateway.settings.workers > 1
        self.sessions = StreamableHTTPSessionManager(self.server.server, stateless=stateless)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # The session manager's task group is entered and left in a task of its own: a
        # lifespan may be entered in one task and left in another (pytest's async fixtures
        # do so), and anyio refuses to exit a cancel scope from another task.
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with self.sessions.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(serve())
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            task.result()  # the manager failed to start: raise its error
        try:
            yield
        finally:
            stop.set()
            await task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = await current_member(request, self.gateway)
        except ImagegateError as error:
            headers = {"WWW-Authenticate": 'Bearer realm="imagegate"'}
            response = JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)
            await response(scope, receive, send)
            return
        # The SDK binds a session to the principal that opened it.
        token = AccessToken(token="", client_id=principal.member_id, scopes=[])
        scope["user"] = AuthenticatedUser(token)
        await self.sessions.handle_request(scope, receive, send)

    @asynccontextmanager
    async def _client_for(
        self, ctx: ServerRequestContext[Any, Any]
    ) -> AsyncIterator[httpx.AsyncClient]:
        request = ctx.request
        assert isinstance(request, Request), "an HTTP request carries each MCP message here"
        headers = {"Authorization": request.headers["authorization"]}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=str(request.base_url).rstrip("/"),
            headers=headers,
            timeout=600.0,
        ) as client:
            yield client
