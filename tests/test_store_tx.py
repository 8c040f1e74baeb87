"""The write transactions of the hot path (``Database.transaction``): on PostgreSQL they run
on asyncpg's connection, on SQLite on ``sqlite3`` in the event loop's thread (waiting on
the loop while SQLite's write lock is taken elsewhere); all must read and write alike."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from imagegate.store.db import Database, insert_rows
from imagegate.store.tables import FILES, JOBS, Job, LedgerEntry, Member, Workspace
from imagegate.store.tx import SQLiteTx
from tests.conftest import on_postgres

WORKSPACE, MEMBER = "ws_tx", "mem_tx"
AT = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=1)
    await database.migrate()
    async with database.transaction() as tx:
        await insert_rows(tx, Workspace(id=WORKSPACE, name="tx"))
        await insert_rows(tx, Member(id=MEMBER, workspace_id=WORKSPACE, name="tx", role="admin"))
    yield database
    await database.close()


def _job(job_id: str, **values: object) -> Job:
    fields: dict[str, object] = {
        "id": job_id,
        "workspace_id": WORKSPACE,
        "member_id": MEMBER,
        "model": "m",
        "provider": "mock",
        "request": {"body": {"prompt": "ünïcode ✓"}, "plan": {"n": 1}},
        "params": {},
        "created_at": AT,
    }
    return Job(**(fields | values))


_READ = select(JOBS.c.id, JOBS.c.created_at, JOBS.c.request, JOBS.c.attempt).where(
    JOBS.c.id == bindparam("p_id")
)


async def test_rows_read_alike_through_a_transaction_and_a_session(db: Database) -> None:
    async with db.transaction() as tx:
        await insert_rows(tx, _job("job_a"))
        row = (await tx.execute(_READ, {"p_id": "job_a"})).first()
    # By name and by position, with the columns' own conversions (UTC datetimes, JSON).
    assert row.id == row[0] == "job_a"
    assert row.created_at == AT and row.created_at.tzinfo == UTC
    assert row.request == {"body": {"prompt": "ünïcode ✓"}, "plan": {"n": 1}}
    assert row._asdict()["attempt"] == 0  # the column's default, filled in by insert_rows
    async with db.session() as session:
        assert tuple((await session.execute(_READ, {"p_id": "job_a"})).one()) == tuple(row)
    async with db.transaction() as tx:
        assert (await tx.execute(_READ, {"p_id": "job_none"})).first() is None


async def test_json_columns_round_trip_on_both_paths(db: Database) -> None:
    """JSON columns are written by orjson: non-ASCII text, nesting, integers beyond 64 bits
    and integer keys (written as strings, as the standard library's ``json`` does)."""
    request = {"body": {"prompt": "ünïcode ✓ \u2028", "n": 2**70}, "plan": {1: [None, 1.5]}}
    expected = {"body": {"prompt": "ünïcode ✓ \u2028", "n": 2**70}, "plan": {"1": [None, 1.5]}}
    async with db.transaction() as tx:
        await insert_rows(tx, _job("job_json", request=request))
        assert (await tx.execute(_READ, {"p_id": "job_json"})).first().request == expected
    async with db.session() as session:
        assert (await session.get(Job, "job_json")).request == expected  # type: ignore[union-attr]


async def test_row_counts_and_many_rows(db: Database) -> None:
    async with db.transaction() as tx:
        await insert_rows(tx, _job("job_1"), _job("job_2"), _job("job_3"))
        entries = [
            LedgerEntry(id=f"le_{i}", workspace_id=WORKSPACE, kind="grant", amount=i)
            for i in (1, 2, 3)
        ]
        await insert_rows(tx, *entries)
        bump = update(JOBS).where(JOBS.c.id != bindparam("p_id")).values(attempt=JOBS.c.attempt + 1)
        assert (await tx.execute(bump, {"p_id": "job_1"})).rowcount == 2
        total = (
            await tx.execute(text("SELECT sum(amount) AS total FROM ledger_entries"))
        ).scalar_one()
        assert total == 6
        ids = select(JOBS.c.id).where(JOBS.c.id.in_(["job_1", "job_3", "job_9"]))
        assert sorted((await tx.execute(ids)).scalars()) == ["job_1", "job_3"]
    async with db.session() as session:
        attempts = await session.execute(select(JOBS.c.id, JOBS.c.attempt).order_by(JOBS.c.id))
        assert [tuple(r) for r in attempts] == [("job_1", 0), ("job_2", 1), ("job_3", 1)]
        assert len((await session.execute(select(LedgerEntry.id))).scalars().all()) == 3


async def test_a_transaction_that_raises_writes_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_gone"))
            raise RuntimeError("stop")
    async with db.transaction() as tx:  # the pool's one connection is usable again
        assert (await tx.execute(_READ, {"p_id": "job_gone"})).first() is None


async def test_autocommit_commits_each_statement_on_postgres_and_all_at_once_on_sqlite(
    db: Database,
) -> None:
    """On PostgreSQL no transaction wraps the unit (each statement commits on its own);
    on SQLite, where a unit's writes take several statements, one transaction does."""
    with pytest.raises(RuntimeError):
        async with db.autocommit() as tx:
            await insert_rows(tx, _job("job_kept"))
            raise RuntimeError("stop")
    async with db.autocommit() as tx:
        kept = (await tx.execute(_READ, {"p_id": "job_kept"})).first()
    assert (kept is not None) == on_postgres()


async def test_a_duplicate_key_is_sqlalchemys_integrity_error(db: Database) -> None:
    async with db.transaction() as tx:
        await insert_rows(tx, _job("job_twice"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_twice"))


async def test_a_statement_that_needs_python_defaults_is_refused(db: Database) -> None:
    with pytest.raises(TypeError, match="every column"):
        async with db.transaction() as tx:
            await tx.execute(insert(FILES), {"id": "file_x", "workspace_id": WORKSPACE})


@pytest.mark.skipif(not on_postgres(), reason="the driver path is PostgreSQL's")
async def test_a_connection_that_broke_is_not_reused(db: Database) -> None:
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        async with db.transaction() as tx:
            pid = (await tx.execute(text("SELECT pg_backend_pid() AS pid"))).scalar_one()
            await tx.execute(text(f"SELECT pg_terminate_backend({int(pid)}) AS done"))
    # The pool holds one connection: had the broken one gone back, this would fail.
    async with db.transaction() as tx:
        assert (await tx.execute(text("SELECT 1 AS one"))).scalar_one() == 1


sqlite_only = pytest.mark.skipif(on_postgres(), reason="SQLite's write lock")


def _lock_holder(db: Database) -> sqlite3.Connection:
    """Another connection to the database file, holding SQLite's write lock."""
    assert db.writer is not None
    holder = sqlite3.connect(db.writer.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


@sqlite_only
async def test_a_unit_runs_on_the_event_loop_when_the_write_lock_is_free(db: Database) -> None:
    async with db.transaction() as tx:
        assert isinstance(tx, SQLiteTx)
        await insert_rows(tx, _job("job_loop"))
    async with db.session() as session:
        assert await session.get(Job, "job_loop") is not None


@sqlite_only
async def test_a_unit_waits_off_the_loop_while_another_connection_writes(db: Database) -> None:
    holder = _lock_holder(db)
    holder.execute(
        "INSERT INTO ledger_entries (id, workspace_id, kind, amount, created_at) "
        "VALUES ('le_other', 'ws_tx', 'grant', 5, '2026-03-01 10:30:00.000000')"
    )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    asyncio.get_running_loop().call_later(0.3, holder.commit)
    try:
        async with db.transaction() as tx:
            assert isinstance(tx, SQLiteTx)
            await insert_rows(tx, _job("job_waited"))
    finally:
        ticker.cancel()
        holder.close()
    assert ticks >= 10  # the loop ran on while the unit waited for the lock
    async with db.session() as session:
        assert await session.get(Job, "job_waited") is not None
        assert await session.get(LedgerEntry, "le_other") is not None


@sqlite_only
async def test_units_waiting_for_the_lock_queue_and_one_of_them_tries(db: Database) -> None:
    """Fifty units wait for a lock another connection holds: they run in the order they
    came, and only the first keeps trying for the lock meanwhile."""
    assert db.writer is not None
    async with db.transaction():  # the writer's connection is open
        pass
    connection = db.writer._connection
    assert connection is not None
    begins = 0

    def count(statement: str) -> None:
        nonlocal begins
        begins += statement.startswith("BEGIN")

    connection.set_trace_callback(count)
    holder = _lock_holder(db)
    asyncio.get_running_loop().call_later(0.3, holder.commit)
    order: list[int] = []

    async def unit(index: int) -> None:
        async with db.transaction() as tx:
            order.append(index)
            await insert_rows(tx, _job(f"job_q{index}"))

    try:
        await asyncio.gather(*(unit(index) for index in range(50)))
    finally:
        connection.set_trace_callback(None)
        holder.close()
    assert order == list(range(50))
    # 49 units that found the lock free, plus the first one's tries while it was held
    # (0.3 s at up to 20 ms apart); each waiting unit trying by itself would be ~1,000.
    assert begins < 49 + 60


@sqlite_only
async def test_units_queued_behind_a_lock_that_stays_taken_all_give_up_in_time(
    db: Database,
) -> None:
    """Each fails as a session would, within its own timeout, and writes nothing."""
    assert db.writer is not None
    db.writer.lock_timeout = 0.2
    holder = _lock_holder(db)

    async def unit(index: int) -> None:
        async with db.transaction() as tx:
            await insert_rows(tx, _job(f"job_late{index}"))

    started = time.monotonic()
    try:
        outcomes = await asyncio.gather(*(unit(i) for i in range(5)), return_exceptions=True)
    finally:
        holder.close()
    assert all(
        isinstance(o, OperationalError) and "database is locked" in str(o) for o in outcomes
    ), outcomes
    assert time.monotonic() - started < 1.0  # each its own 0.2 s, not 0.2 s one after another
    async with db.transaction() as tx:  # usable again once the lock is free
        assert (await tx.execute(select(JOBS.c.id))).first() is None


@sqlite_only
async def test_a_unit_that_awaits_makes_the_next_wait_for_it(db: Database) -> None:
    """A unit on the loop's connection that suspends (it awaits real work) holds the
    write lock meanwhile; a unit started then waits for it to end, then runs."""
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_first"))
            inside.set()
            await release.wait()
            order.append("first")

    async def second() -> None:
        await inside.wait()
        async with db.transaction() as tx:
            order.append("second")
            await insert_rows(tx, _job("job_second"))

    running = asyncio.gather(first(), second())
    await inside.wait()
    await asyncio.sleep(0.1)
    release.set()
    await running
    assert order == ["first", "second"]
    async with db.session() as session:
        assert {j.id for j in (await session.execute(select(Job))).scalars()} == {
            "job_first",
            "job_second",
        }


@sqlite_only
async def test_the_loops_connection_leaves_checkpoints_to_a_thread(db: Database) -> None:
    writer = db.writer
    assert writer is not None
    writer.checkpoint_every = 3
    runs = []
    checkpoint = writer.checkpoint
    writer.checkpoint = lambda: runs.append(1) or checkpoint()  # type: ignore[method-assign]
    for i in range(7):
        async with db.transaction() as tx:
            await insert_rows(tx, _job(f"job_c{i}"))
        if writer._checkpoint is not None:
            await writer._checkpoint
    assert len(runs) == 2  # after the 3rd and the 6th commit (the fixture's was the 1st)
    async with db.transaction() as tx:
        (autocheckpoint,) = (await tx.execute(text("PRAGMA wal_autocheckpoint"))).first()
    assert autocheckpoint == 0


class _RollbackFails(sqlite3.Connection):
    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)  # type: ignore[arg-type]


@sqlite_only
async def test_a_unit_whose_rollback_fails_lets_the_next_one_run(db: Database) -> None:
    """The unit's own error comes up; the connection that could not roll back (and may hold
    the write lock) is closed, and the next unit runs on a new one instead of waiting."""
    writer = db.writer
    assert writer is not None
    writer.lock_timeout = 0.5
    if writer._connection is not None:
        writer._connection.close()
    writer._connection = sqlite3.connect(
        writer.path, isolation_level=None, check_same_thread=False, factory=_RollbackFails
    )
    with pytest.raises(RuntimeError, match="the unit's own"):
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_rollback_failed"))
            raise RuntimeError("the unit's own error")
    async with asyncio.timeout(5):
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_after"))
    async with db.transaction() as tx:
        assert isinstance(tx, SQLiteTx)
        assert (await tx.execute(_READ, {"p_id": "job_rollback_failed"})).first() is None
        assert (await tx.execute(_READ, {"p_id": "job_after"})).first() is not None


@sqlite_only
async def test_a_failed_statement_is_sqlalchemys_error_and_rolls_back(db: Database) -> None:
    with pytest.raises(OperationalError, match="no_such_table"):
        async with db.transaction() as tx:
            await insert_rows(tx, _job("job_rolled_back"))
            await tx.execute(text("SELECT * FROM no_such_table"))
    async with db.transaction() as tx:
        assert isinstance(tx, SQLiteTx)
        assert (await tx.execute(_READ, {"p_id": "job_rolled_back"})).first() is None


def test_a_database_named_by_a_uri_keeps_its_units_in_sessions() -> None:
    """The writer opens plain file names only; a ``file:`` URI (with its options) is left
    to the engine's connections."""
    assert Database("sqlite+aiosqlite:///file:/tmp/x.db?mode=rwc&uri=true").writer is None
    assert Database("sqlite+aiosqlite:////tmp/x.db").writer is not None
