"""Three instances as real processes on one PostgreSQL database and one S3-compatible
store (moto's server), in front of a slow fake upstream: async jobs and synchronous
requests spread over them; one instance SIGKILLed and one SIGTERMed mid-run.

Afterwards: every job terminal, each success charged exactly once, each failure
released, no hold left, every output readable through every instance still up; no
request to the instance stopped with SIGTERM failed, and none of the jobs it handed back
waited for its lease to expire. The large run of the same is bench/scale.py.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from bench.cluster import MODEL, Cluster, Instance, ledger_report

from tests.blob_fixtures import s3_endpoint  # noqa: F401  (the moto server fixture)
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(
    not on_postgres(), reason="instances on several hosts share a PostgreSQL database"
)

LATENCY_MS = 1200
LEASE_SECONDS = 3


async def _job(client: httpx.AsyncClient, index: int) -> str:
    response = await client.post(f"/v1/jobs/{MODEL}", json={"prompt": f"async {index}"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _sync(client: httpx.AsyncClient, index: int) -> httpx.Response:
    return await client.post(
        "/v1/images/generations", json={"model": MODEL, "prompt": f"sync {index}"}
    )


async def _running_on(instance: Instance, within: float = 20) -> None:
    """Wait until ``instance`` runs at least one attempt (its metrics say so)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=instance.url) as client:
        while time.monotonic() < deadline:
            text = (await client.get("/metrics")).text
            for line in text.splitlines():
                if line.startswith("imagegate_attempts_running ") and float(line.split()[1]) > 0:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{instance.name} never ran a job")


async def test_three_instances_lose_nothing_when_one_is_killed_and_one_stopped(
    tmp_path: Path,
    database_url: str,
    s3_endpoint: str,  # noqa: F811
) -> None:
    cluster = Cluster(tmp_path, database_url)
    try:
        await asyncio.to_thread(cluster.start_store, s3_endpoint)
        cluster.start_upstream(LATENCY_MS)
        shared = {
            "lease_seconds": LEASE_SECONDS,
            "notify_fallback_seconds": 1,
            "shutdown_grace_seconds": 0.2,  # far shorter than a job: some are handed back
        }
        a = cluster.start("a", ["serve"], worker_concurrency=6, **shared)
        b, c = await asyncio.gather(
            asyncio.to_thread(cluster.start, "b", ["serve"], worker_concurrency=2, **shared),
            asyncio.to_thread(cluster.start, "c", ["worker"], worker_concurrency=4, **shared),
        )
        api_a, api_b = cluster.client(a), cluster.client(b)
        async with api_a, api_b:
            grant = await api_a.post("/v1/admin/credits/grants", json={"amount": 100000})
            assert grant.status_code == 200, grant.text
            before = (await api_a.get("/metrics")).text
            assert "imagegate_queue_depth" in before

            # Async jobs over both APIs, and synchronous requests waiting on both.
            job_ids = list(
                await asyncio.gather(*(_job(api_a if i % 2 else api_b, i) for i in range(24)))
            )
            sync_b = [asyncio.create_task(_sync(api_b, i)) for i in range(4)]
            sync_a = [asyncio.create_task(_sync(api_a, i)) for i in range(4, 8)]

            await _running_on(c)
            c.signal(signal.SIGKILL)
            await _running_on(b)
            stopped_at = time.monotonic()
            b.signal(signal.SIGTERM)
            # A fresh API-only instance, to read the outputs through later.
            starting_d = asyncio.create_task(
                asyncio.to_thread(cluster.start, "d", ["serve", "--no-worker"], **shared)
            )

            # The requests in flight on the stopped instance are all answered.
            answers_b = await asyncio.gather(*sync_b)
            assert [r.status_code for r in answers_b] == [200] * 4, [r.text for r in answers_b]
            assert await asyncio.to_thread(b.wait, 30) in (0, -signal.SIGTERM)
            answers_a = await asyncio.gather(*sync_a)
            assert [r.status_code for r in answers_a] == [200] * 4, [r.text for r in answers_a]
            job_ids += [r.json()["job_id"] for r in (*answers_a, *answers_b)]

            # Everything ends, on the one instance left.
            deadline = time.monotonic() + 30
            while True:
                report = await ledger_report(database_url)
                if not report["not_terminal"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)

            assert report["not_terminal"] == [], report
            assert sum(report["jobs"].values()) == len(job_ids) == 32
            assert report["jobs"].get("succeeded", 0) == 32, report["jobs"]
            for check in (
                "succeeded_not_captured_once",
                "charge_differs_from_capture",
                "failure_charged",
                "failure_not_released",
                "holds_left",
                "succeeded_without_outputs",
            ):
                assert report[check] == [], (check, report[check])
            assert report["credits_held"] == 0

            # The jobs the stopped instance handed back were taken over at once, not
            # found later by an expired lease.
            handed = {
                line["job_id"]
                for line in b.log_lines()
                if "handed back" in str(line.get("message", ""))
            }
            recovered = {
                line["job_id"]
                for line in a.log_lines()
                if "expired lease" in str(line.get("message", ""))
            }
            assert handed, "the stopped instance handed no job back"
            assert not handed & recovered
            assert time.monotonic() - stopped_at < 30

            # Every output through every instance still up, and through a new one.
            d = await starting_d
            async with cluster.client(d) as api_d:
                for job_id in job_ids:
                    for api in (api_a, api_d):
                        job = (await api.get(f"/v1/jobs/{job_id}")).json()
                        assert job["status"] == "succeeded"
                        for output in job["outputs"]:
                            content = await api.get(f"/v1/files/{output['file_id']}/content")
                            assert content.status_code == 200
                            assert content.content[:8] == b"\x89PNG\r\n\x1a\n"
            after = (await api_a.get("/metrics")).text
            assert (
                'imagegate_jobs_total{model="bench-image",provider="openai",state="succeeded"}'
                in after
            )
    finally:
        cluster.close()
