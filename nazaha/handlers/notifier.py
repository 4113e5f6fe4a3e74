"""Content-free update notifications, for reporters who opted in.

The console turns a case's news into instructions sealed to this process's mailbox
(storage/notifications.py); this loop opens them, sends the same fixed text in the language
the reporter used, and deletes each instruction: at no more than ~25 messages a second
overall, under the bot's one retry policy (nazaha.bot.retry); a user who blocked the bot
(403) loses the link.
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
from nazaha.storage.notifications import Instruction, Mailbox, NotificationLinks

log = logging.getLogger(__name__)

SEND_INTERVAL = 1 / 25  # below Telegram's ~30 messages/s for bulk sending


class Notifier:
    def __init__(
        self,
        bot: Bot,
        mailbox: Mailbox,
        links: NotificationLinks,
        i18n: I18n,
        policy: RetryPolicy = BOT_API,
    ) -> None:
        self.bot = bot
        self.mailbox = mailbox
        self.policy = policy
        self.links = links
        self.i18n = i18n

    def _message_for(self, instruction: Instruction) -> SendMessage:
        locale = instruction.locale if instruction.locale in self.i18n.available_locales else self.i18n.default_locale
        with self.i18n.context(), self.i18n.use_locale(locale):
            screen = screens.update_notification()
        return SendMessage(chat_id=instruction.chat_id, text=screen.text, reply_markup=screen.keyboard)

    async def send_one(self, instruction: Instruction) -> bool:
        """Send one notification; True if it arrived. A 403 drops the link."""
        outcome = await deliver(self.bot, self._message_for(instruction), self.policy)
        if outcome.blocked:
            await self.links.drop_link(instruction.link_id)
            log.info("notification link dropped: the user blocked the bot")
        return outcome.ok

    async def drain(self) -> int:
        """Send every instruction waiting now once; returns how many were attempted."""
        sent = 0
        for instruction in await self.mailbox.due():
            try:
                await self.send_one(instruction)
            except Exception:
                log.exception("notification failed")
            await self.mailbox.done(instruction.id)
            sent += 1
            await asyncio.sleep(SEND_INTERVAL)
        return sent

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("notifier pass failed")
            await asyncio.sleep(interval)
