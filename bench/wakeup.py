"""Wake-up latency across instances: from a job's end on instance A (a worker) to the
answer of the synchronous request waiting for it on instance B (API only), with the
periodic check only (IMAGEGATE_LISTEN_NOTIFY=false) and with LISTEN/NOTIFY, one after
the other in the same run, on the same PostgreSQL server and S3 emulator.

    .venv/bin/python -m bench.wakeup --requests 200 --concurrency 4

The job's end is the ``finished_at`` the worker wrote (its clock); the answer is when
the client here received it (the same machine's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import MODEL, Cluster, create_database, finished_at, percentile

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


async def _measure(cluster: Cluster, b: Any, requests: int, concurrency: int) -> list[float]:
    answered: dict[str, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def client_loop() -> None:
        async with cluster.client(b) as api:
            while not queue.empty():
                index = queue.get_nowait()
                response = await api.post(
                    "/v1/images/generations",
                    json={"model": MODEL, "prompt": f"wake {index}", "response_format": "url"},
                )
                at = time.time()
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                answered[response.json()["job_id"]] = at

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    ended = await finished_at(cluster.database_url, list(answered))
    return [answered[job_id] - ended[job_id] for job_id in answered]


async def run_mode(
    notify: bool, server: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    database = await create_database(server)
    cluster = Cluster(workdir / ("notify" if notify else "polling"), database)
    cluster.workdir.mkdir(parents=True)
    try:
        await asyncio.to_thread(cluster.start_store, args.s3)
        await asyncio.to_thread(cluster.start_upstream, args.latency_ms)
        settings = {"listen_notify": str(notify).lower()}
        b = await asyncio.to_thread(cluster.start, "b", ["serve", "--no-worker"], **settings)
        await asyncio.to_thread(
            cluster.start, "a", ["worker"], worker_concurrency=args.concurrency * 2, **settings
        )
        async with cluster.client(b) as api:
            granted = await api.post("/v1/admin/credits/grants", json={"amount": 10_000_000})
            assert granted.status_code == 200, granted.text
        await _measure(cluster, b, min(8, args.requests), args.concurrency)  # warm-up
        gaps = await _measure(cluster, b, args.requests, args.concurrency)
    finally:
        await asyncio.to_thread(cluster.close)
    return {
        "mode": "notify" if notify else "polling",
        "requests": len(gaps),
        "p50_ms": round(percentile(gaps, 0.50) * 1000, 1),
        "p99_ms": round(percentile(gaps, 0.99) * 1000, 1),
        "max_ms": round(max(gaps) * 1000, 1),
    }


async def signal_alone(server: str, rounds: int = 200) -> dict[str, Any]:
    """The signal's own hop: publish in one listener, heard in another (one process)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from imagegate.store.signals import JOB_ENDED, Signals

    engine = create_async_engine(server)
    sender, receiver = Signals(engine, enabled=True), Signals(engine, enabled=True)
    heard: dict[str, float] = {}
    arrived = asyncio.Event()

    def on_ended(ids: list[str]) -> None:
        heard.setdefault(ids[0], time.perf_counter())
        arrived.set()

    receiver.on(JOB_ENDED, on_ended)
    await sender.start()
    await receiver.start()
    await sender.wait_connected(10)
    await receiver.wait_connected(10)
    gaps = []
    try:
        for index in range(rounds):
            job_id = f"job_{index}"
            arrived.clear()
            sent = time.perf_counter()
            sender.publish(JOB_ENDED, job_id)
            await asyncio.wait_for(arrived.wait(), 10)
            gaps.append(heard[job_id] - sent)
    finally:
        await sender.stop()
        await receiver.stop()
        await engine.dispose()
    return {
        "mode": "signal alone",
        "requests": rounds,
        "p50_ms": round(percentile(gaps, 0.50) * 1000, 2),
        "p99_ms": round(percentile(gaps, 0.99) * 1000, 2),
        "max_ms": round(max(gaps) * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=200, help="the upstream's latency")
    parser.add_argument("--s3", default=None, help="a running S3 endpoint (default: moto)")
    args = parser.parse_args()
    server = os.environ.get("BENCH_PG", DEFAULT_PG)
    with tempfile.TemporaryDirectory(prefix="imagegate-wakeup-") as tmp:
        results = [await run_mode(notify, server, Path(tmp), args) for notify in (False, True)]
    results.append(await signal_alone(server))
    print(json.dumps(results, indent=2))
    print("\n| wake-up (job end on A → answer on B) | requests | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['mode']} | {row['requests']} | {row['p50_ms']} ms | {row['p99_ms']} ms "
            f"| {row['max_ms']} ms |"
        )


if __name__ == "__main__":
    asyncio.run(main())
