"""Conversation state in process memory only (VolatileFsmStorage), or in Redis for several
replicas (RedisFsmStorage: the same contract tests run on both), and the one row the bot
keeps per account (PreferenceStore: sealed, pseudonymous, hour-coarse, expiring)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import json
import secrets
import types

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import delete, event, inspect, select, text

from nazaha.storage.crypto import BotKeyBox, TamperedData
from nazaha.storage.fsm import DEFAULT_TTL, TRAIL, VolatileFsmStorage
from nazaha.storage.models import UserPreference
from nazaha.storage.prefs import LegacyRows, PreferenceStore, Preferences
from nazaha.storage.redis_fsm import RedisFsmStorage
from nazaha.storage.unit_of_work import UnitOfWork, current_uow
from tests.redis_support import FixedRing, shared_redis_or_skip

BOT_ID, CHAT_ID, USER_ID = 7_123_456_789, 987_654_321, 987_654_321
SECRET_TEXT = "رشوة في مكتب الترخيص secret-marker-3141"
TOLD = {"Form:description"}


class Form(StatesGroup):
    description = State()


class Session(StatesGroup):
    active = State()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, 12, 34, 56, 789_000, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


@pytest.fixture
def box() -> BotKeyBox:
    return BotKeyBox(secrets.token_bytes(32))


@pytest.fixture
def pepper() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def make_storage(request, pepper, clock):
    """Builds the storage under test (in memory, or in Redis: database 15, flushed)."""
    if request.param == "memory":
        yield lambda **options: VolatileFsmStorage(pepper, clock=clock, **options)
        return
    redis = await shared_redis_or_skip()
    ring = FixedRing()
    try:
        yield lambda **options: RedisFsmStorage(redis, ring, clock=clock, **options)
    finally:
        await redis.flushdb()
        await redis.aclose()


@pytest.fixture
def storage(make_storage):
    return make_storage()


@pytest.fixture
def key() -> StorageKey:
    return StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID, user_id=USER_ID)


@pytest.fixture
async def local_db(sqlite_url):
    """A migrated SQLite database, for units of work of tests that need no PostgreSQL run."""
    from nazaha.storage.database import create_engine, create_sessionmaker
    from nazaha.storage.migrations import upgrade_database

    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def outside_any_update(coro):
    """Run ``coro`` in a fresh context: no unit of work is active there (what other
    updates, or the process after this update, see)."""
    return await asyncio.create_task(coro, context=contextvars.Context())


class InUpdate:
    """``async with InUpdate(uow):`` makes ``uow`` the current update's unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def __aenter__(self) -> UnitOfWork:
        self.token = current_uow.set(self.uow)
        return self.uow

    async def __aexit__(self, *exc: object) -> None:
        current_uow.reset(self.token)


# -- conversation state: basics -----------------------------------------------------------


async def test_round_trip(storage, key):
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    assert not await storage.has_record(key)
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT, "n": 3, "list": [1, None]})
    assert await storage.has_record(key)
    assert await storage.get_state(key) == "Form:description"
    assert await storage.get_data(key) == {"description": SECRET_TEXT, "n": 3, "list": [1, None]}
    assert await storage.update_data(key, {"n": 4}) == {
        "description": SECRET_TEXT, "n": 4, "list": [1, None]
    }
    # A copy is returned: changing it changes nothing stored.
    (await storage.get_data(key))["n"] = 99
    assert (await storage.get_data(key))["n"] == 4
    await storage.set_state(key, "Other:step")  # a plain string state works too
    assert await storage.get_state(key) == "Other:step"

    other = StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID + 1, user_id=USER_ID + 1)
    thread = StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID, user_id=USER_ID, destiny="wipe")
    for k in (other, thread):
        assert await storage.get_state(k) is None and await storage.get_data(k) == {}
        assert not await storage.has_record(k)


async def test_clearing_state_and_data_drops_the_record(storage, key):
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"a": 1})
    assert await storage.size() == 1
    await storage.set_state(key, None)
    assert await storage.has_record(key)  # the data is still there
    await storage.set_data(key, {})
    assert not await storage.has_record(key) and await storage.size() == 0


async def test_set_data_refuses_what_is_not_a_dict(storage, key):
    for bad in ([("description", SECRET_TEXT)], "text", types.MappingProxyType({"a": 1}), None):
        with pytest.raises(DataNotDictLikeError):
            await storage.set_data(key, bad)  # type: ignore[arg-type]
    assert not await storage.has_record(key)  # nothing half-written


async def test_records_are_keyed_by_a_pepper_pseudonym(key, pepper, clock):
    storage = VolatileFsmStorage(pepper, clock=clock)  # Redis: test_redis_state.py
    record_key = storage.record_key(key)
    assert len(record_key) == 64 and int(record_key, 16) >= 0
    for raw_id in (BOT_ID, CHAT_ID, USER_ID):
        assert str(raw_id) not in record_key
    assert VolatileFsmStorage(pepper, clock=clock).record_key(key) == record_key
    assert VolatileFsmStorage(secrets.token_bytes(32)).record_key(key) != record_key
    assert storage.record_key(StorageKey(BOT_ID, CHAT_ID, USER_ID, destiny="wipe")) != record_key


async def test_forget_drops_the_record_and_its_notice(storage, key, clock):
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT})
    await storage.forget(key)
    assert not await storage.has_record(key) and await storage.size() == 0
    assert await storage.get_data(key) == {}

    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(hours=25)
    await storage.purge_expired()  # a tombstone now
    assert await storage.size() == 1
    await storage.forget(key)  # /wipe: no "your draft was discarded" afterwards either
    assert await storage.size() == 0 and not await storage.pop_expired_notice(key)


async def test_close_forgets_everything(pepper, key):
    storage = VolatileFsmStorage(pepper)  # (Redis keeps the other replicas' records)
    await storage.set_data(key, {"description": SECRET_TEXT})
    await storage.close()
    assert await storage.size() == 0 and await storage.get_data(key) == {}


async def test_nothing_reaches_the_database(engine, sqlite_url, pepper, box, clock):
    """Drafts (state and data) cause no SQL at all, in an update or outside one; after a
    whole conversation no table and, on SQLite, no byte of the files holds the text."""
    from nazaha.storage.database import create_sessionmaker

    sessionmaker = create_sessionmaker(engine)
    storage = VolatileFsmStorage(pepper, clock=clock)
    prefs = PreferenceStore(sessionmaker, box, pepper, clock=clock)
    key = StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID, user_id=USER_ID)
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await storage.set_state(key, Form.description)
        await storage.set_data(key, {"description": SECRET_TEXT})
        uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=1)
        async with InUpdate(uow):
            await storage.update_data(key, {"when": SECRET_TEXT + " yesterday"})
            await storage.get_state(key)
            assert uow.pending_writes == 0
        await uow.commit()
        assert statements == []  # not one statement for the conversation state

        # An update that also writes the account's row writes that row only.
        uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=2)
        async with InUpdate(uow):
            await storage.update_data(key, {"contact": SECRET_TEXT + " +970599000000"})
            prefs.set(uow, USER_ID, Preferences(locale="ar"))
        await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    # (On SQLite the row is written on the writer lane, which this listener does not see.)
    assert all("user_preferences" in s.lower() for s in statements)
    assert len(await prefs_rows(sessionmaker)) == 1
    assert (await storage.get_data(key))["contact"].startswith(SECRET_TEXT)

    def tables_and_rows(sync_conn):
        found = {}
        for table in inspect(sync_conn).get_table_names():
            found[table] = sync_conn.execute(text(f'SELECT * FROM "{table}"')).all()
        return found

    async with engine.connect() as conn:
        found = await conn.run_sync(tables_and_rows)
    assert "fsm_records" not in found
    needles = [SECRET_TEXT.encode(), b"secret-marker", "رشوة".encode(), b"+970599000000"]
    needles += [str(raw).encode() for raw in (CHAT_ID, USER_ID)]
    for table, rows in found.items():
        for row in rows:
            for cell in row:
                raw = cell if isinstance(cell, bytes) else str(cell).encode()
                assert not any(needle in raw for needle in needles), table
    if engine.dialect.name == "sqlite":
        from nazaha.storage.database import checkpoint_wal

        db_path = sqlite_url.split("///", 1)[1]
        await checkpoint_wal(engine)
        import glob

        for path in glob.glob(db_path + "*"):
            with open(path, "rb") as f:
                content = f.read()
            assert not any(needle in content for needle in needles[:3]), path


# -- expiry --------------------------------------------------------------------------------


async def test_draft_expires_after_ttl_and_notice_fires_once(storage, key, clock):
    assert DEFAULT_TTL == dt.timedelta(hours=24)
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(hours=23)
    assert await storage.get_state(key) == "Form:description"  # reads do not extend
    await storage.set_data(key, {"description": SECRET_TEXT + "!"})  # writes do
    clock.advance(hours=23, minutes=59)
    assert await storage.get_data(key) == {"description": SECRET_TEXT + "!"}
    assert await storage.pop_expired_notice(key) is False

    clock.advance(minutes=2)
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    assert not await storage.has_record(key)  # a tombstone holds no draft
    assert await storage.size() == 1

    assert await storage.pop_expired_notice(key) is True
    assert await storage.pop_expired_notice(key) is False
    assert await storage.size() == 0
    await storage.set_state(key, Form.description)  # a new draft starts clean
    assert await storage.get_data(key) == {}


async def test_an_expired_drafts_tombstone_keeps_its_trail_of_message_ids_only(storage, key, clock):
    """The span of message ids a draft left in the chat outlives it (to be deleted at the
    user's next contact); nothing else of its data does."""
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT, TRAIL: [41, 57]})
    clock.advance(hours=24, minutes=1)
    await storage.purge_expired()
    assert await storage.get_data(key) == {} and not await storage.has_record(key)
    assert SECRET_TEXT not in json.dumps(await storage.all_data())
    assert await storage.pop_expired(key) == {TRAIL: [41, 57]}
    assert await storage.pop_expired(key) is None
    # A draft with no trail leaves a bare tombstone.
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(hours=24, minutes=1)
    assert await storage.pop_expired(key) == {}


async def test_a_custom_ttl(make_storage, clock, key):
    storage = make_storage(ttl=dt.timedelta(minutes=30))
    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(minutes=29)
    assert await storage.get_data(key) != {}
    clock.advance(minutes=1)  # expiry is inclusive: at now + ttl the draft is gone
    assert await storage.get_data(key) == {}
    assert await storage.pop_expired_notice(key) is True


async def test_writing_to_an_expired_draft_does_not_resurrect_it(storage, key, clock):
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT, "when": "monday"})
    clock.advance(hours=25)
    await storage.set_state(key, Form.description)  # e.g. a late tap on an old button
    assert await storage.get_data(key) == {}
    assert await storage.update_data(key, {"n": 1}) == {"n": 1}  # no old answer comes back
    assert await storage.pop_expired_notice(key) is True
    assert await storage.get_state(key) == "Form:description"  # the new draft stays
    assert await storage.get_data(key) == {"n": 1}


async def test_only_told_states_leave_the_expiry_notice(make_storage, clock):
    storage = make_storage(told_states=TOLD)
    draft = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    session = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    anchor = StorageKey(bot_id=BOT_ID, chat_id=3, user_id=3, destiny="wipe")
    await storage.set_state(draft, Form.description)
    await storage.set_state(session, Session.active)
    await storage.set_data(anchor, {"first": 17})  # data without a state
    clock.advance(hours=25)
    assert await storage.get_state(session) is None  # expired silently: no tombstone left
    assert await storage.pop_expired_notice(session) is False
    assert await storage.get_data(anchor) == {}
    assert await storage.pop_expired_notice(anchor) is False
    assert await storage.size() == 1  # the draft's record (expired, not yet looked at)
    assert await storage.pop_expired_notice(draft) is True
    assert await storage.size() == 0


async def test_every_state_is_told_by_default(storage, clock):
    session = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    anchor = StorageKey(bot_id=BOT_ID, chat_id=3, user_id=3)
    await storage.set_state(session, Session.active)
    await storage.set_data(anchor, {"first": 17})
    clock.advance(hours=25)
    assert await storage.pop_expired_notice(session) is True
    assert await storage.pop_expired_notice(anchor) is True


async def test_purge_expired(storage, clock):
    keys = [StorageKey(bot_id=BOT_ID, chat_id=i, user_id=i) for i in range(3)]
    for k in keys:
        await storage.set_data(k, {"description": SECRET_TEXT})
    clock.advance(hours=12)
    await storage.set_data(keys[2], {"description": "fresh"})
    clock.advance(hours=13)
    assert await storage.purge_expired() == 2  # two drafts turned into tombstones
    assert await storage.size() == 3
    assert [await storage.has_record(k) for k in keys] == [False, False, True]
    assert await storage.get_data(keys[2]) == {"description": "fresh"}
    assert await storage.pop_expired_notice(keys[0]) is True  # seen: the tombstone goes
    assert await storage.size() == 2
    assert await storage.purge_expired() == 0  # nothing more is due

    clock.advance(days=31)
    # keys[2] expired (a tombstone now); keys[1]'s tombstone is older than 30 days: dropped.
    assert await storage.purge_expired() == 2
    assert await storage.size() == 1
    clock.advance(days=30)
    assert await storage.purge_expired() == 1
    assert await storage.size() == 0
    assert await storage.pop_expired_notice(keys[2]) is False


async def test_purge_keeps_a_tombstone_only_for_told_states(make_storage, clock):
    storage = make_storage(told_states=TOLD)
    draft = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    session = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    anchor = StorageKey(bot_id=BOT_ID, chat_id=3, user_id=3, destiny="wipe")
    await storage.set_state(draft, Form.description)
    await storage.set_data(draft, {"description": SECRET_TEXT})
    await storage.set_state(session, Session.active)
    await storage.set_data(anchor, {"first": 17})
    clock.advance(hours=25)
    assert await storage.purge_expired() == 3
    assert await storage.size() == 1
    assert await storage.pop_expired_notice(session) is False
    assert await storage.pop_expired_notice(anchor) is False
    assert await storage.pop_expired_notice(draft) is True
    assert await storage.get_data(draft) == {}


# -- inside an update -----------------------------------------------------------------------


async def test_writes_inside_an_update_are_seen_by_it_and_applied_on_commit(storage, key, local_db):
    uow = UnitOfWork(local_db, bot_id=BOT_ID, update_id=1)
    async with InUpdate(uow):
        await storage.set_state(key, Form.description)
        await storage.update_data(key, {"description": "first"})
        await storage.update_data(key, {"description": SECRET_TEXT})
        assert await storage.get_state(key) == "Form:description"
        assert await storage.get_data(key) == {"description": SECRET_TEXT}
        assert await storage.has_record(key)
        # Not yet for anyone else: nothing is applied before the commit.
        assert await outside_any_update(storage.get_state(key)) is None
        assert await storage.size() == 0
        assert uow.pending_writes == 0  # and nothing for the database
        await uow.commit()
        # Once committed the unit of work is closed: the storage writes directly again.
        await storage.update_data(key, {"n": 1})
    assert await storage.get_state(key) == "Form:description"
    assert await storage.get_data(key) == {"description": SECRET_TEXT, "n": 1}
    assert await storage.size() == 1


async def test_writes_of_a_closed_update_are_discarded(storage, key, local_db):
    await storage.set_data(key, {"description": "before"})
    uow = UnitOfWork(local_db, bot_id=BOT_ID, update_id=2)
    async with InUpdate(uow):
        await storage.set_data(key, {"description": "during"})
        await storage.forget(key)
        await storage.set_state(key, Session.active)
        assert await storage.get_data(key) == {}
        await uow.close()  # e.g. the handler failed
    assert await storage.get_data(key) == {"description": "before"}
    assert await storage.get_state(key) is None


async def test_writes_of_an_update_whose_commit_fails_are_discarded(storage, key, local_db):
    await storage.set_data(key, {"description": "before"})
    uow = UnitOfWork(local_db, bot_id=BOT_ID, update_id=3)

    async def boom(session):
        raise ValueError("the database refused")

    async with InUpdate(uow):
        await storage.set_data(key, {"description": "during"})
        uow.add(boom)
        with pytest.raises(ValueError):
            await uow.commit()
    assert await storage.get_data(key) == {"description": "before"}


async def test_forget_inside_an_update_applies_on_commit(storage, key, local_db, clock):
    await storage.set_data(key, {"description": SECRET_TEXT})
    uow = UnitOfWork(local_db)
    async with InUpdate(uow):
        await storage.forget(key)
        assert not await storage.has_record(key)
        assert await outside_any_update(storage.get_data(key)) == {"description": SECRET_TEXT}
        await uow.commit()
    assert await storage.size() == 0


async def test_expiry_seen_inside_a_failed_update_is_seen_again_by_the_next(storage, key, local_db, clock):
    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(hours=25)
    failed = UnitOfWork(local_db, bot_id=BOT_ID, update_id=4)
    async with InUpdate(failed):
        assert await storage.get_data(key) == {}
        assert await storage.pop_expired_notice(key) is True
        await failed.close()
    # The notice was not consumed (the user was never told), and the draft stays gone.
    nxt = UnitOfWork(local_db, bot_id=BOT_ID, update_id=5)
    async with InUpdate(nxt):
        assert await storage.get_data(key) == {}
        assert await storage.pop_expired_notice(key) is True
        assert await storage.pop_expired_notice(key) is False
        await nxt.commit()
    assert await storage.pop_expired_notice(key) is False and await storage.size() == 0


async def test_concurrent_updates_do_not_see_each_others_uncommitted_writes(make_storage, local_db):
    storage = make_storage()
    a = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    b = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    seen: dict[str, object] = {}
    a_wrote, b_checked = asyncio.Event(), asyncio.Event()

    async def update_a():
        uow = UnitOfWork(local_db)
        async with InUpdate(uow):
            await storage.set_data(a, {"who": "a"})
            a_wrote.set()
            await b_checked.wait()
            await uow.commit()

    async def update_b():
        uow = UnitOfWork(local_db)
        async with InUpdate(uow):
            await a_wrote.wait()
            seen["a before commit"] = await storage.get_data(a)
            await storage.set_data(b, {"who": "b"})
            b_checked.set()
            await uow.commit()

    await asyncio.gather(update_a(), update_b())
    assert seen["a before commit"] == {}
    assert await storage.get_data(a) == {"who": "a"} and await storage.get_data(b) == {"who": "b"}


# -- preferences -------------------------------------------------------------------------


def prefs_store(sessionmaker, box, pepper, clock, **options) -> PreferenceStore:
    return PreferenceStore(sessionmaker, box, pepper, clock=clock, **options)


async def prefs_rows(sessionmaker) -> list[UserPreference]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(UserPreference))).all())


async def committed(sessionmaker, fill) -> UnitOfWork:
    uow = UnitOfWork(sessionmaker)
    async with InUpdate(uow):
        result = fill(uow)
        if asyncio.iscoroutine(result):
            await result
        await uow.commit()
    return uow


FULL_PREFS = Preferences(locale="ar", wipe_from=4_444_321)


async def test_preferences_round_trip_sealed_and_pseudonymous(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock)
    assert await prefs.get(USER_ID) == Preferences()
    assert (await prefs.get(USER_ID)).stored_until is None

    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=10)
    async with InUpdate(uow):
        stored = prefs.set(uow, USER_ID, FULL_PREFS)
        assert stored == FULL_PREFS and stored.stored_until is not None
        assert await prefs.get(USER_ID) == FULL_PREFS  # seen in the same update
        assert await prefs_rows(sessionmaker) == []  # queued, not written
        await uow.commit()
    got = await prefs.get(USER_ID)
    assert got == FULL_PREFS and got.stored_until == stored.stored_until
    assert await prefs.get(USER_ID + 1) == Preferences()

    [row] = await prefs_rows(sessionmaker)
    assert row.pseudonym == prefs.record_key(USER_ID) and len(row.pseudonym) == 64
    cells = [row.pseudonym.encode(), row.sealed, row.expires_at.isoformat().encode()]
    for cell in cells:  # no Telegram id, no message id, nothing readable
        for needle in (str(USER_ID), str(BOT_ID), str(FULL_PREFS.wipe_from), '"ar"', "locale"):
            assert needle.encode() not in cell
    # Bound to its row: a copy under another pseudonym does not open.
    with pytest.raises(TamperedData):
        box.open("prefs", prefs.record_key(USER_ID + 1), row.sealed)
    assert json.loads(box.open("prefs", row.pseudonym, row.sealed))["wipe_from"] == 4_444_321
    # Without this pepper the row is unreachable; without this key unreadable.
    assert await prefs_store(sessionmaker, box, secrets.token_bytes(32), clock).get(USER_ID) == Preferences()
    with pytest.raises(TamperedData):
        await prefs_store(sessionmaker, BotKeyBox(secrets.token_bytes(32)), pepper, clock).get(USER_ID)

    await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID, Preferences(locale="en")))
    assert await prefs.get(USER_ID) == Preferences(locale="en")
    assert len(await prefs_rows(sessionmaker)) == 1  # an upsert, not a second row


async def test_expires_at_is_a_whole_hour_ttl_ahead(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock)
    assert clock.now.minute and clock.now.second and clock.now.microsecond  # 12:34:56.789
    uow = await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID, FULL_PREFS))
    assert not uow.is_open
    [row] = await prefs_rows(sessionmaker)
    expected = dt.datetime(2025, 3, 31, 12, 0, tzinfo=dt.timezone.utc)  # hour + 30 days
    assert row.expires_at == expected
    assert (await prefs.get(USER_ID)).stored_until == expected

    short = prefs_store(sessionmaker, box, pepper, clock, ttl=dt.timedelta(hours=2))
    await committed(sessionmaker, lambda uow: short.set(uow, USER_ID, FULL_PREFS))
    [row] = await prefs_rows(sessionmaker)
    assert row.expires_at == dt.datetime(2025, 3, 1, 14, 0, tzinfo=dt.timezone.utc)


async def test_an_expired_row_reads_as_defaults(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock, ttl=dt.timedelta(days=2))
    await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID, FULL_PREFS))
    clock.now = dt.datetime(2025, 3, 3, 11, 59, 59, tzinfo=dt.timezone.utc)
    assert await prefs.get(USER_ID) == FULL_PREFS
    clock.now = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.timezone.utc)  # expires_at itself
    got = await prefs.get(USER_ID)
    assert got == Preferences() and got.stored_until is None
    assert len(await prefs_rows(sessionmaker)) == 1  # still there until purged
    # Inside an update too.
    uow = UnitOfWork(sessionmaker)
    async with InUpdate(uow):
        assert await prefs.get(USER_ID) == Preferences()
        await uow.close()


async def test_touch_rewrites_at_most_once_an_hour(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock)

    async def touch_at(moment: dt.datetime) -> int:
        """Touch the row in an update at ``moment``; returns how many writes it queued."""
        clock.now = moment
        uow = UnitOfWork(sessionmaker)
        async with InUpdate(uow):
            prefs.touch(uow, USER_ID, await prefs.get(USER_ID))
            queued = uow.pending_writes
            await uow.commit()
        return queued

    at = lambda h, m, s=0: dt.datetime(2025, 3, 1, h, m, s, tzinfo=dt.timezone.utc)  # noqa: E731
    assert await touch_at(at(12, 34)) == 0  # no row yet: nothing to keep alive
    assert await prefs_rows(sessionmaker) == []

    await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID, FULL_PREFS))
    first_expiry = (await prefs.get(USER_ID)).stored_until
    assert [await touch_at(at(12, m)) for m in (34, 45, 59)] == [0, 0, 0]  # the same hour
    assert await touch_at(at(13, 0, 1)) == 1  # the next hour
    assert [await touch_at(at(13, m)) for m in (5, 59)] == [0, 0]  # once in that hour
    [row] = await prefs_rows(sessionmaker)
    assert row.expires_at == first_expiry + dt.timedelta(hours=1)
    got = await prefs.get(USER_ID)
    assert got == FULL_PREFS and got.stored_until == row.expires_at  # the values are kept
    assert await touch_at(at(15, 30)) == 1  # an idle hour in between: one write, not two
    [row] = await prefs_rows(sessionmaker)
    assert row.expires_at == first_expiry + dt.timedelta(hours=3)


async def test_forget_deletes_the_row(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock)
    await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID, FULL_PREFS))
    await committed(sessionmaker, lambda uow: prefs.set(uow, USER_ID + 1, Preferences(locale="en")))
    uow = UnitOfWork(sessionmaker)
    async with InUpdate(uow):
        assert await prefs.get(USER_ID) == FULL_PREFS
        prefs.forget(uow, USER_ID)
        assert await prefs.get(USER_ID) == Preferences()  # at once for this update
        assert len(await prefs_rows(sessionmaker)) == 2  # queued
        await uow.commit()
    assert [r.pseudonym for r in await prefs_rows(sessionmaker)] == [prefs.record_key(USER_ID + 1)]
    assert await prefs.get(USER_ID) == Preferences()
    # A forget that is never committed deletes nothing.
    async with UnitOfWork(sessionmaker) as discarded:
        prefs.forget(discarded, USER_ID + 1)
    assert await prefs.get(USER_ID + 1) == Preferences(locale="en")


async def test_purge_expired_preferences(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock, ttl=dt.timedelta(hours=5))
    await committed(sessionmaker, lambda uow: prefs.set(uow, 1, Preferences(locale="ar")))
    clock.advance(hours=2)
    await committed(sessionmaker, lambda uow: prefs.set(uow, 2, Preferences(locale="en")))
    assert await prefs.purge_expired() == 0
    clock.now = dt.datetime(2025, 3, 1, 17, 0, tzinfo=dt.timezone.utc)  # 1's expiry, to the hour
    assert await prefs.purge_expired() == 1
    assert [r.pseudonym for r in await prefs_rows(sessionmaker)] == [prefs.record_key(2)]
    assert await prefs.get(2) == Preferences(locale="en")
    clock.advance(days=1)
    assert await prefs.purge_expired() == 1
    assert await prefs_rows(sessionmaker) == []


async def insert_sealed_rows(sessionmaker, rows) -> None:
    """``rows``: (pseudonym, box, JSON dict, expires_at), written as an older release did."""
    async with sessionmaker() as session:
        for key, sealer, fields, expires_at in rows:
            plaintext = json.dumps(fields).encode()
            session.add(UserPreference(pseudonym=key, sealed=sealer.seal("prefs", key, plaintext), expires_at=expires_at))
        await session.commit()


async def test_rows_of_an_older_release_lose_what_told_that_a_report_began(sessionmaker, box, pepper, clock):
    """Older releases sealed ``safety_seen`` and a "conversation open in run X until hour H"
    mark into the row. Once per database (the bot's start), every live row holding one is
    rewritten without it (pseudonym, expiry, language and /wipe anchor kept), expired rows
    are deleted, and a mark still current is reported (its users are due the restart
    notice). A row rewritten by an update drops them too."""
    prefs = prefs_store(sessionmaker, box, pepper, clock)
    later = dt.datetime(2025, 3, 20, 9, tzinfo=dt.timezone.utc)
    open_mark = {"conversation_run": "run-1", "conversation_until": "2025-03-02T09"}  # 21 h ahead
    stale_mark = {"conversation_run": "run-0", "conversation_until": "2025-02-27T09"}
    k = prefs.record_key
    await insert_sealed_rows(sessionmaker, [
        (k(1), box, {"locale": "en", "safety_seen": True, "wipe_from": 11, **open_mark}, later),
        (k(2), box, {"locale": "ar", "safety_seen": True, "wipe_from": 22, **stale_mark}, later),
        (k(3), box, {"locale": "en", "wipe_from": 33}, later),  # already in the new form
        (k(4), box, {"locale": "en", "safety_seen": True, "wipe_from": 44}, clock.now - dt.timedelta(hours=1)),
        (k(5), BotKeyBox(secrets.token_bytes(32)), {"safety_seen": True}, later),  # another bot key's
    ])
    before = {r.pseudonym: r.sealed for r in await prefs_rows(sessionmaker)}

    assert await prefs.drop_legacy_fields() == LegacyRows(rewritten=2, open_conversation=True)
    rows = {r.pseudonym: r for r in await prefs_rows(sessionmaker)}
    assert set(rows) == {k(1), k(2), k(3), k(5)}  # the expired row went
    opened = {n: json.loads(box.open("prefs", k(n), rows[k(n)].sealed)) for n in (1, 2, 3)}
    assert opened == {
        1: {"locale": "en", "wipe_from": 11},
        2: {"locale": "ar", "wipe_from": 22},
        3: {"locale": "en", "wipe_from": 33},
    }
    assert all(rows[k(n)].expires_at == later for n in (1, 2, 3, 5))  # no row's life extended
    assert rows[k(3)].sealed == before[k(3)] and rows[k(5)].sealed == before[k(5)]  # untouched
    # A row this bot key cannot open leaves the pass to run again at the next start.
    assert await prefs.drop_legacy_fields() == LegacyRows()
    async with sessionmaker() as session:
        await session.execute(delete(UserPreference).where(UserPreference.pseudonym == k(5)))
        await session.commit()
    assert await prefs.drop_legacy_fields() == LegacyRows()
    # Done once: a row an older release might still write is not looked at again.
    await insert_sealed_rows(sessionmaker, [(k(6), box, {"safety_seen": True, **open_mark}, later)])
    assert await prefs.drop_legacy_fields() == LegacyRows()
    # Any rewrite drops them (an update's set or hourly touch), and reading ignores them.
    assert await prefs.get(6) == Preferences()
    await committed(sessionmaker, lambda uow: prefs.set(uow, 6, Preferences(locale="ar")))
    [row] = [r for r in await prefs_rows(sessionmaker) if r.pseudonym == k(6)]
    assert json.loads(box.open("prefs", k(6), row.sealed)) == {"locale": "ar", "wipe_from": None}


async def test_a_stale_mark_alone_opens_no_restart_window(sessionmaker, box, pepper, clock):
    prefs = prefs_store(sessionmaker, box, pepper, clock)
    later = dt.datetime(2025, 3, 20, 9, tzinfo=dt.timezone.utc)
    await insert_sealed_rows(sessionmaker, [
        (prefs.record_key(1), box, {"safety_seen": True, "conversation_run": "r", "conversation_until": "2025-03-01T12"}, later),
    ])  # until the current hour: no longer current
    assert await prefs.drop_legacy_fields() == LegacyRows(rewritten=1, open_conversation=False)


async def test_follows_aiogram_storage_contract_like_memory_storage(storage, key):
    """get_value with and without a default, update_data merging and returning a copy,
    state and data independent, exactly as aiogram's MemoryStorage behaves."""
    from aiogram.fsm.storage.memory import MemoryStorage

    reference = MemoryStorage()
    for s in (storage, reference):
        assert await s.get_value(key, "missing") is None
        assert await s.get_value(key, "missing", "fallback") == "fallback"
        assert await s.update_data(key, {"a": 1}) == {"a": 1}
        merged = await s.update_data(key, {"b": [1, 2]})
        assert merged == {"a": 1, "b": [1, 2]}
        merged["a"] = 99  # the returned dict is a copy
        assert await s.get_value(key, "a") == 1
        assert await s.get_value(key, "b", "fallback") == [1, 2]
        (await s.get_value(key, "b")).append(3)  # so is a value read back
        assert await s.get_value(key, "b") == [1, 2]
        assert await s.update_data(key, {}) == {"a": 1, "b": [1, 2]}
        assert await s.get_state(key) is None  # data never sets a state
        with pytest.raises(DataNotDictLikeError):
            await s.set_data(key, [("a", 2)])  # type: ignore[arg-type]
        assert await s.get_data(key) == {"a": 1, "b": [1, 2]}
    await reference.close()
