"""Where the bot may speak: private chats, and the group or channel chats the operator chose.

Reporters talk to the bot only in private chats. A group, supergroup or channel is served
only if the operator configured it (``NAZAHA_STAFF_CHAT_IDS``, ``NAZAHA_PUBLICATION_CHAT_IDS``,
empty by default; later issues use them). :class:`ChatGate`, the outermost middleware
after the metrics' count, drops every update from any other non-private chat before anything
reads or answers it (not even "you are sending messages very quickly" can reach such a
chat), and makes the bot leave that chat: when it is added (``my_chat_member``) or when a
message from it arrives.

Operators should also turn off "Allow Groups" in BotFather (README), so that nobody can add
the bot to a group at all.

Nothing about the chat (id, title, who added the bot) is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Awaitable, Callable

from aiogram import BaseMiddleware, Bot, Router
from aiogram.types import Chat, ChatMemberUpdated, TelegramObject, Update

from nazaha.bot.retry import BOT_API
from nazaha.metrics import mark_outcome

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# The bot's own membership statuses in which it is (still) in the chat.
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})

router = Router(name="chats")


class ChatGate(BaseMiddleware):
    """Outer middleware on ``dp.update`` (register it first): lets through updates of
    private chats, of ``allowed`` chat ids, and with no chat at all; drops the rest after
    leaving the chat. ``my_chat_member`` updates of private chats (a user blocked or
    unblocked the bot) are dropped too: there is nothing to do about them."""

    def __init__(self, allowed: Iterable[int] = ()) -> None:
        self.allowed = frozenset(allowed)

    def serves(self, chat: Chat) -> bool:
        return chat.type == "private" or chat.id in self.allowed

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        chat: Chat | None = data.get("event_chat")
        if chat is None:
            return await handler(event, data)
        if chat.type == "private":
            if event.my_chat_member is not None:
                mark_outcome(data, "refused")
                return None
            return await handler(event, data)
        if chat.id in self.allowed:
            return await handler(event, data)
        member: ChatMemberUpdated | None = event.my_chat_member
        if member is None or member.new_chat_member.status in PRESENT:
            await self.leave(data["bot"], chat.id)
        mark_outcome(data, "refused")
        return None

    @staticmethod
    async def leave(bot: Bot, chat_id: int) -> None:
        """leaveChat under the retry policy; failures are logged by kind only."""
        outcome = await BOT_API.run(lambda: bot.leave_chat(chat_id), what="LeaveChat")
        if outcome.ok:
            log.info("left a group or channel the bot was not configured for")
        else:
            log.warning(
                "could not leave a group or channel (%s)", type(outcome.error).__name__
            )


@router.my_chat_member()
async def on_my_chat_member(event: ChatMemberUpdated) -> None:
    """Only configured staff or publication chats get here (see :class:`ChatGate`); this
    handler also makes the dispatcher ask Telegram for ``my_chat_member`` updates."""
    return None


__all__ = ["ChatGate", "PRESENT", "router"]
