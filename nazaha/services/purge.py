"""Retention: closed cases are purged ``NAZAHA_RETENTION_DAYS`` after closing (issue 10).

A case is due when it is closed (``reports.status`` "closed" and ``console.cases.closed_on``
set) and ``closed_on + retention_days <= today``, unless it carries the label "legal hold"
(as :func:`nazaha.services.workflow.normalise_label` stores it). Reopening clears
``closed_on``, so a reopened case waits for its next closing.

A purge (:func:`purge_cases`) of one or more cases:

1. adds each case's content-free figures to ``console.purged_aggregates`` (months, triage
   codes, outcome, days to acknowledge and to close; identical rows are counted together),
   so that published statistics do not change;
2. logs a keyed hash of each report id (console secret) in ``console.purge_log``, so that a
   restore from an older backup can purge it again (:func:`finish_logged_purges`);
3. deletes every console row about the case (state, labels, shares, recusals, links on both
   sides, notes, events, views, kept news) and the audit log's mapping (``case_refs``): the
   audit entries stay, their chain still verifies, their case reference now names nothing;
   other cases' link events that named it lose that id;
4. appends one audit entry ``purge`` without a case reference, detail ``{"count": n}``;
5. deletes the bot's rows (the report, its sealed answers, thread, evidence metadata,
   notification links and pending notifications);
6. deletes the report's blob directory, then checkpoints and truncates both WAL files
   (SQLite; ``secure_delete`` has zeroed the freed cells and pages), or VACUUMs the tables
   it deleted from (PostgreSQL: no dead tuple of the case stays; the bytes of freed space
   and ``pg_wal`` are another matter, see docs/security.md).

On PostgreSQL steps 1-5 are one transaction. On SQLite the console's store is another file,
and SQLite's commits across attached files in WAL mode are atomic per file only, so the
console's side (1-4) commits first and the bot's side (5) right after; should the process
die in between, :func:`finish_logged_purges` (run with every purge pass) finds the report
through its hash in the purge log and deletes it. Blobs left by a crash before step 6 belong
to no stored report and go with the bot's orphan purge (``nazaha.bot.app.purge_orphan_blobs``)
or the next :func:`finish_logged_purges`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.services import audit
from nazaha.services.workflow import normalise_label
from nazaha.storage.blobs import BlobStore
from nazaha.storage.console_db import scrub_console_store
from nazaha.storage.console_models import (
    CaseEvent,
    CaseLabel,
    CaseLink,
    CaseNote,
    CaseRecusal,
    CaseRef,
    CaseShare,
    CaseState,
    CaseView,
    PendingNews,
    PurgedCaseAggregate,
    PurgeLogEntry,
)
from nazaha.storage.crypto import keyed_hash
from nazaha.storage.database import engine_of, is_sqlite, write_transaction
from nazaha.storage.models import (
    CaseKeyEpoch,
    CaseMessage,
    Evidence,
    NotificationLink,
    PendingNotification,
    Report,
    ReportField,
)

log = logging.getLogger(__name__)

# The label that exempts a case, in the console's two languages (the Arabic page names
# «حجز قانوني»); matched as labels are stored (normalise_label).
LEGAL_HOLD_LABELS = (normalise_label("legal hold"), normalise_label("حجز قانوني"))
LEGAL_HOLD = LEGAL_HOLD_LABELS[0]
PURGE_HASH_PURPOSE = "purge"
# Cases purged per transaction: a pass of many cases never holds the write lock for long.
BATCH = 25


class DuePurge(NamedTuple):
    """A closed case and the day it is (or was) due for purging."""

    designation: str
    closed_on: dt.date
    purge_on: dt.date


class LegalHold(NamedTuple):
    """A case exempt from purging by its "legal hold" label."""

    designation: str
    status: str
    closed_on: dt.date | None


def purge_hash(console_secret: bytes, report_id: str) -> str:
    """The purge log's name for a report: 64 hex chars, keyed under the console secret."""
    return keyed_hash(console_secret, PURGE_HASH_PURPOSE, report_id)


def _on_hold():
    return exists().where(CaseLabel.report_id == Report.id, CaseLabel.label.in_(LEGAL_HOLD_LABELS))


def _closed_cases():
    return (
        select(Report.id, Report.designation, CaseState.closed_on)
        .join(CaseState, CaseState.report_id == Report.id)
        .where(Report.status == "closed", CaseState.closed_on.is_not(None), ~_on_hold())
    )


async def due_for_purge(
    session: AsyncSession,
    today: dt.date,
    retention_days: int,
    *,
    within_days: int = 0,
    limit: int | None = None,
) -> list[DuePurge]:
    """Closed cases not on legal hold whose purge day (``closed_on + retention_days``) is on
    or before ``today + within_days``, soonest first: with ``within_days=0`` what is due
    now, with more what comes next. ``ValueError`` for negative days."""
    if retention_days < 0 or within_days < 0:
        raise ValueError("retention_days and within_days must be >= 0")
    cutoff = today + dt.timedelta(days=within_days - retention_days)
    statement = (
        _closed_cases()
        .where(CaseState.closed_on <= cutoff)
        .order_by(CaseState.closed_on, Report.designation)
    )
    if limit is not None:
        statement = statement.limit(limit)
    rows = (await session.execute(statement)).all()
    retention = dt.timedelta(days=retention_days)
    return [DuePurge(r.designation, r.closed_on, r.closed_on + retention) for r in rows]


async def due_report_ids(session: AsyncSession, today: dt.date, retention_days: int) -> list[str]:
    """The report ids of :func:`due_for_purge` (``within_days=0``), oldest closing first."""
    cutoff = today - dt.timedelta(days=retention_days)
    statement = _closed_cases().where(CaseState.closed_on <= cutoff).order_by(CaseState.closed_on, Report.id)
    return [row.id for row in (await session.execute(statement)).all()]


async def legal_holds(session: AsyncSession) -> list[LegalHold]:
    """Every case labelled "legal hold", by designation."""
    rows = await session.execute(
        select(Report.designation, Report.status, CaseState.closed_on)
        .outerjoin(CaseState, CaseState.report_id == Report.id)
        .where(_on_hold())
        .order_by(Report.designation)
    )
    return [LegalHold(r.designation, r.status, r.closed_on) for r in rows]


async def purged_count(session: AsyncSession) -> int:
    """How many cases have been purged (the aggregates' counts summed)."""
    return int(await session.scalar(select(func.coalesce(func.sum(PurgedCaseAggregate.count), 0))) or 0)


# --------------------------------------------------------------------------- purging


def _month(day: dt.date | None) -> str | None:
    return None if day is None else f"{day.year:04d}-{day.month:02d}"


def _days(start: dt.date, end: dt.date | None) -> int | None:
    return None if end is None else (end - start).days


async def purgeable(session: AsyncSession, report_ids: Sequence[str]) -> list:
    """The closed, not held cases among ``report_ids``, with what their aggregate needs."""
    rows = await session.execute(
        select(
            Report.id, Report.created_on, Report.kind, Report.category, Report.service,
            Report.sector, Report.governorate, Report.outcome,
            CaseState.acknowledged_on, CaseState.closed_on,
        )
        .join(CaseState, CaseState.report_id == Report.id)
        .where(
            Report.id.in_(list(report_ids)),
            Report.status == "closed",
            CaseState.closed_on.is_not(None),
            ~_on_hold(),
        )
    )
    return list(rows)


async def add_to_aggregates(session: AsyncSession, row) -> None:
    values = {
        "received_month": _month(row.created_on),
        "closed_month": _month(row.closed_on),
        "kind": row.kind,
        "category": row.category,
        "service": row.service,
        "sector": row.sector,
        "governorate": row.governorate,
        "outcome": row.outcome,
        "ack_days": _days(row.created_on, row.acknowledged_on),
        "close_days": _days(row.created_on, row.closed_on),
    }
    same = and_(*(getattr(PurgedCaseAggregate, k) == v for k, v in values.items()))  # None: IS NULL
    existing = await session.scalar(select(PurgedCaseAggregate.id).where(same).limit(1))
    if existing is None:
        await session.execute(insert(PurgedCaseAggregate).values(count=1, **values))
    else:
        await session.execute(
            update(PurgedCaseAggregate)
            .where(PurgedCaseAggregate.id == existing)
            .values(count=PurgedCaseAggregate.count + 1)
        )


# Every table holding a row of one case; ``case_links`` names two (report_a, report_b).
BOT_CASE_TABLES = (
    ReportField, CaseMessage, Evidence, NotificationLink, PendingNotification, CaseKeyEpoch, Report,
)
CONSOLE_CASE_TABLES = (
    CaseState, CaseLabel, CaseShare, CaseRecusal, CaseLink, CaseNote, CaseEvent, CaseView, PendingNews, CaseRef,
)


def case_columns(table) -> tuple:
    """The columns of a console table that name a case (its report id)."""
    return (CaseLink.report_a, CaseLink.report_b) if table is CaseLink else (table.report_id,)


async def delete_console_rows(session: AsyncSession, ids: list[str]) -> None:
    """Every console row of these cases (also a purge run again at a restore)."""
    for table in CONSOLE_CASE_TABLES:
        await session.execute(delete(table).where(or_(*(column.in_(ids) for column in case_columns(table)))))
    # Other cases' link events name the purged case by its id: that id goes.
    for column in (CaseEvent.old, CaseEvent.new):
        await session.execute(
            update(CaseEvent)
            .where(CaseEvent.kind.in_(("link", "unlink")), column.in_(ids))
            .values({column.key: None})
        )


async def delete_bot_rows(session: AsyncSession, ids: list[str]) -> None:
    """Every row of these reports in the bot's tables."""
    # The foreign keys cascade; deleting explicitly keeps it true whatever a migration did.
    for table in BOT_CASE_TABLES[:-1]:
        await session.execute(delete(table).where(table.report_id.in_(ids)))
    await session.execute(delete(Report).where(Report.id.in_(ids)))


async def forget(engine: AsyncEngine) -> None:
    """After a purge: SQLite, checkpoint and truncate both WAL files; PostgreSQL, VACUUM the
    tables purged from, so that no dead tuple of the case waits for autovacuum. A table the
    console's role does not own is skipped by PostgreSQL with a warning (autovacuum then)."""
    if is_sqlite(engine):
        await scrub_console_store(engine)
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
        for table in (*BOT_CASE_TABLES, *CONSOLE_CASE_TABLES):
            try:
                await conn.exec_driver_sql(f"VACUUM {table.__table__.fullname}")
            except DBAPIError as exc:
                log.warning("VACUUM after a purge failed: %s", type(exc).__name__)


async def _purge_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    console_secret: bytes,
    report_ids: Sequence[str],
    today: dt.date,
    actor_id: str | None,
) -> list[str]:
    sqlite = is_sqlite(engine_of(sessionmaker))
    async with write_transaction(sessionmaker) as session:
        rows = await purgeable(session, report_ids)
        ids = [row.id for row in rows]
        if not ids:
            return []
        for row in rows:
            await add_to_aggregates(session, row)
        await session.execute(
            insert(PurgeLogEntry),
            [{"report_hash": purge_hash(console_secret, i), "purged_on": today} for i in ids],
        )
        await delete_console_rows(session, ids)
        if not sqlite:
            await delete_bot_rows(session, ids)
        await audit.append(session, actor_id=actor_id, action=audit.PURGE, detail={"count": len(ids)})
    if sqlite:  # the bot's file commits on its own (see the module's docstring)
        async with write_transaction(sessionmaker) as session:
            await delete_bot_rows(session, ids)
    return ids


async def purge_cases(
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    console_secret: bytes,
    report_ids: Sequence[str],
    today: dt.date,
    *,
    actor_id: str | None = None,
) -> int:
    """Purge the given cases (see the module's docstring); returns how many were purged.

    Only closed cases not on legal hold are purged: other ids (open, held, unknown, already
    purged) are skipped, so that a caller's stale list can never destroy a live case. The
    retention period is the caller's to check (:func:`due_report_ids`). ``actor_id``: the
    admin who asked, None for the daily pass and the command.
    """
    purged: list[str] = []
    wanted = list(dict.fromkeys(report_ids))
    for start in range(0, len(wanted), BATCH):
        purged += await _purge_batch(sessionmaker, console_secret, wanted[start : start + BATCH], today, actor_id)
    for report_id in purged:
        blobs.delete_report(report_id)
    if purged:
        await forget(engine_of(sessionmaker))
    return len(purged)


async def purge_case(
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    console_secret: bytes,
    report_id: str,
    today: dt.date,
    *,
    actor_id: str | None = None,
) -> bool:
    """Purge one case (:func:`purge_cases`); False if it is not closed, on legal hold or
    unknown."""
    return await purge_cases(sessionmaker, blobs, console_secret, [report_id], today, actor_id=actor_id) == 1


async def finish_logged_purges(
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    console_secret: bytes,
    *,
    every_report: bool = False,
) -> int:
    """Delete reports that the purge log says were purged: a purge interrupted between its
    two SQLite commits (closed reports without a console row are checked), or with
    ``every_report`` a database restored from a backup older than the purge (every report
    id is hashed: about a second per million). Deletes their console rows, bot rows and
    blobs, adds nothing to the aggregates (they were counted) and no audit entry. Returns
    how many were found."""
    async with sessionmaker() as session:
        statement = select(Report.id)
        if not every_report:
            statement = statement.where(
                Report.status == "closed", ~exists().where(CaseState.report_id == Report.id)
            )
        candidates = list(await session.scalars(statement))
        if not candidates:
            return 0
        logged = set(await session.scalars(select(PurgeLogEntry.report_hash)))
    ids = [rid for rid in candidates if purge_hash(console_secret, rid) in logged]
    if not ids:
        return 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        async with write_transaction(sessionmaker) as session:
            await delete_console_rows(session, chunk)
            await delete_bot_rows(session, chunk)
    for report_id in ids:
        blobs.delete_report(report_id)
    await forget(engine_of(sessionmaker))
    return len(ids)


async def purge_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    console_secret: bytes,
    today: dt.date,
    retention_days: int,
) -> int:
    """The daily pass: finish an interrupted purge, then purge every case due today.
    Returns how many cases were purged now."""
    await finish_logged_purges(sessionmaker, blobs, console_secret)
    async with sessionmaker() as session:
        ids = await due_report_ids(session, today, retention_days)
    return await purge_cases(sessionmaker, blobs, console_secret, ids, today) if ids else 0
