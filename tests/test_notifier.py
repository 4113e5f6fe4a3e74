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
from nazaha.storage.models import NotificationInstruction, NotificationLink, PendingNotification
from nazaha.storage.notifications import Mailbox, NotificationDispatcher, NotificationLinks
from tests.test_storage_notifications import link, new_report, notify

TOKEN = "555001:NOTIFIER-test-token-abcdefghijkl"


@pytest.fixture
async def world(sessionmaker, team_key):
    box = BotKeyBox(secrets.token_bytes(32))
    links = NotificationLinks(sessionmaker, box, team_key.public_key())
    mailbox = Mailbox(sessionmaker, box)
    await mailbox.open()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        try:
            yield links, Notifier(bot, mailbox, links, build_i18n()), client
        finally:
            await bot.session.close()
            await client.close()


async def link_and_reply(sessionmaker, links, team_key, chat_id: int, locale: str) -> str:
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, chat_id, locale)
    await notify(sessionmaker, report_id)
    assert await NotificationDispatcher(sessionmaker).dispatch(team_key) == 1
    return report_id


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_content_free_notification_after_a_429(sessionmaker, world, team_key):
    links, notifier, client = world
    user = await client.create_user(language_code="ar")
    await client.send_text(user["id"], "/start")  # a bot may only write to users who wrote first
    # The language chosen in the conversation travels sealed in the link, not in a row
    # the bot keeps about the account.
    await link_and_reply(sessionmaker, links, team_key, user["id"], "en")
    await client.add_fault("sendMessage", 429, count=1, retry_after=1)
    assert await notifier.drain() == 1
    texts = [m["text"] for m in await client.messages(user["id"]) if m["from_bot"]]
    assert len(texts) == 1 and texts[0].startswith("There is an update on your report.")
    calls = await client.calls("sendMessage")
    assert [c["ok"] for c in calls] == [False, True] and calls[0]["error_code"] == 429
    assert await count(sessionmaker, PendingNotification) == 0
    assert await count(sessionmaker, NotificationInstruction) == 0
    assert await count(sessionmaker, NotificationLink) == 1


async def test_a_user_who_blocked_the_bot_loses_the_link(sessionmaker, world, team_key):
    links, notifier, client = world
    user = await client.create_user(language_code="ar")
    await client.send_text(user["id"], "/start")
    await link_and_reply(sessionmaker, links, team_key, user["id"], "ar")
    await client.set_blocked(user["id"], True)
    await notifier.drain()
    assert await count(sessionmaker, NotificationLink) == 0
    assert await count(sessionmaker, NotificationInstruction) == 0
