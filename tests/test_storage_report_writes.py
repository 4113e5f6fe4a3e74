"""Report-side writes: batches written a moment later, together, in random order, each in a
savepoint that also claims its update id (a redelivered "Send" stores nothing twice)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time

import pytest
from sqlalchemy import event, select

from nazaha.storage.database import engine_of, write_transaction
from nazaha.storage.models import ProcessedUpdate, SystemSetting
from nazaha.storage.report_writes import ReportBatch, ReportWriter, hour_of
from nazaha.storage.unit_of_work import DuplicateUpdate, purge_processed_updates

BOT = 7_123_456_789  # bot ids exceed 32 bits


def put(name: str, value: bytes = b"v", log: list | None = None):
    async def op(session):
        if log is not None:
            log.append((name, session))
        session.add(SystemSetting(name=name, value=value))

    return op


async def boom(session):
    raise ValueError("this batch's own failure")


def batch(*ops, update_id: int | None = None, bot_id: int | None = BOT) -> ReportBatch:
    b = ReportBatch(bot_id=bot_id if update_id is not None else None, update_id=update_id)
    for op in ops:
        b.add(op)
    return b


async def settings(sessionmaker) -> dict[str, bytes]:
    async with sessionmaker() as session:
        rows = await session.execute(select(SystemSetting.name, SystemSetting.value))
        return dict(rows.all())


async def claimed(sessionmaker) -> list[tuple[int, int, dt.datetime]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(ProcessedUpdate.bot_id, ProcessedUpdate.update_id, ProcessedUpdate.claimed_at)
            .order_by(ProcessedUpdate.bot_id, ProcessedUpdate.update_id)
        )
        return [tuple(row) for row in rows.all()]


class Commits:
    """Counts the async engine's commits (one per write transaction)."""

    def __init__(self, sessionmaker) -> None:
        self.engine = engine_of(sessionmaker).sync_engine
        self.count = 0

    def __enter__(self) -> Commits:
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "commit", self._commit)

    def _commit(self, conn) -> None:
        self.count += 1


async def outcome(writer: ReportWriter, b: ReportBatch) -> str:
    try:
        await writer.commit(b)
    except DuplicateUpdate:
        return "duplicate"
    except ValueError:
        return "failed"
    except Exception as error:  # e.g. IntegrityError: refused by the database
        return type(error).__name__
    return "ok"


# -- basics --------------------------------------------------------------------------------


def test_arguments_are_checked(sessionmaker):
    with pytest.raises(ValueError):
        ReportBatch(bot_id=None, update_id=1)
    with pytest.raises(ValueError):
        ReportWriter(sessionmaker, max_delay=-0.1)
    b = ReportBatch(BOT, 1)
    b.add(put("a"))
    b.add(put("b"))
    assert len(b) == 2 and len(ReportBatch()) == 0


def test_hour_of_rounds_down():
    moment = dt.datetime(2026, 5, 4, 13, 59, 59, 999_999, tzinfo=dt.timezone.utc)
    assert hour_of(moment) == dt.datetime(2026, 5, 4, 13, tzinfo=dt.timezone.utc)
    assert hour_of(hour_of(moment)) == hour_of(moment)


async def test_a_batch_is_written_with_its_claim(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0)
    before = dt.datetime.now(dt.timezone.utc)
    await writer.commit(batch(put("a", b"1"), put("b", b"2"), update_id=1))
    after = dt.datetime.now(dt.timezone.utc)
    assert await settings(sessionmaker) == {"a": b"1", "b": b"2"}  # committed on return
    [(bot_id, update_id, claimed_at)] = await claimed(sessionmaker)
    assert (bot_id, update_id) == (BOT, 1)
    # The claim records the hour only.
    assert claimed_at.minute == claimed_at.second == claimed_at.microsecond == 0
    assert hour_of(before) <= claimed_at <= hour_of(after)


async def test_a_batch_without_an_update_id_claims_nothing(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0)
    await writer.commit(batch(put("a")))
    await writer.commit(batch(put("b")))
    assert sorted(await settings(sessionmaker)) == ["a", "b"]
    assert await claimed(sessionmaker) == []


async def test_an_empty_batch_writes_nothing_at_all(sessionmaker, engine):
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await ReportWriter(sessionmaker, max_delay=0).commit(batch(update_id=3))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert statements == []


# -- duplicates ----------------------------------------------------------------------------


async def test_a_duplicate_update_writes_nothing_of_its_batch(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0)
    await writer.commit(batch(put("first"), update_id=42))
    with pytest.raises(DuplicateUpdate):
        await writer.commit(batch(put("second"), put("third"), update_id=42))
    assert await settings(sessionmaker) == {"first": b"v"}
    # The same update id from another bot is another update.
    await writer.commit(batch(put("other bot"), update_id=42, bot_id=BOT + 1))
    assert [(b, u) for b, u, _ in await claimed(sessionmaker)] == [(BOT, 42), (BOT + 1, 42)]
    # A second writer (another replica, or the bot after a restart) sees the claim too.
    with pytest.raises(DuplicateUpdate):
        await ReportWriter(sessionmaker, max_delay=0).commit(batch(put("late"), update_id=42))
    assert sorted(await settings(sessionmaker)) == ["first", "other bot"]


@pytest.mark.parametrize("writers", ["one writer", "one writer per copy"])
async def test_concurrent_duplicates_exactly_one_wins(sessionmaker, writers):
    shared = ReportWriter(sessionmaker, max_delay=0)

    def writer() -> ReportWriter:
        return shared if writers == "one writer" else ReportWriter(sessionmaker, max_delay=0)

    results = await asyncio.gather(
        *(outcome(writer(), batch(put(f"copy{i}"), update_id=77)) for i in range(10))
    )
    assert results.count("ok") == 1 and results.count("duplicate") == 9
    winner = results.index("ok")
    assert list(await settings(sessionmaker)) == [f"copy{winner}"]
    assert len(await claimed(sessionmaker)) == 1


async def test_a_failing_op_rolls_back_its_claim_too(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0)
    with pytest.raises(ValueError):
        await writer.commit(batch(put("a"), boom, update_id=5))
    assert await settings(sessionmaker) == {} and await claimed(sessionmaker) == []
    # The redelivered update is handled normally.
    await writer.commit(batch(put("a"), update_id=5))
    assert await settings(sessionmaker) == {"a": b"v"}
    assert [(b, u) for b, u, _ in await claimed(sessionmaker)] == [(BOT, 5)]


# -- together, a moment later, in random order ----------------------------------------------


async def test_batches_ready_together_share_one_transaction_in_shuffled_order(sessionmaker):
    seed, n, max_delay = 20261130, 8, 0.05
    replica = random.Random(seed)  # what the writer's rng will draw
    delay = replica.uniform(0, max_delay)
    order = list(range(n))
    replica.shuffle(order)
    assert order != sorted(order)  # this seed really reorders

    writer = ReportWriter(sessionmaker, max_delay=max_delay, rng=random.Random(seed))
    applied: list[tuple[str, object]] = []
    started = time.monotonic()
    with Commits(sessionmaker) as commits:
        results = await asyncio.gather(
            *(outcome(writer, batch(put(f"b{i}", log=applied), update_id=100 + i)) for i in range(n))
        )
    elapsed = time.monotonic() - started
    assert results == ["ok"] * n
    assert commits.count == 1  # one transaction for all of them
    assert len({id(session) for _, session in applied}) == 1
    assert [name for name, _ in applied] == [f"b{i}" for i in order]  # not arrival order
    assert elapsed >= delay - 0.005  # they waited for company first
    assert sorted(await settings(sessionmaker)) == sorted(f"b{i}" for i in range(n))
    assert [u for _, u, _ in await claimed(sessionmaker)] == list(range(100, 100 + n))


async def test_a_failing_batch_does_not_stop_the_others(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0.02, rng=random.Random(3))
    previous = ReportWriter(sessionmaker, max_delay=0)
    await previous.commit(batch(put("earlier"), update_id=200))
    batches = [batch(put(f"b{i}"), update_id=200 + i) for i in range(8)]  # 200: a duplicate
    batches[3].add(boom)
    batches[5] = batch(put("b5"), put("earlier"), update_id=205)  # a constraint in the database
    with Commits(sessionmaker) as commits:
        results = await asyncio.gather(*(outcome(writer, b) for b in batches))
    assert commits.count == 1
    assert results[0] == "duplicate" and results[3] == "failed"
    assert results[5] == "IntegrityError"
    assert [results[i] for i in (1, 2, 4, 6, 7)] == ["ok"] * 5
    assert sorted(await settings(sessionmaker)) == sorted(
        ["earlier"] + [f"b{i}" for i in (1, 2, 4, 6, 7)]
    )
    assert [u for _, u, _ in await claimed(sessionmaker)] == [200, 201, 202, 204, 206, 207]


async def test_flush_writes_what_is_waiting_now(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=600)  # would wait up to ten minutes
    waiting = asyncio.create_task(writer.commit(batch(put("late"), update_id=9)))
    while not writer._pending:  # the batch is queued
        await asyncio.sleep(0)
    assert not waiting.done()
    await writer.flush()
    await asyncio.wait_for(waiting, timeout=10)
    assert await settings(sessionmaker) == {"late": b"v"}
    await writer.flush()  # nothing left: a no-op


async def test_flush_finishes_a_batch_already_being_written(sessionmaker):
    """Shutdown must not cancel a report halfway through its transaction."""
    writer = ReportWriter(sessionmaker, max_delay=0)
    inside, release = asyncio.Event(), asyncio.Event()

    async def slow(session):
        inside.set()
        await release.wait()
        session.add(SystemSetting(name="slow", value=b"v"))

    writing = asyncio.create_task(writer.commit(batch(slow, update_id=12)))
    await asyncio.wait_for(inside.wait(), timeout=10)
    flushing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(writing, flushing), timeout=10)
    assert await settings(sessionmaker) == {"slow": b"v"}


async def test_a_cancelled_caller_does_not_withdraw_its_write(sessionmaker):
    writer = ReportWriter(sessionmaker, max_delay=0.02, rng=random.Random(1))
    other = asyncio.create_task(writer.commit(batch(put("other"), update_id=11)))
    cancelled = asyncio.create_task(writer.commit(batch(put("cancelled"), update_id=10)))
    while len(writer._pending) < 2:
        await asyncio.sleep(0)
    cancelled.cancel()
    await other
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert sorted(await settings(sessionmaker)) == ["cancelled", "other"]


# -- purge ---------------------------------------------------------------------------------


async def test_purge_processed_updates_by_hours(sessionmaker):
    this_hour = hour_of(dt.datetime.now(dt.timezone.utc))
    async with write_transaction(sessionmaker) as session:
        for update_id, hours_ago in ((1, 30), (2, 7), (3, 5), (4, 1), (5, 0)):
            session.add(
                ProcessedUpdate(
                    bot_id=BOT, update_id=update_id, claimed_at=this_hour - dt.timedelta(hours=hours_ago)
                )
            )
    assert await purge_processed_updates(sessionmaker, older_than_hours=6) == 2
    assert [u for _, u, _ in await claimed(sessionmaker)] == [3, 4, 5]
    assert await purge_processed_updates(sessionmaker, older_than_hours=2) == 1
    assert [u for _, u, _ in await claimed(sessionmaker)] == [4, 5]
    # The default keeps a claim one to two hours (the hour it was made in, then one more):
    # Telegram retries a webhook for minutes, and a restarted bot has no draft to repeat.
    assert await purge_processed_updates(sessionmaker) == 1
    assert [u for _, u, _ in await claimed(sessionmaker)] == [5]
    # A purged claim no longer blocks the id (Telegram stopped retrying long before).
    await ReportWriter(sessionmaker, max_delay=0).commit(batch(put("again"), update_id=1))
    assert await settings(sessionmaker) == {"again": b"v"}
