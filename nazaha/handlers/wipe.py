"""Wiping the conversation from the reporter's phone, and what the bot keeps about it.

In a private chat, message ids are consecutive across both sides, so the conversation is
the range from its first message to the latest: the preferences row keeps only the first id
(sealed; a message id says nothing about a report), and /wipe deletes the whole range with
deleteMessages. Telegram lets a bot delete messages for 48 hours; older ones are skipped by
Telegram and the user is told how to delete the chat.

/wipe also forgets everything the bot holds about this account: the conversation in memory
(a draft with its files, or an open follow-up session and its key), that the safety notice was
read (memory), the preferences row, an awareness subscription, a console member's link to this
chat (for test broadcasts), and its survey markers ("this
account answered survey S", of every survey; deleted after the update's commit, in a
transaction of their own). Survey answers, campaign opens and quiz votes were never kept per
account: they stay in the counts.

Nothing is erased without asking: /wipe and the erase button (``w:chat``) show what will be
lost (:func:`ask`: the draft and its files, the follow-up session, any receipt on screen);
only "Yes" (``w:yes``) erases (:func:`answer`).

After a wipe no row is left, so the next conversation's start is set from the first update
that comes after it (``context.first_anchor``, applied by ``ReplyMiddleware``), reaching back a few ids to
cover the bot's own "erased" notice; a second wipe then covers everything since the first.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers.context import Reply
from nazaha.storage.prefs import Preferences

log = logging.getLogger(__name__)

BATCH = 100  # deleteMessages takes at most 100 ids
MAX_MESSAGES = 2000
# Ids past the anchor also asked for: the user may have written while the question was on
# screen. Telegram skips ids it cannot find.
LATE_MESSAGES = 20


async def mark_conversation_start(reply: Reply, message_id: int | None = None) -> None:
    """Remember where this conversation began (the earliest id seen wins): at most one
    write, only when it moves. The same for a report, a follow-up, /start or a campaign
    link, so the row never tells which of them began it."""
    prefs = reply.preferences
    if message_id is not None and (prefs.wipe_from is None or message_id < prefs.wipe_from):
        reply.remember(replace(prefs, wipe_from=message_id))


async def drop_session_key(reply: Reply, data: dict) -> None:
    """Forget the unlocked case of a follow-up session held in ``data`` (the FSM data)."""
    session = data.get("session")
    if isinstance(session, dict):
        case = session.get("case")
        if isinstance(case, dict) and isinstance(case.get("key_ref"), str):
            await reply.services.session_keys.drop(case["key_ref"])


async def ask(reply: Reply) -> None:
    """Show what erasing would lose (the draft and its files, an open follow-up session,
    any receipt in the chat) with "Yes, erase" / "No, keep it"; nothing is changed."""
    data = await reply.state.get_data()
    draft = flow.Draft.from_dict(data.get("draft") or {})
    reply.show(
        screens.wipe_confirm(
            files=len(draft.evidence) if draft is not None else None,
            session=isinstance(data.get("session"), dict),
        )
    )


async def answer(reply: Reply, choice: cb.Wipe, anchor: int) -> bool:
    """Act on a wipe button: ask (``w:chat``) or erase (``w:yes``); True if done here.
    False for "No, keep it": the caller shows where the user was."""
    if choice.confirm is None:
        await ask(reply)
        return True
    if choice.confirm:
        await wipe_chat(reply, anchor=anchor, late=LATE_MESSAGES)
        return True
    return False


async def wipe_chat(reply: Reply, anchor: int, *, late: int = 0) -> None:
    """Delete every message from the conversation's start up to ``anchor`` (and ``late``
    ids after it), and forget the conversation and the preferences of this account."""
    first = reply.preferences.wipe_from or anchor
    last = anchor + late
    first = max(first, last - MAX_MESSAGES + 1)
    ids = list(range(first, last + 1))
    for start in range(0, len(ids), BATCH):
        reply.outbox.delete_many(reply.chat_id, ids[start : start + BATCH])
    data = await reply.state.get_data()
    await drop_session_key(reply, data)
    draft = flow.Draft.from_dict(data.get("draft") or {})
    if draft is not None and draft.context:
        reply.services.evidence.discard(draft.context)
    await reply.services.fsm.forget(reply.state.key)
    await reply.services.safety.forget(reply.user_id)
    reply.services.prefs.forget(reply.uow, reply.user_id)
    awareness = reply.services.awareness
    if awareness is not None:
        # A wiped chat gets no more awareness messages either (the subscription screen
        # says so): a broadcast arriving later would show that the bot was used here.
        awareness.subscribers.queue_stop(reply.uow, reply.chat_id)
        # A console member's link to this chat ends too: "stop messaging me".
        awareness.staff_chats.queue_forget(reply.uow, reply.chat_id)
        surveys, user_id = awareness.surveys, reply.user_id

        async def forget_survey_markers() -> None:  # before the WAL is truncated below
            try:
                await surveys.forget_account(user_id)
            except Exception as exc:  # the rest of the wipe (replies, WAL) goes on
                log.warning("survey markers not deleted on /wipe (%s)", type(exc).__name__)

        reply.uow.after_commit(forget_survey_markers)
    reply.preferences = Preferences()
    wal = reply.services.wal

    async def truncate_wal() -> None:  # old versions of the row must not outlive it
        wal.soon()

    reply.uow.after_commit(truncate_wal)
    reply.show(screens.wiped())
