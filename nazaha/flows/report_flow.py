"""The report and complaint conversations as one pure state machine.

``step(draft, event) -> Transition`` is the whole engine: no aiogram, no database, no I/O,
no clock. A handler turns a Telegram update into an event, calls ``step`` and performs the
returned effects (show a question, show a notice, submit, discard). Every answer the user
has confirmed lives in ``Draft.answers`` and only an explicit edit of that field, or a
confirmed cancel, removes it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Mapping, Union

from nazaha.flows import choices
from nazaha.flows.chat_trail import ClearChat, span_ids, widen
from nazaha.flows.evidence_kinds import EVIDENCE_KINDS, labelled_as
from nazaha.flows.receipts import normalize_receipt

DESCRIPTION_MIN = 30
DESCRIPTION_MAX = 20_000
NAME_MAX = 200
PHONE_MIN_DIGITS = 6
PHONE_MAX_DIGITS = 15  # E.164


@dataclass(frozen=True)
class EvidenceLimits:
    """Telegram lets bots download at most 20 MB per file; the per-report caps are ours."""

    max_file_bytes: int = 20 * 1024 * 1024
    max_files: int = 10
    max_total_bytes: int = 100 * 1024 * 1024


DEFAULT_LIMITS = EvidenceLimits()
# Recordings that carry the sender's voice: warned about, and given a voice-reduced copy.
VOICE_KINDS = frozenset({"voice", "audio"})
_AUDIO_EXTENSIONS = frozenset({"ogg", "oga", "opus", "mp3", "m4a", "aac", "wav", "flac", "mka", "amr"})
# The description of a report described in a voice note (the note is kept as evidence).
VOICE_DESCRIPTION = "[described in a voice note]"


def looks_like_audio(kind: str, mime_type: str | None, file_name: str | None) -> bool:
    """Whether a file is a recording: a voice note, an audio message, or a document
    labelled ``audio/*`` or named with an audio extension (labels chosen by the sender:
    generous on purpose; a mislabelled file is flagged when it is reduced)."""
    if kind in VOICE_KINDS:
        return True
    return kind == "document" and labelled_as(mime_type, file_name, "audio/", _AUDIO_EXTENSIONS)


class Kind(StrEnum):
    CORRUPTION = "corruption"
    COMPLAINT = "complaint"


class Step(StrEnum):
    SAFETY = "safety"
    CATEGORY = "category"
    SECTOR = "sector"
    SERVICE = "service"
    GOVERNORATE = "governorate"
    WHEN = "when"
    DESCRIPTION = "description"
    EVIDENCE = "evidence"
    CONTACT = "contact"
    CONSENT = "consent"
    CONTACT_NAME = "contact_name"
    CONTACT_PHONE = "contact_phone"
    NOTIFY = "notify"
    REVIEW = "review"
    CONFIRM_CANCEL = "confirm_cancel"
    # Asked before the description typed so far is dropped (editing from review).
    CONFIRM_REPLACE = "confirm_replace"
    # Asked before a message holding a receipt-shaped number is kept in an answer.
    CONFIRM_NUMBER = "confirm_number"


# The questions of each flow, in order. The contact step opens a small sub-flow
# (consent, name, phone) when the user chooses to share contact details.
QUESTIONS: dict[Kind, tuple[Step, ...]] = {
    Kind.CORRUPTION: (
        Step.CATEGORY,
        Step.SECTOR,
        Step.GOVERNORATE,
        Step.WHEN,
        Step.DESCRIPTION,
        Step.EVIDENCE,
        Step.CONTACT,
        Step.NOTIFY,
    ),
    Kind.COMPLAINT: (
        Step.SERVICE,
        Step.GOVERNORATE,
        Step.DESCRIPTION,
        Step.EVIDENCE,
        Step.CONTACT,
        Step.NOTIFY,
    ),
}

CHOICES: dict[Step, tuple[str, ...]] = {
    Step.CATEGORY: choices.CATEGORIES,
    Step.SECTOR: choices.SECTORS,
    Step.SERVICE: choices.SERVICES,
    Step.GOVERNORATE: choices.GOVERNORATES,
    Step.WHEN: choices.WHEN,
    Step.CONTACT: choices.CONTACT,
    Step.CONSENT: choices.CONSENT,
    Step.NOTIFY: choices.NOTIFY,
}

TEXT_STEPS = frozenset({Step.DESCRIPTION, Step.CONTACT_NAME, Step.CONTACT_PHONE})
# Questions shown without a Back button: the safety notice and the confirmations.
WITHOUT_BACK = frozenset({Step.SAFETY, Step.CONFIRM_CANCEL, Step.CONFIRM_REPLACE, Step.CONFIRM_NUMBER})
# Steps whose answer is not a key of ``Draft.answers``.
OPTIONAL_STEPS = frozenset({Step.EVIDENCE})
CONTACT_DETAILS = ("contact_name", "contact_phone")
# The stored fields a reporter's "withdraw my contact details" deletes: the details and the
# choice to share them ("contact": "share" or "anonymous").
CONTACT_FIELDS = ("contact", *CONTACT_DETAILS)
# Fields the review screen offers to edit; contact details are edited through "contact".
EDITABLE: dict[Kind, tuple[str, ...]] = {
    kind: tuple(str(s) for s in steps) for kind, steps in QUESTIONS.items()
}
# Triage metadata kept in plain columns; every other answer is sealed, except these choices
# about the conversation itself, which are acted on and not stored with the report.
TRIAGE_FIELDS = ("category", "sector", "service", "governorate")
NOT_STORED = ("consent", "notify")


# ---- events (what the user did) -------------------------------------------------------


@dataclass(frozen=True)
class Choose:
    """A tap on an option button: ``step`` is the question the button belonged to."""

    step: str
    value: str


@dataclass(frozen=True)
class Text:
    """A text message; ``message_id`` (0 if unknown) maps a later edit of it to its answer;
    ``checked`` means the user already agreed to keep a receipt-shaped number in it."""

    text: str
    message_id: int = 0
    checked: bool = False


@dataclass(frozen=True)
class At:
    """A button press under the message of step ``step``: acts only if that is still the
    current step, else "this button has expired" and the current question again."""

    step: str
    event: "Event"


@dataclass(frozen=True)
class Replace:
    """Start the description again (asks before the text so far is dropped)."""


@dataclass(frozen=True)
class ConfirmReplace:
    drop: bool


@dataclass(frozen=True)
class KeepNumber:
    """The answer to "keep the receipt-shaped number in your text?"."""

    keep: bool


@dataclass(frozen=True)
class Edited:
    """The user edited a message they sent (``text`` is its new text or caption)."""

    message_id: int
    text: str


@dataclass(frozen=True)
class NonText:
    """A sticker, photo, voice note, location... where the flow expects something else."""

    content_type: str


@dataclass(frozen=True)
class Done:
    """Finish a multi-message answer (description) or skip an optional one (phone)."""


@dataclass(frozen=True)
class Continue:
    """The user has read the safety notice."""


@dataclass(frozen=True)
class Back:
    pass


@dataclass(frozen=True)
class Cancel:
    """/cancel, the Cancel button, or /start mid-flow: asks before discarding."""


@dataclass(frozen=True)
class ConfirmCancel:
    discard: bool


@dataclass(frozen=True)
class Edit:
    field: str


@dataclass(frozen=True)
class Submit:
    pass


@dataclass(frozen=True)
class Help:
    """An unknown command mid-flow."""


@dataclass(frozen=True)
class Attach:
    """A file sent by the user (photo, document, voice note, audio, video)."""

    kind: str
    size: int | None
    file_name: str | None = None
    mime_type: str | None = None
    forwarded: bool = False
    # What the user wrote under the file, exactly as written.
    caption: str | None = None
    # The Telegram message id (0 if unknown): an edit of the caption maps to what it gave.
    message_id: int = 0


@dataclass(frozen=True)
class Album:
    """Files sent together (Telegram's ``media_group_id``), collected by the handler and
    answered once. ``caption`` is what the user wrote under them (the captions joined);
    ``message_id`` is the message that carries it, if only one does (else 0)."""

    attaches: tuple[Attach, ...]
    caption: str | None = None
    message_id: int = 0


@dataclass(frozen=True)
class EvidenceItem:
    """A file downloaded and sealed by the handler (see ``Fetch``)."""

    id: str
    kind: str
    size: int
    file_name: str | None = None
    mime_type: str | None = None
    has_clean_copy: bool = False
    flagged: str | None = None
    forwarded: bool = False
    forward_origin: str | None = None
    sha256: str = ""
    # The caption written under the file (or its album), kept with it.
    caption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "size": self.size,
            "file_name": self.file_name,
            "mime_type": self.mime_type,
            "has_clean_copy": self.has_clean_copy,
            "flagged": self.flagged,
            "forwarded": self.forwarded,
            "forward_origin": self.forward_origin,
            "sha256": self.sha256,
            "caption": self.caption,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvidenceItem":
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            size=int(data["size"]),
            file_name=data.get("file_name"),
            mime_type=data.get("mime_type"),
            has_clean_copy=bool(data.get("has_clean_copy")),
            flagged=data.get("flagged"),
            forwarded=bool(data.get("forwarded")),
            forward_origin=data.get("forward_origin"),
            sha256=str(data.get("sha256", "")),
            caption=data.get("caption"),
        )


@dataclass(frozen=True)
class Stored:
    """The handler finished downloading and sealing an ``Attach``-ed file."""

    item: EvidenceItem
    # The report id and data key chosen for this draft's evidence (opaque to the flow).
    context: Mapping[str, str]
    # The file was a voice note sent as the description (see ``Fetch.as_description``).
    as_description: bool = False


@dataclass(frozen=True)
class StoredAlbum:
    """The handler finished a ``FetchAlbum``: the files it sealed and the reasons
    ("too_big" | "failed") of those it could not."""

    items: tuple[EvidenceItem, ...]
    context: Mapping[str, str]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class FetchFailed:
    """The download of an attached file failed or was refused by Telegram."""

    reason: str  # "too_big" | "failed"


@dataclass(frozen=True)
class Remove:
    item_id: str


Event = Union[
    Choose, Text, NonText, Done, Continue, Back, Cancel, ConfirmCancel, Edit, Submit, Help,
    Attach, Stored, FetchFailed, Remove, At, Replace, ConfirmReplace, KeepNumber, Edited,
    Album, StoredAlbum,
]


# ---- effects (what the handler must do) -----------------------------------------------


@dataclass(frozen=True)
class Ask:
    """Show the question (or review, or cancel confirmation) of ``draft.step``."""

    step: Step


@dataclass(frozen=True)
class Notice:
    """A short message explaining what happened; ``code`` picks the localized text."""

    code: str
    params: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmitReport:
    kind: Kind
    answers: Mapping[str, str]
    evidence: tuple[EvidenceItem, ...] = ()
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fetch:
    """Download the attached file as a stream and seal it; then feed back ``Stored``
    (with the same ``as_description``)."""

    attach: Attach
    as_description: bool = False


@dataclass(frozen=True)
class FetchAlbum:
    """Download and seal the album's files at ``indices`` (positions in ``Album.attaches``),
    each with the album's caption; then feed back one ``StoredAlbum``."""

    indices: tuple[int, ...]
    caption: str | None = None


@dataclass(frozen=True)
class DeleteEvidence:
    item_id: str


@dataclass(frozen=True)
class Discarded:
    pass


@dataclass(frozen=True)
class SafetyRead:
    """Remember that this user has seen the safety notice."""


@dataclass(frozen=True)
class DeleteMessage:
    """Delete the user's message ``message_id`` from the chat (it holds a receipt)."""

    message_id: int


Effect = Union[
    Ask, Notice, SubmitReport, Discarded, SafetyRead, Fetch, FetchAlbum, DeleteEvidence,
    DeleteMessage, ClearChat,
]


# ---- state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    kind: Kind
    step: Step
    answers: Mapping[str, str] = field(default_factory=dict)
    # Description messages received but not yet confirmed with Done.
    parts: tuple[str, ...] = ()
    # True while answering a field chosen from the review screen.
    editing: bool = False
    # The step to go back to if the user declines to cancel.
    paused: Step | None = None
    evidence: tuple[EvidenceItem, ...] = ()
    # Report id and data key for sealing evidence, chosen when the first file arrives.
    context: Mapping[str, str] = field(default_factory=dict)
    # The user was told that a voice identifies its speaker (once per draft).
    voice_warned: bool = False
    # The evidence item id of the voice note that is the description, if any.
    description_voice: str | None = None
    # Telegram message ids, so that an edited message updates the answer it gave. The draft
    # lives in memory only (storage/fsm.py); these ids never reach the database.
    part_ids: tuple[int, ...] = ()  # of ``parts``
    kept: tuple[str, ...] = ()  # the confirmed description, message by message
    kept_ids: tuple[int, ...] = ()
    name_id: int = 0
    phone_id: int = 0
    # A text holding a receipt-shaped number, waiting for the user's answer (CONFIRM_NUMBER).
    held: str = ""
    held_id: int = 0
    # The span of message ids this conversation left in the chat (nazaha/flows/chat_trail.py):
    # the first message the user sent in it, and the newest id it saw (0: none yet).
    first_id: int = 0
    last_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "kind": str(self.kind),
            "step": str(self.step),
            "answers": dict(self.answers),
            "parts": list(self.parts),
            "editing": self.editing,
            "paused": str(self.paused) if self.paused else None,
            "evidence": [item.to_dict() for item in self.evidence],
            "context": dict(self.context),
            "voice_warned": self.voice_warned,
            "description_voice": self.description_voice,
            "part_ids": list(self.part_ids),
            "kept": list(self.kept),
            "kept_ids": list(self.kept_ids),
            "name_id": self.name_id,
            "phone_id": self.phone_id,
            "held": self.held,
            "held_id": self.held_id,
            "first_id": self.first_id,
            "last_id": self.last_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Draft | None":
        """Rebuild a stored draft; ``None`` if it is not one this version understands."""
        try:
            if data.get("v") != 1:
                return None
            answers = data["answers"]
            parts = data["parts"]
            if not isinstance(answers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in answers.items()
            ):
                return None
            if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
                return None
            paused = data.get("paused")
            context = data.get("context") or {}
            if not isinstance(context, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in context.items()
            ):
                return None
            return cls(
                kind=Kind(data["kind"]),
                step=Step(data["step"]),
                answers=dict(answers),
                parts=tuple(parts),
                editing=bool(data.get("editing", False)),
                paused=Step(paused) if paused else None,
                evidence=tuple(EvidenceItem.from_dict(i) for i in data.get("evidence") or ()),
                context=dict(context),
                voice_warned=bool(data.get("voice_warned", False)),
                description_voice=data.get("description_voice") or None,
                part_ids=tuple(int(i) for i in data.get("part_ids") or ()),
                kept=tuple(str(p) for p in data.get("kept") or ()),
                kept_ids=tuple(int(i) for i in data.get("kept_ids") or ()),
                name_id=int(data.get("name_id") or 0),
                phone_id=int(data.get("phone_id") or 0),
                held=str(data.get("held") or ""),
                held_id=int(data.get("held_id") or 0),
                first_id=int(data.get("first_id") or 0),
                last_id=int(data.get("last_id") or 0),
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    @property
    def description_length(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def evidence_bytes(self) -> int:
        return sum(item.size for item in self.evidence)


@dataclass(frozen=True)
class Transition:
    draft: Draft | None
    effects: tuple[Effect, ...]


def start(kind: Kind, *, safety_seen: bool, anchor: int = 0, typed: bool = False) -> Transition:
    """Begin a report: the safety notice first, unless this user has read it already.

    ``anchor``: the id of the message that began it (0 if unknown), ``typed`` if the user
    sent it (``/report``) rather than pressed a button under it."""
    first = QUESTIONS[kind][0] if safety_seen else Step.SAFETY
    return _ask(seen(Draft(kind=kind, step=first), (anchor,), typed=typed))


def seen(draft: Draft, message_ids: tuple[int, ...], *, typed: bool) -> Draft:
    """The draft after an update about ``message_ids``: the messages the user sent
    (``typed``) or the message whose button they pressed. Widens the span of the chat
    that the draft's conversation covers (:func:`trail`)."""
    first, last = widen(draft.first_id, draft.last_id, message_ids, typed=typed)
    if (first, last) == (draft.first_id, draft.last_id):
        return draft
    return replace(draft, first_id=first, last_id=last)


def trail(draft: Draft) -> tuple[int, ...]:
    """The message ids to delete when this draft is sent or discarded: its span of the chat
    (nazaha/flows/chat_trail.py) and the ids of the messages that gave its answers."""
    extra = (*draft.part_ids, *draft.kept_ids, draft.name_id, draft.phone_id, draft.held_id)
    return span_ids(draft.first_id, draft.last_id, extra)


def _cleared(draft: Draft) -> tuple[Effect, ...]:
    ids = trail(draft)
    return (ClearChat(ids),) if ids else ()


def step(draft: Draft, event: Event, limits: EvidenceLimits = DEFAULT_LIMITS) -> Transition:
    """Apply one user event to a draft."""
    if isinstance(event, At):
        if event.step != str(draft.step):
            return _stay(draft, "button_expired")
        event = event.event
    if isinstance(event, Edited):
        return _on_edited(draft, event)
    if isinstance(event, Text) and is_receipt(event.text):
        # A receipt typed in a report: never kept, not even on the screen.
        return Transition(
            draft,
            (DeleteMessage(event.message_id), Notice("receipt_in_report"), Ask(draft.step)),
        )
    if isinstance(event, Stored):
        # Accepted at any step: a file the user sent is never lost.
        return _on_stored(draft, event)
    if isinstance(event, StoredAlbum):
        return _on_stored_album(draft, event, limits)
    if isinstance(event, FetchFailed):
        code = "file_too_big" if event.reason == "too_big" else "download_failed"
        return Transition(draft, (Notice(code, {"limit_mb": limits.max_file_bytes // 2**20}),))
    if isinstance(event, Remove) and draft.step in (Step.EVIDENCE, Step.REVIEW):
        return _on_remove(draft, event)
    if isinstance(event, Attach):
        if draft.step is Step.EVIDENCE:
            return _on_attach(draft, event, limits)
        if draft.step is Step.DESCRIPTION and looks_like_audio(
            event.kind, event.mime_type, event.file_name
        ):
            return _on_attach(draft, event, limits, as_description=True)
        if draft.step is Step.DESCRIPTION and event.caption:
            return _files_at_description(draft, Album((event,), event.caption, event.message_id))
        event = NonText(event.kind)
    if isinstance(event, Album):
        if draft.step is Step.EVIDENCE:
            return _on_album(draft, event, limits)
        if draft.step is Step.DESCRIPTION:
            return _files_at_description(draft, event)
        event = NonText(event.attaches[0].kind if event.attaches else "media_group")
    if isinstance(event, Help):
        # The help names Back only where the question has a Back button.
        code = "help_buttons" if draft.step in WITHOUT_BACK else "help"
        return Transition(draft, (Notice(code), Ask(draft.step)))
    if draft.step is Step.CONFIRM_CANCEL:
        return _on_confirm_cancel(draft, event)
    if isinstance(event, Cancel):
        return _ask(replace(draft, step=Step.CONFIRM_CANCEL, paused=draft.step))
    if draft.step is Step.CONFIRM_REPLACE:
        return _on_confirm_replace(draft, event)
    if draft.step is Step.CONFIRM_NUMBER:
        return _on_confirm_number(draft, event)
    if isinstance(event, Back):
        return _back(draft)
    if draft.step is Step.SAFETY:
        if isinstance(event, Continue):
            return Transition(
                replace(draft, step=QUESTIONS[draft.kind][0]),
                (SafetyRead(), Ask(QUESTIONS[draft.kind][0])),
            )
        return _stay(draft, "use_buttons")
    if draft.step is Step.REVIEW:
        return _on_review(draft, event)
    if draft.step in CHOICES:
        return _on_choice_step(draft, event)
    if draft.step is Step.DESCRIPTION:
        return _on_description(draft, event)
    if draft.step is Step.EVIDENCE:
        return _on_evidence(draft, event)
    if draft.step is Step.CONTACT_NAME:
        return _on_name(draft, event)
    if draft.step is Step.CONTACT_PHONE:
        return _on_phone(draft, event)
    return _stay(draft, "button_expired")  # pragma: no cover - every step is handled above


# ---- per-step handling ----------------------------------------------------------------


def _on_choice_step(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Choose):
        if event.step != draft.step or event.value not in CHOICES[draft.step]:
            return _stay(draft, "button_expired")
        return _answer_choice(draft, event.value)
    if isinstance(event, (Text, NonText)):
        return _stay(draft, "use_buttons")
    return _stay(draft, "button_expired")


def _answer_choice(draft: Draft, value: str) -> Transition:
    answers = dict(draft.answers)
    answers[str(draft.step)] = value
    current = draft.step
    if current is Step.CONTACT:
        if value == "share":
            return _ask(replace(draft, answers=answers, step=Step.CONSENT))
        for key in CONTACT_DETAILS:
            answers.pop(key, None)
        return _advance(replace(draft, answers=answers))
    if current is Step.CONSENT:
        if value == "agree":
            return _ask(replace(draft, answers=answers, step=Step.CONTACT_NAME))
        answers["contact"] = "anonymous"
        answers.pop("consent", None)
        for key in CONTACT_DETAILS:
            answers.pop(key, None)
        advanced = _advance(replace(draft, answers=answers, step=Step.CONTACT))
        return Transition(advanced.draft, (Notice("stays_anonymous"), *advanced.effects))
    return _advance(replace(draft, answers=answers))


def _on_description(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Text) and not event.checked and contains_receipt(event.text):
        return _ask(
            replace(
                draft, step=Step.CONFIRM_NUMBER, paused=draft.step,
                held=event.text, held_id=event.message_id,
            )
        )
    if isinstance(event, Replace) and draft.parts:
        return _ask(replace(draft, step=Step.CONFIRM_REPLACE, paused=draft.step))
    if isinstance(event, Text):
        text = event.text
        have = draft.description_length
        if have + len(text) > DESCRIPTION_MAX:
            return Transition(
                draft,
                (
                    Notice(
                        "description_too_long",
                        {"limit": DESCRIPTION_MAX, "remaining": DESCRIPTION_MAX - have},
                    ),
                ),
            )
        new = replace(
            draft, parts=draft.parts + (text,), part_ids=_ids_for(draft) + (event.message_id,)
        )
        return Transition(
            new, (Notice("description_part", {"total": new.description_length}),)
        )
    if isinstance(event, Done):
        if not draft.parts and draft.editing and "description" in draft.answers:
            # Done without new text while editing keeps the old description.
            return _ask(replace(draft, step=Step.REVIEW, editing=False))
        if draft.description_length < DESCRIPTION_MIN:
            return Transition(
                draft,
                (
                    Notice(
                        "description_too_short",
                        {"minimum": DESCRIPTION_MIN, "total": draft.description_length},
                    ),
                ),
            )
        answers = dict(draft.answers)
        answers["description"] = "\n\n".join(draft.parts)
        return _advance(
            replace(
                draft, answers=answers, parts=(), part_ids=(),
                kept=draft.parts, kept_ids=_ids_for(draft), description_voice=None,
            )
        )
    if isinstance(event, NonText):
        return _stay(draft, "description_text_or_voice")
    return _stay(draft, "button_expired")


def check_attach(
    attach: Attach,
    count: int,
    total_bytes: int,
    limits: EvidenceLimits,
    *,
    warn_voice: bool = True,
) -> tuple[Notice, ...]:
    """Why a file cannot be added (a refusal notice), or the warnings to show with it.

    ``warn_voice``: whether a recording gets the warning that a voice identifies its
    speaker (a draft shows it once, before its first recording is sealed).
    """
    if attach.kind not in EVIDENCE_KINDS:
        return (Notice("evidence_unsupported"),)
    if attach.size is not None and attach.size > limits.max_file_bytes:
        return (Notice("file_too_big", {"limit_mb": limits.max_file_bytes // 2**20}),)
    if count >= limits.max_files:
        return (Notice("evidence_too_many", {"limit": limits.max_files}),)
    if total_bytes + (attach.size or 0) > limits.max_total_bytes:
        return (Notice("evidence_too_large", {"limit_mb": limits.max_total_bytes // 2**20}),)
    warnings = []
    if warn_voice and looks_like_audio(attach.kind, attach.mime_type, attach.file_name):
        warnings.append(Notice("voice_warning"))
    if attach.kind == "document":
        warnings.append(Notice("document_warning"))
    if attach.forwarded:
        warnings.append(Notice("forward_warning"))
    return tuple(warnings)


REFUSALS = frozenset({"evidence_unsupported", "file_too_big", "evidence_too_many", "evidence_too_large"})


def _on_attach(
    draft: Draft, attach: Attach, limits: EvidenceLimits, *, as_description: bool = False
) -> Transition:
    notices = check_attach(
        attach, len(draft.evidence), draft.evidence_bytes, limits, warn_voice=not draft.voice_warned
    )
    if any(n.code in REFUSALS for n in notices):
        return Transition(draft, notices)
    warned = draft.voice_warned or any(n.code == "voice_warning" for n in notices)
    return Transition(
        replace(draft, voice_warned=warned), (*notices, Fetch(attach, as_description))
    )


def check_album(
    attaches: tuple[Attach, ...],
    count: int,
    total_bytes: int,
    limits: EvidenceLimits,
    *,
    warn_voice: bool = True,
) -> tuple[tuple[Notice, ...], tuple[int, ...]]:
    """``check_attach`` for each file of an album in turn: the notices (each code once) and
    the positions of the files that may be fetched."""
    notices: dict[str, Notice] = {}
    accepted: list[int] = []
    for index, attach in enumerate(attaches):
        found = check_attach(attach, count, total_bytes, limits, warn_voice=warn_voice)
        for notice in found:
            notices.setdefault(notice.code, notice)
        if not any(n.code in REFUSALS for n in found):
            accepted.append(index)
            count += 1
            total_bytes += attach.size or 0
    return tuple(notices.values()), tuple(accepted)


def _on_album(draft: Draft, album: Album, limits: EvidenceLimits) -> Transition:
    notices, accepted = check_album(
        album.attaches, len(draft.evidence), draft.evidence_bytes, limits,
        warn_voice=not draft.voice_warned,
    )
    if not accepted:
        return Transition(draft, notices)
    warned = draft.voice_warned or any(n.code == "voice_warning" for n in notices)
    return Transition(
        replace(draft, voice_warned=warned), (*notices, FetchAlbum(accepted, album.caption))
    )


def _files_at_description(draft: Draft, album: Album) -> Transition:
    """Files at the description step are not evidence yet, but what the user wrote under
    them is description text: one answer says both."""
    files = len(album.attaches)
    if not album.caption:
        return Transition(draft, (Notice("files_at_description", {"files": files}),))
    added = _on_description(draft, Text(album.caption, album.message_id))
    if added.effects and isinstance(added.effects[0], Notice) and added.effects[0].code == "description_part":
        total = added.draft.description_length if added.draft else 0
        return Transition(
            added.draft, (Notice("caption_as_description", {"total": total, "files": files}),)
        )
    return added


def added_notice(total: int, items: tuple[EvidenceItem, ...], failures: tuple[str, ...] = ()) -> Notice:
    """The one answer to files just sealed: how many there are now, and what to know.

    Code "voice_flagged" when the files that could not be cleaned are all recordings (no
    voice-reduced copy), "evidence_flagged" when some other file could not be, else
    "evidence_added"; params ``count``, and ``added``/``failed``/``captioned``/``too_big``
    when they apply."""
    flagged = [item for item in items if item.flagged]
    params = {"count": total}
    if len(items) > 1 or failures:
        params["added"] = len(items)
    if failures:
        params["failed"] = len(failures)
    if any(item.caption for item in items):
        params["captioned"] = 1
    if "too_big" in failures:
        params["too_big"] = 1
    if flagged and all(looks_like_audio(i.kind, i.mime_type, i.file_name) for i in flagged):
        return Notice("voice_flagged", params)
    return Notice("evidence_flagged" if flagged else "evidence_added", params)


def _on_stored(draft: Draft, event: Stored) -> Transition:
    if any(item.id == event.item.id for item in draft.evidence):
        return Transition(draft, ())
    new = replace(
        draft,
        evidence=draft.evidence + (event.item,),
        context=dict(draft.context) or dict(event.context),
    )
    if event.as_description and draft.step is Step.DESCRIPTION:
        return _voice_description(new, event.item)
    return Transition(new, (added_notice(len(new.evidence), (event.item,)),))


def _stored_notice(item: EvidenceItem, count: int) -> Notice:
    return added_notice(count, (item,))


def _voice_description(draft: Draft, item: EvidenceItem) -> Transition:
    """A voice note sent at the description step is the description: what was typed so
    far is kept, followed by ``VOICE_DESCRIPTION``; the note itself is evidence."""
    answers = dict(draft.answers)
    answers["description"] = "\n\n".join((*draft.parts, VOICE_DESCRIPTION))
    advanced = _advance(replace(draft, answers=answers, parts=(), description_voice=item.id))
    notice = Notice("voice_description_kept", {"count": len(draft.evidence)})
    extra = (_stored_notice(item, len(draft.evidence)),) if item.flagged else ()
    return Transition(advanced.draft, (notice, *extra, *advanced.effects))

def _on_stored_album(draft: Draft, event: StoredAlbum, limits: EvidenceLimits) -> Transition:
    known = {item.id for item in draft.evidence}
    items = tuple(item for item in event.items if item.id not in known)
    new = replace(
        draft,
        evidence=draft.evidence + items,
        context=dict(draft.context) or dict(event.context),
    )
    if not items and event.failures:
        code = "file_too_big" if "too_big" in event.failures else "download_failed"
        return Transition(new, (Notice(code, {"limit_mb": limits.max_file_bytes // 2**20}),))
    return Transition(new, (added_notice(len(new.evidence), items, event.failures),))


def _on_remove(draft: Draft, event: Remove) -> Transition:
    kept = tuple(item for item in draft.evidence if item.id != event.item_id)
    if len(kept) == len(draft.evidence):
        return _stay(draft, "button_expired")
    new = replace(draft, evidence=kept)
    removed = (DeleteEvidence(event.item_id), Notice("evidence_removed", {"count": len(kept)}))
    if event.item_id == draft.description_voice:
        # The description was that voice note: ask for it again, keeping what was typed.
        answers = dict(new.answers)
        description = answers.pop("description", "")
        typed = description.removesuffix(VOICE_DESCRIPTION).rstrip("\n")
        asked = replace(
            new,
            answers=answers,
            step=Step.DESCRIPTION,
            parts=(typed,) if typed else (),
            editing=draft.step is Step.REVIEW,
            description_voice=None,
        )
        return Transition(
            asked, (*removed, Notice("description_voice_removed"), Ask(Step.DESCRIPTION))
        )
    return Transition(new, (*removed, Ask(new.step)))


def _on_evidence(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Done):
        return _advance(draft)
    if isinstance(event, Text):
        return _stay(draft, "evidence_expected")
    if isinstance(event, NonText):
        code = "location_refused" if event.content_type in ("location", "venue") else "evidence_unsupported"
        return Transition(draft, (Notice(code),))
    return _stay(draft, "button_expired")


def _on_name(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Text):
        name = event.text
        if not name.strip():
            return _stay(draft, "text_expected")
        if len(name) > NAME_MAX:
            return _stay(draft, "name_too_long", {"limit": NAME_MAX})
        answers = dict(draft.answers)
        answers["contact_name"] = name
        return _ask(
            replace(draft, answers=answers, step=Step.CONTACT_PHONE, name_id=event.message_id)
        )
    if isinstance(event, NonText):
        return _stay(draft, "text_expected")
    return _stay(draft, "button_expired")


def _on_phone(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Text):
        if normalize_phone(event.text) is None:
            return _stay(draft, "phone_invalid", phone_problem(event.text))
        answers = dict(draft.answers)
        answers["contact_phone"] = event.text
        return _advance(
            replace(draft, answers=answers, step=Step.CONTACT, phone_id=event.message_id)
        )
    if isinstance(event, Done):
        # The phone number is optional.
        answers = dict(draft.answers)
        answers.pop("contact_phone", None)
        return _advance(replace(draft, answers=answers, step=Step.CONTACT))
    if isinstance(event, NonText):
        return _stay(draft, "text_expected")
    return _stay(draft, "button_expired")


def _on_review(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Submit):
        missing = [
            s
            for s in QUESTIONS[draft.kind]
            if s not in OPTIONAL_STEPS and str(s) not in draft.answers
        ]
        if missing:  # cannot happen through the buttons; guards forged input
            return _ask(replace(draft, step=missing[0]))
        submit = SubmitReport(draft.kind, dict(draft.answers), draft.evidence, dict(draft.context))
        # The chat is cleared first: the receipt, sent with the submission, stays.
        return Transition(None, (*_cleared(draft), submit))
    if isinstance(event, Edit):
        if event.field not in EDITABLE[draft.kind]:
            return _stay(draft, "button_expired")
        if event.field == "description":
            # The current text is shown and kept: new messages add to it; replacing it
            # asks first (CONFIRM_REPLACE).
            parts, ids = draft.kept, draft.kept_ids
            if not parts and draft.answers.get("description"):
                parts, ids = (draft.answers["description"],), (0,)
            return _ask(
                replace(draft, step=Step.DESCRIPTION, editing=True, parts=parts, part_ids=ids)
            )
        return _ask(replace(draft, step=Step(event.field), editing=True, parts=(), part_ids=()))
    if isinstance(event, (Text, NonText)):
        return _stay(draft, "use_buttons")
    return _stay(draft, "button_expired")


def _on_confirm_cancel(draft: Draft, event: Event) -> Transition:
    if isinstance(event, ConfirmCancel):
        if event.discard:
            return Transition(None, (*_cleared(draft), Discarded()))
        resumed = draft.paused or QUESTIONS[draft.kind][0]
        return _ask(replace(draft, step=resumed, paused=None))
    if isinstance(event, (Cancel,)):
        return _ask(draft)
    if isinstance(event, Back):
        resumed = draft.paused or QUESTIONS[draft.kind][0]
        return _ask(replace(draft, step=resumed, paused=None))
    if isinstance(event, (Text, NonText)):
        return _stay(draft, "use_buttons")
    return _stay(draft, "button_expired")


def _on_confirm_replace(draft: Draft, event: Event) -> Transition:
    resumed = draft.paused or Step.DESCRIPTION
    if isinstance(event, ConfirmReplace):
        if event.drop:
            cleared = replace(draft, step=resumed, paused=None, parts=(), part_ids=())
            return Transition(cleared, (Notice("description_cleared"), Ask(resumed)))
        return _ask(replace(draft, step=resumed, paused=None))
    if isinstance(event, (Text, NonText)):
        return _stay(draft, "use_buttons")
    return _stay(draft, "button_expired")


def _on_confirm_number(draft: Draft, event: Event) -> Transition:
    if not isinstance(event, KeepNumber):
        if isinstance(event, (Text, NonText)):
            return _stay(draft, "use_buttons")
        return _stay(draft, "button_expired")
    resumed = replace(draft, step=draft.paused or Step.DESCRIPTION, paused=None, held="", held_id=0)
    text = draft.held if event.keep else strip_receipts(draft.held)
    after = step(resumed, Text(text, draft.held_id, checked=True))
    effects: tuple[Effect, ...] = after.effects
    if not event.keep:
        effects = (Notice("number_removed"), *effects)
        if draft.held_id:
            effects = (DeleteMessage(draft.held_id), *effects)
    if after.draft is not None and not any(isinstance(e, Ask) for e in effects):
        # The question again, so its buttons (Done) are under the latest message.
        effects = (*effects, Ask(after.draft.step))
    return Transition(after.draft, effects)


def _on_edited(draft: Draft, event: Edited) -> Transition:
    """An edited message changes the answer it gave, if it gave one; the user is told."""
    mid, text = event.message_id, event.text
    if mid and mid == draft.held_id and draft.step is Step.CONFIRM_NUMBER:
        resumed = replace(draft, step=draft.paused or Step.DESCRIPTION, paused=None, held="", held_id=0)
        return step(resumed, Text(text, mid))
    if contains_receipt(text):
        effects: tuple[Effect, ...] = (Notice("edit_has_receipt"), Ask(draft.step))
        if is_receipt(text):
            effects = (DeleteMessage(mid), *effects)
        return Transition(draft, effects)
    ids = _ids_for(draft)
    if mid and mid in ids:
        parts = tuple(text if i == mid else p for p, i in zip(draft.parts, ids))
        if sum(len(p) for p in parts) > DESCRIPTION_MAX:
            return _stay(draft, "edit_too_long", {"limit": DESCRIPTION_MAX})
        new = replace(draft, parts=parts)
        return Transition(new, (Notice("edit_description"), Ask(new.step)))
    if mid and mid in draft.kept_ids and "description" in draft.answers:
        kept = tuple(text if i == mid else p for p, i in zip(draft.kept, draft.kept_ids))
        if sum(len(p) for p in kept) > DESCRIPTION_MAX:
            return _stay(draft, "edit_too_long", {"limit": DESCRIPTION_MAX})
        answers = {**draft.answers, "description": "\n\n".join(kept)}
        new = replace(draft, kept=kept, answers=answers)
        return Transition(new, (Notice("edit_description"), Ask(new.step)))
    if mid and mid == draft.name_id and "contact_name" in draft.answers:
        if not text.strip() or len(text) > NAME_MAX:
            return _stay(draft, "edit_not_used")
        new = replace(draft, answers={**draft.answers, "contact_name": text})
        return Transition(new, (Notice("edit_name"), Ask(new.step)))
    if mid and mid == draft.phone_id and "contact_phone" in draft.answers:
        if normalize_phone(text) is None:
            return _stay(draft, "edit_phone_invalid")
        new = replace(draft, answers={**draft.answers, "contact_phone": text})
        return Transition(new, (Notice("edit_phone"), Ask(new.step)))
    return _stay(draft, "edit_not_used")


def _ids_for(draft: Draft) -> tuple[int, ...]:
    """``part_ids`` aligned with ``parts`` (0 where unknown)."""
    ids = draft.part_ids[: len(draft.parts)]
    return ids + (0,) * (len(draft.parts) - len(ids))


# ---- navigation -----------------------------------------------------------------------


def _advance(draft: Draft) -> Transition:
    """Go to the next unanswered-in-order question, or back to review after an edit."""
    if draft.editing:
        return _ask(replace(draft, step=Step.REVIEW, editing=False))
    questions = QUESTIONS[draft.kind]
    index = questions.index(draft.step)
    if index + 1 < len(questions):
        return _ask(replace(draft, step=questions[index + 1]))
    return _ask(replace(draft, step=Step.REVIEW))


def _back(draft: Draft) -> Transition:
    current = draft.step
    if draft.editing and current in (*QUESTIONS[draft.kind], Step.CONSENT):
        return _ask(replace(draft, step=Step.REVIEW, editing=False))
    previous: Step | None
    if current is Step.CONSENT:
        previous = Step.CONTACT
    elif current is Step.CONTACT_NAME:
        previous = Step.CONSENT
    elif current is Step.CONTACT_PHONE:
        previous = Step.CONTACT_NAME
    elif current is Step.REVIEW:
        previous = QUESTIONS[draft.kind][-1]
    elif current is Step.NOTIFY and draft.answers.get("contact") == "share":
        previous = Step.CONTACT_PHONE
    elif current is Step.SAFETY:
        previous = None
    else:
        questions = QUESTIONS[draft.kind]
        index = questions.index(current)
        previous = questions[index - 1] if index > 0 else None
    if previous is None:
        # Back from the very first screen means leaving: ask before discarding.
        return _ask(replace(draft, step=Step.CONFIRM_CANCEL, paused=current))
    return _ask(replace(draft, step=previous, editing=False))


def _ask(draft: Draft) -> Transition:
    return Transition(draft, (Ask(draft.step),))


def _stay(draft: Draft, code: str, params: Mapping[str, int] | None = None) -> Transition:
    return Transition(draft, (Notice(code, params or {}), Ask(draft.step)))


# ---- values ---------------------------------------------------------------------------

_PHONE_ALLOWED = re.compile(r"^\+?[0-9 ()\-.]+$")

_DIGIT = "0-9\u0660-\u0669\u06f0-\u06f9"
# What normalize_receipt skips between digits: spaces, dashes and invisible format marks.
_GAP = r"[\s\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*"
_RECEIPT_IN_TEXT = re.compile(
    rf"(?<![{_DIGIT}])[{_DIGIT}](?:{_GAP}[{_DIGIT}]){{19}}(?!{_GAP}[{_DIGIT}])"
)


def is_receipt(text: str) -> bool:
    """True if the whole text is only a receipt-shaped number (any digits, any spacing)."""
    return normalize_receipt(text) is not None


def contains_receipt(text: str) -> bool:
    """True if the text holds a run of exactly 20 digits (ASCII or Arabic-Indic), spaced
    or not: a receipt pasted into an answer."""
    return _RECEIPT_IN_TEXT.search(text) is not None


def strip_receipts(text: str) -> str:
    """The text with every receipt-shaped number replaced by "…"."""
    return _RECEIPT_IN_TEXT.sub("…", text)


def normalize_phone(text: str) -> str | None:
    """The digits of a phone number (Arabic-Indic digits accepted), or ``None``."""
    cleaned = "".join(
        str(unicodedata.digit(ch)) if ch.isdigit() else ch
        for ch in text.strip()
        if unicodedata.category(ch) != "Cf"  # direction marks pasted from RTL text
    )
    if not _PHONE_ALLOWED.match(cleaned):
        return None
    digits = re.sub(r"\D", "", cleaned)
    if not PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS:
        return None
    return ("+" if cleaned.startswith("+") else "") + digits


def phone_problem(text: str) -> dict[str, int]:
    """Why ``text`` is not a phone number, as notice parameters: ``letters`` (1 if it holds
    characters a phone number cannot), ``digits`` (how many digits, any script), and the
    ``minimum`` and ``maximum`` digits allowed."""
    kept = "".join(ch for ch in text.strip() if unicodedata.category(ch) != "Cf")
    ascii_form = "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in kept)
    return {
        "letters": 0 if _PHONE_ALLOWED.match(ascii_form) else 1,
        "digits": sum(ch.isdigit() for ch in kept),
        "minimum": PHONE_MIN_DIGITS,
        "maximum": PHONE_MAX_DIGITS,
    }


def split_answers(kind: Kind, answers: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split confirmed answers into plain triage metadata and fields to seal."""
    triage = {k: answers[k] for k in TRIAGE_FIELDS if k in answers}
    sealed = {
        k: v for k, v in answers.items() if k not in TRIAGE_FIELDS and k not in NOT_STORED
    }
    return triage, sealed
