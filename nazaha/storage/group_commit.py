"""Group commit: the write transactions of concurrent updates share one SQLite transaction.

SQLite has one writer at a time and every commit ends with an fsync (``synchronous=FULL``).
With one transaction per update, writers queue on the engine's lock and each pays, while
holding it, for BEGIN IMMEDIATE, its statements, COMMIT with its fsync and the round trips
to the database thread between them. Under load that queue, not the CPU, limited how many
updates per second the bot could take.

A :class:`GroupCommitter` takes the writes of every unit of work that is ready to commit
while the previous group is being written, and writes them together: one BEGIN IMMEDIATE,
each unit's statements in arrival order, one COMMIT. Each unit still gets its own outcome:
if anything in a group fails (a duplicate update id, a constraint, a full disk), the group
is rolled back and its units are written again one by one, each in its own transaction, so
one unit's failure never loses another's writes and each caller sees its own error.

A caller that is cancelled while waiting does not withdraw its write: it is committed (or
fails) with its group, like an update that stopped right after its commit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.database import begin_write

Job = Callable[[AsyncSession], Awaitable[None]]
_Entry = tuple[async_sessionmaker[AsyncSession], Job, "asyncio.Future[None]"]

_committers: weakref.WeakKeyDictionary[asyncio.Lock, GroupCommitter] = weakref.WeakKeyDictionary()


def committer_for(write_lock: asyncio.Lock) -> GroupCommitter:
    """The group committer of the writers that share ``write_lock`` (one per SQLite engine)."""
    committer = _committers.get(write_lock)
    if committer is None:
        committer = _committers[write_lock] = GroupCommitter(write_lock)
    return committer


class GroupCommitter:
    def __init__(self, write_lock: asyncio.Lock) -> None:
        self._lock = write_lock
        self._pending: list[_Entry] = []
        self._drainer: asyncio.Task[None] | None = None
        self.groups = 0  # how many transactions were written (for tests and benchmarks)
        self.jobs = 0

    async def write(self, sessionmaker: async_sessionmaker[AsyncSession], job: Job) -> None:
        """Run ``job`` inside a write transaction (maybe shared with others) and return once
        it is committed; raise what ``job`` raised if it failed (its writes rolled back)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((sessionmaker, job, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            async with self._lock:
                # Taken under the lock: everything that arrived while we waited joins in.
                group, self._pending = self._pending, []
                try:
                    if len(group) == 1 or not await self._write_together(group):
                        for entry in group:
                            await self._write_alone(entry)
                except BaseException:
                    for _, _, future in group:
                        if not future.done():
                            future.cancel()
                    raise

    async def _write_together(self, group: list[_Entry]) -> bool:
        sessionmaker = group[0][0]
        async with sessionmaker() as session:
            await begin_write(session)
            try:
                for _, job, _ in group:
                    await job(session)
                await session.commit()
            except Exception:
                if session.in_transaction():
                    await session.rollback()
                return False
        self.groups += 1
        self.jobs += len(group)
        for _, _, future in group:
            if not future.done():
                future.set_result(None)
        return True

    async def _write_alone(self, entry: _Entry) -> None:
        sessionmaker, job, future = entry
        try:
            async with sessionmaker() as session:
                await begin_write(session)
                try:
                    await job(session)
                    await session.commit()
                except BaseException:
                    if session.in_transaction():
                        await session.rollback()
                    raise
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        self.groups += 1
        self.jobs += 1
        if not future.done():
            future.set_result(None)
