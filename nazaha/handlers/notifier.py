"""Content-free update notifications, for reporters who opted in.

The console queues a pending notification when a caseworker replies; this loop in the bot
process drains the queue. Messages say only that there is an update, in the user's language,
at no more than ~25 messages a second overall, under the bot's one retry policy
(nazaha.bot.retry); a user who blocked the bot (403) loses the link.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.methods import SendMessage
from aiogram.utils.i18n import I18n

from nazaha.bot.retry import BOT_API, RetryPolicy
from nazaha.handlers import screens
from nazaha.handlers.outbox import deliver
from nazaha.storage.notifications import NotificationLinks
from nazaha.storage.prefs import PreferenceStore

log = logging.getLogger(__name__)

SEND_INTERVAL = 1 / 25  # below Telegram's ~30 messages/s for bulk sending


class Notifier:
    def __init__(
        self,
        bot: Bot,
        links: NotificationLinks,
        prefs: PreferenceStore,
        i18n: I18n,
        policy: RetryPolicy = BOT_API,
    ) -> None:
        self.bot = bot
        self.policy = policy
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

    async def send_one(self, link_id: str, chat_id: int) -> bool:
        """Send one notification; True if it arrived. A 403 drops the link."""
        method = await self._message_for(chat_id)
        outcome = await deliver(self.bot, method, self.policy)
        if outcome.blocked:
            await self.links.drop_link(link_id)
            log.info("notification link dropped: the user blocked the bot")
        return outcome.ok

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
