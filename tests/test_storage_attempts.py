"""Wrong-receipt limits: per user per hour, a global ceiling, exact concurrent counting."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import delete, select

from nazaha.storage.attempts import GLOBAL_KEY, AttemptLimiter, window_of
from nazaha.storage.crypto import pseudonym
from nazaha.storage.database import write_transaction
from nazaha.storage.models import ReceiptAttempt

PEPPER = b"pepper-for-tests-only-0123456789"
ALICE = 5_123_456_789
BOB = 6_000_000_001


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
async def clean(sessionmaker):
    # receipt_attempts references no report, so the PostgreSQL fixture's TRUNCATE misses it.
    async with write_transaction(sessionmaker) as session:
        await session.execute(delete(ReceiptAttempt))
    return sessionmaker


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 11, 29, 5, 10, tzinfo=dt.timezone.utc))


def limiter(sessionmaker, clock, **kw) -> AttemptLimiter:
    return AttemptLimiter(sessionmaker, PEPPER, clock=clock, **kw)


async def rows(sessionmaker) -> dict[tuple[str, str], int]:
    async with sessionmaker() as session:
        result = await session.execute(
            select(ReceiptAttempt.key, ReceiptAttempt.window, ReceiptAttempt.count)
        )
        return {(key, window): count for key, window, count in result.all()}


async def test_five_failures_then_blocked_and_others_unaffected(clean, clock):
    limits = limiter(clean, clock)
    for n in range(5):
        assert not await limits.blocked(ALICE)
        await limits.record_failure(ALICE)
        assert await limits.failures(ALICE) == n + 1
    assert await limits.blocked(ALICE)
    assert not await limits.blocked(BOB)
    assert await limits.failures(BOB) == 0

    # No Telegram id is stored: the key is the pseudonym.
    stored = await rows(clean)
    assert stored == {
        (pseudonym(PEPPER, "receipt-attempt", ALICE), "2026-11-29T05"): 5,
        (GLOBAL_KEY, "2026-11-29T05"): 5,
    }
    assert not any(str(ALICE) in key for key, _ in stored)


async def test_the_window_rolls_over_each_hour(clean, clock):
    limits = limiter(clean, clock)
    for _ in range(5):
        await limits.record_failure(ALICE)
    clock.advance(minutes=49, seconds=59)  # 05:59:59, still the same hour
    assert await limits.blocked(ALICE)
    clock.advance(seconds=1)  # 06:00:00
    assert not await limits.blocked(ALICE)
    assert await limits.failures(ALICE) == 0
    await limits.record_failure(ALICE)
    assert {w for _, w in await rows(clean)} == {"2026-11-29T05", "2026-11-29T06"}


async def test_the_window_is_utc_whatever_the_clock_zone(clean):
    gaza = dt.timezone(dt.timedelta(hours=2))
    assert window_of(dt.datetime(2026, 11, 29, 7, 30, tzinfo=gaza)) == "2026-11-29T05"
    with pytest.raises(ValueError):
        window_of(dt.datetime(2026, 11, 29, 7, 30))


async def test_the_global_ceiling_blocks_everyone(clean, clock):
    limits = limiter(clean, clock, per_user_per_hour=5, global_per_hour=4)
    for user in (1, 2, 3):
        await limits.record_failure(user)
    assert not await limits.blocked(4)
    await limits.record_failure(4)
    for user in (1, 2, 3, 4, 5):
        assert await limits.blocked(user)
    clock.advance(hours=1)
    assert not await limits.blocked(5)


async def test_concurrent_failures_of_one_user_count_exactly(clean, clock):
    limits = limiter(clean, clock, per_user_per_hour=100)
    await asyncio.gather(*(limits.record_failure(ALICE) for _ in range(20)))
    assert await limits.failures(ALICE) == 20
    assert (await rows(clean))[(GLOBAL_KEY, "2026-11-29T05")] == 20
    # Limiters built on separate instances (replicas) share the counters.
    other = limiter(clean, clock, per_user_per_hour=20)
    assert await other.blocked(ALICE)


async def test_purge_deletes_old_windows_only(clean, clock):
    limits = limiter(clean, clock)
    await limits.record_failure(ALICE)  # 2026-11-29T05
    clock.advance(hours=47)
    await limits.record_failure(BOB)  # 2026-12-01T04
    clock.advance(hours=2)  # 2026-12-01T06: the 05 window is 49 hours old
    assert await limits.purge(older_than_hours=48) == 2  # Alice's and the global counter
    assert set(await rows(clean)) == {
        (pseudonym(PEPPER, "receipt-attempt", BOB), "2026-12-01T04"),
        (GLOBAL_KEY, "2026-12-01T04"),
    }
    assert await limits.purge(older_than_hours=48) == 0


def test_limits_are_validated():
    with pytest.raises(ValueError):
        AttemptLimiter(None, PEPPER, per_user_per_hour=0)  # type: ignore[arg-type]
    limits = AttemptLimiter(None, PEPPER)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        limits._user_key("5123456789")  # type: ignore[arg-type]
