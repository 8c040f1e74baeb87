"""The job state machine under failure: retries, refusals, fencing, crash recovery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation, TransientUpstreamError
from imagegate.gateway import Gateway
from imagegate.providers import FakeProvider, ProviderRequest, ProviderResult
from imagegate.providers.mock import MockProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.services import jobs
from imagegate.store.tables import Job, utcnow
from tests.billing_support import running_gateway
from tests.helpers import assert_error

GEN = "/v1/images/generations"

Handler = Callable[[ProviderRequest], object]


def _registry(handler: Handler) -> tuple[ProviderRegistry, FakeProvider]:
    registry = ProviderRegistry()
    fake = FakeProvider(handler, name="mock")  # stands in for the mock models' provider
    registry.register(fake)
    return registry, fake


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[Callable[[Handler], object]]:
    async with contextlib.AsyncExitStack() as stack:

        async def factory(handler: Handler) -> tuple[httpx.AsyncClient, Gateway, FakeProvider]:
            registry, fake = _registry(handler)
            settings.retry_base_seconds = 0.01
            client, gateway = await stack.enter_async_context(running_gateway(settings, registry))
            return client, gateway, fake

        yield factory  # type: ignore[misc]


async def test_transient_failures_are_retried_then_succeed(make_client) -> None:  # type: ignore[no-untyped-def]
    calls = 0
    mock = MockProvider()

    async def flaky(request: ProviderRequest) -> ProviderResult:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise TransientUpstreamError("busy", retry_after=0.01)
        return await mock.generate(request)

    client, _, _ = await make_client(flaky)
    response = await client.post(GEN, json={"prompt": "p", "size": "256x256"})
    assert response.status_code == 200, response.text
    job = (await client.get(f"/v1/jobs/{response.json()['job_id']}")).json()
    assert job["status"] == "succeeded"
    assert job["attempt"] == 3
    assert calls == 3
    assert len(job["outputs"]) == 1


async def test_a_refusal_fails_at_once_with_the_providers_reason(make_client) -> None:  # type: ignore[no-untyped-def]
    def refuse(request: ProviderRequest) -> ProviderResult:
        raise ContentPolicyViolation(
            "The provider refused the prompt.", extra={"provider_reason": "violence"}
        )

    client, _, fake = await make_client(refuse)
    response = await client.post(GEN, json={"prompt": "p", "size": "256x256"})
    error = assert_error(response, 400, "content_policy_violation")
    assert error["provider_reason"] == "violence"
    assert len(fake.requests) == 1
    job = (await client.get(f"/v1/jobs/{error['job_id']}")).json()
    assert job["status"] == "failed"
    assert job["error"]["provider_reason"] == "violence"
    assert job["charged_amount"] == 0


async def test_a_provider_that_always_fails_gives_up_after_max_attempts(make_client) -> None:  # type: ignore[no-untyped-def]
    def down(request: ProviderRequest) -> ProviderResult:
        raise TransientUpstreamError("provider is down")

    client, gateway, fake = await make_client(down)
    error = assert_error(await client.post(GEN, json={"prompt": "p"}), 503, "upstream_unavailable")
    assert len(fake.requests) == gateway.settings.max_attempts
    job = (await client.get(f"/v1/jobs/{error['job_id']}")).json()
    assert (job["status"], job["attempt"]) == ("failed", gateway.settings.max_attempts)


async def test_a_crash_in_the_provider_is_a_500_not_a_hang(make_client) -> None:  # type: ignore[no-untyped-def]
    def crash(request: ProviderRequest) -> ProviderResult:
        raise RuntimeError("bug")

    client, _, _ = await make_client(crash)
    assert_error(await client.post(GEN, json={"prompt": "p"}), 500, "internal_error")


async def _queued_job(client: httpx.AsyncClient) -> str:
    response = await client.post(
        GEN, json={"prompt": "p", "size": "256x256"}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    return str(response.json()["id"])


async def test_a_stale_attempt_cannot_write_its_result(tmp_path: Path, settings: Settings) -> None:
    gateway = Gateway(settings, run_workers=False)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {gateway.first_admin_key}"},
        )
        async with client:
            job_id = await _queued_job(client)
            first = await jobs.claim(gateway.db, job_id, "worker-a", lease_seconds=60)
            assert first is not None and first.attempt == 1
            # The claim gives the job as it now is, with the columns' own types.
            claimed = first.job
            assert (claimed.id, claimed.status, claimed.attempt) == (job_id, "running", 1)
            assert claimed.lease_owner == "worker-a"
            assert claimed.started_at is not None and claimed.started_at.tzinfo is not None
            assert claimed.lease_expires_at > claimed.started_at  # type: ignore[operator]
            assert claimed.request["body"]["prompt"] and isinstance(claimed.params, dict)
            # Taken: nobody else gets it.
            assert await jobs.claim(gateway.db, job_id, "worker-c", lease_seconds=60) is None
            # worker-a vanishes: its lease runs out and the job is recovered
            async with gateway.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
            assert await jobs.recover_expired_leases(gateway.db) == [job_id]
            second = await jobs.claim(gateway.db, job_id, "worker-b", lease_seconds=60)
            assert second is not None and second.attempt == 2
            # the stale worker comes back: every write it tries is refused
            assert await jobs.renew_owned(gateway.db, "worker-a", 60) == set()
            assert not await jobs.note_provider_request(gateway.db, first, "mock", "late-id")
            async with gateway.db.session() as session:
                assert not await jobs.fail(session, first, code="x", message="late")
            async with gateway.db.transaction() as tx:
                fenced = await jobs.succeed(
                    tx, first, [], actual_cost=0, result={}, provider_request_id=None
                )
                assert fenced is None
            assert await jobs.renew_owned(gateway.db, "worker-b", 60) == {(job_id, 2)}
            job = (await client.get(f"/v1/jobs/{job_id}")).json()
            assert (job["status"], job["attempt"]) == ("running", 2)


async def test_jobs_left_running_by_a_crashed_process_finish_after_restart(
    settings: Settings,
) -> None:
    first = Gateway(settings, run_workers=False)
    app = create_app(settings, gateway=first)
    async with app.router.lifespan_context(app):
        key = first.first_admin_key
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {key}"},
        )
        async with client:
            job_id = await _queued_job(client)
        claim = await jobs.claim(first.db, job_id, "crashed-worker", lease_seconds=0.01)
        assert claim is not None
    # a new process starts on the same database: the expired lease is recovered and run
    second = Gateway(settings, run_workers=False)
    app = create_app(settings, gateway=second)
    async with app.router.lifespan_context(app):
        await second.dispatcher.drain()
        async with second.db.read_session() as session:
            job = await session.get(Job, job_id)
            assert job is not None
            assert (job.status, job.attempt) == ("succeeded", 2)


def _after(release: asyncio.Event) -> Handler:
    """A provider that answers as the mock does once ``release`` is set."""
    mock = MockProvider()

    async def slow(request: ProviderRequest) -> ProviderResult:
        await release.wait()
        return await mock.generate(request)

    return slow


async def test_a_job_takes_a_free_worker_slot_at_once_and_queues_when_none_is_free(
    make_client, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings.worker_concurrency = 1
    release = asyncio.Event()
    slow = _after(release)
    client, gateway, fake = await make_client(slow)
    first = (await client.post("/v1/jobs/mock-image", json={"prompt": "a"})).json()
    second = (await client.post("/v1/jobs/mock-image", json={"prompt": "b"})).json()
    # The first was inserted already claimed by this process (attempt 1, running); the
    # only slot is busy, so the second waits in the queue.
    assert (first["status"], first["attempt"]) == ("running", 1)
    assert (second["status"], second["attempt"]) == ("queued", 0)
    await asyncio.sleep(0.05)
    assert len(fake.requests) == 1
    release.set()
    for job_id in (first["id"], second["id"]):
        for _ in range(200):
            job = (await client.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] == "succeeded":
                break
            await asyncio.sleep(0.02)
        assert (job["status"], job["attempt"], len(job["outputs"])) == ("succeeded", 1, 1)
    assert len(fake.requests) == 2
    assert gateway.dispatcher.reserve()  # the slot is free again
    gateway.dispatcher.release()


async def test_one_heartbeat_renews_every_lease_and_stops_an_attempt_taken_over(
    make_client, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings.lease_seconds = 0.3  # renewed every 0.1 s
    stopped: list[str] = []
    hold = asyncio.Event()

    async def slow(request: ProviderRequest) -> ProviderResult:
        try:
            await hold.wait()
        except asyncio.CancelledError:
            stopped.append(request.prompt or "")
            raise
        raise AssertionError("never released")

    client, gateway, _ = await make_client(slow)
    kept = (await client.post("/v1/jobs/mock-image", json={"prompt": "kept"})).json()
    taken = (await client.post("/v1/jobs/mock-image", json={"prompt": "taken"})).json()
    await asyncio.sleep(0.5)  # several renewals: both leases stay alive past their 0.3 s
    async with gateway.db.session() as session:
        rows = (await session.execute(select(Job.id, Job.lease_expires_at))).all()
    assert all(expires is not None and expires > utcnow() for _, expires in rows)
    # Another worker takes the second job over (as after a lease it missed).
    async with gateway.db.session() as session:
        await session.execute(
            update(Job).where(Job.id == taken["id"]).values(lease_owner="another", attempt=2)
        )
    for _ in range(50):
        if stopped:
            break
        await asyncio.sleep(0.05)
    assert stopped == ["taken"]
    kept_now = (await client.get(f"/v1/jobs/{kept['id']}")).json()
    assert kept_now["status"] == "running"
    hold.set()


async def test_prefer_wait_is_capped_at_the_synchronous_timeout(
    make_client, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings.sync_timeout_seconds = 0.3
    release = asyncio.Event()
    slow = _after(release)
    client, _, _ = await make_client(slow)
    forever = {"Prefer": "wait=" + "9" * 400}  # a float of it is infinite
    for path in ("/v1/jobs/mock-image", GEN):
        response = await asyncio.wait_for(
            client.post(path, json={"prompt": "p"}, headers=forever), timeout=5
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "running"
    release.set()
