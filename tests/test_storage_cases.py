"""Follow-up storage: migration 0002, unlocking a case, the sealed thread, evidence, status."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import pickle

import pytest
from sqlalchemy import delete, func, inspect, select, update

from nazaha.storage import reports as reports_module
from nazaha.storage.cases import (
    CaseService,
    EvidenceRecord,
    ThreadMessage,
)
from nazaha.storage.crypto import (
    TamperedData,
    TeamPrivateKey,
    UnknownKeyId,
    format_receipt,
    open_field,
)
from nazaha.storage.database import create_engine, write_transaction
from nazaha.storage.models import (
    CaseMessage,
    Evidence,
    NotificationLink,
    PendingNotification,
    Report,
    ReportField,
)
from nazaha.storage.reports import (
    ReportDraft,
    ReportNotFound,
    UnlockedCase,
    new_sealing_context,
)
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.unit_of_work import DuplicateUpdate

NASTY = (
    "\u200fرشوة\u200b في\u200e مكتب\u00a0الترخيص\x00\x07\x1b[31m\r\n\t"
    " leading and trailing spaces  \ufeff😀"
)
FULL = ("ب" * 4000) + ("y" * 95) + "\u200f"  # 4096 characters, the Telegram maximum
NEW_TABLES = {
    "case_messages",
    "evidence",
    "notification_links",
    "pending_notifications",
}


@pytest.fixture
def cases(sessionmaker) -> CaseService:
    return CaseService(sessionmaker)


def draft(description: str = "a bribe was asked for a permit") -> ReportDraft:
    return ReportDraft(
        kind="corruption",
        triage={"category": "bribery", "governorate": "hebron"},
        fields={"description": description},
    )


def record(n: int = 0, **overrides) -> EvidenceRecord:
    values = dict(
        id=hashlib.sha256(f"file {n} {overrides}".encode()).hexdigest()[:32],
        kind="photo",
        size_bytes=1000 + n,
        has_clean_copy=True,
        flagged=None,
        file_name=f"صورة {n}.jpg",
        mime_type="image/jpeg",
        forward_origin=None,
        sha256=hashlib.sha256(f"content {n}".encode()).hexdigest(),
    )
    values.update(overrides)
    return EvidenceRecord(**values)


def report_batch(update_id=None) -> ReportBatch:
    return ReportBatch(bot_id=1 if update_id else None, update_id=update_id)


async def write(sessionmaker, batch: ReportBatch) -> None:
    """Commit report-side writes as the bot does (its own transaction, no delay in tests)."""
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)


async def submit(sessionmaker, vault, *, evidence=(), description="d", update_id=None):
    """Submit a report the way the bot does: context first, evidence with the report."""
    report_id, data_key = new_sealing_context()
    sealed = await vault.seal(draft(description), report_id=report_id, data_key=data_key)
    batch = report_batch(update_id)
    vault.store(batch, sealed, evidence=evidence)
    await write(sessionmaker, batch)
    return sealed


async def reporter_says(sessionmaker, cases, case, body, update_id=None):
    batch = report_batch(update_id)
    cases.add_reporter_message(batch, case, body)
    await write(sessionmaker, batch)


# --------------------------------------------------------------------------- migration


async def test_migration_creates_the_new_tables(engine):
    def names(sync_conn):
        inspector = inspect(sync_conn)
        return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("reports")}

    async with engine.connect() as conn:
        tables, report_columns = await conn.run_sync(names)
    assert NEW_TABLES <= tables
    assert "outcome" in report_columns
    assert not {"fsm_records", "staff_users", "receipt_attempts"} & tables  # gone in 0003


async def test_pending_notifications_carry_no_time(engine):
    def columns(sync_conn):
        return {c["name"] for c in inspect(sync_conn).get_columns("pending_notifications")}

    async with engine.connect() as conn:
        assert await conn.run_sync(columns) == {"id", "report_id"}
    assert set(PendingNotification.__table__.c.keys()) == {"id", "report_id"}


async def test_upgrade_keeps_existing_reports_and_downgrade_keeps_their_fields(sqlite_url):
    """0001 -> 0002 -> 0001 -> head on SQLite with foreign keys on: no report or field is
    lost. (0003 cannot be downgraded: test_storage_database.py.)"""
    from alembic import command
    from sqlalchemy import text

    from nazaha.storage.migrations import alembic_config, upgrade_database

    await upgrade_database(sqlite_url, "0001")
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO reports (id, designation, kind, status, created_on, team_key_id,"
                    " wrapped_key_team, wrapped_key_reporter, receipt_lookup) VALUES"
                    " (:id, 'R-AAAAAA', 'complaint', 'received', '2026-01-02', 'k', x'01', x'02', x'03')"
                ),
                {"id": "a" * 32},
            )
            await conn.execute(
                text("INSERT INTO report_fields (report_id, name, sealed) VALUES (:id, 'd', x'04')"),
                {"id": "a" * 32},
            )
        await upgrade_database(sqlite_url, "0002")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT status, outcome FROM reports"))).all() == [
                ("received", None)
            ]

        def downgrade(sync_conn):
            config = alembic_config(sqlite_url)
            config.attributes["connection"] = sync_conn
            command.downgrade(config, "0001")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM report_fields"))).scalar() == 1
            tables = {
                row[0]
                for row in await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            }
        assert not NEW_TABLES & tables
        await upgrade_database(sqlite_url)  # and up again, to the newest
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM report_fields"))).scalar() == 1
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0012"
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- sealing context


async def test_seal_with_a_preset_report_id_and_data_key(sessionmaker, vault, team_key):
    report_id, data_key = new_sealing_context()
    assert len(report_id) == 32 and int(report_id, 16) >= 0 and len(data_key) == 32
    assert new_sealing_context()[0] != report_id

    sealed = await vault.seal(draft("preset"), report_id=report_id, data_key=data_key)
    assert sealed.report_id == report_id
    assert data_key.hex() not in repr(sealed)
    batch = ReportBatch()
    vault.store(batch, sealed)
    await write(sessionmaker, batch)
    case = await vault.unlock_with_team(sealed.designation, team_key)
    assert case.report_id == report_id and case.data_key == data_key
    async with sessionmaker() as session:
        sealed_field = await session.scalar(select(ReportField.sealed))
    assert open_field(data_key, report_id, "description", sealed_field) == b"preset"


async def test_seal_refuses_a_half_or_malformed_context(vault):
    report_id, data_key = new_sealing_context()
    with pytest.raises(ValueError):
        await vault.seal(draft(), report_id=report_id)
    with pytest.raises(ValueError):
        await vault.seal(draft(), data_key=data_key)
    with pytest.raises(ValueError):
        await vault.seal(draft(), report_id="R-1234", data_key=data_key)
    with pytest.raises(ValueError):
        await vault.seal(draft(), report_id=report_id, data_key=data_key[:16])


async def test_store_inserts_evidence_rows_in_the_same_write(sessionmaker, vault, team_key, cases):
    files = [
        record(1),
        record(2, kind="document", has_clean_copy=False, flagged="not_an_image",
               file_name="فاتورة.pdf", mime_type="application/pdf", forward_origin="channel"),
        record(3, kind="voice", has_clean_copy=False, file_name=None, mime_type="audio/ogg"),
    ]
    sealed = await submit(sessionmaker, vault, evidence=files, update_id=301)
    case = await vault.unlock_with_team(sealed.designation, team_key)
    assert await cases.evidence(case) == files  # in order, metadata intact

    async with sessionmaker() as session:
        rows = (await session.scalars(select(Evidence).order_by(Evidence.seq))).all()
    assert [r.source for r in rows] == ["report"] * 3
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[1].flagged == "not_an_image" and rows[1].kind == "document"
    for row in rows:  # file names and hashes are sealed
        assert "فاتورة".encode() not in row.sealed_meta and b"pdf" not in row.sealed_meta
        assert files[0].sha256.encode() not in row.sealed_meta

    # A redelivered submission stores neither the report nor its evidence again.
    again = await vault.seal(draft(), report_id=new_sealing_context()[0], data_key=case.data_key)
    batch = report_batch(301)
    vault.store(batch, again, evidence=[record(9)])
    with pytest.raises(DuplicateUpdate):
        await write(sessionmaker, batch)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Evidence)) == 3
        assert await session.scalar(select(func.count()).select_from(Report)) == 1


# --------------------------------------------------------------------------- unlocking


async def test_unlock_with_receipt_and_with_team_give_the_same_case(sessionmaker, vault, team_key):
    sealed = await submit(sessionmaker, vault)
    by_receipt = await vault.unlock_with_receipt(format_receipt(sealed.receipt))
    by_team = await vault.unlock_with_team(sealed.designation, team_key)
    assert by_receipt == by_team
    assert by_team == UnlockedCase(
        report_id=sealed.report_id,
        designation=sealed.designation,
        kind="corruption",
        status="received",
        outcome=None,
        created_on=sealed.created_on,
        data_key=by_team.data_key,
    )
    assert len(by_team.data_key) == 32
    assert by_team.data_key.hex() not in repr(by_team) and repr(by_team.data_key) not in repr(by_team)
    with pytest.raises(TypeError):
        pickle.dumps(by_team)
    # open_* still work on top of unlock_*
    assert (await vault.open_with_receipt(sealed.receipt)).fields == {"description": "d"}
    assert (await vault.open_with_team(sealed.designation, team_key)).fields == {"description": "d"}
    with pytest.raises(ReportNotFound):
        await vault.unlock_with_team("R-NOPE00", team_key)
    with pytest.raises(UnknownKeyId):
        await vault.unlock_with_team(sealed.designation, TeamPrivateKey.generate())


async def test_unknown_receipt_does_the_same_work_as_a_known_one(sessionmaker, vault, monkeypatch):
    sealed = await submit(sessionmaker, vault)
    calls: list[str] = []
    real_derive = reports_module.derive_reporter_keys
    real_unwrap = reports_module.unwrap_for_reporter

    def derive(*args):
        calls.append("argon2id")
        return real_derive(*args)

    def unwrap(*args):
        calls.append("unwrap")
        return real_unwrap(*args)

    monkeypatch.setattr(reports_module, "derive_reporter_keys", derive)
    monkeypatch.setattr(reports_module, "unwrap_for_reporter", unwrap)

    assert await vault.unlock_with_receipt(sealed.receipt) is not None
    known = list(calls)
    calls.clear()
    wrong = ("1" if sealed.receipt[0] != "1" else "2") + sealed.receipt[1:]
    assert await vault.unlock_with_receipt(wrong) is None
    assert calls == known == ["argon2id", "unwrap"]
    calls.clear()
    assert await vault.unlock_with_receipt("not a receipt") is None
    assert await vault.unlock_with_receipt("") is None
    assert calls == []  # malformed: nothing to hide, no work


async def test_status_and_outcome_show_in_the_unlocked_case(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault)
    assert await cases.status(sealed.report_id) == ("received", None)
    await cases.set_status(sealed.report_id, "referred")
    assert await cases.status(sealed.report_id) == ("referred", None)
    await cases.set_status(sealed.report_id, "closed", "out_of_scope")
    assert await cases.status(sealed.report_id) == ("closed", "out_of_scope")
    case = await vault.unlock_with_receipt(sealed.receipt)
    assert (case.status, case.outcome) == ("closed", "out_of_scope")
    await cases.set_status(sealed.report_id, "in_review")  # reopened: the outcome goes
    assert await cases.status(sealed.report_id) == ("in_review", None)
    with pytest.raises(ValueError):
        await cases.set_status(sealed.report_id, "lost")
    with pytest.raises(ValueError):
        await cases.set_status(sealed.report_id, "closed", "guilty")
    with pytest.raises(ReportNotFound):
        await cases.set_status("f" * 32, "closed", "substantiated")
    with pytest.raises(ReportNotFound):
        await cases.status("f" * 32)
    assert await cases.status(sealed.report_id) == ("in_review", None)


async def test_every_status_and_outcome_of_the_workflow_is_stored(sessionmaker, vault, cases):
    from nazaha.storage.cases import CLOSED, OUTCOMES, REOPENED, STATUSES

    assert STATUSES == ("received", "acknowledged", "in_review", "referred", "action_taken", "closed")
    assert OUTCOMES == ("substantiated", "not_substantiated", "out_of_scope", "insufficient_information")
    assert (CLOSED, REOPENED) == ("closed", "in_review")
    sealed = await submit(sessionmaker, vault)
    for status in STATUSES[:-1]:
        await cases.set_status(sealed.report_id, status)
        assert await cases.status(sealed.report_id) == (status, None)
    for outcome in OUTCOMES:
        await cases.set_status(sealed.report_id, "closed", outcome)
        assert await cases.status(sealed.report_id) == ("closed", outcome)


async def test_an_outcome_is_given_when_closing_and_only_then(sessionmaker, vault, cases):
    sealed = await submit(sessionmaker, vault)
    await cases.set_status(sealed.report_id, "action_taken")
    with pytest.raises(ValueError, match="needs an outcome"):
        await cases.set_status(sealed.report_id, "closed")
    for status in ("received", "acknowledged", "in_review", "referred", "action_taken"):
        with pytest.raises(ValueError, match="only a closed case"):
            await cases.set_status(sealed.report_id, status, "substantiated")
    for old in ("referred", "no_jurisdiction"):  # the codes before migration 0004
        with pytest.raises(ValueError, match="unknown outcome"):
            await cases.set_status(sealed.report_id, "closed", old)
    assert await cases.status(sealed.report_id) == ("action_taken", None)  # nothing changed


# --------------------------------------------------------------------------- thread


async def test_thread_round_trip_order_and_exact_bodies(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault)
    staff_case = await vault.unlock_with_team(sealed.designation, team_key)
    reporter_case = await vault.unlock_with_receipt(sealed.receipt)
    assert await cases.thread(staff_case) == []

    first = await cases.add_staff_reply(staff_case, "Thank you. Do you have the invoice?")
    assert isinstance(first, ThreadMessage) and first.seq == 1
    await reporter_says(sessionmaker, cases, reporter_case, NASTY, update_id=11)
    await reporter_says(sessionmaker, cases, reporter_case, FULL, update_id=12)
    await cases.add_staff_reply(staff_case, "  spaced  \n")

    thread = await cases.thread(reporter_case)
    assert thread == await cases.thread(staff_case)
    assert [m.direction for m in thread] == ["staff", "reporter", "reporter", "staff"]
    assert [m.body for m in thread] == [
        "Thank you. Do you have the invoice?",
        NASTY,
        FULL,
        "  spaced  \n",
    ]
    assert len(FULL) == 4096
    assert [m.seq for m in thread] == [1, 2, 3, 4]
    assert thread[0] == first
    assert all(m.created_on == dt.datetime.now(dt.timezone.utc).date() for m in thread)
    assert [(m.read_by_reporter, m.read_by_staff) for m in thread] == [
        (False, True), (True, False), (True, False), (False, True)
    ]

    async with sessionmaker() as session:
        cells = (await session.scalars(select(CaseMessage.sealed_body))).all()
    for cell in cells:
        assert "رشوة".encode() not in cell and b"invoice" not in cell and b"spaced" not in cell

    with pytest.raises(ValueError):
        await cases.add_staff_reply(staff_case, "")
    with pytest.raises(TypeError):
        cases.add_reporter_message(ReportBatch(), reporter_case, b"bytes")  # type: ignore[arg-type]


async def test_read_marks_and_unread_counts(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault)
    case = await vault.unlock_with_team(sealed.designation, team_key)
    await cases.add_staff_reply(case, "one")
    await cases.add_staff_reply(case, "two")
    await reporter_says(sessionmaker, cases, case, "three")
    assert await cases.unread_for_reporter(sealed.report_id) == 2
    assert await cases.unread_for_staff(sealed.report_id) == 1

    assert await cases.mark_read(case, "reporter") == 2
    assert await cases.mark_read(case, "reporter") == 0
    assert await cases.unread_for_reporter(sealed.report_id) == 0
    assert await cases.unread_for_staff(sealed.report_id) == 1
    assert await cases.mark_read(case, "staff") == 1
    assert await cases.unread_for_staff(sealed.report_id) == 0
    assert all(m.read_by_reporter and m.read_by_staff for m in await cases.thread(case))
    with pytest.raises(ValueError):
        await cases.mark_read(case, "someone")


async def test_a_body_moved_to_another_message_report_or_direction_fails(
    sessionmaker, vault, team_key, cases
):
    a = await vault.unlock_with_team((await submit(sessionmaker, vault)).designation, team_key)
    b = await vault.unlock_with_team((await submit(sessionmaker, vault)).designation, team_key)
    await reporter_says(sessionmaker, cases, a, "message one of A")
    await reporter_says(sessionmaker, cases, a, "message two of A")
    await reporter_says(sessionmaker, cases, b, "message of B")

    async def rows(case):
        async with sessionmaker() as session:
            return (
                await session.scalars(
                    select(CaseMessage).where(CaseMessage.report_id == case.report_id).order_by(CaseMessage.seq)
                )
            ).all()

    a1, a2 = await rows(a)
    (b1,) = await rows(b)

    async def set_body(message_id, **values):
        async with write_transaction(sessionmaker) as session:
            await session.execute(update(CaseMessage).where(CaseMessage.id == message_id).values(**values))

    # Within a report: message 1's body copied onto message 2.
    await set_body(a2.id, sealed_body=a1.sealed_body)
    with pytest.raises(TamperedData):
        await cases.thread(a)
    await set_body(a2.id, sealed_body=a2.sealed_body)
    assert [m.body for m in await cases.thread(a)] == ["message one of A", "message two of A"]

    # Across reports, even with the other report's key in hand.
    await set_body(b1.id, sealed_body=a1.sealed_body)
    with pytest.raises(TamperedData):
        await cases.thread(b)
    await set_body(b1.id, sealed_body=b1.sealed_body)

    # A reporter's words relabelled as the caseworkers'.
    await set_body(a1.id, direction="staff")
    with pytest.raises(TamperedData):
        await cases.thread(a)


async def test_queued_message_is_written_only_with_the_update(sessionmaker, vault, team_key, cases):
    case = await vault.unlock_with_team((await submit(sessionmaker, vault)).designation, team_key)
    await reporter_says(sessionmaker, cases, case, "first", update_id=77)
    again = report_batch(77)  # Telegram redelivered it
    cases.add_reporter_message(again, case, "first")
    with pytest.raises(DuplicateUpdate):
        await write(sessionmaker, again)
    never = ReportBatch()
    cases.add_reporter_message(never, case, "never")  # queued, never committed
    assert len(never) == 1
    assert [m.body for m in await cases.thread(case)] == ["first"]


async def test_concurrent_writers_get_distinct_order_numbers(sessionmaker, vault, team_key, cases):
    case = await vault.unlock_with_team((await submit(sessionmaker, vault)).designation, team_key)
    await asyncio.gather(
        *(cases.add_staff_reply(case, f"staff {i}") for i in range(8)),
        *(reporter_says(sessionmaker, cases, case, f"reporter {i}", update_id=500 + i) for i in range(8)),
    )
    thread = await cases.thread(case)
    assert [m.seq for m in thread] == list(range(1, 17))
    assert sorted(m.body for m in thread) == sorted(
        [f"staff {i}" for i in range(8)] + [f"reporter {i}" for i in range(8)]
    )


async def test_writing_to_a_deleted_report_fails(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault)
    case = await vault.unlock_with_team(sealed.designation, team_key)
    async with write_transaction(sessionmaker) as session:
        await session.execute(delete(Report).where(Report.id == sealed.report_id))
    with pytest.raises(ReportNotFound):
        await cases.add_staff_reply(case, "anyone there?")
    with pytest.raises(ReportNotFound):
        await reporter_says(sessionmaker, cases, case, "hello")


# --------------------------------------------------------------------------- notifications of a case


async def test_staff_reply_queues_a_notification_in_the_same_transaction(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault)
    case = await vault.unlock_with_team(sealed.designation, team_key)
    await reporter_says(sessionmaker, cases, case, "reporter writes")  # no notification
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(PendingNotification)) == 0
    await cases.add_staff_reply(case, "caseworker answers")
    async with sessionmaker() as session:
        pending = (await session.scalars(select(PendingNotification))).all()
    assert [p.report_id for p in pending] == [sealed.report_id]
    assert not hasattr(pending[0], "created_at")  # no time tied to the report (0003)


async def test_closing_a_case_deletes_its_links_and_pending_notifications(sessionmaker, vault, team_key, cases):
    from nazaha.storage.crypto import BotKeyBox
    from nazaha.storage.notifications import NotificationLinks

    links = NotificationLinks(sessionmaker, BotKeyBox(b"k" * 32), team_key.public_key())
    closing = await submit(sessionmaker, vault)
    staying = await submit(sessionmaker, vault)
    batch = ReportBatch()
    links.add(batch, closing.report_id, 1001, "ar")
    links.add(batch, closing.report_id, 1002, "en")
    links.add(batch, staying.report_id, 1001, "ar")
    await write(sessionmaker, batch)
    for sealed in (closing, staying):
        await cases.add_staff_reply(await vault.unlock_with_team(sealed.designation, team_key), "update")

    await cases.set_status(closing.report_id, "in_review")  # not closed: links stay
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(NotificationLink)) == 3

    await cases.set_status(closing.report_id, "closed", "substantiated")
    async with sessionmaker() as session:
        remaining_links = (await session.scalars(select(NotificationLink.report_id))).all()
        remaining_pending = (await session.scalars(select(PendingNotification.report_id))).all()
    assert remaining_links == [staying.report_id]
    assert remaining_pending == [staying.report_id]
    assert await cases.status(closing.report_id) == ("closed", "substantiated")
    assert (await links.count(closing.report_id), await links.count(staying.report_id)) == (0, 1)


# --------------------------------------------------------------------------- withdrawals

CONTACT = {"contact": "share", "contact_name": "سميرة ك. Samira", "contact_phone": "0599 123 456"}


async def submit_with_contact(sessionmaker, vault, **contact):
    report_id, data_key = new_sealing_context()
    fields = {"description": "a bribe was asked for a permit", **(contact or CONTACT)}
    sealed = await vault.seal(
        ReportDraft(kind="complaint", triage={"service": "health"}, fields=fields),
        report_id=report_id,
        data_key=data_key,
    )
    batch = report_batch()
    vault.store(batch, sealed)
    await write(sessionmaker, batch)
    return sealed


async def field_names(sessionmaker, report_id) -> set[str]:
    async with sessionmaker() as session:
        return set(
            (await session.scalars(select(ReportField.name).where(ReportField.report_id == report_id))).all()
        )


async def test_withdrawing_contact_details_deletes_them_and_keeps_the_day(
    engine, sessionmaker, vault, team_key, cases
):
    from nazaha.storage.database import checkpoint_wal

    withdrawing = await submit_with_contact(sessionmaker, vault)
    keeping = await submit_with_contact(sessionmaker, vault)
    assert await cases.has_contact_details(withdrawing.report_id)
    assert await cases.withdrawals(withdrawing.report_id) == (None, None)
    async with sessionmaker() as session:
        sealed_name = await session.scalar(
            select(ReportField.sealed).where(
                ReportField.report_id == withdrawing.report_id, ReportField.name == "contact_name"
            )
        )

    if engine.dialect.name == "sqlite":  # the ciphertext is in the file before
        assert await checkpoint_wal(engine)
        assert sealed_name in open(engine.url.database, "rb").read()

    batch = report_batch(4242)
    cases.withdraw_contact(batch, await vault.unlock_with_receipt(withdrawing.receipt))
    assert await cases.has_contact_details(withdrawing.report_id)  # queued, not yet written
    await write(sessionmaker, batch)

    today = dt.datetime.now(dt.timezone.utc).date()
    assert await cases.withdrawals(withdrawing.report_id) == (today, None)
    assert not await cases.has_contact_details(withdrawing.report_id)
    assert await field_names(sessionmaker, withdrawing.report_id) == {"description"}
    opened = await vault.open_with_team(withdrawing.designation, team_key)
    assert opened.fields == {"description": "a bribe was asked for a permit"}
    # The other report keeps its details, and nothing else of the withdrawn one changed.
    assert await field_names(sessionmaker, keeping.report_id) == {"description", *CONTACT}
    assert await cases.withdrawals(keeping.report_id) == (None, None)
    assert await cases.status(withdrawing.report_id) == ("received", None)

    # Withdrawing again changes nothing, not even the day.
    earlier = today - dt.timedelta(days=3)
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Report).where(Report.id == withdrawing.report_id).values(contact_withdrawn_on=earlier)
        )
    batch = report_batch()
    cases.withdraw_contact(batch, await vault.unlock_with_team(withdrawing.designation, team_key))
    await write(sessionmaker, batch)
    assert await cases.withdrawals(withdrawing.report_id) == (earlier, None)

    if engine.dialect.name == "sqlite":
        # secure_delete: once the WAL is checkpointed, the deleted ciphertext is nowhere.
        assert await checkpoint_wal(engine)
        assert sealed_name not in open(engine.url.database, "rb").read()


async def test_an_anonymous_report_has_no_contact_details_to_withdraw(sessionmaker, vault, cases):
    anonymous = await submit_with_contact(sessionmaker, vault, contact="anonymous")
    assert not await cases.has_contact_details(anonymous.report_id)
    batch = report_batch()
    cases.withdraw_contact(batch, await vault.unlock_with_receipt(anonymous.receipt))
    await write(sessionmaker, batch)
    assert await cases.withdrawals(anonymous.report_id) == (None, None)
    assert await field_names(sessionmaker, anonymous.report_id) == {"description", "contact"}


async def test_a_name_without_a_phone_is_withdrawn_too(sessionmaker, vault, cases):
    named = await submit_with_contact(sessionmaker, vault, contact="share", contact_name="Mona")
    assert await cases.has_contact_details(named.report_id)
    batch = report_batch()
    cases.withdraw_contact(batch, await vault.unlock_with_receipt(named.receipt))
    await write(sessionmaker, batch)
    assert await field_names(sessionmaker, named.report_id) == {"description"}
    assert (await cases.withdrawals(named.report_id))[0] is not None


async def test_withdrawing_the_report_keeps_it_and_stops_its_notifications(
    sessionmaker, vault, team_key, cases
):
    from nazaha.storage.crypto import BotKeyBox
    from nazaha.storage.notifications import NotificationLinks

    links = NotificationLinks(sessionmaker, BotKeyBox(b"k" * 32), team_key.public_key())
    withdrawing = await submit_with_contact(sessionmaker, vault)
    staying = await submit(sessionmaker, vault)
    batch = ReportBatch()
    links.add(batch, withdrawing.report_id, 1001, "ar")
    links.add(batch, staying.report_id, 1002, "en")
    await write(sessionmaker, batch)
    for sealed in (withdrawing, staying):
        await cases.add_staff_reply(await vault.unlock_with_team(sealed.designation, team_key), "update")
    await cases.set_status(withdrawing.report_id, "in_review")

    case = await vault.unlock_with_receipt(withdrawing.receipt)
    batch = report_batch(77)
    cases.withdraw_report(batch, case)
    await write(sessionmaker, batch)

    today = dt.datetime.now(dt.timezone.utc).date()
    assert await cases.withdrawals(withdrawing.report_id) == (None, today)
    assert (await links.count(withdrawing.report_id), await links.count(staying.report_id)) == (0, 1)
    async with sessionmaker() as session:
        pending = (await session.scalars(select(PendingNotification.report_id))).all()
    assert pending == [staying.report_id]
    # The report stays whole for the caseworkers, who close it; the reporter still follows up.
    assert await cases.status(withdrawing.report_id) == ("in_review", None)
    assert await field_names(sessionmaker, withdrawing.report_id) == {"description", *CONTACT}
    await reporter_says(sessionmaker, cases, case, "one more thing")
    thread = await cases.thread(await vault.unlock_with_team(withdrawing.designation, team_key))
    assert [(m.direction, m.body) for m in thread] == [("staff", "update"), ("reporter", "one more thing")]
    await cases.set_status(withdrawing.report_id, "closed", "insufficient_information")
    assert await cases.withdrawals(withdrawing.report_id) == (None, today)  # closing keeps it

    # A second withdrawal keeps the first day.
    earlier = today - dt.timedelta(days=10)
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Report).where(Report.id == withdrawing.report_id).values(withdrawn_on=earlier)
        )
    batch = report_batch()
    cases.withdraw_report(batch, case)
    await write(sessionmaker, batch)
    assert await cases.withdrawals(withdrawing.report_id) == (None, earlier)


async def test_withdrawals_of_a_report_that_is_gone(sessionmaker, vault, cases):
    sealed = await submit(sessionmaker, vault)
    case = await vault.unlock_with_receipt(sealed.receipt)
    async with write_transaction(sessionmaker) as session:
        await session.execute(delete(Report).where(Report.id == sealed.report_id))
    for withdraw in (cases.withdraw_contact, cases.withdraw_report):
        batch = report_batch()
        withdraw(batch, case)
        with pytest.raises(ReportNotFound):
            await write(sessionmaker, batch)
    with pytest.raises(ReportNotFound):
        await cases.withdrawals(sealed.report_id)


# --------------------------------------------------------------------------- evidence


async def test_follow_up_evidence_is_appended_in_order(sessionmaker, vault, team_key, cases):
    sealed = await submit(sessionmaker, vault, evidence=[record(1)])
    case = await vault.unlock_with_receipt(sealed.receipt)
    batch = report_batch(900)
    cases.add_evidence(batch, case, record(2, kind="video", mime_type="video/mp4"))
    cases.add_evidence(batch, case, record(3, kind="audio", forward_origin="user"))
    assert await cases.evidence(case) == [record(1)]  # queued, not yet written
    await write(sessionmaker, batch)
    listed = await cases.evidence(await vault.unlock_with_team(sealed.designation, team_key))
    assert listed == [record(1), record(2, kind="video", mime_type="video/mp4"),
                      record(3, kind="audio", forward_origin="user")]
    async with sessionmaker() as session:
        rows = (await session.execute(select(Evidence.seq, Evidence.source).order_by(Evidence.seq))).all()
    assert rows == [(1, "report"), (2, "followup"), (3, "followup")]


async def test_evidence_rows_edited_or_moved_fail_to_open(sessionmaker, vault, team_key, cases):
    a = await submit(sessionmaker, vault, evidence=[record(1), record(2)])
    b = await submit(sessionmaker, vault, evidence=[record(3)])
    case_a = await vault.unlock_with_team(a.designation, team_key)
    case_b = await vault.unlock_with_team(b.designation, team_key)

    async def edit(evidence_id, **values):
        async with write_transaction(sessionmaker) as session:
            await session.execute(update(Evidence).where(Evidence.id == evidence_id).values(**values))

    async with sessionmaker() as session:
        meta = dict((await session.execute(select(Evidence.id, Evidence.sealed_meta))).all())

    await edit(record(2).id, sealed_meta=meta[record(1).id])  # metadata of another file
    with pytest.raises(TamperedData):
        await cases.evidence(case_a)
    await edit(record(2).id, sealed_meta=meta[record(2).id])
    await edit(record(3).id, sealed_meta=meta[record(1).id])  # from another report
    with pytest.raises(TamperedData):
        await cases.evidence(case_b)
    await edit(record(3).id, sealed_meta=meta[record(3).id])
    assert await cases.evidence(case_b) == [record(3)]

    for column, value in (("kind", "document"), ("size_bytes", 1), ("flagged", "corrupt_image"),
                          ("has_clean_copy", False)):
        await edit(record(1).id, **{column: value})  # a plain column edited
        with pytest.raises(TamperedData):
            await cases.evidence(case_a)
        await edit(record(1).id, **{column: getattr(record(1), column)})
    assert await cases.evidence(case_a) == [record(1), record(2)]


def test_evidence_record_validation():
    with pytest.raises(ValueError):
        record(id="../../etc/passwd")
    with pytest.raises(ValueError):
        record(kind="sticker")
    with pytest.raises(ValueError):
        record(size_bytes=-1)
    with pytest.raises(ValueError):
        record(sha256="abc")
    with pytest.raises(ValueError):
        record(flagged="Not An Image!")
    assert record(flagged="corrupt_image").flagged == "corrupt_image"


async def test_deleting_a_report_deletes_its_thread_evidence_and_links(sessionmaker, vault, team_key, cases):
    from nazaha.storage.crypto import BotKeyBox
    from nazaha.storage.notifications import NotificationLinks

    sealed = await submit(sessionmaker, vault, evidence=[record(1)])
    case = await vault.unlock_with_team(sealed.designation, team_key)
    batch = ReportBatch()
    links = NotificationLinks(sessionmaker, BotKeyBox(b"k" * 32), team_key.public_key())
    links.add(batch, sealed.report_id, 5, "ar")
    await write(sessionmaker, batch)
    assert await links.count(sealed.report_id) == 1
    await cases.add_staff_reply(case, "reply")
    async with write_transaction(sessionmaker) as session:
        await session.execute(delete(Report).where(Report.id == sealed.report_id))
    async with sessionmaker() as session:
        for model in (CaseMessage, Evidence, NotificationLink, PendingNotification):
            assert await session.scalar(select(func.count()).select_from(model)) == 0
