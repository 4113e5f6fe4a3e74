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

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import pseudonym
from nazaha.storage.database import dialect_insert, write_transaction
from nazaha.storage.models import ReceiptAttempt

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
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        pepper: bytes,
        *,
        per_user_per_hour: int = 5,
        global_per_hour: int = 1000,
        clock: Clock = _utc_now,
    ) -> None:
        if per_user_per_hour < 1 or global_per_hour < 1:
            raise ValueError("attempt limits must be at least 1")
        self._sessionmaker = sessionmaker
        self._pepper = pepper
        self._per_user = per_user_per_hour
        self._global = global_per_hour
        self._clock = clock

    def _user_key(self, user_id: int) -> str:
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise TypeError("a user id is an int")
        return pseudonym(self._pepper, PSEUDONYM_PURPOSE, user_id)

    async def blocked(self, user_id: int) -> bool:
        """True if this user, or everyone together, reached the limit in this hour."""
        user_key = self._user_key(user_id)
        window = window_of(self._clock())
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(ReceiptAttempt.key, ReceiptAttempt.count).where(
                    ReceiptAttempt.window == window,
                    ReceiptAttempt.key.in_((user_key, GLOBAL_KEY)),
                )
            )
            counts = dict(rows.all())
        return counts.get(user_key, 0) >= self._per_user or counts.get(GLOBAL_KEY, 0) >= self._global

    async def record_failure(self, user_id: int) -> None:
        """Count one wrong receipt for this user and for the global ceiling (atomically)."""
        user_key = self._user_key(user_id)
        window = window_of(self._clock())
        async with write_transaction(self._sessionmaker) as session:
            insert = dialect_insert(session)
            for key in (user_key, GLOBAL_KEY):
                statement = insert(ReceiptAttempt.__table__).values(key=key, window=window, count=1)
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["key", "window"],
                        set_={"count": ReceiptAttempt.__table__.c.count + 1},
                    )
                )

    async def failures(self, user_id: int) -> int:
        """This user's failures in the current hour (for tests and the console)."""
        user_key = self._user_key(user_id)
        async with self._sessionmaker() as session:
            count = await session.scalar(
                select(ReceiptAttempt.count).where(
                    ReceiptAttempt.key == user_key,
                    ReceiptAttempt.window == window_of(self._clock()),
                )
            )
        return int(count or 0)

    async def purge(self, older_than_hours: int = 48) -> int:
        """Delete counters of windows that started more than ``older_than_hours`` ago."""
        cutoff = window_of(self._clock() - dt.timedelta(hours=older_than_hours))
        async with write_transaction(self._sessionmaker) as session:
            # Window strings sort as their times do (fixed-width, most significant first).
            result = await session.execute(
                delete(ReceiptAttempt).where(ReceiptAttempt.window < cutoff)
            )
        return int(result.rowcount or 0)


__all__ = ["AttemptLimiter", "GLOBAL_KEY", "window_of"]
