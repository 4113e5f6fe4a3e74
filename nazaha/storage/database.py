"""Engine, sessions and start-up checks for SQLite (default) and PostgreSQL.

SQLite allows one writer at a time. Two things keep writers from failing with "database is
locked": every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock up
front, so it waits on ``busy_timeout`` instead of failing on a lock upgrade), and writers in
one process queue on one :class:`asyncio.Lock` per engine (:func:`write_lock_for`), so they
do not even contend for the file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from nazaha.storage.sqlite_lane import SqliteLane

# Execution option read by the "begin" listener: the kind of BEGIN to emit on SQLite.
SQLITE_BEGIN_OPTION = "nazaha_sqlite_begin"

# (pragma, value to set, value PRAGMA reports back when in effect)
SQLITE_PRAGMAS: tuple[tuple[str, str, object], ...] = (
    ("journal_mode", "WAL", "wal"),
    ("synchronous", "FULL", 2),
    ("foreign_keys", "ON", 1),
    ("secure_delete", "ON", 1),
    ("busy_timeout", "10000", 10000),
    # After a checkpoint resets the WAL, truncate it to nothing: old row versions do not
    # linger in the -wal file (docs/security.md).
    ("journal_size_limit", "0", 0),
)

_write_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Build the async engine; on SQLite, set the pragmas and take over BEGIN. Errors never
    carry SQL parameters (``hide_parameters``): they may hold sealed values or pseudonyms."""
    kwargs.setdefault("hide_parameters", True)
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        return create_async_engine(sa_url, **kwargs)

    database = sa_url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(sa_url, **kwargs)
    _prepare_sqlite(engine.sync_engine)
    return engine


def _prepare_sqlite(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling emits BEGIN late (not for SELECT or DDL)
        # and only as a deferred BEGIN; switch it off and emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for name, value, _expected in SQLITE_PRAGMAS:
                cursor.execute(f"PRAGMA {name}={value}")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


@dataclass(frozen=True)
class SqliteLanes:
    """The two connections of the hot path (storage/sqlite_lane.py) of one SQLite file."""

    reader: SqliteLane
    writer: SqliteLane


_lanes: weakref.WeakKeyDictionary[Any, SqliteLanes] = weakref.WeakKeyDictionary()


def sqlite_lanes(engine: AsyncEngine) -> SqliteLanes | None:
    """The engine's lanes (made on first use, closed with ``engine.dispose()``); None for
    PostgreSQL and for in-memory SQLite databases, which one connection cannot share."""
    if not is_sqlite(engine):
        return None
    key = engine.sync_engine
    lanes = _lanes.get(key)
    if lanes is not None:
        return lanes
    database = engine.url.database
    if not database or database == ":memory:" or "mode=memory" in str(engine.url):
        return None
    sync_engine = create_sync_engine(
        engine.url.set(drivername="sqlite"), poolclass=NullPool, hide_parameters=True
    )
    _prepare_sqlite(sync_engine)
    lanes = _lanes[key] = SqliteLanes(
        reader=SqliteLane(sync_engine, "nazaha-db-read"),
        writer=SqliteLane(sync_engine, "nazaha-db-write", **{SQLITE_BEGIN_OPTION: "IMMEDIATE"}),
    )

    @event.listens_for(key, "engine_disposed")
    def _close_lanes(_engine: Any) -> None:
        closed = _lanes.pop(key, None)
        if closed is not None:
            closed.reader.close()
            closed.writer.close()

    return lanes


async def checkpoint_wal(engine: AsyncEngine, schema: str = "main") -> bool:
    """SQLite: copy the WAL into the database and truncate it to zero bytes, so that old
    versions of rows written since the last checkpoint are gone from the -wal file (freed
    pages of the database are zeroed by ``secure_delete``). Returns True if the whole WAL was
    checkpointed (False if a reader kept part of it; the next run catches up). ``schema``
    names an attached database (the console's store is ``"console"``). PostgreSQL:
    nothing to do here (VACUUM, see docs/security.md)."""
    if not is_sqlite(engine):
        return True
    lock = write_lock_for(engine)
    assert lock is not None
    async with lock:
        async with engine.connect() as conn:
            busy, _log, _checkpointed = (
                await conn.exec_driver_sql(f"PRAGMA {schema}.wal_checkpoint(TRUNCATE)")
            ).one()
    return not busy


class WalScrubber:
    """Keeps SQLite's WAL short-lived, so that it never holds an ordered history that ties
    an account's row to a report's (docs/security.md): :meth:`soon` checkpoints and
    truncates it a moment after a report-side write or a /wipe (several requests close
    together share one checkpoint); the bot also calls :func:`checkpoint_wal` at start-up
    and every minute. A no-op on PostgreSQL."""

    def __init__(self, engine: AsyncEngine, delay: float = 0.2) -> None:
        self._engine = engine
        self._delay = delay
        self._task: asyncio.Task[None] | None = None

    def soon(self) -> None:
        if not is_sqlite(self._engine) or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self._delay)
        try:
            await checkpoint_wal(self._engine)
        except Exception:  # the periodic checkpoint catches up
            logging.getLogger(__name__).warning("WAL checkpoint failed")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def write_lock_for(engine: AsyncEngine) -> asyncio.Lock | None:
    """The in-process writer lock of a SQLite engine (None for other databases)."""
    if not is_sqlite(engine):
        return None
    key = engine.sync_engine
    lock = _write_locks.get(key)
    if lock is None:
        lock = _write_locks[key] = asyncio.Lock()
    return lock


def engine_of(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the sessionmaker must be bound to an AsyncEngine")
    return bind


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a write transaction (BEGIN IMMEDIATE on SQLite)."""
    await session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})


@contextlib.asynccontextmanager
async def write_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    write_lock: asyncio.Lock | None = None,
) -> AsyncIterator[AsyncSession]:
    """A short write transaction outside a unit of work: commits on success.

    Without an explicit ``write_lock`` the engine's own lock is used (SQLite).
    """
    lock = write_lock if write_lock is not None else write_lock_for(engine_of(sessionmaker))
    async with contextlib.AsyncExitStack() as stack:
        if lock is not None:
            await stack.enter_async_context(lock)
        yield await stack.enter_async_context(write_session(sessionmaker))


@contextlib.asynccontextmanager
async def write_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction (BEGIN IMMEDIATE on SQLite) that commits on success
    and rolls back on any error. Takes no lock: callers that need one hold it already."""
    async with sessionmaker() as session:
        await begin_write(session)
        try:
            yield session
            await session.commit()
        except BaseException:
            if session.in_transaction():
                await session.rollback()
            raise


def dialect_insert(session: AsyncSession) -> Any:
    """The ``insert`` construct with ON CONFLICT support for the session's database."""
    return _insert_for(session.get_bind().dialect.name)


def _insert_for(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    return insert


@dataclass(frozen=True)
class StatementOp:
    """A queued write that is just a Core statement and its parameters, so that it can run
    on the async session or, on SQLite's hot path, on a lane's connection (sqlite_lane.py)."""

    statement: Any
    params: Mapping[str, Any]

    async def __call__(self, session: AsyncSession) -> None:
        await session.execute(self.statement, dict(self.params))

    def run_sync(self, connection: Connection) -> None:
        connection.execute(self.statement, dict(self.params))


_UPSERTS: dict[tuple[Any, ...], Any] = {}


def upsert_op(dialect: str, table: Any, values: Mapping[str, Any], key_columns: Iterable[str]) -> StatementOp:
    """INSERT ... ON CONFLICT (key) DO UPDATE, on SQLite and PostgreSQL (``dialect``).

    The statement is built once per table, column set and dialect and then executed with
    the values as parameters: building it anew for each call (``.values(...)``) cost more
    CPU than running it (docs/benchmarks.md).
    """
    keys = tuple(key_columns)
    cache_key = (dialect, table, tuple(values), keys)
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        statement = _UPSERTS[cache_key] = _upsert_statement(dialect, table, tuple(values), keys)
    return StatementOp(statement, dict(values))


def _upsert_statement(dialect: str, table: Any, columns: tuple[str, ...], keys: tuple[str, ...]) -> Any:
    statement = _insert_for(dialect)(table)
    updates = {name: statement.excluded[name] for name in columns if name not in keys}
    if updates:
        return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
    return statement.on_conflict_do_nothing(index_elements=list(keys))


async def check_database(engine: AsyncEngine) -> None:
    """Refuse to start on a misconfigured or unmigrated database."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from nazaha.storage.migrations import alembic_config

    async with engine.connect() as conn:
        if is_sqlite(engine):
            for name, _value, expected in SQLITE_PRAGMAS:
                actual = (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                if isinstance(actual, str):
                    actual = actual.lower()
                if actual != expected:
                    raise RuntimeError(
                        f"SQLite pragma {name} is {actual!r}, expected {expected!r}: "
                        "build the engine with nazaha.storage.database.create_engine"
                    )

        def current_heads(sync_conn: Connection) -> set[str]:
            return set(MigrationContext.configure(sync_conn).get_current_heads())

        current = await conn.run_sync(current_heads)

    script = ScriptDirectory.from_config(alembic_config())
    expected_heads = set(script.get_heads())
    if current != expected_heads:
        shown = ", ".join(sorted(current)) or "none"
        raise RuntimeError(
            f"the database schema is not up to date (revision {shown}, expected "
            f"{', '.join(sorted(expected_heads))}): run `nazaha init`"
        )
