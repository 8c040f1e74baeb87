"""A priced test model served by the mock provider, and a gateway factory around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.providers.registry import ProviderRegistry

PAID_MODEL = """
provider: mock
models:
  - slug: paid-image
    name: Paid placeholder
    description: The mock renderer at a price, for billing tests.
    output_formats: [png]
    count_field: n
    params:
      prompt: {type: string, required: true, min_length: 1}
      n: {type: integer, default: 1, minimum: 1, maximum: 4}
      size: {type: string, default: 256x256, enum: [256x256, 2048x2048]}
    sizes:
      field: size
      style: wxh
      default: 256x256
      options: {256x256: [256, 256], 2048x2048: [2048, 2048]}
    price: {rule: per_image, credits: 2}
    routes: [{provider: mock, upstream_id: paid-image}]
    provenance: test fixture
  - slug: premium-image
    name: Premium placeholder
    premium: true
    output_formats: [png]
    params:
      prompt: {type: string, required: true, min_length: 1}
    price: {rule: per_image, credits: 5}
    routes: [{provider: mock, upstream_id: premium-image}]
    provenance: test fixture
"""


def write_paid_catalog(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "paid.yaml").write_text(PAID_MODEL)
    return directory


@asynccontextmanager
async def running_gateway(
    settings: Settings, providers: ProviderRegistry | None = None, *, run_workers: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    settings.catalog_dirs = [write_paid_catalog(settings.data_dir.parent / "catalog")]
    gateway = Gateway(settings, providers=providers, run_workers=run_workers)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {gateway.first_admin_key}"},
        )
        async with client:
            yield client, gateway


async def grant(client: httpx.AsyncClient, credits: float) -> None:
    response = await client.post(
        "/v1/admin/credits/grants", json={"amount": credits, "note": "test"}
    )
    assert response.status_code == 200, response.text


async def credits(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/v1/credits", params={"limit": 500})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def kinds(entries: object) -> list[str]:
    assert isinstance(entries, list)
    return sorted(str(entry["kind"]) for entry in entries)
