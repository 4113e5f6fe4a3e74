"""Outgoing Telegram calls of one update, sent only after its writes are committed.

Handlers never call the Bot API directly: they queue methods here. The update middleware
flushes the outbox after the unit of work has committed, so a reply (a receipt above all)
never describes something that was not stored, and a duplicated update sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    DeleteMessages,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardMarkup

from nazaha.bot.telegram_session import results_unused

log = logging.getLogger(__name__)

TELEGRAM_TEXT_LIMIT = 4096
MAX_ATTEMPTS = 4


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


async def deliver(bot: Bot, method: TelegramMethod[Any]) -> Any:
    """Call the Bot API, honouring 429 retry_after and retrying transient failures.

    A user who blocked the bot (403) is not an error worth retrying: the call is dropped.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await bot(method)
        except TelegramRetryAfter as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(exc.retry_after)
        except (TelegramServerError, TelegramNetworkError):
            if attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(0.2 * 2**attempt)
        except TelegramForbiddenError:
            log.info("recipient blocked the bot; %s dropped", type(method).__name__)
            return None
    return None  # pragma: no cover


class Outbox:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._methods: list[TelegramMethod[Any]] = []

    def send(
        self,
        chat_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None = None,
        *,
        protect: bool = False,
    ) -> None:
        """Queue a plain-text message (long text is split; the keyboard goes on the last)."""
        pieces = split_for_telegram(text)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            self._methods.append(
                SendMessage(
                    chat_id=chat_id,
                    text=piece,
                    reply_markup=keyboard if last else None,
                    protect_content=protect,
                    parse_mode=None,
                )
            )

    def answer_callback(self, callback_query_id: str, text: str | None = None) -> None:
        self._methods.append(
            AnswerCallbackQuery(callback_query_id=callback_query_id, text=text)
        )

    def delete(self, chat_id: int, message_id: int) -> None:
        self._methods.append(DeleteMessage(chat_id=chat_id, message_id=message_id))

    def delete_many(self, chat_id: int, message_ids: list[int]) -> None:
        """Up to 100 ids; Telegram skips those it cannot delete (gone, or over 48 h old)."""
        self._methods.append(DeleteMessages(chat_id=chat_id, message_ids=message_ids))

    @property
    def pending(self) -> int:
        return len(self._methods)

    async def flush(self) -> None:
        methods, self._methods = self._methods, []
        for method in methods:
            try:
                with results_unused():  # nothing reads what Telegram sends back
                    await deliver(self.bot, method)
            except TelegramBadRequest as exc:
                # e.g. an expired callback query. Telegram's description can echo
                # content, so only the kinds of method and error are logged.
                log.warning("Bot API refused %s (%s)", type(method).__name__, type(exc).__name__)
