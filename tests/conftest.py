"""Shared fixtures: a private data dir per test, migrated databases (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

PG_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}
STORAGE_TABLES = (
    "report_fields",
    "reports",
    "system_settings",
    "processed_updates",
    "user_preferences",
    "bot_mailboxes",
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'nazaha.db'}"


def _run(coro: object) -> object:
    """asyncio.run in a helper thread: works even when called from a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**PG_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run (dropped afterwards)."""
    from nazaha.storage.migrations import upgrade_database

    name = f"nazaha_test_{secrets.token_hex(6)}"
    try:
        _run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"PostgreSQL at {PG_DSN['host']}:{PG_DSN['port']} is unreachable: {exc}")
    url = f"postgresql+asyncpg://{PG_DSN['user']}@{PG_DSN['host']}:{PG_DSN['port']}/{name}"
    try:
        _run(upgrade_database(url))
        yield url
    finally:
        _run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    """The URL of an empty database (no migration run) on each backend; PostgreSQL's is made
    here and dropped afterwards (skipped when the server is unreachable)."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    name = f"nazaha_test_empty_{secrets.token_hex(6)}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is unreachable: {exc}")
    try:
        yield f"postgresql+asyncpg://{PG_DSN['user']}@{PG_DSN['host']}:{PG_DSN['port']}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[object]:
    """A migrated, empty database on each backend."""
    from sqlalchemy import text

    from nazaha.storage.database import create_engine
    from nazaha.storage.migrations import upgrade_database

    if request.param == "sqlite":
        await upgrade_database(sqlite_url)
        eng = create_engine(sqlite_url)
    else:
        eng = create_engine(request.getfixturevalue("pg_url"))
        async with eng.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(STORAGE_TABLES)} CASCADE"))
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessionmaker(engine: object) -> object:
    from nazaha.storage.database import create_sessionmaker

    return create_sessionmaker(engine)  # type: ignore[arg-type]


@pytest.fixture
def team_key() -> object:
    from nazaha.storage.crypto import TeamPrivateKey

    return TeamPrivateKey.generate()


@pytest.fixture
async def vault(sessionmaker: object, team_key: object) -> object:
    """A ReportVault on an initialised database (testing KDF), sealing to ``team_key``."""
    from nazaha.storage.crypto import KDF_TESTING
    from nazaha.storage.reports import ReportVault, initialise_system

    await initialise_system(sessionmaker, team_key.public_key(), KDF_TESTING)  # type: ignore[attr-defined]
    return await ReportVault.load(sessionmaker, team_key.public_key(), kdf_floor=KDF_TESTING)  # type: ignore[attr-defined]
