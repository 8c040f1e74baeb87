"""Idempotency keys and concurrent spending: one key, one job, one hold; no overspend."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from imagegate.config import Settings
from imagegate.services.bootstrap import create_member
from imagegate.services.keys import create_key
from imagegate.store.tables import Workspace
from tests.billing_support import credits, grant, kinds, running_gateway
from tests.helpers import assert_error


async def test_same_key_same_body_is_the_same_job_and_one_hold(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 10)
        headers = {"Idempotency-Key": "order-42"}
        first = await client.post("/v1/jobs/paid-image", json={"prompt": "p"}, headers=headers)
        second = await client.post("/v1/jobs/paid-image", json={"prompt": "p"}, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        in_body = await client.post(
            "/v1/jobs/paid-image", json={"prompt": "p", "idempotency_key": "order-42"}
        )
        assert in_body.json()["job_id"] == first.json()["job_id"]
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (8, 2)
        assert kinds(balance["entries"]) == ["grant", "hold"]


async def test_same_key_other_body_is_422(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 10)
        headers = {"Idempotency-Key": "k1"}
        await client.post("/v1/jobs/paid-image", json={"prompt": "p"}, headers=headers)
        other = await client.post("/v1/jobs/paid-image", json={"prompt": "q"}, headers=headers)
        assert_error(other, 422, "idempotency_key_reused", "idempotency_key")
        other_model = await client.post(
            "/v1/jobs/mock-image", json={"prompt": "p"}, headers=headers
        )
        assert_error(other_model, 422, "idempotency_key_reused")
        assert (await credits(client))["held"] == 2


async def test_keys_are_per_member(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, gateway):
        async with gateway.db.session() as session:
            workspace = (await session.execute(select(Workspace))).scalar_one()
            member = await create_member(session, workspace, "bob", "member")
            _, secret = await create_key(session, member, "bob")
        headers = {"Idempotency-Key": "shared"}
        mine = await client.post("/v1/jobs/mock-image", json={"prompt": "p"}, headers=headers)
        theirs = await client.post(
            "/v1/jobs/mock-image",
            json={"prompt": "p"},
            headers={**headers, "Authorization": f"Bearer {secret}"},
        )
        assert mine.json()["job_id"] != theirs.json()["job_id"]


async def test_a_synchronous_generation_replays_its_result(settings: Settings) -> None:
    async with running_gateway(settings) as (client, _):
        await grant(client, 10)
        body = {"prompt": "p", "model": "paid-image"}
        headers = {"Idempotency-Key": "sync-1"}
        first = await client.post("/v1/images/generations", json=body, headers=headers)
        second = await client.post("/v1/images/generations", json=body, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json()["job_id"] == second.json()["job_id"]
        assert first.json()["data"][0]["b64_json"] == second.json()["data"][0]["b64_json"]
        assert (await credits(client))["available"] == 8


async def test_fifty_concurrent_identical_posts_make_one_job(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 10)
        headers = {"Idempotency-Key": "burst"}
        responses = await asyncio.gather(
            *(
                client.post("/v1/jobs/paid-image", json={"prompt": "p"}, headers=headers)
                for _ in range(50)
            )
        )
        ok = [r for r in responses if r.status_code == 202]
        assert all(r.status_code in (202, 409) for r in responses), {
            r.status_code for r in responses
        }
        assert len({r.json()["job_id"] for r in ok}) == 1
        assert len((await client.get("/v1/jobs")).json()["data"]) == 1
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (8, 2)
        assert kinds(balance["entries"]) == ["grant", "hold"]


async def test_a_hundred_concurrent_jobs_against_a_balance_for_ten(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 20)  # ten jobs at 2 credits
        responses = await asyncio.gather(
            *(client.post("/v1/jobs/paid-image", json={"prompt": f"p{i}"}) for i in range(100))
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(202) == 10
        assert statuses.count(402) == 90
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (0, 20)
