"""The notifier against the sandbox emulator: content-free text, 429 honoured, 403 drops."""

from __future__ import annotations

import secrets

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select

from nazaha.bot.app import build_i18n
from nazaha.handlers.notifier import Notifier
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.models import NotificationLink, PendingNotification
from nazaha.storage.notifications import NotificationLinks
from nazaha.storage.prefs import Preferences, PreferenceStore
from nazaha.storage.unit_of_work import UnitOfWork
from tests.test_storage_notifications import PEPPER, new_report

TOKEN = "555001:NOTIFIER-test-token-abcdefghijkl"


@pytest.fixture
async def world(sessionmaker):
    box = BotKeyBox(secrets.token_bytes(32))
    links = NotificationLinks(sessionmaker, box, PEPPER)
    prefs = PreferenceStore(sessionmaker, box, PEPPER)
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        try:
            yield links, Notifier(bot, links, prefs, build_i18n()), client, prefs
        finally:
            await bot.session.close()
            await client.close()


async def link_and_reply(sessionmaker, links, chat_id: int) -> str:
    report_id = await new_report(sessionmaker)
    uow = UnitOfWork(sessionmaker)
    links.add(uow, report_id, chat_id)
    uow.add(lambda s: _pending(s, report_id))
    await uow.commit()
    return report_id


async def _pending(session, report_id: str) -> None:
    import datetime as dt

    session.add(PendingNotification(report_id=report_id, created_at=dt.datetime.now(dt.timezone.utc)))


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_content_free_notification_after_a_429(sessionmaker, world):
    links, notifier, client, prefs = world
    user = await client.create_user(language_code="en")
    await client.send_text(user["id"], "/start")  # a bot may only write to users who wrote first
    uow = UnitOfWork(sessionmaker)
    prefs.set(uow, user["id"], Preferences(locale="en"))  # kept by the bot at opt-in
    await uow.commit()
    await link_and_reply(sessionmaker, links, user["id"])
    await client.add_fault("sendMessage", 429, count=1, retry_after=1)
    assert await notifier.drain() == 1
    texts = [m["text"] for m in await client.messages(user["id"]) if m["from_bot"]]
    assert len(texts) == 1 and texts[0].startswith("There is an update on your report.")
    calls = await client.calls("sendMessage")
    assert [c["ok"] for c in calls] == [False, True] and calls[0]["error_code"] == 429
    assert await count(sessionmaker, PendingNotification) == 0
    assert await count(sessionmaker, NotificationLink) == 1


async def test_a_user_who_blocked_the_bot_loses_the_link(sessionmaker, world):
    links, notifier, client, _ = world
    user = await client.create_user(language_code="ar")
    await client.send_text(user["id"], "/start")
    await link_and_reply(sessionmaker, links, user["id"])
    await client.set_blocked(user["id"], True)
    await notifier.drain()
    assert await count(sessionmaker, NotificationLink) == 0
    assert await count(sessionmaker, PendingNotification) == 0
