"""Content-free update notifications, for reporters who opted in.

The console queues a pending notification when a caseworker replies; this loop in the bot
process drains the queue. Messages say only that there is an update, in the user's language,
at no more than ~25 messages a second overall, honouring 429 retry_after; a user who blocked
the bot (403) loses the link.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.utils.i18n import I18n

from nazaha.handlers import screens
from nazaha.storage.notifications import NotificationLinks
from nazaha.storage.prefs import PreferenceStore

log = logging.getLogger(__name__)

SEND_INTERVAL = 1 / 25  # below Telegram's ~30 messages/s for bulk sending
MAX_RETRIES = 5


class Notifier:
    def __init__(self, bot: Bot, links: NotificationLinks, prefs: PreferenceStore, i18n: I18n) -> None:
        self.bot = bot
        self.links = links
        self.prefs = prefs
        self.i18n = i18n

    async def _message_for(self, chat_id: int) -> SendMessage:
        # In a private chat the chat id is the user id, so the language choice is found.
        preferences = await self.prefs.get(chat_id)
        locale = preferences.locale or self.i18n.default_locale
        with self.i18n.context(), self.i18n.use_locale(locale):
            screen = screens.update_notification()
        return SendMessage(chat_id=chat_id, text=screen.text, reply_markup=screen.keyboard)

    async def send_one(self, link_id: str, chat_id: int) -> None:
        method = await self._message_for(chat_id)
        for _ in range(MAX_RETRIES):
            try:
                await self.bot(method)
                return
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except TelegramForbiddenError:
                await self.links.drop_link(link_id)
                log.info("notification link dropped: the user blocked the bot")
                return
        log.warning("notification not delivered after %d attempts", MAX_RETRIES)

    async def drain(self) -> int:
        """Send every due notification once; returns how many messages were attempted."""
        sent = 0
        for delivery in await self.links.due():
            for link_id, chat_id in delivery.targets:
                try:
                    await self.send_one(link_id, chat_id)
                except Exception:
                    log.exception("notification failed")
                sent += 1
                await asyncio.sleep(SEND_INTERVAL)
            await self.links.done(delivery.notification_id)
        return sent

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("notifier pass failed")
            await asyncio.sleep(interval)
