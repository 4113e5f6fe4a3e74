"""SQL FSM storage and preferences: sealed, pseudonymous, expiring, unit-of-work aware."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import select

from nazaha.storage.crypto import BotKeyBox, TamperedData
from nazaha.storage.fsm import SqlFsmStorage
from nazaha.storage.models import FsmRecord, UserPreference
from nazaha.storage.prefs import PreferenceStore, Preferences
from nazaha.storage.unit_of_work import UnitOfWork, current_uow

BOT_ID, CHAT_ID, USER_ID = 7_123_456_789, 987_654_321, 987_654_321
SECRET_TEXT = "رشوة في مكتب الترخيص secret-marker-3141"


class Form(StatesGroup):
    description = State()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)

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


@pytest.fixture
def storage(sessionmaker, box, pepper, clock) -> SqlFsmStorage:
    return SqlFsmStorage(sessionmaker, box, pepper, clock=clock)


@pytest.fixture
def key() -> StorageKey:
    return StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID, user_id=USER_ID)


async def rows(sessionmaker) -> list[FsmRecord]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(FsmRecord))).all())


async def test_round_trip(storage, key):
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT, "n": 3, "list": [1, None]})
    assert await storage.get_state(key) == "Form:description"
    assert await storage.get_data(key) == {"description": SECRET_TEXT, "n": 3, "list": [1, None]}
    assert await storage.update_data(key, {"n": 4}) == {
        "description": SECRET_TEXT, "n": 4, "list": [1, None]
    }
    other = StorageKey(bot_id=BOT_ID, chat_id=CHAT_ID + 1, user_id=USER_ID + 1)
    assert await storage.get_state(other) is None
    await storage.close()


async def test_clearing_removes_the_row(storage, key, sessionmaker):
    await storage.set_state(key, "Form:description")
    await storage.set_data(key, {"a": 1})
    assert len(await rows(sessionmaker)) == 1
    await storage.set_state(key, None)
    await storage.set_data(key, {})
    assert await rows(sessionmaker) == []


async def test_stored_row_is_sealed_and_pseudonymous(storage, key, sessionmaker, box):
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT})
    [row] = await rows(sessionmaker)
    assert row.state == "Form:description"
    assert SECRET_TEXT.encode() not in row.sealed_data
    assert b"secret-marker" not in row.sealed_data
    for raw_id in (BOT_ID, CHAT_ID, USER_ID):
        assert str(raw_id) not in row.key
        assert str(raw_id).encode() not in row.sealed_data
    assert row.key == storage.record_key(key) and len(row.key) == 64
    # Bound to its row: a ciphertext copied under another key does not open.
    with pytest.raises(TamperedData):
        box.open("fsm", "another-record", row.sealed_data)
    # Another pepper gives another key: the row is unreachable without this pepper.
    other = SqlFsmStorage(storage._sessionmaker, box, secrets.token_bytes(32))
    assert other.record_key(key) != row.key
    assert await other.get_state(key) is None


async def test_draft_expires_after_ttl_and_notice_fires_once(storage, key, clock, sessionmaker):
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
    [row] = await rows(sessionmaker)
    assert row.state is None and row.sealed_data is None and row.expired is True

    assert await storage.pop_expired_notice(key) is True
    assert await storage.pop_expired_notice(key) is False
    await storage.set_state(key, Form.description)  # a new draft starts clean
    assert await storage.get_data(key) == {}


async def test_writing_to_an_expired_draft_does_not_resurrect_it(storage, key, clock):
    await storage.set_state(key, Form.description)
    await storage.set_data(key, {"description": SECRET_TEXT})
    clock.advance(hours=25)
    await storage.set_state(key, Form.description)
    assert await storage.get_data(key) == {}
    assert await storage.pop_expired_notice(key) is True


async def test_purge_expired(storage, sessionmaker, clock):
    keys = [StorageKey(bot_id=BOT_ID, chat_id=i, user_id=i) for i in range(3)]
    for k in keys:
        await storage.set_data(k, {"description": SECRET_TEXT})
    clock.advance(hours=12)
    await storage.set_data(keys[2], {"description": "fresh"})
    clock.advance(hours=13)
    assert await storage.purge_expired() == 2
    by_key = {row.key: row for row in await rows(sessionmaker)}
    assert by_key[storage.record_key(keys[0])].sealed_data is None
    assert by_key[storage.record_key(keys[0])].expired is True
    assert by_key[storage.record_key(keys[2])].sealed_data is not None
    assert await storage.pop_expired_notice(keys[0]) is True  # seen: the row goes
    assert storage.record_key(keys[0]) not in {row.key for row in await rows(sessionmaker)}

    clock.advance(days=31)
    # keys[2] is wiped; it and keys[1] are tombstones older than 30 days: deleted.
    assert await storage.purge_expired() == 3
    assert await rows(sessionmaker) == []


async def test_writes_inside_a_uow_are_visible_and_committed_with_it(storage, key, sessionmaker):
    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=1)
    token = current_uow.set(uow)
    try:
        await storage.set_state(key, Form.description)
        await storage.update_data(key, {"description": SECRET_TEXT})
        assert await storage.get_state(key) == "Form:description"
        assert await storage.get_data(key) == {"description": SECRET_TEXT}
        assert await rows(sessionmaker) == []  # queued, not written
        await uow.commit()
    finally:
        current_uow.reset(token)
    assert await storage.get_state(key) == "Form:description"
    assert await storage.get_data(key) == {"description": SECRET_TEXT}


async def test_writes_of_an_uncommitted_uow_are_discarded(storage, key, sessionmaker):
    await storage.set_data(key, {"description": "before"})
    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=2)
    token = current_uow.set(uow)
    try:
        await storage.set_data(key, {"description": "during"})
        assert await storage.get_data(key) == {"description": "during"}
        await uow.close()  # e.g. the handler failed
    finally:
        current_uow.reset(token)
    assert await storage.get_data(key) == {"description": "before"}


async def test_expiry_wipe_inside_a_duplicate_update_is_rolled_back(storage, key, sessionmaker, clock):
    await storage.set_data(key, {"description": SECRET_TEXT})
    first = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=3)
    await first.commit()
    clock.advance(hours=25)
    dup = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=3)
    token = current_uow.set(dup)
    try:
        assert await storage.get_data(key) == {}
        from nazaha.storage.unit_of_work import DuplicateUpdate

        with pytest.raises(DuplicateUpdate):
            await dup.commit()
    finally:
        current_uow.reset(token)
    [row] = await rows(sessionmaker)
    assert row.sealed_data is not None  # nothing written by the duplicate...
    assert await storage.get_data(key) == {}  # ...and the next read wipes it anyway
    [row] = await rows(sessionmaker)
    assert row.sealed_data is None


# -- preferences -------------------------------------------------------------------------


async def test_preferences_round_trip_sealed_and_pseudonymous(sessionmaker, box, pepper):
    prefs = PreferenceStore(sessionmaker, box, pepper)
    assert await prefs.get(USER_ID) == Preferences()
    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=10)
    token = current_uow.set(uow)
    try:
        prefs.set(uow, USER_ID, Preferences(locale="ar", safety_seen=True))
        assert await prefs.get(USER_ID) == Preferences(locale="ar", safety_seen=True)
        async with sessionmaker() as session:
            assert (await session.scalars(select(UserPreference))).all() == []
        await uow.commit()
    finally:
        current_uow.reset(token)
    assert await prefs.get(USER_ID) == Preferences(locale="ar", safety_seen=True)
    assert await prefs.get(USER_ID + 1) == Preferences()

    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=11)
    prefs.set(uow, USER_ID, Preferences(locale="en", safety_seen=True))
    await uow.commit()
    assert (await prefs.get(USER_ID)).locale == "en"

    async with sessionmaker() as session:
        [row] = (await session.scalars(select(UserPreference))).all()
    assert str(USER_ID) not in row.pseudonym
    assert b'"en"' not in row.sealed and b"safety" not in row.sealed


class Session(StatesGroup):
    active = State()


async def test_only_told_states_leave_the_expiry_notice(sessionmaker, box, pepper, clock):
    storage = SqlFsmStorage(sessionmaker, box, pepper, clock=clock, told_states={"Form:description"})
    draft = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    session = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    await storage.set_state(draft, Form.description)
    await storage.set_state(session, Session.active)
    clock.advance(hours=25)
    assert await storage.get_state(session) is None  # expired silently: no tombstone left
    assert await storage.pop_expired_notice(session) is False
    assert storage.record_key(session) not in {row.key for row in await rows(sessionmaker)}
    assert await storage.pop_expired_notice(draft) is True


async def test_purge_keeps_the_flag_only_for_told_states(sessionmaker, box, pepper, clock):
    storage = SqlFsmStorage(sessionmaker, box, pepper, clock=clock, told_states={"Form:description"})
    draft = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    session = StorageKey(bot_id=BOT_ID, chat_id=2, user_id=2)
    await storage.set_state(draft, Form.description)
    await storage.set_data(draft, {"description": SECRET_TEXT})
    await storage.set_state(session, Session.active)
    anchor = StorageKey(bot_id=BOT_ID, chat_id=3, user_id=3, destiny="wipe")
    await storage.set_data(anchor, {"first": 17})  # data without a state (the wipe anchor)
    clock.advance(hours=25)
    assert await storage.purge_expired() == 5  # three wiped, the two silent ones deleted
    [row] = await rows(sessionmaker)
    assert row.key == storage.record_key(draft) and row.expired is True
    assert row.state is None and row.sealed_data is None
    assert await storage.pop_expired_notice(session) is False
    assert await storage.pop_expired_notice(draft) is True
