"""Following up on a report with its receipt, as a pure state machine.

The session is opened by a receipt; the handler does the slow and secret parts (rate limit,
Argon2id, unlocking the case) and feeds the outcome back as ``Unlocked`` / ``UnlockFailed``.
While open, the reporter reads the case, replies to the caseworkers and adds evidence, and
may withdraw their contact details or the report itself: each asks for confirmation first
(a step of its own, whose buttons act only while it is current), then is done and said.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Mapping, Union

from nazaha.flows.chat_trail import ClearChat, span_ids, widen
from nazaha.flows.report_flow import (
    DEFAULT_LIMITS,
    REFUSALS,
    Album,
    At,
    Attach,
    Back,
    Cancel,
    Choose,
    DeleteMessage,
    Done,
    EvidenceItem,
    EvidenceLimits,
    FetchAlbum,
    FetchFailed,
    Help,
    NonText,
    Notice,
    Stored,
    StoredAlbum,
    Text,
    added_notice,
    check_album,
    check_attach,
    is_receipt,
)

ACTIONS = (
    "reply", "evidence", "refresh", "stop_notify", "withdraw_contact", "withdraw_report", "end",
)
REPLY_MAX = 4000


class FStep(StrEnum):
    RECEIPT = "receipt"
    CASE = "case"
    REPLY = "reply"
    EVIDENCE = "evidence"
    # A reply kept from an expired session: send it to this case?
    CONFIRM_REPLY = "confirm_reply"
    # Delete the contact details from the report? / Withdraw the report?
    WITHDRAW_CONTACT = "withdraw_contact"
    WITHDRAW_REPORT = "withdraw_report"


# The confirmation steps and what confirming them does.
WITHDRAW_STEPS = (FStep.WITHDRAW_CONTACT, FStep.WITHDRAW_REPORT)


@dataclass(frozen=True)
class Unlocked:
    case: Mapping[str, str]  # opaque to the flow: report id, data key
    evidence_count: int = 0
    evidence_bytes: int = 0


@dataclass(frozen=True)
class UnlockFailed:
    reason: str  # "unknown" | "malformed" | "throttled"


@dataclass(frozen=True)
class Confirm:
    """"Yes, do it" under a confirmation question (a withdrawal); "No" is ``Back``."""


Event = Union[
    Text, NonText, Choose, Done, Back, Cancel, Help, Attach, Album, Stored, StoredAlbum,
    FetchFailed, Unlocked, UnlockFailed, At, Confirm,
]


@dataclass(frozen=True)
class Ask:
    step: FStep


@dataclass(frozen=True)
class TryReceipt:
    """Check the typed receipt (and delete the message that carried it)."""

    text: str


@dataclass(frozen=True)
class ShowCase:
    """Show status, thread and actions."""


@dataclass(frozen=True)
class SendReply:
    text: str


@dataclass(frozen=True)
class FetchEvidence:
    attach: Attach


@dataclass(frozen=True)
class SaveEvidence:
    item: EvidenceItem


@dataclass(frozen=True)
class StopNotifications:
    """Remove the case's notification links (the reporter asked, with the receipt)."""


@dataclass(frozen=True)
class WithdrawContact:
    """Delete the report's contact details (the reporter confirmed)."""


@dataclass(frozen=True)
class WithdrawReport:
    """Mark the report withdrawn and stop its notifications (the reporter confirmed)."""


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class DeleteTyped:
    """Delete the user's message(s) that carried this event: a receipt typed as a reply, or
    a reply or files now stored with the case (they stay readable there, not in the chat)."""


@dataclass(frozen=True)
class SessionClosed:
    """Tell the reporter the session closed after the silence; ``kept`` says what happens
    to what they just sent: "" (nothing), "reply" (kept in memory) or "files" (send again)."""

    kept: str = ""


Effect = Union[
    Ask, Notice, TryReceipt, ShowCase, SendReply, FetchEvidence, FetchAlbum, SaveEvidence,
    StopNotifications, WithdrawContact, WithdrawReport, End, DeleteTyped, SessionClosed,
    DeleteMessage, ClearChat,
]


@dataclass(frozen=True)
class Session:
    step: FStep
    case: Mapping[str, str] = field(default_factory=dict)
    evidence_count: int = 0
    evidence_bytes: int = 0
    # A reply written while the session expired; memory only (storage/fsm.py), sent only
    # once the reporter has entered the receipt again and confirmed the case.
    pending_reply: str = ""
    # The message that carried ``pending_reply`` (0 if unknown), deleted once it is sent or
    # discarded.
    pending_id: int = 0
    # The span of message ids this session left in the chat (nazaha/flows/chat_trail.py).
    first_id: int = 0
    last_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "step": str(self.step),
            "case": dict(self.case),
            "evidence_count": self.evidence_count,
            "evidence_bytes": self.evidence_bytes,
            "pending_reply": self.pending_reply,
            "pending_id": self.pending_id,
            "first_id": self.first_id,
            "last_id": self.last_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Session | None":
        try:
            if data.get("v") != 1:
                return None
            case = data.get("case") or {}
            if not isinstance(case, dict):
                return None
            return cls(
                step=FStep(data["step"]),
                case={str(k): str(v) for k, v in case.items()},
                evidence_count=int(data.get("evidence_count", 0)),
                evidence_bytes=int(data.get("evidence_bytes", 0)),
                pending_reply=str(data.get("pending_reply") or ""),
                pending_id=int(data.get("pending_id") or 0),
                first_id=int(data.get("first_id") or 0),
                last_id=int(data.get("last_id") or 0),
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Transition:
    session: Session | None
    effects: tuple[Effect, ...]


def start(anchor: int = 0, *, typed: bool = False) -> Transition:
    """Ask for the receipt. ``anchor``: the message that began the session (0 if unknown),
    ``typed`` if the user sent it (``/followup``) rather than pressed a button under it."""
    return Transition(seen(Session(FStep.RECEIPT), (anchor,), typed=typed), (Ask(FStep.RECEIPT),))


def seen(session: Session, message_ids: tuple[int, ...], *, typed: bool) -> Session:
    """The session after an update about ``message_ids`` (sent by the user if ``typed``,
    else the message under a pressed button): widens its span of the chat."""
    first, last = widen(session.first_id, session.last_id, message_ids, typed=typed)
    if (first, last) == (session.first_id, session.last_id):
        return session
    return replace(session, first_id=first, last_id=last)


def trail(session: Session, *, below: int | None = None) -> tuple[int, ...]:
    """The message ids to delete when the session ends: its span of the chat (case views,
    replies, files, the receipt typed), under ``below`` if given."""
    return span_ids(session.first_id, session.last_id, (session.pending_id,), below=below)


def _ended(session: Session, *before: Effect) -> Transition:
    """End the session; its messages leave the chat first."""
    ids = trail(session)
    return Transition(None, (*before, *((ClearChat(ids),) if ids else ()), End()))


def expired(session: Session, event: Event) -> Transition:
    """The session's unlocked case left memory after the silence: ask for the receipt again,
    keeping a text reply (in memory) to send once the reporter confirms the case. What the
    closed session left in the chat is deleted (not the reply just kept)."""
    if isinstance(event, At):
        event = event.event
    if isinstance(event, Cancel):
        return _ended(session)
    reply, reply_id = "", 0
    if session.step is FStep.REPLY and isinstance(event, Text) and not is_receipt(event.text):
        if event.text.strip() and len(event.text) <= REPLY_MAX:
            reply, reply_id = event.text, event.message_id
    elif session.step is FStep.CONFIRM_REPLY:
        reply, reply_id = session.pending_reply, session.pending_id
    kept = "reply" if reply else "files" if isinstance(event, (Attach, Album)) else ""
    ids = tuple(i for i in trail(session) if i != reply_id)
    if reply_id:
        ids = tuple(i for i in ids if i < reply_id)
    fresh = Session(FStep.RECEIPT, pending_reply=reply, pending_id=reply_id)
    fresh = seen(fresh, (reply_id,), typed=True)
    cleared = (ClearChat(ids),) if ids else ()
    return Transition(fresh, (*cleared, SessionClosed(kept), Ask(FStep.RECEIPT)))


def step(session: Session, event: Event, limits: EvidenceLimits = DEFAULT_LIMITS) -> Transition:
    if isinstance(event, Confirm):
        # "Yes" counts only under its own question (stamped with its step, ``At``).
        return _expired_button(session)
    if isinstance(event, At):
        if event.step != str(session.step):
            return _expired_button(session)
        event = event.event
    if isinstance(event, Text) and session.step is not FStep.RECEIPT and is_receipt(event.text):
        # A receipt typed as a reply is never stored: delete it, ask again.
        return Transition(session, (DeleteTyped(), Notice("receipt_in_followup"), *_current(session)))
    if isinstance(event, Cancel) or (isinstance(event, Choose) and event.value == "end"):
        return _ended(session)
    if isinstance(event, Help):
        return Transition(session, (Notice("followup_help"), Ask(session.step)))
    if isinstance(event, Stored):
        # Never lose a file the reporter sent, whatever the step.
        return Transition(
            replace(
                session,
                evidence_count=session.evidence_count + 1,
                evidence_bytes=session.evidence_bytes + event.item.size,
            ),
            (
                SaveEvidence(event.item),
                DeleteTyped(),  # stored with the case: the file and caption leave the chat
                added_notice(session.evidence_count + 1, (event.item,)),
            ),
        )
    if isinstance(event, StoredAlbum):
        items = event.items
        saved = replace(
            session,
            evidence_count=session.evidence_count + len(items),
            evidence_bytes=session.evidence_bytes + sum(item.size for item in items),
        )
        if not items:
            code = "file_too_big" if "too_big" in event.failures else "download_failed"
            return Transition(saved, (Notice(code, {"limit_mb": limits.max_file_bytes // 2**20}),))
        return Transition(
            saved,
            (
                *(SaveEvidence(item) for item in items),
                DeleteTyped(),
                added_notice(saved.evidence_count, items, event.failures),
            ),
        )
    if isinstance(event, FetchFailed):
        code = "file_too_big" if event.reason == "too_big" else "download_failed"
        return Transition(session, (Notice(code, {"limit_mb": limits.max_file_bytes // 2**20}),))
    if session.step is FStep.RECEIPT:
        return _on_receipt(session, event)
    if session.step is FStep.CASE:
        return _on_case(session, event)
    if session.step is FStep.REPLY:
        return _on_reply(session, event)
    if session.step is FStep.CONFIRM_REPLY:
        return _on_confirm_reply(session, event)
    if session.step in WITHDRAW_STEPS:
        return _on_withdraw(session, event)
    return _on_evidence(session, event, limits)


def _current(session: Session) -> tuple[Effect, ...]:
    return (ShowCase(),) if session.step is FStep.CASE else (Ask(session.step),)


def _expired_button(session: Session) -> Transition:
    return Transition(session, (Notice("button_expired"), *_current(session)))


def _on_confirm_reply(session: Session, event: Event) -> Transition:
    if isinstance(event, Choose) and event.step == "confirm_reply":
        back = replace(session, step=FStep.CASE, pending_reply="", pending_id=0)
        gone = (DeleteMessage(session.pending_id),) if session.pending_id else ()
        if event.value == "send":
            return Transition(
                back, (SendReply(session.pending_reply), *gone, Notice("reply_sent"), ShowCase())
            )
        if event.value == "discard":
            return Transition(back, (*gone, Notice("reply_discarded"), ShowCase()))
    if isinstance(event, (Text, NonText, Attach, Album)):
        return Transition(session, (Notice("use_buttons"), Ask(FStep.CONFIRM_REPLY)))
    return _expired_button(session)


def _on_receipt(session: Session, event: Event) -> Transition:
    if isinstance(event, Text):
        return Transition(session, (TryReceipt(event.text),))
    if isinstance(event, Unlocked):
        opened = replace(
            session,
            step=FStep.CASE,
            case=dict(event.case),
            evidence_count=event.evidence_count,
            evidence_bytes=event.evidence_bytes,
            pending_reply="",
            pending_id=0,
        )
        if session.pending_reply:
            waiting = replace(
                opened, step=FStep.CONFIRM_REPLY,
                pending_reply=session.pending_reply, pending_id=session.pending_id,
            )
            return Transition(waiting, (ShowCase(), Ask(FStep.CONFIRM_REPLY)))
        return Transition(opened, (ShowCase(),))
    if isinstance(event, UnlockFailed):
        if event.reason == "throttled":
            return _ended(session, Notice("receipt_throttled"))
        return Transition(session, (Notice("receipt_unknown"), Ask(FStep.RECEIPT)))
    if isinstance(event, Back):
        return _ended(session)
    return Transition(session, (Notice("receipt_expected"), Ask(FStep.RECEIPT)))


def _on_case(session: Session, event: Event) -> Transition:
    if isinstance(event, Choose) and event.step == "case" and event.value in ACTIONS:
        if event.value == "reply":
            return Transition(replace(session, step=FStep.REPLY), (Ask(FStep.REPLY),))
        if event.value == "evidence":
            return Transition(replace(session, step=FStep.EVIDENCE), (Ask(FStep.EVIDENCE),))
        if event.value == "stop_notify":
            return Transition(
                session, (StopNotifications(), Notice("notifications_stopped"), ShowCase())
            )
        if event.value in WITHDRAW_STEPS:
            asking = FStep(event.value)
            return Transition(replace(session, step=asking), (Ask(asking),))
        return Transition(session, (ShowCase(),))
    if isinstance(event, (Text, NonText, Attach, Album)):
        return Transition(session, (Notice("use_buttons"), ShowCase()))
    return Transition(session, (Notice("button_expired"), ShowCase()))


def _on_withdraw(session: Session, event: Event) -> Transition:
    back = replace(session, step=FStep.CASE)
    if isinstance(event, Confirm):
        if session.step is FStep.WITHDRAW_CONTACT:
            return Transition(back, (WithdrawContact(), Notice("contact_withdrawn"), ShowCase()))
        return Transition(back, (WithdrawReport(), Notice("report_withdrawn"), ShowCase()))
    if isinstance(event, Back):
        return Transition(back, (ShowCase(),))
    if isinstance(event, (Text, NonText, Attach, Album, Done)):
        return Transition(session, (Notice("use_buttons"), Ask(session.step)))
    return _expired_button(session)


def _on_reply(session: Session, event: Event) -> Transition:
    if isinstance(event, Text):
        if not event.text.strip():
            return Transition(session, (Notice("text_expected"), Ask(FStep.REPLY)))
        if len(event.text) > REPLY_MAX:
            return Transition(session, (Notice("reply_too_long", {"limit": REPLY_MAX}), Ask(FStep.REPLY)))
        back = replace(session, step=FStep.CASE)
        # Stored with the case: the typed message leaves the chat.
        return Transition(back, (SendReply(event.text), DeleteTyped(), Notice("reply_sent"), ShowCase()))
    if isinstance(event, (Back, Done)):
        return Transition(replace(session, step=FStep.CASE), (ShowCase(),))
    if isinstance(event, (NonText, Attach, Album)):
        return Transition(session, (Notice("text_expected"), Ask(FStep.REPLY)))
    return Transition(session, (Notice("button_expired"), Ask(FStep.REPLY)))


def _on_evidence(session: Session, event: Event, limits: EvidenceLimits) -> Transition:
    if isinstance(event, Attach):
        # The voice warning is part of the question (each file is stored at once here).
        notices = check_attach(
            event, session.evidence_count, session.evidence_bytes, limits, warn_voice=False
        )
        if any(n.code in REFUSALS for n in notices):
            return Transition(session, notices)
        return Transition(session, (*notices, FetchEvidence(event)))
    if isinstance(event, Album):
        notices, accepted = check_album(
            event.attaches, session.evidence_count, session.evidence_bytes, limits, warn_voice=False
        )
        if not accepted:
            return Transition(session, notices)
        return Transition(session, (*notices, FetchAlbum(accepted, event.caption)))
    if isinstance(event, (Done, Back)):
        return Transition(replace(session, step=FStep.CASE), (ShowCase(),))
    if isinstance(event, NonText):
        code = "location_refused" if event.content_type in ("location", "venue") else "evidence_unsupported"
        return Transition(session, (Notice(code),))
    if isinstance(event, Text):
        return Transition(session, (Notice("evidence_expected"), Ask(FStep.EVIDENCE)))
    return Transition(session, (Notice("button_expired"), Ask(FStep.EVIDENCE)))
