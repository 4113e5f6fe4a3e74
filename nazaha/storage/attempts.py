"""Wrong receipts: a limit per account, and a fair queue that slows down under a flood.

Memory only. That an account tried a receipt marks it as a reporter, so nothing about
attempts is written to disk (not even under a pseudonym: the pepper is on the same host and
every Telegram id can be tried against it). Accounts are known by their pepper pseudonym
``pseudonym(pepper, "receipt-attempt", user_id)``, never by their id, even here. A restart
forgets every counter; that gives a guesser a fresh allowance per restart, which is visible
and rare.

The follow-up handler's use::

    try:
        async with limiter.attempt(user_id) as attempt:   # may wait its turn
            case = await vault.unlock_with_receipt(text)  # Argon2id
            if case is None:
                attempt.failed()
    except TooManyAttempts:
        ...  # "too many attempts, try again later"

Rules:

* **Per account**, at most ``per_user_per_hour`` wrong receipts in any rolling hour; past
  that, :meth:`AttemptLimiter.attempt` raises :class:`TooManyAttempts` (nothing is checked)
  until the oldest failure is an hour old. Only failures count: someone who types their
  receipt correctly is never limited.
* **One attempt in flight per account**: a second attempt of the same account *waits* for
  the first to finish, then is judged like any other (so queued guesses past the limit are
  refused). Waiting, not refusing, because an honest double send must not get an error
  (aiogram's per-user event isolation already makes a user's updates wait for each other;
  this holds even where that does not), and because it cannot be abused: however many
  attempts an account queues, it holds at most one place in the global queue.
* **One receipt checked at a time**, handed out in order of (the account's wrong receipts
  in the last hour, arrival). Argon2id runs on one thread anyway (kdf_thread.py), so this
  costs no throughput; it makes the order ours: among accounts with as many failures it is
  first come, first served, i.e. round robin since each account has one place; an account
  that has not been guessing goes ahead of accounts that have. So a reporter typing the
  right receipt waits for at most the accounts that have failed no more often than they
  have, one check (Argon2id, about 0.3 s) or one pacing interval each.
* **Global ceiling**: once ``global_per_hour`` wrong receipts were counted in the current
  hour (a fixed window that opens at the first failure), checks start at most
  ``slow_per_second`` times per second. Nobody is refused for it: a flood of guesses slows
  everyone down a little instead of shutting follow-up for the hour.

Times are seconds on ``clock`` (monotonic); ``sleep`` waits on the same clock (tests inject
both).

**Several replicas** (``NAZAHA_REDIS_URL``): ``shared`` (a
:class:`nazaha.handlers.redis_memory.RedisAttemptCounts`) holds the per-account failures and
the global hour's window in Redis, under names of the replicas' memory-only key, so that a
guesser's updates spread over replicas count together; the per-account lock, the turn and
its queue stay in each process (a user's updates are serialised across replicas by the
per-user lock anyway, and each process has its own Argon2id thread).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from nazaha.storage.crypto import pseudonym

HOUR = 3600.0
PSEUDONYM_PURPOSE = "receipt-attempt"


class SharedCounts(Protocol):
    """Wrong-receipt counts kept outside the process (Redis), on their own clock."""

    async def failures(self, user_id: int) -> int: ...

    async def add_failure(self, user_id: int) -> None: ...

    async def slowed(self, global_per_hour: int) -> bool: ...


class TooManyAttempts(Exception):
    """This account reached its wrong-receipt limit for the hour; nothing was checked."""


class Attempt:
    """One turn at checking a receipt; call :meth:`failed` if the receipt was wrong."""

    __slots__ = ("wrong",)

    def __init__(self) -> None:
        self.wrong = False

    def failed(self) -> None:
        self.wrong = True


@dataclass
class _Account:
    failures: deque[float] = field(default_factory=deque)  # times of recent wrong receipts
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one attempt in flight
    users: int = 0  # attempts holding or waiting for the lock


class AttemptLimiter:
    def __init__(
        self,
        pepper: bytes,
        *,
        per_user_per_hour: int = 5,
        global_per_hour: int = 1000,
        slow_per_second: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        shared: SharedCounts | None = None,
    ) -> None:
        if per_user_per_hour < 1 or global_per_hour < 1:
            raise ValueError("attempt limits must be at least 1")
        if not slow_per_second > 0:
            raise ValueError("the slowed-down rate must be positive")
        pseudonym(pepper, PSEUDONYM_PURPOSE, 0)  # ValueError now for a bad pepper
        self._pepper = pepper
        self._per_user = per_user_per_hour
        self._global = global_per_hour
        self._interval = 1.0 / slow_per_second
        self._clock = clock
        self._sleep = sleep
        self._shared = shared
        self._accounts: dict[str, _Account] = {}
        # The turn: held by at most one attempt; the others wait in the heap of
        # (failures in the last hour, arrival number, future set when it is their turn).
        self._busy = False
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._last_start: float | None = None
        self._window_start: float | None = None
        self._window_failures = 0

    # -- the attempt --------------------------------------------------------------------

    @asynccontextmanager
    async def attempt(self, user_id: int) -> AsyncIterator[Attempt]:
        """Wait for this account's turn to check one receipt.

        Raises :class:`TooManyAttempts` (before any waiting in the global queue) if the
        account reached its limit. Cancelling while waiting gives the place up."""
        key = self._user_key(user_id)
        account = self._accounts.setdefault(key, _Account())
        account.users += 1
        try:
            async with account.lock:
                failures = await self._failures_of(user_id, account)
                if failures >= self._per_user:
                    raise TooManyAttempts
                await self._take_turn(failures)
                attempt = Attempt()
                try:
                    yield attempt
                finally:
                    try:
                        if attempt.wrong:
                            await self._count_failure(user_id, account)
                    finally:
                        self._end_turn()
        finally:
            account.users -= 1
            if account.users == 0 and not account.failures and self._accounts.get(key) is account:
                del self._accounts[key]

    async def _take_turn(self, failures: int) -> None:
        if self._busy:
            turn = asyncio.get_running_loop().create_future()
            heapq.heappush(self._queue, (failures, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._end_turn()  # handed over just as we were cancelled: pass it on
                raise  # otherwise the cancelled future stays queued and is skipped
        else:
            self._busy = True
        try:
            if await self._is_slowed():
                now = self._clock()
                if self._last_start is not None and self._last_start + self._interval > now:
                    await self._sleep(self._last_start + self._interval - now)
            self._last_start = self._clock()
        except BaseException:
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        while self._queue:
            _, _, turn = heapq.heappop(self._queue)
            if not turn.done():
                turn.set_result(None)  # handed over: the turn stays busy
                return
        self._busy = False

    async def _failures_of(self, user_id: int, account: _Account) -> int:
        if self._shared is not None:
            return await self._shared.failures(user_id)
        self._forget_old(account, self._clock())
        return len(account.failures)

    async def _is_slowed(self) -> bool:
        if self._shared is not None:
            return await self._shared.slowed(self._global)
        return self.slowed

    async def _count_failure(self, user_id: int, account: _Account) -> None:
        if self._shared is not None:
            await self._shared.add_failure(user_id)
            return
        now = self._clock()
        account.failures.append(now)
        if self._window_start is None or now - self._window_start >= HOUR:
            self._window_start, self._window_failures = now, 0
        self._window_failures += 1

    # -- state --------------------------------------------------------------------------

    @property
    def slowed(self) -> bool:
        """True while the hour's wrong receipts have reached the global ceiling."""
        if self._window_start is None or self._clock() - self._window_start >= HOUR:
            return False
        return self._window_failures >= self._global

    def failures(self, user_id: int) -> int:
        """This account's wrong receipts in the last hour."""
        account = self._accounts.get(self._user_key(user_id))
        if account is None:
            return 0
        self._forget_old(account, self._clock())
        return len(account.failures)

    def waiting(self) -> int:
        """Attempts waiting for their turn in the global queue (not counting the one
        being checked)."""
        return sum(1 for _, _, turn in self._queue if not turn.done())

    def sweep(self) -> int:
        """Forget accounts with no wrong receipt in the last hour and no attempt under way,
        and a global window that has closed. Returns how many accounts were forgotten.
        Called by the bot's maintenance loop; the limits hold without it (it frees memory
        and keeps pseudonyms in memory no longer than they matter)."""
        now = self._clock()
        idle = []
        for key, account in self._accounts.items():
            self._forget_old(account, now)
            if not account.failures and account.users == 0:
                idle.append(key)
        for key in idle:
            del self._accounts[key]
        if self._window_start is not None and now - self._window_start >= HOUR:
            self._window_start, self._window_failures = None, 0
        return len(idle)

    def __len__(self) -> int:
        """Accounts currently remembered."""
        return len(self._accounts)

    @staticmethod
    def _forget_old(account: _Account, now: float) -> None:
        while account.failures and now - account.failures[0] >= HOUR:
            account.failures.popleft()

    def _user_key(self, user_id: int) -> str:
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise TypeError("a user id is an int")
        return pseudonym(self._pepper, PSEUDONYM_PURPOSE, user_id)


__all__ = ["Attempt", "AttemptLimiter", "TooManyAttempts"]
