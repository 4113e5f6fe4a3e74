"""Long polling that confirms an update to Telegram only once it is settled.

aiogram's ``start_polling`` moves the getUpdates ``offset`` past every update it has handed
out, whether its processing has finished or not (``handle_as_tasks=True``, its default), so
a crash loses every update still in progress; ``handle_as_tasks=False`` handles one update at
a time, which would also hold an album's first file while the next files wait unfetched.

:class:`ConfirmingPoller` instead feeds each new update to an
:class:`~nazaha.bot.confirm.UpdateRunner` at once, and asks Telegram for updates from the
lowest one not yet settled (committed, or deliberately skipped: nazaha/bot/confirm.py). So
a crash can only make Telegram deliver again what was in progress or settled since the last
request, never drop it; the dedup claims make the replays harmless (a report is never stored
twice) and the drafts they would have continued were in memory.

* While updates are in progress, getUpdates is asked again (without waiting on Telegram)
  as soon as one settles or, when nothing new came, after a pause growing from
  ``idle_min`` to ``idle_max`` seconds; otherwise it long-polls for ``polling_timeout``.
* The answer repeats the updates still in progress or settled above the offset; only new
  ones are decoded (the session returns raw JSON) and fed. Telegram returns at most
  ``limit`` (100) updates from the offset: a slow update holds the updates more than 100
  behind it until it settles.
* An update handed back (failed before its commit) is fed again after a back-off (from
  ``retry_min`` doubling to ``retry_max`` seconds) until its retry window closes.
* An update that cannot be decoded is handed to ``undecodable`` and counts as settled.
* A failed getUpdates (5xx, network, 409 while another poller runs) is asked again after a
  back-off from ``error_min`` doubling to ``error_max`` seconds (at least ``retry_after``
  for a 429); nothing is confirmed meanwhile, so nothing is lost.
* :meth:`ConfirmingPoller.run` returns when ``stop`` is set: no new update is taken, those in
  progress get ``grace_seconds`` to finish, the rest are cut short, and a last getUpdates
  confirms everything settled (unless the last request already did).

Nothing of an update (id, kind, content) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import GetUpdates
from aiogram.types import Update

from nazaha.bot.confirm import Settlement, UpdateRunner, Verdict
from nazaha.bot.undecodable import decode_update, update_id_of

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 5  # seconds: the last getUpdates of a stop


@dataclass
class _Entry:
    update: Update
    settlement: Settlement
    failures: int = 0


class ConfirmingPoller:
    def __init__(
        self,
        runner: UpdateRunner,
        *,
        allowed_updates: list[str] | None = None,
        polling_timeout: int = 30,
        limit: int = 100,
        idle_min: float = 0.02,
        idle_max: float = 1.0,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        error_min: float = 1.0,
        error_max: float = 30.0,
        undecodable: Callable[[Any], None] | None = None,
    ) -> None:
        self.runner = runner
        self.bot = runner.bot
        self.allowed_updates = allowed_updates
        self.polling_timeout = polling_timeout
        self.limit = limit
        self.idle_min, self.idle_max = idle_min, idle_max
        self.retry_min, self.retry_max = retry_min, retry_max
        self.error_min, self.error_max = error_min, error_max
        self.undecodable = undecodable
        self._pending: dict[int, _Entry] = {}  # fed, not settled (or handed back)
        self._settled: set[int] = set()  # settled ids at or above the lowest pending one
        self._high: int | None = None  # the highest update id settled
        self._changed = asyncio.Event()  # an update settled
        self._stopping = False
        self._asked: int | None = None  # the offset of the last getUpdates sent

    # -- what to confirm -------------------------------------------------------------------

    @property
    def offset(self) -> int | None:
        """The getUpdates offset that confirms exactly the settled updates below the
        lowest unsettled one (None: nothing was seen yet)."""
        if self._pending:
            return min(self._pending)
        return None if self._high is None else self._high + 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _settle(self, update_id: int) -> None:
        self._pending.pop(update_id, None)
        self._high = update_id if self._high is None else max(self._high, update_id)
        offset = self.offset
        self._settled.add(update_id)
        if offset is not None:
            self._settled = {seen for seen in self._settled if seen >= offset}
        self._changed.set()

    def _seen(self, update_id: int) -> bool:
        """In progress or settled. Below the offset only settled ids can come back (the
        answer to a request sent before they settled)."""
        offset = self.offset
        return (
            update_id in self._pending
            or update_id in self._settled
            or (offset is not None and update_id < offset)
        )

    # -- feeding ---------------------------------------------------------------------------

    def take(self, raw_updates: list[Any]) -> int:
        """Feed the updates of a getUpdates answer not seen yet; returns how many."""
        fed = 0
        for raw in raw_updates:
            update_id = update_id_of(raw)
            if update_id is None or self._seen(update_id):
                continue
            update = decode_update(self.bot, raw)
            if update is None:
                if self.undecodable is not None:
                    self.undecodable(raw)
                else:
                    log.warning("an update that could not be decoded was skipped")
                self._settle(update_id)
                continue
            self._feed(_Entry(update, self.runner.feed(update)))
            fed += 1
        return fed

    def _feed(self, entry: _Entry) -> None:
        update_id = entry.update.update_id
        self._pending[update_id] = entry
        entry.settlement.add_callback(lambda verdict: self._settled_as(entry, verdict))

    def _settled_as(self, entry: _Entry, verdict: Verdict) -> None:
        update_id = entry.update.update_id
        if self._pending.get(update_id) is not entry:
            return
        if verdict is Verdict.CONFIRM:
            self._settle(update_id)
            return
        entry.failures += 1
        delay = min(self.retry_max, self.retry_min * 2 ** (entry.failures - 1))
        asyncio.get_running_loop().call_later(delay, self._retry, entry)

    def _retry(self, entry: _Entry) -> None:
        if self._stopping or self._pending.get(entry.update.update_id) is not entry:
            return  # stopping: it stays unconfirmed, Telegram delivers it after the restart
        entry.settlement = self.runner.feed(entry.update)
        entry.settlement.add_callback(lambda verdict: self._settled_as(entry, verdict))

    # -- the loop --------------------------------------------------------------------------

    async def fetch(self, timeout: int, limit: int | None = None, request_timeout: int | None = None) -> list[Any]:
        method = GetUpdates(
            offset=self.offset,
            limit=limit or self.limit,
            timeout=timeout,
            allowed_updates=self.allowed_updates,
        )
        session = self.bot.session
        if request_timeout is None and session.timeout:
            request_timeout = int(session.timeout + timeout)
        self._asked = method.offset
        return await session.get_updates_raw(self.bot, method, request_timeout)

    async def run(self, stop: asyncio.Event, *, grace_seconds: float) -> None:
        """Poll until ``stop`` is set, then stop as the module docstring says."""
        idle = self.idle_min
        error_delay = self.error_min
        try:
            while not stop.is_set():
                timeout = 0 if self._pending else self.polling_timeout
                self._changed.clear()
                try:
                    answer = await _until(stop, self.fetch(timeout))
                except Exception as exc:  # the type only: descriptions can quote content
                    log.warning("getUpdates failed (%s); retrying", type(exc).__name__)
                    delay = error_delay
                    if isinstance(exc, TelegramRetryAfter):  # 429: Telegram says how long
                        delay = max(delay, float(exc.retry_after))
                    await _wait(stop, delay)
                    error_delay = min(self.error_max, error_delay * 2)
                    continue
                if answer is None:
                    break  # stopping
                error_delay = self.error_min
                if self.take(answer):
                    idle = self.idle_min
                    continue
                if self._pending:
                    # Nothing new: ask again once an update settles, or after a pause.
                    await _wait(stop, idle, self._changed)
                    idle = min(self.idle_max, idle * 2)
        except asyncio.CancelledError:
            self._stopping = True
            await self.runner.drain(0)  # cancelled from outside: no grace
            raise
        finally:
            self._stopping = True
        await self.runner.drain(grace_seconds)
        await self.confirm_settled()

    async def confirm_settled(self) -> None:
        """One getUpdates whose offset confirms every settled update (what it returns is
        left for the next run), unless the last one sent already carried that offset (the
        usual case: the poller asks again as soon as an update settles). At most
        ``CONFIRM_TIMEOUT`` seconds: a stop must not hang on Telegram."""
        if self.offset is None or self.offset == self._asked:
            return
        try:
            await self.fetch(0, limit=1, request_timeout=CONFIRM_TIMEOUT)
        except Exception as exc:
            log.warning("the last confirmation failed (%s): settled updates may come again", type(exc).__name__)


async def _until(stop: asyncio.Event, call: Any) -> Any:
    """``await call``, or None as soon as ``stop`` is set (the call is then cancelled)."""
    task = asyncio.ensure_future(call)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def _wait(stop: asyncio.Event, seconds: float, event: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, cut short by ``stop`` or ``event``."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if event is not None:
        waiters.append(asyncio.ensure_future(event.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["ConfirmingPoller"]
