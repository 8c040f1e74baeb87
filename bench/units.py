"""CPU per unit of database work on the path of every image, measured in-process.

.venv/bin/python bench/units.py [--database sqlite|postgres] [--count 400]

Runs the two writes of a prepaid generation back to back, ``--count`` times, as the
gateway runs them: submit (the job inserted already claimed with its hold: one statement
on PostgreSQL, planned on the governance the process remembers; a read first on SQLite)
and success (job update, capture, output row: one statement on PostgreSQL). Prints this
process's CPU per unit and the wall time per unit (on PostgreSQL the wall time also holds
the server's work and the round trips). Process CPU time is steadier than requests per
second on a shared machine (the lower quartile of the second half is printed), so small
changes to the statements show here first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run
from sqlalchemy import select

from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services import billing, generation, jobs
from imagegate.services.keys import Principal
from imagegate.store.tables import File, Member
from imagegate.store.tx import combines_writes

BODY = {"model": "bench-image", "prompt": "a lighthouse at dusk", "response_format": "b64_json"}


async def measure(database: str, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            catalog_dirs=[run.BENCH / "catalog"],
            **({"database_url": run.fresh_postgres_db()} if database == "postgres" else {}),
        )
        gateway = Gateway(settings, run_workers=False)
        await gateway.start()
        try:
            return await _units(gateway, count)
        finally:
            await gateway.stop()


async def _units(gateway: Gateway, count: int) -> dict[str, float]:
    db = gateway.db
    async with db.session() as session:
        member = (await session.execute(select(Member))).scalars().one()
        principal = Principal(member.workspace_id, member.id, member.role, "key")
        await billing.grant(session, member.workspace_id, 10**12, member_id=None, note="units")
    model = gateway.catalog.resolve("bench-image")
    assert model is not None
    plan = generation.plan_openai(model, BODY)
    lease = generation.Lease("units", 60)
    remembers = combines_writes(db.dialect_name)  # as create_job decides
    submit_cpu: list[float] = []
    success_cpu: list[float] = []
    began = time.perf_counter()
    for index in range(count):
        start = time.process_time()
        async with db.autocommit() as tx:  # as create_job runs it
            if remembers:
                gateway.governance.recall(tx, principal.workspace_id)
            job = await generation.submit(tx, principal, plan, BODY, "generate", lease=lease)
            if remembers:
                gateway.governance.keep(tx, principal.workspace_id)
        middle = time.process_time()
        claim = jobs.Claim(job, attempt=1, lease_owner=lease.owner, checked=True)
        output = File(
            id=f"file_units{index}",
            workspace_id=job.workspace_id,
            job_id=job.id,
            output_index=0,
            purpose="output",
            filename="out.png",
            content_type="image/png",
            bytes=1,
            width=1024,
            height=1024,
            sha256="0" * 64,
            blob_key=f"units/{index}",
        )
        async with jobs.success_unit(db, job) as tx:  # as the runner runs it
            charged = await jobs.succeed(
                tx,
                claim,
                [output],
                actual_cost=job.estimated_cost,
                result={"images": 1},
                provider_request_id=None,
            )
        assert charged == job.estimated_cost, (charged, job.estimated_cost)
        submit_cpu.append(middle - start)
        success_cpu.append(time.process_time() - middle)
    wall = (time.perf_counter() - began) / count
    half = count // 2  # the first half warms the caches
    return {
        "submit_cpu_ms": 1000 * lower_quartile(submit_cpu[half:]),
        "success_cpu_ms": 1000 * lower_quartile(success_cpu[half:]),
        "wall_ms": 1000 * wall,
    }


def lower_quartile(values: list[float]) -> float:
    """Less disturbed than the median by other work on a shared machine."""
    return statistics.quantiles(values, n=4)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="postgres", choices=["sqlite", "postgres"])
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.database, args.count))
    print(
        f"{args.database}: submit {figures['submit_cpu_ms']:.3f} ms CPU, "
        f"success {figures['success_cpu_ms']:.3f} ms CPU, "
        f"{figures['wall_ms']:.3f} ms wall per unit (both)"
    )


if __name__ == "__main__":
    main()
