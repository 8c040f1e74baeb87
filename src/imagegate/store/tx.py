"""Units of work on the path of every image: one interface, two implementations.

The services on that path (governance read, job insert, hold, settlement, output rows)
are written once, as Core statements run through :class:`Tx`:

- :class:`SessionTx` runs them in a SQLAlchemy session (SQLite, and any caller that holds
  a session already);
- :class:`DriverTx` runs them on PostgreSQL's driver connection (asyncpg), taken from the
  engine's pool, each statement compiled by SQLAlchemy once for that dialect. SQLAlchemy's
  execution path (session, connection, greenlet hop, cursor emulation, result building)
  cost several times the driver's own work per statement.
- :class:`SQLiteTx` runs them on SQLite's own driver (``sqlite3``) on the event loop's
  thread (see :class:`SQLiteWriter`), compiled the same way. Through aiosqlite every
  statement crossed to the driver's thread and back three or four times. A database
  named by a ``file:`` URI is left to :class:`SessionTx`.

Only what both can do is offered: Core statements with bound parameters, rows read by
column name or position, ``rowcount``. A statement that needs SQLAlchemy at run time
(Python-side column defaults, result conversions other than the column types' own)
fails loudly on :class:`DriverTx` instead of running differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections import namedtuple
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from cachetools import LRUCache
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import Insert

log = logging.getLogger("imagegate.store")

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Rows(Protocol):
    """What a statement's result offers on both implementations."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def first(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...

    def scalars(self) -> Any: ...


def combines_writes(dialect_name: str) -> bool:
    """Whether the database runs data-modifying CTEs (PostgreSQL; SQLite has none), so
    that several writes that belong together can be one statement."""
    return dialect_name == "postgresql"


class Tx(Protocol):
    """One open unit of work: a transaction, or on PostgreSQL with
    :meth:`Database.autocommit` statements that each commit on their own."""

    dialect_name: str
    info: dict[str, Any]

    async def execute(self, statement: Executable, params: Params = None) -> Rows: ...

    async def flush(self) -> None: ...


class SessionTx:
    """A :class:`Tx` over a SQLAlchemy session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        bind = session.bind
        self.dialect_name = bind.dialect.name if bind is not None else ""
        self.info = session.info

    async def execute(self, statement: Executable, params: Params = None) -> Rows:
        return await self.session.execute(statement, params)  # type: ignore[return-value]

    async def flush(self) -> None:
        await self.session.flush()


def as_tx(session: Tx | AsyncSession) -> Tx:
    """``session`` as a :class:`Tx` (for services called both ways)."""
    return SessionTx(session) if isinstance(session, AsyncSession) else session


@dataclass(frozen=True, slots=True)
class _Compiled:
    statement: Executable  # kept so that its id is not reused while cached
    sql: str
    names: tuple[str, ...]
    processors: tuple[Any, ...]
    compiled: Any
    returns_rows: bool
    row_type: Any
    row_processors: tuple[Any, ...] | None


class DriverResult:
    """A statement's rows (or its row count) as :class:`Rows`."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


def _status_count(status: str) -> int:
    """The row count in a command tag: ``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class _OnDriver:
    """What the :class:`Tx` on a driver's own connection share: statements compiled once
    (``statements``), each run when it is executed."""

    dialect_name: str

    def __init__(self, connection: Any, statements: StatementCache) -> None:
        self.connection = connection
        self.statements = statements
        self.info: dict[str, Any] = {}

    async def flush(self) -> None:
        """Nothing is pending: every statement ran when it was executed."""


class DriverTx(_OnDriver):
    """A :class:`Tx` on an asyncpg connection (inside an asyncpg transaction, unless the
    unit is an autocommit one)."""

    dialect_name = "postgresql"

    async def execute(self, statement: Executable, params: Params = None) -> Rows:
        many, rows_params = _rows_params(params)
        compiled = self.statements.get(statement, rows_params[0])
        try:
            if many:
                args = [compiled_args(compiled, one) for one in rows_params]
                await self.connection.executemany(compiled.sql, args)
                return DriverResult([], len(args))
            args = compiled_args(compiled, rows_params[0])
            if not compiled.returns_rows:
                status = await self.connection.execute(compiled.sql, *args)
                return DriverResult([], _status_count(status))
            records = await self.connection.fetch(compiled.sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            # What a session would raise, so callers catch one exception on both paths.
            raise IntegrityError(compiled.sql, rows_params[0], exc) from exc
        return DriverResult(_rows(compiled, records), len(records))


class SQLiteTx(_OnDriver):
    """A :class:`Tx` on a ``sqlite3`` connection inside a transaction, run on the calling
    thread: a statement is the driver's work alone, microseconds with no fsync (WAL with
    ``synchronous=NORMAL``), so the event loop does it without handing it to a thread."""

    dialect_name = "sqlite"
    connection: sqlite3.Connection

    async def execute(self, statement: Executable, params: Params = None) -> Rows:
        many, rows_params = _rows_params(params)
        compiled = self.statements.get(statement, rows_params[0])
        try:
            if many:
                args = [compiled_args(compiled, one) for one in rows_params]
                return DriverResult([], self.connection.executemany(compiled.sql, args).rowcount)
            cursor = self.connection.execute(compiled.sql, compiled_args(compiled, rows_params[0]))
            if cursor.description is None:
                return DriverResult([], cursor.rowcount)
            records = cursor.fetchall()
            names = tuple(column[0] for column in cursor.description)
        except sqlite3.Error as exc:
            # What a session would raise (IntegrityError, OperationalError, ...).
            raise DBAPIError.instance(compiled.sql, rows_params[0], exc, sqlite3.Error) from exc
        return DriverResult(_rows(compiled, records, names), len(records))


class SQLiteWriter:
    """One ``sqlite3`` connection for the short write units of the hot path, run on the
    event loop's thread.

    SQLite has one writer at a time. Units queue for this connection in the order they
    come (a unit that awaits something real keeps the next waiting); the one at the head
    tries for SQLite's write lock without waiting (``busy_timeout`` 0) and, while another
    connection holds it (a session's in aiosqlite's thread, another process's), sleeps a
    moment on the loop and tries again, as SQLite's own busy handler would in a thread.
    The loop never blocks on the lock, only on the statements themselves: microseconds
    each, with no fsync at commit (WAL with ``synchronous=NORMAL``). After
    ``lock_timeout`` seconds of waiting in all, a unit fails as a session would.

    This connection does not checkpoint the WAL when it commits (that copies pages into
    the database file and flushes it to disk, milliseconds on the loop); every
    ``checkpoint_every`` commits a passive checkpoint runs in a thread instead.
    """

    def __init__(
        self, path: str, *, lock_timeout: float = 30.0, checkpoint_every: int = 500
    ) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.checkpoint_every = checkpoint_every
        self._connection: sqlite3.Connection | None = None
        self._turns: asyncio.Lock | None = None
        self._turns_loop: asyncio.AbstractEventLoop | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=0",
            "wal_autocheckpoint=0",
        ):
            connection.execute(f"PRAGMA {pragma}")
        return connection

    @asynccontextmanager
    async def unit(self, statements: StatementCache) -> AsyncIterator[SQLiteTx]:
        """A transaction holding the write lock, committed when the block ends without an
        error and rolled back when it raises."""
        deadline = time.monotonic() + self.lock_timeout
        turn = self._turn()
        # No timer on the wait for a turn: the units ahead came earlier, so each gives up
        # by a deadline before this one's, and this one then tries once and gives up too.
        await turn.acquire()
        try:
            connection = await self._begin(deadline)
        except BaseException:
            turn.release()
            raise
        try:
            yield SQLiteTx(connection, statements)
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise DBAPIError.instance("COMMIT", None, exc, sqlite3.Error) from exc
        finally:
            try:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            except sqlite3.Error:
                # The unit's own error is on its way up. A connection that cannot roll back
                # may still hold the write lock: closing it lets the lock go, and the next
                # unit opens a new one.
                log.exception("rolling back a SQLite unit failed; reconnecting")
                self._discard(connection)
            finally:
                turn.release()
        self._commits += 1
        if self._commits >= self.checkpoint_every:
            self._commits = 0
            self._start_checkpoint()

    def _discard(self, connection: sqlite3.Connection) -> None:
        if self._connection is connection:
            self._connection = None
        with contextlib.suppress(sqlite3.Error):
            connection.close()

    def _turn(self) -> asyncio.Lock:
        """The units' queue for this connection, first come first served: only the unit
        at its head tries for SQLite's lock. One per event loop (a lock belongs to one)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns_loop is not loop:
            self._turns, self._turns_loop = asyncio.Lock(), loop
        return self._turns

    async def _begin(self, deadline: float) -> sqlite3.Connection:
        """This connection, in a transaction that holds the write lock."""
        if self._connection is None:
            self._connection = self._connect()
        delay = 0.0005
        while True:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise DBAPIError.instance("BEGIN", None, exc, sqlite3.Error) from exc
            else:
                return self._connection
            if time.monotonic() >= deadline:
                raise _locked()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _start_checkpoint(self) -> None:
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self.checkpoint))
            self._checkpoint.add_done_callback(_log_checkpoint)

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting for anyone
        (PASSIVE), on a connection of its own: for a worker thread."""
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    async def close(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            await asyncio.wait([self._checkpoint])
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _locked() -> Exception:
    """What a session says when SQLite's write lock stayed taken for its whole timeout."""
    return DBAPIError.instance(
        "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"), sqlite3.Error
    )


def _log_checkpoint(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("checkpointing the SQLite WAL failed", exc_info=done.exception())


def _rows_params(params: Params) -> tuple[bool, Sequence[Mapping[str, Any]]]:
    """Whether ``params`` are several rows' (executemany), and the rows' parameters."""
    many = isinstance(params, Sequence) and not isinstance(params, Mapping)
    return many, (params if many else [params or {}])  # type: ignore[list-item,return-value]


def compiled_args(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    values = compiled.compiled.construct_params(params)
    return [
        value if process is None else process(value)
        for value, process in zip(
            (values[name] for name in compiled.names), compiled.processors, strict=True
        )
    ]


def _rows(compiled: _Compiled, records: list[Any], names: tuple[str, ...] = ()) -> list[Any]:
    """The records as rows; ``names`` are the columns' when the record does not carry
    them (``sqlite3``)."""
    if not records:
        return []
    row_type: Any = compiled.row_type
    if row_type is None:  # a text() statement: names from the result
        row_type = _row_type(names or tuple(records[0].keys()))
    processors = compiled.row_processors
    if processors is None or not any(processors):
        return [row_type(*record) for record in records]
    return [
        row_type(
            *(
                value if process is None else process(value)
                for value, process in zip(record, processors, strict=True)
            )
        )
        for record in records
    ]


class StatementCache:
    """Statements compiled for PostgreSQL once, with their parameters' and columns'
    conversions; keyed by the statement object (the hot path's are built once)."""

    def __init__(self, dialect: Dialect, size: int = 512) -> None:
        self.dialect = dialect
        self._cache: LRUCache[tuple[int, frozenset[str] | None], _Compiled] = LRUCache(size)

    def get(self, statement: Executable, params: Mapping[str, Any]) -> _Compiled:
        # An INSERT renders the columns it is given: those are part of its key.
        columns = frozenset(params) if isinstance(statement, Insert) else None
        key = (id(statement), columns)
        found = self._cache.get(key)
        if found is None or found.statement is not statement:
            found = self._compile(statement, columns)
            self._cache[key] = found
        return found

    def _compile(self, statement: Executable, columns: frozenset[str] | None) -> _Compiled:
        dialect = self.dialect
        compiled: Any = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect,
            column_keys=sorted(columns) if columns is not None else None,
            compile_kwargs={"render_postcompile": True},
        )
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError(
                "a statement run on the driver must be given every column it writes "
                "(no Python-side defaults): " + compiled.string
            )
        names = tuple(compiled.positiontup or ())
        processors = tuple(_bind_processor(compiled, name, dialect) for name in names)
        columns_out = list(getattr(statement, "exported_columns", None) or ())
        returns_rows = bool(columns_out) or compiled.string.lstrip().upper().startswith(
            ("SELECT", "WITH")
        )
        row_type: Any = None
        row_processors = None
        if columns_out:
            keys = [getattr(column, "key", None) or f"c{i}" for i, column in enumerate(columns_out)]
            row_type = _row_type(tuple(keys))
            row_processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns_out
            )
        return _Compiled(
            statement,
            compiled.string,
            names,
            processors,
            compiled,
            returns_rows,
            row_type,
            row_processors,
        )


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    """A row class with these column names (read as ``row.name``, ``row[0]``, ``row._asdict()``)."""
    return namedtuple("Row", names, rename=True)


def _bind_processor(compiled: Any, name: str, dialect: Dialect) -> Any:
    bind = compiled.binds.get(name)
    if bind is None:  # one element of an expanded IN list: ``<name>_<n>``
        bind = compiled.binds[name.rsplit("_", 1)[0]]
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


@asynccontextmanager
async def driver_transaction(
    engine: AsyncEngine, cache: StatementCache, *, autocommit: bool = False
) -> AsyncIterator[DriverTx]:
    """A transaction on one of the engine's pooled connections, run on its driver; with
    ``autocommit``, no transaction: each statement commits on its own (no ``BEGIN`` and
    ``COMMIT`` round trips, for units whose writes are one statement).

    The connection goes back to the pool as SQLAlchemy left it: no transaction of
    SQLAlchemy's is open on it. One that broke is discarded, not returned."""
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        driver: Any = pooled.driver_connection
        try:
            if autocommit:
                yield DriverTx(driver, cache)
            else:
                async with driver.transaction():
                    yield DriverTx(driver, cache)
        except BaseException:
            if driver.is_closed():
                await connection.invalidate()
            raise
