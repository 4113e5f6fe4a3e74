"""Errors logged without content: an aiogram errors handler and an asyncio loop handler.

aiogram logs an unhandled error as "Cause exception while process update id=... <message>",
and an exception's message can quote a chat id ("Flood control exceeded ... in chat <id>")
or what a user sent; asyncio's default handler prints "Task exception was never retrieved"
with the exception's repr. Both are replaced by lines that carry the exception type and, for
updates, the update's kind (message, callback_query, ...) only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import ErrorEvent

from nazaha.bot.confirm import Settlement
from nazaha.storage.redis_link import SHARED_STATE_ERRORS

log = logging.getLogger("nazaha.errors")


def update_kind(update: Any) -> str:
    """The update's type name (``message``, ``callback_query``...), or ``unknown``."""
    try:
        return str(update.event_type)
    except Exception:  # aiogram raises UpdateTypeLookupError for types it does not know
        return "unknown"


async def on_error(event: ErrorEvent, settlement: Settlement | None = None) -> Any:
    """Log the failure; an update that carries a settlement (nazaha/bot/confirm.py) failed
    before its commit (e.g. its first database read): it is handed back to Telegram while
    its retry window lasts. Without a settlement, a shared-state (Redis) failure is left
    unhandled, so that the update fails rather than counts as handled."""
    if isinstance(event.exception, SHARED_STATE_ERRORS):
        log.error(
            "update handling failed: shared state (Redis) unavailable (%s) in a %s update; "
            "left unhandled, to be delivered again",
            type(event.exception).__name__,
            update_kind(event.update),
        )
        if not isinstance(settlement, Settlement):
            return UNHANDLED
        settlement.failed()  # handed back to Telegram, which delivers it again
        return True
    log.error(
        "update handling failed: %s in a %s update",
        type(event.exception).__name__,
        update_kind(event.update),
    )
    if isinstance(settlement, Settlement):
        settlement.failed()
    return True  # handled: aiogram logs nothing more


def install_error_logging(dp: Dispatcher) -> None:
    """Register :func:`on_error` as the Dispatcher's errors handler (it marks every error
    handled, so aiogram's own message-quoting line never appears)."""
    dp.errors.register(on_error)


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio exception handler: the exception type only, never the message or the repr
    of the task or future (which can hold arguments)."""
    exc = context.get("exception")
    log.error("unhandled error in the event loop: %s", type(exc).__name__ if exc else "no exception")


def install_loop_exception_logging(loop: asyncio.AbstractEventLoop | None = None) -> None:
    (loop or asyncio.get_running_loop()).set_exception_handler(loop_exception_handler)
