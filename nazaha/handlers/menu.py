"""Outside a report: /start, the main menu, language, safety, help, and the way into Learn
and subscriptions (nazaha/handlers/awareness.py).

This router comes after the report and follow-up routers, so it sees only users with no
conversation in progress. It is also where a user learns that an abandoned draft expired, or,
after a restart, that a conversation in progress then was lost (plain text or a button of an
old conversation as their first update since the restart: handlers/restart_notice.py).
"""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import CallbackQuery, Message

from nazaha.flows import report_flow as flow
from nazaha.flows.chat_trail import span_ids
from nazaha.handlers import awareness
from nazaha.handlers import awareness_callbacks as aw
from nazaha.handlers import callbacks as cb
from nazaha.handlers import followup, screens, wipe
from nazaha.handlers.context import Reply
from nazaha.handlers.report import begin
from nazaha.storage.fsm import TRAIL

router = Router(name="menu")

_COMMANDS = {
    "/start": "start",
    "/menu": "menu",
    "/report": "report",
    "/complaint": "complaint",
    "/safety": "safety",
    "/language": "language",
    "/followup": "followup",
    "/learn": "learn",
    "/subscribe": "subscribe",
    "/help": "help",
    "/cancel": "cancel",
    "/wipe": "wipe",
    "/forget": "forget",
}


async def _tell_if_draft_expired(
    reply: Reply, fsm_storage: BaseStorage, typed: int | None = None
) -> None:
    """Say once that an unfinished report expired, after deleting what it left in the chat
    (the span its tombstone kept; not ``typed``, the message the user just sent, or later)."""
    pop = getattr(fsm_storage, "pop_expired", None)
    expired = await pop(reply.state.key) if pop is not None else None
    if expired is None:
        return
    trail = expired.get(TRAIL)
    ids: tuple[int, ...] = ()
    if isinstance(trail, list) and len(trail) == 2 and all(isinstance(i, int) for i in trail):
        ids = span_ids(trail[0], trail[1], below=typed)
    reply.say(screens.draft_expired(reply.options.draft_ttl_hours))
    if ids:
        cleared = reply.clear_chat(ids)
        reply.outbox.send(reply.chat_id, screens.chat_cleared("expired"), only_if=cleared)


async def _open(item: str, reply: Reply, anchor: int | None, *, typed: bool = False) -> None:
    """``anchor``: the message of this update (``typed``: the user sent it; else the one
    whose button was pressed)."""
    if item == "report":
        await begin(flow.Kind.CORRUPTION, reply, anchor, typed=typed)
    elif item == "complaint":
        await begin(flow.Kind.COMPLAINT, reply, anchor, typed=typed)
    elif item == "start":
        await wipe.mark_conversation_start(reply, anchor)
        reply.show(screens.welcome())
    elif item == "followup":
        await followup.begin(reply, anchor, typed=typed)
    elif item == "wipe":
        await wipe.ask(reply)
    elif item == "forget":
        reply.show(screens.forgotten())
    elif item == "menu":
        reply.show(screens.main_menu())
    elif item == "safety":
        reply.show(screens.safety_screen(reply.options.high_risk_contact))
    elif item == "language":
        reply.show(screens.language_picker())
    elif item == "learn":
        await awareness.show_learn(reply)
    elif item == "subscribe":
        await awareness.show_subscriptions(reply)
    elif item == "cancel":
        reply.show(screens.no_report_in_progress())
    else:
        reply.show(screens.help_text())


@router.message()
async def on_message(message: Message, reply: Reply, fsm_storage: BaseStorage) -> None:
    await _tell_if_draft_expired(reply, fsm_storage, typed=message.message_id)
    if message.text and flow.is_receipt(message.text):
        # A receipt typed at the menu must not stay on screen: delete it, offer follow-up.
        reply.outbox.delete(reply.chat_id, message.message_id)
        reply.show(screens.receipt_deleted())
        return
    command = cb.command_of(message.text)
    if command == "/start":
        # A deep link: a campaign's content, or a volunteer linking their chat.
        payload = awareness.start_payload(message.text)
        first_name = message.from_user.first_name if message.from_user else None
        if payload and await awareness.open_start_payload(reply, payload, message.message_id, first_name=first_name):
            return
    if command:
        item = _COMMANDS.get(command, "help")
        if item not in ("learn", "subscribe"):
            awareness.leave_learn(reply)
        await _open(item, reply, message.message_id, typed=True)
    elif not await awareness.hint_if_browsing(reply):
        # Text while browsing Learn gets a hint to choose a topic (above); otherwise the menu.
        reply.tell_if_restarted()  # written as if in a conversation: was one lost?
        reply.show(screens.main_menu())


@router.edited_message()
async def on_edited(message: Message, reply: Reply) -> None:
    """No report in progress: whatever was edited, a sent report cannot change."""
    reply.say(screens.edit_after_sending())


@router.callback_query()
async def on_callback(query: CallbackQuery, reply: Reply, fsm_storage: BaseStorage) -> None:
    await _tell_if_draft_expired(reply, fsm_storage)
    if aw.is_awareness(query.data):
        await awareness.on_callback(query, reply)
        return
    parsed = cb.parse(query.data)
    anchor = query.message.message_id if query.message else None
    if not (isinstance(parsed, cb.MenuAction) and parsed.item == "learn"):
        awareness.leave_learn(reply)
    if isinstance(parsed, cb.MenuAction):
        await _open(parsed.item, reply, anchor)
    elif isinstance(parsed, cb.Wipe):
        if not await wipe.answer(reply, parsed, anchor or 0):
            reply.show(screens.main_menu())
    elif isinstance(parsed, cb.LanguageChoice):
        reply.switch_language(parsed.locale)
        reply.say(screens.language_set())
        reply.show(screens.main_menu())
    else:
        # A button of a finished or expired report (or one a restart lost), or forged data.
        reply.tell_if_restarted()
        reply.say(screens.button_expired())
        reply.show(screens.main_menu())
