"""The report and complaint conversations: Telegram updates in, flow effects out."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers import wipe
from nazaha.handlers.context import Reply
from nazaha.handlers.outbox import Cleared
from nazaha.handlers.evidence import (
    FetchError,
    album_of,
    attach_of,
    content_kind,
    context_keys,
    fetch_album,
)
from nazaha.storage.cases import EvidenceRecord
from nazaha.storage.crypto import format_receipt
from nazaha.storage.fsm import TRAIL
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
    attach = attach_of(message)
    if attach is not None:
        return attach
    if message.text is not None:
        command = cb.command_of(message.text)
        if command:
            return _COMMAND_EVENTS.get(command, flow.Help())
        return flow.Text(message.text, message.message_id)
    return flow.NonText(content_kind(message))


async def begin(
    kind: flow.Kind, reply: Reply, anchor: int | None = None, *, typed: bool = False
) -> None:
    """Start a report; ``anchor`` is the message that began it, ``typed`` if the user sent it
    (``/report``) rather than pressed a button under it."""
    await wipe.mark_conversation_start(reply, anchor)
    safety_seen = await reply.services.safety.seen(reply.user_id)
    await apply(flow.start(kind, safety_seen=safety_seen, anchor=anchor or 0, typed=typed), reply)


async def load_draft(state: FSMContext) -> flow.Draft | None:
    data = await state.get_data()
    return flow.Draft.from_dict(data.get("draft") or {})


async def save_draft(reply: Reply, draft: flow.Draft | None) -> None:
    """Keep the draft in memory; if it expires, its tombstone keeps only the span of message
    ids it left in the chat (``TRAIL``), deleted at the user's next contact."""
    if draft is None:
        await reply.state.clear()
    else:
        await reply.state.set_state(ReportForm.active)
        data: dict = {"draft": draft.to_dict()}
        if draft.first_id:
            data[TRAIL] = [draft.first_id, draft.last_id]
        await reply.state.set_data(data)


async def apply(
    transition: flow.Transition,
    reply: Reply,
    *,
    previous: flow.Draft | None = None,
    message: Message | None = None,
    album: list[Message] | None = None,
) -> None:
    """Persist the new draft (queued in the unit of work) and perform the effects.

    ``album`` holds the messages of ``Album.attaches`` when the event was an album."""
    draft = transition.draft
    await save_draft(reply, draft)
    cleared: Cleared | None = None
    for effect in transition.effects:
        if isinstance(effect, flow.Ask):
            assert draft is not None
            for screen in screens.question(draft, reply.options.high_risk_contact):
                reply.show(screen)
        elif isinstance(effect, flow.Notice):
            kind = draft.kind if draft is not None else None
            reply.show(screens.notice_screen(effect.code, dict(effect.params), kind))
        elif isinstance(effect, flow.SafetyRead):
            await reply.services.safety.acknowledge(reply.user_id)
        elif isinstance(effect, flow.Fetch):
            assert draft is not None and message is not None
            await fetch(draft, reply, message, as_description=effect.as_description)
        elif isinstance(effect, flow.DeleteMessage):
            if effect.message_id:
                reply.outbox.delete(reply.chat_id, effect.message_id)
        elif isinstance(effect, flow.ClearChat):
            cleared = reply.clear_chat(effect.message_ids)
        elif isinstance(effect, flow.FetchAlbum):
            assert draft is not None and album is not None
            stored = await fetch_album(
                reply.services.evidence,
                reply.bot,
                [album[i] for i in effect.indices],
                draft.context,
                effect.caption,
            )
            await apply(flow.step(draft, stored, reply.options.limits), reply, previous=draft)
        elif isinstance(effect, flow.DeleteEvidence):
            if draft is not None:
                reply.services.evidence.discard(draft.context, effect.item_id)
        elif isinstance(effect, flow.SubmitReport):
            await submit(effect, reply, cleared)
        elif isinstance(effect, flow.Discarded):
            if previous is not None:
                reply.services.evidence.discard(previous.context)
            if cleared is not None:
                reply.outbox.send(reply.chat_id, screens.chat_cleared("discarded"), only_if=cleared)
            reply.show(screens.discarded())


async def fetch(
    draft: flow.Draft, reply: Reply, message: Message, *, as_description: bool = False
) -> None:
    """Download and seal a file, then tell the flow how it went."""
    try:
        item, context = await reply.services.evidence.fetch(reply.bot, message, draft.context)
        event: flow.Event = flow.Stored(item, context, as_description)
    except FetchError as exc:
        event = flow.FetchFailed(exc.reason)
    await apply(flow.step(draft, event, reply.options.limits), reply, previous=draft)


async def submit(effect: flow.SubmitReport, reply: Reply, cleared: Cleared | None = None) -> None:
    """Store the report (its own transaction), then queue the receipt; ``cleared``: the
    deletion of the draft's messages queued before it, said once it happened."""
    triage, fields = flow.split_answers(effect.kind, effect.answers)
    # The reporter's language, sealed with the answers: caseworkers reply in it.
    fields = {**fields, "language": reply.i18n.current_locale}
    report_id, data_key = context_keys(effect.context) if effect.context else (None, None)
    vault = reply.services.vault
    sealed = await vault.seal(
        ReportDraft(kind=str(effect.kind), triage=triage, fields=fields),
        report_id=report_id,
        data_key=data_key,
    )
    # Report-side rows go in a transaction of their own, never with this account's rows
    # (storage/report_writes.py); the receipt is shown only once they are committed.
    batch = reply.report_batch()
    vault.store(batch, sealed, evidence=[evidence_record(i) for i in effect.evidence])
    if effect.answers.get("notify") == "chat":
        reply.services.links.add(
            batch, sealed.report_id, reply.chat_id, reply.i18n.current_locale
        )
    await reply.commit_report_side(batch)
    # Sent after the commit like every reply, protected; kept for asking again if undelivered.
    complaint = effect.kind is flow.Kind.COMPLAINT
    reply.send_receipt(format_receipt(sealed.receipt), complaint=complaint)
    if cleared is not None:
        reply.outbox.send(
            reply.chat_id, screens.chat_cleared("sent", complaint=complaint), only_if=cleared
        )
    reply.show(screens.after_submission())


def evidence_record(item: flow.EvidenceItem) -> EvidenceRecord:
    return EvidenceRecord(
        id=item.id,
        kind=item.kind,
        size_bytes=item.size,
        has_clean_copy=item.has_clean_copy,
        flagged=item.flagged,
        file_name=item.file_name,
        mime_type=item.mime_type,
        forward_origin=item.forward_origin,
        sha256=item.sha256,
        caption=item.caption,
    )


async def resume(
    reply: Reply,
    event: flow.Event,
    message: Message | None = None,
    album: list[Message] | None = None,
    *,
    pressed: int | None = None,
) -> None:
    """Feed ``event`` to the draft. ``message`` / ``album``: what the user sent (they widen
    the span of the chat the draft covers, as does ``pressed``, the id of the message whose
    button was pressed)."""
    draft = await load_draft(reply.state)
    if draft is None:
        await reply.state.clear()
        reply.show(screens.no_report_in_progress())
        return
    sent = [m.message_id for m in album] if album else [message.message_id] if message else []
    draft = flow.seen(draft, tuple(sent), typed=True)
    if pressed is not None:
        draft = flow.seen(draft, (pressed,), typed=False)
    await apply(
        flow.step(draft, event, reply.options.limits),
        reply,
        previous=draft,
        message=message,
        album=album,
    )


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
async def on_message(message: Message, reply: Reply, album: list[Message] | None = None) -> None:
    if album:
        # Files sent together: one event, one answer (see handlers/albums.py).
        event, files = album_of(album)
        await resume(reply, event, message, album=files)
        return
    command = cb.command_of(message.text)
    if command == "/language":
        reply.show(screens.language_picker())
        return
    if command == "/safety":
        await reask(reply, screens.safety_text(reply.options.high_risk_contact))
        return
    if command == "/wipe":
        await wipe.ask(reply)
        return
    await resume(reply, event_from_message(message), message)


@router.edited_message(StateFilter(ReportForm.active))
async def on_edited(message: Message, reply: Reply) -> None:
    """An edit before submission updates the answer the message gave (the user is told)."""
    text = message.text if message.text is not None else message.caption
    if text:
        await resume(reply, flow.Edited(message.message_id, text))


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
    elif isinstance(parsed, cb.Wipe):
        assert query.message is not None
        if not await wipe.answer(reply, parsed, query.message.message_id):
            await reask(reply)
    elif isinstance(parsed, cb.RemoveEvidence):
        await resume(reply, flow.Remove(parsed.item_id), pressed=_pressed(query))
    elif parsed is None:
        await reask(reply, screens.button_expired())
    else:
        await resume(reply, parsed, pressed=_pressed(query))


def _pressed(query: CallbackQuery) -> int | None:
    return query.message.message_id if query.message is not None else None

