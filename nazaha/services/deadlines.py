"""Deadlines of a case (EU Directive 2019/1937, art. 9(1)(b) and (f)): pure functions.

* **Acknowledgement** is due ``acknowledge_days`` (7) days after receipt, until the case is
  acknowledged (or closed).
* **Feedback** is due ``feedback_months`` (3) months after the acknowledgement or, if none was
  sent, 3 months after the end of the acknowledgement period (receipt + 7 days). It counts as
  given once the case is closed or a staff reply was sent after the acknowledgement
  (``CaseState.feedback_on``).

A deadline day itself is still in time: a case is *overdue* from the day after; it is *due
soon* from ``due_soon_days`` days before its deadline up to the deadline day. Adding months
keeps the day of the month and clamps it to the month's last day (31 January + 1 month = 28
or 29 February), as PostgreSQL's ``date + interval`` does.

The inbox filters on deadlines in SQL without computing them there: the deadline is a
non-decreasing function of a stored date, so "deadline before D" is "stored date before
some day B", and :func:`first_base_reaching` finds B with these very functions.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections.abc import Callable

FLAGS = ("ack_overdue", "feedback_overdue", "due_soon")


@dataclasses.dataclass(frozen=True)
class DeadlineRules:
    """Deadline lengths: days to acknowledge, months to give feedback, days that count as
    "due soon" before a deadline. ``ValueError`` for negative or absurd values."""

    acknowledge_days: int = 7
    feedback_months: int = 3
    due_soon_days: int = 2

    def __post_init__(self) -> None:
        for name, upper in (("acknowledge_days", 366), ("feedback_months", 36), ("due_soon_days", 366)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
                raise ValueError(f"{name} must be an integer from 0 to {upper}")


@dataclasses.dataclass(frozen=True)
class CaseDeadlines:
    """The pending deadlines of one case (None: not pending) and its flags (a subset of
    :data:`FLAGS`)."""

    ack_due: dt.date | None
    feedback_due: dt.date | None
    flags: frozenset[str]

    @property
    def next_due(self) -> dt.date | None:
        """The earliest pending deadline (what the inbox sorts on)."""
        pending = [d for d in (self.ack_due, self.feedback_due) if d is not None]
        return min(pending) if pending else None


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months (negative allowed), clamped to the month's end."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def ack_due(received_on: dt.date, rules: DeadlineRules) -> dt.date:
    """The last day to acknowledge a report received on ``received_on``."""
    return received_on + dt.timedelta(days=rules.acknowledge_days)


def feedback_due(received_on: dt.date, acknowledged_on: dt.date | None, rules: DeadlineRules) -> dt.date:
    """The last day to give feedback: from the acknowledgement, or from the end of the
    acknowledgement period if there was none."""
    base = acknowledged_on if acknowledged_on is not None else ack_due(received_on, rules)
    return add_months(base, rules.feedback_months)


def case_deadlines(
    received_on: dt.date,
    acknowledged_on: dt.date | None,
    feedback_on: dt.date | None,
    closed: bool,
    today: dt.date,
    rules: DeadlineRules,
) -> CaseDeadlines:
    """Which deadlines of a case are pending on ``today``, and its flags. A closed case has
    none."""
    if closed:
        return CaseDeadlines(None, None, frozenset())
    ack = ack_due(received_on, rules) if acknowledged_on is None else None
    feedback = feedback_due(received_on, acknowledged_on, rules) if feedback_on is None else None
    flags: set[str] = set()
    if ack is not None and today > ack:
        flags.add("ack_overdue")
    if feedback is not None and today > feedback:
        flags.add("feedback_overdue")
    soon_end = today + dt.timedelta(days=rules.due_soon_days)
    if any(d is not None and today <= d <= soon_end for d in (ack, feedback)):
        flags.add("due_soon")
    return CaseDeadlines(ack, feedback, frozenset(flags))


def first_base_reaching(target: dt.date, deadline_of: Callable[[dt.date], dt.date], guess: dt.date) -> dt.date:
    """The earliest day ``b`` with ``deadline_of(b) >= target``, for a non-decreasing
    ``deadline_of`` that moves each day by at most a few days (``guess`` should be close)."""
    base = guess
    while deadline_of(base) >= target:
        base -= dt.timedelta(days=7)
    while deadline_of(base) < target:
        base += dt.timedelta(days=1)
    return base


@dataclasses.dataclass(frozen=True)
class DeadlineBounds:
    """The day thresholds that turn the flags into comparisons on stored dates, for one
    ``today`` (all half-open: ``column < bound`` or ``low <= column < high``).

    * ack overdue: not acknowledged and ``received_on < ack_overdue_before``;
    * ack due soon: not acknowledged and ``ack_soon_from <= received_on < ack_soon_to``;
    * feedback overdue: no feedback and ``acknowledged_on < feedback_overdue_ack_before``, or
      never acknowledged and ``received_on < feedback_overdue_received_before``;
    * feedback due soon: likewise with ``feedback_soon_*``.
    """

    ack_overdue_before: dt.date
    ack_soon_from: dt.date
    ack_soon_to: dt.date
    feedback_overdue_ack_before: dt.date
    feedback_overdue_received_before: dt.date
    feedback_soon_ack_from: dt.date
    feedback_soon_ack_to: dt.date
    feedback_soon_received_from: dt.date
    feedback_soon_received_to: dt.date


def deadline_bounds(today: dt.date, rules: DeadlineRules) -> DeadlineBounds:
    """The thresholds of :class:`DeadlineBounds` for ``today`` under ``rules``."""
    one = dt.timedelta(days=1)
    soon_after = today + dt.timedelta(days=rules.due_soon_days) + one  # first day not "soon"

    def from_ack(day: dt.date) -> dt.date:
        return feedback_due(day, day, rules)

    def from_received(day: dt.date) -> dt.date:
        return feedback_due(day, None, rules)

    def reaching(target: dt.date, deadline_of: Callable[[dt.date], dt.date]) -> dt.date:
        guess = add_months(target, -rules.feedback_months) - dt.timedelta(days=rules.acknowledge_days)
        return first_base_reaching(target, deadline_of, guess)

    ack_shift = dt.timedelta(days=rules.acknowledge_days)
    return DeadlineBounds(
        # received + A < today  <=>  received < today - A
        ack_overdue_before=today - ack_shift,
        ack_soon_from=today - ack_shift,
        ack_soon_to=soon_after - ack_shift,
        feedback_overdue_ack_before=reaching(today, from_ack),
        feedback_overdue_received_before=reaching(today, from_received),
        feedback_soon_ack_from=reaching(today, from_ack),
        feedback_soon_ack_to=reaching(soon_after, from_ack),
        feedback_soon_received_from=reaching(today, from_received),
        feedback_soon_received_to=reaching(soon_after, from_received),
    )


__all__ = [
    "FLAGS",
    "CaseDeadlines",
    "DeadlineBounds",
    "DeadlineRules",
    "ack_due",
    "add_months",
    "case_deadlines",
    "deadline_bounds",
    "feedback_due",
    "first_base_reaching",
]
