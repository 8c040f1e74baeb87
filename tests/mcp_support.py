"""A gateway served by uvicorn on a free port, with a fake upstream for the fal models,
and MCP client sessions to it over streamable HTTP and over stdio (``imagegate mcp``)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.fake import FakeProvider
from imagegate.providers.mock import MockProvider
from imagegate.providers.registry import ProviderRegistry

# The models the tool picks by itself: the tiers' presets, the editor and the upscaler.
TOOL_MODELS = (
    "flux_schnell",
    "flux_pro",
    "flux_realism",
    "seedream_v5_edit",
    "topaz_upscale_image",
)


@dataclass
class Upstream:
    """The fake fal: renders placeholders; a prompt with 'slow' waits until released."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[ProviderRequest] = field(default_factory=list)

    async def handle(self, request: ProviderRequest) -> ProviderResult:
        self.requests.append(request)
        if request.prompt and "slow" in request.prompt:
            self.started.set()
            await self.release.wait()
        return await MockProvider().generate(request)


@dataclass
class Served:
    url: str
    gateway: Gateway
    admin_key: str
    upstream: Upstream

    def api(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def member_key(self, role: str = "member") -> str:
        async with self.api() as admin:
            member = await admin.post("/v1/admin/members", json={"name": "agent", "role": role})
            assert member.status_code == 201, member.text
            key = await admin.post(f"/v1/admin/members/{member.json()['id']}/keys", json={})
            assert key.status_code == 201, key.text
            secret: str = key.json()["key"]
            return secret

    async def grant(self, credits: float) -> None:
        async with self.api() as admin:
            response = await admin.post(
                "/v1/admin/credits/grants", json={"amount": credits, "note": "test"}
            )
            assert response.status_code == 200, response.text

    async def credits(self) -> dict[str, Any]:
        async with self.api() as admin:
            response = await admin.get("/v1/credits", params={"limit": 500})
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    upstream = Upstream()
    registry = ProviderRegistry()
    registry.register(MockProvider())
    registry.register(FakeProvider(upstream.handle, name="fal"))
    gateway = Gateway(settings, providers=registry)
    app = create_app(settings, gateway=gateway)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        assert gateway.first_admin_key is not None
        served = Served(f"http://127.0.0.1:{port}", gateway, gateway.first_admin_key, upstream)
        async with served.api() as admin:
            for slug in TOOL_MODELS:
                response = await admin.patch(
                    f"/v1/admin/image-models/{slug}", json={"enabled": True}
                )
                assert response.status_code == 200, response.text
        yield served
    finally:
        upstream.release.set()
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(f"{url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """``imagegate mcp`` as an agent host launches it, in ``workdir``."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "imagegate", "mcp", *args],
        cwd=workdir,
        env={"PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    async with (
        stdio_client(params, errlog=sys.stderr) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
