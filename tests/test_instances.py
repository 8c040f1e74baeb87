"""Several instances on one database: roles, signals between them, a graceful drain,
readiness, metrics, request ids and JSON logs.

The instances here are gateways in one process on one database (the process test with
real processes is tests/test_scale_out.py); the signals need PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from imagegate.app import create_app, create_worker_app
from imagegate.cli import app as cli_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.observe import context, logs
from imagegate.services import jobs
from imagegate.store.signals import pack, unpack
from imagegate.store.tables import Workspace
from tests.conftest import on_postgres

postgres_only = pytest.mark.skipif(not on_postgres(), reason="signals travel over PostgreSQL")


@asynccontextmanager
async def instance(
    settings: Settings, key: str | None = None, **changes: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """A gateway on the shared database and a client of its API (``key``: another
    instance's admin key; the first one creates it)."""
    own = settings.model_copy(update=changes)
    gateway = Gateway(own)
    app = create_app(own, gateway=gateway)
    async with app.router.lifespan_context(app):
        secret = key or gateway.first_admin_key
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as client:
            yield client, gateway


@asynccontextmanager
async def two_instances(
    settings: Settings, **changes: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway, httpx.AsyncClient, Gateway]]:
    """A worker-only gateway A and an API-only gateway B (whose jobs A runs)."""
    async with AsyncExitStack() as stack:
        client_a, a = await stack.enter_async_context(instance(settings, **changes))
        client_b, b = await stack.enter_async_context(
            instance(settings, a.first_admin_key, run_worker=False, **changes)
        )
        assert await a.signals.wait_connected(10) and await b.signals.wait_connected(10)
        yield client_a, a, client_b, b


async def _workspace(gateway: Gateway) -> str:
    async with gateway.db.read_session() as session:
        return str((await session.execute(select(Workspace.id))).scalar_one())


async def _wait_until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def test_signal_payloads_round_trip_and_stay_under_the_limit() -> None:
    ids = [f"job_{index:026d}" for index in range(1000)]
    payloads = pack("e", "ins_x", ids)
    assert len(payloads) > 1 and all(len(p) < 8000 for p in payloads)
    unpacked = [unpack(p) for p in payloads]
    assert {(kind, sender) for kind, sender, _ in unpacked} == {("e", "ins_x")}
    assert [item for _, _, args in unpacked for item in args] == ids
    assert unpack("k - ") == ("k", "-", [])


@postgres_only
async def test_a_job_run_by_a_worker_answers_the_request_waiting_on_another_instance(
    settings: Settings,
) -> None:
    # The fallback look is far away: only the signal can answer in time.
    async with two_instances(settings, notify_fallback_seconds=30, mock_latency_seconds=0.3) as (
        _,
        a,
        client_b,
        b,
    ):
        assert not b.run_workers and b.recheck_seconds() == 30
        started = time.monotonic()
        response = await client_b.post(
            "/v1/images/generations", json={"prompt": "a lighthouse", "size": "256x256"}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        async with a.db.read_session() as session:
            job = await jobs.get_job(session, await _workspace(b), response.json()["job_id"])
        assert job is not None and job.status == "succeeded"
        assert job.lease_owner is None
        assert elapsed < 5, elapsed


@postgres_only
async def test_a_cancel_on_one_instance_stops_the_attempt_on_another_at_once(
    settings: Settings,
) -> None:
    async with two_instances(settings, mock_latency_seconds=20) as (_, a, client_b, _b):
        submitted = await client_b.post(
            "/v1/jobs/mock-image", json={"prompt": "a slow one", "size": "256x256"}
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]

        async def running_on_a() -> bool:
            return a.runner.runs(job_id)

        await _wait_until(running_on_a)
        canceled = await client_b.post(f"/v1/jobs/{job_id}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

        async def stopped_on_a() -> bool:
            return not a.runner.runs(job_id)

        # The heartbeat would take lease_seconds / 3; the signal takes a moment.
        await _wait_until(stopped_on_a, within=1.5)


@postgres_only
async def test_a_revoked_key_stops_working_on_every_instance_at_once(settings: Settings) -> None:
    async with two_instances(settings, auth_cache_seconds=300) as (client_a, _a, client_b, _b):
        created = await client_b.post("/v1/admin/members", json={"name": "ada", "role": "member"})
        assert created.status_code in (200, 201), created.text
        member_id = created.json()["id"]
        issued = await client_b.post(f"/v1/admin/members/{member_id}/keys", json={"name": "k"})
        assert issued.status_code in (200, 201), issued.text
        secret, key_id = issued.json()["key"], issued.json()["id"]
        as_ada = {"Authorization": f"Bearer {secret}"}
        assert (await client_a.get("/v1/me", headers=as_ada)).status_code == 200  # now cached
        revoked = await client_b.post(f"/v1/admin/keys/{key_id}/revoke")
        assert revoked.status_code == 200, revoked.text

        async def refused_on_a() -> bool:
            return (await client_a.get("/v1/me", headers=as_ada)).status_code == 401

        await _wait_until(refused_on_a, within=2)


@postgres_only
async def test_a_governance_change_reaches_the_other_instances_memo(settings: Settings) -> None:
    async with two_instances(settings) as (client_a, a, client_b, _b):
        assert (await client_a.post("/v1/jobs/mock-image", json={"prompt": "x"})).status_code == 202
        workspace = await _workspace(a)
        assert a.governance._states.get(workspace) is not None
        changed = await client_b.patch("/v1/admin/settings", json={"margin_percent": 7})
        assert changed.status_code == 200, changed.text

        async def forgotten() -> bool:
            return a.governance._states.get(workspace) is None

        await _wait_until(forgotten, within=2)


@postgres_only
async def test_a_drain_hands_running_jobs_back_and_another_worker_takes_them(
    settings: Settings,
) -> None:
    async with AsyncExitStack() as stack:
        client_a, a = await stack.enter_async_context(
            instance(settings, mock_latency_seconds=1.5, shutdown_grace_seconds=0.1)
        )
        submitted = await client_a.post(
            "/v1/jobs/mock-image", json={"prompt": "handed over", "size": "256x256"}
        )
        job_id = submitted.json()["id"]

        async def running_on_a() -> bool:
            return a.runner.runs(job_id)

        await _wait_until(running_on_a)
        _, b = await stack.enter_async_context(
            instance(settings, a.first_admin_key, mock_latency_seconds=0.1)
        )
        assert await b.signals.wait_connected(10)
        ready = await client_a.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        a.begin_drain()
        assert (await client_a.get("/readyz")).status_code == 503
        assert (await client_a.get("/healthz")).status_code == 200
        started = time.monotonic()

        async def done() -> bool:
            async with b.db.read_session() as session:
                job = await jobs.get_job(session, await _workspace(b), job_id)
            return job is not None and job.status == "succeeded"

        # Far sooner than a lease (5 s here) would expire.
        await _wait_until(done, within=4)
        assert time.monotonic() - started < 4
        async with b.db.read_session() as session:
            job = await jobs.get_job(session, await _workspace(b), job_id)
        assert job is not None and job.attempt == 1  # the stopped attempt is not counted


async def test_metrics_are_off_by_default_and_request_ids_are_echoed(
    client: httpx.AsyncClient,
) -> None:
    off = await client.get("/metrics")
    assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"
    sent = await client.get("/v1/models", headers={"X-Request-ID": "trace-123"})
    assert sent.headers["x-request-id"] == "trace-123"
    made = await client.get("/v1/models", headers={"X-Request-ID": "not ok//with spaces"})
    assert made.headers["x-request-id"] not in ("", "not ok//with spaces")


async def test_metrics_count_requests_jobs_and_the_queue(settings: Settings) -> None:
    async with instance(settings, metrics_enabled=True) as (client, gateway):
        made = await client.post(
            "/v1/images/generations", json={"prompt": "counted", "size": "256x256"}
        )
        assert made.status_code == 200, made.text
        await gateway.metrics.refresh(gateway.db)
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        text = scraped.text
        assert (
            'imagegate_http_requests_total{method="POST",route="/v1/images/generations",'
            'status="200"} 1.0' in text
        )
        assert 'imagegate_jobs_total{model="mock-image",provider="mock",state="succeeded"}' in text
        assert (
            'imagegate_provider_request_duration_seconds_count{model="mock-image",provider="mock"} 1.0'
            in text
        )
        for name in (
            "imagegate_queue_depth 0.0",
            "imagegate_queue_oldest_age_seconds 0.0",
            "imagegate_credits_held 0.0",
            'imagegate_credits_total{kind="captured"}',
            'imagegate_webhook_deliveries_total{outcome="failed"} 0.0',
        ):
            assert name in text, name


async def test_a_worker_answers_health_readiness_and_metrics_only(settings: Settings) -> None:
    own = settings.model_copy(update={"metrics_enabled": True})
    app = create_worker_app(own)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["worker"] is True
            assert "imagegate_attempts_running" in (await client.get("/metrics")).text
            assert (await client.get("/v1/models")).status_code == 404


def test_json_log_lines_carry_the_request_and_job_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("imagegate.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        request_token = context.request_id.set("req-1")
        job_token = context.job_id.set("job_1")
        logger.warning("about a job")
        context.job_id.reset(job_token)
        context.request_id.reset(request_token)
        logger.warning("about nothing", extra={"job_id": "job_2"})
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "about a job" and first["level"] == "WARNING"
    assert (first["request_id"], first["job_id"]) == ("req-1", "job_1")
    assert (second["request_id"], second["job_id"]) == (None, "job_2")


def test_the_roles_are_commands() -> None:
    runner = CliRunner()
    served = runner.invoke(cli_app, ["serve", "--help"])
    assert served.exit_code == 0 and "--no-worker" in served.output
    worker = runner.invoke(cli_app, ["worker", "--help"])
    assert worker.exit_code == 0 and "--concurrency" in worker.output


def test_a_charged_success_statement_builds_after_the_plain_one_ran() -> None:
    """A success with a webhook (or not charged) runs the plain update first; building
    the one-statement success afterwards used to inherit its memoized columns and fail
    (every later charged success of that output count: 500, storing the images failed)."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    from imagegate.services import jobs as job_service
    from imagegate.store.tx import StatementCache

    StatementCache(dialect()).get(job_service._SUCCEED, {})
    job_service._succeed_statement.cache_clear()
    for outputs in (0, 1, 2):
        assert "RETURNING jobs.id" in str(
            job_service._succeed_statement(outputs).compile(dialect=dialect())
        )
