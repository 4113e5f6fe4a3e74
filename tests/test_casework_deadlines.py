"""Deadlines (EU Directive 2019/1937 art. 9(1)(b),(f)): pure functions, month ends, and the
date bounds the inbox filters on."""

from __future__ import annotations

import datetime as dt

import pytest

from nazaha.services.deadlines import (
    DeadlineRules,
    ack_due,
    add_months,
    case_deadlines,
    deadline_bounds,
    feedback_due,
)

D = dt.date
RULES = DeadlineRules()


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2024, 1, 31), 1, D(2024, 2, 29)),  # leap year
        (D(2023, 1, 31), 1, D(2023, 2, 28)),
        (D(2026, 8, 31), 3, D(2026, 11, 30)),
        (D(2026, 11, 30), 3, D(2027, 2, 28)),
        (D(2027, 11, 30), 3, D(2028, 2, 29)),
        (D(2026, 10, 31), 3, D(2027, 1, 31)),  # across the year, no clamp
        (D(2026, 12, 15), 1, D(2027, 1, 15)),
        (D(2026, 3, 31), -1, D(2026, 2, 28)),
        (D(2026, 1, 15), -3, D(2025, 10, 15)),
        (D(2026, 5, 31), 0, D(2026, 5, 31)),
    ],
)
def test_add_months_clamps_to_the_end_of_the_month(day, months, expected):
    assert add_months(day, months) == expected


def test_acknowledgement_and_feedback_due_dates():
    assert ack_due(D(2026, 1, 28), RULES) == D(2026, 2, 4)
    # Acknowledged: 3 months after the acknowledgement, clamped.
    assert feedback_due(D(2025, 11, 20), D(2025, 11, 30), RULES) == D(2026, 2, 28)
    # Never acknowledged: 3 months after the end of the 7 days (24 Nov + 7 = 1 Dec).
    assert feedback_due(D(2025, 11, 24), None, RULES) == D(2026, 3, 1)
    # Received 24 Oct: the 7 days end on 31 Oct, feedback on 31 Jan.
    assert feedback_due(D(2025, 10, 24), None, RULES) == D(2026, 1, 31)
    # Received 24 Nov 2027: 7 days -> 1 Dec; but received 23 Nov -> 30 Nov -> 29 Feb 2028.
    assert feedback_due(D(2027, 11, 23), None, RULES) == D(2028, 2, 29)
    custom = DeadlineRules(acknowledge_days=5, feedback_months=1, due_soon_days=0)
    assert feedback_due(D(2026, 1, 26), None, custom) == D(2026, 2, 28)  # 31 Jan + 1 month


def test_deadline_day_is_in_time_and_the_next_day_overdue():
    received = D(2026, 1, 28)  # ack due 4 Feb
    on_day = case_deadlines(received, None, None, False, D(2026, 2, 4), RULES)
    assert on_day.ack_due == D(2026, 2, 4)
    assert on_day.flags == {"due_soon"}
    after = case_deadlines(received, None, None, False, D(2026, 2, 5), RULES)
    assert after.flags == {"ack_overdue"}
    soon_start = case_deadlines(received, None, None, False, D(2026, 2, 2), RULES)
    assert soon_start.flags == {"due_soon"}
    before = case_deadlines(received, None, None, False, D(2026, 2, 1), RULES)
    assert before.flags == frozenset()
    assert before.next_due == D(2026, 2, 4)


def test_feedback_flags_and_what_stops_them():
    received, acknowledged = D(2025, 11, 20), D(2025, 11, 30)  # feedback due 28 Feb 2026
    state = case_deadlines(received, acknowledged, None, False, D(2026, 2, 27), RULES)
    assert state.ack_due is None and state.feedback_due == D(2026, 2, 28)
    assert state.flags == {"due_soon"}
    assert case_deadlines(received, acknowledged, None, False, D(2026, 3, 1), RULES).flags == {"feedback_overdue"}
    # Feedback given: nothing pending.
    given = case_deadlines(received, acknowledged, D(2025, 12, 5), False, D(2026, 3, 1), RULES)
    assert (given.ack_due, given.feedback_due, given.flags, given.next_due) == (None, None, frozenset(), None)
    # Never acknowledged: both overdue once the feedback date has passed too.
    never = case_deadlines(D(2025, 10, 24), None, None, False, D(2026, 2, 1), RULES)
    assert never.flags == {"ack_overdue", "feedback_overdue"}
    assert never.next_due == D(2025, 10, 31)
    # Closed: no deadline at all.
    closed = case_deadlines(D(2025, 10, 24), None, None, True, D(2026, 2, 1), RULES)
    assert closed.flags == frozenset() and closed.next_due is None


def test_rules_are_checked():
    with pytest.raises(ValueError):
        DeadlineRules(acknowledge_days=-1)
    with pytest.raises(ValueError):
        DeadlineRules(feedback_months=True)


def _flags_from_bounds(received, acknowledged, feedback_on, today, rules):
    """The flags as the inbox's SQL computes them, from deadline_bounds."""
    b = deadline_bounds(today, rules)
    flags = set()
    not_ack, no_feedback = acknowledged is None, feedback_on is None
    if not_ack and received < b.ack_overdue_before:
        flags.add("ack_overdue")
    if no_feedback and (
        (not_ack and received < b.feedback_overdue_received_before)
        or (acknowledged is not None and acknowledged < b.feedback_overdue_ack_before)
    ):
        flags.add("feedback_overdue")
    if (not_ack and b.ack_soon_from <= received < b.ack_soon_to) or (
        no_feedback
        and (
            (not_ack and b.feedback_soon_received_from <= received < b.feedback_soon_received_to)
            or (acknowledged is not None and b.feedback_soon_ack_from <= acknowledged < b.feedback_soon_ack_to)
        )
    ):
        flags.add("due_soon")
    return flags


@pytest.mark.parametrize("rules", [RULES, DeadlineRules(acknowledge_days=3, feedback_months=1, due_soon_days=5)])
@pytest.mark.parametrize("today", [D(2026, 2, 28), D(2026, 3, 1), D(2026, 3, 31), D(2028, 2, 29), D(2026, 12, 31), D(2026, 5, 30)])
def test_bounds_give_the_same_flags_as_the_functions(rules, today):
    start = today - dt.timedelta(days=140)
    days = [start + dt.timedelta(days=n) for n in range(150)]
    checked = 0
    for received in days:
        for acknowledged in (None, received + dt.timedelta(days=2), received + dt.timedelta(days=9)):
            for feedback_on in (None, received + dt.timedelta(days=20)):
                expected = case_deadlines(received, acknowledged, feedback_on, False, today, rules).flags
                assert _flags_from_bounds(received, acknowledged, feedback_on, today, rules) == expected, (
                    received, acknowledged, feedback_on
                )
                checked += 1
    assert checked == 150 * 6
