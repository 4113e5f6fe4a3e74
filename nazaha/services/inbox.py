"""The inbox: one page of the cases a viewer may see, filtered and sorted in SQL
(:mod:`nazaha.services.inbox_sql`), with deadlines and the "new or updated" mark; the
dashboard's counts; the "seen" mark.

A page is two statements: a count, and the rows (the ids of the page are chosen in a
subquery with ORDER BY/LIMIT/OFFSET, and only those rows are joined to their labels,
assignee name and "unseen" mark).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from nazaha.services.access import CASES, REPORTS, Viewer, cases_join, require_visible, visible_clause
from nazaha.services.deadlines import FLAGS, DeadlineRules, case_deadlines
from nazaha.services.inbox_filter import PAGE_SIZE_MAX, SORT_KEYS, InboxFilter
from nazaha.services.inbox_sql import (
    USERS,
    VIEWS,
    by_report_id,
    conditions,
    count_statement,
    filtered_from,
    flag_clause,
    page_ids_statement,
    rows_statement,
)
from nazaha.services.workflow import OPEN_STATUSES
from nazaha.storage.database import dialect_insert


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
    assignee_removed: bool = False  # the assignee's account was removed since


@dataclasses.dataclass(frozen=True)
class InboxPage:
    """``rows`` of page ``page`` (clamped to 1..``pages``) of ``total`` matching cases."""

    rows: list[InboxRow]
    total: int
    page: int
    pages: int
    page_size: int


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
                assignee_removed=bool(row.assignee_removed),
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
        .where(*conditions(viewer, f, today, rules))
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
            *(counted(flag_clause(flag, today, rules)).label(flag) for flag in FLAGS),
            counted(is_open).label("open"),
        )
        .select_from(cases_join())
        .where(visible_clause(viewer))
    )
    row = (await session.execute(by_report_id(statement))).one()
    return {key: int(value) for key, value in row._mapping.items()}


@dataclasses.dataclass(frozen=True)
class RemovedAssignee:
    """A removed member who is still the assignee of ``cases`` cases."""

    user_id: str
    username: str
    cases: int


async def removed_assignees(session: AsyncSession, viewer: Viewer) -> list[RemovedAssignee]:
    """The removed members who are still the assignee of cases the viewer may see, with how
    many, by user name: the inbox's Assignee filter offers them, so that their cases can be
    listed and reassigned, and the Team page counts them when a member is removed."""
    r, c = REPORTS.c, CASES.c
    statement = (
        select(USERS.c.id, USERS.c.username, func.count(r.id))
        .select_from(cases_join().join(USERS, USERS.c.id == c.assignee_id))
        .where(USERS.c.state == "removed", visible_clause(viewer))
        .group_by(USERS.c.id, USERS.c.username)
        .order_by(USERS.c.username)
    )
    return [RemovedAssignee(user_id, username, int(count)) for user_id, username, count in await session.execute(statement)]


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
    "RemovedAssignee",
    "dashboard_counts",
    "filtered_report_ids",
    "inbox_page",
    "mark_seen",
    "removed_assignees",
]
