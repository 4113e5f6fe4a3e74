"""Statistics over the cases received in a date range, for the console's statistics page
and its charts, tables and CSV files (nazaha.admin.routes.statistics).

Every figure is a SQL aggregate (GROUP BY over ``reports`` outer-joined to
``console.cases``, read through the index by day received, or for a caseworker from their
assigned cases); Python only adds up the groups. Given a fresh session, the counts over
report columns run on a second connection while the joined pass runs on the session's (two
snapshots of the same committed data). How fast: docs/benchmarks.md, "Console statistics". Which cases count:

* cases **received** from ``date_from`` to ``date_to`` (both days included);
* an **admin** counts every case, plus what purged cases left (``console.purged_aggregates``,
  weighted by their ``count``) whose **month of receipt lies wholly within the range**: a
  purged case keeps only its month, so a range that cuts a month leaves that month's purged
  cases out (the page's default range is whole months, where nothing changes at a purge);
* a **caseworker** counts only the cases assigned to them now (a reassigned case counts for
  its current assignee only), never one they are recused from, and no purged case (purged
  cases have no assignee);
* anyone else counts nothing.

A breakdown by a question asked of one kind of case counts only cases of that kind: by
category and by institution (``sector``) the corruption reports, by service the complaints;
"not given" (``None``) there is a case of that kind without an answer, never a case of the
other kind, which was not asked.

Durations, in whole days:

* *days to acknowledge* = ``acknowledged_on - created_on``, over the cases acknowledged;
* *days to close* = ``closed_on - created_on``, over the cases closed now. Closing sets
  ``closed_on`` and reopening clears it, so a case closed, reopened and closed again counts
  with its **latest** closing; a reopened case that is open now has no time to close.

Percentiles are **nearest-rank**: over the ``n`` durations sorted ascending, the ``p``-th
percentile is the value at rank ``ceil(p/100 × n)`` (ranks from 1). The median is the 50th
percentile in that sense, always one of the observed values (for an even ``n``, the lower
of the two middle values); with no durations both are ``None``.

*Overdue* counts are as of ``today`` among the open cases of the range
(nazaha.services.deadlines: an acknowledgement overdue, a feedback overdue; one case can be
both). Purged cases were closed, so never overdue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Date, Integer, and_, case, false, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from nazaha.services.access import CASES, REPORTS, Viewer, cases_join, visible_clause
from nazaha.services.deadlines import DeadlineRules, add_months
from nazaha.services.inbox_sql import flag_clause
from nazaha.storage.console_models import PurgedCaseAggregate

PURGED = PurgedCaseAggregate.__table__
# The dimensions a case is counted by (each a mapping code -> count; ``None`` is "not
# given": a case of the kind the question was asked of that has no answer stored).
DIMENSIONS = ("kind", "category", "service", "sector", "governorate", "month", "status", "outcome")
# The kind of case each one-kind question is asked of (nazaha.flows.report_flow.QUESTIONS):
# a corruption report has a category and an institution (sector), a complaint a service.
# The other dimensions apply to every case.
CATEGORY_KIND = "corruption"
SECTOR_KIND = "corruption"
SERVICE_KIND = "complaint"
DIMENSION_KIND: dict[str, str | None] = {
    "category": CATEGORY_KIND, "sector": SECTOR_KIND, "service": SERVICE_KIND,
    "kind": None, "governorate": None, "month": None, "status": None, "outcome": None,
}


class _DaysBetween(FunctionElement):
    """``later - earlier`` in whole days, for two DATE columns."""

    type = Integer()
    inherit_cache = True


@compiles(_DaysBetween)
def _days_between_default(element: Any, compiler: Any, **kw: Any) -> str:  # PostgreSQL: date - date
    later, earlier = list(element.clauses)
    return f"({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})"


@compiles(_DaysBetween, "sqlite")
def _days_between_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (
        f"CAST(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}) AS INTEGER)"
    )


class _NotByIndex(FunctionElement):
    """A DATE column that SQLite must not look up by an index (``+column``, SQLite's
    documented way); the column itself elsewhere."""

    type = Date()
    inherit_cache = True


@compiles(_NotByIndex)
def _not_by_index_default(element: Any, compiler: Any, **kw: Any) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(_NotByIndex, "sqlite")
def _not_by_index_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(list(element.clauses)[0], **kw)}"


@dataclasses.dataclass(frozen=True)
class Durations:
    """``count`` cases with a duration; their nearest-rank ``median`` and ``p90`` in days
    (``None`` when ``count`` is 0)."""

    count: int
    median: int | None
    p90: int | None


@dataclasses.dataclass(frozen=True)
class Statistics:
    """The figures of one range. Each ``by_*`` maps a code (``None``: not given) to a count,
    largest first; ``by_category`` and ``by_sector`` count corruption reports only,
    ``by_service`` complaints only (:data:`DIMENSION_KIND`), the others every case (``by_month``: every ``YYYY-MM`` of the range in order, zeros included;
    ``by_status``: in workflow order). ``outcomes`` are those of the cases closed now.
    ``purged``: how many of ``total`` are purged cases' aggregates."""

    date_from: dt.date
    date_to: dt.date
    total: int
    by_kind: dict[str | None, int]
    by_category: dict[str | None, int]
    by_service: dict[str | None, int]
    by_sector: dict[str | None, int]
    by_governorate: dict[str | None, int]
    by_month: dict[str, int]
    by_status: dict[str, int]
    outcomes: dict[str | None, int]
    days_to_acknowledge: Durations
    days_to_close: Durations
    ack_overdue: int
    feedback_overdue: int
    purged: int


def nearest_rank(histogram: Mapping[int, int], percent: float) -> int | None:
    """The nearest-rank ``percent``-th percentile of the values of ``histogram`` (value ->
    how many times it occurs): the value at rank ``ceil(percent/100 × n)``, at least rank 1.
    ``None`` for no values. ``ValueError`` for a percent outside 0..100."""
    if not 0 <= percent <= 100:
        raise ValueError("percent is from 0 to 100")
    n = sum(histogram.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(percent / 100 * n))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable")


def durations(histogram: Mapping[int, int]) -> Durations:
    """Count, median and 90th percentile (nearest-rank) of a histogram of days."""
    return Durations(sum(histogram.values()), nearest_rank(histogram, 50), nearest_rank(histogram, 90))


def months_of(date_from: dt.date, date_to: dt.date) -> list[str]:
    """Every ``YYYY-MM`` from the month of ``date_from`` to that of ``date_to``."""
    months, day = [], date_from.replace(day=1)
    while day <= date_to:
        months.append(f"{day:%Y-%m}")
        day = add_months(day, 1)
    return months


def whole_months(date_from: dt.date, date_to: dt.date) -> tuple[str, str] | None:
    """The first and last ``YYYY-MM`` lying wholly within the range, or None if none does."""
    first = date_from if date_from.day == 1 else add_months(date_from.replace(day=1), 1)
    after = date_to + dt.timedelta(days=1)
    last = add_months(after.replace(day=1), -1) if after.day == 1 else add_months(date_to.replace(day=1), -1)
    if first > last:
        return None
    return f"{first:%Y-%m}", f"{last:%Y-%m}"


def _own_clause(viewer: Viewer) -> Any:
    """The cases that count for ``viewer``: all for an admin, their own for a caseworker."""
    if viewer.role == "admin":
        return true()
    if viewer.role != "caseworker":
        return false()
    return and_(CASES.c.assignee_id == viewer.user_id, visible_clause(viewer))


def _largest_first(counts: Counter) -> dict[Any, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], "" if item[0] is None else str(item[0]))))


async def statistics(
    session: AsyncSession,
    viewer: Viewer,
    date_from: dt.date,
    date_to: dt.date,
    today: dt.date,
    rules: DeadlineRules,
) -> Statistics:
    """The figures of the cases received from ``date_from`` to ``date_to`` (inclusive) that
    count for ``viewer`` (see the module's docstring). ``ValueError`` if ``date_from`` is
    after ``date_to``."""
    from nazaha.services.workflow import STATUSES

    if date_from > date_to:
        raise ValueError("the range starts after it ends")
    r, c = REPORTS.c, CASES.c
    # An admin's counts by report columns read reports alone (the index by day received); a
    # caseworker's own cases all have a console row, found by the index of assignees: a few
    # thousand at most, where the range holds every case received. SQLite's planner would
    # take the range (and test each case of it), so there the day received is kept off its
    # index.
    if viewer.role == "admin":
        source, joined, received = REPORTS, cases_join(), r.created_on
    else:
        source = joined = CASES.join(REPORTS, CASES.c.report_id == REPORTS.c.id)
        received = _NotByIndex(r.created_on)
    in_range = [received >= date_from, received <= date_to, _own_clause(viewer)]

    n = func.count()
    # One statement per dimension: SQLite groups by sorting, and a few small sorts of the
    # range's index entries cost less than one over every combination of the columns.
    by_columns = [
        select(r.kind, r.category, r.service, r.status, n.label("n"))
        .select_from(source).where(*in_range).group_by(r.kind, r.category, r.service, r.status),
        # The institution is asked of corruption reports only: a complaint has none, and is
        # not "not given" there.
        select(r.sector.label("code"), n.label("n")).select_from(source)
        .where(*in_range, r.kind == SECTOR_KIND).group_by(r.sector),
        select(r.governorate.label("code"), n.label("n")).select_from(source).where(*in_range).group_by(r.governorate),
        select(r.created_on, n.label("n")).select_from(source).where(*in_range).group_by(r.created_on),
        select(r.outcome, n.label("n")).select_from(source).where(*in_range, r.status == "closed").group_by(r.outcome),
    ]
    # Everything that needs the console's rows in one pass over the range: the durations and
    # the overdue flags, grouped together (a few thousand groups at most).
    ack_days = _DaysBetween(c.acknowledged_on, r.created_on)
    close_days = case((r.status == "closed", _DaysBetween(c.closed_on, r.created_on)), else_=None)
    ack_late = case((flag_clause("ack_overdue", today, rules), 1), else_=0)
    feedback_late = case((flag_clause("feedback_overdue", today, rules), 1), else_=0)
    if viewer.role == "admin" and session.get_bind().dialect.name == "sqlite":
        # Walked in report id order (``ix_reports_inbox``, all of it: ``id >= ''`` holds for
        # every report, and the day received is kept off its index), the lookups in the
        # console's rows, keyed by report id, read in order too: less than half the time of a
        # walk of the range by day received, which looks them up at random.
        by_index = _NotByIndex(r.created_on)
        timing_range = [by_index >= date_from, by_index <= date_to, r.id >= ""]
    else:
        timing_range = in_range
    by_timing = (
        select(ack_days.label("ack"), close_days.label("close"), ack_late.label("ack_late"),
               feedback_late.label("feedback_late"), n.label("n"))
        .select_from(joined)
        .where(*timing_range)
        .group_by(ack_days, close_days, ack_late, feedback_late)
    )

    grouped, timing = await _run_apart(session, by_columns, by_timing)
    by_kind, by_sector, by_governorate, by_day, outcomes = grouped
    by_place = {"sector": by_sector, "governorate": by_governorate}

    counts: dict[str, Counter] = {name: Counter() for name in DIMENSIONS}
    for row in by_kind:
        counts["kind"][row.kind] += row.n
        counts["status"][row.status] += row.n
        if row.kind == CATEGORY_KIND:
            counts["category"][row.category] += row.n
        elif row.kind == SERVICE_KIND:
            counts["service"][row.service] += row.n
    for name, found in by_place.items():
        for row in found:
            counts[name][row.code] += row.n
    for row in by_day:
        day = row.created_on if isinstance(row.created_on, dt.date) else dt.date.fromisoformat(str(row.created_on))
        counts["month"][f"{day:%Y-%m}"] += row.n
    for row in outcomes:
        counts["outcome"][row.outcome] += row.n
    ack: Counter = Counter()
    close: Counter = Counter()
    late = Counter()
    for row in timing:
        if row.ack is not None:
            ack[int(row.ack)] += row.n
        if row.close is not None:
            close[int(row.close)] += row.n
        late["ack"] += row.n * int(row.ack_late)
        late["feedback"] += row.n * int(row.feedback_late)

    purged = 0
    months = whole_months(date_from, date_to)
    if viewer.role == "admin" and months is not None:
        purged = await _add_purged(session, months, counts, ack, close)

    return Statistics(
        date_from=date_from,
        date_to=date_to,
        total=sum(counts["kind"].values()),
        by_kind=_largest_first(counts["kind"]),
        by_category=_largest_first(counts["category"]),
        by_service=_largest_first(counts["service"]),
        by_sector=_largest_first(counts["sector"]),
        by_governorate=_largest_first(counts["governorate"]),
        by_month={month: counts["month"].get(month, 0) for month in months_of(date_from, date_to)},
        by_status={s: counts["status"][s] for s in STATUSES if counts["status"].get(s)},
        outcomes=_largest_first(counts["outcome"]),
        days_to_acknowledge=durations(ack),
        days_to_close=durations(close),
        ack_overdue=late["ack"],
        feedback_overdue=late["feedback"],
        purged=purged,
    )


async def _run_apart(session: AsyncSession, statements: list[Any], last: Any) -> tuple[list[list[Any]], list[Any]]:
    """The rows of each of ``statements`` in turn, and those of ``last``. Given a session that
    has not begun its transaction yet (and is bound to an engine), ``statements`` run on a
    connection of their own at the same time as ``last`` runs on the session (as the inbox
    does with its count): the two take about as long as the slower instead of both. Each
    then reads its own snapshot of the same committed data."""
    bind = session.bind
    if isinstance(bind, AsyncEngine) and not session.in_transaction():

        async def apart() -> list[list[Any]]:
            async with bind.connect() as connection:
                return [list(await connection.execute(statement)) for statement in statements]

        return await asyncio.gather(apart(), _rows(session, last))
    return [await _rows(session, statement) for statement in statements], await _rows(session, last)


async def _rows(session: AsyncSession, statement: Any) -> list[Any]:
    return list(await session.execute(statement))


async def _add_purged(
    session: AsyncSession, months: tuple[str, str], counts: dict[str, Counter], ack: Counter, close: Counter
) -> int:
    """Add the purged cases received in the months ``months`` (first, last): all closed."""
    p = PURGED.c
    weight = func.sum(p["count"])
    where = [p.received_month >= months[0], p.received_month <= months[1]]
    grouped = await session.execute(
        select(p.received_month, p.kind, p.category, p.service, p.sector, p.governorate, p.outcome, weight.label("n"))
        .where(*where)
        .group_by(p.received_month, p.kind, p.category, p.service, p.sector, p.governorate, p.outcome)
    )
    total = 0
    for row in grouped:
        k = int(row.n or 0)
        total += k
        counts["kind"][row.kind] += k
        counts["governorate"][row.governorate] += k
        counts["month"][row.received_month] += k
        counts["status"]["closed"] += k
        counts["outcome"][row.outcome] += k
        if row.kind == SECTOR_KIND:
            counts["sector"][row.sector] += k
        if row.kind == CATEGORY_KIND:
            counts["category"][row.category] += k
        elif row.kind == SERVICE_KIND:
            counts["service"][row.service] += k
    for column, histogram in ((p.ack_days, ack), (p.close_days, close)):
        for row in await session.execute(
            select(column.label("days"), weight.label("n")).where(*where, column.is_not(None)).group_by(column)
        ):
            histogram[int(row.days)] += int(row.n or 0)
    return total


def iter_dimension(stats: Statistics, name: str) -> Iterable[tuple[Any, int]]:
    """``(code, count)`` pairs of one of :data:`DIMENSIONS` (``"outcome"``: ``outcomes``)."""
    return (stats.outcomes if name == "outcome" else getattr(stats, f"by_{name}")).items()


__all__ = [
    "DIMENSIONS",
    "DIMENSION_KIND",
    "Durations",
    "Statistics",
    "durations",
    "iter_dimension",
    "months_of",
    "nearest_rank",
    "statistics",
    "whole_months",
]
