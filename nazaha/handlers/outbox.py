"""Outgoing Telegram calls of one update, sent only after its writes are committed.

Handlers never call the Bot API directly: they queue methods here. The update middleware
flushes the outbox after the unit of work has committed, so a reply (a receipt above all)
never describes something that was not stored, and a duplicated update sends nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    DeleteMessages,
    EditMessageReplyMarkup,
    EditMessageText,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardMarkup, MessageEntity

from nazaha.bot.retry import BOT_API, Outcome, RetryPolicy
from nazaha.bot.telegram_session import results_unused

log = logging.getLogger(__name__)

TELEGRAM_TEXT_LIMIT = 4096
# answerCallbackQuery: the notice shown over the chat holds 0-200 characters.
CALLBACK_NOTICE_LIMIT = 200
# deleteMessages takes 1 to 100 ids.
DELETE_BATCH = 100


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


@dataclass
class Cleared:
    """Whether Telegram accepted at least one deletion queued by :meth:`Outbox.clear`
    (known once it is flushed): a message queued with ``only_if`` it is sent only then."""

    done: bool = False


@dataclass(frozen=True)
class _Special:
    """How a queued method is handled beyond "send it": ``fallback`` is sent instead when
    an edit is refused (the message is gone or too old), except when the message already
    shows that content; ``on_result`` receives what Telegram answered (e.g. a poll's id);
    ``marks`` is set when the method is accepted; a method with ``only_if`` is sent only
    if that mark was set."""

    fallback: TelegramMethod[Any] | None = None
    on_result: Callable[[Any], Awaitable[None]] | None = None
    quiet: bool = False  # a refusal is expected now and then: not logged
    marks: Cleared | None = None
    only_if: Cleared | None = None


def not_modified(error: BaseException | None) -> bool:
    """Telegram's answer to an edit that changes nothing (a button tapped twice)."""
    return isinstance(error, TelegramBadRequest) and "not modified" in (error.message or "")


class Outbox:
    def __init__(self, bot: Bot, policy: RetryPolicy = BOT_API) -> None:
        self.bot = bot
        self.policy = policy
        self._methods: list[tuple[TelegramMethod[Any], _Group | None]] = []
        self._special: dict[int, _Special] = {}  # id(method) -> how to handle it

    def send(
        self,
        chat_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None = None,
        *,
        protect: bool = False,
        on_undelivered: Callable[[], object] | None = None,
        only_if: Cleared | None = None,
    ) -> None:
        """Queue a plain-text message (long text is split; the keyboard goes on the last).

        ``protect``: Telegram's ``protect_content`` (the message cannot be forwarded or
        saved; a bot can still copy it). ``on_undelivered()`` is called once, during
        :meth:`flush`, if a piece of it could not be delivered (the retry policy gave up,
        Telegram refused it, the user blocked the bot); its later pieces are then not sent.
        An exception it raises is logged and ignored. ``only_if``: sent only if that
        :meth:`clear` deleted something.
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
            if only_if is not None:
                self._special[id(method)] = _Special(only_if=only_if)

    def send_rich(
        self,
        chat_id: int,
        text: str,
        entities: Sequence[MessageEntity] = (),
        keyboard: InlineKeyboardMarkup | None = None,
        *,
        protect: bool = False,
    ) -> None:
        """Queue a message with entities (bold, links: never parse_mode). The caller keeps
        it within 4096 UTF-16 units: it is not split. ``protect`` as in :meth:`send`."""
        self._methods.append(
            (
                SendMessage(
                    chat_id=chat_id,
                    text=text,
                    entities=list(entities) or None,
                    reply_markup=keyboard,
                    protect_content=protect,
                    parse_mode=None,
                ),
                None,
            )
        )

    def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        entities: Sequence[MessageEntity] = (),
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> None:
        """Queue an edit of a bot message in place (navigating a menu). If Telegram refuses
        it (the message was deleted, or cannot be edited any more) the same content is sent
        as a new message; an edit that changes nothing (a double tap) is simply dropped."""
        edit = EditMessageText(
            chat_id=chat_id,
            message_id=message_id,
            text=text,
            entities=list(entities) or None,
            reply_markup=keyboard,
            parse_mode=None,
        )
        fallback = SendMessage(
            chat_id=chat_id, text=text, entities=list(entities) or None,
            reply_markup=keyboard, parse_mode=None,
        )
        self._methods.append((edit, None))
        self._special[id(edit)] = _Special(fallback=fallback, quiet=True)

    def remove_keyboard(self, chat_id: int, message_id: int) -> None:
        """Queue taking the buttons off a bot message; a refusal is ignored."""
        method = EditMessageReplyMarkup(chat_id=chat_id, message_id=message_id, reply_markup=None)
        self._methods.append((method, None))
        self._special[id(method)] = _Special(quiet=True)

    def call(
        self, method: TelegramMethod[Any], on_result: Callable[[Any], Awaitable[None]] | None = None
    ) -> None:
        """Queue any Bot API method; ``on_result(result)`` runs once Telegram accepted it
        (an exception it raises is logged by type and ignored)."""
        self._methods.append((method, None))
        if on_result is not None:
            self._special[id(method)] = _Special(on_result=on_result)

    def answer_callback(self, callback_query_id: str, text: str | None = None) -> None:
        self._methods.append(
            (AnswerCallbackQuery(callback_query_id=callback_query_id, text=text), None)
        )

    def callback_notice(self, text: str) -> bool:
        """Give the queued answer to the pressed button (queued for every callback query
        before its handler runs) a short notice that Telegram shows over the chat; at most
        200 characters (longer text is cut). False if no answer is queued (not a button)."""
        for method, _group in reversed(self._methods):
            if isinstance(method, AnswerCallbackQuery):
                method.text = text if len(text) <= CALLBACK_NOTICE_LIMIT else text[: CALLBACK_NOTICE_LIMIT - 1] + "…"
                return True
        return False

    def delete(self, chat_id: int, message_id: int) -> None:
        self._methods.append((DeleteMessage(chat_id=chat_id, message_id=message_id), None))

    def delete_many(self, chat_id: int, message_ids: list[int]) -> None:
        """Up to 100 ids; Telegram skips those it cannot delete (gone, or over 48 h old)."""
        self._methods.append((DeleteMessages(chat_id=chat_id, message_ids=message_ids), None))

    def clear(self, chat_id: int, message_ids: Sequence[int]) -> Cleared:
        """Queue deleting ``message_ids`` (increasing) from a private chat, 100 a call,
        ahead of everything else queued for this update.

        Telegram skips ids it cannot delete (gone, never sent, or over 48 hours old); a call
        it refuses altogether is logged by kind and the rest of the flush goes on: a reply
        never fails because the chat could not be cleared. The result tells, once flushed,
        whether anything was deleted (for a message queued with ``only_if``)."""
        cleared = Cleared()
        ids = list(message_ids)
        queued: list[tuple[TelegramMethod[Any], _Group | None]] = []
        for start in range(0, len(ids), DELETE_BATCH):
            method = DeleteMessages(chat_id=chat_id, message_ids=ids[start : start + DELETE_BATCH])
            queued.append((method, None))
            self._special[id(method)] = _Special(quiet=True, marks=cleared)
        # First of all: a message this update sends must not get an id inside the span.
        self._methods[0:0] = queued
        return cleared

    @property
    def pending(self) -> int:
        return len(self._methods)

    async def flush(self) -> None:
        """Send everything queued, in order, each method under the retry policy; a method
        that is not delivered does not stop the ones after it."""
        methods, self._methods = self._methods, []
        special, self._special = self._special, {}
        for method, group in methods:
            if group is not None and group.failed:
                continue  # the rest of a message whose owner was told it did not arrive
            how = special.get(id(method))
            if how is not None:
                await self._deliver_special(method, how)
                continue
            with results_unused():  # nothing reads what Telegram sends back
                outcome = await deliver(self.bot, method, self.policy)
            if outcome.ok or group is None:
                continue
            group.failed = True
            try:
                assert group.on_undelivered is not None
                result = group.on_undelivered()
                if inspect.isawaitable(result):  # e.g. a receipt kept in Redis
                    await result
            except Exception as exc:  # the type only: a message could carry a receipt
                log.error("on_undelivered callback failed (%s)", type(exc).__name__)

    async def _deliver_special(self, method: TelegramMethod[Any], how: _Special) -> None:
        name = type(method).__name__
        if how.only_if is not None:
            if how.only_if.done:
                with results_unused():
                    await deliver(self.bot, method, self.policy)
            return
        if how.on_result is not None:
            outcome = await deliver(self.bot, method, self.policy)
            if outcome.ok:
                try:
                    await how.on_result(outcome.value)
                except Exception as exc:
                    log.error("%s: handling the result failed (%s)", name, type(exc).__name__)
            return
        with results_unused():
            if how.quiet:
                outcome = await self.policy.run(lambda: self.bot(method), what=name)
            else:
                outcome = await deliver(self.bot, method, self.policy)
            if outcome.ok and how.marks is not None:
                how.marks.done = True
            if outcome.ok or not_modified(outcome.error) or outcome.blocked or outcome.gave_up:
                return  # (gave up: the edit may have arrived; a new message could repeat it)
            if how.quiet:
                log.info("Bot API refused %s (%s)", name, type(outcome.error).__name__)
            if how.fallback is not None:
                await deliver(self.bot, how.fallback, self.policy)
