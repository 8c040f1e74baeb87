"""The local runner through the gateway against a plain diffusers loop over the same
pipeline, steps and size, at 1 and 8 concurrent requests.

    .venv/bin/python bench/local/run.py                      # the tiny pipeline, CPU
    .venv/bin/python bench/local/run.py --model-dir FOLDER --size 512 --steps 20

Without ``--model-dir`` a tiny random-weight pipeline is built in a temporary folder
(``imagegate.local.tiny``). The device is the runner's choice (cuda, then mps, then
cpu) unless ``--device`` names one.

- plain loop: ``pipe(prompt, ...)`` once per image, one after another, each image saved
  as a PNG file, in this process (in a worker thread, as the runner's batches run).
  A plain loop serves concurrent callers one at a time (a pipeline is not safe to call
  from two threads at once), so its images per second are the same at any concurrency.
- gateway: ``POST /v1/images/generations`` through the whole HTTP app (in process, over
  httpx's ASGI transport): authentication, planning, the credit hold, the job, the
  runner's batching, the output file, the capture. ``c`` callers send requests back to
  back.

Prints a table and writes ``--out`` (JSON): images per second and median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.local.pipeline import LocalPipeline, Shape
from imagegate.local.provider import LocalProvider
from imagegate.local.tiny import build_tiny_pipeline
from imagegate.providers.registry import default_registry
from imagegate.store.tables import Workspace, WorkspaceModel

MODEL = """
models:
  - slug: bench-local
    name: Local pipeline (benchmark)
    provider: self
    seed_field: seed
    params:
      prompt: {{type: string, required: true, min_length: 1}}
      size: {{type: string, default: {size}x{size}, enum: [{size}x{size}]}}
      num_inference_steps: {{type: integer, default: {steps}, minimum: 1, maximum: 200}}
      seed: {{type: [integer, "null"], default: null}}
    sizes:
      field: size
      style: wxh
      default: {size}x{size}
      options: {{{size}x{size}: [{size}, {size}]}}
    price: 0
    routes: [{{provider: local, upstream_id: bench}}]
    provenance: benchmark
"""


def plain_loop(pipeline: LocalPipeline, shape: Shape, count: int) -> dict[str, float]:
    latencies = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for i in range(count):
            began = time.perf_counter()
            [image] = pipeline.run(shape, [f"a lighthouse {i}"], [i])
            image.save(Path(out) / f"{i}.png")
            latencies.append(time.perf_counter() - began)
    wall = time.perf_counter() - start
    return {"images_per_s": count / wall, "p50_s": statistics.median(latencies)}


async def through_gateway(
    client: httpx.AsyncClient, concurrency: int, count: int, size: int
) -> dict[str, float]:
    latencies: list[float] = []
    sent = iter(range(count))

    async def caller() -> None:
        for i in sent:
            began = time.perf_counter()
            response = await client.post(
                "/v1/images/generations",
                json={"model": "bench-local", "prompt": f"a lighthouse {i}", "seed": i},
            )
            response.raise_for_status()
            assert len(response.json()["data"]) == 1
            latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"images_per_s": count / wall, "p50_s": statistics.median(latencies)}


async def bench(args: argparse.Namespace, folder: Path, data: Path) -> dict[str, Any]:
    pipeline = LocalPipeline(folder, device=args.device)
    shape = Shape(args.size, args.size, args.steps, None, None)
    pipeline.run(shape, ["warm up"], [0])  # first call pays for allocations and kernels
    results: dict[str, Any] = {
        "device": pipeline.device_description,
        "pipeline": pipeline.name,
        "size": args.size,
        "steps": args.steps,
        "count": args.count,
        "rounds": args.rounds,
    }

    catalog = data / "catalog"
    catalog.mkdir(parents=True)
    (catalog / "bench.yaml").write_text(MODEL.format(size=args.size, steps=args.steps))
    settings = Settings(data_dir=data / "gw", catalog_dirs=[catalog], log_level="warning")
    provider = LocalProvider(pipeline, max_batch=args.max_batch)
    registry = default_registry(settings)
    registry.register(provider)
    gateway = Gateway(settings, providers=registry)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        async with gateway.db.session() as session:
            workspace = (await session.execute(select(Workspace).limit(1))).scalar_one()
            workspace.unfiltered_models_allowed = True
            session.add(
                WorkspaceModel(workspace_id=workspace.id, model="bench-local", enabled=True)
            )
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=600
        ) as client:
            await through_gateway(client, 1, 2, args.size)  # warm up the HTTP path
            # Rounds interleave the three measurements, so that a machine busy with other
            # work for a while slows all of them alike; each row is the median round.
            rounds: dict[str, list[dict[str, float]]] = {
                "plain": [],
                "gateway_c1": [],
                "gateway_c8": [],
            }
            for _ in range(args.rounds):
                # In a worker thread, as the runner's batches run: on a small machine busy
                # with other work PyTorch's OpenMP team was many times slower in the main
                # thread (docs/self-hosted.md), which would flatter the gateway.
                plain = await asyncio.to_thread(plain_loop, pipeline, shape, args.count)
                rounds["plain"].append(plain)
                for concurrency in (1, 8):
                    provider.batches.clear()
                    measured = await through_gateway(client, concurrency, args.count, args.size)
                    measured["mean_batch"] = statistics.mean(provider.batches)
                    rounds[f"gateway_c{concurrency}"].append(measured)
    for name, measured in rounds.items():
        results[name] = sorted(measured, key=lambda m: m["images_per_s"])[len(measured) // 2]
        results[f"{name}_rounds"] = [round(m["images_per_s"], 3) for m in measured]
    # A plain loop serves concurrent callers one at a time: the same rate at c=1 and c=8.
    results["plain_c1"] = results["plain_c8"] = results["plain"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a diffusers pipeline folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--count", type=int, default=8, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/local/results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model_dir or build_tiny_pipeline(Path(tmp) / "tiny")
        results = asyncio.run(bench(args, folder, Path(tmp)))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{results['pipeline']} on {results['device']}, {args.size}x{args.size}, "
        f"{args.steps} steps, median of {args.rounds} rounds of {args.count} images"
    )
    print(f"{'':8} {'plain loop':>20} {'gateway':>20} {'ratio':>7} {'mean batch':>11}")
    for c in (1, 8):
        plain, gw = results[f"plain_c{c}"], results[f"gateway_c{c}"]
        print(
            f"c={c:<6} {plain['images_per_s']:>12.2f} img/s {gw['images_per_s']:>12.2f} img/s "
            f"{gw['images_per_s'] / plain['images_per_s']:>6.2f}x {gw['mean_batch']:>11.1f}"
        )


if __name__ == "__main__":
    main()
