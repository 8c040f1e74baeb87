"""Signals between instances over PostgreSQL ``LISTEN/NOTIFY``.

Every instance keeps one connection of its own that listens on the channel
``imagegate``. A message is a kind and its arguments, ``"<kind> <sender> <a>,<b>,…"``:

- ``e`` job ids whose attempt ended (a waiting request reads the job again);
- ``q`` job ids queued for any worker (new jobs, jobs handed back at shutdown);
- ``c`` job ids canceled (the instance running one stops it);
- ``k`` API keys or members changed (every instance drops its key cache);
- ``g`` workspace ids whose governance changed (every instance forgets what it read).

``e`` and ``q`` are sent by the gateway after its commit, coalesced: while one
``pg_notify`` is on its way, the next ones gather into one message. The others are sent
by triggers (migration 0008) in the transaction that made the change, so a change made
by any process, the CLI or by hand reaches every instance. A notification can be lost
(a connection drops): every consumer also looks at the database now and then, which
these messages only make faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.ids import new_id
from imagegate.worker.tasks import cancel_and_wait

log = logging.getLogger("imagegate.signals")

CHANNEL = "imagegate"
JOB_ENDED, JOB_QUEUED, JOB_CANCELED, KEYS_CHANGED, GOVERNANCE_CHANGED = "e", "q", "c", "k", "g"
# pg_notify's payload limit is 8000 bytes; stay well below it.
_PAYLOAD_BYTES = 7000
_HEARTBEAT_SECONDS = 10.0

Handler = Callable[[list[str]], None]


def pack(kind: str, sender: str, ids: list[str]) -> list[str]:
    """``ids`` as few payloads as fit pg_notify's limit."""
    payloads: list[str] = []
    head = f"{kind} {sender} "
    batch: list[str] = []
    size = len(head)
    for item in ids:
        if batch and size + len(item) + 1 > _PAYLOAD_BYTES:
            payloads.append(head + ",".join(batch))
            batch, size = [], len(head)
        batch.append(item)
        size += len(item) + 1
    if batch:
        payloads.append(head + ",".join(batch))
    return payloads


def unpack(payload: str) -> tuple[str, str, list[str]]:
    """A payload's kind, sender ("-" from a trigger) and arguments."""
    kind, _, rest = payload.partition(" ")
    sender, _, args = rest.partition(" ")
    return kind, sender, [arg for arg in args.split(",") if arg]


class Signals:
    """The bus of one instance: :meth:`publish` to the others, :meth:`on` to hear them.

    Inactive (publishing nothing, hearing nothing) on SQLite or when disabled; then
    :attr:`live` stays False and consumers poll as they did.
    """

    def __init__(self, engine: AsyncEngine, *, enabled: bool) -> None:
        self.enabled = enabled and engine.dialect.name == "postgresql"
        self._engine = engine
        self.sender = new_id("ins")
        self.live = False
        self._handlers: dict[str, list[Handler]] = {}
        self._on_connect: list[Callable[[], None]] = []
        self._outbox: dict[str, list[str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._sent = asyncio.Event()
        self._sent.set()
        self.received = 0

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def on_connect(self, handler: Callable[[], None]) -> None:
        """Run ``handler`` whenever the listener (re)connects: what was sent while it was
        away is lost, so a consumer looks again."""
        self._on_connect.append(handler)

    def publish(self, kind: str, *ids: str) -> None:
        """Tell the other instances; sent soon, together with whatever else is waiting."""
        if self._task is None or not ids:
            return
        self._outbox.setdefault(kind, []).extend(ids)
        self._sent.clear()
        self._wake.set()

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def wait_connected(self, timeout: float) -> bool:
        if not self.enabled:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.live

    async def stop(self) -> None:
        if self._task is not None:
            # What is still waiting to go out is sent first (a drain hands jobs back).
            await self.flush()
        await cancel_and_wait(self._task)
        self._task = None
        self.live = False

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout``) until what was published so far has been sent."""
        if self.live:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sent.wait(), timeout)

    def _dispatch(self, payload: str) -> None:
        kind, sender, args = unpack(payload)
        if sender == self.sender:
            return
        self.received += 1
        for handler in self._handlers.get(kind, ()):
            try:
                handler(args)
            except Exception:
                log.exception("handling the signal %r failed", kind)

    def _listener(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._dispatch(payload)

    async def _connect(self) -> Any:
        _, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
        kwargs.pop("prepared_statement_cache_size", None)
        kwargs.pop("prepared_statement_name_func", None)
        conn = await asyncpg.connect(**kwargs)
        # A notification carries no data that a crash could lose: no wait for the disk.
        await conn.execute("SET synchronous_commit = off")
        await conn.add_listener(CHANNEL, self._listener)
        return conn

    async def _run(self) -> None:
        delay = 0.5
        while True:
            conn = None
            try:
                conn = await self._connect()
                self.live = True
                self._connected.set()
                delay = 0.5
                for handler in self._on_connect:
                    handler()
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.live:
                    log.warning("the signal connection dropped (%s); reconnecting", exc)
                else:
                    log.warning("cannot listen for signals (%s); retrying in %.1fs", exc, delay)
            finally:
                self.live = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=1))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _serve(self, conn: Any) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), _HEARTBEAT_SECONDS)
            except TimeoutError:
                await conn.fetchval("SELECT 1")  # a dead connection shows up here
                continue
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            payloads = [
                payload
                for kind, ids in outbox.items()
                for payload in pack(kind, self.sender, list(dict.fromkeys(ids)))
            ]
            for payload in payloads:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            if not self._outbox:
                self._sent.set()
