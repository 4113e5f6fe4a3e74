"""One retry policy for every Bot API call the bot makes.

* 429 (``TelegramRetryAfter``): wait what Telegram says (``retry_after`` seconds), as long
  as that wait is at most ``max_retry_after`` and fits in what is left of ``budget``;
  otherwise give up at once (Telegram refuses every call before then, so waiting less is
  pointless).
* 5xx, network errors and timeouts (aiogram's ``TelegramServerError`` and
  ``TelegramNetworkError``, aiohttp's errors of a file download): back off exponentially with
  full jitter, ``uniform(0, min(backoff_cap, backoff_base * 2**(n-1)))`` seconds after the
  n-th such failure, cut to what is left of ``budget``.
* 403 (``TelegramForbiddenError``: the user blocked the bot, or never wrote to it): not
  retried, and not raised: :attr:`Outcome.blocked` tells the caller.
* 400 and every other Bot API refusal (401, 404, 409, 413, a chat migration): not retried,
  reported in :attr:`Outcome.error`.
* Anything else (a bug, cancellation) propagates unchanged.

At most ``max_attempts`` calls in all, and no wait starts once ``budget`` seconds (on
``clock``) have passed since the first call. ``sleep``, ``clock`` and ``random`` are
injectable so that tests run instantly and deterministically.

The defaults survive four 429s in a row with a small ``retry_after`` (1-2 s) and five 5xx
in a row (at most 0.5+1+2+4+8 s of back-off), and hold a user's update for at most a
minute.

Nothing of the call is logged: only the caller-given kind (a method name) and the error's
class; Telegram's descriptions can echo chat ids and content.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, TypeVar

import aiohttp
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How a call ended. ``ok``: ``value`` is the call's result. Otherwise ``error`` is the
    last exception: ``blocked`` for a 403, ``gave_up`` when transient failures outlasted
    the policy, neither for a refusal (400 and the like)."""

    value: T | None = None
    error: BaseException | None = None
    blocked: bool = False
    gave_up: bool = False
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value, or the last error raised again (for callers that want exceptions)."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TelegramEntityTooLarge):  # a 413 is a refusal, not a network fault
        return False
    if isinstance(exc, (TelegramServerError, TelegramNetworkError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, aiohttp.ClientResponseError):  # a file download's HTTP status
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, aiohttp.ClientError)


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, (TelegramAPIError, aiohttp.ClientResponseError))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds are in seconds (``max_retry_after``, ``budget``, ``backoff_*``) and calls
    (``max_attempts``, counting the first)."""

    max_attempts: int = 8
    max_retry_after: float = 30.0
    budget: float = 60.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, failures: int) -> float:
        """The jittered wait after the ``failures``-th transient failure (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
        return self.random() * ceiling

    async def run(self, call: Callable[[], Awaitable[T]], *, what: str = "call") -> Outcome[T]:
        """Call ``call()`` (a fresh awaitable each attempt) until it succeeds or the policy
        says stop. ``what`` names the call in logs (e.g. "SendMessage"); never content."""
        start = self.clock()
        transient_failures = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                return Outcome(value=await call(), attempts=attempt)
            except TelegramForbiddenError as exc:
                return Outcome(error=exc, blocked=True, attempts=attempt)
            except TelegramRetryAfter as exc:
                delay: float | None = float(exc.retry_after)
                if delay > self.max_retry_after:
                    delay = None
                error: BaseException = exc
            except Exception as exc:
                if not _is_transient(exc):
                    if _is_refusal(exc):
                        return Outcome(error=exc, attempts=attempt)
                    raise
                transient_failures += 1
                delay, error = self.backoff(transient_failures), exc
            left = self.budget - (self.clock() - start)
            if delay is not None and not isinstance(error, TelegramRetryAfter):
                delay = min(delay, left)
            if delay is None or attempt >= self.max_attempts or left <= 0 or delay > left:
                log.warning(
                    "Bot API %s given up after %d attempt(s) (%s)",
                    what, attempt, type(error).__name__,
                )
                return Outcome(error=error, gave_up=True, attempts=attempt)
            log.info("Bot API %s failed (%s); retrying", what, type(error).__name__)
            await self.sleep(delay)


BOT_API = RetryPolicy()
"""The policy every Bot API call of the bot goes through."""
