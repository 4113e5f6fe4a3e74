"""Helpers for the case-work tests: a console store on SQLite or a throwaway PostgreSQL
database, staff accounts, and cases written straight into the tables (real crypto, any
dates and triage values), much faster than going through the bot."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from nazaha.services.access import Viewer
from nazaha.storage.cases import EvidenceRecord, _message_field, evidence_row_values
from nazaha.storage.console_db import create_console_engine, prepare_console_store
from nazaha.storage.console_models import StaffUser
from nazaha.storage.crypto import TeamPublicKey, new_data_key, seal_field, wrap_for_team
from nazaha.storage.database import create_sessionmaker, write_session
from nazaha.storage.migrations import upgrade_database
from nazaha.storage.models import CaseMessage, Evidence, Report, ReportField

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**PG, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def console_store(backend: str, tmp_path: Path) -> AsyncIterator[object]:
    """A migrated bot database with the console store, on ``backend``; its engine."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'nazaha.db'}"
        dropper = None
    else:
        name = f"nazaha_casework_{secrets.token_hex(6)}"
        try:
            await _pg_admin(f'CREATE DATABASE "{name}"')
        except (OSError, asyncio.TimeoutError) as exc:
            pytest.skip(f"PostgreSQL at {PG['host']}:{PG['port']} is unreachable: {exc}")
        url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
        dropper = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    try:
        await upgrade_database(url)
        engine = create_console_engine(url, tmp_path / "console")
        try:
            await prepare_console_store(engine)
            yield engine
        finally:
            await engine.dispose()
    finally:
        if dropper:
            await _pg_admin(dropper)


async def add_staff(sessionmaker, username: str, role: str, state: str = "active") -> Viewer:
    user_id = hashlib.sha256(username.encode()).hexdigest()[:32]
    async with write_session(sessionmaker) as session:
        session.add(
            StaffUser(id=user_id, username=username, role=role, state=state, locale="en", created_at=NOW)
        )
    return Viewer(user_id, role)


def evidence(file_name: str, caption: str | None = None) -> EvidenceRecord:
    return EvidenceRecord(
        id=secrets.token_hex(16),
        kind="document",
        size_bytes=1234,
        has_clean_copy=False,
        flagged=None,
        file_name=file_name,
        mime_type="application/pdf",
        forward_origin=None,
        sha256=hashlib.sha256(file_name.encode()).hexdigest(),
        caption=caption,
    )


async def make_case(
    sessionmaker,
    team_public: TeamPublicKey,
    *,
    created_on: dt.date = dt.date(2026, 11, 1),
    kind: str = "corruption",
    category: str | None = "bribery",
    service: str | None = None,
    sector: str | None = "ministry",
    governorate: str | None = "nablus",
    status: str = "received",
    outcome: str | None = None,
    designation: str | None = None,
    fields: dict[str, str] | None = None,
    messages: Sequence[tuple[str, str, bool]] = (),
    files: Sequence[EvidenceRecord] = (),
) -> tuple[str, bytes]:
    """Store one case; ``messages`` are ``(direction, body, read_by_staff)``. Returns the
    report id and its data key."""
    report_id, data_key = secrets.token_hex(16), new_data_key()
    fields = fields if fields is not None else {"description": "a bribe was asked for a permit"}
    async with write_session(sessionmaker) as session:
        session.add(
            Report(
                id=report_id,
                designation=designation or "R-" + secrets.token_hex(3).upper(),
                kind=kind,
                category=category,
                service=service,
                sector=sector,
                governorate=governorate,
                status=status,
                outcome=outcome,
                created_on=created_on,
                team_key_id=team_public.key_id,
                wrapped_key_team=wrap_for_team(data_key, team_public, report_id),
                wrapped_key_reporter=secrets.token_bytes(60),
                receipt_lookup=secrets.token_bytes(32),
            )
        )
        await session.flush()
        session.add_all(
            ReportField(report_id=report_id, name=name, sealed=seal_field(data_key, report_id, name, value.encode()))
            for name, value in fields.items()
        )
        for seq, (direction, body, read_by_staff) in enumerate(messages, start=1):
            message_id = secrets.token_hex(16)
            session.add(
                CaseMessage(
                    id=message_id,
                    report_id=report_id,
                    seq=seq,
                    direction=direction,
                    sealed_body=seal_field(data_key, report_id, _message_field(message_id, direction), body.encode()),
                    created_on=created_on,
                    read_by_reporter=direction == "reporter",
                    read_by_staff=read_by_staff,
                )
            )
        for seq, record in enumerate(files, start=1):
            session.add(Evidence(**evidence_row_values(data_key, report_id, record, seq, "report")))
    return report_id, data_key


def sessionmaker_of(engine):
    return create_sessionmaker(engine)
