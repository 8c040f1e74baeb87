"""Webhooks: Standard Webhooks events on terminal states, signed, retried, logged."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation
from imagegate.providers import FakeProvider, ProviderRequest, ProviderResult
from imagegate.providers.registry import ProviderRegistry
from imagegate.services.webhooks import WebhookSender
from tests.billing_support import grant, running_gateway
from tests.fakes.webhook_receiver import webhook_receiver
from tests.helpers import assert_error


async def _wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def _settled_log(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """The job's webhook log once its deliveries are recorded as settled (the receiver
    sees a delivery a moment before the gateway records how it went)."""
    for _ in range(500):
        log: list[dict[str, Any]] = (await client.get(f"/v1/jobs/{job_id}/webhooks")).json()["data"]
        if log and all(entry["status"] != "pending" for entry in log):
            return log
        await asyncio.sleep(0.02)
    raise AssertionError(f"webhook deliveries of {job_id} never settled")


async def test_a_signed_event_arrives_and_verifies(settings: Settings) -> None:
    settings.webhooks_allow_loopback = True
    with webhook_receiver() as receiver:
        async with running_gateway(settings) as (client, _):
            secret = (await client.get("/v1/webhooks/secret")).json()["secret"]
            assert secret.startswith("whsec_")
            accepted = await client.post(
                "/v1/jobs/mock-image",
                json={"prompt": "p", "size": "256x256", "webhook_url": receiver.url},
            )
            assert accepted.status_code == 202, accepted.text
            await _wait_for(lambda: len(receiver.received) == 1)
            delivered = receiver.received[0]
            event = Webhook(secret).verify(delivered.body, delivered.headers)
            assert event["type"] == "job.succeeded"
            assert event["data"]["id"] == accepted.json()["job_id"]
            assert event["data"]["outputs"][0]["width"] == 256
            assert delivered.headers["webhook-id"].startswith("msg_")
            log = await _settled_log(client, accepted.json()["job_id"])
            assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
                ("delivered", 1, 200)
            ]


async def test_failed_deliveries_are_retried_with_the_same_id(settings: Settings) -> None:
    settings.webhooks_allow_loopback = True
    settings.webhook_retry_base_seconds = 0.01
    with webhook_receiver() as receiver:
        receiver.statuses = [500, 503]
        async with running_gateway(settings) as (client, _):
            secret = (await client.get("/v1/webhooks/secret")).json()["secret"]
            accepted = await client.post(
                "/v1/jobs/mock-image",
                json={"prompt": "p", "size": "256x256", "webhook_url": receiver.url},
            )
            await _wait_for(lambda: len(receiver.received) == 3)
            assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
            for delivery in receiver.received:
                Webhook(secret).verify(delivery.body, delivery.headers)
            log = await _settled_log(client, accepted.json()["job_id"])
            assert (log[0]["status"], log[0]["attempts"]) == ("delivered", 3)


async def test_a_failed_job_sends_its_error(settings: Settings) -> None:
    settings.webhooks_allow_loopback = True

    def refuse(request: ProviderRequest) -> ProviderResult:
        raise ContentPolicyViolation("refused", extra={"provider_reason": "nope"})

    registry = ProviderRegistry()
    registry.register(FakeProvider(refuse, name="mock"))
    with webhook_receiver() as receiver:
        async with running_gateway(settings, registry) as (client, _):
            await grant(client, 10)
            await client.post(
                "/v1/jobs/paid-image", json={"prompt": "p", "webhook_url": receiver.url}
            )
            await _wait_for(lambda: len(receiver.received) == 1)
            event = orjson.loads(receiver.received[0].body)
            assert event["type"] == "job.failed"
            assert event["data"]["error"]["provider_reason"] == "nope"


async def test_private_and_loopback_targets_are_refused_by_default(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        for url in (
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/x",
            "http://[::1]/x",
            "http://169.254.169.254/",
        ):
            response = await client.post(
                "/v1/jobs/mock-image", json={"prompt": "p", "webhook_url": url}
            )
            error = assert_error(response, 400, "invalid_parameter", "webhook_url")
            assert "public" in error["message"]


async def test_the_secret_is_admin_only_and_rotates(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (client, _):
        first = (await client.get("/v1/webhooks/secret")).json()["secret"]
        rotated = (await client.post("/v1/webhooks/secret/rotate")).json()["secret"]
        assert rotated != first
        assert (await client.get("/v1/webhooks/secret")).json()["secret"] == rotated


async def test_two_server_processes_send_an_event_once(settings: Settings) -> None:
    """Every server process delivers webhooks; a due delivery is claimed before it is sent,
    so two senders racing over the same database send each event once."""
    settings.webhooks_allow_loopback = True
    with webhook_receiver() as receiver:
        async with running_gateway(settings, run_workers=False) as (client, gateway):
            accepted = await client.post(
                "/v1/jobs/mock-image",
                json={"prompt": "p", "size": "256x256", "webhook_url": receiver.url},
            )
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            assert await gateway.runner.run(job_id)
            senders = [
                WebhookSender(gateway.db, retry_base_seconds=1, allow_loopback=True)
                for _ in range(2)
            ]
            try:
                sent = await asyncio.gather(*(sender.deliver_due() for sender in senders))
                assert sorted(sent) == [0, 1]
                assert len(receiver.received) == 1
                # Delivered, so nothing is due any more for either of them.
                assert [await sender.deliver_due() for sender in senders] == [0, 0]
            finally:
                for sender in senders:
                    await sender.close()
            log = await _settled_log(client, job_id)
            assert [(d["status"], d["attempts"]) for d in log] == [("delivered", 1)]
