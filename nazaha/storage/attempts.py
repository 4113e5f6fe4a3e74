"""Limits on wrong receipts, against guessing receipts through the bot.

Only *failed* attempts count: someone who types their receipt correctly is never slowed
down, however often they come back. The bot's flow is::

    if await limiter.blocked(user_id):      # -> "too many attempts, try again later"
        ...
    case = await vault.unlock_with_receipt(text)   # Argon2id
    if case is None:
        await limiter.record_failure(user_id)

Counters are kept per fixed UTC hour window (``"2026-11-29T05"``) under two keys: the
user's pseudonym ``pseudonym(pepper, "receipt-attempt", user_id)`` (no Telegram id is
stored) and one global key. A user is blocked for the rest of the hour once they reach
``per_user_per_hour`` failures; everybody is once all users together reach
``global_per_hour`` (a guesser with many accounts). With fixed windows a user can get up to
twice the hourly limit across a window boundary; at 5 an hour against 20-digit receipts that
is irrelevant.

Checking and recording are separate steps, so a few concurrent attempts of one user can pass
the check together before their failures are counted; each failure is still counted
exactly (an atomic ``INSERT .. ON CONFLICT DO UPDATE SET count = count + 1``, under the
engine's write lock and ``BEGIN IMMEDIATE`` on SQLite), so the overshoot is bounded by the
user's concurrency, which the per-user throttle and event isolation already keep at one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from nazaha.storage.crypto import pseudonym

GLOBAL_KEY = "global"
PSEUDONYM_PURPOSE = "receipt-attempt"
_WINDOW_FORMAT = "%Y-%m-%dT%H"

Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def window_of(moment: dt.datetime) -> str:
    """The hour window of an aware datetime, in UTC: ``"2026-11-29T05"``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the clock must return aware (UTC) datetimes")
    return moment.astimezone(dt.timezone.utc).strftime(_WINDOW_FORMAT)


class AttemptLimiter:
    """Wrong-receipt counters in process memory (nothing about follow-up reaches the disk)."""

    def __init__(
        self,
        sessionmaker: object,
        pepper: bytes,
        *,
        per_user_per_hour: int = 5,
        global_per_hour: int = 1000,
        clock: Clock = _utc_now,
    ) -> None:
        if per_user_per_hour < 1 or global_per_hour < 1:
            raise ValueError("attempt limits must be at least 1")
        self._pepper = pepper
        self._per_user = per_user_per_hour
        self._global = global_per_hour
        self._clock = clock
        self._counts: dict[tuple[str, str], int] = {}

    def _user_key(self, user_id: int) -> str:
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise TypeError("a user id is an int")
        return pseudonym(self._pepper, PSEUDONYM_PURPOSE, user_id)

    async def blocked(self, user_id: int) -> bool:
        window = window_of(self._clock())
        return (
            self._counts.get((self._user_key(user_id), window), 0) >= self._per_user
            or self._counts.get((GLOBAL_KEY, window), 0) >= self._global
        )

    async def record_failure(self, user_id: int) -> None:
        window = window_of(self._clock())
        for key in (self._user_key(user_id), GLOBAL_KEY):
            self._counts[(key, window)] = self._counts.get((key, window), 0) + 1

    async def failures(self, user_id: int) -> int:
        return self._counts.get((self._user_key(user_id), window_of(self._clock())), 0)

    async def purge(self, older_than_hours: int = 2) -> int:
        cutoff = window_of(self._clock() - dt.timedelta(hours=older_than_hours))
        stale = [k for k in self._counts if k[1] < cutoff]
        for k in stale:
            del self._counts[k]
        return len(stale)


__all__ = ["AttemptLimiter", "GLOBAL_KEY", "window_of"]
