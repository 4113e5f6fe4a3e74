"""A case after submission: the thread between reporter and caseworkers, evidence, status.

Everything a person wrote or sent is sealed under the report's data key, which only the
receipt or the team private key can reach (see :class:`nazaha.storage.reports.UnlockedCase`):

* a message body with ``seal_field(data_key, report_id, f"message:{id}:{direction}", body)``
  — a body copied to another message, report or direction fails to open;
* evidence metadata (file name, MIME type, forward origin, SHA-256, caption, and copies of the plain
  columns kind, size, clean-copy flag and flag code) with field ``f"evidence:{id}"``; the plain
  columns are checked against the sealed copy when read.

Plain columns: direction, read flags, order (``seq``) and the day a message or file was
added — triage metadata the console lists without keys.

Workflow (EU Directive 2019/1937, ISO 37002): a case is ``received``, ``acknowledged``, put
``in_review``, then ``referred`` to the competent authority or ``action_taken``, and finally
``closed`` with one of :data:`OUTCOMES`. A closed case can be reopened (back to
``in_review``). Which moves are allowed is the console's business; the storage only keeps the
codes valid: an outcome with ``closed`` and never without it.

The reporter can withdraw their contact details (the fields are deleted) or the report
itself (it stays for the caseworkers, who decide how to close it); each leaves only the day
in a plain column (:meth:`CaseService.withdrawals`).

The reporter's writes (a message, a file) are queued into the update's unit of work; the
console's writes are short direct transactions. Order numbers are taken inside the write
transaction (with the report row locked on PostgreSQL), so concurrent writers never collide.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.flows.evidence_kinds import EVIDENCE_KINDS
from nazaha.flows.report_flow import CONTACT_DETAILS, CONTACT_FIELDS
from nazaha.storage.crypto import TamperedData, seal_field
from nazaha.storage.database import write_transaction
from nazaha.storage.models import (
    CaseMessage,
    Evidence,
    NotificationLink,
    PendingNotification,
    Report,
    ReportField,
)
from nazaha.storage.reports import ReportNotFound, UnlockedCase
from nazaha.storage.unit_of_work import UnitOfWork

STATUSES = ("received", "acknowledged", "in_review", "referred", "action_taken", "closed")
CLOSED = "closed"
# A closed case that is reopened goes back to this status.
REOPENED = "in_review"
# Given when closing, and only then.
OUTCOMES = ("substantiated", "not_substantiated", "out_of_scope", "insufficient_information")
DIRECTIONS = ("reporter", "staff")
EVIDENCE_SOURCES = ("report", "followup")

_HEX32 = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLAG = re.compile(r"[a-z0-9_]{1,32}")


@dataclasses.dataclass(frozen=True)
class EvidenceRecord:
    """One attachment: ``id`` is the blob store's file id (32 lowercase hex digits)."""

    id: str
    kind: str
    size_bytes: int
    has_clean_copy: bool
    flagged: str | None
    file_name: str | None
    mime_type: str | None
    forward_origin: str | None
    sha256: str
    # What the reporter wrote under the file; sealed with the metadata, never plain.
    caption: str | None = None
    # The case key epoch the file and its metadata are sealed under (set when read back;
    # a file is always sealed under the key that was newest when it arrived).
    key_epoch: int = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _HEX32.fullmatch(self.id) is None:
            raise ValueError("an evidence id is 32 lowercase hex digits")
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"unknown evidence kind {self.kind!r}")
        if not isinstance(self.size_bytes, int) or isinstance(self.size_bytes, bool) or self.size_bytes < 0:
            raise ValueError("size_bytes must be a non-negative integer")
        if not isinstance(self.has_clean_copy, bool):
            raise TypeError("has_clean_copy must be a bool")
        if self.flagged is not None and (
            not isinstance(self.flagged, str) or _FLAG.fullmatch(self.flagged) is None
        ):
            raise ValueError("flagged is a short code like 'not_an_image', or None")
        for name in ("file_name", "mime_type", "forward_origin", "caption"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be str or None")
        if not isinstance(self.sha256, str) or _SHA256.fullmatch(self.sha256) is None:
            raise ValueError("sha256 is 64 lowercase hex digits")


@dataclasses.dataclass(frozen=True)
class ThreadMessage:
    id: str
    direction: str
    body: str
    created_on: dt.date
    read_by_reporter: bool
    read_by_staff: bool
    seq: int


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _message_field(message_id: str, direction: str) -> str:
    return f"message:{message_id}:{direction}"


def _evidence_field(evidence_id: str) -> str:
    return f"evidence:{evidence_id}"


def _check_body(body: str) -> bytes:
    if not isinstance(body, str):
        raise TypeError("a message body is a str")
    if not body:
        raise ValueError("a message body must not be empty")
    return body.encode("utf-8")  # exactly as written: no stripping, no normalisation


def _evidence_meta(record: EvidenceRecord) -> dict[str, Any]:
    meta = {
        "file_name": record.file_name,
        "mime_type": record.mime_type,
        "forward_origin": record.forward_origin,
        "sha256": record.sha256,
        # Copies of the plain columns, so that editing those is detected when read.
        "kind": record.kind,
        "size_bytes": record.size_bytes,
        "has_clean_copy": record.has_clean_copy,
        "flagged": record.flagged,
    }
    if record.caption is not None:  # absent in metadata sealed before captions were kept
        meta["caption"] = record.caption
    return meta


def evidence_row_values(
    data_key: bytes, report_id: str, record: EvidenceRecord, seq: int | None, source: str
) -> dict[str, Any]:
    """Column values of an ``evidence`` row (``seq`` may be filled in later)."""
    if source not in EVIDENCE_SOURCES:
        raise ValueError(f"unknown evidence source {source!r}")
    meta = json.dumps(_evidence_meta(record), ensure_ascii=False, separators=(",", ":"))
    return {
        "id": record.id,
        "report_id": report_id,
        "seq": seq,
        "kind": record.kind,
        "size_bytes": record.size_bytes,
        "has_clean_copy": record.has_clean_copy,
        "flagged": record.flagged,
        "sealed_meta": seal_field(data_key, report_id, _evidence_field(record.id), meta.encode("utf-8")),
        "added_on": _today(),
        "source": source,
    }


def _open_evidence(case: UnlockedCase, row: Evidence) -> EvidenceRecord:
    epoch, raw = case.sealed_epoch(_evidence_field(row.id), row.sealed_meta)
    try:
        meta = json.loads(raw)
        record = EvidenceRecord(
            id=row.id,
            kind=row.kind,
            size_bytes=row.size_bytes,
            has_clean_copy=bool(row.has_clean_copy),
            flagged=row.flagged,
            file_name=meta["file_name"],
            mime_type=meta["mime_type"],
            forward_origin=meta["forward_origin"],
            sha256=meta["sha256"],
            caption=meta.get("caption"),
            key_epoch=epoch,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TamperedData("evidence metadata is malformed") from None
    if _evidence_meta(record) != meta:
        raise TamperedData("evidence columns do not match their sealed copy")
    return record


async def _next_seq(session: AsyncSession, model: type[CaseMessage] | type[Evidence], report_id: str) -> int:
    """The next order number of a report's messages or files, inside a write transaction.

    On PostgreSQL the report row is locked first, so two writers to one case queue up here
    instead of colliding on the unique (report_id, seq); SQLite has a single writer anyway.
    """
    locked = await session.scalar(select(Report.id).where(Report.id == report_id).with_for_update())
    if locked is None:
        raise ReportNotFound(report_id)
    last = await session.scalar(select(func.max(model.seq)).where(model.report_id == report_id))
    return int(last or 0) + 1


async def _lock_withdrawals(session: AsyncSession, report_id: str) -> Any:
    """The report's withdrawal columns, read with the row locked (PostgreSQL) inside a
    write transaction; ``ReportNotFound`` if it is gone."""
    row = (
        await session.execute(
            select(Report.contact_withdrawn_on, Report.withdrawn_on)
            .where(Report.id == report_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise ReportNotFound(report_id)
    return row


class CaseService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    # -- status ---------------------------------------------------------------------

    async def status(self, report_id: str) -> tuple[str, str | None]:
        """``(status, outcome)`` of a report, fresh from the database (``ReportNotFound``)."""
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(Report.status, Report.outcome).where(Report.id == report_id)
                )
            ).first()
        if row is None:
            raise ReportNotFound(report_id)
        return row.status, row.outcome

    async def set_status(self, report_id: str, status: str, outcome: str | None = None) -> None:
        """Set the status code (one of :data:`STATUSES`) and the outcome code (one of
        :data:`OUTCOMES`), which is required when ``status`` is ``"closed"`` and must be
        ``None`` otherwise (reopening a case clears its outcome).

        Closing a case also deletes its notification links and pending notifications in the
        same transaction: nobody is told about a closed case, and the sealed chat ids go.
        ``ValueError`` for an unknown code or a missing or unexpected outcome,
        ``ReportNotFound`` for an unknown report.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if status == CLOSED and outcome is None:
            raise ValueError("closing a case needs an outcome")
        if status != CLOSED and outcome is not None:
            raise ValueError("only a closed case has an outcome")
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(
                update(Report).where(Report.id == report_id).values(status=status, outcome=outcome)
            )
            if not result.rowcount:
                raise ReportNotFound(report_id)
            if status == "closed":
                await session.execute(
                    delete(NotificationLink).where(NotificationLink.report_id == report_id)
                )
                await session.execute(
                    delete(PendingNotification).where(PendingNotification.report_id == report_id)
                )

    # -- withdrawals ----------------------------------------------------------------

    async def withdrawals(self, report_id: str) -> tuple[dt.date | None, dt.date | None]:
        """``(contact_withdrawn_on, withdrawn_on)``: the days the reporter withdrew their
        contact details and the report, ``None`` for what they did not (``ReportNotFound``)."""
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(Report.contact_withdrawn_on, Report.withdrawn_on).where(
                        Report.id == report_id
                    )
                )
            ).first()
        if row is None:
            raise ReportNotFound(report_id)
        return row.contact_withdrawn_on, row.withdrawn_on

    async def has_contact_details(self, report_id: str) -> bool:
        """Whether the report still holds a contact detail (a name or a phone number).
        Reads field names only: nothing is opened."""
        async with self._sessionmaker() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(ReportField)
                .where(ReportField.report_id == report_id, ReportField.name.in_(CONTACT_DETAILS))
            )
        return bool(found)

    def withdraw_contact(self, batch: Any, case: UnlockedCase) -> None:
        """Queue into ``batch`` (a ``ReportBatch``): if the report holds contact details,
        delete its contact fields (``report_flow.CONTACT_FIELDS``: the details and the choice
        to share them) and set ``contact_withdrawn_on`` to today. A report without contact
        details (anonymous, or withdrawn before) is left as it is, its first withdrawal's day
        kept. The write raises ``ReportNotFound`` if the report is gone."""
        report_id, today = case.report_id, _today()

        async def withdraw(session: AsyncSession) -> None:
            already = await _lock_withdrawals(session, report_id)
            held = await session.scalar(
                select(func.count())
                .select_from(ReportField)
                .where(ReportField.report_id == report_id, ReportField.name.in_(CONTACT_DETAILS))
            )
            if not held:
                return
            await session.execute(
                delete(ReportField).where(
                    ReportField.report_id == report_id, ReportField.name.in_(CONTACT_FIELDS)
                )
            )
            if already.contact_withdrawn_on is None:
                await session.execute(
                    update(Report).where(Report.id == report_id).values(contact_withdrawn_on=today)
                )

        batch.add(withdraw)

    def withdraw_report(self, batch: Any, case: UnlockedCase) -> None:
        """Queue into ``batch`` (a ``ReportBatch``): set ``withdrawn_on`` to today (a first
        withdrawal's day is kept) and delete the report's notification links and pending
        notifications. Nothing else changes: the caseworkers keep the report and decide how
        to close it, and the reporter can still follow up. The write raises
        ``ReportNotFound`` if the report is gone."""
        report_id, today = case.report_id, _today()

        async def withdraw(session: AsyncSession) -> None:
            already = await _lock_withdrawals(session, report_id)
            if already.withdrawn_on is None:
                await session.execute(
                    update(Report).where(Report.id == report_id).values(withdrawn_on=today)
                )
            await session.execute(
                delete(NotificationLink).where(NotificationLink.report_id == report_id)
            )
            await session.execute(
                delete(PendingNotification).where(PendingNotification.report_id == report_id)
            )

        batch.add(withdraw)

    # -- thread ---------------------------------------------------------------------

    async def thread(self, case: UnlockedCase) -> list[ThreadMessage]:
        """Every message of the case, oldest first (``TamperedData`` if one fails to open)."""
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(CaseMessage)
                    .where(CaseMessage.report_id == case.report_id)
                    .order_by(CaseMessage.seq)
                )
            ).all()
        return [
            ThreadMessage(
                id=row.id,
                direction=row.direction,
                body=case.open_field(_message_field(row.id, row.direction), row.sealed_body).decode("utf-8"),
                created_on=row.created_on,
                read_by_reporter=bool(row.read_by_reporter),
                read_by_staff=bool(row.read_by_staff),
                seq=row.seq,
            )
            for row in rows
        ]

    def _new_message(self, case: UnlockedCase, direction: str, body: str) -> CaseMessage:
        plaintext = _check_body(body)
        message_id = secrets.token_hex(16)
        return CaseMessage(
            id=message_id,
            report_id=case.report_id,
            direction=direction,
            sealed_body=seal_field(
                case.data_key, case.report_id, _message_field(message_id, direction), plaintext
            ),
            created_on=_today(),
            read_by_reporter=direction == "reporter",
            read_by_staff=direction == "staff",
        )

    def add_reporter_message(self, uow: UnitOfWork, case: UnlockedCase, body: str) -> None:
        """Queue the reporter's message into the update's write (sealed now, ordered then)."""
        message = self._new_message(case, "reporter", body)

        async def insert(session: AsyncSession) -> None:
            message.seq = await _next_seq(session, CaseMessage, case.report_id)
            session.add(message)
            await session.flush()

        uow.add(insert)

    async def add_staff_reply(self, case: UnlockedCase, body: str) -> ThreadMessage:
        """Store a caseworker's reply and queue a (content-free) notification for the report
        in the bot database's pending list (``nazaha notify``), in one transaction. The
        console uses :meth:`stage_staff_reply` in its own transaction instead."""
        async with write_transaction(self._sessionmaker) as session:
            reply = await self.stage_staff_reply(session, case, body)
            session.add(PendingNotification(report_id=case.report_id))
            await session.flush()
        return reply

    async def stage_staff_reply(self, session: AsyncSession, case: UnlockedCase, body: str) -> ThreadMessage:
        """Add a caseworker's reply in the caller's write transaction (not committed here)."""
        message = self._new_message(case, "staff", body)
        message.seq = await _next_seq(session, CaseMessage, case.report_id)
        session.add(message)
        await session.flush()
        return ThreadMessage(
            id=message.id,
            direction="staff",
            body=body,
            created_on=message.created_on,
            read_by_reporter=False,
            read_by_staff=True,
            seq=message.seq,
        )

    async def mark_read(self, case: UnlockedCase, by: str) -> int:
        """``by`` ("reporter" or "staff") has read the other side's messages, now, in a
        transaction of its own; returns how many were newly marked. The bot queues it with
        :meth:`mark_read_queued` instead (report-side writes go through the report writer)."""
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(self._mark_read_statement(case, by))
        return int(result.rowcount or 0)

    def mark_read_queued(self, batch: Any, case: UnlockedCase, by: str) -> None:
        """Queue :meth:`mark_read` into ``batch`` (a ``ReportBatch``)."""
        statement = self._mark_read_statement(case, by)

        async def mark(session: AsyncSession) -> None:
            await session.execute(statement)

        batch.add(mark)

    @staticmethod
    def _mark_read_statement(case: UnlockedCase, by: str) -> Any:
        if by == "reporter":
            other, flag = "staff", CaseMessage.read_by_reporter
        elif by == "staff":
            other, flag = "reporter", CaseMessage.read_by_staff
        else:
            raise ValueError(f"unknown reader {by!r}")
        return (
            update(CaseMessage)
            .where(
                CaseMessage.report_id == case.report_id,
                CaseMessage.direction == other,
                flag.is_(False),
            )
            .values({flag.key: True})
        )

    async def unread_for_reporter(self, report_id: str) -> int:
        """Caseworker messages the reporter has not seen yet."""
        return await self._unread(report_id, "staff", CaseMessage.read_by_reporter)

    async def unread_for_staff(self, report_id: str) -> int:
        """Reporter messages no caseworker has seen yet."""
        return await self._unread(report_id, "reporter", CaseMessage.read_by_staff)

    async def _unread(self, report_id: str, direction: str, flag: Any) -> int:
        async with self._sessionmaker() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(CaseMessage)
                .where(
                    CaseMessage.report_id == report_id,
                    CaseMessage.direction == direction,
                    flag.is_(False),
                )
            )
        return int(count or 0)

    # -- evidence -------------------------------------------------------------------

    def add_evidence(self, uow: UnitOfWork, case: UnlockedCase, record: EvidenceRecord) -> None:
        """Queue a follow-up file's row into the update's write (after its blob was stored)."""
        values = evidence_row_values(case.data_key, case.report_id, record, None, "followup")

        async def insert(session: AsyncSession) -> None:
            values["seq"] = await _next_seq(session, Evidence, case.report_id)
            await session.execute(Evidence.__table__.insert(), [values])

        uow.add(insert)

    async def evidence(self, case: UnlockedCase) -> list[EvidenceRecord]:
        """The case's files in the order they were added (``TamperedData`` if a row was
        modified or moved)."""
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(Evidence)
                    .where(Evidence.report_id == case.report_id)
                    .order_by(Evidence.seq)
                )
            ).all()
        return [_open_evidence(case, row) for row in rows]


__all__ = [
    "CLOSED",
    "DIRECTIONS",
    "EVIDENCE_KINDS",
    "OUTCOMES",
    "REOPENED",
    "STATUSES",
    "CaseService",
    "EvidenceRecord",
    "ThreadMessage",
]
