"""The large run: three instances on one PostgreSQL database and one S3-compatible store
(moto's server) behind the slow fake upstream, many async jobs and synchronous requests
spread over them, optionally one worker SIGKILLed and one instance SIGTERMed mid-run.

    .venv/bin/python -m bench.scale --jobs 5000 --chaos

Instances: A ``serve --no-worker`` (API only), B ``serve`` (API and worker), C ``worker``
(with --chaos: C is SIGKILLed after a third of the requests and started again as C2, B
is SIGTERMed after two thirds).
Every tenth request is synchronous and sent to A, so its job always ends in another
instance: its wake-up is the answer's arrival minus the job's ``finished_at``. The rest
are async jobs, half to A, half to B. Prints jobs/s (first submit to last job end),
wake-up p50/p99, peak RSS per instance, and the ledger checks of bench/cluster.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench.cluster import (
    MODEL,
    Cluster,
    Instance,
    create_database,
    finished_at,
    ledger_report,
    percentile,
)

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    database = await create_database(os.environ.get("BENCH_PG", DEFAULT_PG))
    cluster = Cluster(workdir, database)
    shared = {"lease_seconds": 10, "shutdown_grace_seconds": 5}
    peaks: dict[str, float | None] = {}
    try:
        await asyncio.to_thread(cluster.start_store, None)
        await asyncio.to_thread(cluster.start_upstream, args.latency_ms, args.image_px)
        a = await asyncio.to_thread(cluster.start, "a", ["serve", "--no-worker"], **shared)
        b, c = await asyncio.gather(
            asyncio.to_thread(
                cluster.start, "b", ["serve"], worker_concurrency=args.worker_slots, **shared
            ),
            asyncio.to_thread(
                cluster.start, "c", ["worker"], worker_concurrency=args.worker_slots, **shared
            ),
        )
        async with cluster.client(a) as api:
            granted = await api.post("/v1/admin/credits/grants", json={"amount": 100_000_000})
            assert granted.status_code == 200, granted.text
        apis = {"a": cluster.client(a, timeout=600), "b": cluster.client(b, timeout=600)}
        stopped: set[str] = set()
        restarted: list[Instance] = []
        answered: dict[str, float] = {}
        job_ids: list[str] = []
        errors: list[str] = []
        sent = 0
        started = time.time()

        async def submit(index: int) -> None:
            sync = index % 10 == 0
            target = "a" if sync or index % 2 or "b" in stopped else "b"
            for _ in range(3):
                try:
                    if sync:
                        body = {"model": MODEL, "prompt": f"s{index}", "response_format": "url"}
                        response = await apis[target].post("/v1/images/generations", json=body)
                    else:
                        response = await apis[target].post(
                            f"/v1/jobs/{MODEL}", json={"prompt": f"j{index}"}
                        )
                    break
                except httpx.TransportError:
                    target = "a"  # the stopped instance's port is closed: the next one
            else:
                errors.append(f"{index}: no answer")
                return
            if response.status_code not in (200, 202):
                errors.append(f"{index}: {response.status_code} {response.text[:200]}")
                return
            body = response.json()
            job_id = body.get("job_id") or body["id"]
            job_ids.append(job_id)
            if sync:
                answered[job_id] = time.time()

        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(args.jobs):
            queue.put_nowait(index)

        async def client_loop() -> None:
            nonlocal sent
            while not queue.empty():
                index = queue.get_nowait()
                sent += 1
                await submit(index)

        async def chaos() -> None:
            await _wait_for(lambda: sent >= args.jobs // 3)
            peaks["c"] = c.rss_peak_mib()
            c.signal(signal.SIGKILL)
            print(f"SIGKILL c after {sent} requests; starting it again", flush=True)
            # As a service manager would: the killed worker comes back (its leases are
            # taken over when they expire, by whichever worker looks first).
            restarted.append(
                await asyncio.to_thread(
                    cluster.start,
                    "c2",
                    ["worker"],
                    worker_concurrency=args.worker_slots,
                    **shared,
                )
            )
            await _wait_for(lambda: sent >= 2 * args.jobs // 3)
            peaks["b"] = b.rss_peak_mib()
            stopped.add("b")
            b.signal(signal.SIGTERM)
            print(f"SIGTERM b after {sent} requests", flush=True)

        tasks = [client_loop() for _ in range(args.clients)]
        if args.chaos:
            tasks.append(chaos())
        await asyncio.gather(*tasks)
        while True:
            report = await ledger_report(database)
            if not report["not_terminal"]:
                break
            await asyncio.sleep(0.5)
        ended = await finished_at(database, job_ids)
        last_end = max(ended.values())
        for instance in (a, b, c, *restarted):
            if instance.name not in peaks:
                peaks[instance.name] = instance.rss_peak_mib()
        gaps = [answered[job_id] - ended[job_id] for job_id in answered if job_id in ended]
        for api in apis.values():
            await api.aclose()
    finally:
        await asyncio.to_thread(cluster.close)
    checks = {name: len(value) for name, value in report.items() if isinstance(value, list)}
    return {
        "jobs": len(job_ids),
        "request_errors": errors[:10],
        "seconds": round(last_end - started, 1),
        "jobs_per_second": round(len(job_ids) / (last_end - started), 1),
        "wakeup_p50_ms": round(percentile(gaps, 0.5) * 1000, 1),
        "wakeup_p99_ms": round(percentile(gaps, 0.99) * 1000, 1),
        "sync_requests": len(gaps),
        "peak_rss_mib": {name: round(v, 1) if v else None for name, v in peaks.items()},
        "states": report["jobs"],
        "checks": checks,
        "credits_held": report["credits_held"],
        "handed_back": _count(b, "handed back"),
        "recovered_from_expired_leases": _count(a, "expired lease") + _count(b, "expired lease"),
    }


def _count(instance: Instance, text: str) -> int:
    return sum(text in str(line.get("message", "")) for line in instance.log_lines())


async def _wait_for(condition: Any) -> None:
    while not condition():  # noqa: ASYNC110  (a counter the client loops move)
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32, help="requests in flight")
    parser.add_argument("--worker-slots", type=int, default=32, help="per worker instance")
    parser.add_argument("--latency-ms", type=int, default=500, help="the upstream's latency")
    parser.add_argument("--image-px", type=int, default=256, help="side of the PNG answered")
    parser.add_argument("--chaos", action="store_true", help="SIGKILL c, then SIGTERM b")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagegate-scale-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
