"""The database handle: an async engine, sessions, and migrations at start."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from imagegate.store.tables import Base
from imagegate.store.tx import SessionTx, SQLiteWriter, StatementCache, Tx, driver_transaction

MIGRATIONS = Path(__file__).parent / "migrations"


def row_values(row: Base) -> dict[str, Any]:
    """A new row's column values, with the columns' Python defaults filled in (on the
    object too, so it reads as the database will have it)."""
    values = {}
    no_context = cast(Any, None)  # our defaults (utcnow, constants) take no execution context
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        default = column.default
        if value is None and isinstance(default, CallableColumnDefault):
            value = default.arg(no_context)
            setattr(row, column.key, value)
        elif value is None and isinstance(default, ScalarElementColumnDefault):
            value = default.arg
            setattr(row, column.key, value)
        values[column.key] = value
    return values


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


async def insert_rows(tx: Tx | AsyncSession, *rows: Base) -> None:
    """Insert new rows with one Core INSERT per table, in the transaction given.

    The cheap way for hot paths: no unit-of-work flush, and the objects stay transient
    (readable as built; nothing about them is tracked or loaded back). Every column is
    given (defaults filled in here), so the statement runs on the driver as well.
    """
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_table.setdefault(row.__table__, []).append(row_values(row))
    for table, values in by_table.items():
        await tx.execute(_insert(table), values[0] if len(values) == 1 else values)


def _json_text(value: Any) -> str:
    """JSON columns' text, by orjson: several times faster than the standard library's
    ``json`` for a job's request and plan. Non-string keys are written as strings, as
    ``json`` does; what orjson refuses (integers beyond 64 bits) is left to ``json``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


# Both engines read and write JSON columns with orjson.
_JSON = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Hand transaction control to the "begin" listeners below instead of the driver.
    dbapi_connection.isolation_level = None


def _sqlite_engine(url: str, begin: str, pool_size: int, pool_timeout: float) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args={"timeout": 30},
        **_JSON,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """One engine and its session factory; ``session()`` is a unit of work."""

    def __init__(self, url: str, *, pool_size: int = 20, pool_timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine
        self.read_engine: AsyncEngine
        # SQLite (a file name): the hot path's units on the event loop's thread.
        self.writer: SQLiteWriter | None = None
        if self.is_sqlite:
            # One writer at a time is SQLite's model: a small writer pool avoids lock churn,
            # readers (WAL) run beside it.
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE", 5, pool_timeout)
            self.read_engine = _sqlite_engine(url, "BEGIN", pool_size, pool_timeout)
            path = make_url(url).database
            if path and not path.startswith("file:"):  # a URI is left to the engine
                self.writer = SQLiteWriter(path)
        else:
            self.engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=pool_timeout,
                # No ping per checkout (a round trip per transaction): a connection that a
                # database restart broke fails one unit of work, and SQLAlchemy then drops
                # the whole pool; recycling bounds a connection's age.
                pool_recycle=1800,
                **_JSON,
            )
            self.read_engine = self.engine
        self.dialect_name = self.engine.dialect.name
        self.statements = StatementCache(self.engine.dialect)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-write unit of work, committed on success.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a transaction that
        reads and then writes could otherwise fail at once with "database is locked"
        when another writer commits in between.
        """
        async with self.sessions() as session, session.begin():
            yield session

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A read-write unit of work for Core statements (see :mod:`imagegate.store.tx`):
        on PostgreSQL run on the driver's connection, on SQLite in a session."""
        return self._unit(autocommit=False)

    def autocommit(self) -> AbstractAsyncContextManager[Tx]:
        """A unit of work whose writes are one statement each on PostgreSQL, where each
        statement commits on its own: no ``BEGIN`` and ``COMMIT`` round trips. Reads see
        what a transaction under READ COMMITTED would (each statement its own snapshot).
        On SQLite, where the same writes take several statements, one transaction."""
        return self._unit(autocommit=True)

    @asynccontextmanager
    async def _unit(self, *, autocommit: bool) -> AsyncIterator[Tx]:
        if self.writer is not None:
            async with self.writer.unit(self.statements) as tx:
                yield tx
        elif self.is_sqlite:  # named by a URI: the engine's connections
            async with self.session() as session:
                yield SessionTx(session)
        else:
            async with driver_transaction(
                self.engine, self.statements, autocommit=autocommit
            ) as tx:
                yield tx

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work; on SQLite it does not wait for writers."""
        async with self.read_sessions() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
