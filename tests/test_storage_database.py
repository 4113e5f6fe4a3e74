"""Engine set-up, start-up checks and migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text

from nazaha.storage.database import (
    check_database,
    create_engine,
    create_sessionmaker,
    is_sqlite,
    write_lock_for,
    write_transaction,
)
from nazaha.storage.migrations import alembic_config, upgrade_database
from nazaha.storage.models import Base, SystemSetting


async def _schema_diff(engine) -> list:
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def test_migrated_schema_matches_the_models(engine):
    await check_database(engine)
    assert await _schema_diff(engine) == []


async def test_sqlite_pragmas_are_in_effect(data_dir: Path):
    url = f"sqlite+aiosqlite:///{data_dir / 'nested' / 'dir' / 'x.db'}"
    engine = create_engine(url)
    try:
        assert is_sqlite(engine)
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete", "busy_timeout")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "secure_delete": 1,
            "busy_timeout": 10000,
        }
        assert (data_dir / "nested" / "dir" / "x.db").exists()
    finally:
        await engine.dispose()


async def test_check_database_refuses_an_unmigrated_database(sqlite_url: str):
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(RuntimeError, match="nazaha init"):
            await check_database(engine)
        await upgrade_database(sqlite_url)
        await check_database(engine)
    finally:
        await engine.dispose()


async def test_check_database_names_a_pragma_that_is_off(sqlite_url: str):
    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)

    @event.listens_for(engine.sync_engine, "connect")
    def _foreign_keys_off(dbapi_connection, _record):
        dbapi_connection.cursor().execute("PRAGMA foreign_keys=OFF")

    try:
        with pytest.raises(RuntimeError, match="foreign_keys"):
            await check_database(engine)
    finally:
        await engine.dispose()


async def test_foreign_keys_are_enforced(engine):
    from sqlalchemy.exc import IntegrityError

    from nazaha.storage.models import ReportField

    sessionmaker = create_sessionmaker(engine)
    with pytest.raises(IntegrityError):
        async with write_transaction(sessionmaker) as session:
            session.add(ReportField(report_id="0" * 32, name="description", sealed=b"x"))


async def test_write_transactions_begin_immediate_and_ddl_is_transactional(sqlite_url: str):
    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn, cursor, statement, *args):
        statements.append(statement)

    try:
        sessionmaker = create_sessionmaker(engine)
        async with write_transaction(sessionmaker) as session:
            session.add(SystemSetting(name="x", value=b"1"))
        assert "BEGIN IMMEDIATE" in statements
        statements.clear()
        async with sessionmaker() as session:
            await session.get(SystemSetting, "x")
        assert statements[0] == "BEGIN"

        # A CREATE TABLE rolled back really disappears (the driver would autocommit it).
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TABLE scratch (x INTEGER)"))
            await conn.rollback()
        async with engine.connect() as conn:
            names = (await conn.exec_driver_sql("SELECT name FROM sqlite_master")).scalars().all()
        assert "scratch" not in names
    finally:
        await engine.dispose()


async def test_write_lock_is_per_sqlite_engine(sqlite_url: str, engine):
    other = create_engine(sqlite_url)
    try:
        lock = write_lock_for(other)
        assert lock is not None and write_lock_for(other) is lock
        if is_sqlite(engine):
            assert write_lock_for(engine) is not lock
        else:
            assert write_lock_for(engine) is None
    finally:
        await other.dispose()


async def test_migrations_do_not_depend_on_the_working_directory(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    config = alembic_config(sqlite_url)
    assert Path(config.get_main_option("script_location")).is_absolute()
    await upgrade_database(sqlite_url)
    await upgrade_database(sqlite_url)  # idempotent
    engine = create_engine(sqlite_url)
    try:
        await check_database(engine)
    finally:
        await engine.dispose()


# -- migration 0003: a seized bot host yields nothing ----------------------------------------

DRAFT_MARKER = "مسودة بلاغ draft-marker-2718"
REPORT_ID = "a" * 32


async def test_head_is_0012_awareness_fixes_0009_awareness_tables_epochs_indexes_outcome_and_key_column_come_and_go_and_neither_0004_nor_0003_can_be_downgraded(sqlite_url: str):
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(sqlite_url)
    script = ScriptDirectory.from_config(config)
    assert script.get_current_head() == "0012"
    assert script.get_revision("0012").down_revision == "0011"
    assert script.get_revision("0011").down_revision == "0010"
    assert script.get_revision("0010").down_revision == "0009"
    assert script.get_revision("0009").down_revision == "0008"
    assert script.get_revision("0008").down_revision == "0007"
    assert script.get_revision("0007").down_revision == "0006"
    assert script.get_revision("0006").down_revision == "0005"
    assert script.get_revision("0005").down_revision == "0004"
    assert script.get_revision("0004").down_revision == "0003"
    assert script.get_revision("0003").down_revision == "0002"

    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)

    async def version() -> str:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()

    async def indexes() -> set[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))
            return {name for (name,) in rows if name.startswith("ix_")}

    async def report_columns() -> set[str]:
        async with engine.connect() as conn:
            return {row[1] for row in await conn.execute(text("PRAGMA table_info(reports)"))}

    async def received_columns() -> list[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("PRAGMA index_info(ix_reports_received)"))
            return [row[2] for row in rows]

    received_0005 = ["created_on", "id", "status", "kind", "category", "service", "sector", "governorate", "designation"]

    try:
        inbox = {"ix_reports_inbox", "ix_reports_received", "ix_case_messages_unread_by_staff"}
        assert inbox <= await indexes()
        assert {"reporter_public_key", "key_epoch"} <= await report_columns()
        assert await received_columns() == [*received_0005, "outcome"]

        def migrate(step, target):
            def run(sync_conn):
                config.attributes["connection"] = sync_conn
                step(config, target)

            return run

        async with engine.begin() as conn:  # 0007 drops its column, rows stay
            await conn.execute(
                text(
                    "INSERT INTO reports (id, designation, kind, created_on, team_key_id,"
                    " wrapped_key_team, wrapped_key_reporter, receipt_lookup, reporter_public_key)"
                    " VALUES (:id, 'R-KEEP01', 'complaint', '2026-01-02', 'k', x'01', x'02',"
                    " x'03', x'04')"
                ),
                {"id": REPORT_ID},
            )
            await conn.execute(
                text("INSERT INTO report_fields (report_id, name, sealed) VALUES (:id, 'f', x'05')"),
                {"id": REPORT_ID},
            )
            await conn.run_sync(migrate(command.downgrade, "0005"))
        assert await version() == "0005" and not {"reporter_public_key", "key_epoch"} & await report_columns()
        async with engine.connect() as conn:  # 0009's awareness tables went with it
            tables = {name for (name,) in await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
            assert not tables & {"subscribers", "broadcasts", "broadcast_outbox", "surveys", "campaigns"}
        assert await received_columns() == received_0005  # 0006 is only an index
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM reports"))).scalar() == 1
            assert (await conn.execute(text("SELECT count(*) FROM report_fields"))).scalar() == 1
        async with engine.begin() as conn:  # 0005 is only indexes: it goes down and up again
            await conn.run_sync(migrate(command.downgrade, "0004"))
        assert await version() == "0004" and not inbox & await indexes()
        async with engine.begin() as conn:
            await conn.run_sync(migrate(command.upgrade, "head"))
        assert await version() == "0012" and inbox <= await indexes()
        assert await received_columns() == [*received_0005, "outcome"]
        async with engine.connect() as conn:  # the old report comes back with no key, epoch 0
            keys = (await conn.execute(text("SELECT reporter_public_key, key_epoch FROM reports"))).all()
            assert keys == [(None, 0)]
            assert (await conn.execute(text("SELECT count(*) FROM case_key_epochs"))).scalar() == 0
            assert (await conn.execute(text("SELECT count(*) FROM report_fields"))).scalar() == 1

        for target in ("0003", "0002"):
            with pytest.raises(NotImplementedError, match="backup"):
                async with engine.begin() as conn:
                    await conn.run_sync(migrate(command.downgrade, target))
            assert await version() == "0012"
        assert inbox <= await indexes()  # nothing was undone
        await check_database(engine)
        assert await _schema_diff(engine) == []
    finally:
        await engine.dispose()


async def _fill_a_0002_database(engine) -> None:
    """Rows of every table 0003 drops or reshapes, as the old bot wrote them."""
    statements = [
        (
            "INSERT INTO reports (id, designation, kind, status, outcome, created_on, team_key_id,"
            " wrapped_key_team, wrapped_key_reporter, receipt_lookup) VALUES (:id, 'R-AAAAAA',"
            " 'complaint', 'in_review', NULL, '2026-01-02', 'k', x'01', x'02', x'03')",
            {"id": REPORT_ID},
        ),
        ("INSERT INTO report_fields (report_id, name, sealed) VALUES (:id, 'description', x'04')",
         {"id": REPORT_ID}),
        ("INSERT INTO report_fields (report_id, name, sealed) VALUES (:id, 'when', x'05')",
         {"id": REPORT_ID}),
        ("INSERT INTO system_settings (name, value) VALUES ('receipt_salt', x'0607')", {}),
        (
            "INSERT INTO case_messages (id, report_id, seq, direction, sealed_body, created_on,"
            " read_by_reporter, read_by_staff) VALUES ('m1', :id, 1, 'staff', x'08', '2026-01-03', 0, 1)",
            {"id": REPORT_ID},
        ),
        (
            "INSERT INTO evidence (id, report_id, seq, kind, size_bytes, has_clean_copy, flagged,"
            " sealed_meta, added_on, source) VALUES ('e1', :id, 1, 'photo', 10, 1, NULL, x'09',"
            " '2026-01-02', 'report')",
            {"id": REPORT_ID},
        ),
        (
            "INSERT INTO fsm_records (key, state, sealed_data, expires_at, expired) VALUES"
            " ('k1', 'ReportForm:description', :data, '2026-01-04 10:11:12', 0)",
            {"data": DRAFT_MARKER.encode()},
        ),
        (
            "INSERT INTO staff_users (id, username, password_phc, role, sealed_team_key, created_on)"
            " VALUES (1, 'caseworker-marker', '$argon2id$v=19$m=1,t=1,p=1$x$y', 'admin', x'0a',"
            " '2026-01-01')",
            {},
        ),
        ("INSERT INTO receipt_attempts (key, window, count) VALUES ('attempt-marker', '2026010410', 3)", {}),
        (
            "INSERT INTO notification_links (id, report_id, chat_pseudonym, sealed_chat, created_on)"
            " VALUES ('l1', :id, 'chat-pseudonym-marker', x'0b', '2026-01-02')",
            {"id": REPORT_ID},
        ),
        ("INSERT INTO pending_notifications (report_id, created_at) VALUES (:id, '2026-01-03 09:08:07')",
         {"id": REPORT_ID}),
        ("INSERT INTO user_preferences (pseudonym, sealed) VALUES ('prefs-marker', x'0c')", {}),
        ("INSERT INTO processed_updates (bot_id, update_id, processed_on) VALUES (7123456789, 5, '2026-01-04')",
         {}),
    ]
    async with engine.begin() as conn:
        for sql, params in statements:
            await conn.execute(text(sql), params)


async def test_upgrade_from_0002_drops_drafts_staff_and_old_links_and_keeps_reports(sqlite_url: str):
    from sqlalchemy import inspect

    from nazaha.storage.database import checkpoint_wal

    await upgrade_database(sqlite_url, "0002")
    engine = create_engine(sqlite_url)
    try:
        await _fill_a_0002_database(engine)
        await upgrade_database(sqlite_url)
        await check_database(engine)
        assert await _schema_diff(engine) == []

        def tables(sync_conn):
            inspector = inspect(sync_conn)
            return {
                name: {c["name"] for c in inspector.get_columns(name)}
                for name in inspector.get_table_names()
            }

        async with engine.connect() as conn:
            found = await conn.run_sync(tables)

            async def rows(sql: str) -> list[tuple]:
                return [tuple(r) for r in (await conn.execute(text(sql))).all()]

            # Gone, with their contents.
            assert not {"fsm_records", "staff_users", "receipt_attempts"} & set(found)
            assert {"bot_mailboxes", "notification_instructions"} <= set(found)
            # Reports and everything sealed under their keys: intact.
            assert await rows("SELECT id, designation, status FROM reports") == [
                (REPORT_ID, "R-AAAAAA", "in_review")
            ]
            assert await rows("SELECT name, sealed FROM report_fields ORDER BY name") == [
                ("description", b"\x04"), ("when", b"\x05")
            ]
            assert await rows("SELECT value FROM system_settings") == [(b"\x06\x07",)]
            assert await rows("SELECT id, sealed_body FROM case_messages") == [("m1", b"\x08")]
            assert await rows("SELECT id, sealed_meta FROM evidence") == [("e1", b"\x09")]
            # The news stays pending, without its time; the old links (chat ids under the
            # bot key alone) are gone and the new table has the twice-sealed shape.
            assert found["pending_notifications"] == {"id", "report_id"}
            assert await rows("SELECT report_id FROM pending_notifications") == [(REPORT_ID,)]
            assert found["notification_links"] == {"id", "report_id", "sealed_link", "created_on"}
            assert await rows("SELECT * FROM notification_links") == []
            # Pseudonymous rows are emptied (the pepper is rotated) and get expiry columns.
            assert found["user_preferences"] == {"pseudonym", "sealed", "expires_at"}
            assert found["processed_updates"] == {"bot_id", "update_id", "claimed_at"}
            assert await rows("SELECT * FROM user_preferences") == []
            assert await rows("SELECT * FROM processed_updates") == []
            # Foreign keys still hold after the table rebuilds.
            assert await rows("PRAGMA foreign_key_check") == []
        await checkpoint_wal(engine)
    finally:
        await engine.dispose()
    # secure_delete zeroes what was dropped: the draft's text is nowhere in the file.
    database = sqlite_url.split("///", 1)[1]
    content = Path(database).read_bytes()
    wal = Path(database + "-wal")
    if wal.exists():
        content += wal.read_bytes()
    for marker in (DRAFT_MARKER.encode(), b"caseworker-marker", b"chat-pseudonym-marker", b"prefs-marker"):
        assert marker not in content, marker


# -- migration 0004: the workflow's codes and the reporter's withdrawals ---------------------

# (id, status, outcome) before 0004 -> (status, outcome) after.
OLD_CODES = [
    ("01", "received", None, "received", None),
    ("02", "acknowledged", None, "acknowledged", None),
    ("03", "in_review", None, "in_review", None),
    ("04", "referred", None, "referred", None),
    ("05", "referred", "referred", "referred", None),
    ("06", "in_review", "referred", "referred", None),  # the referral was the last act
    ("07", "closed", "referred", "referred", None),  # no outcome means "referred" now
    ("08", "closed", "no_jurisdiction", "closed", "out_of_scope"),
    ("09", "closed", "substantiated", "closed", "substantiated"),
    ("10", "closed", "not_substantiated", "closed", "not_substantiated"),
    ("11", "closed", None, "closed", None),  # nothing invented for it
    ("12", "in_review", "substantiated", "in_review", None),  # an outcome only when closed
    ("13", "acknowledged", "no_jurisdiction", "acknowledged", None),
]



async def test_upgrade_from_0003_maps_the_old_codes_and_adds_the_withdrawal_days(empty_url: str):
    from sqlalchemy import inspect

    await upgrade_database(empty_url, "0003")
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            for n, status, outcome, _status, _outcome in OLD_CODES:
                await conn.execute(
                    text(
                        "INSERT INTO reports (id, designation, kind, status, outcome, created_on,"
                        " team_key_id, wrapped_key_team, wrapped_key_reporter, receipt_lookup)"
                        " VALUES (:id, :designation, 'corruption', :status, :outcome, :day, 'k',"
                        " :team, :reporter, :lookup)"
                    ),
                    {
                        "id": n * 16,
                        "designation": f"R-{n}",
                        "status": status,
                        "outcome": outcome,
                        "day": dt.date(2026, 1, 2),
                        "team": b"t" + n.encode(),
                        "reporter": b"r" + n.encode(),
                        "lookup": b"l" + n.encode(),
                    },
                )
            await conn.execute(
                text("INSERT INTO report_fields (report_id, name, sealed) VALUES (:id, 'contact_name', :v)"),
                {"id": "01" * 16, "v": b"\x04"},
            )
        await upgrade_database(empty_url)
        await check_database(engine)
        assert await _schema_diff(engine) == []

        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync_conn: {c["name"]: c for c in inspect(sync_conn).get_columns("reports")}
            )
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, status, outcome, contact_withdrawn_on, withdrawn_on,"
                        " wrapped_key_team FROM reports ORDER BY id"
                    )
                )
            ).all()
            fields = (await conn.execute(text("SELECT report_id, name, sealed FROM report_fields"))).all()
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version == "0012"
        for name in ("contact_withdrawn_on", "withdrawn_on"):
            assert columns[name]["nullable"] and "DATE" in str(columns[name]["type"]).upper()
        assert [(r.id[:2], r.status, r.outcome) for r in rows] == [
            (n, status, outcome) for n, _s, _o, status, outcome in OLD_CODES
        ]
        assert all(r.contact_withdrawn_on is None and r.withdrawn_on is None for r in rows)
        assert [bytes(r.wrapped_key_team) for r in rows] == [b"t" + n.encode() for n, *_ in OLD_CODES]
        assert [(f.report_id, f.name, bytes(f.sealed)) for f in fields] == [("01" * 16, "contact_name", b"\x04")]
    finally:
        await engine.dispose()
