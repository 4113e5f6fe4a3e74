"""Outgoing Telegram calls of one update, sent only after its writes are committed.

Handlers never call the Bot API directly: they queue methods here. The update middleware
flushes the outbox after the unit of work has committed, so a reply (a receipt above all)
never describes something that was not stored, and a duplicated update sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from aiogram import Bot
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    DeleteMessages,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardMarkup

from nazaha.bot.retry import BOT_API, Outcome, RetryPolicy
from nazaha.bot.telegram_session import results_unused

log = logging.getLogger(__name__)

TELEGRAM_TEXT_LIMIT = 4096


def split_for_telegram(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Cut text into pieces Telegram accepts, counting UTF-16 code units as it does.

    Pieces end at a line break when one is near, otherwise at the limit; nothing is lost
    or changed: ``"".join(pieces) == text``.
    """
    pieces: list[str] = []
    start = 0
    while start < len(text):
        units = 0
        end = start
        while end < len(text):
            width = 2 if ord(text[end]) > 0xFFFF else 1
            if units + width > limit:
                break
            units += width
            end += 1
        if end < len(text):
            newline = text.rfind("\n", start, end)
            if newline > start + limit // 2:
                end = newline + 1
        pieces.append(text[start:end])
        start = end
    return pieces or [text]


async def deliver(bot: Bot, method: TelegramMethod[Any], policy: RetryPolicy = BOT_API) -> Outcome[Any]:
    """Call the Bot API under the retry policy (nazaha.bot.retry); never raises a Bot API
    error: the outcome says whether the method arrived, and a 403 (the user blocked the
    bot) or a refusal is logged by kind only (Telegram's description can echo content)."""
    name = type(method).__name__
    outcome = await policy.run(lambda: bot(method), what=name)
    if outcome.blocked:
        log.info("recipient blocked the bot; %s dropped", name)
    elif not outcome.ok and not outcome.gave_up:
        # e.g. an expired callback query.
        log.warning("Bot API refused %s (%s)", name, type(outcome.error).__name__)
    return outcome


@dataclass
class _Group:
    """The methods of one ``send`` call and what to do if any of them is not delivered."""

    on_undelivered: Callable[[], object] | None
    failed: bool = False


class Outbox:
    def __init__(self, bot: Bot, policy: RetryPolicy = BOT_API) -> None:
        self.bot = bot
        self.policy = policy
        self._methods: list[tuple[TelegramMethod[Any], _Group | None]] = []

    def send(
        self,
        chat_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None = None,
        *,
        protect: bool = False,
        on_undelivered: Callable[[], object] | None = None,
    ) -> None:
        """Queue a plain-text message (long text is split; the keyboard goes on the last).

        ``on_undelivered()`` is called once, during :meth:`flush`, if a piece of it could
        not be delivered (the retry policy gave up, Telegram refused it, the user blocked
        the bot); its later pieces are then not sent. An exception it raises is logged
        and ignored.
        """
        group = _Group(on_undelivered) if on_undelivered is not None else None
        pieces = split_for_telegram(text)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            method = SendMessage(
                chat_id=chat_id,
                text=piece,
                reply_markup=keyboard if last else None,
                protect_content=protect,
                parse_mode=None,
            )
            self._methods.append((method, group))

    def answer_callback(self, callback_query_id: str, text: str | None = None) -> None:
        self._methods.append(
            (AnswerCallbackQuery(callback_query_id=callback_query_id, text=text), None)
        )

    def delete(self, chat_id: int, message_id: int) -> None:
        self._methods.append((DeleteMessage(chat_id=chat_id, message_id=message_id), None))

    def delete_many(self, chat_id: int, message_ids: list[int]) -> None:
        """Up to 100 ids; Telegram skips those it cannot delete (gone, or over 48 h old)."""
        self._methods.append((DeleteMessages(chat_id=chat_id, message_ids=message_ids), None))

    @property
    def pending(self) -> int:
        return len(self._methods)

    async def flush(self) -> None:
        """Send everything queued, in order, each method under the retry policy; a method
        that is not delivered does not stop the ones after it."""
        methods, self._methods = self._methods, []
        for method, group in methods:
            if group is not None and group.failed:
                continue  # the rest of a message whose owner was told it did not arrive
            with results_unused():  # nothing reads what Telegram sends back
                outcome = await deliver(self.bot, method, self.policy)
            if outcome.ok or group is None:
                continue
            group.failed = True
            try:
                assert group.on_undelivered is not None
                group.on_undelivered()
            except Exception as exc:  # the type only: a message could carry a receipt
                log.error("on_undelivered callback failed (%s)", type(exc).__name__)
