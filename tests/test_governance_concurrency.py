"""Concurrent admin requests cannot leave a workspace without an enabled model or with a
disabled default (on SQLite and, with IMAGEGATE_DATABASE_URL, PostgreSQL)."""

from __future__ import annotations

import asyncio
import random

import httpx

from imagegate.gateway import Gateway
from tests.governance import MODELS, audit, listing

SLUGS = ["mock-image", "mock-vector", "dall-e-3", "gpt-image-1", "flux_schnell", "nano_banana"]
EXPECTED_REFUSALS = {
    "last_enabled_model",
    "default_model_requires_replacement",
    "replacement_not_enabled",
    "model_not_enabled",
}


def _request(rng: random.Random) -> tuple[str, str, dict[str, object]]:
    slug = rng.choice(SLUGS)
    kind = rng.choice(["enable", "disable", "disable_with_replacement", "default"])
    if kind == "enable":
        return "PATCH", f"{MODELS}/{slug}", {"enabled": True}
    if kind == "disable":
        return "PATCH", f"{MODELS}/{slug}", {"enabled": False}
    if kind == "disable_with_replacement":
        replacement = rng.choice([s for s in SLUGS if s != slug])
        return "PATCH", f"{MODELS}/{slug}", {"enabled": False, "replacement": replacement}
    return "PUT", f"{MODELS}/default", {"model": slug}


async def _assert_valid(client: httpx.AsyncClient) -> None:
    body = await listing(client)
    enabled = body["enabled_models"]
    assert enabled, "no model is enabled"
    assert body["default_model"] in enabled, body
    defaults = [m["id"] for group in body["providers"] for m in group["models"] if m["default"]]
    assert defaults == [body["default_model"]]


async def test_fifty_concurrent_mixed_requests_leave_a_valid_workspace(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    rng = random.Random(4)
    changed = 0
    for round_ in range(3):
        requests = [_request(rng) for _ in range(50)]
        # Start each round with a few models on, so disables and switches really compete.
        if round_ == 0:
            for slug in SLUGS[2:5]:
                await client.patch(f"{MODELS}/{slug}", json={"enabled": True})
                changed += 1
        responses = await asyncio.gather(
            *(client.request(method, path, json=body) for method, path, body in requests)
        )
        for response in responses:
            if response.status_code == 200:
                changed += bool(response.json()["changed"])
            else:
                assert response.status_code in (400, 409), response.text
                assert response.json()["error"]["code"] in EXPECTED_REFUSALS, response.text
        assert any(r.status_code == 200 for r in responses)
        assert any(r.status_code == 409 for r in responses)
        await _assert_valid(client)
    # Every change that answered "changed" was logged once, and nothing else was.
    events = await audit(client)
    assert len(events) == changed
