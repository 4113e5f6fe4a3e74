"""Readiness probes: is what the bot needs reachable right now?

A probe is an async function of no arguments that returns when its dependency answers and
raises otherwise; :func:`readiness` runs a set of named probes at once, each under a
timeout, and says which failed (by exception type only: messages can name hosts, paths or
users). The webhook server's ``/readyz`` runs :func:`bot_probes`; code that adds a
dependency (a Redis client, a blob store) adds its probe there.

* ``database``: on SQLite, the database file opened anew read-write (never created) and its
  schema read; elsewhere ``SELECT 1`` on a connection from the engine's pool.
* ``redis`` (only when ``NAZAHA_REDIS_URL`` is set): ``PING`` through the bot's own client.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

Probe = Callable[[], Awaitable[None]]
PROBE_TIMEOUT = 2.0  # seconds, each probe


def sqlite_file(engine: AsyncEngine) -> Path | None:
    """The database file of a SQLite engine; None for other databases and memory ones."""
    url = make_url(str(engine.url))
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def database_probe(engine: AsyncEngine) -> Probe:
    path = sqlite_file(engine)

    async def probe_sqlite() -> None:
        assert path is not None
        await asyncio.to_thread(_read_sqlite_schema, path)

    async def probe_pool() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return probe_sqlite if path is not None else probe_pool


def _read_sqlite_schema(path: Path) -> None:
    # mode=rw: a missing file is an error here, never created empty in its place.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1.0)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()


def redis_probe(client: Any) -> Probe:
    """PING through ``client`` (the bot's own ``redis.asyncio.Redis``, with its TLS and
    credentials; nazaha/storage/redis_link.py): a pooled connection, or a new one when the
    old ones broke."""

    async def probe() -> None:
        if not await client.ping():
            raise ConnectionError("redis did not answer PING")

    return probe


def bot_probes(runtime: Any) -> dict[str, Probe]:
    """The probes of a running bot (:class:`nazaha.bot.app.BotRuntime`)."""
    probes = {"database": database_probe(runtime.engine)}
    if runtime.shared is not None:  # NAZAHA_REDIS_URL set
        probes["redis"] = redis_probe(runtime.shared.redis)
    return probes


async def readiness(probes: Mapping[str, Probe], timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Run every probe at once: {name: "ok" or "failed (<ExceptionType>)"}."""

    async def run(probe: Probe) -> str:
        try:
            await asyncio.wait_for(probe(), timeout)
        except asyncio.TimeoutError:
            return "failed (timeout)"
        except Exception as exc:
            return f"failed ({type(exc).__name__})"
        return "ok"

    names = list(probes)
    results = await asyncio.gather(*(run(probes[name]) for name in names))
    return dict(zip(names, results))


__all__ = ["Probe", "bot_probes", "database_probe", "readiness", "redis_probe", "sqlite_file"]
