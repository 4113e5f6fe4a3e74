"""The inbox: one page of the cases a viewer may see, filtered and sorted in SQL.

A page is two statements: a count, and the rows (the ids of the page are chosen in a
subquery with ORDER BY/LIMIT/OFFSET, and only those 50 rows are joined to their labels,
assignee name and "unseen" mark). The bot's ``reports`` are outer-joined to the console's
``console.cases``: a report without a case row is priority "normal" and unassigned.

Deadline flags are filtered as comparisons on stored dates (:mod:`nazaha.services.deadlines`
turns "due before D" into "received/acknowledged before B"), so they can use indexes; only
sorting on the deadline computes it in SQL, with the same month arithmetic as Python
(PostgreSQL's ``date + interval`` clamps to the month's end; on SQLite the clamp is spelled
out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Date,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.sql.util import ClauseAdapter

from nazaha.services.access import REPORTS, CASES, Viewer, cases_join, require_visible, visible_clause
from nazaha.services.deadlines import FLAGS, DeadlineRules, case_deadlines, deadline_bounds
from nazaha.services.workflow import OPEN_STATUSES, STATUSES, normalise_label
from nazaha.storage.console_models import PRIORITIES, CaseLabel, CaseView, StaffUser
from nazaha.storage.database import dialect_insert
from nazaha.storage.models import UNREAD_BY_STAFF, CaseMessage

SORT_KEYS = (
    "designation",
    "kind",
    "category",
    "sector",
    "governorate",
    "status",
    "priority",
    "assignee",
    "received",
    "age",
    "deadline",
    "labels",
)
PAGE_SIZE_MAX = 200
_CODE = re.compile(r"[a-z0-9_]{1,64}")
_DESIGNATION_PART = re.compile(r"[A-Z0-9-]{1,16}")
_USER_ID = re.compile(r"[0-9a-f]{32}")

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


def _by_report_id(statement: Any) -> Any:
    """``statement`` (written on ``reports``) reading ``reports`` in report id order."""
    return ClauseAdapter(REPORTS_BY_ID).traverse(statement)


# -- the filter ---------------------------------------------------------------------------


@dataclasses.dataclass
class InboxFilter:
    """What the inbox shows. Every field is optional; direct construction checks values
    (``ValueError``), :meth:`from_query` ignores bad ones.

    ``designation``: a part of it (case-insensitive); ``kind``/``category``/``service``/
    ``sector``/``governorate``: codes; ``statuses``: any of these; ``priority``: one of
    ``PRIORITIES``; ``label``: one label; ``assignee``: ``"me"``, ``"none"`` or a user id;
    ``received_from``/``received_to``: inclusive days; ``flag``: one of ``FLAGS``;
    ``unseen_only``: only cases new or updated since the viewer last opened them.
    ``sort``: one of :data:`SORT_KEYS`; pages count from 1, ``page_size`` 1-200.
    """

    designation: str | None = None
    kind: str | None = None
    category: str | None = None
    service: str | None = None
    sector: str | None = None
    governorate: str | None = None
    statuses: tuple[str, ...] = ()
    priority: str | None = None
    label: str | None = None
    assignee: str | None = None
    received_from: dt.date | None = None
    received_to: dt.date | None = None
    flag: str | None = None
    unseen_only: bool = False
    sort: str = "received"
    descending: bool = True
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.designation is not None:
            self.designation = _designation_part(self.designation)
        for name in ("kind", "category", "service", "sector", "governorate"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or _CODE.fullmatch(value) is None):
                raise ValueError(f"{name} is a code like 'bribery'")
        self.statuses = tuple(dict.fromkeys(self.statuses))
        if any(s not in STATUSES for s in self.statuses):
            raise ValueError("unknown status")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise ValueError("unknown priority")
        if self.label is not None:
            self.label = normalise_label(self.label)
        if self.assignee is not None and self.assignee not in ("me", "none") and (
            not isinstance(self.assignee, str) or _USER_ID.fullmatch(self.assignee) is None
        ):
            raise ValueError("assignee is 'me', 'none' or a user id")
        for name in ("received_from", "received_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
                raise ValueError(f"{name} is a date")
        if self.flag is not None and self.flag not in FLAGS:
            raise ValueError("unknown flag")
        if self.sort not in SORT_KEYS:
            raise ValueError("unknown sort key")
        for name, low, high in (("page", 1, 10**9), ("page_size", 1, PAGE_SIZE_MAX)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}")
        self.unseen_only = bool(self.unseen_only)
        self.descending = bool(self.descending)

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> InboxFilter:
        """Read a filter from query-string parameters (a ``dict``, or Starlette's
        ``QueryParams`` with repeated keys). Unknown keys and bad values are ignored:

        ``designation kind category service sector governorate priority label assignee
        flag`` (text), ``status`` (repeated or comma-separated), ``received_from`` /
        ``received_to`` (YYYY-MM-DD), ``unseen`` (1), ``sort``, ``dir`` (asc|desc),
        ``page``, ``page_size``.
        """
        values: dict[str, Any] = {}
        for name in ("designation", "kind", "category", "service", "sector", "governorate",
                     "priority", "label", "assignee", "flag"):
            text = _last(query, name)
            if text:
                values[name] = text.strip()
        statuses = [part.strip() for raw in _all(query, "status") for part in raw.split(",")]
        values["statuses"] = tuple(s for s in statuses if s in STATUSES)
        for name in ("received_from", "received_to"):
            values[name] = _parse_date(_last(query, name))
        values["unseen_only"] = _last(query, "unseen") in ("1", "true", "on", "yes")
        values["sort"] = _last(query, "sort") or "received"
        direction = _last(query, "dir")
        values["descending"] = direction != "asc" if direction in ("asc", "desc") else True
        values["page"] = _parse_int(_last(query, "page")) or 1
        values["page_size"] = _parse_int(_last(query, "page_size")) or 50
        result = cls()
        for name, value in values.items():
            try:
                result = dataclasses.replace(result, **{name: value})
            except (ValueError, TypeError):
                pass  # a bad value is ignored, the default stays
        return result

    def to_query(self) -> list[tuple[str, str]]:
        """The parameters that :meth:`from_query` reads back into this filter, without the
        defaults (for ``urllib.parse.urlencode``)."""
        default = InboxFilter()
        pairs: list[tuple[str, str]] = []
        for name in ("designation", "kind", "category", "service", "sector", "governorate"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name)))
        pairs.extend(("status", s) for s in self.statuses)
        for name in ("priority", "label", "assignee"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name)))
        for name in ("received_from", "received_to"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name).isoformat()))
        if self.flag is not None:
            pairs.append(("flag", self.flag))
        if self.unseen_only:
            pairs.append(("unseen", "1"))
        if self.sort != default.sort:
            pairs.append(("sort", self.sort))
        if self.descending != default.descending:
            pairs.append(("dir", "desc" if self.descending else "asc"))
        if self.page != default.page:
            pairs.append(("page", str(self.page)))
        if self.page_size != default.page_size:
            pairs.append(("page_size", str(self.page_size)))
        return pairs


def _designation_part(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("designation is text")
    part = value.strip().upper()
    if _DESIGNATION_PART.fullmatch(part) is None:
        raise ValueError("designation is a part of one, like 'R-7KQ'")
    return part


def _all(query: Mapping[str, Any], key: str) -> list[str]:
    getlist = getattr(query, "getlist", None)
    raw = getlist(key) if callable(getlist) else query.get(key)
    if raw is None:
        return []
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    return [item for item in items if isinstance(item, str)]


def _last(query: Mapping[str, Any], key: str) -> str | None:
    items = [item for item in _all(query, key) if item.strip()]
    return items[-1] if items else None


def _parse_date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text else None
    except ValueError:
        return None


def _parse_int(text: str | None) -> int | None:
    if text is None or not text.strip().isascii() or not text.strip().isdigit() or len(text.strip()) > 9:
        return None
    return int(text.strip())


# -- the page -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InboxRow:
    """One case in the inbox. ``category`` is the category of a corruption report, the
    service of a complaint is in ``service``; ``labels`` sorted; ``flags`` a subset of
    ``FLAGS``; ``unseen``: new or updated since the viewer last opened it."""

    report_id: str
    designation: str
    kind: str
    category: str | None
    service: str | None
    sector: str | None
    governorate: str | None
    status: str
    outcome: str | None
    priority: str
    labels: tuple[str, ...]
    assignee_id: str | None
    assignee_name: str | None
    received_on: dt.date
    age_days: int
    ack_due: dt.date | None
    feedback_due: dt.date | None
    flags: frozenset[str]
    unseen: bool


@dataclasses.dataclass(frozen=True)
class InboxPage:
    """``rows`` of page ``page`` (clamped to 1..``pages``) of ``total`` matching cases."""

    rows: list[InboxRow]
    total: int
    page: int
    pages: int
    page_size: int


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


def _flag_clause(flag: str, today: dt.date, rules: DeadlineRules) -> Any:
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


def _conditions(viewer: Viewer, f: InboxFilter, today: dt.date, rules: DeadlineRules) -> list[Any]:
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
        where.append(_flag_clause(f.flag, today, rules))
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


def filtered_from(viewer: Viewer, f: InboxFilter, *, sorted_: bool = False) -> Any:
    """``reports``, outer-joined to the console's rows only if the viewer's access, the
    filter or (``sorted_``) the sort needs them: an admin's page on report columns alone
    reads one index."""
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


def _next_due(dialect: str, rules: DeadlineRules) -> Any:
    r, c = REPORTS.c, CASES.c
    return case(
        (r.status == "closed", None),
        (c.acknowledged_on.is_(None), _add_days(dialect, r.created_on, rules.acknowledge_days)),
        (c.feedback_on.is_(None), _add_months(dialect, c.acknowledged_on, rules.feedback_months)),
        else_=None,
    )


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
        return _next_due(dialect, rules), descending
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
        .where(*_conditions(viewer, f, today, rules), *_only(report_ids))
    )
    return _by_report_id(statement)


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
    statement = (
        select(REPORTS.c.id)
        .select_from(filtered_from(viewer, f, sorted_=True))
        .where(*_conditions(viewer, f, today, rules), *_only(report_ids))
        .order_by(*_order_by(f, dialect, rules))
        .limit(f.page_size)
        .offset((page - 1) * f.page_size)
    )
    if f.sort in _INDEXED_SORTS:  # walk that index and stop after the page
        return statement
    return _by_report_id(statement)  # any other order reads every match anyway


def rows_statement(viewer: Viewer, f: InboxFilter, rules: DeadlineRules, dialect: str, page_ids: Any) -> Any:
    """The page's rows, in order: only the ids of ``page_ids`` are joined to their labels,
    assignee name and "unseen" mark."""
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


async def _fetch(session: AsyncSession, statement: Any) -> list[Any]:
    return list(await session.execute(statement))


async def inbox_page(
    session: AsyncSession,
    viewer: Viewer,
    f: InboxFilter,
    today: dt.date,
    deadlines: DeadlineRules,
    *,
    report_ids: Sequence[str] | None = None,
) -> InboxPage:
    """One page of the viewer's inbox (a volunteer's is always empty). Past the last page,
    the last page is shown. ``report_ids`` narrows it to those reports (a search's
    matches).

    Given a session that has not begun its transaction yet (and is bound to an engine), the
    count runs on a connection of its own at the same time as the rows: each reads every
    matching case, so the page takes about as long as the slower of the two instead of
    both."""
    f = dataclasses.replace(f)  # checks the values again
    dialect = session.get_bind().dialect.name
    count = count_statement(viewer, f, today, deadlines, report_ids)

    def rows_of(page: int) -> Any:
        page_ids = page_ids_statement(viewer, f, today, deadlines, dialect, page, report_ids)
        return rows_statement(viewer, f, deadlines, dialect, page_ids)

    bind = session.bind
    if isinstance(bind, AsyncEngine) and not session.in_transaction():

        async def count_apart() -> int:
            async with bind.connect() as connection:
                return int(await connection.scalar(count) or 0)

        total, found = await asyncio.gather(count_apart(), _fetch(session, rows_of(f.page)))
    else:
        total, found = int(await session.scalar(count) or 0), None
    pages = max(1, math.ceil(total / f.page_size))
    page = min(f.page, pages)
    if total == 0:
        return InboxPage([], 0, 1, 1, f.page_size)
    if found is None or page != f.page:
        found = await _fetch(session, rows_of(page))
    rows = []
    for row in found:
        deadlines_ = case_deadlines(
            row.created_on, row.acknowledged_on, row.feedback_on, row.status == "closed", today, deadlines
        )
        rows.append(
            InboxRow(
                report_id=row.id,
                designation=row.designation,
                kind=row.kind,
                category=row.category,
                service=row.service,
                sector=row.sector,
                governorate=row.governorate,
                status=row.status,
                outcome=row.outcome,
                priority=row.priority or "normal",
                labels=tuple(sorted(row.labels.split(","))) if row.labels else (),
                assignee_id=row.assignee_id,
                assignee_name=row.assignee_name,
                received_on=row.created_on,
                age_days=(today - row.created_on).days,
                ack_due=deadlines_.ack_due,
                feedback_due=deadlines_.feedback_due,
                flags=deadlines_.flags,
                unseen=bool(row.unseen),
            )
        )
    return InboxPage(rows, total, page, pages, f.page_size)


async def filtered_report_ids(
    session: AsyncSession, viewer: Viewer, f: InboxFilter, today: dt.date, rules: DeadlineRules, limit: int
) -> list[str]:
    """The ids of the cases matching the filter (all pages), newest first, at most ``limit``."""
    f = dataclasses.replace(f)
    statement = (
        select(REPORTS.c.id)
        .select_from(filtered_from(viewer, f))
        .where(*_conditions(viewer, f, today, rules))
        .order_by(REPORTS.c.created_on.desc(), REPORTS.c.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(statement))


async def dashboard_counts(
    session: AsyncSession, viewer: Viewer, today: dt.date, rules: DeadlineRules
) -> dict[str, int]:
    """Counts over the cases the viewer may see, in one query: ``new`` (received, not yet
    acknowledged), ``unassigned``, ``mine`` (assigned to the viewer), ``ack_overdue``,
    ``feedback_overdue``, ``due_soon`` and ``open`` (all three only among open cases)."""
    r, c = REPORTS.c, CASES.c
    is_open = r.status.in_(OPEN_STATUSES)

    def counted(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    statement = (
        select(
            counted(r.status == "received").label("new"),
            counted(and_(is_open, c.assignee_id.is_(None))).label("unassigned"),
            counted(and_(is_open, c.assignee_id == viewer.user_id)).label("mine"),
            *(counted(_flag_clause(flag, today, rules)).label(flag) for flag in FLAGS),
            counted(is_open).label("open"),
        )
        .select_from(cases_join())
        .where(visible_clause(viewer))
    )
    row = (await session.execute(_by_report_id(statement))).one()
    return {key: int(value) for key, value in row._mapping.items()}


async def mark_seen(session: AsyncSession, viewer: Viewer, report_id: str, now: dt.datetime) -> None:
    """The viewer opened the case at ``now``: it is no longer "new or updated" for them."""
    await require_visible(session, viewer, report_id)
    insert = dialect_insert(session)(VIEWS).values(user_id=viewer.user_id, report_id=report_id, seen_at=now)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["user_id", "report_id"], set_={"seen_at": insert.excluded.seen_at}
        )
    )


__all__ = [
    "PAGE_SIZE_MAX",
    "SORT_KEYS",
    "InboxFilter",
    "InboxPage",
    "InboxRow",
    "dashboard_counts",
    "filtered_report_ids",
    "inbox_page",
    "mark_seen",
]
