"""The report and complaint conversations: Telegram updates in, flow effects out."""

from __future__ import annotations

from dataclasses import replace
from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers.context import Reply
from nazaha.storage.crypto import format_receipt
from nazaha.storage.reports import ReportDraft

router = Router(name="report")


class ReportForm(StatesGroup):
    # One aiogram state for the whole conversation: the step lives in the pure draft.
    active = State()


# Commands understood in the middle of a report; others get help and keep the draft.
_COMMAND_EVENTS: dict[str, flow.Event] = {
    "/cancel": flow.Cancel(),
    "/start": flow.Cancel(),  # asks before discarding
}


def event_from_message(message: Message) -> flow.Event:
    if message.text is not None:
        command = message.text.split(maxsplit=1)[0].split("@")[0].lower() if message.text.startswith("/") else None
        if command is not None:
            return _COMMAND_EVENTS.get(command, flow.Help())
        return flow.Text(message.text)
    return flow.NonText(str(message.content_type))


async def begin(kind: flow.Kind, reply: Reply) -> None:
    await apply(flow.start(kind, safety_seen=reply.preferences.safety_seen), reply)


async def load_draft(state: FSMContext) -> flow.Draft | None:
    data = await state.get_data()
    return flow.Draft.from_dict(data.get("draft") or {})


async def apply(transition: flow.Transition, reply: Reply) -> None:
    """Persist the new draft (queued in the unit of work) and perform the effects."""
    draft = transition.draft
    if draft is None:
        await reply.state.clear()
    else:
        await reply.state.set_state(ReportForm.active)
        await reply.state.set_data({"draft": draft.to_dict()})
    for effect in transition.effects:
        if isinstance(effect, flow.Ask):
            assert draft is not None
            for screen in screens.question(draft, reply.options.high_risk_contact):
                reply.show(screen)
        elif isinstance(effect, flow.Notice):
            reply.say(screens.notice(effect.code, dict(effect.params)))
        elif isinstance(effect, flow.SafetyRead):
            reply.remember(replace(reply.preferences, safety_seen=True))
        elif isinstance(effect, flow.SubmitReport):
            await submit(effect, reply)
        elif isinstance(effect, flow.Discarded):
            reply.show(screens.discarded())


async def submit(effect: flow.SubmitReport, reply: Reply) -> None:
    triage, fields = flow.split_answers(effect.kind, effect.answers)
    sealed = await reply.vault.seal(
        ReportDraft(kind=str(effect.kind), triage=triage, fields=fields)
    )
    reply.vault.store(reply.uow, sealed)
    # Sent after the commit like every reply, and protected from forwarding and saving.
    reply.say(screens.receipt(format_receipt(sealed.receipt)), protect=True)
    reply.show(screens.main_menu())


async def resume(reply: Reply, event: flow.Event) -> None:
    draft = await load_draft(reply.state)
    if draft is None:
        await reply.state.clear()
        reply.show(screens.no_report_in_progress())
        return
    await apply(flow.step(draft, event), reply)


async def reask(reply: Reply, note: str | None = None) -> None:
    draft = await load_draft(reply.state)
    if note:
        reply.say(note)
    if draft is None:
        await reply.state.clear()
        reply.show(screens.no_report_in_progress())
        return
    for screen in screens.question(draft, reply.options.high_risk_contact):
        reply.show(screen)


@router.message(StateFilter(ReportForm.active))
async def on_message(message: Message, reply: Reply) -> None:
    text = message.text or ""
    command = text.split(maxsplit=1)[0].split("@")[0].lower() if text.startswith("/") else ""
    if command == "/language":
        reply.show(screens.language_picker())
        return
    if command == "/safety":
        await reask(reply, screens.safety_text(reply.options.high_risk_contact))
        return
    await resume(reply, event_from_message(message))


@router.callback_query(StateFilter(ReportForm.active))
async def on_callback(query: CallbackQuery, reply: Reply) -> None:
    parsed = cb.parse(query.data)
    if isinstance(parsed, cb.LanguageChoice):
        reply.switch_language(parsed.locale)
        await reask(reply, screens.language_set())
    elif isinstance(parsed, cb.MenuAction):
        if parsed.item == "language":
            reply.show(screens.language_picker())
        elif parsed.item == "safety":
            await reask(reply, screens.safety_text(reply.options.high_risk_contact))
        else:
            await reask(reply, screens.in_progress())
    elif parsed is None:
        await reask(reply, screens.button_expired())
    else:
        await resume(reply, parsed)

