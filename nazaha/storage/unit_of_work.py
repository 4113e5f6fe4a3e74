"""One update, one write transaction (see docs/architecture.md, "the unit of work").

During the *decide* phase code reads through :meth:`UnitOfWork.read` and queues writes with
:meth:`UnitOfWork.add`, in-memory changes with :meth:`UnitOfWork.on_commit` and outgoing
Telegram calls with :meth:`UnitOfWork.after_commit`. :meth:`UnitOfWork.commit` then applies
every queued write in one short transaction, and only after it committed applies the
in-memory changes and runs the queued actions. Nothing slow (Argon2id, network) ever happens
while the write transaction is open.

An update's unit of work holds only rows keyed by a pseudonym (preferences). Whatever belongs
to a report goes through :mod:`nazaha.storage.report_writes` in transactions of its own, which
also claim the update id there: no commit ever holds both (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import datetime as dt
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

from sqlalchemy import delete
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.database import StatementOp, engine_of, write_lock_for, write_session
from nazaha.storage.group_commit import committer_for
from nazaha.storage.models import ProcessedUpdate

WriteOp = Callable[[AsyncSession], Awaitable[None]]
AfterCommit = Callable[[], Awaitable[None]]
OnCommit = Callable[[], "Awaitable[None] | None"]


class DuplicateUpdate(Exception):
    """This update id was already handled: its writes were rolled back, its replies dropped."""


class _EngineLock:
    """Marker default: use the SQLite engine's own writer lock."""


ENGINE_LOCK: Final = _EngineLock()


class UnitOfWork:
    """Queued writes and after-commit actions of one update.

    ``write_lock`` defaults to the engine's lock (:func:`write_lock_for`); pass ``None`` to
    rely on SQLite's busy timeout alone.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        bot_id: int | None = None,
        update_id: int | None = None,
        write_lock: asyncio.Lock | None | _EngineLock = ENGINE_LOCK,
    ) -> None:
        if update_id is not None and bot_id is None:
            raise ValueError("an update id needs the bot id it belongs to")
        self.sessionmaker = sessionmaker
        self.bot_id = bot_id
        self.update_id = update_id
        if isinstance(write_lock, _EngineLock):
            write_lock = write_lock_for(engine_of(sessionmaker))
        self._write_lock = write_lock
        self._ops: list[WriteOp] = []
        self._on_commit: list[OnCommit] = []
        self._after: list[AfterCommit] = []
        self._read_session: AsyncSession | None = None
        self._overlays: dict[str, dict[Any, Any]] = {}
        self._finished = False

    # -- decide phase ---------------------------------------------------------------

    async def read(self) -> AsyncSession:
        """A session for reads during the decide phase (closed by commit() / close())."""
        self._check_open()
        if self._read_session is None:
            self._read_session = self.sessionmaker()
        return self._read_session

    def add(self, op: WriteOp) -> None:
        """Queue a write; it runs inside the update's write transaction, in order."""
        self._check_open()
        self._ops.append(op)

    def on_commit(self, change: OnCommit) -> None:
        """Queue an in-memory change (e.g. the conversation state) to apply right after a
        successful commit, before the after-commit actions; dropped if nothing commits.
        A change may be a coroutine function (the conversation state in Redis): it is
        awaited in turn, and its failure propagates like a failed commit's."""
        self._check_open()
        self._on_commit.append(change)

    def after_commit(self, action: AfterCommit) -> None:
        """Queue an action (e.g. a Telegram call) to run after a successful commit."""
        self._check_open()
        self._after.append(action)

    def overlay(self, namespace: str) -> dict[Any, Any]:
        """Per-update scratch space where stores keep their queued, not yet committed
        values so that later reads in the same update see them (e.g. FSM, preferences)."""
        return self._overlays.setdefault(namespace, {})

    @property
    def fsm_overlay(self) -> dict[Any, Any]:
        return self.overlay("fsm")

    @property
    def is_open(self) -> bool:
        """False once committed or closed: stores then write directly instead."""
        return not self._finished

    @property
    def pending_writes(self) -> int:
        return len(self._ops)

    # -- commit phase ---------------------------------------------------------------

    async def commit(self) -> None:
        """Apply all queued writes atomically, then the in-memory changes, then run the
        after-commit actions in order (the first failing action stops the rest and its
        exception propagates; the data stays committed)."""
        self._check_open()
        self._finished = True
        await self._close_read_session()
        ops, self._ops = self._ops, []
        changes, self._on_commit = self._on_commit, []
        after, self._after = self._after, []
        if ops:
            await self._write(ops)
        for change in changes:
            result = change()
            if inspect.isawaitable(result):
                await result
        for action in after:
            await action()

    async def close(self) -> None:
        """Discard everything not committed (idempotent)."""
        self._finished = True
        self._ops.clear()
        self._on_commit.clear()
        self._after.clear()
        await self._close_read_session()

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _write(self, ops: list[WriteOp]) -> None:
        if self._write_lock is not None:
            # SQLite: share the transaction with other updates ready at the same time; writes
            # that are plain statements can run on the hot-path connection (sqlite_lane.py).
            sync_job = None
            if all(isinstance(op, StatementOp) for op in ops):
                sync_job = partial(self._apply_sync, ops=ops)
            await committer_for(self._write_lock).write(
                self.sessionmaker, partial(self._apply, ops=ops), sync_job
            )
            return
        async with write_session(self.sessionmaker) as session:
            await self._apply(session, ops)

    async def _apply(self, session: AsyncSession, ops: list[WriteOp]) -> None:
        """Run the queued writes inside ``session``'s transaction."""
        for op in ops:
            await op(session)

    def _apply_sync(self, connection: Connection, ops: list[WriteOp]) -> None:
        """The same as :meth:`_apply` on a synchronous connection (statement ops only)."""
        for op in ops:
            assert isinstance(op, StatementOp)
            op.run_sync(connection)

    async def _close_read_session(self) -> None:
        session, self._read_session = self._read_session, None
        if session is not None:
            await session.close()

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("this unit of work was already committed or closed")


current_uow: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "nazaha_current_uow", default=None
)


def active_uow() -> UnitOfWork | None:
    """The current update's unit of work, if one is set and still open."""
    uow = current_uow.get()
    return uow if uow is not None and uow.is_open else None


async def purge_processed_updates(
    sessionmaker: async_sessionmaker[AsyncSession], older_than_hours: int = 1
) -> int:
    """Forget claimed update ids older than ``older_than_hours`` (Telegram retries a webhook
    delivery for minutes, and a restarted bot has no draft left to submit twice). Returns the
    number of rows deleted."""
    from nazaha.storage.database import write_transaction

    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=older_than_hours)
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            delete(ProcessedUpdate).where(ProcessedUpdate.claimed_at < cutoff)
        )
    return int(result.rowcount or 0)
