"""What stays in memory leaves it on time, and what reaches the disk carries no fine time."""

from __future__ import annotations

import os
import secrets
import time

from nazaha.handlers.middlewares import RecentUpdates
from nazaha.handlers.session_keys import SessionKeys
from nazaha.storage.blobs import BlobStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_unlocked_cases_are_swept_on_a_timer_not_only_on_the_next_put():
    clock = FakeClock()
    keys: SessionKeys[str] = SessionKeys(900, clock=clock)
    quiet = await keys.put("case-a")
    busy = await keys.put("case-b")
    clock.now += 600
    assert await keys.get(busy) == "case-b"  # activity renews
    clock.now += 301
    assert keys.sweep() == 1  # the quiet one is gone without any new put()
    assert len(keys) == 1 and await keys.get(quiet) is None
    await keys.drop(busy)
    assert len(keys) == 0
    await keys.put("case-c")
    keys.clear()
    assert len(keys) == 0


def test_recent_updates_claim_once_release_on_failure_and_stay_bounded():
    recent = RecentUpdates(size=3)
    assert recent.claim(1, 10)
    assert not recent.claim(1, 10)
    assert recent.claim(2, 10)  # another bot's update 10 is another update
    recent.release(1, 10)
    assert recent.claim(1, 10)
    for update_id in range(11, 20):
        recent.claim(1, update_id)
    assert recent.claim(1, 10)  # the oldest were forgotten: memory stays bounded


async def test_blob_times_are_coarsened_to_the_day(tmp_path):
    blobs = BlobStore(tmp_path / "blobs", durable=False)
    report_id, file_id = secrets.token_hex(16), secrets.token_hex(16)
    await blobs.write_bytes(secrets.token_bytes(32), report_id, file_id, "original", b"x" * 1000)
    path = blobs.path(report_id, file_id, "original")
    for entry in (path, path.parent):
        stat = os.stat(entry)
        assert stat.st_mtime % 86400 == 0 and stat.st_atime % 86400 == 0
    before = os.stat(path).st_ctime_ns
    time.sleep(0.01)  # ctime must visibly move; not a synchronisation
    assert blobs.blur_times() >= 3  # the file, its directory, the root
    after = os.stat(path)
    assert after.st_mtime % 86400 == 0
    assert after.st_ctime_ns > before  # every change time now says "the last blur pass"


async def test_orphan_purge_keeps_stored_reports_and_open_drafts_only(tmp_path, sessionmaker):
    """After a restart every draft is gone, so its blobs are noise (their key was in memory):
    the purge deletes them, but never a stored report's nor an open draft's."""
    import dataclasses
    import datetime as dt
    from types import SimpleNamespace

    from aiogram.fsm.storage.base import StorageKey

    from nazaha.bot.app import purge_orphan_blobs
    from nazaha.flows import report_flow as flow
    from nazaha.handlers.evidence import EvidenceIntake
    from nazaha.storage.database import write_transaction
    from nazaha.storage.fsm import VolatileFsmStorage
    from nazaha.storage.models import Report

    blobs = BlobStore(tmp_path / "blobs", durable=False)
    stored, open_draft, orphan = (secrets.token_hex(16) for _ in range(3))
    for report_id in (stored, open_draft, orphan):
        await blobs.write_bytes(secrets.token_bytes(32), report_id, secrets.token_hex(16), "original", b"x")
    async with write_transaction(sessionmaker) as session:
        session.add(
            Report(
                id=stored, designation="R-" + secrets.token_hex(3).upper(), kind="complaint",
                status="received", created_on=dt.date(2026, 1, 2), team_key_id="k",
                wrapped_key_team=b"t", wrapped_key_reporter=b"r", receipt_lookup=secrets.token_bytes(32),
            )
        )
    fsm = VolatileFsmStorage(secrets.token_bytes(32))
    draft = dataclasses.replace(
        flow.start(flow.Kind.COMPLAINT, safety_seen=True).draft, context={"report_id": open_draft, "data_key": "x"}
    )
    await fsm.set_data(StorageKey(bot_id=1, chat_id=2, user_id=2), {"draft": draft.to_dict()})
    runtime = SimpleNamespace(
        services=SimpleNamespace(evidence=EvidenceIntake(blobs, 1024)),
        settings=SimpleNamespace(draft_ttl_seconds=60),
        fsm=fsm,
        sessionmaker=sessionmaker,
    )
    assert await purge_orphan_blobs(runtime) == 1
    assert blobs.list_reports() == sorted([stored, open_draft])


async def test_blob_files_and_directories_come_from_the_pool(tmp_path):
    """Birth times cannot be changed, so evidence files and report directories are never
    made when evidence arrives: they are renamed from a pool made earlier, in a batch."""
    blobs = BlobStore(tmp_path / "blobs", durable=False)
    assert blobs.replenish_pool(files=4, directories=2) == 6
    pool = tmp_path / "blobs" / BlobStore.POOL
    pooled = {os.stat(p).st_ino for p in pool.iterdir()}
    report_id = secrets.token_hex(16)
    await blobs.write_bytes(secrets.token_bytes(32), report_id, secrets.token_hex(16), "original", b"x" * 10)
    await blobs.write_bytes(secrets.token_bytes(32), report_id, secrets.token_hex(16), "clean", b"y" * 10)
    directory = tmp_path / "blobs" / report_id
    made = [directory, *directory.iterdir()]
    assert len(made) == 3 and {os.stat(p).st_ino for p in made} <= pooled
    assert len(list(pool.iterdir())) == 3
    assert blobs.replenish_pool(files=4, directories=2) == 3
    assert blobs.list_reports() == [report_id]  # the pool is not a report
    # An empty pool is topped up on the spot rather than failing.
    for entry in pool.iterdir():
        entry.unlink() if entry.is_file() else entry.rmdir()
    await blobs.write_bytes(secrets.token_bytes(32), secrets.token_hex(16), secrets.token_hex(16), "original", b"z")


async def test_wipe_drops_the_unlocked_case_of_an_open_follow_up_session():
    """/wipe (and /forget, which ends the session) must not leave the case key in memory
    until its timer: the session's FSM data names it, and it is dropped at once."""
    from types import SimpleNamespace

    from nazaha.handlers.wipe import drop_session_key

    keys: SessionKeys[str] = SessionKeys(900, clock=FakeClock())
    ref = await keys.put("unlocked case")
    reply = SimpleNamespace(services=SimpleNamespace(session_keys=keys))
    await drop_session_key(reply, {"session": {"case": {"other": "x"}}})  # nothing named: kept
    assert len(keys) == 1
    await drop_session_key(reply, {"session": {"case": {"key_ref": ref}}})
    assert len(keys) == 0 and await keys.get(ref) is None
