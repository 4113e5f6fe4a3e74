"""Upgrading an older data dir: from before 0003, secrets rotated, drafts gone, WAL truncated;
from 0003, only the workflow's codes change (0004), 0005 adds indexes, 0006 the outcome to one of them 0007 a nullable column, 0008 the case key epochs 0009 the awareness tables and 0010-0012 the awareness trial's fixes."""

from __future__ import annotations

import sqlite3

from nazaha.bot.settings import Settings
from nazaha.bot.upgrade import current_revision, upgrade_data_dir
from nazaha.storage.keyfiles import KeyPaths, ensure_bot_secrets
from nazaha.storage.migrations import upgrade_database

CANARY = b"draft-canary-sealed-under-the-old-bot-key"


async def test_upgrade_from_0002_rotates_the_bot_secrets_and_scrubs_old_rows(data_dir, sqlite_url):
    await upgrade_database(sqlite_url, "0002")
    paths = KeyPaths.for_data_dir(data_dir)
    old_key, old_pepper = ensure_bot_secrets(paths)
    with sqlite3.connect(data_dir / "nazaha.db") as db:
        db.execute(
            "INSERT INTO fsm_records (key, state, sealed_data, expired) VALUES (?, ?, ?, 0)",
            ("pseudonym", "ReportForm:active", CANARY),
        )
    settings = Settings(data_dir=data_dir, database_url=sqlite_url)
    result = await upgrade_data_dir(settings)
    assert result.scrubbed and not result.rotate_env_secrets
    assert await current_revision(sqlite_url) == "0012"
    assert paths.bot_key.read_bytes() != old_key
    assert paths.pepper.read_bytes() != old_pepper
    with sqlite3.connect(data_dir / "nazaha.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "fsm_records" not in tables and "staff_users" not in tables
    for name in ("nazaha.db", "nazaha.db-wal"):
        path = data_dir / name
        if path.exists():
            assert CANARY not in path.read_bytes(), name


async def test_a_new_database_is_not_scrubbed_and_keeps_its_secrets(data_dir, sqlite_url):
    paths = KeyPaths.for_data_dir(data_dir)
    key, pepper = ensure_bot_secrets(paths)
    result = await upgrade_data_dir(Settings(data_dir=data_dir, database_url=sqlite_url))
    assert not result.scrubbed
    assert (paths.bot_key.read_bytes(), paths.pepper.read_bytes()) == (key, pepper)


async def test_upgrade_from_0003_maps_old_codes_and_keeps_the_secrets(data_dir, sqlite_url):
    await upgrade_database(sqlite_url, "0003")
    paths = KeyPaths.for_data_dir(data_dir)
    key, pepper = ensure_bot_secrets(paths)
    with sqlite3.connect(data_dir / "nazaha.db") as db:
        for n, status, outcome in (("1", "closed", "no_jurisdiction"), ("2", "in_review", "referred")):
            db.execute(
                "INSERT INTO reports (id, designation, kind, status, outcome, created_on, team_key_id,"
                " wrapped_key_team, wrapped_key_reporter, receipt_lookup) VALUES (?, ?, 'complaint',"
                " ?, ?, '2026-01-02', 'k', x'01', x'02', ?)",
                (n * 32, f"R-{n}", status, outcome, n.encode()),
            )
    result = await upgrade_data_dir(Settings(data_dir=data_dir, database_url=sqlite_url))
    assert not result.scrubbed and not result.rotate_env_secrets
    assert await current_revision(sqlite_url) == "0012"
    assert (paths.bot_key.read_bytes(), paths.pepper.read_bytes()) == (key, pepper)
    with sqlite3.connect(data_dir / "nazaha.db") as db:
        rows = db.execute(
            "SELECT status, outcome, contact_withdrawn_on, withdrawn_on FROM reports ORDER BY id"
        ).fetchall()
    assert rows == [("closed", "out_of_scope", None, None), ("referred", None, None, None)]
