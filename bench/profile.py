"""Profile the gateway under scenario B's load with py-spy: bench/out/profile-*.txt.

.venv/bin/python bench/profile.py [--database sqlite|postgres] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--body", default="b64_json", choices=["b64_json", "url"])
    args = parser.parse_args()
    wrk_bin = run.ensure_wrk()
    servers = []
    try:
        upstream = run.start(
            "upstream", run.UPSTREAM_PORT,
            [sys.executable, str(run.BENCH / "upstream.py"), "--port", str(run.UPSTREAM_PORT)], {},
        )  # fmt: skip
        servers.append(upstream)
        gateway = run.start_gateway(args.database, workers=512)
        servers.append(gateway)
        body = run.B64_BODY if args.body == "b64_json" else run.URL_BODY
        run.warm(gateway, "/v1/images/generations", body)
        raw = run.OUT / f"profile-{args.database}-c{args.concurrency}.txt"
        spy = subprocess.Popen(
            [str(run.VENV_BIN / "py-spy"), "record", "-p", str(gateway.process.pid), "-f", "raw",
             "-d", str(args.seconds), "-o", str(raw), "-r", "200", "--gil"],
        )  # fmt: skip
        load = threading.Thread(
            target=run.load_row,
            args=(wrk_bin, "B", gateway, "/v1/images/generations", body, args.concurrency,
                  args.seconds),
        )  # fmt: skip
        load.start()
        load.join()
        spy.wait()
        summarize(raw)
        shares(raw)
    finally:
        for server in reversed(servers):
            run.stop(server)
        run.empty_trash()


def summarize(raw: Path, top: int = 25) -> None:
    """Self and total time per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    print(f"{samples} samples")
    print("-- self")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * count / samples:5.1f}%  {frame}")
    print("-- total")
    for frame, count in sorted(total.items(), key=lambda kv: -kv[1])[: top * 2]:
        print(f"{100 * count / samples:5.1f}%  {frame}")


# Where a sample is counted: under the first of these whose frames its stack passes
# through (a sample of the success statement under the runner's storing step counts as
# the database's), the rest under "the rest".
SHARES = [
    ("parsing the upstream answer", ["json_body"]),
    ("rendering the answer", ["JSONResponse.render", "Base64Text"]),
    ("uvicorn's send", ["RequestResponseCycle.send"]),
    ("the database", ["Tx.execute", "driver_transaction", "SQLiteWriter", "asyncpg/"]),
    ("the database", ["aiosqlite/", "Database._unit", "Database.session", "Database.read"]),
    ("storing the outputs", ["JobRunner._store", "_describe", "imagegate/blobs/"]),
    ("the upstream call", ["UpstreamHTTP.request", "OpenAIProvider.generate", "aiohttp/"]),
    ("SQLAlchemy elsewhere", ["sqlalchemy/"]),
    ("planning", ["plan_openai", "choose_model", "check_usable", "_submit_new"]),
]


def shares(raw: Path) -> None:
    """The samples split by step (``SHARES``), as bench/profile.md tabulates them."""
    counts = dict.fromkeys([name for name, _ in SHARES] + ["the rest"], 0)  # one row each
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        samples += int(count_text)
        name = next(
            (name for name, frames in SHARES if any(frame in stack for frame in frames)),
            "the rest",
        )
        counts[name] += int(count_text)
    print("-- shares")
    for name, count in counts.items():
        print(f"{100 * count / max(samples, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
