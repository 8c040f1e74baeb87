"""The async jobs API with the credits it holds, captures and releases."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation, TransientUpstreamError
from imagegate.providers import FakeProvider, ProviderRequest, ProviderResult
from imagegate.providers.mock import MockProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.store.db import Database
from imagegate.store.tx import DriverTx
from tests.billing_support import credits, grant, kinds, running_gateway
from tests.conftest import on_postgres
from tests.helpers import assert_error


async def _poll(client: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    for _ in range(400):
        job: dict[str, object] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {job_id} did not finish")


def _registry(provider: object) -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register(provider)  # type: ignore[arg-type]
    return registry


async def test_a_job_goes_from_202_to_succeeded_and_is_charged(settings: Settings) -> None:
    async with running_gateway(settings) as (client, _):
        await grant(client, 10)
        response = await client.post("/v1/jobs/paid-image", json={"prompt": "a fox", "n": 2})
        assert response.status_code == 202, response.text
        accepted = response.json()
        # A free worker slot took the job as it was inserted: it is running already.
        assert (accepted["status"], accepted["attempt"]) == ("running", 1)
        assert accepted["estimated_cost"] == 4
        assert accepted["job_id"].startswith("job_")
        job = await _poll(client, accepted["job_id"])
        assert job["status"] == "succeeded"
        assert job["charged_amount"] == 4
        outputs = job["outputs"]
        assert isinstance(outputs, list) and len(outputs) == 2
        assert outputs[0]["width"] == 256 and outputs[0]["content_type"] == "image/png"
        assert outputs[0]["bytes"] > 0 and outputs[0]["url"].startswith("http://testserver/")
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (6, 0)
        assert kinds(balance["entries"]) == ["capture", "grant", "hold"]


async def test_insufficient_credits_is_402_with_the_amounts_and_no_job(settings: Settings) -> None:
    async with running_gateway(settings) as (client, _):
        await grant(client, 1.5)
        error = assert_error(
            await client.post("/v1/jobs/paid-image", json={"prompt": "p"}),
            402,
            "insufficient_credits",
        )
        assert (error["available"], error["needed"]) == (1.5, 2)
        assert (await client.get("/v1/jobs")).json()["data"] == []
        assert (await credits(client))["available"] == 1.5


async def test_a_failed_job_releases_its_hold(settings: Settings) -> None:
    def refuse(request: ProviderRequest) -> ProviderResult:
        raise ContentPolicyViolation("refused", extra={"provider_reason": "policy"})

    async with running_gateway(settings, _registry(FakeProvider(refuse, name="mock"))) as (
        client,
        _,
    ):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        job = await _poll(client, accepted["job_id"])
        assert job["status"] == "failed"
        assert job["error"] == {
            "code": "content_policy_violation",
            "message": "refused",
            "provider_reason": "policy",
        }
        assert job["charged_amount"] == 0
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (10, 0)
        assert kinds(balance["entries"]) == ["grant", "hold", "release"]
        release = next(e for e in balance["entries"] if e["kind"] == "release")
        assert (release["amount"], release["job_id"], release["note"]) == (2, job["id"], "failed")


async def test_transient_failures_then_success_capture_once(settings: Settings) -> None:
    settings.retry_base_seconds = 0.01
    calls = 0
    mock = MockProvider()

    async def flaky(request: ProviderRequest) -> ProviderResult:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise TransientUpstreamError("busy", retry_after=0)
        return await mock.generate(request)

    async with running_gateway(settings, _registry(FakeProvider(flaky, name="mock"))) as (
        client,
        _,
    ):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        job = await _poll(client, accepted["job_id"])
        assert (job["status"], job["attempt"], job["charged_amount"]) == ("succeeded", 3, 2)
        assert kinds((await credits(client))["entries"]) == ["capture", "grant", "hold"]


async def test_a_provider_that_always_fails_ends_failed_and_refunded(settings: Settings) -> None:
    settings.retry_base_seconds = 0.01

    def down(request: ProviderRequest) -> ProviderResult:
        raise TransientUpstreamError("down")

    async with running_gateway(settings, _registry(FakeProvider(down, name="mock"))) as (client, _):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        job = await _poll(client, accepted["job_id"])
        assert (job["status"], job["attempt"]) == ("failed", 3)
        assert (await credits(client))["available"] == 10


async def test_cancel_a_queued_job_releases_the_hold(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        assert (await credits(client))["held"] == 2
        canceled = await client.post(f"/v1/jobs/{accepted['job_id']}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (10, 0)
        again = await client.post(f"/v1/jobs/{accepted['job_id']}/cancel")
        assert_error(again, 409, "job_not_cancelable")
        assert_error(await client.post("/v1/jobs/job_nope/cancel"), 404, "job_not_found")


async def test_cancel_a_running_job_stops_it_and_refunds(settings: Settings) -> None:
    started = asyncio.Event()

    async def slow(request: ProviderRequest) -> ProviderResult:
        started.set()
        await asyncio.sleep(30)
        raise AssertionError("not canceled")

    async with running_gateway(settings, _registry(FakeProvider(slow, name="mock"))) as (client, _):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        await asyncio.wait_for(started.wait(), 10)
        canceled = (await client.post(f"/v1/jobs/{accepted['job_id']}/cancel")).json()
        assert canceled["status"] == "canceled"
        await asyncio.sleep(0.1)
        job = (await client.get(f"/v1/jobs/{accepted['job_id']}")).json()
        assert (job["status"], job["outputs"]) == ("canceled", [])
        assert (await credits(client))["available"] == 10


async def test_a_job_queued_too_long_expires_and_refunds(settings: Settings) -> None:
    settings.queued_ttl_seconds = 0.01
    async with running_gateway(settings, run_workers=False) as (client, gateway):
        await grant(client, 10)
        accepted = (await client.post("/v1/jobs/paid-image", json={"prompt": "p"})).json()
        await asyncio.sleep(0.05)
        await gateway.dispatcher.recover()
        job = (await client.get(f"/v1/jobs/{accepted['job_id']}")).json()
        assert (job["status"], job["error"]["code"]) == ("expired", "job_expired")
        assert (await credits(client))["available"] == 10


async def test_prefer_wait_answers_with_the_finished_job(settings: Settings) -> None:
    async with running_gateway(settings) as (client, _):
        response = await client.post(
            "/v1/jobs/mock-image",
            json={"prompt": "p", "size": "256x256"},
            headers={"Prefer": "wait=20"},
        )
        assert response.status_code == 200
        assert response.json()["status"] == "succeeded"
        assert len(response.json()["outputs"]) == 1


async def test_wrapper_params_mock_and_format_on_a_native_model(settings: Settings) -> None:
    async with running_gateway(settings) as (client, _):
        response = await client.post(
            "/v1/jobs/mock-image",
            json={"prompt": "p", "format": "shorts"},
            headers={"Prefer": "wait=20"},
        )
        output = response.json()["outputs"][0]
        assert (output["width"], output["height"]) == (1024, 1792)
        paid = await client.post(
            "/v1/jobs/paid-image", json={"prompt": "p", "mock": True}, headers={"Prefer": "wait=20"}
        )
        assert paid.status_code == 200, paid.text  # mock: free even with no credits
        assert paid.json()["charged_amount"] == 0


async def test_history_filters_and_cursor_pagination(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        ids = []
        for _ in range(5):
            ids.append(
                (await client.post("/v1/jobs/mock-image", json={"prompt": "p"})).json()["job_id"]
            )
        await client.post(f"/v1/jobs/{ids[0]}/cancel")
        first = (await client.get("/v1/jobs", params={"limit": 2})).json()
        assert [j["id"] for j in first["data"]] == ids[::-1][:2]
        assert first["has_more"] is True
        second = (
            await client.get("/v1/jobs", params={"limit": 2, "after": first["next_cursor"]})
        ).json()
        assert [j["id"] for j in second["data"]] == ids[::-1][2:4]
        canceled = (await client.get("/v1/jobs", params={"status": "canceled"})).json()
        assert [j["id"] for j in canceled["data"]] == [ids[0]]
        assert (await client.get("/v1/jobs", params={"model": "paid-image"})).json()["data"] == []
        assert_error(
            await client.get("/v1/jobs", params={"status": "done"}),
            400,
            "invalid_parameter",
            "status",
        )
        assert_error(
            await client.get("/v1/jobs", params={"limit": 0}), 400, "invalid_parameter", "limit"
        )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "p", "n": 9}, "n"),
        ({"prompt": "p", "webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"prompt": "p", "webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url"),
        ({"prompt": "p", "webhook_url": 5}, "webhook_url"),
        ({"prompt": "p", "webhook_url": "http://[::1"}, "webhook_url"),
        ({"prompt": "p", "webhook_url": "https://example.com:99999/x"}, "webhook_url"),
        ({"prompt": "p", "idempotency_key": ""}, "idempotency_key"),
        ({"prompt": "p", "idempotency_key": 7}, "idempotency_key"),
        ({"prompt": "p", "steps": 4}, "steps"),
    ],
)
async def test_bad_job_requests_are_400_naming_the_param(
    settings: Settings, body: dict[str, object], param: str
) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        await grant(client, 100)
        assert_error(
            await client.post("/v1/jobs/paid-image", json=body), 400, "invalid_parameter", param
        )
        assert (await client.get("/v1/jobs")).json()["data"] == []
        assert (await credits(client))["held"] == 0


async def test_grants_are_admin_only_and_validated(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        for amount in (0, -5, "lots", 1.0001, True, None):
            assert_error(
                await client.post("/v1/admin/credits/grants", json={"amount": amount}),
                400,
                "invalid_parameter",
                "amount",
            )
        assert (await credits(client))["available"] == 0


@pytest.mark.skipif(not on_postgres(), reason="the one-statement writes are PostgreSQL's")
async def test_a_charged_job_takes_two_round_trips_and_no_transaction(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submit: one statement (job, hold, ledger entry), after the governance read that only
    the workspace's first submit in a process makes; success: one statement (job,
    capture, ledger entries, outputs). Neither opens a transaction."""
    statements: list[str] = []
    units: list[str] = []
    execute = DriverTx.execute

    async def counted(self: DriverTx, statement: Any, params: Any = None) -> Any:
        statements.append(type(statement).__name__)
        return await execute(self, statement, params)

    def counting(name: str) -> Any:
        unit = getattr(Database, name)

        def counted_unit(self: Database) -> Any:
            units.append(name)
            return unit(self)

        return counted_unit

    async with running_gateway(settings) as (client, _):
        await grant(client, 10)
        monkeypatch.setattr(DriverTx, "execute", counted)
        for name in ("transaction", "autocommit"):
            monkeypatch.setattr(Database, name, counting(name))
        for expected in (["Select"] * 3, ["Select"] * 2):
            statements.clear()
            units.clear()
            body = {"prompt": "a", "n": 2}
            accepted = (await client.post("/v1/jobs/paid-image", json=body)).json()
            job = await _poll(client, accepted["job_id"])
            assert (job["status"], job["charged_amount"], len(job["outputs"])) == (
                "succeeded",
                4,
                2,
            )
            assert statements == expected
            assert units == ["autocommit", "autocommit"]
        monkeypatch.undo()
        balance = await credits(client)
        assert (balance["available"], balance["held"]) == (2, 0)
        assert kinds(balance["entries"]) == ["capture", "capture", "grant", "hold", "hold"]
