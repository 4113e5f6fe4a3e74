"""`nazaha backup` / `nazaha restore` / `nazaha purge-log export` (issue 10, Backups).

A real data dir (``nazaha init``'s own code, the recovery file outside it) and console store;
reports written the bot's way (the sealed blob first, then the rows) by a task that keeps
writing while the backup runs; the restore opened with the team key from the recovery file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from nazaha.bot.app import blob_root, kdf_floor
from nazaha.bot.cli import build_parser
from nazaha.bot.settings import Settings
from nazaha.bot.setup import initialise
from nazaha.services import backup as backup_module
from nazaha.services.backup import (
    BackupError,
    export_purge_log,
    make_backup,
    purge_hash,
    read_purge_log,
    restore_backup,
)
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import EvidenceRecord, evidence_row_values
from nazaha.storage.console_db import (
    CONSOLE_SECRET_NAME,
    create_console_engine,
    ensure_console_secret,
    prepare_console_store,
)
from nazaha.storage.console_models import CaseNote, CaseState, PurgedCaseAggregate, PurgeLogEntry
from nazaha.storage.crypto import new_data_key, seal_field, wrap_for_team
from nazaha.storage.database import create_sessionmaker, write_session
from nazaha.storage.keyfiles import KeyPaths, check_bot_host_data_dir, load_team_private_key, load_team_public_key
from nazaha.storage.models import Evidence, Report, ReportField
from nazaha.storage.reports import ReportVault

from tests.casework_support import PG, _pg_admin

GOOD = "olive lantern mends a copper kite at dusk"
WAIT = 30.0  # seconds: an upper bound for conditions, never a sleep


def make_settings(root: Path, database_url: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=root / "var",
        database_url=database_url,
        kdf_profile="testing",
        bot_token="123:test-token",
        telegram_api_url="http://127.0.0.1:9",
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("NAZAHA_"):
            monkeypatch.delenv(name)


class Live:
    """An installation: data dir, console store, team key; reports written the bot's way."""

    def __init__(self, settings: Settings, recovery: Path) -> None:
        self.settings = settings
        self.recovery = recovery
        self.paths = KeyPaths.for_data_dir(settings.data_dir)
        self.blobs = BlobStore(blob_root(settings), durable=False)
        self.written: list[tuple[str, str]] = []  # (report id, designation)

    async def start(self) -> None:
        await initialise(self.settings, passphrase=GOOD, recovery_file=self.recovery)
        console_dir = self.settings.effective_console_dir
        self.engine = create_console_engine(self.settings.effective_database_url, console_dir)
        await prepare_console_store(self.engine)
        self.sessionmaker = create_sessionmaker(self.engine)
        self.console_secret = ensure_console_secret(console_dir)
        self.team_public = load_team_public_key(self.paths)

    async def close(self) -> None:
        await self.engine.dispose()

    async def store_report(self, description: str) -> tuple[str, str]:
        """One report with one evidence file: the blob first, then the rows (as the bot)."""
        report_id, data_key = secrets.token_hex(16), new_data_key()
        designation = "R-" + secrets.token_hex(3).upper()
        record = EvidenceRecord(
            id=secrets.token_hex(16), kind="document", size_bytes=len(description), has_clean_copy=False,
            flagged=None, file_name="evidence.txt", mime_type="text/plain", forward_origin=None,
            sha256="0" * 64, caption=None,
        )
        await self.blobs.write_bytes(data_key, report_id, record.id, "original", description.encode())
        async with write_session(self.sessionmaker) as session:
            session.add(
                Report(
                    id=report_id, designation=designation, kind="corruption", category="bribery",
                    sector="ministry", governorate="nablus", status="received",
                    created_on=dt.date(2026, 11, 1), team_key_id=self.team_public.key_id,
                    wrapped_key_team=wrap_for_team(data_key, self.team_public, report_id),
                    wrapped_key_reporter=secrets.token_bytes(60), receipt_lookup=secrets.token_bytes(32),
                )
            )
            await session.flush()
            session.add(
                ReportField(
                    report_id=report_id, name="description",
                    sealed=seal_field(data_key, report_id, "description", description.encode()),
                )
            )
            session.add(Evidence(**evidence_row_values(data_key, report_id, record, 1, "report")))
            session.add(CaseState(report_id=report_id, priority="high"))
            session.add(CaseNote(id=secrets.token_hex(16), report_id=report_id, seq=1, sealed=b"x" * 40,
                                 created_at=dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)))
        self.written.append((report_id, designation))
        return report_id, designation


@pytest.fixture
async def live(tmp_path):
    (tmp_path / "usb").mkdir()
    installation = Live(make_settings(tmp_path / "live"), tmp_path / "usb" / "team-recovery.key")
    await installation.start()
    try:
        yield installation
    finally:
        await installation.close()


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def open_restored(settings: Settings, recovery: Path):
    """The restored installation's sessionmaker, vault and team private key."""
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    sessionmaker = create_sessionmaker(engine)
    paths = KeyPaths.for_data_dir(settings.data_dir)
    vault = await ReportVault.load(sessionmaker, load_team_public_key(paths), kdf_floor=kdf_floor(settings))
    team_private = load_team_private_key(recovery, GOOD, floor=kdf_floor(settings))
    return engine, sessionmaker, vault, team_private


async def check_restored_reports(settings: Settings, recovery: Path, live: Live) -> int:
    """Every restored report opens with the team key, and its evidence blob too; the rows are
    consistent with each other. Returns how many reports were restored."""
    engine, sessionmaker, vault, team_private = await open_restored(settings, recovery)
    try:
        restored = await count(sessionmaker, Report)
        assert await count(sessionmaker, ReportField) == restored
        assert await count(sessionmaker, Evidence) == restored
        assert await count(sessionmaker, CaseState) == restored
        blobs = BlobStore(blob_root(settings))
        async with sessionmaker() as session:
            designations = set((await session.execute(select(Report.designation))).scalars())
        by_designation = {d: rid for rid, d in live.written}
        for designation in designations:
            report = await vault.open_with_team(designation, team_private)
            assert report.fields["description"].startswith("report ")
            case = await vault.unlock_with_team(designation, team_private)
            async with sessionmaker() as session:
                file_id = await session.scalar(select(Evidence.id).where(Evidence.report_id == case.report_id))
            content = await blobs.read_bytes(case.data_key, case.report_id, file_id, "original")
            assert content.decode() == report.fields["description"]
            assert by_designation[designation] == case.report_id
        return restored
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- under load


async def test_backup_during_write_load_restores_consistently(live, tmp_path, monkeypatch):
    for n in range(3):
        await live.store_report(f"report {n}")
    stop = asyncio.Event()
    progress = threading.Condition()

    async def writer() -> None:
        n = 3
        while not stop.is_set():
            await live.store_report(f"report {n}")
            n += 1
            with progress:
                progress.notify_all()
            await asyncio.sleep(0)

    def wait_for_writes(more: int) -> None:
        """Block (in the backup's worker thread) until the writer has committed ``more``
        reports: the backup demonstrably runs while reports are being written."""
        target = len(live.written) + more
        with progress:
            assert progress.wait_for(lambda: len(live.written) >= target, timeout=WAIT)

    real_copy, real_blobs = backup_module._sqlite_copy, backup_module._copy_blobs
    seen: dict[str, int] = {}

    def slow_copy(src, dst):
        wait_for_writes(2)
        seen.setdefault("at_db_copy", len(live.written))
        return real_copy(src, dst)

    def slow_blobs(*args):
        wait_for_writes(2)  # reports (and their blobs) written after the database copy
        return real_blobs(*args)

    monkeypatch.setattr(backup_module, "_sqlite_copy", slow_copy)
    monkeypatch.setattr(backup_module, "_copy_blobs", slow_blobs)
    task = asyncio.create_task(writer())
    try:
        before = len(live.written)
        result = await make_backup(live.settings, tmp_path / "backup")
        await asyncio.wait_for(asyncio.to_thread(wait_for_writes, 1), WAIT)
    finally:
        stop.set()
        await task
    final = len(live.written)
    manifest = result.manifest
    in_backup = manifest["counts"]["reports"]
    assert before < in_backup < final, (before, in_backup, final)
    assert in_backup >= seen["at_db_copy"]
    # Only the blobs the copy refers to: the ones written afterwards are not in it.
    assert manifest["counts"]["blobs"] == manifest["counts"]["evidence"] == in_backup
    assert manifest["counts"]["console.cases"] >= in_backup
    assert manifest["missing_blobs"] == []
    assert manifest["alembic_revision"]
    assert manifest["backend"] == "sqlite"
    copied = {p.relative_to(result.dest).as_posix() for p in result.dest.rglob("*") if p.is_file()}
    assert copied == set(manifest["files"]) | {"manifest.json"}

    # Files 0600, directories 0700.
    for path in [result.dest, *result.dest.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    restored = make_settings(tmp_path / "restored")
    outcome = await restore_backup(
        restored, result.dest, purge_logs=[], console_secret_file=live.settings.effective_console_dir / CONSOLE_SECRET_NAME
    )
    assert outcome.purged == 0
    assert outcome.orphaned_console_cases == manifest["counts"]["console.cases"] - in_backup
    assert await check_restored_reports(restored, live.recovery, live) == in_backup
    # The restored data dir is a bot host's: `nazaha init` accepts it, the bot would start.
    await initialise(restored, passphrase=None)
    check_bot_host_data_dir(restored.data_dir)


# --------------------------------------------------------------------------- purge log


async def test_restore_purges_again_what_a_newer_purge_log_names(live, tmp_path):
    kept_id, kept = await live.store_report("report kept")
    gone_id, gone = await live.store_report("report purged later")
    open_id, _ = await live.store_report("report still open at the backup, purged later")
    async with write_session(live.sessionmaker) as session:  # closed when the backup is made
        await session.execute(
            update(Report).where(Report.id == gone_id).values(status="closed", outcome="substantiated")
        )
        await session.execute(
            update(CaseState).where(CaseState.report_id == gone_id)
            .values(acknowledged_on=dt.date(2026, 11, 3), closed_on=dt.date(2026, 11, 21))
        )
    result = await make_backup(live.settings, tmp_path / "backup")
    assert result.manifest["purge_log_entries"] == 0

    # After the backup, the live console purges one case (here: only its purge-log entry,
    # which is all the restore reads).
    async with write_session(live.sessionmaker) as session:
        for report_id in (gone_id, open_id):
            session.add(PurgeLogEntry(report_hash=purge_hash(live.console_secret, report_id), purged_on=dt.date(2027, 1, 5)))
    exported = tmp_path / "purge-log.json"
    assert await export_purge_log(live.settings, exported) == 2
    assert set(read_purge_log(exported).entries) == {purge_hash(live.console_secret, r) for r in (gone_id, open_id)}
    assert gone_id not in exported.read_text() and gone not in exported.read_text()

    restored = make_settings(tmp_path / "restored")
    secret_file = live.settings.effective_console_dir / CONSOLE_SECRET_NAME
    outcome = await restore_backup(restored, result.dest, purge_logs=[exported], console_secret_file=secret_file)
    assert outcome.purged == 2
    engine, sessionmaker, vault, team_private = await open_restored(restored, live.recovery)
    try:
        async with sessionmaker() as session:
            assert set((await session.execute(select(Report.id))).scalars()) == {kept_id}
            for table in ("report_fields", "evidence"):
                assert await session.scalar(text(f"SELECT count(*) FROM {table} WHERE report_id = :r"), {"r": gone_id}) == 0
            for table in ("cases", "case_notes"):
                assert await session.scalar(
                    text(f"SELECT count(*) FROM console.{table} WHERE report_id = :r"), {"r": gone_id}
                ) == 0
            logged = set((await session.execute(select(PurgeLogEntry.report_hash))).scalars())
            aggregates = [
                (a.received_month, a.closed_month, a.kind, a.outcome, a.ack_days, a.close_days, a.count)
                for a in await session.scalars(select(PurgedCaseAggregate))
            ]
        assert logged == {purge_hash(live.console_secret, r) for r in (gone_id, open_id)}
        # The case closed in the backup keeps its figures (as its purge kept them in the lost
        # store); the one still open then has none to give.
        assert aggregates == [("2026-11", "2026-11", "corruption", "substantiated", 2, 20, 1)]
        assert not (blob_root(restored) / gone_id).exists()
        assert (blob_root(restored) / kept_id).is_dir()
        assert (await vault.open_with_team(kept, team_private)).fields["description"] == "report kept"
    finally:
        await engine.dispose()
    # The restored database file no longer holds the purged report's id anywhere.
    for name in ("nazaha.db", "nazaha.db-wal"):
        path = restored.data_dir / name
        if path.exists():
            assert gone_id.encode() not in path.read_bytes()


async def test_a_purge_log_without_the_console_secret_is_refused(live, tmp_path):
    gone_id, _ = await live.store_report("report purged later")
    result = await make_backup(live.settings, tmp_path / "backup")
    async with write_session(live.sessionmaker) as session:
        session.add(PurgeLogEntry(report_hash=purge_hash(live.console_secret, gone_id), purged_on=dt.date(2027, 1, 5)))
    exported = tmp_path / "purge-log.json"
    await export_purge_log(live.settings, exported)
    restored = make_settings(tmp_path / "restored")
    with pytest.raises(BackupError, match="console secret"):
        await restore_backup(restored, result.dest, purge_logs=[exported])
    assert not (restored.data_dir / "nazaha.db").exists()


async def test_the_cli_restore_needs_a_purge_log_or_says_there_is_none(live, tmp_path, monkeypatch):
    await live.store_report("report 0")
    result = await make_backup(live.settings, tmp_path / "backup")
    restored = make_settings(tmp_path / "restored")
    args = build_parser().parse_args(["restore", str(result.dest)])
    with pytest.raises(SystemExit, match="--purge-log FILE"):
        await args.func(restored, args)
    assert not restored.data_dir.exists()


# --------------------------------------------------------------------------- refusals, secrets


async def test_backup_refuses_a_non_empty_destination(live, tmp_path):
    dest = tmp_path / "backup"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="not a new empty directory"):
        await make_backup(live.settings, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


async def test_restore_refuses_a_non_empty_data_dir_and_a_tampered_backup(live, tmp_path):
    await live.store_report("report 0")
    result = await make_backup(live.settings, tmp_path / "backup")
    occupied = make_settings(tmp_path / "occupied")
    occupied.data_dir.mkdir(parents=True)
    (occupied.data_dir / "nazaha.db").write_bytes(b"")
    with pytest.raises(BackupError, match="not empty"):
        await restore_backup(occupied, result.dest)
    blob = next(p for p in (result.dest / "data" / "blobs").rglob("*.original"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    fresh = make_settings(tmp_path / "fresh")
    with pytest.raises(BackupError, match="SHA-256 differs"):
        await restore_backup(fresh, result.dest)
    assert not fresh.data_dir.exists() or not any(fresh.data_dir.iterdir())


async def test_secrets_are_left_out_unless_asked_for(live, tmp_path, capsys):
    await live.store_report("report 0")
    bot_key, pepper = live.paths.bot_key.read_bytes(), live.paths.pepper.read_bytes()
    args = build_parser().parse_args(["backup", str(tmp_path / "plain")])
    await args.func(live.settings, args)
    plain = tmp_path / "plain"
    names = {p.name for p in plain.rglob("*")}
    assert not names & {"bot.key", "pepper.key", CONSOLE_SECRET_NAME, "team-recovery.key"}
    assert "team-public.key" in names
    for path in plain.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (bot_key, pepper, live.console_secret, live.recovery.read_bytes()[:64]):
                assert secret not in content, path
    assert "WARNING" not in capsys.readouterr().err

    args = build_parser().parse_args(
        ["backup", str(tmp_path / "full"), "--include-bot-secrets", "--include-console-secret"]
    )
    await args.func(live.settings, args)
    err = capsys.readouterr().err
    assert "WARNING: this backup holds the bot key" in err
    assert "WARNING: this backup holds the console secret" in err
    full = tmp_path / "full"
    assert (full / "data" / "bot.key").read_bytes() == bot_key
    assert (full / "data" / "pepper.key").read_bytes() == pepper
    assert (full / "console" / CONSOLE_SECRET_NAME).read_bytes() == live.console_secret

    # The full backup restores its secrets; no console secret file is needed then.
    restored = make_settings(tmp_path / "restored")
    outcome = await restore_backup(restored, full)
    assert outcome.console_secret_restored and outcome.bot_secrets_restored
    assert KeyPaths.for_data_dir(restored.data_dir).bot_key.read_bytes() == bot_key
    assert (restored.effective_console_dir / CONSOLE_SECRET_NAME).read_bytes() == live.console_secret


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def pg_databases():
    names = [f"nazaha_backup_{secrets.token_hex(5)}" for _ in range(2)]
    try:
        for name in names:
            await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"PostgreSQL at {PG['host']}:{PG['port']} is unreachable: {exc}")
    try:
        yield [f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}" for name in names]
    finally:
        for name in names:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_postgresql_backup_and_restore(tmp_path, pg_databases):
    import shutil

    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not installed")
    source_url, target_url = pg_databases
    (tmp_path / "usb").mkdir()
    live = Live(make_settings(tmp_path / "live", source_url), tmp_path / "usb" / "team-recovery.key")
    await live.start()
    try:
        kept_id, _ = await live.store_report("report kept")
        gone_id, _ = await live.store_report("report purged later")
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                await live.store_report(f"report load {n}")
                n += 1

        task = asyncio.create_task(writer())
        try:
            result = await make_backup(live.settings, tmp_path / "backup")
        finally:
            stop.set()
            await task
        manifest = result.manifest
        assert manifest["backend"] == "postgresql"
        assert (result.dest / "data" / "nazaha.pgdump").is_file()
        assert manifest["counts"]["blobs"] == manifest["counts"]["evidence"] == manifest["counts"]["reports"]
        assert manifest["counts"]["console.cases"] == manifest["counts"]["reports"]
        async with write_session(live.sessionmaker) as session:
            session.add(PurgeLogEntry(report_hash=purge_hash(live.console_secret, gone_id), purged_on=dt.date(2027, 1, 5)))
        exported = tmp_path / "purge-log.json"
        await export_purge_log(live.settings, exported)

        restored = make_settings(tmp_path / "restored", target_url)
        outcome = await restore_backup(
            restored, result.dest, purge_logs=[exported],
            console_secret_file=live.settings.effective_console_dir / CONSOLE_SECRET_NAME,
        )
        assert outcome.purged == 1
        # A second restore into the now non-empty database is refused.
        with pytest.raises(BackupError, match="not empty"):
            await restore_backup(make_settings(tmp_path / "again", target_url), result.dest, purge_logs=[exported],
                                 console_secret_file=live.settings.effective_console_dir / CONSOLE_SECRET_NAME)
        live.written = [(rid, d) for rid, d in live.written if rid != gone_id]
        assert await check_restored_reports(restored, live.recovery, live) == manifest["counts"]["reports"] - 1
    finally:
        await live.close()


async def test_a_case_purged_during_the_backup_is_listed_and_purged_again(live, tmp_path, monkeypatch):
    """Purged between the database copy and the blob copy: its blob is missing from the
    backup (listed in the manifest), and the restore with the newer purge log removes it."""
    kept_id, kept = await live.store_report("report kept")
    gone_id, _ = await live.store_report("report purged during the backup")
    real_blobs = backup_module._copy_blobs
    loop = asyncio.get_running_loop()

    async def purge_now() -> None:
        async with write_session(live.sessionmaker) as session:
            await session.execute(text("DELETE FROM reports WHERE id = :r"), {"r": gone_id})
            session.add(PurgeLogEntry(report_hash=purge_hash(live.console_secret, gone_id), purged_on=dt.date(2027, 1, 5)))
        live.blobs.delete_report(gone_id)

    def purge_then_copy(*args):
        asyncio.run_coroutine_threadsafe(purge_now(), loop).result(WAIT)
        return real_blobs(*args)

    monkeypatch.setattr(backup_module, "_copy_blobs", purge_then_copy)
    result = await make_backup(live.settings, tmp_path / "backup")
    assert [name.split("/")[1] for name in result.missing_blobs] == [gone_id]
    assert result.manifest["counts"]["reports"] == 2
    exported = tmp_path / "purge-log.json"
    await export_purge_log(live.settings, exported)

    restored = make_settings(tmp_path / "restored")
    outcome = await restore_backup(
        restored, result.dest, purge_logs=[exported],
        console_secret_file=live.settings.effective_console_dir / CONSOLE_SECRET_NAME,
    )
    assert outcome.purged == 1 and outcome.missing_blobs == result.missing_blobs
    live.written = [(kept_id, kept)]
    assert await check_restored_reports(restored, live.recovery, live) == 1
