"""The console's hash-chained audit log: append, head export, verify, CLI (issue 9, "Audit")."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nazaha.services import audit
from nazaha.storage.console_db import (
    create_console_engine,
    ensure_console_secret,
    prepare_console_store,
)
from nazaha.storage.crypto import audit_entry_hash
from nazaha.storage.database import create_sessionmaker, write_session, write_transaction
from tests.casework_support import PG, _pg_admin

T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
ALICE = "a1" * 16
BOB = "b2" * 16
REPORT_1 = "0f" * 16
REPORT_2 = "1e" * 16
LOG = "console.audit_entries"


@dataclass
class Store:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret: bytes
    heads_dir: Path


async def _open_store(url: str, console_dir: Path, **engine_kwargs: object) -> Store:
    engine = create_console_engine(url, console_dir, **engine_kwargs)
    await prepare_console_store(engine)
    return Store(
        engine, create_sessionmaker(engine), ensure_console_secret(console_dir), console_dir / "heads"
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    data_dir = tmp_path / "var"
    opened = await _open_store(f"sqlite+aiosqlite:///{data_dir / 'nazaha.db'}", tmp_path / "var-console")
    try:
        yield opened
    finally:
        await opened.engine.dispose()


@pytest.fixture
async def pg_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A throwaway PostgreSQL database per test (dropped afterwards)."""
    name = f"nazaha_audit_{secrets.token_hex(6)}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncio.TimeoutError) as exc:
        pytest.skip(f"PostgreSQL at {PG['host']}:{PG['port']} is unreachable: {exc}")
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    try:
        opened = await _open_store(url, tmp_path / "console", pool_size=25, max_overflow=0)
        try:
            yield opened
        finally:
            await opened.engine.dispose()
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


ACTIONS = [
    (ALICE, audit.LOGIN, None, None),
    (ALICE, audit.CASE_VIEW, REPORT_1, None),
    (ALICE, audit.STATUS_CHANGE, REPORT_1, {"status": "in_review", "from": "acknowledged"}),
    (None, audit.LOGIN_FAILED, None, {"reason": "password"}),
    (BOB, audit.EVIDENCE_ORIGINAL, REPORT_2, {"file": 2, "clean": False}),
    (BOB, audit.REPLY, REPORT_2, {"template": "ack", "notified": True}),
    (ALICE, audit.NOTE, REPORT_1, None),
    (ALICE, audit.LOGOUT, None, None),
]


async def _fill(store: Store, count: int = 8) -> None:
    for i in range(count):
        actor, action, report, detail = ACTIONS[i % len(ACTIONS)]
        async with write_transaction(store.sessionmaker) as session:
            await audit.append(
                session, actor_id=actor, action=action, report_id=report, detail=detail,
                now=T0 + dt.timedelta(minutes=i),
            )


async def _sql(store: Store, statement: str, **params: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(statement), params)


async def _rows(store: Store) -> list:
    async with store.engine.connect() as conn:
        return list((await conn.execute(text(f"SELECT * FROM {LOG} ORDER BY seq"))).mappings())


def _kinds(result: audit.VerifyResult) -> set[tuple[int, str]]:
    return {(p.seq, p.kind) for p in result.problems}


async def _export(store: Store) -> audit.ExportedHead:
    path = await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    return audit.load_head(path)


# --------------------------------------------------------------------------- appending


async def test_an_intact_chain_verifies(store: Store) -> None:
    await _fill(store)
    rows = await _rows(store)
    assert [row["seq"] for row in rows] == list(range(1, 9))
    assert rows[0]["prev_hash"] == "0" * 64
    for before, after in zip(rows, rows[1:]):
        assert after["prev_hash"] == before["hash"]
    result = await audit.verify(store.sessionmaker, store.secret)
    assert result == audit.VerifyResult(ok=True, problems=(), entries=8, last_seq=8, heads=0)


async def test_the_hash_covers_every_field_in_a_canonical_encoding(store: Store) -> None:
    await _fill(store, 3)
    row = (await _rows(store))[2]
    assert row["detail"] == '{"from":"acknowledged","status":"in_review"}'
    expected = audit_entry_hash(
        3, "2025-03-01T08:02:00.000000Z", ALICE, "status_change", row["case_ref"], row["detail"],
        (await _rows(store))[1]["hash"],
    )
    assert row["hash"] == expected
    # None and "" differ; moving a character between fields changes the hash.
    base = (1, "t", None, "login", None, "{}", "0" * 64)
    assert audit_entry_hash(*base) != audit_entry_hash(1, "t", "", "login", None, "{}", "0" * 64)
    assert audit_entry_hash(1, "t", "ab", "c", None, "{}", "0" * 64) != audit_entry_hash(
        1, "t", "a", "bc", None, "{}", "0" * 64
    )


async def test_cases_appear_only_as_random_references(store: Store) -> None:
    await _fill(store)
    rows = await _rows(store)
    dump = json.dumps([dict(row) for row in rows], default=str)
    assert REPORT_1 not in dump and REPORT_2 not in dump
    refs = {row["action"]: row["case_ref"] for row in rows}
    assert refs["case_view"] == refs["status_change"] == refs["note"] != refs["reply"]
    assert refs["login"] is None and len(refs["case_view"]) == 32
    async with store.sessionmaker() as session:
        assert await audit.case_ref_for(session, REPORT_1) == refs["case_view"]
        assert await audit.case_ref_for(session, "ff" * 16) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "delete_everything"},
        {"detail": {"note": "the reporter says the minister took a bribe"}},  # free text
        {"detail": {"status": "x" * 65}},
        {"detail": {"status": "closed<script>"}},
        {"detail": {"status": "مغلق"}},
        {"detail": {"nested": {"a": 1}}},
        {"detail": {"ratio": 0.5}},
        {"detail": {"Bad Key": "x"}},
        {"detail": {"n": 2**60}},
        {"detail": {f"k{i}": i for i in range(17)}},
        {"actor_id": "alice@example.org"},
        {"report_id": "R-7KQ2MX/../x"},
    ],
)
async def test_append_rejects_anything_but_known_codes(store: Store, kwargs: dict) -> None:
    arguments = {"actor_id": ALICE, "action": audit.STATUS_CHANGE} | kwargs
    async with write_transaction(store.sessionmaker) as session:
        with pytest.raises(audit.AuditRejected):
            await audit.append(session, **arguments)
    assert await _rows(store) == []


DETAIL = {"originals": False, "files": 3, "referral": None, "format": "zip:v1.0-a_b", "x": "x" * 64}


async def test_accepted_detail_values(store: Store) -> None:
    async with write_transaction(store.sessionmaker) as session:
        record = await audit.append(
            session, actor_id=ALICE, action=audit.EXPORT, report_id=REPORT_1,
            detail=DETAIL,
        )
    assert record.detail == DETAIL
    assert (await audit.verify(store.sessionmaker, store.secret)).ok


async def test_an_entry_commits_or_rolls_back_with_its_action(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with write_transaction(store.sessionmaker) as session:
            await audit.append(session, actor_id=ALICE, action=audit.CASE_VIEW, report_id=REPORT_1)
            raise RuntimeError("the action failed")
    assert await _rows(store) == []
    async with store.sessionmaker() as session:
        assert await audit.case_ref_for(session, REPORT_1) is None
    await _fill(store, 1)
    assert [row["seq"] for row in await _rows(store)] == [1]


async def test_concurrent_appends_make_one_chain_on_sqlite(store: Store) -> None:
    async def one(i: int) -> int:
        async with write_transaction(store.sessionmaker) as session:
            record = await audit.append(session, actor_id=ALICE, action=audit.CASE_VIEW, detail={"i": i})
        return record.seq

    seqs = await asyncio.gather(*(one(i) for i in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    result = await audit.verify(store.sessionmaker, store.secret)
    assert result.ok and result.entries == 20


async def test_entries_pages_newest_first_with_filters(store: Store) -> None:
    await _fill(store, 16)
    async with store.sessionmaker() as session:
        first = await audit.entries(session, page=1, page_size=5)
        assert [e.seq for e in first] == [16, 15, 14, 13, 12]
        assert [e.seq for e in await audit.entries(session, page=4, page_size=5)] == [1]
        assert await audit.entries(session, page=5, page_size=5) == []
        bob = await audit.entries(session, page=1, page_size=50, actor_id=BOB)
        assert {e.action for e in bob} == {"evidence_original", "reply"} and len(bob) == 4
        views = await audit.entries(session, page=1, page_size=50, action=audit.CASE_VIEW)
        assert [e.seq for e in views] == [10, 2]
        case = await audit.entries(session, page=1, page_size=50, report_id=REPORT_2)
        assert [e.seq for e in case] == [14, 13, 6, 5]
        assert case[0].detail == {"notified": True, "template": "ack"}
        assert case[0].at == T0 + dt.timedelta(minutes=13)
        assert await audit.count_entries(session) == 16
        assert await audit.count_entries(session, actor_id=ALICE, action=audit.NOTE) == 2
        assert await audit.count_entries(session, report_id="ff" * 16) == 0
        with pytest.raises(ValueError):
            await audit.entries(session, page=0, page_size=5)


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "case_view"),
        ("actor_id", BOB),
        ("detail", '{"status":"closed"}'),
        ("at", "2025-03-01 07:00:00.000000"),
        ("case_ref", None),
        ("hash", "f" * 64),
    ],
)
async def test_an_edited_entry_is_detected(store: Store, column: str, value: object) -> None:
    await _fill(store)
    await _sql(store, f"UPDATE {LOG} SET {column} = :value WHERE seq = 3", value=value)
    result = await audit.verify(store.sessionmaker, store.secret)
    assert not result.ok
    assert (3, audit.EDITED) in _kinds(result)


async def test_a_deleted_entry_is_detected(store: Store) -> None:
    await _fill(store)
    await _sql(store, f"DELETE FROM {LOG} WHERE seq IN (4, 5)")
    result = await audit.verify(store.sessionmaker, store.secret)
    assert _kinds(result) == {(4, audit.MISSING), (6, audit.CHAIN_BROKEN)}
    assert result.problems[0].describe() == "entries 4-5: entries deleted (gap in the sequence)"


async def test_a_deleted_first_entry_is_detected(store: Store) -> None:
    await _fill(store)
    await _sql(store, f"DELETE FROM {LOG} WHERE seq = 1")
    result = await audit.verify(store.sessionmaker, store.secret)
    assert _kinds(result) == {(1, audit.MISSING), (2, audit.CHAIN_BROKEN)}


async def test_a_forged_entry_at_the_end_is_detected(store: Store) -> None:
    await _fill(store)
    last = (await _rows(store))[-1]
    await _sql(
        store,
        f"INSERT INTO {LOG} (seq, at, actor_id, action, case_ref, detail, prev_hash, hash, exported) "
        "VALUES (9, '2025-03-01 09:00:00.000000', :actor, 'logout', NULL, '{}', :prev, :hash, 0)",
        actor=BOB, prev=last["hash"], hash="ab" * 32,
    )
    assert _kinds(await audit.verify(store.sessionmaker, store.secret)) == {(9, audit.EDITED)}


async def test_an_entry_inserted_in_the_middle_is_detected(store: Store) -> None:
    await _fill(store)
    rows = await _rows(store)
    # Make room after seq 4 and insert a well-formed entry chained to seq 4.
    await _sql(store, f"UPDATE {LOG} SET seq = seq + 100 WHERE seq > 4")
    await _sql(store, f"UPDATE {LOG} SET seq = seq - 99 WHERE seq > 100")
    forged_hash = audit_entry_hash(
        5, "2025-03-01T08:03:30.000000Z", BOB, "login", None, "{}", rows[3]["hash"]
    )
    await _sql(
        store,
        f"INSERT INTO {LOG} (seq, at, actor_id, action, case_ref, detail, prev_hash, hash, exported) "
        "VALUES (5, '2025-03-01 08:03:30.000000', :actor, 'login', NULL, '{}', :prev, :hash, 0)",
        actor=BOB, prev=rows[3]["hash"], hash=forged_hash,
    )
    result = await audit.verify(store.sessionmaker, store.secret)
    kinds = _kinds(result)
    assert (6, audit.CHAIN_BROKEN) in kinds  # the old entry 5 does not chain to the forged one
    assert {(seq, audit.EDITED) for seq in range(6, 10)} <= kinds  # renumbered entries
    assert not any(seq <= 5 for seq, _kind in kinds)


async def test_an_entry_outside_the_chain_is_detected(store: Store) -> None:
    await _fill(store, 3)
    await _sql(
        store,
        f"INSERT INTO {LOG} (seq, at, actor_id, action, case_ref, detail, prev_hash, hash, exported) "
        "VALUES (0, '2025-03-01 07:00:00.000000', NULL, 'login', NULL, '{}', :zero, :zero, 0)",
        zero="0" * 64,
    )
    assert _kinds(await audit.verify(store.sessionmaker, store.secret)) == {(0, audit.INSERTED)}


async def test_reordered_entries_are_detected(store: Store) -> None:
    await _fill(store)
    await _sql(store, f"UPDATE {LOG} SET seq = 1000 WHERE seq = 3")
    await _sql(store, f"UPDATE {LOG} SET seq = 3 WHERE seq = 6")
    await _sql(store, f"UPDATE {LOG} SET seq = 6 WHERE seq = 1000")
    kinds = _kinds(await audit.verify(store.sessionmaker, store.secret))
    assert {(3, audit.EDITED), (6, audit.EDITED), (3, audit.CHAIN_BROKEN), (4, audit.CHAIN_BROKEN),
            (6, audit.CHAIN_BROKEN), (7, audit.CHAIN_BROKEN)} == kinds


async def test_unreadable_values_are_reported_not_raised(store: Store) -> None:
    await _fill(store)
    await _sql(store, f"UPDATE {LOG} SET at = 'yesterday' WHERE seq = 2")
    await _sql(store, f"UPDATE {LOG} SET detail = x'00ff' WHERE seq = 5")
    await _sql(store, f"UPDATE {LOG} SET seq = 'eight' WHERE seq = 8")
    result = await audit.verify(store.sessionmaker, store.secret)
    assert not result.ok
    assert {(2, audit.UNREADABLE), (5, audit.UNREADABLE), (8, audit.UNREADABLE)} <= _kinds(result)


async def test_a_dropped_log_is_truncated_against_a_head(store: Store) -> None:
    await _fill(store)
    head = await _export(store)
    await _sql(store, f"DROP TABLE {LOG}")
    result = await audit.verify(store.sessionmaker, store.secret, head)
    assert _kinds(result) == {(8, audit.TRUNCATED)}


# --------------------------------------------------------------------------- heads


async def test_export_head_writes_an_authenticated_private_file(store: Store) -> None:
    await _fill(store, 5)
    path = await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    assert path == store.heads_dir / "audit-head-5.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.heads_dir.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    rows = await _rows(store)
    assert doc == {
        "seq": 5,
        "hash": rows[-1]["hash"],
        "at": "2025-03-01T08:04:00.000000Z",
        "mac": audit.head_mac(store.secret, 5, rows[-1]["hash"]),
    }
    assert all(row["exported"] for row in rows)
    await _fill(store, 2)
    assert [bool(row["exported"]) for row in await _rows(store)][-3:] == [True, False, False]
    newer = await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    assert newer.name == "audit-head-7.json"
    assert audit.latest_exported_head(store.heads_dir) == audit.load_head(newer)
    assert [p.name for p in audit.head_files(store.heads_dir)] == ["audit-head-5.json", "audit-head-7.json"]
    heads = [audit.load_head(p) for p in audit.head_files(store.heads_dir)]
    result = await audit.verify(store.sessionmaker, store.secret, heads=heads)
    assert result.ok and result.heads == 2


async def test_an_empty_log_exports_the_genesis_head(store: Store) -> None:
    assert audit.latest_exported_head(store.heads_dir) is None
    head = await _export(store)
    assert (head.seq, head.hash, head.at) == (0, "0" * 64, None)
    assert (await audit.verify(store.sessionmaker, store.secret, head)).ok


async def test_a_truncated_log_is_detected_against_a_head(store: Store) -> None:
    await _fill(store)
    head = await _export(store)
    await _sql(store, f"DELETE FROM {LOG} WHERE seq >= 6")
    # Without the head the shorter chain is self-consistent: that is what heads are for.
    assert (await audit.verify(store.sessionmaker, store.secret)).ok
    result = await audit.verify(store.sessionmaker, store.secret, head)
    assert _kinds(result) == {(8, audit.TRUNCATED)}


async def test_a_consistently_rewritten_log_is_detected_against_a_head(store: Store) -> None:
    await _fill(store)
    head = await _export(store)
    # Remove entry 3 (Alice's status change) and rebuild every later hash consistently.
    await _sql(store, f"DELETE FROM {LOG} WHERE seq = 3")
    await _sql(store, f"UPDATE {LOG} SET seq = seq - 1 WHERE seq > 3")
    prev = "0" * 64
    for row in await _rows(store):
        at = audit.timestamp_text(dt.datetime.fromisoformat(row["at"]).replace(tzinfo=dt.timezone.utc))
        new_hash = audit_entry_hash(
            row["seq"], at, row["actor_id"], row["action"], row["case_ref"], row["detail"], prev
        )
        await _sql(
            store, f"UPDATE {LOG} SET prev_hash = :p, hash = :h WHERE seq = :s",
            p=prev, h=new_hash, s=row["seq"],
        )
        prev = new_hash
    assert (await audit.verify(store.sessionmaker, store.secret)).ok  # consistent on its own
    assert _kinds(await audit.verify(store.sessionmaker, store.secret, head)) == {(8, audit.TRUNCATED)}
    # The same rewrite padded back to 8 entries: the entry at the head's seq differs.
    async with write_transaction(store.sessionmaker) as session:
        await audit.append(session, actor_id=ALICE, action=audit.LOGOUT, now=T0 + dt.timedelta(minutes=7))
    assert (await audit.verify(store.sessionmaker, store.secret)).ok
    assert _kinds(await audit.verify(store.sessionmaker, store.secret, head)) == {(8, audit.REWRITTEN)}


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc | {"seq": 6},
        lambda doc: doc | {"hash": "0" * 64},
        lambda doc: doc | {"mac": "0" * 64},
        lambda doc: doc | {"at": "2025-03-01T09:00:00.000000Z"},
    ],
    ids=["seq", "hash", "mac", "at"],
)
async def test_an_edited_head_file_is_detected(store: Store, edit) -> None:
    await _fill(store)
    path = await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    head = audit.load_head(path)
    result = await audit.verify(store.sessionmaker, store.secret, head)
    assert [(p.kind) for p in result.problems] == [audit.HEAD_FORGED]


async def test_a_head_made_with_another_secret_is_forged(store: Store) -> None:
    await _fill(store)
    head = await _export(store)
    result = await audit.verify(store.sessionmaker, secrets.token_bytes(32), head)
    assert _kinds(result) == {(8, audit.HEAD_FORGED)}


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"seq": 1, "hash": "x", "at": null, "mac": "y"}', '{"seq": "1"}'],
)
def test_a_malformed_head_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "audit-head-1.json"
    path.write_text(content)
    with pytest.raises(audit.HeadFileError):
        audit.load_head(path)
    with pytest.raises(audit.HeadFileError):
        audit.latest_exported_head(tmp_path)


async def test_export_refuses_to_authenticate_a_tampered_log(store: Store) -> None:
    await _fill(store, 4)
    await _export(store)
    await _fill(store, 3)
    await _sql(store, f"UPDATE {LOG} SET action = 'login' WHERE seq = 6")
    with pytest.raises(audit.AuditChainBroken) as caught:
        await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    assert {(p.seq, p.kind) for p in caught.value.problems} == {(6, audit.EDITED)}
    assert [p.name for p in audit.head_files(store.heads_dir)] == ["audit-head-4.json"]
    assert not any(row["exported"] for row in (await _rows(store))[4:])


async def test_export_refuses_when_the_log_was_rewritten_below_the_latest_head(store: Store) -> None:
    await _fill(store, 4)
    await _export(store)
    await _sql(store, f"DELETE FROM {LOG} WHERE seq = 4")
    with pytest.raises(audit.AuditChainBroken) as caught:
        await audit.export_head(store.sessionmaker, store.secret, store.heads_dir)
    assert (4, audit.TRUNCATED) in {(p.seq, p.kind) for p in caught.value.problems}


# --------------------------------------------------------------------------- PostgreSQL


async def test_append_and_verify_on_postgresql(pg_store: Store) -> None:
    await _fill(pg_store)
    head = await _export(pg_store)
    assert (await audit.verify(pg_store.sessionmaker, pg_store.secret, head)).ok
    async with pg_store.sessionmaker() as session:
        assert [e.seq for e in await audit.entries(session, page=1, page_size=3)] == [8, 7, 6]
    await _sql(pg_store, f"UPDATE {LOG} SET detail = '{{}}' WHERE seq = 3")
    await _sql(pg_store, f"DELETE FROM {LOG} WHERE seq = 8")
    result = await audit.verify(pg_store.sessionmaker, pg_store.secret, head)
    assert _kinds(result) == {(3, audit.EDITED), (8, audit.TRUNCATED)}


async def _overlapping_appends(store: Store, count: int) -> list[object]:
    """``count`` transactions that have all begun before any of them appends."""
    barrier = asyncio.Barrier(count)

    async def one(i: int) -> int:
        async with write_session(store.sessionmaker) as session:
            await session.execute(text("SELECT 1"))
            await barrier.wait()
            record = await audit.append(session, actor_id=BOB, action=audit.CASE_VIEW, detail={"i": i})
        return record.seq

    return await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True), timeout=60
    )


async def test_concurrent_appends_make_one_chain_on_postgresql(pg_store: Store) -> None:
    seqs = await _overlapping_appends(pg_store, 20)
    assert sorted(seqs) == list(range(1, 21))
    result = await audit.verify(pg_store.sessionmaker, pg_store.secret)
    assert result.ok and result.entries == 20


async def test_without_the_advisory_lock_concurrent_appends_collide(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_lock(_session: AsyncSession) -> None:
        return None

    monkeypatch.setattr(audit, "_serialise_appends", no_lock)
    outcomes = await _overlapping_appends(pg_store, 10)
    # Transactions that read the same last entry collide on seq (how many depends on timing):
    # without the lock appends fail, but the chain never forks.
    assert any(isinstance(o, IntegrityError) for o in outcomes)
    assert all(isinstance(o, (int, IntegrityError)) for o in outcomes)
    assert (await audit.verify(pg_store.sessionmaker, pg_store.secret)).ok


# --------------------------------------------------------------------------- command line


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings for ``nazaha`` in a tmp data dir; main()'s logging set-up and umask undone."""
    from nazaha.bot import cli

    for name in list(os.environ):
        if name.startswith("NAZAHA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NAZAHA_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    umask = os.umask(0o077)
    os.umask(umask)
    try:
        yield tmp_path
    finally:
        os.umask(umask)


def _run_cli(*argv: str) -> int:
    from nazaha.bot.cli import main

    try:
        main(list(argv))
    except SystemExit as exc:
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)  # what the interpreter does with SystemExit("...")
        return 1
    return 0


async def _cli_store(root: Path) -> Store:
    return await _open_store(f"sqlite+aiosqlite:///{root / 'var' / 'nazaha.db'}", root / "var-console")


def _with_store(root: Path, work) -> None:
    async def run() -> None:
        opened = await _cli_store(root)
        try:
            await work(opened)
        finally:
            await opened.engine.dispose()

    asyncio.run(run())


def test_cli_verify_and_export_head(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _with_store(cli_env, _fill)
    assert _run_cli("audit", "verify") == 0
    assert "intact: 8 entries, checked against no exported head" in capsys.readouterr().out
    assert _run_cli("audit", "export-head") == 0
    head_file = cli_env / "var-console" / "audit-heads" / "audit-head-8.json"
    assert str(head_file) in capsys.readouterr().out
    assert _run_cli("audit", "verify") == 0
    assert "against 1 exported head(s)" in capsys.readouterr().out

    off_host = cli_env / "off-host"
    assert _run_cli("audit", "export-head", "--out", str(off_host)) == 0
    assert (off_host / "audit-head-8.json").exists()
    capsys.readouterr()

    _with_store(cli_env, lambda s: _sql(s, f"DELETE FROM {LOG} WHERE seq >= 7"))
    assert _run_cli("audit", "verify", "--heads-dir", str(off_host)) == 1
    err = capsys.readouterr().err
    assert "audit: entry 8: log truncated before an exported head" in err
    assert "Traceback" not in err
    assert _run_cli("audit", "verify", "--head", str(head_file)) == 1
    assert _run_cli("audit", "export-head") == 1
    assert "no head exported" in capsys.readouterr().err


def test_cli_verify_reports_each_problem_on_its_own_line(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def tamper(store: Store) -> None:
        await _fill(store)
        await _sql(store, f"UPDATE {LOG} SET actor_id = NULL WHERE seq = 2")
        await _sql(store, f"DELETE FROM {LOG} WHERE seq = 5")

    _with_store(cli_env, tamper)
    assert _run_cli("audit", "verify") == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "audit: entry 2: entry edited (its hash does not match)",
        "audit: entry 5: entries deleted (gap in the sequence)",
        "audit: entry 6: chain broken (previous hash does not match)",
        "Audit log TAMPERED: 3 problem(s) in 7 entries, checked against no exported head.",
    ]


def test_cli_refuses_a_forged_or_malformed_head(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _with_store(cli_env, _fill)
    assert _run_cli("audit", "export-head") == 0
    head_file = cli_env / "var-console" / "audit-heads" / "audit-head-8.json"
    doc = json.loads(head_file.read_text())
    head_file.write_text(json.dumps(doc | {"seq": 3}))
    capsys.readouterr()
    assert _run_cli("audit", "verify", "--head", str(head_file)) == 1
    assert "entry 3: exported head forged" in capsys.readouterr().err
    head_file.write_text("not json")
    assert _run_cli("audit", "verify", "--head", str(head_file)) == 1
    assert "not an audit head file" in capsys.readouterr().err


def test_cli_verify_needs_the_existing_console_secret(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli("audit", "verify") == 1
    assert "no console secret" in capsys.readouterr().err
    assert not (cli_env / "var-console" / "console-secret.key").exists()


def test_cli_exit_status_in_a_real_process(cli_env: Path) -> None:
    async def tamper(store: Store) -> None:
        await _fill(store, 3)
        await _sql(store, f"UPDATE {LOG} SET action = 'logout' WHERE seq = 1")

    _with_store(cli_env, tamper)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")}
    env |= {"NAZAHA_DATA_DIR": str(cli_env / "var"), "PYTHONPATH": str(Path(audit.__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "nazaha.bot.cli", "audit", "verify"],
        cwd=cli_env, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "audit: entry 1: entry edited (its hash does not match)"
    assert "Traceback" not in done.stderr
