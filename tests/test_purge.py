"""Retention and purge (issue 10): closed cases go a set time after closing, with every row,
blob and derived value; a legal hold and a recent closing keep a case; the figures stay as
content-free aggregates; the audit chain still verifies. The database files and their WAL
are carved for the purged case's ids and sealed values (SQLite), and every tuple of the
tables, live or dead, is inspected with ``pageinspect`` after VACUUM (PostgreSQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from nazaha.services import audit
from nazaha.services.casework import add_label, add_note, change_status, link, recuse, share
from nazaha.services.purge import (
    DuePurge,
    due_for_purge,
    due_report_ids,
    finish_logged_purges,
    legal_holds,
    purge_case,
    purge_due,
    purge_hash,
    purged_count,
)
from nazaha.storage.blobs import BlobStore
from nazaha.storage.console_db import console_db_path, ensure_console_secret
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
from nazaha.storage.crypto import TeamPrivateKey, seal_field, unwrap_with_team
from nazaha.storage.database import create_sessionmaker, write_session, write_transaction
from nazaha.storage.models import (
    CaseMessage,
    Evidence,
    NotificationLink,
    PendingNotification,
    Report,
    ReportField,
)
from nazaha.storage.reports import UnlockedCase
from tests.casework_support import PG, add_staff, console_store, evidence, make_case
from tests.console_support import csrf_of

D = dt.date
TODAY = D(2026, 3, 1)
RETENTION = 365
ROOT = Path(__file__).resolve().parent.parent


def at(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=dt.timezone.utc)


@dataclasses.dataclass
class Case:
    report_id: str
    designation: str
    data_key: bytes
    secrets: dict[str, bytes] = dataclasses.field(default_factory=dict)  # what must vanish


@dataclasses.dataclass
class World:
    sm: object
    engine: object
    team: TeamPrivateKey
    blobs: BlobStore
    secret: bytes
    admin: object
    alice: object
    bob: object
    purged: Case
    twin: Case  # purged too; its aggregate row equals the first's
    held: Case
    recent: Case
    linked: Case


async def unlocked(w_sm, team: TeamPrivateKey, report_id: str) -> UnlockedCase:
    async with w_sm() as session:
        report = await session.get(Report, report_id)
    return UnlockedCase(
        report_id=report.id, designation=report.designation, kind=report.kind, status=report.status,
        outcome=report.outcome, created_on=report.created_on,
        data_key=unwrap_with_team(report.wrapped_key_team, team, report.id),
    )


async def work_a_case(
    sm, team, blobs, admin, alice, bob, *, created_on: dt.date, closed_on: dt.date | None,
    label: str = "permits", designation: str | None = None,
) -> Case:
    """A case with answers, a thread, evidence blobs, a note, a label, a share, a recusal,
    a view, audit entries; acknowledged 3 days after receipt and closed on ``closed_on``."""
    files = [evidence(f"contract-{secrets.token_hex(4)}.pdf", caption="the signed permit")]
    report_id, data_key = await make_case(
        sm, team.public_key(), created_on=created_on, designation=designation,
        fields={"description": "a bribe was asked " + secrets.token_hex(8), "contact_phone": "0599 123 456"},
        messages=[("reporter", "the clerk is called Fadi " + secrets.token_hex(8), True),
                  ("staff", "thank you, we are looking into it", False)],
        files=files,
    )
    for record in files:
        await blobs.write_bytes(data_key, report_id, record.id, "original", b"%PDF-1.4 secret contract " * 50)
        await blobs.write_bytes(data_key, report_id, record.id, "clean", b"clean copy " * 40)
    case = await unlocked(sm, team, report_id)
    async with write_session(sm) as session:
        await add_label(session, admin, report_id, label, now=at(created_on))
        await share(session, admin, report_id, alice.user_id, now=at(created_on))
        await recuse(session, admin, report_id, bob.user_id, now=at(created_on))
        await add_note(session, admin, case, "called the ministry " + secrets.token_hex(8), now=at(created_on))
        await change_status(session, admin, report_id, "acknowledged", notify=False,
                            today=created_on + dt.timedelta(days=3), now=at(created_on))
        session.add(CaseView(user_id=admin.user_id, report_id=report_id, seen_at=at(created_on)))
        await audit.append(session, actor_id=admin.user_id, action=audit.CASE_VIEW, report_id=report_id, now=at(created_on))
        if closed_on is not None:
            await change_status(session, admin, report_id, "closed", outcome="substantiated", notify=False,
                                today=closed_on, now=at(closed_on))
            await audit.append(session, actor_id=admin.user_id, action=audit.STATUS_CHANGE, report_id=report_id,
                               detail={"status": "closed"}, now=at(closed_on))
        # Closing deletes links and news; a link and news written afterwards (a race with
        # the bot) must go with the purge too.
        link_id = secrets.token_hex(16)
        session.add(NotificationLink(id=link_id, report_id=report_id, created_on=created_on,
                                     sealed_link=seal_field(secrets.token_bytes(32), report_id, "link", b"chat 123456789")))
        session.add(PendingNotification(report_id=report_id))
        session.add(PendingNews(report_id=report_id))
    designation_now = case.designation
    return Case(report_id, designation_now, data_key)


async def sealed_values(sm, report_id: str) -> dict[str, bytes]:
    """Every sealed or key-wrapped value stored for the case, by a name for messages."""
    found: dict[str, bytes] = {}
    async with sm() as session:
        report = await session.get(Report, report_id)
        for name in ("wrapped_key_team", "wrapped_key_reporter", "receipt_lookup"):
            found[f"reports.{name}"] = bytes(getattr(report, name))
        for table, column in ((ReportField, "sealed"), (CaseMessage, "sealed_body"), (Evidence, "sealed_meta"),
                              (NotificationLink, "sealed_link"), (CaseNote, "sealed")):
            for n, value in enumerate(await session.scalars(select(getattr(table, column)).where(table.report_id == report_id))):
                found[f"{table.__tablename__}.{column}#{n}"] = bytes(value)
    return found


def slices(value: bytes) -> list[bytes]:
    """32-byte slices of a value (start, middle, end): a carver needs no more to find it."""
    if len(value) <= 32:
        return [value]
    middle = len(value) // 2 - 16
    return [value[:32], value[middle:middle + 32], value[-32:]]


async def identifiers(sm, case: Case) -> dict[str, bytes]:
    """Ids that name the case or its parts (ASCII as stored), and the blob file names."""
    found = {"report id": case.report_id.encode(), "designation": case.designation.encode()}
    async with sm() as session:
        for table in (Evidence, CaseMessage, NotificationLink, CaseNote):
            for n, row_id in enumerate(await session.scalars(select(table.id).where(table.report_id == case.report_id))):
                found[f"{table.__tablename__}.id#{n}"] = row_id.encode()
    return found


async def build(sm, engine, blobs: BlobStore, secret: bytes) -> World:
    team = TeamPrivateKey.generate()
    admin = await add_staff(sm, "admin", "admin")
    alice = await add_staff(sm, "alice", "caseworker")
    bob = await add_staff(sm, "bob", "caseworker")
    args = (sm, team, blobs, admin, alice, bob)
    purged = await work_a_case(*args, created_on=D(2025, 1, 10), closed_on=D(2025, 2, 1))
    twin = await work_a_case(*args, created_on=D(2025, 1, 10), closed_on=D(2025, 2, 1), label="other")
    held = await work_a_case(*args, created_on=D(2024, 5, 1), closed_on=D(2024, 6, 1), label="Legal  HOLD")
    recent = await work_a_case(*args, created_on=D(2025, 11, 1), closed_on=D(2026, 1, 15))
    linked = await work_a_case(*args, created_on=D(2025, 1, 5), closed_on=None)
    async with write_session(sm) as session:
        await link(session, admin, purged.report_id, linked.report_id, now=at(D(2025, 1, 20)))
        await audit.append(session, actor_id=admin.user_id, action=audit.LINK, report_id=purged.report_id, now=at(D(2025, 1, 20)))
    for case in (purged, twin, held, recent, linked):
        case.secrets = {**await identifiers(sm, case)}
        for name, value in (await sealed_values(sm, case.report_id)).items():
            for n, piece in enumerate(slices(value)):
                case.secrets[f"{name}[{n}]"] = piece
    return World(sm, engine, team, blobs, secret, admin, alice, bob, purged, twin, held, recent, linked)


def carve(paths: list[Path], patterns: dict[str, bytes]) -> list[str]:
    """Which patterns occur in which files (names only, never values)."""
    hits = []
    for path in paths:
        if not path.exists():
            continue
        data = path.read_bytes()
        hits += [f"{name} in {path.name}" for name, pattern in patterns.items() if pattern in data]
    return hits


def sqlite_files(tmp_path: Path) -> list[Path]:
    db, store = tmp_path / "nazaha.db", console_db_path(tmp_path / "console")
    return [db, Path(f"{db}-wal"), store, Path(f"{store}-wal")]


async def rows_about(sm, report_id: str) -> dict[str, int]:
    """How many rows of each table still name the report."""
    counts = {}
    async with sm() as session:
        for table in (Report, ReportField, CaseMessage, Evidence, NotificationLink, PendingNotification,
                      CaseState, CaseLabel, CaseShare, CaseRecusal, CaseNote, CaseEvent, CaseView, PendingNews, CaseRef):
            column = table.id if table is Report else table.report_id
            counts[table.__tablename__] = await session.scalar(select(func.count()).where(column == report_id))
        counts["case_links"] = await session.scalar(
            select(func.count()).where((CaseLink.report_a == report_id) | (CaseLink.report_b == report_id)))
        counts["case_events naming it"] = await session.scalar(
            select(func.count()).where((CaseEvent.old == report_id) | (CaseEvent.new == report_id)))
    return counts


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
async def world(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        sm = create_sessionmaker(engine)
        blobs = BlobStore(tmp_path / "blobs", durable=False)
        yield await build(sm, engine, blobs, ensure_console_secret(tmp_path / "console"))


async def test_due_list_skips_legal_hold_and_recent_closings(world):
    w = world
    async with w.sm() as session:
        due = await due_for_purge(session, TODAY, RETENTION)
        soon = await due_for_purge(session, TODAY, RETENTION, within_days=365)
        holds = await legal_holds(session)
        assert set(await due_report_ids(session, TODAY, RETENTION)) == {w.purged.report_id, w.twin.report_id}
    assert sorted(due) == sorted(DuePurge(c.designation, D(2025, 2, 1), D(2026, 2, 1)) for c in (w.purged, w.twin))
    assert DuePurge(w.recent.designation, D(2026, 1, 15), D(2027, 1, 15)) in soon
    assert all(d.designation not in (w.held.designation, w.linked.designation) for d in soon)
    assert [h.designation for h in holds] == [w.held.designation]
    # A day earlier nothing of theirs was due.
    async with w.sm() as session:
        assert await due_for_purge(session, D(2026, 1, 31), RETENTION) == []


async def test_the_arabic_legal_hold_label_holds_too(world):
    """The Arabic retention page names «حجز قانوني»: a case labelled so is kept."""
    w = world
    admin = await add_staff(w.sm, "arabic-admin", "admin")
    async with write_session(w.sm) as session:
        await add_label(session, admin, [w.twin.report_id], "حجز قانوني")
    async with w.sm() as session:
        due = await due_report_ids(session, TODAY, RETENTION)
        holds = [h.designation for h in await legal_holds(session)]
    assert w.twin.report_id not in due and w.twin.designation in holds


async def test_purge_leaves_nothing_recoverable_and_the_figures_and_the_chain(world, tmp_path):
    w = world
    files = sqlite_files(tmp_path)
    gone = {**w.purged.secrets, **{f"twin {k}": v for k, v in w.twin.secrets.items()}}
    # The carver finds them before the purge (the test can fail).
    assert not set(gone) - {hit.split(" in ")[0] for hit in carve(files, gone)}
    blob_dirs = [w.blobs.root / w.purged.report_id, w.blobs.root / w.twin.report_id]
    assert all(d.is_dir() and any(d.iterdir()) for d in blob_dirs)
    blob_names = {f"blob file {p.name}": p.name.encode() for d in blob_dirs for p in d.iterdir()}
    assert len(blob_names) == 4
    purged_ref = (await rows_about(w.sm, w.purged.report_id))["case_refs"]
    assert purged_ref == 1

    assert await purge_due(w.sm, w.blobs, w.secret, TODAY, RETENTION) == 2

    for case in (w.purged, w.twin):
        assert not any((await rows_about(w.sm, case.report_id)).values())
        assert not (w.blobs.root / case.report_id).exists()
    assert carve(files, {**gone, **blob_names}) == []
    for path in files[1::2]:  # the WAL files were checkpointed and truncated
        assert not path.exists() or path.stat().st_size == 0
    # The cases kept are whole, their secrets where they were.
    for case in (w.held, w.recent, w.linked):
        assert (await rows_about(w.sm, case.report_id))["reports"] == 1
        assert (w.blobs.root / case.report_id).is_dir()
        missing = set(case.secrets) - {hit.split(" in ")[0] for hit in carve(files, case.secrets)}
        assert not missing
    async with w.sm() as session:
        aggregates = list(await session.scalars(select(PurgedCaseAggregate)))
        logged = set(await session.scalars(select(PurgeLogEntry.report_hash)))
        purge_entries = list(await session.scalars(select(audit.AuditEntry).where(audit.AuditEntry.action == audit.PURGE)))
        links_left = list(await session.scalars(select(CaseEvent).where(CaseEvent.report_id == w.linked.report_id, CaseEvent.kind == "link")))
        assert await purged_count(session) == 2
    assert len(aggregates) == 1
    a = aggregates[0]
    assert (a.received_month, a.closed_month, a.kind, a.category, a.sector, a.governorate, a.outcome, a.ack_days,
            a.close_days, a.count) == ("2025-01", "2025-02", "corruption", "bribery", "ministry", "nablus",
                                       "substantiated", 3, 22, 2)
    assert logged == {purge_hash(w.secret, w.purged.report_id), purge_hash(w.secret, w.twin.report_id)}
    assert [(e.case_ref, e.detail) for e in purge_entries] == [(None, '{"count":2}')]
    assert [(e.old, e.new) for e in links_left] == [(None, None)]  # the link happened; to what, gone
    result = await audit.verify(w.sm, w.secret)
    assert result.ok and result.entries > 10
    # Nothing more is due; running again purges nothing.
    assert await purge_due(w.sm, w.blobs, w.secret, TODAY, RETENTION) == 0


async def test_purge_case_refuses_open_and_held_cases(world):
    w = world
    assert not await purge_case(w.sm, w.blobs, w.secret, w.linked.report_id, TODAY)
    assert not await purge_case(w.sm, w.blobs, w.secret, w.held.report_id, TODAY)
    assert not await purge_case(w.sm, w.blobs, w.secret, "0" * 32, TODAY)
    assert (await rows_about(w.sm, w.linked.report_id))["reports"] == 1
    assert (await rows_about(w.sm, w.held.report_id))["reports"] == 1
    # The recent case is not due, but purge_case does what it is asked for a closed case.
    assert await purge_case(w.sm, w.blobs, w.secret, w.recent.report_id, TODAY)
    assert not any((await rows_about(w.sm, w.recent.report_id)).values())


async def test_an_interrupted_purge_is_finished_from_the_log(world):
    """The console's side committed, the bot's did not (SQLite commits the two files apart):
    the next pass finds the report through the purge log and deletes it, blobs too."""
    from nazaha.services import purge as purge_module

    w = world
    original = purge_module.delete_bot_rows
    calls = 0

    async def crash_on_bot_side(session, ids):
        nonlocal calls
        calls += 1
        raise RuntimeError("killed")

    purge_module.delete_bot_rows = crash_on_bot_side
    try:
        with pytest.raises(RuntimeError):
            await purge_case(w.sm, w.blobs, w.secret, w.purged.report_id, TODAY)
    finally:
        purge_module.delete_bot_rows = original
    assert calls == 1
    left = await rows_about(w.sm, w.purged.report_id)
    assert left["reports"] == 1 and left["cases"] == 0
    assert await finish_logged_purges(w.sm, w.blobs, w.secret) == 1
    assert not any((await rows_about(w.sm, w.purged.report_id)).values())
    assert not (w.blobs.root / w.purged.report_id).exists()
    async with w.sm() as session:
        assert await purged_count(session) == 1  # counted once


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")},
        "PYTHONPATH": str(ROOT),
        "NAZAHA_DATA_DIR": str(tmp_path),
        "NAZAHA_CONSOLE_DIR": str(tmp_path / "console"),
        "NAZAHA_RETENTION_DAYS": "30",
    }
    return subprocess.run([sys.executable, "-m", "nazaha.bot", *args], env=env, capture_output=True, text=True, timeout=120)


async def test_the_purge_command(world, tmp_path):
    """`nazaha purge --dry-run` lists what is due and changes nothing; `nazaha purge` purges
    it (today, 30 days of retention: the recent case too, never the held one); `nazaha audit
    verify` passes afterwards."""
    w = world
    await w.engine.dispose()  # the command opens its own connections
    dry = run_cli(tmp_path, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for case in (w.purged, w.twin, w.recent):
        assert case.designation in dry.stdout
    assert w.held.designation not in dry.stdout and w.linked.designation not in dry.stdout
    assert (await rows_about(w.sm, w.purged.report_id))["reports"] == 1
    done = run_cli(tmp_path, "purge")
    assert done.returncode == 0, done.stderr
    assert "3" in done.stdout
    for case in (w.purged, w.twin, w.recent):
        assert not any((await rows_about(w.sm, case.report_id)).values())
    assert (await rows_about(w.sm, w.held.report_id))["reports"] == 1
    verify = run_cli(tmp_path, "audit", "verify")
    assert verify.returncode == 0, verify.stderr


async def test_abandoned_draft_blobs_go_after_the_draft_lifetime(tmp_path, world):
    """The orphan purge (nazaha.bot.app.purge_orphan_blobs) covers abandoned drafts: a draft's
    blobs stay while it received a file within the draft lifetime and go after it."""
    import time
    from types import SimpleNamespace

    from nazaha.bot.app import MAINTENANCE_INTERVAL, purge_orphan_blobs
    from nazaha.handlers.evidence import EvidenceIntake
    from nazaha.storage.fsm import VolatileFsmStorage

    w = world
    intake = EvidenceIntake(w.blobs, 1024)
    draft = secrets.token_hex(16)
    await w.blobs.write_bytes(secrets.token_bytes(32), draft, secrets.token_hex(16), "original", b"x")
    intake._drafts[draft] = time.monotonic()  # as fetch() records it
    runtime = SimpleNamespace(services=SimpleNamespace(evidence=intake), settings=SimpleNamespace(draft_ttl_seconds=60),
                              fsm=VolatileFsmStorage(secrets.token_bytes(32)), sessionmaker=w.sm)
    assert await purge_orphan_blobs(runtime) == 0
    assert (w.blobs.root / draft).is_dir()
    intake._drafts[draft] = time.monotonic() - 61 - MAINTENANCE_INTERVAL  # the lifetime is over
    assert await purge_orphan_blobs(runtime) == 1
    assert not (w.blobs.root / draft).exists()
    assert all((w.blobs.root / c.report_id).is_dir() for c in (w.purged, w.held, w.recent, w.linked))


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgresql_no_tuple_of_a_purged_report_survives_vacuum(tmp_path):
    import asyncpg

    async with console_store("postgresql", tmp_path) as engine:
        sm = create_sessionmaker(engine)
        blobs = BlobStore(tmp_path / "blobs", durable=False)
        w = await build(sm, engine, blobs, ensure_console_secret(tmp_path / "console"))
        database = engine.url.database
        conn = await asyncpg.connect(**{**PG, "database": database}, timeout=5)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")

            async def tuples_naming(table: str, needles: list[bytes]) -> int:
                pages = await conn.fetchval(f"SELECT pg_relation_size('{table}') / current_setting('block_size')::int")
                found = 0
                for page in range(pages):
                    rows = await conn.fetch(
                        f"SELECT t_data FROM heap_page_items(get_raw_page('{table}', {page})) WHERE t_data IS NOT NULL")
                    found += sum(1 for r in rows if any(n in bytes(r["t_data"]) for n in needles))
                return found

            tables = ("reports", "report_fields", "case_messages", "evidence", "notification_links",
                      "console.cases", "console.case_notes", "console.case_events", "console.case_refs")
            needles = [w.purged.report_id.encode()]
            kept = [w.held.report_id.encode()]
            assert await tuples_naming("reports", needles) == 1  # the test can fail
            assert await tuples_naming("report_fields", needles) >= 2
            # A dead version before the purge too: an update leaves the old tuple in the page.
            async with write_transaction(sm) as session:
                await session.execute(text("UPDATE reports SET sector = 'health' WHERE id = :id"), {"id": w.purged.report_id})
            assert await tuples_naming("reports", needles) == 2

            # The purge VACUUMs what it deleted from (no manual VACUUM here).
            assert await purge_due(sm, blobs, w.secret, TODAY, RETENTION) == 2
            for table in tables:
                assert await tuples_naming(table, needles) == 0, table
            assert await tuples_naming("reports", kept) == 1
            assert await tuples_naming("report_fields", kept) >= 2
            assert (await audit.verify(sm, w.secret)).ok
            async with sm() as session:
                assert await purged_count(session) == 2
        finally:
            await conn.close()


# --------------------------------------------------------------------------- the console


from tests.test_console_cases import invite, world as console_world  # noqa: E402,F401


async def test_retention_page_and_the_daily_pass(console_world, monkeypatch):
    """Admins see the setting, what is purged next and when, and the cases on legal hold;
    caseworkers get 403. The console's housekeeping pass purges what is due."""
    from nazaha.admin import app as console_app

    purge_expired_cases = console_app.purge_expired_cases
    calls = []

    async def not_yet(console):  # the running housekeeping loop waits for this test's call
        calls.append(console)
        return 0

    monkeypatch.setattr(console_app, "purge_expired_cases", not_yet)
    w = console_world
    sm = w.console.sessionmaker
    today = w.clock().date()  # 2026-11-30
    viewer = (await add_staff(sm, "boss", "admin"))
    ids = {}
    for name, closed_on, label in (("R-OLDONE", today - dt.timedelta(days=400), None),
                                   ("R-SOONER", today - dt.timedelta(days=350), None),
                                   ("R-HOLDME", today - dt.timedelta(days=900), "legal hold"),
                                   ("R-LATER9", today - dt.timedelta(days=10), None)):
        rid, _key = await make_case(sm, w.public, designation=name, created_on=closed_on - dt.timedelta(days=20))
        async with write_session(sm) as session:
            await change_status(session, viewer, rid, "closed", outcome="substantiated", notify=False, today=closed_on)
            if label:
                await add_label(session, viewer, rid, label)
        ids[name] = rid
    page = w.admin_browser.get("/retention")
    w.admin_browser.post("/locale", data={"csrf": csrf_of(page.text), "locale": "en", "back": "/retention"})
    page = w.admin_browser.get("/retention")
    assert page.status_code == 200
    assert "365" in page.text and 'href="/retention"' in page.text
    upcoming = page.text.split('id="upcoming"')[1].split("</table>")[0]
    holds = page.text.split('id="legal-holds"')[1].split("</table>")[0]
    assert "R-OLDONE" in upcoming and "R-SOONER" in upcoming
    assert (today - dt.timedelta(days=350) + dt.timedelta(days=365)).isoformat() in upcoming
    # Every closed case is listed with its day (the admin trial asked for it), but not one on hold.
    assert "R-LATER9" in upcoming and (today - dt.timedelta(days=10) + dt.timedelta(days=365)).isoformat() in upcoming
    assert "R-HOLDME" not in upcoming
    assert "R-HOLDME" in holds
    caseworker = await invite(w, "carla", "caseworker")
    assert caseworker.get("/retention").status_code == 403

    # The housekeeping loop runs the pass once a day, at its first round.
    import asyncio

    calls.clear()
    loop_task = asyncio.create_task(console_app._housekeeping(w.console, interval=0.01))
    try:
        for _ in range(500):
            if calls:
                break
            await asyncio.sleep(0.01)  # polling for the condition, not a fixed wait
        assert calls == [w.console]
    finally:
        loop_task.cancel()
        try:  # let it stop before the pass below: its scrub may hold the database
            await loop_task
        except asyncio.CancelledError:
            pass
    assert await purge_expired_cases(w.console) == 1
    async with sm() as session:
        left = set(await session.scalars(select(Report.designation)))
    assert "R-OLDONE" not in left and {"R-SOONER", "R-HOLDME", "R-LATER9"} <= left
    page = w.admin_browser.get("/retention")
    assert "R-OLDONE" not in page.text and 'id="purged-count">1 case purged' in page.text
    audit_page = w.admin_browser.get("/audit?action=purge")
    assert "Closed cases purged" in audit_page.text and "count=1" in audit_page.text
