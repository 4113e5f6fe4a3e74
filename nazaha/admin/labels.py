"""Words for the codes the console shows: triage choices and answer names (shared with the
bot: nazaha.handlers.labels holds them as aiogram lazy strings, which the console translates
with its own locale), statuses, outcomes and priorities of the workflow."""

from __future__ import annotations

from nazaha.admin.i18n import current_locale, gettext, ngettext, pgettext
from nazaha.handlers.labels import CHOICE_LABELS, EVIDENCE_KIND_LABELS, FIELD_LABELS


def _msgid(lazy) -> str:
    # babel.support.LazyProxy keeps its arguments: the msgid is the first.
    return lazy._args[0]


def choice_label(group: str, code: str | None) -> str:
    if code is None:
        return "—"
    lazy = CHOICE_LABELS.get(group, {}).get(code)
    return gettext(_msgid(lazy)) if lazy is not None else code


def answer_text(field: str, value: str) -> str:
    """A choice code as the words the reporter chose; free text unchanged."""
    lazy = CHOICE_LABELS.get(field, {}).get(value)
    return gettext(_msgid(lazy)) if lazy is not None else value


def field_label(name: str) -> str:
    lazy = FIELD_LABELS.get(name)
    return gettext(_msgid(lazy)) if lazy is not None else name


def evidence_kind_label(kind: str) -> str:
    lazy = EVIDENCE_KIND_LABELS.get(kind)
    return gettext(_msgid(lazy)) if lazy is not None else kind


def status_label(code: str | None) -> str:
    names = {
        "received": pgettext("status", "Received"),
        "acknowledged": pgettext("status", "Acknowledged"),
        "in_review": pgettext("status", "In review"),
        "referred": pgettext("status", "Referred"),
        "action_taken": pgettext("status", "Action taken"),
        "closed": pgettext("status", "Closed"),
    }
    return names.get(code or "", code or "—")


def outcome_label(code: str | None) -> str:
    names = {
        "substantiated": gettext("Substantiated"),
        "not_substantiated": gettext("Not substantiated"),
        "out_of_scope": gettext("Out of scope"),
        "insufficient_information": gettext("Insufficient information"),
    }
    return names.get(code or "", code or "—")


def priority_label(code: str | None) -> str:
    names = {
        "low": gettext("Low"),
        "normal": gettext("Normal"),
        "high": gettext("High"),
        "urgent": gettext("Urgent"),
    }
    return names.get(code or "", code or "—")


def kind_label(code: str | None) -> str:
    names = {"corruption": gettext("Corruption report"), "complaint": gettext("Service complaint")}
    return names.get(code or "", code or "—")


def purpose_label(code: str) -> str:
    names = {
        "acknowledgement": gettext("Acknowledgement"),
        "more_information": gettext("Request for more information"),
        "closure": gettext("Closure"),
        "other": gettext("Other"),
    }
    return names.get(code, code)


def age_label(days: int) -> str:
    """A case's age in the inbox: whole days since the day it was received, and "less than a
    day" on that day itself, in every language (not "0 days" in one and "less than a day" in
    another)."""
    if days < 1:
        return gettext("less than a day")
    return ngettext("%(num)d day", "%(num)d days", days)


def broadcast_status_label(code: str | None) -> str:
    names = {
        "draft": pgettext("broadcast", "Draft"),
        "submitted": pgettext("broadcast", "Waiting for approval"),
        "rejected": pgettext("broadcast", "Sent back"),
        "approved": pgettext("broadcast", "Approved, scheduled"),
        "sending": pgettext("broadcast", "Sending"),
        "paused": pgettext("broadcast", "Paused"),
        "done": pgettext("broadcast", "Finished"),
        "cancelled": pgettext("broadcast", "Cancelled"),
    }
    return names.get(code or "", code or "—")


def delivery_state_label(code: str | None) -> str:
    """A recipient's state in a broadcast's outbox, a channel post's, or a test send's."""
    names = {
        "queued": pgettext("delivery", "Queued"),
        "sending": pgettext("delivery", "Being sent"),
        "sent": pgettext("delivery", "Sent"),
        "failed": pgettext("delivery", "Failed"),
        "blocked": pgettext("delivery", "Blocked the bot"),
        "in_doubt": pgettext("delivery", "In doubt"),
        "skipped": pgettext("delivery", "Skipped"),
        "left": pgettext("delivery", "Left before it was sent"),
    }
    return names.get(code or "", code or "—")


def survey_status_label(code: str | None) -> str:
    names = {
        "draft": pgettext("survey", "Draft"),
        "open": pgettext("survey", "Open"),
        "closed": pgettext("survey", "Closed"),
    }
    return names.get(code or "", code or "—")


def language_name(code: str) -> str:
    names = {"ar": gettext("Arabic"), "en": gettext("English")}
    return names.get(code, code)


def list_separator() -> str:
    """Between the items of a list in running text: the Arabic comma "، " in Arabic (a Latin
    comma there is a typo), ", " in English."""
    return "\u060c " if current_locale() == "ar" else ", "


def language_names(codes) -> str:
    """The languages of ``codes`` by name, in the console's language, as one list."""
    return list_separator().join(language_name(code) for code in codes)


def item_kind_label(code: str) -> str:
    names = {"article": gettext("Article"), "quiz": gettext("Quiz question")}
    return names.get(code, code)


TEMPLATE_GLOBALS = {
    "broadcast_status_label": broadcast_status_label,
    "delivery_state_label": delivery_state_label,
    "survey_status_label": survey_status_label,
    "language_name": language_name,
    "language_names": language_names,
    "list_separator": list_separator,
    "item_kind_label": item_kind_label,
    "age_label": age_label,
    "purpose_label": purpose_label,
    "choice_label": choice_label,
    "field_label": field_label,
    "evidence_kind_label": evidence_kind_label,
    "status_label": status_label,
    "outcome_label": outcome_label,
    "priority_label": priority_label,
    "kind_label": kind_label,
}
