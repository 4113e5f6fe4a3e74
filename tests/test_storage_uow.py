"""The per-update unit of work: one write transaction, in-memory changes on commit, then
after-commit actions. It claims no update id (report-side writes do: test_storage_report_writes)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, insert, select

from nazaha.storage.database import engine_of
from nazaha.storage.models import ProcessedUpdate, SystemSetting
from nazaha.storage.unit_of_work import UnitOfWork, active_uow, current_uow

BOT = 7_123_456_789  # bot ids exceed 32 bits


def put(name: str, value: bytes):
    async def op(session):
        session.add(SystemSetting(name=name, value=value))

    return op


async def boom(session):
    raise ValueError("boom")


async def settings(sessionmaker) -> dict[str, bytes]:
    async with sessionmaker() as session:
        rows = await session.execute(select(SystemSetting.name, SystemSetting.value))
        return dict(rows.all())


async def claims(sessionmaker) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(ProcessedUpdate))


class DbCommits:
    """Appends "db commit" to ``events`` whenever the async engine commits."""

    def __init__(self, sessionmaker, events: list[str]) -> None:
        self.engine = engine_of(sessionmaker).sync_engine
        self.events = events

    def __enter__(self) -> None:
        event.listen(self.engine, "commit", self._commit)

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "commit", self._commit)

    def _commit(self, conn) -> None:
        self.events.append("db commit")


async def test_ops_commit_together_then_changes_apply_then_actions_run(sessionmaker):
    events: list[str] = []
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=1)
    uow.add(put("a", b"1"))
    uow.add(put("b", b"2"))
    assert uow.pending_writes == 2

    async def reply():
        # The data is committed before any reply goes out.
        events.append(f"reply saw {sorted(await settings(sessionmaker))}")

    uow.after_commit(reply)
    uow.after_commit(lambda: asyncio.sleep(0, events.append("second")))
    uow.on_commit(lambda: events.append("change 1"))
    uow.on_commit(lambda: events.append("change 2"))
    assert events == [] and await settings(sessionmaker) == {}
    with DbCommits(sessionmaker, events):
        await uow.commit()
    assert events == ["db commit", "change 1", "change 2", "reply saw ['a', 'b']", "second"]
    assert await settings(sessionmaker) == {"a": b"1", "b": b"2"}
    assert not uow.is_open and uow.pending_writes == 0


async def test_the_unit_of_work_claims_no_update_id(sessionmaker):
    """The same update id committed twice is written twice: an ordinary step is deduplicated
    in memory (handlers/middlewares.py), report-side writes claim in their own transaction."""
    for name in ("first", "again"):
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=42)
        uow.add(put(name, b"x"))
        await uow.commit()
    assert sorted(await settings(sessionmaker)) == ["again", "first"]
    assert await claims(sessionmaker) == 0
    assert not hasattr(UnitOfWork, "is_processed") and not hasattr(UnitOfWork, "note_claimed")


def test_an_update_id_needs_its_bot_id(sessionmaker):
    with pytest.raises(ValueError):
        UnitOfWork(sessionmaker, bot_id=None, update_id=1)


async def test_a_failing_op_rolls_back_the_unit_and_applies_no_change(sessionmaker):
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=5)
    uow.add(put("a", b"1"))
    uow.add(boom)
    events: list[str] = []
    uow.on_commit(lambda: events.append("change"))
    uow.after_commit(lambda: asyncio.sleep(0, events.append("reply")))
    with pytest.raises(ValueError):
        await uow.commit()
    assert events == [] and await settings(sessionmaker) == {}

    # The redelivered update is handled normally.
    retry = UnitOfWork(sessionmaker, bot_id=BOT, update_id=5)
    retry.add(put("a", b"1"))
    retry.on_commit(lambda: events.append("change"))
    await retry.commit()
    assert await settings(sessionmaker) == {"a": b"1"} and events == ["change"]


async def test_a_failing_commit_in_the_database_applies_no_change(sessionmaker):
    """A statement refused by the database (not by Python code) also leaves memory alone."""
    async with UnitOfWork(sessionmaker) as first:
        first.add(put("taken", b"1"))
        await first.commit()
    events: list[str] = []
    uow = UnitOfWork(sessionmaker)
    uow.add(put("taken", b"2"))  # primary key clash at flush
    uow.on_commit(lambda: events.append("change"))
    uow.after_commit(lambda: asyncio.sleep(0, events.append("reply")))
    with pytest.raises(Exception):
        await uow.commit()
    assert events == [] and await settings(sessionmaker) == {"taken": b"1"}


async def test_after_commit_stops_at_the_first_failure(sessionmaker):
    events: list[str] = []
    uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=9)
    uow.add(put("a", b"1"))

    async def fail():
        events.append("fail")
        raise ConnectionError("telegram down")

    uow.on_commit(lambda: events.append("change"))
    uow.after_commit(lambda: asyncio.sleep(0, events.append("first")))
    uow.after_commit(fail)
    uow.after_commit(lambda: asyncio.sleep(0, events.append("never")))
    with pytest.raises(ConnectionError):
        await uow.commit()
    assert events == ["change", "first", "fail"]
    assert await settings(sessionmaker) == {"a": b"1"}  # already committed


async def test_changes_apply_once_the_unit_is_closed(sessionmaker):
    """Changes run after the unit closed: a store writing then writes directly."""
    applied: list[str] = []
    uow = UnitOfWork(sessionmaker)

    def change():
        assert not uow.is_open
        applied.append("change")

    uow.on_commit(change)
    await uow.commit()
    assert applied == ["change"]


async def test_empty_uow_writes_nothing_but_applies_changes_and_runs_actions(sessionmaker, engine):
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        sent: list[str] = []
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=77)  # an id: still no claim
        uow.on_commit(lambda: sent.append("change"))
        uow.after_commit(lambda: asyncio.sleep(0, sent.append("reply")))
        await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert sent == ["change", "reply"]
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
        uow.on_commit(lambda: None)
    with pytest.raises(RuntimeError):
        uow.after_commit(lambda: asyncio.sleep(0))
    with pytest.raises(RuntimeError):
        await uow.commit()


async def test_closed_uow_discards_its_writes_and_changes(sessionmaker):
    events: list[str] = []
    async with UnitOfWork(sessionmaker, bot_id=BOT, update_id=4) as uow:
        uow.add(put("a", b"1"))
        uow.on_commit(lambda: events.append("change"))
        uow.after_commit(lambda: asyncio.sleep(0, events.append("reply")))
    assert not uow.is_open
    await uow.close()  # idempotent
    assert events == [] and await settings(sessionmaker) == {}


async def test_overlays_and_active_uow(sessionmaker):
    uow = UnitOfWork(sessionmaker)
    assert active_uow() is None
    token = current_uow.set(uow)
    try:
        assert active_uow() is uow
        uow.overlay("prefs")["k"] = 1
        assert uow.overlay("prefs") == {"k": 1} and uow.fsm_overlay == {}
        assert uow.overlay("fsm") is uow.fsm_overlay
        await uow.commit()
        assert active_uow() is None  # committed: stores write directly again
    finally:
        current_uow.reset(token)


@pytest.mark.parametrize("lock", ["engine lock", "busy timeout only"])
async def test_many_concurrent_units_of_work_all_commit(sessionmaker, lock):
    options = {} if lock == "engine lock" else {"write_lock": None}
    applied: list[int] = []

    async def handle(update_id: int) -> None:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=update_id, **options)
        token = current_uow.set(uow)
        try:
            session = await uow.read()
            await session.execute(select(SystemSetting))  # decide phase reads
            await asyncio.sleep(0)
            uow.add(put(f"k{update_id}", str(update_id).encode()))
            uow.on_commit(lambda: applied.append(update_id))
            await uow.commit()
        finally:
            current_uow.reset(token)

    await asyncio.gather(*(handle(i) for i in range(50)))
    assert len(await settings(sessionmaker)) == 50
    assert sorted(applied) == list(range(50))
    assert await claims(sessionmaker) == 0


async def test_group_commit_shares_transactions_and_keeps_outcomes_apart(sessionmaker):
    """A unit that fails in a group (SQLite) gets its own error and costs the others
    nothing; on PostgreSQL each unit commits alone with the same outcomes."""
    from nazaha.storage.database import write_lock_for
    from nazaha.storage.group_commit import committer_for

    lock = write_lock_for(engine_of(sessionmaker))
    applied: list[int] = []

    async def handle(n: int):
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=n)
        uow.add(put(f"k{n}", b"v"))
        if n == 507:
            uow.add(boom)
        uow.on_commit(lambda: applied.append(n))
        try:
            await uow.commit()
        except ValueError as error:
            return type(error).__name__
        return "ok"

    before = (committer_for(lock).groups, committer_for(lock).jobs) if lock else None
    results = await asyncio.gather(*(handle(i) for i in range(500, 540)))
    assert results[7] == "ValueError"
    assert results.count("ok") == 39
    stored = await settings(sessionmaker)
    assert sorted(stored) == sorted(f"k{i}" for i in range(500, 540) if i != 507)
    assert sorted(applied) == [i for i in range(500, 540) if i != 507]
    if lock is not None:  # SQLite: the failing group was written again unit by unit
        assert committer_for(lock).jobs - before[1] == 39


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
    from nazaha.storage.database import StatementOp, sqlite_lanes, write_lock_for
    from nazaha.storage.group_commit import committer_for

    engine = engine_of(sessionmaker)
    lock = write_lock_for(engine)
    assert (sqlite_lanes(engine) is not None) == (engine.dialect.name == "sqlite")
    first = UnitOfWork(sessionmaker)
    first.add(put_statement(sessionmaker, "taken", b"1"))
    await first.commit()
    # Fails inside the transaction: a plain INSERT of a primary key that already exists.
    clash = StatementOp(insert(SystemSetting.__table__), {"name": "taken", "value": b"2"})
    applied: list[int] = []

    async def handle(n: int) -> str:
        uow = UnitOfWork(sessionmaker, bot_id=BOT, update_id=n)
        uow.add(put_statement(sessionmaker, f"s{n}", b"v"))
        if n == 705:
            uow.add(clash)
        uow.on_commit(lambda: applied.append(n))
        try:
            await uow.commit()
        except Exception:
            return "failed"
        return "ok"

    before = (committer_for(lock).groups, committer_for(lock).jobs) if lock else (0, 0)
    results = await asyncio.gather(*(handle(i) for i in range(700, 760)))
    assert results[5] == "failed"
    assert results.count("ok") == 59
    stored = await settings(sessionmaker)
    assert stored.pop("taken") == b"1"
    assert sorted(stored) == sorted(f"s{i}" for i in range(700, 760) if i != 705)
    assert sorted(applied) == [i for i in range(700, 760) if i != 705]
    assert await claims(sessionmaker) == 0
    if lock is not None:
        groups = committer_for(lock).groups - before[0]
        assert committer_for(lock).jobs - before[1] == 59
        assert groups <= 10  # 59 units, a handful of transactions


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
