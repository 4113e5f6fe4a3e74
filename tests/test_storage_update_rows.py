"""UpdateRows: one read primes the claim, the preferences and the FSM record of an update."""

from __future__ import annotations

import datetime as dt
import secrets

from aiogram.fsm.storage.base import StorageKey

from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.fsm import SqlFsmStorage
from nazaha.storage.prefs import PreferenceStore, Preferences
from nazaha.storage.unit_of_work import UnitOfWork, current_uow
from nazaha.storage.update_rows import UpdateRows

BOT_ID, USER_ID = 7_123_456_789, 987_654_321
KEY = StorageKey(bot_id=BOT_ID, chat_id=USER_ID, user_id=USER_ID)


def stores(sessionmaker, clock=None):
    box, pepper = BotKeyBox(secrets.token_bytes(32)), secrets.token_bytes(32)
    options = {"clock": clock} if clock else {}
    fsm = SqlFsmStorage(sessionmaker, box, pepper, **options)
    prefs = PreferenceStore(sessionmaker, box, pepper)
    return fsm, prefs, UpdateRows(fsm, prefs)


def no_session_on_sqlite(uow) -> bool:
    """On SQLite the read runs on the reader lane and the stores answer from the overlays,
    so the update never opens a session; PostgreSQL reads through the update's session."""
    from nazaha.storage.database import engine_of

    sqlite = engine_of(uow.sessionmaker).dialect.name == "sqlite"
    return uow._read_session is None if sqlite else True


async def loaded(sessionmaker, rows, update_id):
    uow = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=update_id)
    await rows.load(uow, KEY)
    return uow


async def test_a_new_user_gets_defaults_and_no_claim(sessionmaker):
    fsm, prefs, rows = stores(sessionmaker)
    uow = await loaded(sessionmaker, rows, 1)
    token = current_uow.set(uow)
    try:
        assert not await uow.is_processed()
        assert await prefs.get(USER_ID) == Preferences()
        assert await fsm.get_state(KEY) is None and await fsm.get_data(KEY) == {}
        assert no_session_on_sqlite(uow)  # the read went through the lane
    finally:
        current_uow.reset(token)
        await uow.close()


async def test_stored_rows_and_claim_are_seen(sessionmaker):
    fsm, prefs, rows = stores(sessionmaker)
    first = UnitOfWork(sessionmaker, bot_id=BOT_ID, update_id=5)
    token = current_uow.set(first)
    await fsm.set_state(KEY, "ReportForm:active")
    await fsm.set_data(KEY, {"answers": {"description": "رشوة \u200f"}})
    prefs.set(first, USER_ID, Preferences(locale="en", safety_seen=True))
    current_uow.reset(token)
    await first.commit()

    again = await loaded(sessionmaker, rows, 5)  # the same update delivered twice
    assert await again.is_processed()
    await again.close()

    uow = await loaded(sessionmaker, rows, 6)
    token = current_uow.set(uow)
    try:
        assert not await uow.is_processed()
        assert await prefs.get(USER_ID) == Preferences(locale="en", safety_seen=True)
        assert await fsm.get_state(KEY) == "ReportForm:active"
        assert await fsm.get_data(KEY) == {"answers": {"description": "رشوة \u200f"}}
        assert no_session_on_sqlite(uow)
    finally:
        current_uow.reset(token)
        await uow.close()


async def test_an_expired_draft_is_wiped_through_the_primed_row(sessionmaker):
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)]
    fsm, prefs, rows = stores(sessionmaker, clock=lambda: now[0])
    await fsm.set_state(KEY, "ReportForm:active")  # outside an update: stored at once
    now[0] += dt.timedelta(hours=25)
    uow = await loaded(sessionmaker, rows, 9)
    token = current_uow.set(uow)
    try:
        assert await fsm.get_state(KEY) is None
        assert await fsm.pop_expired_notice(KEY)
    finally:
        current_uow.reset(token)
    await uow.commit()
    assert await fsm.get_state(KEY) is None and not await fsm.pop_expired_notice(KEY)
