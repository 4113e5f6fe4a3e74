"""Updates aiogram cannot decode are skipped, never allowed to stop the bot.

Telegram sends shapes aiogram's models reject (an old forward whose ``forward_origin`` is
``{"type": "hidden_user", "date": ...}`` without ``sender_user_name``). Left alone, such an
update fails the whole getUpdates answer at its offset forever, or a webhook request. Here:

* :func:`split_decodable` separates the raw updates of a batch into those that validate
  and those that do not (the session drops the latter and moves the offset past them);
  :func:`decode_update` decodes one (the webhook server and the poller skip what it
  refuses, answering 200 or counting it as settled);
* :class:`UndecodableUpdates` is called with each dropped raw update: it logs one
  content-free line and, when the raw JSON names a private chat, tells that user (in their
  stored language, else Telegram's ``language_code``, else Arabic) to send it again.

Nothing of the update (ids, kind, text) is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiogram.types import Update
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __
from pydantic import ValidationError

log = logging.getLogger(__name__)

# user id -> the locale the user chose in the bot, or None
StoredLocale = Callable[[int], Awaitable[str | None]]


def split_decodable(items: list[Any], bot: Bot | None = None) -> tuple[list[Any], list[Any]]:
    """(raw updates that validate as ``Update``, raw updates that do not), order kept."""
    good, bad = [], []
    for item in items:
        try:
            Update.model_validate(item, context={"bot": bot})
        except (ValidationError, TypeError, ValueError):
            bad.append(item)
        else:
            good.append(item)
    return good, bad


def update_id_of(raw: Any) -> int | None:
    value = raw.get("update_id") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# The update kinds a user talks to the bot with; only these are answered.
CONVERSATION_KINDS = ("message", "edited_message", "callback_query")


def private_sender(raw: Any) -> tuple[int, str | None] | None:
    """(chat id, Telegram language_code) of the private chat a raw update came from, if the
    JSON shows one: a message or edited message whose ``chat`` is private, or a callback
    query whose message is in a private chat, and (as in every private chat) whose sender
    is that chat. None for groups, supergroups, channels, other kinds and anything unclear:
    the bot never posts in a chat that is not a user's private chat with it."""
    if not isinstance(raw, dict):
        return None
    for key, payload in raw.items():
        if key not in CONVERSATION_KINDS or not isinstance(payload, dict):
            continue
        sender = payload.get("from") if isinstance(payload.get("from"), dict) else {}
        chat = payload.get("chat")
        if chat is None and isinstance(payload.get("message"), dict):
            chat = payload["message"].get("chat")  # callback_query
        if not isinstance(chat, dict) or chat.get("type") != "private":
            continue
        chat_id = chat.get("id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool) or sender.get("id") != chat_id:
            continue
        code = sender.get("language_code")
        return chat_id, code if isinstance(code, str) else None
    return None


UNREADABLE = __(
    "Your last message could not be read. Please send it again, as plain text if you can."
)


class UndecodableUpdates:
    """Called with each raw update that could not be decoded (see module docstring).

    Notices are sent in background tasks (kept until done; :meth:`close` waits for them),
    so the caller, a synchronous decoder, is never blocked."""

    def __init__(self, bot: Bot, i18n: I18n, stored_locale: StoredLocale | None = None) -> None:
        self.bot = bot
        self.i18n = i18n
        self.stored_locale = stored_locale
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, raw: Any) -> None:
        log.warning("an update that could not be decoded was skipped")
        sender = private_sender(raw)
        if sender is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.tell(*sender))
        except RuntimeError:  # no running loop: nobody to tell from here
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def locale_for(self, chat_id: int, language_code: str | None) -> str:
        if self.stored_locale is not None:
            try:
                stored = await self.stored_locale(chat_id)
            except Exception:
                log.warning("stored language could not be read for an undecodable update")
                stored = None
            if stored in self.i18n.available_locales:
                return stored
        if (language_code or "").lower().startswith("en"):
            return "en"
        return self.i18n.default_locale

    async def tell(self, chat_id: int, language_code: str | None) -> None:
        """Send the "could not be read" notice; failures are logged by kind only."""
        from nazaha.handlers.outbox import Outbox

        try:
            locale = await self.locale_for(chat_id, language_code)
            with self.i18n.context(), self.i18n.use_locale(locale):
                text = str(UNREADABLE)
            outbox = Outbox(self.bot)
            outbox.send(chat_id, text)
            await outbox.flush()
        except Exception as exc:
            log.warning("the unreadable-update notice failed (%s)", type(exc).__name__)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def decode_update(bot: Bot | None, raw: Any) -> Update | None:
    """The update, or None if aiogram's models reject it (the caller then hands ``raw`` to
    :class:`UndecodableUpdates` and confirms it: Telegram must not resend it)."""
    try:
        return Update.model_validate(raw, context={"bot": bot})
    except (ValidationError, TypeError, ValueError):
        return None
