"""The console's database connection: the bot's database plus the console's own store.

One engine serves the console. Its connections reach the bot's tables (reports, thread,
evidence: unqualified names) and the console's tables (schema ``console``, see
:mod:`nazaha.storage.console_models`):

* SQLite: the console's store is a separate file, ``console.db`` in the console dir, attached
  to every connection as ``console``. The bot process never attaches it.
* PostgreSQL: the schema ``console`` of the same database, on which the bot's role has no
  privilege (docs/deployment-roles.sql).

The console secret (``console-secret.key`` in the console dir, 32 random bytes, mode 0600)
is what, besides a staff member's password, unwraps their private key and what seals TOTP
secrets and recovery codes: the console's database alone, with a guessed password, is not
enough.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from nazaha.storage.console_models import CONSOLE_SCHEMA, ConsoleBase
from nazaha.storage.database import create_engine

CONSOLE_DB_NAME = "console.db"
CONSOLE_SECRET_NAME = "console-secret.key"


def console_db_path(console_dir: Path) -> Path:
    return Path(console_dir) / CONSOLE_DB_NAME


def create_console_engine(database_url: str, console_dir: Path, **kwargs: Any) -> AsyncEngine:
    """An engine on the bot's database with the console's store reachable as ``console``.

    On SQLite the store file is created (mode 0600, in a 0700 directory) if missing.
    """
    engine = create_engine(database_url, **kwargs)
    if engine.dialect.name != "sqlite":
        return engine
    console_dir = Path(console_dir)
    console_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = console_db_path(console_dir)
    if not store.exists():
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    bot_database = make_url(database_url).database or ""
    if Path(bot_database).resolve() == store.resolve():
        raise ValueError("the console store must not be the bot's database file")

    @event.listens_for(engine.sync_engine, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"ATTACH DATABASE ? AS {CONSOLE_SCHEMA}", (str(store),))
            # The same guarantees as the bot's file (storage.database.SQLITE_PRAGMAS).
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "journal_size_limit=0"):
                cursor.execute(f"PRAGMA {CONSOLE_SCHEMA}.{pragma}")
        finally:
            cursor.close()

    return engine


# Columns added to existing tables after their first release: (table, column, SQL type and
# default). ``create_all`` makes missing tables only; a store made before gets these added.
ADDED_COLUMNS = (
    ("staff_users", "can_export", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("staff_users", "key_mac", "VARCHAR(64)"),
    ("staff_users", "chat_link_id", "VARCHAR(32)"),
    ("staff_users", "chat_name", "TEXT"),
)


async def prepare_console_store(engine: AsyncEngine) -> None:
    """Create the console's tables if they do not exist, and add the columns of
    :data:`ADDED_COLUMNS` a store made by an earlier version lacks (idempotent)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {CONSOLE_SCHEMA}"))
        await conn.run_sync(ConsoleBase.metadata.create_all)
        for table, column, declaration in ADDED_COLUMNS:
            present = await conn.run_sync(
                lambda sync, table=table: {c["name"] for c in inspect(sync).get_columns(table, schema=CONSOLE_SCHEMA)}
            )
            if column not in present:
                await conn.execute(text(f"ALTER TABLE {CONSOLE_SCHEMA}.{table} ADD COLUMN {column} {declaration}"))


def ensure_console_secret(console_dir: Path) -> bytes:
    """Read the console secret, creating it (0600) on first use."""
    from nazaha.storage.keyfiles import _ensure_private_dir, _ensure_secret_file

    console_dir = Path(console_dir)
    _ensure_private_dir(console_dir)
    return _ensure_secret_file(console_dir / CONSOLE_SECRET_NAME, "console secret")


async def scrub_console_store(engine: AsyncEngine) -> None:
    """SQLite: checkpoint and truncate both WAL files the console writes (its store and the
    bot's database), so that deleted keys (a reset or removed member's, the first admin's
    bootstrap copy of the team key) leave no old page behind; ``secure_delete`` zeroes the
    freed pages. A no-op on PostgreSQL (VACUUM there)."""
    from nazaha.storage.database import checkpoint_wal

    await checkpoint_wal(engine, CONSOLE_SCHEMA)
    await checkpoint_wal(engine)
