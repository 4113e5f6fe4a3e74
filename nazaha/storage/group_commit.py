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

Units whose writes are plain statements (the dedup claim, FSM records, preferences: nearly
every update) are written on the engine's writer lane (sqlite_lane.py): the whole group in
one hop to that thread, each unit inside a SAVEPOINT so that a failing unit is rolled back
alone. Units with other writes (a submitted report) take the async session as above.

A caller that is cancelled while waiting does not withdraw its write: it is committed (or
fails) with its group, like an update that stopped right after its commit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.database import engine_of, sqlite_lanes, write_session
from nazaha.storage.sqlite_lane import SqliteLane

Job = Callable[[AsyncSession], Awaitable[None]]
SyncJob = Callable[[Connection], None]


@dataclass(frozen=True)
class _Entry:
    sessionmaker: async_sessionmaker[AsyncSession]
    job: Job
    sync_job: SyncJob | None
    future: asyncio.Future[None]

    def settle(self, error: BaseException | None = None) -> None:
        if self.future.done():  # the caller was cancelled
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


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

    async def write(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        job: Job,
        sync_job: SyncJob | None = None,
    ) -> None:
        """Run ``job`` inside a write transaction (maybe shared with others) and return once
        it is committed; raise what ``job`` raised if it failed (its writes rolled back).
        ``sync_job``, if given, does the same on a synchronous connection (the lane)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(sessionmaker, job, sync_job, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            async with self._lock:
                # Taken under the lock: everything that arrived while we waited joins in.
                group, self._pending = self._pending, []
                try:
                    lanes = sqlite_lanes(engine_of(group[0].sessionmaker))
                    in_lane = [e for e in group if lanes is not None and e.sync_job is not None]
                    in_session = [e for e in group if lanes is None or e.sync_job is None]
                    if in_lane:
                        assert lanes is not None
                        await self._write_in_lane(lanes.writer, in_lane)
                    if len(in_session) == 1 or (
                        in_session and not await self._write_together(in_session)
                    ):
                        for entry in in_session:
                            await self._write_alone(entry)
                except Exception as error:  # a bug here must not leave callers waiting
                    for entry in group:
                        entry.settle(error)
                except BaseException:  # cancelled (shutdown): so are the callers
                    for entry in group:
                        if not entry.future.done():
                            entry.future.cancel()
                    raise

    async def _write_in_lane(self, lane: SqliteLane, group: list[_Entry]) -> None:
        def work(connection: Connection) -> list[Exception | None]:
            outcomes: list[Exception | None] = []
            with connection.begin():  # BEGIN IMMEDIATE ... COMMIT (rolled back on error)
                for entry in group:
                    assert entry.sync_job is not None
                    savepoint = connection.begin_nested()
                    try:
                        entry.sync_job(connection)
                    except Exception as error:
                        savepoint.rollback()
                        outcomes.append(error)
                    else:
                        savepoint.commit()
                        outcomes.append(None)
            return outcomes

        try:
            outcomes = await lane.run(work)
        except Exception as error:  # the commit itself failed: nothing was stored
            for entry in group:
                entry.settle(error)
            return
        self.groups += 1
        self.jobs += sum(outcome is None for outcome in outcomes)
        for entry, outcome in zip(group, outcomes):
            entry.settle(outcome)

    async def _write_together(self, group: list[_Entry]) -> bool:
        try:
            async with write_session(group[0].sessionmaker) as session:
                for entry in group:
                    await entry.job(session)
        except Exception:
            return False
        self.groups += 1
        self.jobs += len(group)
        for entry in group:
            entry.settle()
        return True

    async def _write_alone(self, entry: _Entry) -> None:
        try:
            async with write_session(entry.sessionmaker) as session:
                await entry.job(session)
        except Exception as error:
            entry.settle(error)
            return
        self.groups += 1
        self.jobs += 1
        entry.settle()
