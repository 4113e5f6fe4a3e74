"""Following up with a receipt: read the case, reply, add evidence, withdraw the contact
details or the report; then end and wipe."""

from __future__ import annotations

import base64

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from nazaha.flows import followup_flow as fu
from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens, wipe
from nazaha.handlers.context import Reply
from nazaha.handlers.evidence import FetchError, album_of, attach_of, content_kind, fetch_album
from nazaha.handlers.report import evidence_record
from nazaha.storage.attempts import TooManyAttempts
from nazaha.storage.reports import UnlockedCase

router = Router(name="followup")


class FollowUpForm(StatesGroup):
    # One state for the whole session. Its FSM data holds only a random reference to the
    # unlocked case kept in memory (see session_keys), never the report or its key.
    active = State()


class SessionLost(Exception):
    """The bot restarted or the key expired: the reporter must enter the receipt again."""


async def _case_of(reply: Reply, session: fu.Session) -> UnlockedCase:
    """The unlocked case of the session, which lives only in memory (or sealed in Redis)."""
    case = await reply.services.session_keys.get(session.case.get("key_ref", ""))
    if case is None:
        raise SessionLost
    return case


async def begin(reply: Reply, anchor: int | None, *, typed: bool = False) -> None:
    """Ask for the receipt; ``anchor``: the message that began the session (``typed``: the
    user sent it, ``/followup``)."""
    await wipe.mark_conversation_start(reply, anchor)
    await apply(fu.start(anchor or 0, typed=typed), reply)


async def load_session(reply: Reply) -> fu.Session | None:
    return fu.Session.from_dict((await reply.state.get_data()).get("session") or {})


async def apply(
    transition: fu.Transition,
    reply: Reply,
    *,
    message: Message | None = None,
    previous: fu.Session | None = None,
    album: list[Message] | None = None,
) -> None:
    try:
        await _apply(transition, reply, message, previous, album)
    except SessionLost:
        if previous is not None and "key_ref" in previous.case:
            await reply.services.session_keys.drop(previous.case["key_ref"])
        await reply.state.clear()
        reply.say(screens.session_expired(reply.options.session_minutes))
        reply.show(screens.main_menu())


async def _apply(
    transition: fu.Transition,
    reply: Reply,
    message: Message | None,
    previous: fu.Session | None = None,
    album: list[Message] | None = None,
) -> None:
    session = transition.session
    if session is None:
        await reply.state.clear()
    else:
        await reply.state.set_state(FollowUpForm.active)
        await reply.state.set_data({"session": session.to_dict()})
    cleared = None
    for effect in transition.effects:
        if isinstance(effect, fu.Ask):
            if effect.step is fu.FStep.CONFIRM_REPLY:
                assert session is not None
                reply.show(screens.confirm_pending_reply(session.pending_reply))
            elif effect.step is fu.FStep.WITHDRAW_CONTACT:
                reply.show(screens.confirm_withdraw_contact())
            elif effect.step is fu.FStep.WITHDRAW_REPORT:
                assert session is not None
                complaint = (await _case_of(reply, session)).kind == "complaint"
                reply.show(screens.confirm_withdraw_report(complaint=complaint))
            else:
                reply.show(_question(effect.step))
        elif isinstance(effect, fu.SessionClosed):
            reply.say(screens.session_closed(reply.options.session_minutes, effect.kept))
            if cleared is not None:
                reply.outbox.send(reply.chat_id, screens.chat_cleared("followup"), only_if=cleared)
        elif isinstance(effect, fu.DeleteTyped):
            # The message(s) that carried this update: a receipt typed as a reply, or a
            # reply or files now stored with the case.
            sent = [m.message_id for m in album] if album else [message.message_id] if message else []
            if len(sent) == 1:
                reply.outbox.delete(reply.chat_id, sent[0])
            elif sent:
                reply.outbox.delete_many(reply.chat_id, sent)
        elif isinstance(effect, flow.DeleteMessage):
            if effect.message_id:
                reply.outbox.delete(reply.chat_id, effect.message_id)
        elif isinstance(effect, flow.ClearChat):
            cleared = reply.clear_chat(effect.message_ids)
        elif isinstance(effect, fu.Notice):
            reply.say(screens.notice(effect.code, dict(effect.params), await _kind_of(reply, session)))
        elif isinstance(effect, fu.TryReceipt):
            assert session is not None and message is not None
            # The receipt must not stay on the screen: delete the message once read.
            reply.outbox.delete(reply.chat_id, message.message_id)
            await _apply(fu.step(session, await _unlock(reply, effect.text)), reply, None, session)
        elif isinstance(effect, fu.ShowCase):
            assert session is not None
            await _show_case(reply, session)
        elif isinstance(effect, fu.SendReply):
            assert session is not None
            batch = reply.report_batch()
            reply.services.cases.add_reporter_message(batch, await _case_of(reply, session), effect.text)
            await reply.commit_report_side(batch)
        elif isinstance(effect, fu.FetchEvidence):
            assert session is not None and message is not None
            await _fetch(reply, session, message)
        elif isinstance(effect, flow.FetchAlbum):
            assert session is not None and album is not None
            stored = await fetch_album(
                reply.services.evidence,
                reply.bot,
                [album[i] for i in effect.indices],
                await _context_of(reply, session),
                effect.caption,
            )
            await _apply(fu.step(session, stored, reply.options.limits), reply, None, session, album)
        elif isinstance(effect, fu.SaveEvidence):
            assert session is not None
            batch = reply.report_batch()
            reply.services.cases.add_evidence(
                batch, await _case_of(reply, session), evidence_record(effect.item)
            )
            await reply.commit_report_side(batch)
        elif isinstance(effect, fu.StopNotifications):
            assert session is not None
            batch = reply.report_batch()
            reply.services.links.stop(batch, (await _case_of(reply, session)).report_id)
            await reply.commit_report_side(batch)
        elif isinstance(effect, fu.WithdrawContact):
            assert session is not None
            batch = reply.report_batch()
            reply.services.cases.withdraw_contact(batch, await _case_of(reply, session))
            await reply.commit_report_side(batch)
        elif isinstance(effect, fu.WithdrawReport):
            assert session is not None
            batch = reply.report_batch()
            reply.services.cases.withdraw_report(batch, await _case_of(reply, session))
            await reply.commit_report_side(batch)
        elif isinstance(effect, fu.End):
            if previous is not None and "key_ref" in previous.case:
                await reply.services.session_keys.drop(previous.case["key_ref"])
            if cleared is not None:
                reply.outbox.send(reply.chat_id, screens.chat_cleared("followup"), only_if=cleared)
            reply.show(screens.session_ended())


async def _kind_of(reply: Reply, session: fu.Session | None) -> flow.Kind | None:
    """The open case's kind, for notices that name a report or a complaint."""
    ref = session.case.get("key_ref") if session is not None else None
    case = await reply.services.session_keys.get(ref) if ref else None
    return flow.Kind(case.kind) if case is not None else None


def _question(step: fu.FStep) -> screens.Screen:
    if step is fu.FStep.RECEIPT:
        return screens.ask_receipt()
    if step is fu.FStep.REPLY:
        return screens.ask_reply()
    return screens.ask_followup_evidence()


async def _unlock(reply: Reply, text: str) -> fu.Event:
    try:
        async with reply.services.attempts.attempt(reply.user_id) as attempt:
            case = await reply.services.vault.unlock_with_receipt(text)
            if case is None:
                attempt.failed()
    except TooManyAttempts:
        return fu.UnlockFailed("throttled")
    if case is None:
        return fu.UnlockFailed("unknown")
    if case.reporter_public_key_missing:
        # A report stored before reporter public keys: store it now, report-side (never
        # in this update's unit of work, which holds the account's rows).
        batch = reply.report_batch()
        reply.services.vault.store_reporter_public_key(batch, case)
        await reply.commit_report_side(batch)
    evidence = await reply.services.cases.evidence(case)
    return fu.Unlocked(
        case={"key_ref": await reply.services.session_keys.put(case)},
        evidence_count=len(evidence),
        evidence_bytes=sum(e.size_bytes for e in evidence),
    )


async def _show_case(reply: Reply, session: fu.Session) -> None:
    cases = reply.services.cases
    case = await _case_of(reply, session)
    status, outcome = await cases.status(case.report_id)
    contact_withdrawn_on, withdrawn_on = await cases.withdrawals(case.report_id)
    thread = await cases.thread(case)
    evidence = await cases.evidence(case)
    reply.show(
        screens.case_view(
            status,
            outcome,
            [(m.direction, m.created_on.isoformat(), m.body) for m in thread],
            len(evidence),
            notifying=await reply.services.links.count(case.report_id) > 0,
            complaint=case.kind == "complaint",
            has_contact=await cases.has_contact_details(case.report_id),
            contact_withdrawn_on=contact_withdrawn_on,
            withdrawn_on=withdrawn_on,
        )
    )
    if any(m.direction == "staff" and not m.read_by_reporter for m in thread):
        batch = reply.report_batch()
        cases.mark_read_queued(batch, case, "reporter")
        await reply.commit_report_side(batch)


async def _context_of(reply: Reply, session: fu.Session) -> dict[str, str]:
    """The sealing context of the open case: new files go under its report id and key."""
    case = await _case_of(reply, session)
    return {
        "report_id": case.report_id,
        "data_key": base64.b64encode(case.data_key).decode(),
    }


async def _fetch(reply: Reply, session: fu.Session, message: Message) -> None:
    context = await _context_of(reply, session)
    try:
        item, _ = await reply.services.evidence.fetch(reply.bot, message, context)
        event: fu.Event = flow.Stored(item, context)
    except FetchError as exc:
        event = flow.FetchFailed(exc.reason)
    # ``message``: once the file is stored with the case, it leaves the chat (DeleteTyped).
    await _apply(fu.step(session, event, reply.options.limits), reply, message, session)


async def resume(
    reply: Reply,
    event: fu.Event,
    message: Message | None = None,
    album: list[Message] | None = None,
    *,
    pressed: int | None = None,
) -> None:
    """Feed ``event`` to the session. ``message`` / ``album``: what the user sent;
    ``pressed``: the message whose button was pressed (both widen the session's span of the
    chat, deleted when it ends)."""
    session = await load_session(reply)
    if session is None:
        await reply.state.clear()
        reply.show(screens.main_menu())
        return
    ref = session.case.get("key_ref")
    # Every tap and message renews the session (``get`` renews the key's lifetime); once
    # the key has left memory after the silence, the receipt is asked for again.
    case = await reply.services.session_keys.get(ref) if ref is not None else None
    if ref is not None and case is None:
        await apply(fu.expired(session, event), reply, message=message)
        return
    sent = [m.message_id for m in album] if album else [message.message_id] if message else []
    session = fu.seen(session, tuple(sent), typed=True)
    if pressed is not None:
        session = fu.seen(session, (pressed,), typed=False)
    if case is not None:
        # A team-key rotation may have given the case a new key since the receipt was
        # typed: what this update writes is sealed under the newest one.
        fresh = await reply.services.vault.follow_epochs(case)
        if fresh is not case:
            await reply.services.session_keys.replace(ref, fresh)
    await apply(
        fu.step(session, event, reply.options.limits),
        reply,
        message=message,
        previous=session,
        album=album,
    )


@router.message(StateFilter(FollowUpForm.active))
async def on_message(message: Message, reply: Reply, album: list[Message] | None = None) -> None:
    if album:
        event, files = album_of(album)
        await resume(reply, event, message, album=files)
        return
    command = cb.command_of(message.text)
    if command == "/wipe":
        await wipe.ask(reply)
        return
    if command in ("/cancel", "/start"):
        await resume(reply, flow.Cancel(), message)
        return
    if command == "/forget":
        # Ends the session (its key leaves memory) and explains how to stop notifications.
        await resume(reply, flow.Cancel(), message)
        reply.show(screens.forgotten())
        return
    if command:
        await resume(reply, flow.Help(), message)
        return
    attach = attach_of(message)
    if attach is not None:
        await resume(reply, attach, message)
    elif message.text is not None:
        await resume(reply, flow.Text(message.text, message.message_id), message)
    else:
        await resume(reply, flow.NonText(content_kind(message)), message)


@router.edited_message(StateFilter(FollowUpForm.active))
async def on_edited(message: Message, reply: Reply) -> None:
    """What was sent to the caseworkers cannot change: say how to correct it."""
    reply.say(screens.edit_after_sending())


@router.callback_query(StateFilter(FollowUpForm.active))
async def on_callback(query: CallbackQuery, reply: Reply) -> None:
    parsed = cb.parse(query.data)
    if isinstance(parsed, cb.Wipe):
        assert query.message is not None
        if not await wipe.answer(reply, parsed, query.message.message_id):
            await resume(reply, flow.Help())
    elif isinstance(parsed, (flow.Choose, flow.Back, flow.Cancel, flow.Done, flow.At, fu.Confirm)):
        await resume(reply, parsed, pressed=query.message.message_id if query.message else None)
    elif isinstance(parsed, cb.MenuAction) and parsed.item == "followup":
        # "Follow up with my receipt", e.g. under a notification that arrived during the
        # session (it may be about another report): end this session, ask for a receipt.
        await wipe.drop_session_key(reply, await reply.state.get_data())
        await begin(reply, query.message.message_id if query.message else None)
    else:
        await resume(reply, flow.Choose("expired", "expired"))
