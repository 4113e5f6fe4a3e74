"""When an update may be confirmed to Telegram: once its effects are committed.

Telegram forgets an update as soon as the bot confirms it (a webhook request answered 2xx,
or a getUpdates ``offset`` past it). Confirmed too early, an update is lost in a crash;
so every update fed to the dispatcher carries a :class:`Settlement` (``data["settlement"]``)
that says when, and whether, Telegram may forget it:

* ``UnitOfWorkMiddleware`` calls :meth:`Settlement.confirm` right after the update's commit
  and before its replies go out (a 429 wait must never hold Telegram's webhook request);
* a failure before that commit calls :meth:`Settlement.failed`: the update is handed back
  (Telegram delivers it again; the in-memory dedup claim is released) while its retry window
  lasts (:attr:`UpdateRunner.retry_seconds` from its first failure in this process), and
  confirmed (given up, the user told) after it;
* an update whose processing ends without either (dropped by the chat gate, a duplicate,
  throttled) is confirmed when its processing ends; one whose task crashed or was cancelled
  is treated as a failure;
* a later file of an album follows the album's first update (:meth:`Settlement.follow`), and
  so does a second delivery of an update still in progress in this process; but with a
  webhook each file of an album is confirmed as soon as it is gathered, since Telegram sends
  a chat's next update only once the previous one is answered
  (:attr:`Settlement.holds_chat`; nazaha/handlers/albums.py).

:class:`UpdateRunner` feeds updates to the dispatcher in tasks and keeps the retry windows;
the webhook server (nazaha/bot/webhook.py) answers a request when its settlement is known,
the poller (nazaha/bot/polling.py) moves its offset only past settled updates.

Nothing here logs an update's id or content.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.methods import TelegramMethod
from aiogram.types import Update

log = logging.getLogger(__name__)

SETTLEMENT = "settlement"  # the key of the settlement in the dispatcher's data
DEFAULT_RETRY_SECONDS = 120.0


class Verdict(enum.Enum):
    CONFIRM = "confirm"  # Telegram may forget the update
    HAND_BACK = "hand back"  # Telegram must deliver it again


class Settlement:
    """The verdict on one update, given once (the first call wins). ``may_retry``: whether a
    failure may still hand the update back (its retry window is open). ``holds_chat``:
    Telegram sends this chat's next update only once this one is confirmed (a webhook:
    Telegram delivers a chat's updates one after the other), so nothing may wait for a later
    update of the same chat before confirming (an album's first file)."""

    __slots__ = ("may_retry", "holds_chat", "_future", "_following")

    def __init__(self, *, may_retry: bool = True, holds_chat: bool = False) -> None:
        self.may_retry = may_retry
        self.holds_chat = holds_chat
        self._future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._following = False

    @property
    def verdict(self) -> Verdict | None:
        return self._future.result() if self._future.done() else None

    def confirm(self) -> None:
        """The update's effects are committed (or there were none to commit)."""
        self._settle(Verdict.CONFIRM)

    def failed(self) -> bool:
        """The update failed before its commit. True: it is handed back (stay silent, a
        redelivery comes); False: its retry window is over and it is given up (confirmed)."""
        self._settle(Verdict.HAND_BACK if self.may_retry else Verdict.CONFIRM)
        return self.verdict is Verdict.HAND_BACK

    def follow(self, leader: Settlement) -> None:
        """Take ``leader``'s verdict, whenever it comes; this update's own end is ignored."""
        self._following = True
        leader.add_callback(self._settle)

    def finish(self, *, crashed: bool) -> None:
        """The update's processing ended (called by :class:`UpdateRunner`)."""
        if self._following:
            return
        if crashed:
            self.failed()
        else:
            self.confirm()

    def add_callback(self, callback: Callable[[Verdict], None]) -> None:
        """``callback(verdict)`` once the verdict is given (soon after, if it already is)."""
        self._future.add_done_callback(lambda future: callback(future.result()))

    async def wait(self) -> Verdict:
        """The verdict (waiting for it; cancelling the wait leaves the settlement alone)."""
        return await asyncio.shield(self._future)

    def _settle(self, verdict: Verdict) -> None:
        if not self._future.done():
            self._future.set_result(verdict)


def settlement_of(data: dict[str, Any]) -> Settlement | None:
    """The settlement in a middleware's or handler's data, if the update has one."""
    settlement = data.get(SETTLEMENT)
    return settlement if isinstance(settlement, Settlement) else None


class UpdateRunner:
    """Feeds updates to ``dispatcher`` in tasks; each gets a :class:`Settlement`.

    ``retry_seconds``: how long after an update's first failure (in this process) a failure
    still hands it back. ``holds_chat``: the settlements' (True for a webhook). ``clock`` is
    injectable for tests. ``data`` goes to the dispatcher with every update."""

    MAX_FAILURES_KEPT = 10_000

    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        holds_chat: bool = False,
        clock: Callable[[], float] = time.monotonic,
        **data: Any,
    ) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.retry_seconds = retry_seconds
        self.holds_chat = holds_chat
        self.clock = clock
        self.data = data
        self._in_flight: dict[int, tuple[asyncio.Task[None], Settlement]] = {}
        self._failures: OrderedDict[int, float] = OrderedDict()  # update id -> first failure

    @property
    def in_flight(self) -> int:
        """Updates whose processing (replies included) has not ended."""
        return len(self._in_flight)

    def feed(self, update: Update) -> Settlement:
        """Start processing ``update`` (unless it is already in progress here: then the
        returned settlement follows that one) and return its settlement."""
        update_id = update.update_id
        current = self._in_flight.get(update_id)
        if current is not None and not current[0].done():
            follower = Settlement(may_retry=current[1].may_retry, holds_chat=self.holds_chat)
            follower.follow(current[1])
            return follower
        first_failure = self._failures.get(update_id)
        may_retry = first_failure is None or self.clock() - first_failure < self.retry_seconds
        settlement = Settlement(may_retry=may_retry, holds_chat=self.holds_chat)
        settlement.add_callback(lambda verdict: self._record(update_id, verdict))
        task = asyncio.create_task(self._process(update, settlement))
        self._in_flight[update_id] = (task, settlement)
        task.add_done_callback(lambda done: self._forget(update_id, done))
        return settlement

    def _forget(self, update_id: int, task: asyncio.Task[None]) -> None:
        current = self._in_flight.get(update_id)
        if current is not None and current[0] is task:
            del self._in_flight[update_id]

    async def _process(self, update: Update, settlement: Settlement) -> None:
        crashed = True
        try:
            result = await self.dispatcher.feed_update(
                self.bot, update, **self.data, **{SETTLEMENT: settlement}
            )
            crashed = False
            if isinstance(result, TelegramMethod):  # handlers queue replies instead
                await self.dispatcher.silent_call_request(bot=self.bot, result=result)
        except Exception as exc:  # the type only: a message can quote content
            log.error("update processing failed (%s)", type(exc).__name__)
        finally:
            settlement.finish(crashed=crashed)

    def _record(self, update_id: int, verdict: Verdict) -> None:
        if verdict is Verdict.CONFIRM:
            self._failures.pop(update_id, None)
            return
        self._failures.setdefault(update_id, self.clock())
        while len(self._failures) > self.MAX_FAILURES_KEPT:
            self._failures.popitem(last=False)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every update in progress to end, replies
        included; then cancel the rest (those not yet committed are handed back). Returns
        how many were cancelled."""
        tasks = [task for task, _settlement in self._in_flight.values()]
        if not tasks:
            return 0
        _done, pending = await asyncio.wait(tasks, timeout=max(0.0, timeout))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("%d update(s) cut short by the stop", len(pending))
        return len(pending)


__all__ = [
    "DEFAULT_RETRY_SECONDS",
    "SETTLEMENT",
    "Settlement",
    "UpdateRunner",
    "Verdict",
    "settlement_of",
]
