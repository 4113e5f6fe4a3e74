"""Issue 12: what the bot keeps in Redis for several replicas, against a real Redis.

The machine's Redis (database 15, flushed) for the shared stores and the ring; a
``redis-server`` of the test's own for persistence, ACLs and outages. The conversation
storage's contract tests run on Redis too (tests/test_storage_fsm.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
from types import SimpleNamespace

import pytest
import pytest_asyncio
from aiogram.fsm.storage.base import StorageKey
from redis.asyncio import Redis

from nazaha.handlers.redis_memory import (
    PseudonymousEventIsolation,
    RedisAttemptCounts,
    RedisReceipts,
    RedisRestartNotice,
    RedisSafetyReads,
    RedisSessionKeys,
    RedisThrottle,
    RedisUpdateMarks,
    case_from_bytes,
    case_to_bytes,
)
from nazaha.storage.attempts import AttemptLimiter, TooManyAttempts
from nazaha.storage.crypto import (
    SharedStateKey,
    TamperedData,
    TeamPrivateKey,
    open_ring_grant,
    open_ring_request,
    ring_auth_key,
    ring_request,
    seal_ring_grant,
)
from nazaha.storage.redis_fsm import RedisFsmStorage
from nazaha.storage.redis_ring import RedisRing, RingUnavailable
from nazaha.storage.reports import UnlockedCase
from tests.redis_support import FixedRing, shared_redis, wait_for

BOT_ID, USER_ID = 7_123_456_789, 987_654_321
SECRET = "رشوة في مكتب الترخيص secret-marker-2718"


@pytest_asyncio.fixture
async def redis_db():
    async with shared_redis() as redis:
        yield redis


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def all_entries(redis: Redis) -> dict[bytes, bytes]:
    """Every key name and its raw value (strings, hashes and sorted sets flattened)."""
    found: dict[bytes, bytes] = {}
    async for name in redis.scan_iter(match="*", count=1000):
        kind = await redis.type(name)
        if kind == b"string":
            found[name] = await redis.get(name) or b""
        elif kind == b"hash":
            found[name] = b" ".join(k + b"=" + v for k, v in (await redis.hgetall(name)).items())
        elif kind == b"zset":
            found[name] = b" ".join(m for m, _ in await redis.zrange(name, 0, -1, withscores=True))
        elif kind == b"set":
            found[name] = b" ".join(await redis.smembers(name))
        else:
            found[name] = b""
    return found


def assert_no_ids_or_text(entries: dict[bytes, bytes], *needles: object) -> None:
    for name, value in entries.items():
        for needle in needles:
            raw = str(needle).encode()
            assert raw not in name, (name, needle)
            assert raw not in value, (name, needle)


# -- the shared key and its hand-over ------------------------------------------------------


def test_shared_key_names_and_seals_bound_to_the_name():
    key = SharedStateKey.generate()
    name = key.name("fsm", BOT_ID, USER_ID)
    assert len(name) == 64 and str(USER_ID) not in name
    assert name != SharedStateKey.generate().name("fsm", BOT_ID, USER_ID)
    sealed = key.seal(name, SECRET.encode())
    assert SECRET.encode() not in sealed and key.open(name, sealed) == SECRET.encode()
    with pytest.raises(TamperedData):
        key.open(key.name("fsm", BOT_ID, USER_ID + 1), sealed)  # moved to another name
    with pytest.raises(TamperedData):
        SharedStateKey.generate().open(name, sealed)  # another key
    assert "redacted" in repr(key)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_ring_requests_and_grants_need_the_bot_key():
    bot_key, other_key = secrets.token_bytes(32), secrets.token_bytes(32)
    auth, forged = ring_auth_key(bot_key), ring_auth_key(other_key)
    member = TeamPrivateKey.generate()
    request = ring_request(auth, "m1", member.public_key())
    assert open_ring_request(auth, "m1", request) == member.public_key()
    for bad in (lambda: open_ring_request(forged, "m1", request), lambda: open_ring_request(auth, "m2", request)):
        with pytest.raises(TamperedData):
            bad()
    shared = SharedStateKey.generate()
    grant = seal_ring_grant(auth, shared, "m1", member.public_key())
    opened = open_ring_grant(auth, member, "m1", grant)
    assert opened.epoch == shared.epoch and opened.name("x", 1) == shared.name("x", 1)
    with pytest.raises(TamperedData):  # made by someone without the bot key
        open_ring_grant(auth, member, "m1", seal_ring_grant(forged, shared, "m1", member.public_key()))
    with pytest.raises(TamperedData):  # made for another member
        open_ring_grant(auth, member, "m2", grant)


async def beat_until_cancelled(ring: RedisRing) -> None:
    while True:
        await ring.beat()
        await asyncio.sleep(0.02)


async def test_the_first_process_makes_the_key_and_the_next_receives_it(redis_db):
    bot_key = secrets.token_bytes(32)
    first = RedisRing(redis_db, bot_key, ttl=5)
    assert await first.join() is True and first.fresh
    second = RedisRing(redis_db, bot_key, ttl=5)
    beating = asyncio.create_task(beat_until_cancelled(first))
    try:
        assert await second.join(timeout=20) is False and not second.fresh
    finally:
        beating.cancel()
    assert second.shared.epoch == first.shared.epoch
    assert second.shared.name("fsm", 1) == first.shared.name("fsm", 1)
    entries = await all_entries(redis_db)
    # Nothing in Redis opens the key: the epoch id, member ids and (gone) requests only.
    assert not any(name.startswith(b"nazaha:ring:grant") for name in entries)
    assert set(entries) <= {b"nazaha:ring:epoch", b"nazaha:ring:members", b"nazaha:ring:wants"}


async def test_a_process_without_the_bot_key_gets_nothing(redis_db):
    first = RedisRing(redis_db, secrets.token_bytes(32), ttl=5)
    await first.join()
    intruder = RedisRing(redis_db, secrets.token_bytes(32), ttl=5)
    beating = asyncio.create_task(beat_until_cancelled(first))
    try:
        with pytest.raises(RingUnavailable):
            await intruder.join(timeout=1.0)
    finally:
        beating.cancel()
    assert await redis_db.smembers("nazaha:ring:wants") == set()  # its request was dropped


async def test_a_forged_grant_is_ignored(redis_db):
    bot_key = secrets.token_bytes(32)
    first = RedisRing(redis_db, bot_key, ttl=5)
    await first.join()
    second = RedisRing(redis_db, bot_key, ttl=5)
    joining = asyncio.create_task(second.join(timeout=20))
    await wait_for(lambda: redis_db.sismember("nazaha:ring:wants", second.member_id))
    # Someone who can write to Redis hands over a key of their own: refused.
    fake = seal_ring_grant(ring_auth_key(secrets.token_bytes(32)), SharedStateKey.generate(),
                           second.member_id, second._private.public_key())
    await redis_db.set(f"nazaha:ring:grant:{second.member_id}", fake)

    async def fake_taken() -> bool:
        return not await redis_db.exists(f"nazaha:ring:grant:{second.member_id}")

    await wait_for(fake_taken)
    await first.beat()  # the real grant
    await joining
    assert second.shared.epoch == first.shared.epoch


async def test_the_last_to_leave_ends_the_key_and_the_next_start_is_fresh(redis_db):
    bot_key = secrets.token_bytes(32)
    first = RedisRing(redis_db, bot_key, ttl=5)
    await first.join()
    second = RedisRing(redis_db, bot_key, ttl=5)
    beating = asyncio.create_task(beat_until_cancelled(first))
    try:
        await second.join(timeout=20)
    finally:
        beating.cancel()
    storage = RedisFsmStorage(redis_db, second)
    await storage.set_data(StorageKey(BOT_ID, USER_ID, USER_ID), {"d": SECRET})
    assert await first.leave() is False  # the second still holds it
    assert await redis_db.exists("nazaha:ring:epoch")
    assert await second.leave() is True
    assert not await redis_db.exists("nazaha:ring:epoch")
    third = RedisRing(redis_db, bot_key, ttl=5)
    assert await third.join() is True
    # What the earlier key sealed is deleted: nobody could read it any more.
    assert [n for n in await all_entries(redis_db) if not n.startswith(b"nazaha:ring:")] == []


async def test_after_a_crash_the_key_expires_and_a_beat_notices_another_key(redis_db):
    bot_key = secrets.token_bytes(32)
    crashed = RedisRing(redis_db, bot_key, ttl=0.3)
    await crashed.join()
    late = RedisRing(redis_db, bot_key, ttl=0.3)
    assert await late.join(timeout=20) is True  # nobody answered; the record expired
    assert late.shared.epoch != crashed.shared.epoch
    # The crashed one was only paused: its next beat finds another key current and joins it.
    beating = asyncio.create_task(beat_until_cancelled(late))
    try:
        await crashed.beat()
    finally:
        beating.cancel()
    assert crashed.shared.epoch == late.shared.epoch and not crashed.fresh


# -- conversations in Redis ----------------------------------------------------------------


async def test_records_are_named_by_hmac_sealed_and_shared_by_replicas(redis_db):
    ring = FixedRing()
    one, other = RedisFsmStorage(redis_db, ring), RedisFsmStorage(redis_db, ring)
    key = StorageKey(bot_id=BOT_ID, chat_id=USER_ID, user_id=USER_ID)
    await one.set_state(key, "Form:description")
    await one.set_data(key, {"description": SECRET})
    assert one.record_key(key).startswith("nazaha:fsm:") and len(one.record_key(key)) == len("nazaha:fsm:") + 64
    assert await other.get_data(key) == {"description": SECRET}  # another replica reads it
    entries = await all_entries(redis_db)
    assert set(entries) == {one.record_key(key).encode(), b"nazaha:fsm:due"}
    assert_no_ids_or_text(entries, BOT_ID, USER_ID, SECRET, "description", "Form")
    assert 0 < await redis_db.pttl(one.record_key(key)) <= (24 * 3600 + 30 * 86400) * 1000
    # Under another key (the replicas all stopped: a new key was made) nothing opens.
    stranger = RedisFsmStorage(redis_db, FixedRing())
    assert await stranger.get_data(key) == {} and await stranger.all_data() == []
    # The record moved under another name does not open either.
    moved = one.record_key(StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1))
    await redis_db.set(moved, await redis_db.get(one.record_key(key)))
    assert await one.get_data(StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)) == {}


async def test_replicas_purging_at_once_leave_one_tombstone_and_lose_no_write(redis_db):
    ring, clock = FixedRing(), SimpleNamespace(now=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    now = lambda: clock.now  # noqa: E731
    replicas = [RedisFsmStorage(redis_db, ring, clock=now) for _ in range(3)]
    draft, fresh = StorageKey(BOT_ID, 1, 1), StorageKey(BOT_ID, 2, 2)
    await replicas[0].set_data(draft, {"d": SECRET})
    await replicas[0].set_data(fresh, {"d": "old"})
    clock.now += dt.timedelta(hours=25)
    await replicas[1].set_data(fresh, {"d": "new"})  # written again just before the purge
    counts = await asyncio.gather(*(r.purge_expired() for r in replicas))
    assert sum(counts) >= 1
    assert await replicas[2].get_data(fresh) == {"d": "new"}
    assert await replicas[2].pop_expired_notice(draft) is True
    assert await replicas[0].pop_expired_notice(draft) is False
    assert await replicas[0].size() == 1


# -- the per-user memory -----------------------------------------------------------------


def unlocked_case() -> UnlockedCase:
    return UnlockedCase(
        report_id=secrets.token_hex(16), designation="R-7KQ2MX", kind="report", status="received",
        outcome=None, created_on=dt.date(2025, 3, 1), data_key=secrets.token_bytes(32),
        reporter_public_key=secrets.token_bytes(1216), reporter_public_key_missing=True,
        epoch_keys=(secrets.token_bytes(32), secrets.token_bytes(32)),
        reporter_private=TeamPrivateKey.generate(),
    )


def test_an_unlocked_case_round_trips_through_its_encoding():
    case = unlocked_case()
    back = case_from_bytes(case_to_bytes(case))
    assert back == case and back.data_key == case.data_key
    assert back.epoch_keys == case.epoch_keys and back.reporter_public_key == case.reporter_public_key
    assert back.reporter_public_key_missing and back.reporter_private.to_bytes() == case.reporter_private.to_bytes()


async def test_session_keys_in_redis_expire_renew_and_are_shared(redis_db):
    clock, ring = Clock(), FixedRing()
    keys, other = RedisSessionKeys(redis_db, ring, 900, clock=clock), RedisSessionKeys(redis_db, ring, 900, clock=clock)
    case = unlocked_case()
    ref = await keys.put(case)
    clock.now += 899
    assert (await other.get(ref)).data_key == case.data_key  # another replica; renews
    clock.now += 899
    assert await keys.get(ref) == case
    fresh = dataclasses.replace(case, status="in_review")
    await keys.replace(ref, fresh)
    assert (await other.get(ref)).status == "in_review"
    assert_no_ids_or_text(await all_entries(redis_db), case.report_id, case.designation, ref)
    assert case.data_key not in b"".join((await all_entries(redis_db)).values())
    clock.now += 901
    assert await keys.get(ref) is None and await redis_db.dbsize() == 0
    await keys.replace(ref, case)  # gone: nothing comes back
    assert await keys.get(ref) is None
    ref2 = await keys.put(case)
    await other.drop(ref2)
    assert await keys.get(ref2) is None and await keys.get("unknown") is None
    assert keys.sweep() == 0  # Redis forgets on time by itself
    ref3 = await keys.put(case)
    assert 0 < await redis_db.pttl(keys._store.name(ref3)) <= 900_000


async def test_safety_reads_in_redis(redis_db):
    clock, ring = Clock(), FixedRing()
    reads, other = RedisSafetyReads(redis_db, ring, ttl=3600, clock=clock), RedisSafetyReads(redis_db, ring, ttl=3600, clock=clock)
    assert not await reads.seen(1)
    await reads.acknowledge(1)
    await reads.acknowledge(USER_ID)
    assert await other.seen(1) and await other.seen(USER_ID) and not await other.seen(3)
    assert_no_ids_or_text(await all_entries(redis_db), USER_ID)
    await other.forget(USER_ID)  # /wipe on another replica
    assert not await reads.seen(USER_ID)
    clock.now += 3599
    assert await reads.seen(1)
    clock.now += 1
    assert not await reads.seen(1)
    assert 0 < await redis_db.pttl(reads._store.name(1)) <= 3_600_000


async def test_receipts_in_redis_are_handed_out_once_across_replicas(redis_db):
    clock, ring = Clock(), FixedRing()
    one, two = RedisReceipts(redis_db, ring, ttl=900, clock=clock), RedisReceipts(redis_db, ring, ttl=900, clock=clock)
    receipt = "1234 5678 9012 3456 7890"
    await one.keep(USER_ID, receipt)
    assert_no_ids_or_text(await all_entries(redis_db), USER_ID, receipt, receipt.replace(" ", ""))
    assert await two.first_contact(USER_ID) and not await one.first_contact(USER_ID)
    await one.tell_again(USER_ID)
    assert await two.first_contact(USER_ID)
    taken = await asyncio.gather(one.take(USER_ID), two.take(USER_ID))
    assert sorted(t is not None for t in taken) == [False, True]  # once, whoever asked
    kept = next(t for t in taken if t is not None)
    assert kept.receipt == receipt and kept.expires_at == clock.now + 900
    await two.keep(USER_ID, kept.receipt, expires_at=kept.expires_at)  # put back
    clock.now += 900
    assert not await one.has(USER_ID) and await one.take(USER_ID) is None
    await one.keep(USER_ID, receipt, expires_at=clock.now - 1)  # already expired: not kept
    assert await redis_db.dbsize() == 0 or not await one.has(USER_ID)


async def test_restart_notice_window_is_shared_and_each_account_told_once(redis_db):
    ring, t0 = FixedRing(), dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc)
    now = [t0]
    clock = lambda: now[0]  # noqa: E731
    fresh = RedisRestartNotice(redis_db, ring, clock=clock)
    joined = RedisRestartNotice(redis_db, ring, clock=clock)
    await joined.open_until(None)  # started first, nothing published: no window
    assert not await joined.first_contact(1)
    await fresh.open_until(t0 + dt.timedelta(hours=24))
    late = RedisRestartNotice(redis_db, ring, clock=clock)
    await late.open_until(None)  # joins after: adopts the window
    assert late.until == t0 + dt.timedelta(hours=24)
    assert await late.first_contact(USER_ID) and not await fresh.first_contact(USER_ID)
    joined._looked -= joined.recheck  # the early one looks again (every 10 s)
    assert await joined.first_contact(2) and not await late.first_contact(2)
    assert_no_ids_or_text(await all_entries(redis_db), USER_ID)
    now[0] = t0 + dt.timedelta(hours=24)
    assert not await late.first_contact(3) and late.until is None


async def test_throttle_buckets_in_redis_are_shared_by_replicas(redis_db):
    now, ring = Clock(0.0), FixedRing()
    one = RedisThrottle(redis_db, ring, rate=2.0, burst=3, clock=now)
    two = RedisThrottle(redis_db, ring, rate=2.0, burst=3, clock=now)
    assert [await one.allow(USER_ID), await two.allow(USER_ID), await one.allow(USER_ID)] == [(True, False)] * 3
    assert await two.allow(USER_ID) == (False, True)
    assert await one.allow(USER_ID) == (False, False)  # warned already
    assert await two.allow(1) == (True, False)  # per user
    now.now += 0.5  # one token back
    assert await one.allow(USER_ID) == (True, False)
    assert await two.allow(USER_ID) == (False, True)
    assert_no_ids_or_text(await all_entries(redis_db), USER_ID)
    assert 0 < await redis_db.pttl(one._store.name(USER_ID)) <= 2_500


async def test_wrong_receipts_count_across_replicas(redis_db):
    clock, ring = Clock(), FixedRing()

    def limiter() -> AttemptLimiter:
        return AttemptLimiter(
            secrets.token_bytes(32), per_user_per_hour=3, global_per_hour=4,
            shared=RedisAttemptCounts(redis_db, ring, clock=clock),
        )

    one, two = limiter(), limiter()
    for replica in (one, two, one):
        async with replica.attempt(USER_ID) as attempt:
            attempt.failed()
    with pytest.raises(TooManyAttempts):  # three wrong receipts over two replicas
        async with two.attempt(USER_ID):
            pytest.fail("refused before checking")
    async with two.attempt(2) as attempt:  # another account is not limited; one more failure
        attempt.failed()
    counts = RedisAttemptCounts(redis_db, ring, clock=clock)
    assert await counts.failures(USER_ID) == 3 and await counts.slowed(4) and not await counts.slowed(5)
    assert len(one) == 0 and len(two) == 0  # nothing kept per account in the processes
    assert_no_ids_or_text(await all_entries(redis_db), USER_ID)
    clock.now += 3600
    assert await counts.failures(USER_ID) == 0 and not await counts.slowed(4)
    async with one.attempt(USER_ID):
        pass


async def test_update_marks_are_shared_and_set_only_when_done(redis_db):
    ring = FixedRing()
    one, two = RedisUpdateMarks(redis_db, ring), RedisUpdateMarks(redis_db, ring)
    assert not await one.seen(BOT_ID, 10)
    await two.done(BOT_ID, 10)
    assert await one.seen(BOT_ID, 10) and not await one.seen(BOT_ID, 11) and not await one.seen(1, 10)
    [name] = await redis_db.keys("*")
    prefix, digest = name.rsplit(b":", 1)
    assert prefix == b"nazaha:update" and len(digest) == 64 and int(digest, 16) >= 0
    assert str(BOT_ID).encode() not in name
    assert 0 < await redis_db.pttl(name) <= 2 * 3600 * 1000


async def test_the_middleware_skips_what_another_replica_did_and_marks_only_commits(redis_db):
    from nazaha.handlers.middlewares import RecentUpdates, UnitOfWorkMiddleware

    marks = RedisUpdateMarks(redis_db, FixedRing())
    committed: list[int] = []

    class Uow:
        def __init__(self, update_id: int, fail: bool = False) -> None:
            self.update_id, self.fail = update_id, fail

        async def commit(self) -> None:
            if self.fail:
                raise RuntimeError("the database refused")
            committed.append(self.update_id)

    async def handler(event, data):
        return "handled"

    bot = SimpleNamespace(id=BOT_ID)

    async def feed(middleware: UnitOfWorkMiddleware, update_id: int, *, fail: bool = False):
        from aiogram.types import Update

        event = Update(update_id=update_id)
        return await middleware(handler, event, {"bot": bot, "uow": Uow(update_id, fail)})

    import nazaha.handlers.middlewares as middlewares

    async def no_apology(self, bot, event, what, settlement=None):  # the apology needs a chat; none here
        self.recent.release(bot.id, event.update_id)

    original = middlewares.UnitOfWorkMiddleware._failed
    middlewares.UnitOfWorkMiddleware._failed = no_apology
    try:
        one = UnitOfWorkMiddleware(RecentUpdates(), shared=marks)
        two = UnitOfWorkMiddleware(RecentUpdates(), shared=marks)
        assert await feed(one, 1) == "handled"
        assert await feed(two, 1) is None  # the other replica already did it
        assert await feed(one, 2, fail=True) is None
        assert not await marks.seen(BOT_ID, 2)  # a failed update leaves no mark...
        assert await feed(two, 2) == "handled"  # ...so a redelivery is handled
        assert committed == [1, 2]
    finally:
        middlewares.UnitOfWorkMiddleware._failed = original


async def test_the_per_user_lock_has_a_pseudonymous_name_and_a_renewed_lease(redis_db):
    ring = FixedRing()
    isolation = PseudonymousEventIsolation(redis_db, ring, lease=0.3)
    other = PseudonymousEventIsolation(redis_db, ring, lease=0.3)
    key = StorageKey(bot_id=BOT_ID, chat_id=USER_ID, user_id=USER_ID)
    name = isolation.key_builder.build(key, "lock")
    assert name.startswith("nazaha:lock:") and str(USER_ID) not in name and str(BOT_ID) not in name
    renewals = 0
    from redis.asyncio.lock import Lock

    original = Lock.reacquire

    async def counting(self):
        nonlocal renewals
        renewals += 1
        return await original(self)

    Lock.reacquire = counting
    order: list[str] = []
    try:
        async with isolation.lock(key):
            order.append("first in")
            waiting = asyncio.create_task(_take(other, key, order))
            await wait_for(lambda: renewals >= 4)  # held well past the 0.3 s lease
            assert await redis_db.exists(name) and not waiting.done()
            order.append("first out")
        await waiting
    finally:
        Lock.reacquire = original
    assert order == ["first in", "first out", "second in"]
    assert not await redis_db.exists(name)


async def _take(isolation: PseudonymousEventIsolation, key: StorageKey, order: list[str]) -> None:
    async with isolation.lock(key):
        order.append("second in")


async def test_a_redis_failure_is_left_unhandled_so_the_update_is_delivered_again(caplog):
    """The errors handler marks ordinary failures handled (logged by type), but not an
    unreachable Redis: that propagates, so a webhook answers 500 and Telegram retries."""
    from aiogram import Bot, Dispatcher
    from aiogram.types import Update
    from redis.exceptions import ConnectionError as RedisConnectionError

    from nazaha.bot.error_logging import install_error_logging

    raised: list[Exception] = []
    dp = Dispatcher()
    install_error_logging(dp)

    @dp.message()
    async def failing(message) -> None:
        raise raised[0]

    bot = Bot("42:TEST-not-a-real-token")
    update = Update.model_validate({
        "update_id": 1,
        "message": {"message_id": 1, "date": 0, "text": "hi", "chat": {"id": 5, "type": "private"},
                    "from": {"id": 5, "is_bot": False, "first_name": "x"}},
    }, context={"bot": bot})
    try:
        raised.append(ValueError("ordinary"))
        await dp.feed_update(bot, update)  # handled: nothing propagates
        raised[0] = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
        with pytest.raises(RedisConnectionError):
            await dp.feed_update(bot, update)
    finally:
        await bot.session.close()
    assert "update handling failed: ValueError in a message update" in caplog.text
    assert "shared state (Redis) unavailable (ConnectionError) in a message update" in caplog.text
