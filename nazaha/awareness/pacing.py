"""The pace of broadcast sends: at most ``rate`` messages in any one second overall and at
most ``chat_rate`` per chat, and a pause of every send after Telegram's flood control (429).

The hard limits are the ``limits`` library's: a moving window (``MovingWindowRateLimiter``)
of ``paced_rate`` (a little under ``rate``, below) per second for everything, and one of
``chat_rate`` per second per chat, keyed
by what the caller gives (a subscriber id, never a chat id). For the usual one message per
chat per second the chat's limit is a ``FixedWindowRateLimiter``: ``limits`` opens a fixed
window at a key's first hit, so with a limit of one it is the same rule (two sends to a
chat are at least a second apart) at a third of the cost of a moving window over a
hundred thousand keys (docs/benchmarks.md). The storage is a ``limits`` storage URI or
object: ``memory://`` (the default: one process) or, for several processes sharing one
pace, e.g. ``async+redis://host:6379`` (issue 12); synchronous and ``limits.aio`` storages
both work.

What this process starts is not what Telegram receives: requests queue in the event loop,
the network and the receiver, so their arrival times there move by a few milliseconds, and
one second of starts can land in a little less than a second. So the global window holds
``paced_rate = floor(margin * rate)`` (``margin`` 0.97: 24 of 25/s, 970 of 1,000/s), a
documented safety margin under the configured rate, measured in docs/benchmarks.md. And a
moving window alone lets a backlog go out in bursts (a whole second's allowance at once,
then nothing until it slides), which reach Telegram bunched; so the slots are also spread
out evenly, one every ``1 / paced_rate`` seconds (a generic cell rate schedule: a slot may
start up to ``tolerance`` early, so that timer lateness does not lower the rate). One
dispatcher hands the slots out in the order they were asked for, waking every ``tick`` at
most and granting every slot due by then in one hit of the window (at 1,000/s about ten a
time; at 25/s one), which keeps the pacer's own cost per message small.

Nothing about a message or a chat is logged here.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import FixedWindowRateLimiter as AsyncFixedWindow
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

__all__ = ["Pacer", "DEFAULT_MARGIN"]

DEFAULT_MARGIN = 0.97
GLOBAL_KEY = "all"


class Pacer:
    """``await pacer.acquire(key)`` before each send; ``pacer.pause(seconds)`` after a 429.

    ``rate`` and ``chat_rate`` are messages per second (integers >= 1): no one-second window
    ever holds more than ``paced_rate`` (<= ``rate``) starts, nor more than ``chat_rate``
    for one key. ``clock``/``sleep``
    drive the spacing and the pause (monotonic seconds); the moving windows use the wall
    clock, as ``limits`` does.
    """

    def __init__(
        self,
        rate: int,
        chat_rate: int = 1,
        *,
        storage: str | Any = "memory://",
        margin: float = DEFAULT_MARGIN,
        tolerance: float = 0.02,
        tick: float = 0.01,
        namespace: str = "nazaha-broadcast",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate < 1 or chat_rate < 1:
            raise ValueError("rates are at least one message per second")
        self.rate = int(rate)
        self.chat_rate = int(chat_rate)
        self.paced_rate = max(1, math.floor(self.rate * margin))
        self._global = RateLimitItemPerSecond(self.paced_rate, namespace=namespace)
        self._chat = RateLimitItemPerSecond(self.chat_rate, namespace=f"{namespace}-chat")
        if isinstance(storage, str):
            storage = storage_from_string(storage)
        asynchronous = isinstance(storage, AsyncStorage)
        moving = AsyncMovingWindow if asynchronous else MovingWindowRateLimiter
        self._limiter: Any = moving(storage)
        self._chat_limiter: Any = (
            (AsyncFixedWindow if asynchronous else FixedWindowRateLimiter)(storage)
            if self.chat_rate == 1 else self._limiter
        )
        self._interval = 1.0 / self.paced_rate
        self._tolerance = max(0.0, tolerance)
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # when the next slot is due (the schedule's "theoretical arrival")
        self._paused_until = 0.0
        self._tick = max(0.001, tick)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self.pauses = 0  # 429 pauses so far (for tests and the benchmark)

    # ---- the two limits ------------------------------------------------------------------

    async def _call(self, name: str, item: Any, key: str, cost: int = 1) -> Any:
        limiter = self._chat_limiter if item is self._chat else self._limiter
        method = getattr(limiter, name)
        result = method(item, key, cost=cost) if name == "hit" else method(item, key)
        return await result if inspect.isawaitable(result) else result

    async def _until_free(self, item: Any, key: str) -> float:
        """Seconds until ``key``'s window under ``item`` has room again (wall clock)."""
        stats = await self._call("get_window_stats", item, key)
        return max(0.001, stats.reset_time - time.time())

    # ---- public -----------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Telegram asked to wait (429 ``retry_after``): no slot starts before then."""
        until = self._clock() + max(0.0, float(seconds))
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
        self._next = max(self._next, self._paused_until)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, key: str) -> None:
        """Wait for a slot for one send to the chat ``key`` (a subscriber or staff link id,
        never a chat id). On return the send may start at once."""
        while True:
            await self._global_slot()
            if await self._call("hit", self._chat, key):
                return
            # The chat had a message less than a second ago (a retry, or another
            # broadcast): that global slot stays unused (never more than ``paced_rate``).
            await self._sleep(await self._until_free(self._chat, key))

    async def _global_slot(self) -> None:
        """Queue for a slot; one dispatcher hands them out in order, several at a time."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        await waiter

    def _live_waiters(self) -> int:
        while self._waiters and self._waiters[0].done():  # a cancelled caller
            self._waiters.popleft()
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def _dispatch(self) -> None:
        """Every ``tick`` (or at the next slot, if later), grant every slot due by then:
        the schedule allows a slot up to ``tolerance`` before its time, so one wake-up
        serves several sends at high rates; the moving window takes them in one hit."""
        single = False
        while (waiting := self._live_waiters()) > 0:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            due = max(self._next, now)
            count = 0
            while count < waiting and due - now <= self._tolerance and (count == 0 or not single):
                due += self._interval
                count += 1
            if count == 0:
                await self._sleep(max(self._tick, self._next - self._tolerance - now))
                continue
            if not await self._call("hit", self._global, GLOBAL_KEY, cost=count):
                if count > 1:  # room for fewer: go one by one until the window slides
                    single = True
                    continue
                await self._sleep(await self._until_free(self._global, GLOBAL_KEY))
                continue
            single = False
            self._next = due
            while count:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    count -= 1
            if self._waiters:
                await self._sleep(self._tick)
