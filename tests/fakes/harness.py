"""A gateway wired to fake upstreams, with a catalog of its own, for the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from imagegate.app import create_app
from imagegate.catalog import Catalog, ModelSpec
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.providers.registry import default_registry
from imagegate.services import billing
from imagegate.store.tables import Job, Workspace, WorkspaceModel

GEN = "/v1/images/generations"

# Fast polling and backoff so no test waits longer than a scenario needs.
FAST = {
    "provider_poll_interval_seconds": 0.01,
    "provider_backoff_seconds": 0.01,
    "provider_backoff_max_seconds": 0.05,
}

PROMPT = {"type": "string", "required": True, "description": "What to draw."}


def spec(slug: str, routes: list[dict[str, Any]], **fields: Any) -> ModelSpec:
    entry: dict[str, Any] = {
        "slug": slug,
        "name": slug,
        "provider": routes[0]["provider"],
        "params": {"prompt": PROMPT},
        "price": {"rule": "per_image", "credits": 4},
        "routes": routes,
        "provenance": "provider contract tests",
        "timeout_s": 20,
    }
    entry.update(fields)
    return ModelSpec.model_validate(entry)


ASPECTS = {
    "type": "string",
    "default": "1:1",
    "enum": ["1:1", "16:9", "9:16"],
    "description": "Aspect.",
}


def aspect_sizes(options: dict[str, list[int]]) -> dict[str, Any]:
    return {"field": "aspect_ratio", "style": "aspect_ratio", "default": "1:1", "options": options}


MOCK = spec(
    "mock-image", [{"provider": "mock", "upstream_id": "mock-image"}], price={"rule": "free"}
)


@dataclass
class Harness:
    gateway: Gateway
    client: httpx.AsyncClient

    async def submit(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(GEN, json=body, headers={"Prefer": "respond-async"})

    async def run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit asynchronously, run every due attempt, and return the job as polled."""
        response = await self.submit(body)
        assert response.status_code == 202, response.text
        await self.gateway.dispatcher.drain()
        polled = await self.client.get(f"/v1/jobs/{response.json()['id']}")
        assert polled.status_code == 200, polled.text
        job: dict[str, Any] = polled.json()
        return job

    async def job_row(self, job_id: str) -> Job:
        async with self.gateway.db.read_session() as session:
            job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()
        return job

    async def content(self, output: dict[str, Any]) -> bytes:
        response = await self.client.get(f"/v1/files/{output['file_id']}/content")
        assert response.status_code == 200, response.text
        return response.content


@asynccontextmanager
async def harness(
    settings: Settings,
    models: list[ModelSpec],
    *overrides: dict[str, Any],
    run_workers: bool = False,
) -> AsyncIterator[Harness]:
    """A gateway whose providers point at fakes and whose workspace enables ``models``."""
    values = settings.model_dump()
    for override in (FAST, *overrides):
        values.update(override)
    configured = Settings(**values)
    catalog = Catalog([MOCK, *models])
    gateway = Gateway(
        configured,
        catalog=catalog,
        providers=default_registry(configured),
        run_workers=run_workers,
    )
    app = create_app(configured, gateway=gateway)
    async with app.router.lifespan_context(app):
        async with gateway.db.session() as session:
            workspace = (await session.execute(select(Workspace))).scalar_one()
            # prepaid workspace: enough credits for every scenario's holds
            await billing.grant(session, workspace.id, 1_000_000, member_id=None, note="tests")
            for model in models:  # first-time setup may have enabled some already
                await session.merge(
                    WorkspaceModel(workspace_id=workspace.id, model=model.slug, enabled=True)
                )
        assert gateway.first_admin_key is not None
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield Harness(gateway, client)
