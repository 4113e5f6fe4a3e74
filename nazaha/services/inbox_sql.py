"""The inbox's SQL: the conditions of a filter, the sort keys, and the statements of a page
(:func:`count_statement`, :func:`page_ids_statement`, :func:`rows_statement`).

The bot's ``reports`` are outer-joined to the console's ``console.cases`` (a report without
a case row is priority "normal" and unassigned) only when the viewer's access, the filter or
the sort needs them. Deadline flags are comparisons on stored dates
(:func:`nazaha.services.deadlines.deadline_bounds` turns "due before D" into
"received/acknowledged before B"); only sorting on the deadline computes it in SQL, with
the same month arithmetic as Python (PostgreSQL's ``date + interval`` clamps to the
month's end; on SQLite the clamp is spelled out). Why the statements look as they do
(indexes of migration 0005, report id order): docs/benchmarks.md, "Console inbox".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Date, and_, case, cast, exists, func, literal, literal_column, or_, select, text, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.sql.util import ClauseAdapter

from nazaha.services.access import CASES, REPORTS, Viewer, cases_join, visible_clause
from nazaha.services.deadlines import DeadlineRules, deadline_bounds
from nazaha.services.inbox_filter import InboxFilter
from nazaha.services.workflow import STATUSES
from nazaha.storage.console_models import PRIORITIES, CaseLabel, CaseView, StaffUser
from nazaha.storage.models import UNREAD_BY_STAFF, CaseMessage

LABELS = CaseLabel.__table__
VIEWS = CaseView.__table__
USERS = StaffUser.__table__
MESSAGES = CaseMessage.__table__


class _ReportsById(Alias):
    """``reports`` read through ``ix_reports_inbox`` (its triage columns in report id order)
    on SQLite. A scan of all cases joins each to its console rows, which are keyed by report
    id too: read in that order, the lookups are several times cheaper than in any other,
    and SQLite would otherwise pick the index by day received just as well."""

    inherit_cache = True


@compiles(_ReportsById, "sqlite")
def _reports_by_id(element: Any, compiler: Any, **kw: Any) -> str:
    text_ = compiler.visit_alias(element, **kw)
    return f"{text_} INDEXED BY ix_reports_inbox" if kw.get("asfrom") else text_


REPORTS_BY_ID = _ReportsById._construct(REPORTS, name="reports")


def by_report_id(statement: Any) -> Any:
    """``statement`` (written on ``reports``) reading ``reports`` in report id order."""
    return ClauseAdapter(REPORTS_BY_ID).traverse(statement)


def _views_join(viewer: Viewer) -> Any:
    return and_(VIEWS.c.report_id == REPORTS.c.id, VIEWS.c.user_id == viewer.user_id)


def _unseen(viewer: Viewer) -> Any:
    """Over the join with the viewer's ``case_views`` row: never opened, updated since, or a
    reporter message no staff member has read."""
    # Spelled as the partial index ix_case_messages_unread_by_staff is, so that it serves.
    unread = exists().where(MESSAGES.c.report_id == REPORTS.c.id, text(UNREAD_BY_STAFF))
    return or_(
        VIEWS.c.seen_at.is_(None),
        and_(CASES.c.updated_at.is_not(None), CASES.c.updated_at > VIEWS.c.seen_at),
        unread,
    )


def flag_clause(flag: str, today: dt.date, rules: DeadlineRules) -> Any:
    """The condition "this case has ``flag`` on ``today``" (one of ``FLAGS``), on stored
    days only, so that the indexes of those days serve."""
    b = deadline_bounds(today, rules)
    received, acknowledged = REPORTS.c.created_on, CASES.c.acknowledged_on
    not_acknowledged = acknowledged.is_(None)
    no_feedback = CASES.c.feedback_on.is_(None)
    is_open = REPORTS.c.status != "closed"
    if flag == "ack_overdue":
        return and_(is_open, not_acknowledged, received < b.ack_overdue_before)
    if flag == "feedback_overdue":
        return and_(
            is_open,
            no_feedback,
            or_(
                and_(not_acknowledged, received < b.feedback_overdue_received_before),
                acknowledged < b.feedback_overdue_ack_before,
            ),
        )
    return and_(  # due_soon
        is_open,
        or_(
            and_(not_acknowledged, received >= b.ack_soon_from, received < b.ack_soon_to),
            and_(
                no_feedback,
                or_(
                    and_(
                        not_acknowledged,
                        received >= b.feedback_soon_received_from,
                        received < b.feedback_soon_received_to,
                    ),
                    and_(acknowledged >= b.feedback_soon_ack_from, acknowledged < b.feedback_soon_ack_to),
                ),
            ),
        ),
    )


def conditions(viewer: Viewer, f: InboxFilter, today: dt.date, rules: DeadlineRules) -> list[Any]:
    """The filter's conditions and the viewer's access, over :func:`filtered_from`."""
    r, c = REPORTS.c, CASES.c
    where: list[Any] = []
    if f.designation:
        where.append(r.designation.like(f"%{f.designation}%"))
    for name in ("kind", "category", "service", "sector", "governorate"):
        value = getattr(f, name)
        if value is not None:
            where.append(r[name] == value)
    if f.statuses:
        where.append(r.status.in_(f.statuses))
    if f.priority == "normal":
        where.append(or_(c.priority.is_(None), c.priority == "normal"))
    elif f.priority is not None:
        where.append(c.priority == f.priority)
    if f.label is not None:  # a list SQLite can start from: a label is usually selective
        where.append(r.id.in_(select(LABELS.c.report_id).where(LABELS.c.label == f.label)))
    if f.assignee == "me":
        where.append(c.assignee_id == viewer.user_id)
    elif f.assignee == "none":
        where.append(c.assignee_id.is_(None))
    elif f.assignee is not None:
        where.append(c.assignee_id == f.assignee)
    if f.received_from is not None:
        where.append(r.created_on >= f.received_from)
    if f.received_to is not None:
        where.append(r.created_on <= f.received_to)
    if f.flag is not None:
        where.append(flag_clause(f.flag, today, rules))
    if f.unseen_only:
        where.append(_unseen(viewer))
    # Last: SQLite tests the terms in this order, and access costs lookups the cheap column
    # tests above spare for the cases they already rule out.
    where.append(visible_clause(viewer))
    return where


_CASE_FILTERS = ("priority", "assignee", "flag")
_CASE_SORTS = ("priority", "assignee", "deadline")
# Orders an index of reports gives: the page stops after its rows.
_INDEXED_SORTS = ("received", "age", "designation")


def filtered_from(viewer: Viewer, f: InboxFilter, *, sorted_: bool = False, with_case_row: bool = False) -> Any:
    """``reports``, outer-joined to the console's rows only if the viewer's access, the
    filter or (``sorted_``) the sort needs them: an admin's page on report columns alone
    reads one index. ``with_case_row``: only reports that have one (an inner join, which the
    database may start from the console's side)."""
    if with_case_row:
        joined = CASES.join(REPORTS, CASES.c.report_id == REPORTS.c.id)
        if f.unseen_only:
            joined = joined.outerjoin(VIEWS, _views_join(viewer))
        return joined
    needs_cases = (
        viewer.role != "admin"
        or f.unseen_only
        or any(getattr(f, name) is not None for name in _CASE_FILTERS)
        or (sorted_ and f.sort in _CASE_SORTS)
    )
    if not needs_cases:
        return REPORTS
    joined = cases_join()
    if f.unseen_only:
        joined = joined.outerjoin(VIEWS, _views_join(viewer))
    if sorted_ and f.sort == "assignee":
        joined = joined.outerjoin(USERS, USERS.c.id == CASES.c.assignee_id)
    return joined


def _add_days(dialect: str, column: Any, days: int) -> Any:
    if dialect == "sqlite":
        return func.date(column, f"+{days} days")
    return column + days


def _add_months(dialect: str, column: Any, months: int) -> Any:
    """``column`` + months, clamped to the month's end (as deadlines.add_months)."""
    if dialect == "sqlite":
        # date(x, '+N months') overflows into the next month (31 Jan + 1 month = 3 Mar);
        # the last day of the target month caps it.
        return func.min(
            func.date(column, f"+{months} months"),
            func.date(column, "start of month", f"+{months + 1} months", "-1 day"),
        )
    return cast(column + literal_column(f"interval '{int(months)} months'"), Date)


# The deadline order, as three groups of cases that indexes give in order:
# A: open, not acknowledged: due = received + days, in the order of the day received;
# B: open, acknowledged, no feedback yet: due = acknowledged + months (non-decreasing), in the
#    order of the day acknowledged;
# C: no deadline (closed, or feedback given): last, by report id.
# The order is (due, base, id) with base the day the deadline counts from: the same as the
# day order within A and within B, and total, so a page can take the first rows of each.


def _deadline_groups(rules: DeadlineRules) -> tuple[Any, Any, Any]:
    r, c = REPORTS.c, CASES.c
    is_open = r.status != "closed"
    return (
        and_(is_open, c.acknowledged_on.is_(None)),
        and_(is_open, c.acknowledged_on.is_not(None), c.feedback_on.is_(None)),
        or_(r.status == "closed", and_(c.acknowledged_on.is_not(None), c.feedback_on.is_not(None))),
    )


def _deadline_keys(dialect: str, rules: DeadlineRules) -> tuple[Any, Any]:
    """The next deadline (NULL: none) and the day it counts from (NULL likewise)."""
    r, c = REPORTS.c, CASES.c
    waiting_ack, waiting_feedback, _none = _deadline_groups(rules)
    due = case(
        (waiting_ack, _add_days(dialect, r.created_on, rules.acknowledge_days)),
        (waiting_feedback, _add_months(dialect, c.acknowledged_on, rules.feedback_months)),
        else_=None,
    )
    base = case((waiting_ack, r.created_on), (waiting_feedback, c.acknowledged_on), else_=None)
    return due, base


def _sort_key(f: InboxFilter, dialect: str, rules: DeadlineRules) -> tuple[Any, bool]:
    """The SQL sort expression and the direction to apply it in (True: descending)."""
    r, c = REPORTS.c, CASES.c
    sort, descending = f.sort, f.descending
    if sort == "age":  # older first = received earlier first
        return r.created_on, not descending
    if sort == "received":
        return r.created_on, descending
    if sort == "category":
        return func.coalesce(r.category, r.service), descending
    if sort in ("designation", "kind", "sector", "governorate"):
        return r[sort], descending
    if sort == "status":
        return case({s: i for i, s in enumerate(STATUSES)}, value=r.status, else_=len(STATUSES)), descending
    if sort == "priority":
        return case({p: i for i, p in enumerate(PRIORITIES)}, value=c.priority, else_=PRIORITIES.index("normal")), descending
    if sort == "assignee":
        return USERS.c.username, descending
    if sort == "deadline":
        return _deadline_keys(dialect, rules)[0], descending
    # labels: the first label in alphabetical order
    first = select(func.min(LABELS.c.label)).where(LABELS.c.report_id == r.id).scalar_subquery()
    return first, descending


# Sort keys that are never NULL. Only the others say NULLS LAST: on a key that cannot be NULL
# it would keep PostgreSQL from reading an index backwards (DESC is NULLS FIRST there).
_NOT_NULL_SORTS = ("designation", "kind", "status", "priority", "received", "age")


def _order_by(f: InboxFilter, dialect: str, rules: DeadlineRules) -> list[Any]:
    key, descending = _sort_key(f, dialect, rules)
    primary = key.desc() if descending else key.asc()
    if f.sort not in _NOT_NULL_SORTS:
        primary = primary.nulls_last()
    tiebreak = REPORTS.c.id.desc() if descending else REPORTS.c.id.asc()
    if f.sort == "deadline":
        base = _deadline_keys(dialect, rules)[1]
        return [primary, base.desc() if descending else base.asc(), tiebreak]
    return [primary, tiebreak]


def _only(report_ids: Sequence[str] | None) -> list[Any]:
    """No condition for ``None``; else only those reports (the matches of a search)."""
    return [] if report_ids is None else [REPORTS.c.id.in_(list(report_ids))]


def count_statement(
    viewer: Viewer, f: InboxFilter, today: dt.date, rules: DeadlineRules, report_ids: Sequence[str] | None = None
) -> Any:
    """How many cases match (the first of a page's two statements)."""
    statement = (
        select(func.count())
        .select_from(filtered_from(viewer, f))
        .where(*conditions(viewer, f, today, rules), *_only(report_ids))
    )
    return by_report_id(statement)


def page_ids_statement(
    viewer: Viewer,
    f: InboxFilter,
    today: dt.date,
    rules: DeadlineRules,
    dialect: str,
    page: int,
    report_ids: Sequence[str] | None = None,
) -> Any:
    """The ids of page ``page`` in order (a subquery of the rows statement)."""
    if f.sort == "deadline":
        return _deadline_page_ids(viewer, f, today, rules, dialect, page, report_ids)
    statement = (
        select(REPORTS.c.id)
        .select_from(filtered_from(viewer, f, sorted_=True))
        .where(*conditions(viewer, f, today, rules), *_only(report_ids))
        .order_by(*_order_by(f, dialect, rules))
        .limit(f.page_size)
        .offset((page - 1) * f.page_size)
    )
    if f.sort in _INDEXED_SORTS:  # walk that index and stop after the page
        return statement
    return by_report_id(statement)  # any other order reads every match anyway


def _deadline_page_ids(
    viewer: Viewer,
    f: InboxFilter,
    today: dt.date,
    rules: DeadlineRules,
    dialect: str,
    page: int,
    report_ids: Sequence[str] | None,
) -> Any:
    """Page ``page`` by deadline without computing every case's deadline: the first
    ``page × page_size`` cases of each group (A, B, C above), each read in the order of an
    index and stopped there, then merged. The page is among them: in the whole order, no
    more than that many cases come before its last one, from any one group."""
    r, c = REPORTS.c, CASES.c
    wanted = page * f.page_size
    desc = f.descending
    due, base = _deadline_keys(dialect, rules)
    where = [*conditions(viewer, f, today, rules), *_only(report_ids)]

    def ordered(*keys: Any) -> list[Any]:
        return [key.desc() if desc else key.asc() for key in keys]

    waiting_ack, waiting_feedback, no_deadline = _deadline_groups(rules)
    groups = []
    for group, (condition, keys) in enumerate(
        (
            (waiting_ack, ordered(r.created_on, r.id)),  # ix_reports_received
            (waiting_feedback, ordered(c.acknowledged_on, c.report_id)),  # ix_cases_acknowledged_on
            (no_deadline, ordered(r.id)),  # ix_reports_inbox
        )
    ):
        statement = (
            select(r.id.label("id"), literal(int(group == 2)).label("last"), due.label("due"), base.label("base"))
            .select_from(filtered_from(viewer, f, sorted_=True, with_case_row=group == 1))
            .where(*where, condition)
            .order_by(*keys)
            .limit(wanted)
        )
        groups.append(select(statement.subquery()))
    merged = union_all(*groups).subquery()
    return (
        select(merged.c.id)
        .order_by(merged.c.last, *ordered(merged.c.due, merged.c.base, merged.c.id))
        .limit(f.page_size)
        .offset((page - 1) * f.page_size)
    )


def rows_statement(viewer: Viewer, f: InboxFilter, rules: DeadlineRules, dialect: str, page_ids: Any) -> Any:
    """The page's rows, in order: only the ids of ``page_ids`` are joined to their labels,
    assignee name (and whether that member was removed) and "unseen" mark."""
    r, c = REPORTS.c, CASES.c
    labels = (
        select(func.aggregate_strings(LABELS.c.label, ","))
        .where(LABELS.c.report_id == r.id)
        .scalar_subquery()
    )
    return (
        select(
            r.id, r.designation, r.kind, r.category, r.service, r.sector, r.governorate,
            r.status, r.outcome, r.created_on,
            c.priority, c.assignee_id, c.acknowledged_on, c.feedback_on,
            USERS.c.username.label("assignee_name"),
            case((USERS.c.state == "removed", 1), else_=0).label("assignee_removed"),
            labels.label("labels"),
            case((_unseen(viewer), 1), else_=0).label("unseen"),
        )
        .select_from(
            cases_join()
            .outerjoin(USERS, USERS.c.id == c.assignee_id)
            .outerjoin(VIEWS, _views_join(viewer))
        )
        .where(r.id.in_(page_ids.scalar_subquery()))
        .order_by(*_order_by(f, dialect, rules))
    )


__all__ = [
    "REPORTS_BY_ID",
    "USERS",
    "VIEWS",
    "by_report_id",
    "conditions",
    "count_statement",
    "filtered_from",
    "flag_clause",
    "page_ids_statement",
    "rows_statement",
]
