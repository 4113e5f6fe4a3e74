"""Engine set-up, start-up checks and migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

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
