"""docs/benchmarks.md from one run's results (bench/out/results.json) and bench/profile.md."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

INTRO = """# Benchmarks

What the gateway adds between a client and the provider: time, CPU and memory per image,
and how that grows with load. Everything below comes from one run of

```
bash bench/run.sh
```

which installs what it lacks (Debian's `wrk`, LiteLLM into `bench/.venv-litellm`), starts
the local PostgreSQL if it is down (`BENCH_PG` names another server), starts
on 127.0.0.1 a fake OpenAI Images upstream (`bench/upstream.py`: one fixed 1024x1024 PNG
of noise as `b64_json`, latency settable at run time), the gateway on PostgreSQL and on
SQLite (model `bench-image` from `bench/catalog/`, served by the real OpenAI adapter
through `IMAGEGATE_OPENAI_BASE_URL`) and the LiteLLM proxy, drives each with `wrk`
(`bench/wrk/*.lua`), prints the table and rewrites this page. `bash bench/run.sh --quick`
does shorter runs and 500 jobs; `--skip E,F`, `--databases sqlite` and `--seconds N` narrow
it down (a run that skips a scenario leaves this page alone unless `--write-docs PATH` is
given, and keeps its figures in `bench/out/results-partial.json`; `bench/report.py`
re-renders this page from the last run of every scenario, `bench/out/results.json`).
`.venv/bin/python bench/units.py --database postgres` measures, in-process, the CPU of
the two writes every image makes, and `.venv/bin/python bench/floor.py` the CPU that
moving one image's bytes takes whatever the code around it (receiving, decoding, storing
and sending them); the run measures the latter first, while the machine is idle. CI
never runs these; pytest does not collect them.

Scenarios:

- **A** the floor: wrk straight to the fake upstream.
- **B** `POST /v1/images/generations`, `response_format: b64_json`, through the gateway.
  The gateway serves from one process (as LiteLLM does), then again from two
  (`imagegate serve --workers 2`, rows `gateway-…-2proc`; `--processes` sets the counts,
  empty for none).
- **C** the same with `response_format: url` (a signed link to the stored output).
- **D** upstream latency 2 s, 256 connections: every request must be held and answered.
- **E** async jobs: submit N jobs (`POST /v1/jobs/bench-image`) with a 30 s upstream, then
  poll each `GET /v1/jobs/{id}` until all are finished.
- **F** the peer: LiteLLM proxy (one worker, no database) in front of the same upstream,
  scenario B's load.

Columns: requests/s and latency percentiles as wrk measured them; errors are wrk's
connect/read/write/timeout errors plus non-2xx answers; peak RSS and CPU seconds are the
server's own (psutil, sampled every 50 ms while the scenario ran; for A the upstream, for F
LiteLLM, otherwise the gateway), CPU per 1000 images answered. ×A and ×F are ratios to
scenario A and F at the same concurrency (D against the c=64 rows). wrk sends no
`Accept-Encoding`, so no side compresses. Each gateway starts on an empty data directory;
the one before it is moved aside, not deleted, and all of them are deleted once the last
figure is taken: on a file system that delays reusing deleted inodes (ext4 without a
journal, as on the machine below), creating a file soon after thousands of deletions
took 0.3–0.6 ms instead of 20–90 µs.
"""


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _rejected(extra: dict[str, Any]) -> str:
    """What the rejected submits were answered with, e.g. ' (1 x 503 server_busy)'."""
    found = extra.get("rejected") or {}
    return " (" + ", ".join(f"{n} x {k}" for k, n in found.items()) + ")" if found else ""


def jobs_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | jobs | succeeded | submit req/s | submit p50 / p90 / p99 ms | "
        "poll requests | poll p50 / p90 / p99 ms | all done after s | jobs/s | errors "
        "| peak RSS MB | CPU s / 1000 jobs |",
        "|" + "---|" * 12,
    ]
    for row in rows:
        x = row["extra"]
        lines.append(
            f"| {row['target']} | {row['concurrency']} | {x['succeeded']} | "
            f"{_f(x['submit_rps'])} | {_f(row['p50_ms'])} / {_f(row['p90_ms'])} / "
            f"{_f(row['p99_ms'])} | {x['poll_requests']:,} | {_f(x['poll_p50_ms'])} / "
            f"{_f(x['poll_p90_ms'])} / {_f(x['poll_p99_ms'])} | {_f(x['total_s'])} | "
            f"{_f(row['rps'])} | {row['errors']}{_rejected(x)} | {_f(row['rss_mb'], 0)} | "
            f"{_f(row['cpu_per_1000'], 2)} |"
        )
    return "\n".join(lines)


Rows = list[dict[str, Any]]


def pick(rows: Rows, scenario: str, concurrency: int, target: str | None = None) -> Rows:
    """The rows of ``scenario`` at ``concurrency`` (of ``target`` alone, if given)."""
    return [
        r for r in rows
        if r["scenario"] == scenario and r["concurrency"] == concurrency
        and (target is None or r["target"] == target)
    ]  # fmt: skip


def targets(rows: Rows) -> str:
    """The issue's targets, each checked against this run's figures."""

    def line(target: str, gateway: str, measured: str, met: bool) -> str:
        return f"| {target} | {gateway} | {measured} | {'yes' if met else 'no'} |"

    lines = [
        "### Against the targets\n",
        "| target | gateway | measured | met |",
        "|---|---|---|---|",
    ]
    floor1, peer64 = pick(rows, "A", 1), pick(rows, "F", 64)
    for gw in sorted({r["target"] for r in rows if r["target"].startswith("gateway")}):
        b1, b64 = pick(rows, "B", 1, gw), pick(rows, "B", 64, gw)
        if b1 and floor1:
            added = b1[0]["p50_ms"] - floor1[0]["p50_ms"]
            lines.append(
                line("c=1: at most +3 ms p50 over the floor", gw, f"+{added:.1f} ms", added <= 3)
            )
        if b64 and peer64:
            x = b64[0]["rps"] / peer64[0]["rps"]
            lines.append(line("c=64: at least 10x LiteLLM's req/s", gw, f"{x:.2f}x", x >= 10))
            y = b64[0]["p99_ms"] / peer64[0]["p99_ms"]
            lines.append(line("c=64: at most 1/10 of LiteLLM's p99", gw, f"{y:.2f}x", y <= 0.1))
        for d in pick(rows, "D", 256, gw):
            measured = f"{d['errors']} errors, {d['requests']} answered"
            lines.append(
                line("D: zero errors at c=256, 2 s upstream", gw, measured, d["errors"] == 0)
            )
        for e in [r for r in rows if r["scenario"] == "E" and r["target"] == gw]:
            done, submitted = e["extra"]["succeeded"], e["requests"]
            measured = (
                f"{e['rss_mb']:,.0f} MB; {done} of {submitted} submitted jobs succeeded "
                f"({e['concurrency']} asked for)"
            )
            lines.append(line("E: under 1 GB RSS", gw, measured, e["rss_mb"] < 1024))
    spread = p99_spread(pick(rows, "F", 64), pick(rows, "B", 64))
    return "\n".join(lines + ([f"\n{spread}"] if spread else []))


def p99_spread(peer: Rows, gateways: Rows) -> str:
    """What a tenth of the peer's p99 at c=64 asks of the gateway's requests/s.

    wrk keeps its connections busy, so by Little's law a target's mean latency is the
    concurrency over its requests per second, and a p99 is some multiple of that mean.
    """
    if not peer or not gateways:
        return ""

    def over_mean(row: dict[str, Any]) -> float:
        return float(row["p99_ms"] / (row["concurrency"] / row["rps"] * 1000))

    ref = peer[0]
    k_peer = over_mean(ref)
    spreads = sorted(over_mean(r) for r in gateways)
    low, high = spreads[0], spreads[-1]
    return textwrap.fill(
        f"At c=64 wrk keeps 64 requests in flight, so a target's mean latency is 64 over its "
        f"requests/s (Little's law). LiteLLM's p99 was {k_peer:.2f} times its mean "
        f"({ref['concurrency'] / ref['rps'] * 1000:,.0f} ms) in this run, so a tenth of it "
        f"({ref['p99_ms'] / 10:,.0f} ms) asks for at least {10 / k_peer:.1f} times LiteLLM's "
        f"requests/s if every request took exactly the mean time; with the gateway's own p99 "
        f"at {low:.2f}–{high:.2f} times its mean, {10 * low / k_peer:.1f}–"
        f"{10 * high / k_peer:.1f} times.",
        width=88,
    )


def above_bytes_floor(rows: Rows, steps: dict[str, float]) -> str:
    """Scenario B's CPU per image against what moving the image's bytes alone costs."""
    total = sum(steps.values())
    named = ", ".join(f"{name} {ms:.2f}" for name, ms in steps.items())
    levels = sorted({r["concurrency"] for r in rows if r["scenario"] == "B"})
    if not levels or not steps:  # scenario B skipped, or a run from before the floor
        return ""
    lines = [
        "### Above the bytes' floor\n",
        textwrap.fill(
            f"`bench/floor.py`, run at the start of this run, times what moving one image's "
            f"bytes costs whatever the code around them: {total:.2f} ms of CPU ({named}). "
            f"Scenario B's CPU per image, its ratio to that, and the ms above it:",
            width=88,
        ),
        "",
        "| gateway | " + " | ".join(f"c={c}" for c in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    cpu = {(r["target"], r["concurrency"]): r["cpu_per_1000"] for r in rows if r["scenario"] == "B"}
    for gw in sorted({target for target, _ in cpu}):
        cells = [
            f"{ms:.2f} ms ({ms / total:.2f}x, +{ms - total:.2f})" if ms is not None else ""
            for ms in (cpu.get((gw, c)) for c in levels)
        ]
        lines.append(f"| {gw} | " + " | ".join(cells) + " |")
    peer = pick(rows, "F", 64)
    if peer:
        wanted = 10 * peer[0]["rps"]
        budget = 1000 / wanted
        lines += [
            "",
            textwrap.fill(
                f"Ten times LiteLLM's requests/s at c=64 is {wanted:,.0f} requests/s. One "
                f"process runs on at most one core: {budget:.2f} ms of CPU per image at that "
                f"rate, {budget / total:.2f} times the bytes' floor, before any HTTP, "
                f"database or job work; two processes share two cores with wrk and the "
                f"upstream.",
                width=88,
            ),
        ]
    return "\n".join(lines)


def write_report(path: Path, results: dict[str, Any], table: str) -> None:
    rows = results["rows"]
    jobs = [r for r in rows if r["scenario"] == "E"]
    args = results["args"]
    parts = [
        INTRO,
        "## Results\n",
        f"Machine: {results['machine']}. Upstream image: {results['png_bytes']:,} bytes of PNG "
        f"({results['png_bytes'] * 4 // 3:,} as base64). LiteLLM {results['litellm']}. "
        f"Durations: A {args['floor_seconds']:g} s, B/C/F {args['seconds']:g} s per "
        f"concurrency, D {args['d_seconds']:g} s; E {args['jobs']} jobs with "
        f"`IMAGEGATE_WORKER_CONCURRENCY` = `IMAGEGATE_PROVIDER_CONCURRENCY` = "
        f"{args['e_workers']}. Whole run: {results['elapsed_s'] / 60:.1f} min.\n",
        table,
        "",
    ]
    if jobs:
        parts += ["### Scenario E: async jobs\n", jobs_table(jobs), ""]
    parts += [targets(rows), ""]
    floor = above_bytes_floor(rows, results.get("bytes_floor_ms") or {})
    if floor:
        parts += [floor, ""]
    profile = BENCH / "profile.md"
    if profile.exists():
        parts += [profile.read_text().rstrip(), ""]
    instances = BENCH / "scale.md"  # bench/scale.py and bench/wakeup.py, run apart
    if instances.exists():
        parts += [instances.read_text().rstrip(), ""]
    path.write_text("\n".join(parts))


if __name__ == "__main__":
    out = BENCH / "out" / "results.json"
    data = json.loads(out.read_text())
    sys.path.insert(0, str(BENCH))
    from run import Row
    from run import table as render

    rows = [Row(**r) for r in data["rows"]]
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH.parent / "docs" / "benchmarks.md"
    write_report(target, data, render([r for r in rows if r.scenario != "E"]))
