"""Alembic migrations, usable from an installed package (no alembic.ini, no working dir).

``upgrade_database(url)`` runs inside the caller's event loop: the async engine hands a
sync connection to Alembic through ``config.attributes["connection"]`` (see env.py).
The ``alembic`` command line also works, from anywhere, with
``alembic -c nazaha/storage/migrations/alembic.ini`` and ``NAZAHA_DATABASE_URL`` set.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Kept out of the ini-style options (no %-interpolation of passwords).
        config.attributes["url"] = url
    return config


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest)."""
    from nazaha.storage.database import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, url, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
