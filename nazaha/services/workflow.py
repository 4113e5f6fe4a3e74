"""The workflow of a case: status and outcome, assignment, labels, priority (sharing,
recusal and linked cases are in :mod:`nazaha.services.sharing`, re-exported here).

Every function takes the caller's ``AsyncSession`` and does **not** commit: the web layer
opens the write transaction (``nazaha.storage.database.write_session``), calls one or more of
these, appends its audit entry and commits, so a case change and its audit entry land
together. Every case-level function raises :class:`~nazaha.services.access.CaseAccessDenied`
when the viewer may not see a case or may not take the action.

A change writes the bot's ``reports.status``/``outcome`` (what the reporter sees), the
console's ``cases`` row (dates, assignment, priority; made on first change), a
``case_events`` row (no content) and bumps ``cases.updated_at`` (the inbox's "updated since
you last looked"); the acting viewer's own change does not mark the case unseen for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import CaseAccessDenied, Viewer, require_visible
from nazaha.services.case_rows import (
    NotAllowed,
    active_staff,
    any_recused,
    case_states,
    now_or,
    record_event,
    touch,
)
from nazaha.services.news import keep_for_later
from nazaha.services.sharing import (
    LinkedCase,
    link,
    linked_cases,
    recuse,
    recused,
    share,
    shared_with,
    unlink,
    unrecuse,
    unshare,
)
from nazaha.storage.console_models import PRIORITIES, CaseLabel, PendingNews
from nazaha.storage.models import NotificationLink, PendingNotification, Report

# The console's workflow (issue 9). The bot's reports.status / outcome hold these codes.
STATUSES = ("received", "acknowledged", "in_review", "referred", "action_taken", "closed")
OPEN_STATUSES = STATUSES[:-1]
OUTCOMES = ("substantiated", "not_substantiated", "out_of_scope", "insufficient_information")
# closed -> in_review only through reopen().
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("acknowledged", "in_review", "closed"),
    "acknowledged": ("in_review", "referred", "action_taken", "closed"),
    "in_review": ("referred", "action_taken", "closed"),
    "referred": ("action_taken", "in_review", "closed"),
    "action_taken": ("closed", "in_review"),
    "closed": (),
}
LABEL_MAX_CHARS = 32
LABELS_PER_CASE = 20
REFERRED_TO_MAX_CHARS = 200

_LABEL_RE = re.compile(r"[^\W_](?:[\w\- ]*[^\W_])?")
_SPACES = re.compile(r"\s+")


class InvalidTransition(ValueError):
    """The workflow does not allow going from ``old`` to ``new``."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"no transition from {old!r} to {new!r}")
        self.old = old
        self.new = new


@dataclasses.dataclass(frozen=True)
class StatusChange:
    """What :func:`change_status` / :func:`reopen` did. ``notified``: content-free news was
    kept for the reporter (they opted in and the case is not closed)."""

    report_id: str
    old: str
    new: str
    outcome: str | None
    notified: bool


def normalise_label(text: str) -> str:
    """A label as stored: NFKC, case-folded, spaces collapsed; 1 to 32 letters, digits,
    ``_``, ``-`` or inner spaces (any script). ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise TypeError("a label is a str")
    label = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    if not 1 <= len(label) <= LABEL_MAX_CHARS or _LABEL_RE.fullmatch(label) is None:
        raise ValueError("a label is 1 to 32 letters, digits, '_', '-' or spaces")
    return label


def _clean_authority(referred_to: str | None) -> str:
    if not isinstance(referred_to, str):
        raise ValueError("a referral names the authority (referred_to)")
    name = _SPACES.sub(" ", unicodedata.normalize("NFC", referred_to)).strip()
    if not name or len(name) > REFERRED_TO_MAX_CHARS or any(
        unicodedata.category(ch) == "Cc" for ch in name
    ):
        raise ValueError(f"referred_to is 1 to {REFERRED_TO_MAX_CHARS} characters of text")
    return name


# -- status ------------------------------------------------------------------------------


async def _set_status(
    session: AsyncSession,
    viewer: Viewer,
    report_id: str,
    old: str,
    new: str,
    outcome: str | None,
    *,
    kind: str,
    notify: bool,
    today: dt.date,
    now: dt.datetime,
    referred_to: str | None = None,
) -> StatusChange:
    state = (await case_states(session, [report_id]))[report_id]
    await session.execute(
        update(Report).where(Report.id == report_id).values(status=new, outcome=outcome)
    )
    if old == "received" and new != "closed" and state.acknowledged_on is None:
        state.acknowledged_on = today  # leaving "received" is the acknowledgement
    if new == "referred":
        state.referred_to = referred_to
    record_event(session, report_id, viewer, kind, old, new, now)
    notified = False
    if new == "closed":
        state.closed_on = today
        if state.feedback_on is None:
            state.feedback_on = today
        record_event(session, report_id, viewer, "outcome", None, outcome, now)
        # As CaseService.set_status: nobody is told about a closed case, the links go, and
        # so does news not sent yet (the bot's pending list and the console's own).
        await session.execute(delete(NotificationLink).where(NotificationLink.report_id == report_id))
        await session.execute(delete(PendingNotification).where(PendingNotification.report_id == report_id))
        await session.execute(delete(PendingNews).where(PendingNews.report_id == report_id))
    else:
        state.closed_on = None
        if notify and await session.scalar(
            select(exists().where(NotificationLink.report_id == report_id))
        ):
            await keep_for_later(session, report_id)
            notified = True
    await touch(session, viewer, [state], now)
    return StatusChange(report_id, old, new, outcome, notified)


async def _current_status(session: AsyncSession, report_id: str) -> str:
    status = await session.scalar(
        select(Report.status).where(Report.id == report_id).with_for_update()
    )
    if status is None:  # deleted since the visibility check
        raise CaseAccessDenied("case not visible to this viewer")
    return status


async def change_status(
    session: AsyncSession,
    viewer: Viewer,
    report_id: str,
    new_status: str,
    *,
    outcome: str | None = None,
    referred_to: str | None = None,
    notify: bool,
    today: dt.date,
    now: dt.datetime | None = None,
) -> StatusChange:
    """Move a case along :data:`TRANSITIONS`.

    Closing needs an ``outcome`` (one of :data:`OUTCOMES`), referring needs ``referred_to``
    (the authority's name, 1-200 characters); other statuses take neither (``ValueError``).
    Leaving "received" sets ``acknowledged_on``; closing sets ``closed_on`` and, if not yet
    given, ``feedback_on``, and deletes the notification links (as the bot's
    ``CaseService.set_status``, and news not sent yet). With ``notify`` and a case that is
    not being closed, news is kept in the console's store for the reporter if they opted in
    (``nazaha.services.news.keep_for_later``: sent by ``send_kept_news``; a route that holds
    the team key may instead notify at once and pass ``notify=False``). ``InvalidTransition`` for a
    move the workflow does not allow (a closed case goes back only through :func:`reopen`).
    """
    await require_visible(session, viewer, report_id)
    if new_status not in STATUSES:
        raise ValueError(f"unknown status {new_status!r}")
    if new_status == "closed":
        if outcome not in OUTCOMES:
            raise ValueError("closing a case needs an outcome")
    elif outcome is not None:
        raise ValueError("only closing sets an outcome")
    if new_status == "referred":
        referred_to = _clean_authority(referred_to)
    elif referred_to is not None:
        raise ValueError("only a referral names an authority")
    old = await _current_status(session, report_id)
    if new_status not in TRANSITIONS.get(old, ()):
        raise InvalidTransition(old, new_status)
    return await _set_status(
        session, viewer, report_id, old, new_status, outcome,
        kind="status", notify=notify, today=today, now=now_or(now), referred_to=referred_to,
    )


async def reopen(
    session: AsyncSession,
    viewer: Viewer,
    report_id: str,
    *,
    notify: bool = False,
    today: dt.date,
    now: dt.datetime | None = None,
) -> StatusChange:
    """Reopen a closed case: back to "in_review", outcome and ``closed_on`` cleared (the
    dates of acknowledgement and feedback stay). ``InvalidTransition`` if it is not closed."""
    await require_visible(session, viewer, report_id)
    old = await _current_status(session, report_id)
    if old != "closed":
        raise InvalidTransition(old, "in_review")
    return await _set_status(
        session, viewer, report_id, old, "in_review", None,
        kind="reopen", notify=notify, today=today, now=now_or(now),
    )


async def record_staff_reply(
    session: AsyncSession, viewer: Viewer, report_id: str, today: dt.date, *, now: dt.datetime | None = None
) -> bool:
    """Note that a staff reply was sent (call it with ``CaseService.add_staff_reply``): the
    case is updated, and a reply after the acknowledgement is the feedback if none was given
    yet. Returns True if it set ``feedback_on``."""
    await require_visible(session, viewer, report_id)
    state = (await case_states(session, [report_id]))[report_id]
    feedback = state.acknowledged_on is not None and state.feedback_on is None
    if feedback:
        state.feedback_on = today
    await touch(session, viewer, [state], now_or(now))
    return feedback


# -- assignment, priority, labels ---------------------------------------------------------


async def assign(
    session: AsyncSession,
    viewer: Viewer,
    report_ids: Sequence[str],
    assignee_id: str | None,
    *,
    now: dt.datetime | None = None,
) -> int:
    """Assign cases to ``assignee_id`` (an active caseworker or admin, not recused from any
    of them; ``ValueError`` otherwise) or unassign them (None). Admins may do either on any
    case; a caseworker may only take unassigned cases for themself (``NotAllowed``). All or
    nothing; returns how many cases changed hands."""
    ids = await require_visible(session, viewer, report_ids)
    if not ids:
        return 0
    if not viewer.is_admin and assignee_id != viewer.user_id:
        raise NotAllowed("a caseworker may only take cases for themself")
    if assignee_id is not None:
        await active_staff(session, assignee_id, ("caseworker", "admin"))
        if await any_recused(session, ids, assignee_id):
            raise ValueError("the assignee is recused from one of these cases")
    states = await case_states(session, ids)
    if not viewer.is_admin and any(s.assignee_id not in (None, viewer.user_id) for s in states.values()):
        raise NotAllowed("a caseworker may only take unassigned cases")
    moment = now_or(now)
    changed = [s for s in states.values() if s.assignee_id != assignee_id]
    for state in changed:
        record_event(session, state.report_id, viewer, "assign", state.assignee_id, assignee_id, moment)
        state.assignee_id = assignee_id
    await touch(session, viewer, changed, moment)
    return len(changed)


async def set_priority(
    session: AsyncSession, viewer: Viewer, report_id: str, priority: str, *, now: dt.datetime | None = None
) -> bool:
    """Set the priority (one of ``PRIORITIES``); returns True if it changed."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    await require_visible(session, viewer, report_id)
    state = (await case_states(session, [report_id]))[report_id]
    if state.priority == priority:
        return False
    moment = now_or(now)
    record_event(session, report_id, viewer, "priority", state.priority, priority, moment)
    state.priority = priority
    await touch(session, viewer, [state], moment)
    return True


async def _labels_of(session: AsyncSession, ids: Sequence[str]) -> dict[str, set[str]]:
    current: dict[str, set[str]] = {rid: set() for rid in ids}
    for rid, label in await session.execute(
        select(CaseLabel.report_id, CaseLabel.label).where(CaseLabel.report_id.in_(list(ids)))
    ):
        current[rid].add(label)
    return current


async def _change_labels(
    session: AsyncSession,
    viewer: Viewer,
    report_ids: Sequence[str],
    wanted_of: Callable[[set[str]], set[str]],
    now: dt.datetime | None,
) -> int:
    ids = await require_visible(session, viewer, report_ids)
    if not ids:
        return 0
    states = await case_states(session, ids)
    current = await _labels_of(session, ids)
    moment = now_or(now)
    changed = []
    for rid in ids:
        wanted = wanted_of(current[rid])
        if len(wanted) > LABELS_PER_CASE:
            raise ValueError(f"a case has at most {LABELS_PER_CASE} labels")
        added, removed = wanted - current[rid], current[rid] - wanted
        for label in sorted(removed):
            record_event(session, rid, viewer, "label_remove", label, None, moment)
        for label in sorted(added):
            record_event(session, rid, viewer, "label_add", None, label, moment)
        if removed:
            await session.execute(
                delete(CaseLabel).where(CaseLabel.report_id == rid, CaseLabel.label.in_(sorted(removed)))
            )
        session.add_all(CaseLabel(report_id=rid, label=label) for label in sorted(added))
        if added or removed:
            changed.append(states[rid])
    await touch(session, viewer, changed, moment)
    return len(changed)


async def set_labels(
    session: AsyncSession, viewer: Viewer, report_ids: Sequence[str], labels: Iterable[str], *, now: dt.datetime | None = None
) -> int:
    """Make each case's labels exactly ``labels`` (normalised by :func:`normalise_label`,
    at most 20). Returns how many cases changed."""
    wanted = {normalise_label(label) for label in labels}
    return await _change_labels(session, viewer, report_ids, lambda _current: set(wanted), now)


async def add_label(
    session: AsyncSession, viewer: Viewer, report_ids: Sequence[str], label: str, *, now: dt.datetime | None = None
) -> int:
    """Add one label to each case; returns how many cases changed."""
    value = normalise_label(label)
    return await _change_labels(session, viewer, report_ids, lambda current: current | {value}, now)


async def remove_label(
    session: AsyncSession, viewer: Viewer, report_ids: Sequence[str], label: str, *, now: dt.datetime | None = None
) -> int:
    """Remove one label from each case; returns how many cases changed."""
    value = normalise_label(label)
    return await _change_labels(session, viewer, report_ids, lambda current: current - {value}, now)


async def labels(session: AsyncSession, viewer: Viewer, report_id: str) -> list[str]:
    """The case's labels, sorted."""
    await require_visible(session, viewer, report_id)
    return sorted((await _labels_of(session, [report_id]))[report_id])


__all__ = [
    "LABELS_PER_CASE",
    "LABEL_MAX_CHARS",
    "OPEN_STATUSES",
    "OUTCOMES",
    "STATUSES",
    "TRANSITIONS",
    "InvalidTransition",
    "LinkedCase",
    "NotAllowed",
    "StatusChange",
    "add_label",
    "assign",
    "case_states",
    "change_status",
    "labels",
    "link",
    "linked_cases",
    "normalise_label",
    "recuse",
    "recused",
    "remove_label",
    "reopen",
    "record_staff_reply",
    "set_labels",
    "set_priority",
    "share",
    "shared_with",
    "touch",
    "unlink",
    "unrecuse",
    "unshare",
]
