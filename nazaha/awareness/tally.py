"""Counts kept in the bot's memory and written in batches: survey answers, campaign opens
and quiz votes.

Why: a count written at the moment of an answer, an open or a vote sits next to that
moment's other writes (the marker of the account that answered a survey, a new account's
preferences row) in the SQLite WAL, and a row created by the first answer to an option
records, by its place, the order of first answers. Together they told who chose what
(docs/security.md, "Awareness"). A :class:`Tally` keeps increments in memory and writes them
only once at least ``min_batch`` are waiting in a group, in ONE transaction, key by key in
sorted order (never in the order they came), as ``stored = stored + n`` on rows that exist
before anything is counted (created in a fixed order by the console or by the writer, never
by an answer). Whoever reads the database or its WAL learns at most "these answers, at
least ``min_batch`` of them, came in some order since the last batch".

Groups. The threshold applies to each group (``group(key)``) on its own: a survey is a
group, because its "already answered" markers name it (a batch with one answer to survey B
and nine to A would tell B's answer to whoever pairs it with B's one marker); campaign opens
are one group, quiz votes another.

When. :meth:`add` writes at once if ``flush_on_add`` and the key's group has reached
``min_batch``; :meth:`flush` (the bot calls it every minute) writes every group that has.
Campaign opens are written only by the periodic flush: written right after an open, a batch
would be followed in the WAL by the preferences row of the account that opened the link.

Shutdown (:meth:`close`): groups with ``min_batch`` or more waiting are written, smaller
ones are dropped (privacy first: a smaller batch would tie its few answers to the markers
written since the last one). A restart therefore loses at most ``min_batch - 1`` answers per
survey, opens and quiz votes; a crash loses everything waiting.

Nothing here logs a key or a count: a failed write logs its exception type only, and the
increments stay waiting for the next flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.schema import Table

from nazaha.storage.database import dialect_insert, write_transaction

__all__ = ["DEFAULT_MIN_BATCH", "Batch", "Tally", "add_counts", "ensure_rows"]

log = logging.getLogger(__name__)

DEFAULT_MIN_BATCH = 10

K = TypeVar("K", bound=tuple)
Batch = Sequence[tuple[Any, int]]
Write = Callable[[AsyncSession, Batch], Awaitable[None]]


class Tally(Generic[K]):
    """Increments per key (a tuple of sortable values, e.g. ``(survey id, option)``),
    written by ``write(session, batch)`` (``batch``: ``[(key, n), ...]`` sorted by key,
    every ``n`` > 0) inside a write transaction of its own.

    ``min_batch`` (>= 1): the least a group must have waiting to be written. Safe to use
    from many tasks of one event loop: :meth:`add` only touches memory (and may await a
    flush); flushes run one at a time."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        write: Write,
        *,
        min_batch: int = DEFAULT_MIN_BATCH,
        group: Callable[[K], Hashable] = lambda key: None,
        flush_on_add: bool = True,
        name: str = "counts",
    ) -> None:
        if min_batch < 1:
            raise ValueError("min_batch must be at least 1")
        self._sessionmaker = sessionmaker
        self._write = write
        self.min_batch = min_batch
        self._group = group
        self._flush_on_add = flush_on_add
        self.name = name  # for logs: "survey answers", never a key
        self._pending: dict[K, int] = {}
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[int] | None = None

    @property
    def pending(self) -> int:
        """Increments waiting, over every key."""
        return sum(self._pending.values())

    def _totals(self) -> dict[Hashable, int]:
        totals: dict[Hashable, int] = {}
        for key, n in self._pending.items():
            group = self._group(key)
            totals[group] = totals.get(group, 0) + n
        return totals

    def _due(self) -> set[Hashable]:
        return {group for group, n in self._totals().items() if n >= self.min_batch}

    async def add(self, key: K, n: int = 1) -> None:
        """Count ``n`` (> 0) more for ``key``; write at once if that makes its group due
        (``flush_on_add``). A failed write is logged and retried by the next flush: the
        caller's update carries on."""
        await self.add_many([(key, n)])

    async def add_many(self, increments: Sequence[tuple[K, int]]) -> None:
        """:meth:`add` for several keys at once (checked for a flush once, after all)."""
        groups = set()
        for key, n in increments:
            if n > 0:
                self._pending[key] = self._pending.get(key, 0) + n
                groups.add(self._group(key))
        if self._flush_on_add and groups & self._due():
            try:
                await self.flush()
            except Exception as exc:
                log.warning("%s not written yet (%s): kept for the next flush", self.name, type(exc).__name__)

    async def flush(self) -> int:
        """Write every group that has ``min_batch`` or more waiting, in one transaction;
        returns how many increments were written (0: nothing was due). On an error the
        increments stay waiting and the error propagates. Cancelling the caller does not
        cancel a transaction under way (it finishes, or puts its batch back)."""
        async with self._lock:
            due = self._due()
            if not due:
                return 0
            batch = sorted((key, n) for key, n in self._pending.items() if self._group(key) in due)
            for key, _ in batch:
                del self._pending[key]
            self._writing = asyncio.ensure_future(self._write_batch(batch))
            self._writing.add_done_callback(_retrieve)
            return await asyncio.shield(self._writing)

    async def _write_batch(self, batch: list[tuple[K, int]]) -> int:
        try:
            async with write_transaction(self._sessionmaker) as session:
                await self._write(session, batch)
        except BaseException:
            for key, n in batch:  # back to waiting: counted later, never twice
                self._pending[key] = self._pending.get(key, 0) + n
            raise
        return sum(n for _, n in batch)

    async def close(self) -> int:
        """At shutdown: write the groups that are due, drop the rest (see the module's
        docstring). Returns how many increments were dropped."""
        if self._writing is not None and not self._writing.done():
            await asyncio.wait([self._writing])
        try:
            await self.flush()
        except Exception as exc:
            log.warning("%s not written at shutdown (%s)", self.name, type(exc).__name__)
        async with self._lock:
            dropped = self.pending
            self._pending.clear()
        return dropped


def _retrieve(task: asyncio.Future) -> None:
    """Mark a failed write's exception as seen (its caller, if still waiting, gets it)."""
    if not task.cancelled():
        task.exception()


async def ensure_rows(session: AsyncSession, table: Table, key_names: Sequence[str], keys: Sequence[tuple]) -> None:
    """Create the count rows of ``keys`` (values of the ``key_names`` columns of ``table``)
    that do not exist yet, at 0 and in the order given: the caller's fixed order (options,
    codes), never the order of answers."""
    if not keys:
        return
    columns = [table.c[name] for name in key_names]
    firsts = sorted({key[0] for key in keys})
    existing = {
        tuple(row)
        for row in (await session.execute(select(*columns).where(columns[0].in_(firsts)))).all()
    }
    missing = [key for key in keys if tuple(key) not in existing]
    if not missing:
        return
    insert = dialect_insert(session)(table).on_conflict_do_nothing(index_elements=list(key_names))
    for key in missing:  # one by one: the rows land in exactly this order
        await session.execute(insert.values(dict(zip(key_names, key))))


async def add_counts(
    session: AsyncSession, table: Table, key_names: Sequence[str], stored_name: str, batch: Batch
) -> None:
    """``stored = stored + n`` for each ``(key, n)`` of ``batch``, in its (sorted) order, on
    rows :func:`ensure_rows` made (a key without a row adds nothing). The stored value keeps
    its size (:data:`~nazaha.storage.awareness_models.COUNT_BIAS`): the row is rewritten in
    place."""
    if not batch:
        return
    stored = table.c[stored_name]
    statement = (
        update(table)
        .where(*(table.c[name] == bindparam(f"k{i}") for i, name in enumerate(key_names)))
        .values({stored_name: stored + bindparam("n", type_=stored.type)})
    )
    await session.execute(
        statement, [{**{f"k{i}": value for i, value in enumerate(key)}, "n": n} for key, n in batch]
    )
