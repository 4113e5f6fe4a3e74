"""Upgrading a data dir: migrate the database, then clear what an older release left
readable on the bot host (issue 7: drafts and notification links sealed under the bot key,
old row versions in the WAL).

Migration 0003 drops drafts, staff keys and old notification links. What the old bot key
and pepper protected may still sit in free space or old row versions, so after it the bot key
and pepper are rotated (files in the data dir; secrets given through the environment must be
replaced by the operator, who is told), the database is VACUUMed and SQLite's WAL truncated.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from sqlalchemy.engine import Connection

from nazaha.bot.settings import Settings
from nazaha.storage.database import create_engine
from nazaha.storage.keyfiles import KeyPaths, rotate_bot_secrets
from nazaha.storage.migrations import upgrade_database

log = logging.getLogger(__name__)

SEIZURE_PROOF_REVISION = "0003"


@dataclass(frozen=True)
class UpgradeResult:
    scrubbed: bool  # an older release's data was cleared and the bot secrets rotated
    rotate_env_secrets: bool  # NAZAHA_BOT_KEY / NAZAHA_PEPPER must be replaced by hand


async def current_revision(url: str) -> str | None:
    """The database's Alembic revision, None for a new (empty) database."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def heads(sync_conn: Connection) -> set[str]:
                return set(MigrationContext.configure(sync_conn).get_current_heads())

            found = await conn.run_sync(heads)
    finally:
        await engine.dispose()
    return max(found) if found else None


async def scrub_database(url: str) -> None:
    """VACUUM (rewrites the database without free pages) and, on SQLite, truncate the WAL.

    Runs outside any transaction, as VACUUM must: SQLite through the standard library
    (the engine's own BEGIN handling would wrap it), PostgreSQL in autocommit."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if not database or database == ":memory:":
            return

        def vacuum() -> None:
            connection = sqlite3.connect(database, isolation_level=None)
            try:
                connection.execute("PRAGMA secure_delete=ON")
                connection.execute("VACUUM")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()

        await asyncio.to_thread(vacuum)
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("VACUUM")
    finally:
        await engine.dispose()


async def upgrade_data_dir(settings: Settings) -> UpgradeResult:
    """Migrate the database to the newest revision; when that crosses 0003 on an existing
    database, rotate the bot secrets and scrub the database (see module docstring)."""
    url = settings.effective_database_url
    before = await current_revision(url)
    await upgrade_database(url)
    if before is None or before >= SEIZURE_PROOF_REVISION:
        return UpgradeResult(scrubbed=False, rotate_env_secrets=False)
    paths = KeyPaths.for_data_dir(settings.data_dir)
    from_env = bool(settings.bot_key or settings.pepper)
    if paths.bot_key.exists() or paths.pepper.exists():
        rotate_bot_secrets(paths)
    await scrub_database(url)
    log.info("data dir upgraded: drafts and old links cleared, bot secrets rotated")
    return UpgradeResult(scrubbed=True, rotate_env_secrets=from_env)


__all__ = ["UpgradeResult", "current_revision", "scrub_database", "upgrade_data_dir"]
