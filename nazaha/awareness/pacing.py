"""The pace of broadcast sends: at most ``rate`` messages in any one second overall and at
most ``chat_rate`` per chat, and a pause of every send after Telegram's flood control (429).

**Limits.** The hard limits are the ``limits`` library's. Overall: a moving window
(``MovingWindowRateLimiter``) of ``paced_rate`` per second, a little under ``rate`` (below).
Per chat, keyed by what the caller gives (a subscriber id, never a chat id): ``chat_rate``
per *two* seconds, so never more than ``chat_rate`` in any one second, with a margin for
the same jitter (a subscriber gets one message per broadcast: only retries and overlapping
broadcasts meet this limit). For the usual one message the chat's limit is a
``FixedWindowRateLimiter``: ``limits`` opens a fixed window at a key's first hit, so with a
limit of one it is the same rule as a moving window (two sends to a chat at least two
seconds apart) at a third of the cost over a hundred thousand keys. The storage is a
``limits`` storage URI or object: ``memory://`` (the default: one process) or, for several
processes sharing one pace, e.g. ``async+redis://host:6379`` (issue 12); synchronous and
``limits.aio`` storages both work.

**Margin.** What this process starts is not what Telegram receives: requests wait in the
event loop, the network and the receiver, so their arrival times move by milliseconds, and
one second of starts can land in a little less than a second there. So the overall window
holds ``paced_rate = floor(margin * rate)`` (``margin`` 0.97: 24 of 25/s, 194 of 200/s,
970 of 1,000/s), a documented safety margin of about 30 ms of jitter, measured in
docs/benchmarks.md ("Broadcasts").

**Spacing.** A moving window alone lets a backlog go out in bursts (a whole second's
allowance at once, then nothing until it slides), and bursts arrive bunched. So the slots
are also spread evenly, one every ``1 / paced_rate`` seconds (a generic cell rate
schedule): one dispatcher hands them out in the order they were asked for, waking every
``tick`` at the most and granting every slot due within ``tolerance`` (so timer lateness
does not lower the rate) in one hit of the window: at 1,000/s about ten a time, at 25/s
one. A slot missed because the process got no CPU in time is not made up later, and a
slot granted but not used within ``max_lag`` (10 ms: the process stalled in between) is
given up, so that late sends never go out together with punctual ones: the pace stays
smooth, and on a saturated machine the achieved rate drops instead.

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

__all__ = ["Pacer", "DEFAULT_MARGIN", "CHAT_WINDOW"]

DEFAULT_MARGIN = 0.97
CHAT_WINDOW = 2  # seconds: a chat's window (``chat_rate`` in it)
GLOBAL_KEY = "all"


class Pacer:
    """``await pacer.acquire(key)`` before each send; ``pacer.pause(seconds)`` after a 429.

    ``rate`` and ``chat_rate`` are messages per second (integers >= 1): no one-second window
    ever holds more than ``paced_rate`` (<= ``rate``) starts, nor more than ``chat_rate``
    starts for one key. ``clock``/``sleep`` drive the spacing and the pause (monotonic
    seconds); the windows use the wall clock, as ``limits`` does.
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
        max_lag: float = 0.01,
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
        self._chat = RateLimitItemPerSecond(self.chat_rate, CHAT_WINDOW, namespace=f"{namespace}-chat")
        if isinstance(storage, str):
            storage = storage_from_string(storage)
        asynchronous = isinstance(storage, AsyncStorage)
        self._limiter: Any = (AsyncMovingWindow if asynchronous else MovingWindowRateLimiter)(storage)
        self._chat_limiter: Any = (
            (AsyncFixedWindow if asynchronous else FixedWindowRateLimiter)(storage)
            if self.chat_rate == 1 else self._limiter
        )
        self._interval = 1.0 / self.paced_rate
        self._tolerance = max(0.0, tolerance)
        self._tick = max(0.001, tick)
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # when the next slot is due (the schedule's "theoretical arrival")
        self._paused_until = 0.0
        self._max_lag = max(0.0, max_lag)
        self._waiters: collections.deque[asyncio.Future[float]] = collections.deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self.pauses = 0  # 429 pauses so far (for tests and the benchmark)
        self.stale = 0  # slots given up because they were not used in time

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
        never a chat id). On return the send may start at once (and should)."""
        while True:
            granted = await self._global_slot()
            if not self._fresh(granted):
                continue
            if await self._call("hit", self._chat, key):
                return
            # The chat had a message less than two seconds ago (a retry, or another
            # broadcast): that slot stays unused (never more than ``paced_rate``).
            await self._sleep(await self._until_free(self._chat, key))

    # ---- the overall schedule -------------------------------------------------------------

    def _fresh(self, granted: float) -> bool:
        """Whether a slot granted at ``granted`` may still be used: within ``max_lag``
        seconds. A process stalled between the grant and the send (the CPU was busy, a
        garbage collection) would otherwise send late slots together with punctual ones;
        a stale slot is given up (never more than the window) and the caller asks again."""
        if self._clock() - granted <= self._max_lag:
            return True
        self.stale += 1
        return False

    async def _global_slot(self) -> float:
        """Queue for a slot; one dispatcher hands them out in order, several at a time."""
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        return await waiter

    def _live_waiters(self) -> int:
        while self._waiters and self._waiters[0].done():  # a cancelled caller
            self._waiters.popleft()
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def _dispatch(self) -> None:
        """Grant every slot due within ``tolerance`` to the callers waiting, in one hit of
        the window; then sleep a ``tick`` (or until the next slot, if later)."""
        one_at_a_time = False  # the window refused a group: it has room for fewer
        while (waiting := self._live_waiters()) > 0:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            due, count = max(self._next, now), 0
            while count < waiting and due - now <= self._tolerance and not (one_at_a_time and count):
                due += self._interval
                count += 1
            if count == 0:
                await self._sleep(max(self._tick, self._next - self._tolerance - now))
                continue
            if not await self._call("hit", self._global, GLOBAL_KEY, cost=count):
                if count == 1:
                    await self._sleep(await self._until_free(self._global, GLOBAL_KEY))
                one_at_a_time = True
                continue
            one_at_a_time = False
            self._next = due
            while count:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(now)
                    count -= 1
            if self._waiters:
                await self._sleep(self._tick)
