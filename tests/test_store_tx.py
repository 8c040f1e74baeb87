"""The write transactions of the hot path (``Database.transaction``): on PostgreSQL they run
on the driver's connection, on SQLite in a session; both must read and write alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from imagegate.store.db import Database, insert_rows
from imagegate.store.tables import FILES, JOBS, Job, LedgerEntry, Member, Workspace
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


@pytest.mark.skipif(not on_postgres(), reason="the driver path is PostgreSQL's")
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
