"""The per-update unit of work: one write transaction, dedup claim, after-commit actions."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select, update

from nazaha.storage.database import write_transaction
from nazaha.storage.models import ProcessedUpdate, SystemSetting
from nazaha.storage.unit_of_work import (
    DuplicateUpdate,
    UnitOfWork,
    current_uow,
    purge_processed_updates,
)

BOT = 7_123_456_789  # bot ids exceed 32 bits


def put(name: str, value: bytes):
    async def op(session):
        session.add(SystemSetting(name=name, value=value))

    return op


async def settings(sessionmaker) -> dict[str, bytes]:
    async with sessionmaker() as session:
        rows = await session.execute(select(SystemSetting.name, SystemSetting.value))
        return dict(rows.all())


async def claims(sessionmaker) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(ProcessedUpdate))


async def test_ops_and_claim_commit_together_then_actions_run(sessionmaker):
    events: list[str] = []
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=1)
    assert not await uow.is_processed()
    uow.add(put("a", b"1"))
    uow.add(put("b", b"2"))

    async def reply():
        # The data is committed before any reply goes out.
        events.append(f"reply saw {sorted(await settings(sessionmaker))}")

    uow.after_commit(reply)
    uow.after_commit(lambda: asyncio.sleep(0, events.append("second")))
    assert events == [] and await settings(sessionmaker) == {}
    await uow.commit()
    assert events == ["reply saw ['a', 'b']", "second"]
    assert await settings(sessionmaker) == {"a": b"1", "b": b"2"}
    async with UnitOfWork(sessionmaker, bot_id=BOT, update_id=1) as redelivered:
        assert await redelivered.is_processed()


async def test_duplicate_update_applies_nothing_and_sends_nothing(sessionmaker):
    first = UnitOfWork(sessionmaker, bot_id=BOT, update_id=42)
    first.add(put("a", b"first"))
    await first.commit()

    sent: list[str] = []
    again = UnitOfWork(sessionmaker, bot_id=BOT, update_id=42)
    again.add(put("b", b"second"))

    async def overwrite(session):
        await session.execute(update(SystemSetting).values(value=b"overwritten"))

    again.add(overwrite)
    again.after_commit(lambda: asyncio.sleep(0, sent.append("reply")))
    with pytest.raises(DuplicateUpdate):
        await again.commit()
    assert sent == []
    assert await settings(sessionmaker) == {"a": b"first"}

    # Same update id from another bot is a different update.
    other_bot = UnitOfWork(sessionmaker, bot_id=BOT + 1, update_id=42)
    other_bot.add(put("c", b"3"))
    await other_bot.commit()
    assert await claims(sessionmaker) == 2


async def test_failing_op_rolls_back_the_claim_too(sessionmaker):
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=5)
    uow.add(put("a", b"1"))

    async def boom(session):
        raise ValueError("boom")

    uow.add(boom)
    sent: list[str] = []
    uow.after_commit(lambda: asyncio.sleep(0, sent.append("reply")))
    with pytest.raises(ValueError):
        await uow.commit()
    assert sent == [] and await settings(sessionmaker) == {} and await claims(sessionmaker) == 0

    # The redelivered update is handled normally.
    retry = UnitOfWork(sessionmaker, bot_id=BOT, update_id=5)
    retry.add(put("a", b"1"))
    await retry.commit()
    assert await settings(sessionmaker) == {"a": b"1"}


async def test_after_commit_stops_at_the_first_failure(sessionmaker):
    events: list[str] = []
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=9)
    uow.add(put("a", b"1"))

    async def fail():
        events.append("fail")
        raise ConnectionError("telegram down")

    uow.after_commit(lambda: asyncio.sleep(0, events.append("first")))
    uow.after_commit(fail)
    uow.after_commit(lambda: asyncio.sleep(0, events.append("never")))
    with pytest.raises(ConnectionError):
        await uow.commit()
    assert events == ["first", "fail"]
    assert await settings(sessionmaker) == {"a": b"1"}  # already committed


async def test_empty_uow_writes_nothing_but_runs_actions(sessionmaker, engine):
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        sent: list[str] = []
        uow = UnitOfWork(sessionmaker, bot_id=None, update_id=None)
        uow.after_commit(lambda: asyncio.sleep(0, sent.append("reply")))
        await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert sent == ["reply"]
    assert statements == []


async def test_read_session_is_closed_by_commit_and_uow_is_single_use(sessionmaker):
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=3)
    session = await uow.read()
    assert await uow.read() is session
    await session.execute(select(SystemSetting))
    assert session.in_transaction()
    await uow.commit()
    assert not session.in_transaction()
    with pytest.raises(RuntimeError):
        uow.add(put("a", b"1"))
    with pytest.raises(RuntimeError):
        await uow.commit()


async def test_closed_uow_discards_its_writes(sessionmaker):
    async with UnitOfWork(sessionmaker, bot_id=BOT, update_id=4) as uow:
        uow.add(put("a", b"1"))
    assert not uow.is_open
    assert await settings(sessionmaker) == {} and await claims(sessionmaker) == 0


@pytest.mark.parametrize("lock", ["engine lock", "busy timeout only"])
async def test_many_concurrent_units_of_work_all_commit(sessionmaker, lock):
    options = {} if lock == "engine lock" else {"write_lock": None}

    async def handle(update_id: int) -> None:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=update_id, **options)
        token = current_uow.set(uow)
        try:
            session = await uow.read()
            await session.execute(select(SystemSetting))  # decide phase reads
            await asyncio.sleep(0)
            uow.add(put(f"k{update_id}", str(update_id).encode()))
            await uow.commit()
        finally:
            current_uow.reset(token)

    await asyncio.gather(*(handle(i) for i in range(50)))
    assert len(await settings(sessionmaker)) == 50
    assert await claims(sessionmaker) == 50


@pytest.mark.parametrize("writes", ["closures", "statements (SQLite lane)"])
async def test_concurrent_duplicates_exactly_one_wins(sessionmaker, writes):
    sent: list[int] = []

    async def handle(copy: int) -> bool:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=77)
        if writes == "closures":
            uow.add(put(f"copy{copy}", b"x"))
        else:
            uow.add(put_statement(sessionmaker, f"copy{copy}", b"x"))
        uow.after_commit(lambda: asyncio.sleep(0, sent.append(copy)))
        try:
            await uow.commit()
        except DuplicateUpdate:
            return False
        return True

    results = await asyncio.gather(*(handle(i) for i in range(10)))
    assert results.count(True) == 1 and len(sent) == 1
    assert list(await settings(sessionmaker)) == [f"copy{sent[0]}"]


async def test_purge_processed_updates(sessionmaker):
    today = dt.datetime.now(dt.timezone.utc).date()
    async with write_transaction(sessionmaker) as session:
        session.add(ProcessedUpdate(bot_id=BOT, update_id=1, processed_on=today - dt.timedelta(days=8)))
        session.add(ProcessedUpdate(bot_id=BOT, update_id=2, processed_on=today - dt.timedelta(days=6)))
        session.add(ProcessedUpdate(bot_id=BOT, update_id=3, processed_on=today))
    assert await purge_processed_updates(sessionmaker, older_than_days=7) == 1
    assert await claims(sessionmaker) == 2


async def test_group_commit_shares_transactions_and_keeps_outcomes_apart(sessionmaker):
    """A unit that fails in a group (SQLite) gets its own error and costs the others
    nothing; on PostgreSQL each unit commits alone with the same outcomes."""
    from nazaha.storage.database import engine_of, write_lock_for
    from nazaha.storage.group_commit import committer_for

    lock = write_lock_for(engine_of(sessionmaker))
    await UnitOfWork(sessionmaker, bot_id=BOT, update_id=500).commit()  # claimed earlier

    def failing(session):
        raise ValueError("this unit's own failure")

    async def handle(update_id: int):
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=update_id)
        uow.add(put(f"k{update_id}", b"v"))
        if update_id == 507:
            uow.add(failing)
        try:
            await uow.commit()
        except (ValueError, DuplicateUpdate) as error:
            return type(error).__name__
        return "ok"

    before = (committer_for(lock).groups, committer_for(lock).jobs) if lock else None
    results = await asyncio.gather(*(handle(i) for i in range(500, 540)))
    assert results[0] == "DuplicateUpdate" and results[7] == "ValueError"
    assert results.count("ok") == 38
    stored = await settings(sessionmaker)
    assert sorted(stored) == sorted(f"k{i}" for i in range(501, 540) if i != 507)
    assert await claims(sessionmaker) == 39  # 500 once, 507 rolled back with its writes
    if lock is not None:  # SQLite: the failing group was written again unit by unit
        assert committer_for(lock).jobs - before[1] == 38


async def test_group_commit_batches_without_failures(sessionmaker):
    from nazaha.storage.database import engine_of, write_lock_for
    from nazaha.storage.group_commit import committer_for

    lock = write_lock_for(engine_of(sessionmaker))
    if lock is None:
        pytest.skip("PostgreSQL runs writers in parallel: no group commit")
    committer = committer_for(lock)
    before = committer.groups

    async def handle(update_id: int) -> None:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=update_id)
        uow.add(put(f"g{update_id}", b"v"))
        await uow.commit()

    await asyncio.gather(*(handle(i) for i in range(600, 660)))
    assert len(await settings(sessionmaker)) == 60
    assert committer.groups - before <= 10  # 60 units, a handful of transactions


def put_statement(sessionmaker, name: str, value: bytes):
    """A write that is a plain statement: on SQLite it runs on the writer lane."""
    from nazaha.storage.database import engine_of, upsert_op

    dialect = engine_of(sessionmaker).dialect.name
    return upsert_op(dialect, SystemSetting.__table__, {"name": name, "value": value}, ["name"])


async def test_statement_writes_share_the_lane_and_keep_outcomes_apart(sessionmaker):
    """Units whose writes are statements (the hot path) are written together on SQLite's
    writer lane, each in a savepoint: a failing unit is rolled back alone."""
    from sqlalchemy import insert

    from nazaha.storage.database import StatementOp, engine_of, sqlite_lanes, write_lock_for
    from nazaha.storage.group_commit import committer_for

    engine = engine_of(sessionmaker)
    lock = write_lock_for(engine)
    assert (sqlite_lanes(engine) is not None) == (engine.dialect.name == "sqlite")
    await UnitOfWork(sessionmaker, bot_id=BOT, update_id=700).commit()
    # Fails inside the transaction: the primary key of a claim that already exists.
    clash = StatementOp(
        insert(ProcessedUpdate.__table__),
        {"bot_id": BOT, "update_id": 700, "processed_on": dt.date.today()},
    )

    async def handle(update_id: int) -> str:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=update_id)
        uow.add(put_statement(sessionmaker, f"s{update_id}", b"v"))
        if update_id == 705:
            uow.add(clash)
        try:
            await uow.commit()
        except DuplicateUpdate:
            return "duplicate"
        except Exception:
            return "failed"
        return "ok"

    before = (committer_for(lock).groups, committer_for(lock).jobs) if lock else (0, 0)
    results = await asyncio.gather(*(handle(i) for i in range(700, 760)))
    assert results[0] == "duplicate" and results[5] == "failed"
    assert results.count("ok") == 58
    stored = await settings(sessionmaker)
    assert sorted(stored) == sorted(f"s{i}" for i in range(701, 760) if i != 705)
    assert await claims(sessionmaker) == 59  # 705's claim went with its savepoint
    if lock is not None:
        groups = committer_for(lock).groups - before[0]
        assert committer_for(lock).jobs - before[1] == 58
        assert groups <= 10  # 58 units, a handful of transactions


async def test_lanes_close_with_the_engine(sqlite_url):
    from nazaha.storage.database import SQLITE_PRAGMAS, create_engine, sqlite_lanes
    from nazaha.storage.sqlite_lane import read
    from nazaha.storage.migrations import upgrade_database

    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)
    lanes = sqlite_lanes(engine)
    assert lanes is not None and sqlite_lanes(engine) is lanes
    for lane in (lanes.reader, lanes.writer):  # the same pragmas as the async engine
        for name, _value, expected in SQLITE_PRAGMAS:
            actual = await lane.run(read(lambda c: c.exec_driver_sql(f"PRAGMA {name}").scalar()))
            assert (actual.lower() if isinstance(actual, str) else actual) == expected, name
    await engine.dispose()
    assert sqlite_lanes(engine) is not lanes  # new lanes after a dispose
    await engine.dispose()
    memory = create_engine("sqlite+aiosqlite:///:memory:")
    assert sqlite_lanes(memory) is None  # one connection cannot share an in-memory database
    await memory.dispose()
