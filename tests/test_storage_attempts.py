"""Wrong receipts, in memory: a limit per account, one attempt in flight per account, a
global slow-down instead of a refusal, a fair queue; and submissions before unlocks on the
Argon2id thread."""

from __future__ import annotations

import asyncio
import secrets
import threading

import pytest

from nazaha.storage import reports
from nazaha.storage.attempts import HOUR, AttemptLimiter, TooManyAttempts
from nazaha.storage.crypto import pseudonym
from nazaha.storage.kdf_thread import SUBMISSION, UNLOCK, KdfThread
from nazaha.storage.reports import ReportDraft
from nazaha.storage.unit_of_work import UnitOfWork

PEPPER = b"pepper-for-tests-only-0123456789"
ALICE = 5_123_456_789
BOB = 6_000_000_001
CAROL = 7_000_000_002


class FakeClock:
    """Monotonic seconds; ``sleep`` moves time forward at once (the limiter sleeps only while
    holding its single turn, so sleeps never overlap)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, **kw) -> AttemptLimiter:
    return AttemptLimiter(PEPPER, clock=clock, sleep=clock.sleep, **kw)


async def wrong(limits: AttemptLimiter, user: int) -> None:
    async with limits.attempt(user) as attempt:
        attempt.failed()


async def until(condition, timeout: float = 10.0) -> None:
    """Wait (on the real loop) until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


class Gate:
    """An attempt that holds its turn until released."""

    def __init__(self, limits: AttemptLimiter, user: int, log: list[int] | None = None) -> None:
        self.inside = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run(limits, user, log))

    async def _run(self, limits: AttemptLimiter, user: int, log: list[int] | None) -> None:
        async with limits.attempt(user) as attempt:
            if log is not None:
                log.append(user)
            self.inside.set()
            await self.release.wait()
            attempt.failed()


# -- per account ------------------------------------------------------------------------


async def test_five_wrong_receipts_then_refused_and_others_unaffected(clock):
    limits = limiter(clock)
    for n in range(5):
        await wrong(limits, ALICE)
        assert limits.failures(ALICE) == n + 1
    with pytest.raises(TooManyAttempts):
        async with limits.attempt(ALICE):
            pytest.fail("a refused attempt must not run")
    assert limits.failures(ALICE) == 5  # a refusal is not a further failure
    async with limits.attempt(BOB):
        pass  # a right receipt: not counted
    assert limits.failures(BOB) == 0


async def test_right_receipts_never_count(clock):
    limits = limiter(clock, per_user_per_hour=1)
    for _ in range(20):
        async with limits.attempt(ALICE):
            pass
    assert limits.failures(ALICE) == 0
    assert len(limits) == 0  # nothing remembered about an account without failures


async def test_accounts_are_kept_by_pseudonym_only(clock):
    limits = limiter(clock)
    await wrong(limits, ALICE)
    assert set(limits._accounts) == {pseudonym(PEPPER, "receipt-attempt", ALICE)}
    assert not any(str(ALICE) in key for key in limits._accounts)
    with pytest.raises(TypeError):
        limits.failures(str(ALICE))  # type: ignore[arg-type]


async def test_the_limit_is_a_rolling_hour(clock):
    limits = limiter(clock)
    await wrong(limits, ALICE)  # t = 0
    clock.now += 600
    for _ in range(4):
        await wrong(limits, ALICE)  # t = 600
    clock.now += HOUR - 600 - 0.001  # just before the first failure is an hour old
    with pytest.raises(TooManyAttempts):
        async with limits.attempt(ALICE):
            pass
    clock.now += 0.001
    assert limits.failures(ALICE) == 4
    await wrong(limits, ALICE)  # one allowed again
    with pytest.raises(TooManyAttempts):
        async with limits.attempt(ALICE):
            pass


async def test_a_second_attempt_of_an_account_waits_outside_the_queue(clock):
    limits = limiter(clock)
    order: list[int] = []
    first = Gate(limits, ALICE, order)
    await first.inside.wait()
    second = Gate(limits, ALICE, order)
    other = Gate(limits, BOB, order)
    await until(lambda: limits.waiting() == 1)  # Bob queued for the turn
    for _ in range(5):
        await asyncio.sleep(0)
    assert limits.waiting() == 1  # Alice's second attempt holds no place of its own
    first.release.set()
    await other.inside.wait()
    assert order == [ALICE, BOB]  # Bob was queued before Alice could queue again
    other.release.set()
    await second.inside.wait()
    second.release.set()
    await asyncio.gather(first.task, second.task, other.task)
    assert order == [ALICE, BOB, ALICE]


async def test_queued_attempts_past_the_limit_are_refused(clock):
    limits = limiter(clock)
    for _ in range(4):
        await wrong(limits, ALICE)
    fifth = Gate(limits, ALICE)
    await fifth.inside.wait()
    sixth = asyncio.create_task(wrong(limits, ALICE))
    await asyncio.sleep(0)
    fifth.release.set()
    await fifth.task
    with pytest.raises(TooManyAttempts):
        await sixth
    assert limits.failures(ALICE) == 5


# -- global slow-down and fairness -------------------------------------------------------


async def test_the_global_ceiling_slows_down_and_refuses_nobody(clock):
    limits = limiter(clock, per_user_per_hour=100, global_per_hour=3, slow_per_second=2)
    starts: list[float] = []

    async def guess(user: int) -> None:
        async with limits.attempt(user) as attempt:
            starts.append(clock())
            attempt.failed()

    for user in (1, 2, 3):
        await guess(user)
    assert starts == [1_000.0] * 3  # below the ceiling: no waiting
    assert limits.slowed
    for user in (4, 5, 6, 1):
        await guess(user)
    assert starts[3:] == [1_000.5, 1_001.0, 1_001.5, 1_002.0]  # 2 per second
    clock.now += HOUR
    assert not limits.slowed
    await guess(7)
    assert starts[-1] == clock.now  # no wait in a new hour
    assert limits.sweep() == 6  # user 7's failure is recent
    clock.now += HOUR
    assert limits.sweep() == 1
    assert len(limits) == 0


async def test_the_queue_is_round_robin_and_fresh_accounts_go_first(clock):
    limits = limiter(clock, per_user_per_hour=1000, global_per_hour=1)
    order: list[int] = []

    async def guess_forever(user: int) -> None:
        while True:
            async with limits.attempt(user) as attempt:
                order.append(user)
                await asyncio.sleep(0)
                attempt.failed()

    holder = Gate(limits, 99)
    await holder.inside.wait()
    guessers = [asyncio.create_task(guess_forever(user)) for user in (1, 2, 3)]
    await until(lambda: limits.waiting() == 3)
    holder.release.set()
    await until(lambda: len(order) >= 12)
    assert order[:12] == [1, 2, 3] * 4  # one place each: round robin
    assert limits.slowed

    # An account that has not failed goes ahead of the three that keep failing.
    assert limits.failures(CAROL) == 0
    before = len(order)
    async with limits.attempt(CAROL):
        served_after = len(order) - before
    assert served_after <= 1  # at most the guess being checked when Carol arrived
    for task in guessers:
        task.cancel()
    await asyncio.gather(*guessers, return_exceptions=True)
    await holder.task


async def test_a_cancelled_waiter_gives_its_place_up(clock):
    limits = limiter(clock)
    holder = Gate(limits, ALICE)
    await holder.inside.wait()
    waiter = asyncio.create_task(wrong(limits, BOB))
    await until(lambda: limits.waiting() == 1)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert limits.waiting() == 0
    holder.release.set()
    await holder.task
    await wrong(limits, CAROL)  # the turn is free again
    assert limits.failures(BOB) == 0 and limits.failures(CAROL) == 1
    assert not limits._busy


async def test_sweep_forgets_stale_accounts_only(clock):
    limits = limiter(clock)
    await wrong(limits, ALICE)
    clock.now += HOUR / 2
    await wrong(limits, BOB)
    assert limits.sweep() == 0
    clock.now += HOUR / 2
    assert limits.sweep() == 1  # Alice's failure is an hour old; Bob's is not
    assert limits.failures(ALICE) == 0 and limits.failures(BOB) == 1
    clock.now += HOUR
    assert limits.sweep() == 1
    assert len(limits) == 0


def test_limits_are_validated():
    with pytest.raises(ValueError):
        AttemptLimiter(PEPPER, per_user_per_hour=0)
    with pytest.raises(ValueError):
        AttemptLimiter(PEPPER, global_per_hour=0)
    with pytest.raises(ValueError):
        AttemptLimiter(PEPPER, slow_per_second=0)
    with pytest.raises(ValueError):
        AttemptLimiter(b"short")


# -- the Argon2id thread ------------------------------------------------------------------


async def test_the_kdf_thread_runs_submissions_before_queued_unlocks():
    kdf = KdfThread("test-kdf")
    started = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def blocker() -> None:
        started.set()
        release.wait(10)

    first = kdf.run(UNLOCK, blocker)
    busy = asyncio.ensure_future(first)
    await asyncio.to_thread(started.wait, 10)
    unlocks = [asyncio.ensure_future(kdf.run(UNLOCK, order.append, f"u{n}")) for n in range(3)]
    cancelled = asyncio.ensure_future(kdf.run(UNLOCK, order.append, "cancelled"))
    submissions = [asyncio.ensure_future(kdf.run(SUBMISSION, order.append, f"s{n}")) for n in range(2)]
    await until(lambda: kdf.pending() == 6)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    release.set()
    await asyncio.gather(busy, *unlocks, *submissions)
    assert order == ["s0", "s1", "u0", "u1", "u2"]

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await kdf.run(SUBMISSION, boom)


def draft() -> ReportDraft:
    return ReportDraft(
        kind="corruption",
        triage={"category": "bribery", "governorate": "hebron"},
        fields={"description": "a bribe was asked for a permit"},
    )


async def stored_report(sessionmaker, vault):
    sealed = await vault.seal(draft())
    uow = UnitOfWork(sessionmaker)
    vault.store(uow, sealed)
    await uow.commit()
    return sealed


def guess() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(20))


async def test_a_submission_is_sealed_before_queued_unlocks(sessionmaker, vault, monkeypatch):
    order: list[str] = []
    real_derive = reports.derive_reporter_keys
    unlock_guesses = {guess() for _ in range(4)}

    def recording(receipt, *args):
        order.append("unlock" if receipt in unlock_guesses else "seal")
        return real_derive(receipt, *args)

    monkeypatch.setattr(reports, "derive_reporter_keys", recording)
    started, release = threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(10)

    busy = asyncio.ensure_future(reports._KDF_THREAD.run(UNLOCK, blocker))
    await asyncio.to_thread(started.wait, 10)
    unlocks = [asyncio.ensure_future(vault.unlock_with_receipt(g)) for g in unlock_guesses]
    await until(lambda: reports._KDF_THREAD.pending() == 4)
    seal = asyncio.ensure_future(vault.seal(draft()))
    await until(lambda: reports._KDF_THREAD.pending() == 5)
    release.set()
    await busy
    assert await asyncio.gather(*unlocks) == [None] * 4
    assert (await seal).receipt
    assert order == ["seal"] + ["unlock"] * 4


async def test_fifty_guessing_accounts_do_not_keep_a_reporter_out(sessionmaker, vault):
    """50 accounts guess continuously (the global ceiling is passed, so everything is paced
    at the default 5 per second); a reporter who types the right receipt gets in within 10 s."""
    sealed = await stored_report(sessionmaker, vault)
    limits = AttemptLimiter(PEPPER, per_user_per_hour=1_000_000, global_per_hour=60)
    wrong_guesses = 0

    async def guess_forever(user: int) -> None:
        nonlocal wrong_guesses
        while True:
            async with limits.attempt(user) as attempt:
                case = await vault.unlock_with_receipt(guess())
                if case is None:
                    attempt.failed()
                    wrong_guesses += 1

    guessers = [asyncio.create_task(guess_forever(10_000 + n)) for n in range(50)]
    try:
        await until(lambda: limits.slowed and limits.waiting() >= 45, timeout=60)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with limits.attempt(ALICE) as attempt:
            case = await vault.unlock_with_receipt(sealed.receipt)
            if case is None:
                attempt.failed()
        waited = loop.time() - started
    finally:
        for task in guessers:
            task.cancel()
        await asyncio.gather(*guessers, return_exceptions=True)
    assert case is not None and case.report_id == sealed.report_id
    assert waited < 10.0, f"the reporter waited {waited:.1f} s"
    assert wrong_guesses >= 60  # the guessers really were past the ceiling
