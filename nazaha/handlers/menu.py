"""Outside a report: /start, the main menu, language, safety, help.

This router comes after the report router, so it sees only users with no report in
progress. It is also where a user learns that an abandoned draft expired.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import CallbackQuery, Message

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers.context import Reply
from nazaha.handlers.report import begin

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
    "/help": "help",
    "/cancel": "cancel",
}


async def _tell_if_draft_expired(reply: Reply, fsm_storage: BaseStorage) -> None:
    pop = getattr(fsm_storage, "pop_expired_notice", None)
    if pop is not None and await pop(reply.state.key):
        reply.say(screens.draft_expired(reply.options.draft_ttl_hours))


async def _open(item: str, reply: Reply) -> None:
    if item == "report":
        await begin(flow.Kind.CORRUPTION, reply)
    elif item == "complaint":
        await begin(flow.Kind.COMPLAINT, reply)
    elif item == "start":
        reply.show(screens.welcome())
    elif item == "menu":
        reply.show(screens.main_menu())
    elif item == "safety":
        reply.show(screens.safety_screen(reply.options.high_risk_contact))
    elif item == "language":
        reply.show(screens.language_picker())
    elif item in ("followup", "learn"):
        reply.show(screens.coming_soon(item))
    elif item == "cancel":
        reply.show(screens.no_report_in_progress())
    else:
        reply.show(screens.help_text())


@router.message()
async def on_message(message: Message, reply: Reply, fsm_storage: BaseStorage) -> None:
    await _tell_if_draft_expired(reply, fsm_storage)
    text = message.text or ""
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0].split("@")[0].lower()
        await _open(_COMMANDS.get(command, "help"), reply)
    else:
        reply.show(screens.main_menu())


@router.callback_query()
async def on_callback(query: CallbackQuery, reply: Reply, fsm_storage: BaseStorage) -> None:
    await _tell_if_draft_expired(reply, fsm_storage)
    parsed = cb.parse(query.data)
    if isinstance(parsed, cb.MenuAction):
        await _open(parsed.item, reply)
    elif isinstance(parsed, cb.LanguageChoice):
        reply.switch_language(parsed.locale)
        reply.say(screens.language_set())
        reply.show(screens.main_menu())
    else:
        # A button of a finished or expired report, or forged data.
        reply.say(screens.button_expired())
        reply.show(screens.main_menu())
