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
from nazaha.flows.evidence_kinds import EVIDENCE_KINDS

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
# Steps whose answer is not a key of ``Draft.answers``.
OPTIONAL_STEPS = frozenset({Step.EVIDENCE})
CONTACT_DETAILS = ("contact_name", "contact_phone")
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


@dataclass(frozen=True)
class Album:
    """Files sent together (Telegram's ``media_group_id``), collected by the handler and
    answered once. ``caption`` is what the user wrote under them (the captions joined)."""

    attaches: tuple[Attach, ...]
    caption: str | None = None


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
    Attach, Stored, FetchFailed, Remove, Album, StoredAlbum,
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
    """Download the attached file as a stream and seal it; then feed back ``Stored``."""

    attach: Attach


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


Effect = Union[Ask, Notice, SubmitReport, Discarded, SafetyRead, Fetch, FetchAlbum, DeleteEvidence]


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


def start(kind: Kind, *, safety_seen: bool) -> Transition:
    """Begin a report: the safety notice first, unless this user has read it already."""
    if not safety_seen:
        return _ask(Draft(kind=kind, step=Step.SAFETY))
    return _ask(Draft(kind=kind, step=QUESTIONS[kind][0]))


def step(draft: Draft, event: Event, limits: EvidenceLimits = DEFAULT_LIMITS) -> Transition:
    """Apply one user event to a draft."""
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
        if draft.step is Step.DESCRIPTION and event.caption:
            return _files_at_description(draft, Album((event,), event.caption))
        event = NonText(event.kind)
    if isinstance(event, Album):
        if draft.step is Step.EVIDENCE:
            return _on_album(draft, event, limits)
        if draft.step is Step.DESCRIPTION:
            return _files_at_description(draft, event)
        event = NonText(event.attaches[0].kind if event.attaches else "media_group")
    if isinstance(event, Help):
        return Transition(draft, (Notice("help"), Ask(draft.step)))
    if draft.step is Step.CONFIRM_CANCEL:
        return _on_confirm_cancel(draft, event)
    if isinstance(event, Cancel):
        return _ask(replace(draft, step=Step.CONFIRM_CANCEL, paused=draft.step))
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
        new = replace(draft, parts=draft.parts + (text,))
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
        return _advance(replace(draft, answers=answers, parts=()))
    if isinstance(event, NonText):
        return _stay(draft, "text_expected")
    return _stay(draft, "button_expired")


def check_attach(
    attach: Attach, count: int, total_bytes: int, limits: EvidenceLimits
) -> tuple[Notice, ...]:
    """Why a file cannot be added (a refusal notice), or the warnings to show with it."""
    if attach.kind not in EVIDENCE_KINDS:
        return (Notice("evidence_unsupported"),)
    if attach.size is not None and attach.size > limits.max_file_bytes:
        return (Notice("file_too_big", {"limit_mb": limits.max_file_bytes // 2**20}),)
    if count >= limits.max_files:
        return (Notice("evidence_too_many", {"limit": limits.max_files}),)
    if total_bytes + (attach.size or 0) > limits.max_total_bytes:
        return (Notice("evidence_too_large", {"limit_mb": limits.max_total_bytes // 2**20}),)
    warnings = []
    if attach.kind == "document":
        warnings.append(Notice("document_warning"))
    if attach.forwarded:
        warnings.append(Notice("forward_warning"))
    return tuple(warnings)


REFUSALS = frozenset({"evidence_unsupported", "file_too_big", "evidence_too_many", "evidence_too_large"})


def _on_attach(draft: Draft, attach: Attach, limits: EvidenceLimits) -> Transition:
    notices = check_attach(attach, len(draft.evidence), draft.evidence_bytes, limits)
    if any(n.code in REFUSALS for n in notices):
        return Transition(draft, notices)
    return Transition(draft, (*notices, Fetch(attach)))


def check_album(
    attaches: tuple[Attach, ...], count: int, total_bytes: int, limits: EvidenceLimits
) -> tuple[tuple[Notice, ...], tuple[int, ...]]:
    """``check_attach`` for each file of an album in turn: the notices (each code once) and
    the positions of the files that may be fetched."""
    notices: dict[str, Notice] = {}
    accepted: list[int] = []
    for index, attach in enumerate(attaches):
        found = check_attach(attach, count, total_bytes, limits)
        for notice in found:
            notices.setdefault(notice.code, notice)
        if not any(n.code in REFUSALS for n in found):
            accepted.append(index)
            count += 1
            total_bytes += attach.size or 0
    return tuple(notices.values()), tuple(accepted)


def _on_album(draft: Draft, album: Album, limits: EvidenceLimits) -> Transition:
    notices, accepted = check_album(album.attaches, len(draft.evidence), draft.evidence_bytes, limits)
    if not accepted:
        return Transition(draft, notices)
    return Transition(draft, (*notices, FetchAlbum(accepted, album.caption)))


def _files_at_description(draft: Draft, album: Album) -> Transition:
    """Files at the description step are not evidence yet, but what the user wrote under
    them is description text: one answer says both."""
    files = len(album.attaches)
    if not album.caption:
        return Transition(draft, (Notice("files_at_description", {"files": files}),))
    added = _on_description(draft, Text(album.caption))
    if added.effects and isinstance(added.effects[0], Notice) and added.effects[0].code == "description_part":
        total = added.draft.description_length if added.draft else 0
        return Transition(
            added.draft, (Notice("caption_as_description", {"total": total, "files": files}),)
        )
    return added


def added_notice(total: int, items: tuple[EvidenceItem, ...], failures: tuple[str, ...] = ()) -> Notice:
    """The one answer to files just sealed: how many there are now, and what to know."""
    flagged = sum(1 for item in items if item.flagged)
    params = {"count": total}
    if len(items) > 1 or failures:
        params["added"] = len(items)
    if failures:
        params["failed"] = len(failures)
    if any(item.caption for item in items):
        params["captioned"] = 1
    if "too_big" in failures:
        params["too_big"] = 1
    return Notice("evidence_flagged" if flagged else "evidence_added", params)


def _on_stored(draft: Draft, event: Stored) -> Transition:
    if any(item.id == event.item.id for item in draft.evidence):
        return Transition(draft, ())
    new = replace(
        draft,
        evidence=draft.evidence + (event.item,),
        context=dict(draft.context) or dict(event.context),
    )
    return Transition(new, (added_notice(len(new.evidence), (event.item,)),))


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
    return Transition(
        new,
        (DeleteEvidence(event.item_id), Notice("evidence_removed", {"count": len(kept)}), Ask(new.step)),
    )


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
        return _ask(replace(draft, answers=answers, step=Step.CONTACT_PHONE))
    if isinstance(event, NonText):
        return _stay(draft, "text_expected")
    return _stay(draft, "button_expired")


def _on_phone(draft: Draft, event: Event) -> Transition:
    if isinstance(event, Text):
        if normalize_phone(event.text) is None:
            return _stay(draft, "phone_invalid")
        answers = dict(draft.answers)
        answers["contact_phone"] = event.text
        return _advance(replace(draft, answers=answers, step=Step.CONTACT))
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
        return Transition(
            None,
            (SubmitReport(draft.kind, dict(draft.answers), draft.evidence, dict(draft.context)),),
        )
    if isinstance(event, Edit):
        if event.field not in EDITABLE[draft.kind]:
            return _stay(draft, "button_expired")
        return _ask(replace(draft, step=Step(event.field), editing=True, parts=()))
    if isinstance(event, (Text, NonText)):
        return _stay(draft, "use_buttons")
    return _stay(draft, "button_expired")


def _on_confirm_cancel(draft: Draft, event: Event) -> Transition:
    if isinstance(event, ConfirmCancel):
        if event.discard:
            return Transition(None, (Discarded(),))
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


def split_answers(kind: Kind, answers: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split confirmed answers into plain triage metadata and fields to seal."""
    triage = {k: answers[k] for k in TRIAGE_FIELDS if k in answers}
    sealed = {
        k: v for k, v in answers.items() if k not in TRIAGE_FIELDS and k not in NOT_STORED
    }
    return triage, sealed
