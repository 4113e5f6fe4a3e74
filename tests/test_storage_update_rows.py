"""UpdateRows: one read at the start of an update primes the account's preferences row."""

from __future__ import annotations

import datetime as dt
import secrets

from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import event

from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import engine_of
from nazaha.storage.prefs import PreferenceStore, Preferences
from nazaha.storage.unit_of_work import UnitOfWork, current_uow
from nazaha.storage.update_rows import UpdateRows

BOT_ID, USER_ID = 7_123_456_789, 987_654_321
KEY = StorageKey(bot_id=BOT_ID, chat_id=USER_ID, user_id=USER_ID)
PREFS = Preferences(locale="en", wipe_from=12)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


def stores(sessionmaker, clock=None):
    box, pepper = BotKeyBox(secrets.token_bytes(32)), secrets.token_bytes(32)
    options = {"clock": clock} if clock else {}
    prefs = PreferenceStore(sessionmaker, box, pepper, **options)
    return prefs, UpdateRows(prefs)


def no_session_on_sqlite(uow) -> bool:
    """On SQLite the read runs on the reader lane and the store answers from the overlay,
    so the update never opens a session; PostgreSQL reads through the update's session."""
    sqlite = engine_of(uow.sessionmaker).dialect.name == "sqlite"
    return uow._read_session is None if sqlite else True


async def loaded(sessionmaker, rows, update_id, key=KEY):
    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=update_id)
    await rows.load(uow, key)
    return uow


async def store(sessionmaker, prefs, user_id, value):
    uow = UnitOfWork(sessionmaker)
    prefs.set(uow, user_id, value)
    await uow.commit()


class Statements:
    """Counts the statements the async engine runs (not the SQLite lanes')."""

    def __init__(self, sessionmaker) -> None:
        self.engine = engine_of(sessionmaker).sync_engine
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, *args) -> None:
        self.seen.append(statement)


async def test_a_new_user_gets_defaults_from_one_read(sessionmaker):
    prefs, rows = stores(sessionmaker)
    with Statements(sessionmaker) as seen:
        uow = await loaded(sessionmaker, rows, 1)
        token = current_uow.set(uow)
        try:
            got = await prefs.get(USER_ID)
            assert got == Preferences() and got.stored_until is None
            assert await prefs.get(USER_ID) == Preferences()
            assert no_session_on_sqlite(uow)  # the read went through the lane
        finally:
            current_uow.reset(token)
            await uow.close()
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    if engine_of(sessionmaker).dialect.name == "sqlite":
        assert selects == []  # the lane's connection did it
    else:
        assert len(selects) == 1 and "user_preferences" in selects[0]
    assert not any("processed_updates" in s or "fsm" in s for s in seen)  # prefs only


async def test_the_stored_row_is_seen_without_further_reads(sessionmaker):
    prefs, rows = stores(sessionmaker)
    await store(sessionmaker, prefs, USER_ID, PREFS)
    await store(sessionmaker, prefs, USER_ID + 1, Preferences(locale="ar"))

    uow = await loaded(sessionmaker, rows, 6)
    with Statements(sessionmaker) as seen:
        token = current_uow.set(uow)
        try:
            got = await prefs.get(USER_ID)
            assert got == PREFS and got.stored_until is not None
            assert got.stored_until.minute == 0 and got.stored_until.second == 0
            assert no_session_on_sqlite(uow)
        finally:
            current_uow.reset(token)
            await uow.close()
    assert seen == []  # answered from the overlay

    # Each update reads its own user's row.
    other = StorageKey(bot_id=BOT_ID, chat_id=USER_ID + 1, user_id=USER_ID + 1)
    uow = await loaded(sessionmaker, rows, 7, key=other)
    token = current_uow.set(uow)
    try:
        assert await prefs.get(USER_ID + 1) == Preferences(locale="ar")
    finally:
        current_uow.reset(token)
        await uow.close()


async def test_an_expired_row_is_primed_as_defaults(sessionmaker):
    clock = Clock()
    prefs, rows = stores(sessionmaker, clock=clock)
    await store(sessionmaker, prefs, USER_ID, PREFS)  # expires 2026-01-31 09:00
    clock.now = dt.datetime(2026, 1, 31, 9, 0, tzinfo=dt.timezone.utc)
    uow = await loaded(sessionmaker, rows, 9)
    token = current_uow.set(uow)
    try:
        got = await prefs.get(USER_ID)
        assert got == Preferences() and got.stored_until is None
        prefs.touch(uow, USER_ID, got)  # nothing to keep alive
        assert uow.pending_writes == 0
    finally:
        current_uow.reset(token)
        await uow.close()


async def test_writes_of_the_update_win_over_the_primed_row(sessionmaker):
    prefs, rows = stores(sessionmaker)
    await store(sessionmaker, prefs, USER_ID, PREFS)
    uow = await loaded(sessionmaker, rows, 10)
    token = current_uow.set(uow)
    try:
        prefs.set(uow, USER_ID, Preferences(locale="ar"))
        await rows.load(uow, KEY)  # loading again does not overwrite what the update set
        assert await prefs.get(USER_ID) == Preferences(locale="ar")
        await uow.commit()
    finally:
        current_uow.reset(token)
    uow = await loaded(sessionmaker, rows, 11)
    token = current_uow.set(uow)
    try:
        assert await prefs.get(USER_ID) == Preferences(locale="ar")
    finally:
        current_uow.reset(token)
        await uow.close()


async def test_load_claims_nothing_and_writes_nothing(sessionmaker):
    from sqlalchemy import func, select

    from nazaha.storage.models import ProcessedUpdate

    prefs, rows = stores(sessionmaker)
    for _ in range(2):  # the same update delivered twice: both load, neither claims
        uow = await loaded(sessionmaker, rows, 5)
        assert uow.pending_writes == 0
        await uow.commit()
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 0
