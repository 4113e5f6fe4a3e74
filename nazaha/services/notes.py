"""Internal notes on a case: written by staff, sealed under the report's data key with
``seal_field(data_key, report_id, f"note:{id}", body)``, never shown to the reporter.

Like the workflow functions these take the caller's session and do not commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import CaseAccessDenied, Viewer, require_visible
from nazaha.services.case_rows import case_states, touch
from nazaha.storage.console_models import CaseNote, StaffUser
from nazaha.storage.crypto import seal_field
from nazaha.storage.models import Report
from nazaha.storage.reports import UnlockedCase

NOTE_MAX_CHARS = 20_000


def note_field(note_id: str) -> str:
    """The sealed field name of a note (bound into its AES-GCM associated data)."""
    return f"note:{note_id}"


@dataclasses.dataclass(frozen=True)
class Note:
    """One internal note, opened. ``author_name`` is None if the account is gone."""

    id: str
    seq: int
    author_id: str | None
    author_name: str | None
    body: str
    created_at: dt.datetime


async def add_note(
    session: AsyncSession, viewer: Viewer, case: UnlockedCase, body: str, *, now: dt.datetime | None = None
) -> Note:
    """Seal and add a note (1 to 20,000 characters, not only white space, kept exactly as
    written; ``ValueError`` otherwise). The case counts as updated for the others."""
    if not isinstance(body, str):
        raise TypeError("a note is a str")
    if not body.strip() or len(body) > NOTE_MAX_CHARS:
        raise ValueError(f"a note is 1 to {NOTE_MAX_CHARS} characters")
    await require_visible(session, viewer, case.report_id)
    moment = now if now is not None else dt.datetime.now(dt.timezone.utc)
    # Order numbers are taken with the report row locked (PostgreSQL), as for the thread.
    locked = await session.scalar(select(Report.id).where(Report.id == case.report_id).with_for_update())
    if locked is None:
        raise CaseAccessDenied("case not visible to this viewer")
    last = await session.scalar(select(func.max(CaseNote.seq)).where(CaseNote.report_id == case.report_id))
    note_id = secrets.token_hex(16)
    note = CaseNote(
        id=note_id,
        report_id=case.report_id,
        seq=int(last or 0) + 1,
        author_id=viewer.user_id,
        sealed=seal_field(case.data_key, case.report_id, note_field(note_id), body.encode("utf-8")),
        created_at=moment,
    )
    session.add(note)
    states = await case_states(session, [case.report_id])
    await touch(session, viewer, states.values(), moment)
    author = await session.get(StaffUser, viewer.user_id)
    return Note(note_id, note.seq, viewer.user_id, author.username if author else None, body, moment)


async def notes(session: AsyncSession, viewer: Viewer, case: UnlockedCase) -> list[Note]:
    """The case's notes, oldest first (``TamperedData`` if one fails to open)."""
    await require_visible(session, viewer, case.report_id)
    rows = await session.execute(
        select(CaseNote, StaffUser.username)
        .outerjoin(StaffUser, StaffUser.id == CaseNote.author_id)
        .where(CaseNote.report_id == case.report_id)
        .order_by(CaseNote.seq)
    )
    return [
        Note(
            id=note.id,
            seq=note.seq,
            author_id=note.author_id,
            author_name=username,
            body=case.open_field(note_field(note.id), note.sealed).decode("utf-8"),
            created_at=note.created_at,
        )
        for note, username in rows
    ]


__all__ = ["NOTE_MAX_CHARS", "Note", "add_note", "note_field", "notes"]
