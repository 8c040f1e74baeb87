"""Helpers for the governance tests: acting as an admin or a member over the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from imagegate.catalog import Catalog, load_catalog

MODELS = "/v1/admin/image-models"
GEN = "/v1/images/generations"

# Models for region tests, served by the mock provider so they can really generate.
EU_CATALOG = """
provider: bfl
models:
  - slug: flux-eu
    name: FLUX (EU)
    region: eu
    stars: 4
    params:
      prompt: {type: string, required: true}
      size: {type: string, default: 1024x1024, enum: [1024x1024]}
    sizes: {field: size, style: wxh, default: 1024x1024, options: {1024x1024: [1024, 1024]}}
    price: {rule: per_image, credits: 2}
    routes: [{provider: mock, upstream_id: mock-image}]
    provenance: test
  - slug: flux-eu-preview
    name: FLUX next (EU, preview)
    region: eu
    status: preview
    params:
      prompt: {type: string, required: true}
    price: {rule: per_image, credits: 3}
    routes: [{provider: mock, upstream_id: mock-image}]
    provenance: test
"""


def eu_catalog(directory: Path) -> Catalog:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bfl.yaml").write_text(EU_CATALOG)
    return load_catalog([directory])


def as_key(client: httpx.AsyncClient, secret: str) -> httpx.AsyncClient:
    """Another caller of the same app, holding ``secret``."""
    return httpx.AsyncClient(
        transport=client._transport,
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {secret}"},
    )


async def new_member(
    admin: httpx.AsyncClient, name: str = "alex", role: str = "member"
) -> tuple[str, str]:
    """A member created by the admin, and a key of theirs: (member id, key secret)."""
    created = await admin.post("/v1/admin/members", json={"name": name, "role": role})
    assert created.status_code == 201, created.text
    member_id = created.json()["id"]
    key = await admin.post(f"/v1/admin/members/{member_id}/keys", json={"name": f"{name}'s key"})
    assert key.status_code == 201, key.text
    return member_id, key.json()["key"]


async def listing(admin: httpx.AsyncClient) -> dict[str, Any]:
    response = await admin.get(MODELS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def entry(body: dict[str, Any], slug: str) -> dict[str, Any]:
    for group in body["providers"]:
        for item in group["models"]:
            if item["id"] == slug:
                return dict(item)
    raise AssertionError(f"{slug} not listed")


async def toggle(
    admin: httpx.AsyncClient, slug: str, enabled: bool, replacement: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"enabled": enabled}
    if replacement is not None:
        body["replacement"] = replacement
    return await admin.patch(f"{MODELS}/{slug}", json=body)


async def audit(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/v1/admin/audit", params={"limit": 500})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events
