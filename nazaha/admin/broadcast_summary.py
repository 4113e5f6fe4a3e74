"""One sentence that says where a broadcast's delivery stands, for its page and its progress
page: "Finished: 120 delivered, 3 blocked, 1 failed." rather than a status alone, and "Not
started; scheduled for …" rather than "0 / 0" before the sender has made its outbox.

Counts go through ``ngettext`` (Arabic has six plural forms; its translations isolate the
number) and are joined as the locale joins a list (CLDR, by Babel: :func:`join_figures`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from babel import Locale
from babel.lists import format_list

from nazaha.admin import i18n
from nazaha.awareness.schedule import palestine_time

__all__ = ["delivery_summary", "join_figures"]

NOT_APPROVED = frozenset({"draft", "submitted", "rejected"})


def _figures(progress: Mapping[str, int], *, always: tuple[str, ...], cancelled: bool = False) -> str:
    """The counts as a list: those in ``always`` even at 0, the others when not 0."""
    words = {
        "sent": lambda n: i18n.ngettext("%(num)d delivered", "%(num)d delivered", n),
        "remaining": lambda n: i18n.ngettext("%(num)d still to send", "%(num)d still to send", n),
        "blocked": lambda n: i18n.ngettext("%(num)d blocked", "%(num)d blocked", n),
        "failed": lambda n: i18n.ngettext("%(num)d failed", "%(num)d failed", n),
        "in_doubt": lambda n: i18n.ngettext("%(num)d in doubt", "%(num)d in doubt", n),
        "left": lambda n: i18n.ngettext(
            "%(num)d left before it was sent", "%(num)d left before it was sent", n),
        "skipped": lambda n: i18n.ngettext(
            "%(num)d not sent (cancelled)", "%(num)d not sent (cancelled)", n),
    }
    counts = dict(progress)
    counts["remaining"] = counts.get("queued", 0) + counts.get("sending", 0)
    if cancelled:  # what is still queued the sender skips within a second
        counts["skipped"] = counts.get("skipped", 0) + counts.get("queued", 0)
        counts["remaining"] = counts.get("sending", 0)
    parts = [
        say(counts.get(key, 0)) for key, say in words.items()
        if key in always or counts.get(key, 0)
    ]
    return join_figures(parts, i18n.current_locale())


def join_figures(parts: list[str], locale: str) -> str:
    """``parts`` joined as ``locale`` joins a list of amounts (CLDR's "unit" list: "3 sent,
    2 failed"; in Arabic "…، و…").

    Babel 2.x joins two items with the locale's "start" pattern and then its "end" pattern
    when the locale's data have no pattern for two: Arabic's has none, and the second item
    came out twice ("…، وبقي مشتركان، وبقي مشتركان"). CLDR's rule for two items without
    their own pattern is the "end" pattern alone."""
    if len(parts) == 2:
        patterns = _unit_patterns(locale)
        if "2" not in patterns:
            return patterns["end"].format(*parts)
    return format_list(parts, style="unit", locale=locale)


def _unit_patterns(locale: str):
    """The list patterns ``format_list(style="unit")`` uses (Babel's fall-backs, in order)."""
    data = Locale.parse(locale).list_patterns
    return next((data[style] for style in ("unit", "unit-short") if style in data), data["standard"])


def delivery_summary(
    status: str,
    progress: Mapping[str, int],
    *,
    started_at: dt.datetime | None,
    send_at: dt.datetime | None,
    audience: int | None,
    now: dt.datetime,
) -> str:
    """The sentence for a broadcast in ``status`` whose outbox counts per state are
    ``progress`` (``OUTBOX_STATES`` keys; extra keys ignored). ``audience``: how many
    subscribers it would go to if it started now (only used before it starts; None: not
    said). ``send_at``/``now``: aware UTC."""
    total = sum(progress.get(key, 0) for key in ("queued", "sending", "sent", "failed", "blocked",
                                                  "in_doubt", "skipped", "left"))
    if started_at is None and total == 0:
        if status == "cancelled":
            return i18n.gettext("Cancelled before sending started: nothing was sent.")
        if status == "paused":
            return i18n.gettext("Paused before sending started: nothing has been sent.")
        if status in NOT_APPROVED:
            sentence = i18n.gettext("Not started: a broadcast is sent only once an administrator has approved it.")
        elif send_at is not None and send_at > now:
            sentence = i18n.gettext("Not started; scheduled for %(time)s (Palestine time).",
                                    time=i18n.isolate(palestine_time(send_at)))
        else:
            sentence = i18n.gettext("Not started yet; sending begins within a few seconds.")
        if audience is None:
            return sentence
        return sentence + " " + i18n.ngettext(
            "%(num)d subscriber would receive it if it started now.",
            "%(num)d subscribers would receive it if it started now.", audience)
    if status == "done":
        if total == 0:
            return i18n.gettext("Finished: no subscriber was in its audience.")
        return i18n.gettext("Finished: %(figures)s.",
                            figures=_figures(progress, always=("sent", "blocked", "failed")))
    if status == "cancelled":
        return i18n.gettext("Cancelled: %(figures)s.",
                            figures=_figures(progress, always=("sent",), cancelled=True))
    if status == "paused":
        return i18n.gettext("Paused: %(figures)s.", figures=_figures(progress, always=("sent", "remaining")))
    return i18n.gettext("Sending: %(figures)s.", figures=_figures(progress, always=("sent", "remaining")))
