"""Report-side writes, in transactions of their own: never in a commit with an account's row.

A report, a reporter's follow-up message or file, a notification link or its removal: what
belongs to a case is written here, never in the update's unit of work (which holds only rows
keyed by a pseudonym). Otherwise one commit (one WAL frame set in SQLite, one ``xmin`` in
PostgreSQL) would tie the report to the account whose row changed with it.

Writes wait a random moment (up to ``max_delay`` seconds) so that those ready together share a
transaction, applied in random order, each in its own SAVEPOINT (one failing write does not
undo the others). The caller awaits its own write's commit before telling the user anything
(a receipt is shown only once its report is stored).

The update id of the update that asked for a write is claimed in the same transaction, so a
redelivered "Send" stores nothing twice (:class:`DuplicateUpdate`); the claim links to no
account.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.database import write_transaction
from nazaha.storage.models import ProcessedUpdate
from nazaha.storage.unit_of_work import DuplicateUpdate

log = logging.getLogger(__name__)

WriteOp = Callable[[AsyncSession], Awaitable[None]]

# Claiming an update id: a plain INSERT built once (the primary key refuses a second claim).
CLAIM: Final = insert(ProcessedUpdate.__table__)


def hour_of(moment: dt.datetime) -> dt.datetime:
    """``moment`` rounded down to the hour (the finest time the bot host keeps)."""
    return moment.replace(minute=0, second=0, microsecond=0)


class ReportBatch:
    """The report-side writes of one update: storage functions queue into it with
    :meth:`add` (the same interface as a unit of work), then :meth:`ReportWriter.commit`."""

    def __init__(self, bot_id: int | None = None, update_id: int | None = None) -> None:
        if update_id is not None and bot_id is None:
            raise ValueError("an update id needs the bot id it belongs to")
        self.bot_id = bot_id
        self.update_id = update_id
        self.ops: list[WriteOp] = []

    def add(self, op: WriteOp) -> None:
        self.ops.append(op)

    def __len__(self) -> int:
        return len(self.ops)


@dataclasses.dataclass
class _Job:
    batch: ReportBatch
    done: asyncio.Future[None]


class ReportWriter:
    """Writes :class:`ReportBatch` es a moment later, together and in random order.

    ``max_delay`` (seconds): the longest a write waits for company; 0 writes at once (tests
    of other things). ``rng`` is injectable so tests can fix the order. ``after_write`` is
    called after each committed transaction (the bot truncates SQLite's WAL soon after).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_delay: float = 1.0,
        rng: random.Random | None = None,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        if max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        self._sessionmaker = sessionmaker
        self._max_delay = max_delay
        self._rng = rng or random.SystemRandom()
        self._pending: list[_Job] = []
        self._drain: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by flush(): write now, no more waiting
        self._after_write = after_write

    async def commit(self, batch: ReportBatch) -> None:
        """Write ``batch`` and return once it is committed.

        Raises :class:`DuplicateUpdate` if its update id was already claimed (nothing of it
        was written), or the error its own writes raised (the others still commit).
        """
        if not batch.ops:
            return
        job = _Job(batch, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_later())
        await asyncio.shield(job.done)

    async def flush(self) -> None:
        """Write whatever is waiting now (shutdown): a batch already being written is
        finished, never cancelled."""
        self._hurry.set()
        if self._drain is not None:
            await asyncio.shield(self._drain)
        while self._pending:
            await self._write_pending()

    async def _drain_later(self) -> None:
        if self._max_delay and not self._hurry.is_set():
            try:
                await asyncio.wait_for(self._hurry.wait(), self._rng.uniform(0, self._max_delay))
            except asyncio.TimeoutError:
                pass
        while self._pending:
            await self._write_pending()

    async def _write_pending(self) -> None:
        jobs, self._pending = self._pending, []
        self._rng.shuffle(jobs)
        outcomes: list[tuple[_Job, BaseException | None]] = []
        try:
            async with write_transaction(self._sessionmaker) as session:
                for job in jobs:
                    try:
                        async with session.begin_nested():
                            await self._apply(session, job.batch)
                        outcomes.append((job, None))
                    except Exception as exc:  # this job only; the savepoint rolled it back
                        outcomes.append((job, exc))
        except BaseException as exc:  # the transaction itself failed: nothing was written
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("write cancelled"))
            if not isinstance(exc, Exception):
                raise
            log.warning("a report-side write transaction failed (%s)", type(exc).__name__)
            return
        if self._after_write is not None:
            self._after_write()
        for job, error in outcomes:
            if job.done.done():
                continue
            if error is None:
                job.done.set_result(None)
            else:
                job.done.set_exception(error)

    @staticmethod
    async def _apply(session: AsyncSession, batch: ReportBatch) -> None:
        if batch.update_id is not None:
            try:
                async with session.begin_nested():
                    await session.execute(
                        CLAIM,
                        {
                            "bot_id": batch.bot_id,
                            "update_id": batch.update_id,
                            "claimed_at": hour_of(dt.datetime.now(dt.timezone.utc)),
                        },
                    )
            except IntegrityError:
                raise DuplicateUpdate("this update was already handled") from None
        for op in batch.ops:
            await op(session)


__all__ = ["CLAIM", "ReportBatch", "ReportWriter", "hour_of"]
