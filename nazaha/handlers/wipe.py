"""Wiping the conversation from the reporter's phone.

In a private chat, message ids are consecutive across both sides, so the conversation is
the range from its first message to the latest: we keep only the first id, sealed like a
draft in the FSM storage (a separate record, so it outlives the draft itself), and delete
the whole range with deleteMessages. Telegram lets a bot delete messages for 48 hours;
older ones are skipped by Telegram and the user is told how to delete the chat.
"""

from __future__ import annotations

import dataclasses

from aiogram.fsm.context import FSMContext

from nazaha.handlers import screens
from nazaha.handlers.context import Reply

DESTINY = "wipe"
BATCH = 100  # deleteMessages takes at most 100 ids
MAX_MESSAGES = 2000


def _marks(reply: Reply) -> FSMContext:
    return FSMContext(
        storage=reply.fsm_storage, key=dataclasses.replace(reply.state.key, destiny=DESTINY)
    )


async def mark_conversation_start(reply: Reply, message_id: int | None = None) -> None:
    """Remember where this conversation began (the earliest id seen wins)."""
    if message_id is None:
        return
    marks = _marks(reply)
    first = (await marks.get_data()).get("from")
    if first is None or message_id < first:
        await marks.set_data({"from": message_id})


async def wipe_chat(reply: Reply, anchor: int) -> None:
    """Delete every message from the conversation's start up to ``anchor``."""
    marks = _marks(reply)
    first = (await marks.get_data()).get("from") or anchor
    first = max(first, anchor - MAX_MESSAGES + 1)
    ids = list(range(first, anchor + 1))
    for start in range(0, len(ids), BATCH):
        reply.outbox.delete_many(reply.chat_id, ids[start : start + BATCH])
    await marks.clear()
    await reply.state.clear()
    reply.show(screens.wiped())
