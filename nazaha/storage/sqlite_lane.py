"""A SQLite connection of its own, driven from one dedicated thread: the hot path's database.

Every update reads a few rows and writes a few (storage/update_rows.py, the FSM record, the
dedup claim). Through SQLAlchemy's asyncio layer each statement costs several round trips
between the event loop and aiosqlite's thread plus greenlet switches; under load that was
about 40 % of the bot's CPU, more than the statements themselves (docs/benchmarks.md).

A :class:`SqliteLane` runs a whole piece of database work (a read of several rows, or the
writes of a group of updates in one transaction) as plain synchronous SQLAlchemy Core on its
own connection, in one hop to its thread. The statements are the same Core objects the async
path executes, so types and SQL are identical; the connection has the same pragmas and
BEGIN handling (``database.create_engine``). Two lanes per SQLite file: one reads, one
writes (WAL lets them run side by side). PostgreSQL has no lanes: its driver is natively
asynchronous and the async path is used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")


class SqliteLane:
    def __init__(self, sync_engine: Engine, name: str, **execution_options: object) -> None:
        self._engine = sync_engine
        self._options = execution_options
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._connection: Connection | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in the lane's thread. ``work`` must leave no transaction
        open (use :func:`read` / :func:`write`)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[Connection], T]) -> T:
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(**self._options)
        return work(self._connection)

    def close(self) -> None:
        """Close the connection in its thread and let the thread end (does not wait)."""

        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            self._executor.submit(close_connection)
        except RuntimeError:  # already shut down
            return
        self._executor.shutdown(wait=False)


def read(work: Callable[[Connection], T]) -> Callable[[Connection], T]:
    """``work`` in a read transaction (one snapshot), always rolled back."""

    def run(connection: Connection) -> T:
        try:
            return work(connection)
        finally:
            connection.rollback()

    return run
