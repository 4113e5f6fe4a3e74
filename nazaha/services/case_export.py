"""Export of the filtered inbox as a spreadsheet: CSV (UTF-8 with a byte-order mark, so that
spreadsheet programs read Arabic) or XLSX (XlsxWriter).

Only triage metadata goes out, one row per case: designation, kind, category or service,
sector, governorate (codes and words), status, outcome, priority, labels, assignee's user
name, the days received, acknowledged and closed, and the deadline flags. Never anything the
reporter wrote (answers, thread, file names) nor staff notes. Labels are included: staff
write them, as triage, and they are stored plain (nazaha.storage.console_models).

Rows are read in chunks (:func:`export_rows`, newest first, keyset-paged on the day received
and the report id) and written as they come (:class:`CsvExport`, :class:`XlsxExport`), so
that 100,000 cases never sit in memory as objects. Text cells are protected from formula
injection: in CSV a cell starting with ``= + - @``, a tab or a carriage return gets a
leading apostrophe; in XLSX every text cell is written with ``write_string`` (never read as
a formula). The XLSX is built in XlsxWriter's constant-memory mode, whose temporary files go
to the directory the caller names (the console dir: the same disk and the same data as the
console's store) and are deleted when the workbook closes.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import CASES, REPORTS, Viewer, cases_join
from nazaha.services.deadlines import DeadlineRules, case_deadlines
from nazaha.services.inbox_filter import InboxFilter
from nazaha.services.inbox_sql import LABELS, USERS, VIEWS, conditions

__all__ = [
    "CHUNK_ROWS",
    "COLUMNS",
    "FORMATS",
    "XLSX_MAX_ROWS",
    "CsvExport",
    "ExportRow",
    "ExportTooLarge",
    "Wording",
    "XlsxExport",
    "build_export",
    "cells",
    "export_file_name",
    "export_rows",
    "export_tmpdir",
    "may_export",
    "neutralise",
]

FORMATS = ("csv", "xlsx")
CHUNK_ROWS = 2000
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet, less the header row
# The columns, in order (keys of Wording.headers).
COLUMNS = (
    "designation", "kind", "category_code", "category", "sector_code", "sector",
    "governorate_code", "governorate", "status", "outcome", "priority", "labels", "assignee",
    "received_on", "acknowledged_on", "closed_on", "deadline_flags",
)
_DATE_COLUMNS = frozenset({"received_on", "acknowledged_on", "closed_on"})
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportTooLarge(Exception):
    """More rows than an XLSX sheet holds; nothing was exported."""


@dataclasses.dataclass(frozen=True)
class ExportRow:
    """One case's triage metadata. ``category`` is a corruption report's, ``service`` a
    complaint's; ``labels`` sorted; ``flags`` a subset of ``deadlines.FLAGS``; days are
    days (never times)."""

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
    assignee_name: str | None
    received_on: dt.date
    acknowledged_on: dt.date | None
    closed_on: dt.date | None
    flags: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Wording:
    """How the codes read in the member's language (the console passes its gettext labels).

    ``headers``: a header per column of :data:`COLUMNS`; ``choice(group, code)`` for the
    groups ``category``, ``service``, ``sector``, ``governorate``; the others take a code
    (or None) and give words."""

    headers: Mapping[str, str]
    kind: Callable[[str | None], str]
    choice: Callable[[str, str | None], str]
    status: Callable[[str | None], str]
    outcome: Callable[[str | None], str]
    priority: Callable[[str | None], str]
    flag: Callable[[str], str]


def _statement(viewer: Viewer, f: InboxFilter, today: dt.date, rules: DeadlineRules,
               after: tuple[dt.date, str] | None, limit: int) -> Any:
    r, c = REPORTS.c, CASES.c
    labels = select(func.aggregate_strings(LABELS.c.label, ",")).where(LABELS.c.report_id == r.id).scalar_subquery()
    joined = cases_join().outerjoin(USERS, USERS.c.id == c.assignee_id)
    if f.unseen_only:
        joined = joined.outerjoin(VIEWS, and_(VIEWS.c.report_id == r.id, VIEWS.c.user_id == viewer.user_id))
    where = conditions(viewer, f, today, rules)
    if after is not None:
        day, report_id = after
        where.insert(0, or_(r.created_on < day, and_(r.created_on == day, r.id < report_id)))
    return (
        select(
            r.id, r.designation, r.kind, r.category, r.service, r.sector, r.governorate,
            r.status, r.outcome, r.created_on,
            c.priority, c.acknowledged_on, c.feedback_on, c.closed_on,
            USERS.c.username.label("assignee_name"),
            labels.label("labels"),
        )
        .select_from(joined)
        .where(*where)
        .order_by(r.created_on.desc(), r.id.desc())
        .limit(limit)
    )


async def export_rows(
    session: AsyncSession,
    viewer: Viewer,
    f: InboxFilter,
    today: dt.date,
    rules: DeadlineRules,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncIterator[list[ExportRow]]:
    """Every case matching ``f`` that ``viewer`` may see (all pages; the filter's page, page
    size and sort are ignored), newest first, in lists of at most ``chunk_rows``. A
    volunteer's export is empty. Run it inside one transaction for one consistent view."""
    f = dataclasses.replace(f)  # checks the values again
    after: tuple[dt.date, str] | None = None
    while True:
        found = list(await session.execute(_statement(viewer, f, today, rules, after, chunk_rows)))
        if not found:
            return
        yield [_row(row, today, rules) for row in found]
        if len(found) < chunk_rows:
            return
        after = (found[-1].created_on, found[-1].id)


def _row(row: Any, today: dt.date, rules: DeadlineRules) -> ExportRow:
    closed = row.status == "closed"
    deadlines = case_deadlines(row.created_on, row.acknowledged_on, row.feedback_on, closed, today, rules)
    return ExportRow(
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
        assignee_name=row.assignee_name,
        received_on=row.created_on,
        acknowledged_on=row.acknowledged_on,
        closed_on=row.closed_on,
        flags=deadlines.flags,
    )


def cells(row: ExportRow, wording: Wording) -> list[str | dt.date | None]:
    """The row's cells in the order of :data:`COLUMNS`: text, days, or None (empty)."""
    group, code = ("service", row.service) if row.kind == "complaint" else ("category", row.category)
    return [
        row.designation,
        wording.kind(row.kind),
        code,
        wording.choice(group, code) if code else None,
        row.sector,
        wording.choice("sector", row.sector) if row.sector else None,
        row.governorate,
        wording.choice("governorate", row.governorate) if row.governorate else None,
        wording.status(row.status),
        wording.outcome(row.outcome) if row.outcome else None,
        wording.priority(row.priority),
        "; ".join(row.labels) or None,
        row.assignee_name,
        row.received_on,
        row.acknowledged_on,
        row.closed_on,
        "; ".join(wording.flag(flag) for flag in sorted(row.flags)) or None,
    ]


def neutralise(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet program reads as a formula: a leading
    apostrophe before ``= + - @``, a tab or a carriage return."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class CsvExport:
    """CSV bytes, written chunk by chunk: :meth:`header` first, then :meth:`rows`."""

    def __init__(self, wording: Wording) -> None:
        self.wording = wording
        self.count = 0

    def header(self) -> bytes:
        return "\ufeff".encode() + self._line([self.wording.headers[c] for c in COLUMNS])

    def rows(self, rows: Iterable[ExportRow]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        for row in rows:
            writer.writerow([_csv_text(value) for value in cells(row, self.wording)])
            self.count += 1
        return out.getvalue().encode()

    @staticmethod
    def _line(values: Sequence[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow([neutralise(v) for v in values])
        return out.getvalue().encode()


def _csv_text(value: str | dt.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise(value)


class XlsxExport:
    """An XLSX workbook of one sheet, written chunk by chunk (:meth:`rows`), then
    :meth:`close` gives its bytes. ``tmpdir``: where XlsxWriter keeps its temporary files
    (deleted at close); ``right_to_left``: the sheet reads from the right (Arabic).
    Raises :class:`ExportTooLarge` past :data:`XLSX_MAX_ROWS` rows."""

    def __init__(self, wording: Wording, *, tmpdir: Path | None = None, right_to_left: bool = False,
                 sheet_name: str = "cases") -> None:
        import xlsxwriter

        self.wording = wording
        self.count = 0
        self._out = io.BytesIO()
        options: dict[str, Any] = {"constant_memory": True, "strings_to_numbers": False,
                                   "strings_to_formulas": False, "strings_to_urls": False}
        if tmpdir is not None:
            options["tmpdir"] = str(tmpdir)
        self._book = xlsxwriter.Workbook(self._out, options)
        self._sheet = self._book.add_worksheet(sheet_name)
        if right_to_left:
            self._sheet.right_to_left()
        self._bold = self._book.add_format({"bold": True})
        self._day = self._book.add_format({"num_format": "yyyy-mm-dd"})
        for index, column in enumerate(COLUMNS):
            self._sheet.write_string(0, index, wording.headers[column], self._bold)
            self._sheet.set_column(index, index, 12 if column in _DATE_COLUMNS else 18)
        self._sheet.freeze_panes(1, 0)

    def rows(self, rows: Iterable[ExportRow]) -> None:
        for row in rows:
            if self.count >= XLSX_MAX_ROWS:
                raise ExportTooLarge("more rows than a sheet holds")
            self.count += 1
            for index, value in enumerate(cells(row, self.wording)):
                if value is None:
                    continue
                if isinstance(value, dt.date):
                    self._sheet.write_datetime(self.count, index, dt.datetime.combine(value, dt.time()), self._day)
                else:
                    self._sheet.write_string(self.count, index, value)

    def close(self) -> bytes:
        self._sheet.autofilter(0, 0, max(self.count, 1), len(COLUMNS) - 1)
        self._book.close()
        return self._out.getvalue()


def export_file_name(today: dt.date, fmt: str) -> str:
    """``nazaha-cases-YYYY-MM-DD.csv`` (or ``.xlsx``)."""
    if fmt not in FORMATS:
        raise ValueError("unknown export format")
    return f"nazaha-cases-{today.isoformat()}.{fmt}"


EXPORT_TMP_DIR = "export-tmp"
_STALE_SECONDS = 3600


def export_tmpdir(console_dir: Path, *, now: float | None = None) -> Path:
    """``<console_dir>/export-tmp`` (0700, made if missing), for XlsxWriter's temporary files;
    files left there over an hour ago (by a process killed mid-export) are deleted."""
    import os
    import time

    directory = Path(console_dir) / EXPORT_TMP_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    cutoff = (time.time() if now is None else now) - _STALE_SECONDS
    for leftover in directory.iterdir():
        try:
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass
    return directory


async def may_export(session: AsyncSession, viewer: Viewer) -> bool:
    """Whether ``viewer`` may export the inbox: admins always, caseworkers an admin has
    given the right to (read now, so that taking it back works at once), volunteers never."""
    from nazaha.storage.console_models import StaffUser

    if viewer.role == "admin":
        return True
    if viewer.role != "caseworker":
        return False
    user = await session.get(StaffUser, viewer.user_id)
    return user is not None and user.state == "active" and bool(user.can_export)


async def build_export(
    session: AsyncSession,
    viewer: Viewer,
    f: InboxFilter,
    fmt: str,
    today: dt.date,
    rules: DeadlineRules,
    wording: Wording,
    *,
    tmpdir: Path | None = None,
    right_to_left: bool = False,
) -> tuple[bytes, int]:
    """The export file of ``fmt`` (one of :data:`FORMATS`) and its number of rows, built chunk
    by chunk from :func:`export_rows` (the XLSX rows are written in a worker thread:
    XlsxWriter is plain Python, slow enough to hold up other requests). Does not check the
    right to export (:func:`may_export`) nor write the audit entry: the caller does both.
    Raises ``ValueError`` for an unknown format, :class:`ExportTooLarge`."""
    import asyncio

    if fmt not in FORMATS:
        raise ValueError("unknown export format")
    if fmt == "csv":
        writer = CsvExport(wording)
        parts = [writer.header()]
        async for chunk in export_rows(session, viewer, f, today, rules):
            parts.append(writer.rows(chunk))
        return b"".join(parts), writer.count
    book = XlsxExport(wording, tmpdir=tmpdir, right_to_left=right_to_left)
    try:
        async for chunk in export_rows(session, viewer, f, today, rules):
            await asyncio.to_thread(book.rows, chunk)
    finally:
        content = await asyncio.to_thread(book.close)  # also deletes its temporary files
    return content, book.count
