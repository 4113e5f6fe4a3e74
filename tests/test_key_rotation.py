"""Team-key rotation (issue 10): every report re-keyed, links and grants re-wrapped, the old
key opening nothing written afterwards (new thread messages on old cases included), the
reporter still reading everything with the receipt, bots following only a key signed by the
pinned signing key, and a rotation killed half-way (SIGKILL) resuming and finishing.

Real crypto and real databases (SQLite, and PostgreSQL when it runs here); the interrupted
rotation is the real `nazaha keys rotate` command in a child process."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from nazaha.services.key_rotation import (
    RotationError,
    staff_key_mac,
    rotation_state,
    run_rotation,
    start_rotation,
)
from nazaha.storage.cases import CaseService, _message_field
from nazaha.storage.console_models import (
    AuditEntry,
    KeyRotation,
    StaffUser,
    TeamKeyGrant,
)
from nazaha.storage.crypto import (
    KDF_TESTING,
    BotKeyBox,
    TamperedData,
    TeamKeyRing,
    TeamPrivateKey,
    TeamSigningKey,
    UnknownKeyId,
    grant_team_key,
    open_field,
    open_from_key,
    open_team_key_grant,
    open_team_recovery,
    seal_team_recovery,
    unwrap_with_team,
    verify_team_public_key,
    wrapped_key_id,
)
from nazaha.storage.database import write_session
from nazaha.storage.models import CaseKeyEpoch, NotificationLink, Report, SystemSetting
from nazaha.storage.notifications import LINK_LABEL, NotificationLinks
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.reports import ReportDraft, ReportVault, initialise_system
from nazaha.storage.team_key import PublishedTeamKey
from tests.casework_support import NOW, console_store, sessionmaker_of

WAIT = 60.0  # seconds: an upper bound for conditions, never a sleep
SECRET = b"console secret for the tests: 32"  # the rotation row's MAC key (the console's)


def draft(text: str) -> ReportDraft:
    return ReportDraft(kind="corruption", triage={"category": "bribery"}, fields={"description": text})


async def store(sessionmaker, vault: ReportVault, text: str):
    sealed = await vault.seal(draft(text))
    batch = ReportBatch()
    vault.store(batch, sealed)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    return sealed


async def commit(sessionmaker, op) -> None:
    batch = ReportBatch()
    op(batch)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)


async def add_member(sessionmaker, username: str, team: TeamPrivateKey) -> tuple[str, TeamPrivateKey]:
    """An active member holding a grant of ``team``; their id and private key."""
    user_id = (username * 8)[:32].ljust(32, "0")
    private = TeamPrivateKey.generate()
    async with write_session(sessionmaker) as session:
        session.add(
            StaffUser(id=user_id, username=username, role="admin", state="active", locale="en",
                      created_at=NOW, public_key=private.public_key().to_bytes(),
                      key_mac=staff_key_mac(SECRET, user_id, "admin", private.public_key().to_bytes()))
        )
        await session.flush()
        session.add(
            TeamKeyGrant(user_id=user_id, team_key_id=team.key_id, granted_at=NOW,
                         sealed=grant_team_key(team, private.public_key(), user_id))
        )
    return user_id, private


async def setting(sessionmaker, name: str) -> bytes:
    async with sessionmaker() as session:
        return bytes(await session.scalar(select(SystemSetting.value).where(SystemSetting.name == name)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_rotation_rekeys_every_case_and_the_old_key_opens_nothing_written_after(backend, tmp_path):
    async with console_store(backend, tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing = TeamPrivateKey.generate(), TeamSigningKey.generate()
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        cases = CaseService(sm)
        first = await store(sm, vault, "a bribe for a permit")
        second = await store(sm, vault, "a relative hired without a competition")
        legacy = await store(sm, vault, "stored before migration 0007")
        async with write_session(sm) as session:  # as if stored before the reporter key existed
            await session.execute(update(Report).where(Report.id == legacy.report_id).values(reporter_public_key=None))
        before = await vault.unlock_with_team(first.designation, old)
        await cases.add_staff_reply(before, "thank you, we are looking into it")
        links = NotificationLinks(sm, BotKeyBox(b"k" * 32), vault.team_key)
        await commit(sm, lambda batch: links.add(batch, first.report_id, 424242, "ar"))
        async with sm() as session:  # what someone holding the old key saw before the rotation
            old_wrap = bytes(await session.scalar(select(Report.wrapped_key_team).where(Report.id == first.report_id)))
        member_id, member_private = await add_member(sm, "amal", old)
        old_grant = (await _grant(sm, member_id)).sealed
        async with sm() as session:
            old_link = bytes(await session.scalar(select(NotificationLink.sealed_link)))

        new = TeamPrivateKey.generate()
        next_signing = TeamSigningKey.generate()
        started = await start_rotation(sm, old, signing, new, next_signing, console_secret=SECRET, generation=0,
                                       actor_id=member_id)
        assert (started.reports_total, started.reports_left) == (3, 3)
        with pytest.raises(RotationError) as again:
            await start_rotation(sm, old, signing, TeamPrivateKey.generate(), TeamSigningKey.generate(),
                                 console_secret=SECRET, generation=0, actor_id=member_id)
        assert again.value.code == "unfinished"
        done = await run_rotation(sm, TeamKeyRing([new, old]), console_secret=SECRET, actor_id=member_id)
        assert done.finished and done.failed == 0

        async with sm() as session:
            rows = {r.id: r for r in (await session.scalars(select(Report))).all()}
            epochs = (await session.execute(select(CaseKeyEpoch.report_id, CaseKeyEpoch.epoch))).all()
            grants = (await session.execute(select(TeamKeyGrant.user_id, TeamKeyGrant.team_key_id))).all()
            link = (await session.execute(select(NotificationLink.id, NotificationLink.sealed_link))).one()
            actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))).all()
            state = await rotation_state(session)
        assert {r.team_key_id for r in rows.values()} == {new.key_id}
        assert {rid: r.key_epoch for rid, r in rows.items()} == {
            first.report_id: 1, second.report_id: 1, legacy.report_id: 0,  # no reporter key: re-wrapped only
        }
        assert sorted(epochs) == sorted([(first.report_id, 1), (second.report_id, 1)])
        assert grants == [(member_id, new.key_id)]  # the old grant is gone
        assert open_team_key_grant(member_private, member_id, new.key_id,
                                   (await _grant(sm, member_id)).sealed).key_id == new.key_id
        assert wrapped_key_id(link.sealed_link) == new.key_id
        assert open_from_key(new, LINK_LABEL, (link.id, first.report_id), link.sealed_link)
        assert actions[-2:] == ["key_rotation_start", "key_rotation_finish"]
        assert state.finished and state.new_key_id == new.key_id
        assert (await setting(sm, "team_key_generation")) == b"1"
        assert await setting(sm, "team_next_signing_key") == next_signing.public_bytes()
        assert verify_team_public_key(
            signing.public_bytes(), new.public_key(), 1, next_signing.public_bytes(),
            await setting(sm, "team_key_signature"),
        )
        assert (await setting(sm, "team_key_id")).decode() == new.key_id

        if backend == "sqlite":  # a copy of the files taken now holds no wrap the old key opens
            files = [tmp_path / "nazaha.db", tmp_path / "nazaha.db-wal",
                     tmp_path / "console" / "console.db", tmp_path / "console" / "console.db-wal"]
            carved = b"".join(path.read_bytes() for path in files if path.exists())
            for needle in (old_wrap, old_grant, old_link):
                assert bytes(needle) not in carved

        # The team reads everything with the new key alone; the old key opens no current wrap.
        for sealed in (first, second, legacy):
            opened = await vault.open_with_team(sealed.designation, new)
            assert opened.fields["description"]
            with pytest.raises(UnknownKeyId):
                await vault.unlock_with_team(sealed.designation, old)
        after = await vault.unlock_with_team(first.designation, new)
        assert [m.body for m in await cases.thread(after)] == ["thank you, we are looking into it"]

        # Written after the rotation, by staff and by the reporter: the old key (with the
        # wrap it could open before) opens neither.
        await cases.add_staff_reply(after, "please send the permit number")
        reporter = await vault.unlock_with_receipt(first.receipt)
        assert reporter.key_epoch == 1 and reporter.data_key == after.data_key
        await commit(sm, lambda batch: cases.add_reporter_message(batch, reporter, "it is 5521"))
        thread = await cases.thread(reporter)
        assert [m.body for m in thread] == [
            "thank you, we are looking into it", "please send the permit number", "it is 5521",
        ]
        old_data_key = unwrap_with_team(old_wrap, old, first.report_id)
        async with sm() as session:
            from nazaha.storage.models import CaseMessage

            messages = (await session.execute(
                select(CaseMessage.id, CaseMessage.direction, CaseMessage.sealed_body)
                .where(CaseMessage.report_id == first.report_id).order_by(CaseMessage.seq)
            )).all()
        assert open_field(old_data_key, first.report_id, _message_field(messages[0].id, "staff"), messages[0].sealed_body)
        for message in messages[1:]:
            with pytest.raises(TamperedData):
                open_field(old_data_key, first.report_id, _message_field(message.id, message.direction),
                           message.sealed_body)

        # The legacy report's reporter still opens it with the receipt.
        assert (await vault.open_with_receipt(legacy.receipt)).fields["description"] == "stored before migration 0007"
        # A second rotation chains a third key; the reporter still reads everything.
        newer = TeamPrivateKey.generate()
        await start_rotation(sm, new, next_signing, newer, TeamSigningKey.generate(), console_secret=SECRET,
                             generation=1, actor_id=member_id)
        await run_rotation(sm, new, console_secret=SECRET)
        reporter = await vault.unlock_with_receipt(first.receipt)
        assert reporter.key_epoch == 2 and len(await cases.thread(reporter)) == 3
        assert len(await cases.thread(await vault.unlock_with_team(first.designation, newer))) == 3


async def _grant(sm, user_id: str) -> TeamKeyGrant:
    async with sm() as session:
        return await session.scalar(select(TeamKeyGrant).where(TeamKeyGrant.user_id == user_id))


async def test_a_tampered_epoch_chain_is_refused_to_the_reporter(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing, new = TeamPrivateKey.generate(), TeamSigningKey.generate(), TeamPrivateKey.generate()
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        a = await store(sm, vault, "first")
        b = await store(sm, vault, "second")
        await start_rotation(sm, old, signing, new, TeamSigningKey.generate(), console_secret=SECRET, generation=0, actor_id=None)
        await run_rotation(sm, old, console_secret=SECRET)
        async with write_session(sm) as session:  # b's chain row moved onto a
            row_b = await session.get(CaseKeyEpoch, (b.report_id, 1))
            await session.execute(
                update(CaseKeyEpoch).where(CaseKeyEpoch.report_id == a.report_id)
                .values(sealed_previous=row_b.sealed_previous)
            )
        from nazaha.storage.crypto import WrongReceipt

        with pytest.raises(WrongReceipt):
            await vault.unlock_with_receipt(a.receipt)
        with pytest.raises(TamperedData):
            await vault.unlock_with_team(a.designation, new)
        assert (await vault.open_with_receipt(b.receipt)).fields["description"] == "second"
        # A row beyond the report's epoch is ignored on both sides (as the team's side does).
        async with write_session(sm) as session:
            session.add(CaseKeyEpoch(report_id=b.report_id, epoch=2, wrapped_reporter=b"\x01" * 80,
                                     sealed_previous=b"\x01" * 61, created_on=dt.date(2026, 12, 1)))
        assert (await vault.open_with_receipt(b.receipt)).fields["description"] == "second"
        assert (await vault.open_with_team(b.designation, new)).fields["description"] == "second"


async def publish(sm, public, generation: int, next_signing: bytes, signature: bytes) -> None:
    """What someone who can write the database (but not the bot host) can do."""
    async with write_session(sm) as session:
        for name, value in (("team_public_key", public.to_bytes()), ("team_key_id", public.key_id.encode()),
                            ("team_key_generation", str(generation).encode()),
                            ("team_next_signing_key", next_signing), ("team_key_signature", signature)):
            await session.merge(SystemSetting(name=name, value=value))


async def test_bots_follow_only_a_key_the_pinned_signing_key_signed(tmp_path, caplog):
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing, new = TeamPrivateKey.generate(), TeamSigningKey.generate(), TeamPrivateKey.generate()
        next_signing = TeamSigningKey.generate()
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        pin = tmp_path / "team-signing.pub"
        pin.write_bytes(signing.public_bytes())
        public_file = tmp_path / "team-public.key"
        public_file.write_bytes(old.public_key().to_bytes())
        generation_file = tmp_path / "team-key.generation"
        files = dict(signing_pin_path=pin, public_path=public_file, generation_path=generation_file)
        vault = await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        sealed_before = await vault.seal(draft("sealed before the rotation, stored after"))

        # Someone who can write the database but holds no signing key: refused.
        evil, forger = TeamPrivateKey.generate(), TeamSigningKey.generate()
        await publish(sm, evil.public_key(), 7, forger.public_bytes(),
                      forger.sign_team_public_key(evil.public_key(), 7, forger.public_bytes()))
        assert not await vault.team_key.refresh(sm)
        forged = await store(sm, vault, "written while a forged key is published")
        async with sm() as session:
            assert await session.scalar(select(Report.team_key_id).where(Report.id == forged.report_id)) == old.key_id
        with pytest.raises(RuntimeError):  # a restarted bot refuses it too
            await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        async with write_session(sm) as session:  # put the real key back
            for name, value in (("team_public_key", old.public_key().to_bytes()), ("team_key_id", old.key_id.encode())):
                await session.merge(SystemSetting(name=name, value=value))
            await session.execute(delete(SystemSetting).where(SystemSetting.name.in_(
                ("team_key_generation", "team_key_signature", "team_next_signing_key"))))

        await start_rotation(sm, old, signing, new, next_signing, console_secret=SECRET, generation=0, actor_id=None)
        # A report sealed to the old key before the publication is re-wrapped inside its
        # own write transaction: nothing is committed to a key being retired.
        batch = ReportBatch()
        vault.store(batch, sealed_before)
        await ReportWriter(sm, max_delay=0).commit(batch)
        async with sm() as session:
            stored = await session.get(Report, sealed_before.report_id)
        assert stored.team_key_id == new.key_id
        assert vault.team_key.current.key_id == new.key_id and vault.team_key.generation == 1
        # The bot host's files: the new key, its generation, and the next signing key pinned.
        assert public_file.read_bytes() == new.public_key().to_bytes()
        assert generation_file.read_text().strip() == "1"
        assert pin.read_bytes() == next_signing.public_bytes()
        assert (await vault.open_with_team(sealed_before.designation, new)).fields

        # Another bot process (periodic check) follows too, and a restarted one starts on it.
        other = PublishedTeamKey(old.public_key(), signing_pin=signing.public_bytes())
        assert await other.refresh(sm) and other.current.key_id == new.key_id
        # A bot host that missed it (its old files), and one that crashed between its files.
        public_file.write_bytes(old.public_key().to_bytes())
        generation_file.unlink()
        pin.write_bytes(signing.public_bytes())
        restarted = await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        assert restarted.team_key.current.key_id == new.key_id
        assert pin.read_bytes() == next_signing.public_bytes()
        pin.write_bytes(signing.public_bytes())  # crashed after the key file, before the pin
        await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        assert pin.read_bytes() == next_signing.public_bytes()
        again = await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)  # settled
        assert again.team_key.current.key_id == new.key_id
        with pytest.raises(RuntimeError):  # no pin: a restarted bot cannot vouch for it
            await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        await run_rotation(sm, old, console_secret=SECRET)
        # The console and the commands open reports on the database's key: no pin, no alarm.
        caplog.clear()
        console_vault = await ReportVault.from_database(sm, KDF_TESTING)
        assert console_vault.team_key.current.key_id == new.key_id
        assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_bots_refuse_a_rollback_and_the_signing_key_of_an_old_recovery_file(tmp_path):
    """The key of generation 1 leaks with its recovery file (team key and the signing key it
    holds) and is rotated away (generation 2). Someone who can write the database
    re-publishes generation 1 with its genuine signature, or signs a key of their own with
    the leaked file's signing key. No bot follows."""
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        first, leaked, current = (TeamPrivateKey.generate() for _ in range(3))
        signing_0, signing_1, signing_2 = (TeamSigningKey.generate() for _ in range(3))
        await initialise_system(sm, first.public_key(), KDF_TESTING)
        pin = tmp_path / "team-signing.pub"
        pin.write_bytes(signing_0.public_bytes())
        public_file, generation_file = tmp_path / "team-public.key", tmp_path / "team-key.generation"
        public_file.write_bytes(first.public_key().to_bytes())
        files = dict(signing_pin_path=pin, public_path=public_file, generation_path=generation_file)
        vault = await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        # Generation 1: the "leaked" key, whose recovery file holds signing_1.
        await start_rotation(sm, first, signing_0, leaked, signing_1, console_secret=SECRET, generation=0, actor_id=None)
        await run_rotation(sm, first, console_secret=SECRET)
        async with sm() as session:
            old_signature = bytes(await session.scalar(
                select(SystemSetting.value).where(SystemSetting.name == "team_key_signature")))
        assert await vault.team_key.refresh(sm) and vault.team_key.generation == 1
        # Generation 2, signed with signing_1; the bots now pin signing_2.
        await start_rotation(sm, leaked, signing_1, current, signing_2, console_secret=SECRET, generation=1, actor_id=None)
        await run_rotation(sm, leaked, console_secret=SECRET)
        assert await vault.team_key.refresh(sm) and vault.team_key.generation == 2
        assert pin.read_bytes() == signing_2.public_bytes()

        await publish(sm, leaked.public_key(), 1, signing_1.public_bytes(), old_signature)  # the rollback
        assert not await vault.team_key.refresh(sm)
        sealed = await store(sm, vault, "written while the leaked key is re-published")
        async with sm() as session:
            assert await session.scalar(select(Report.team_key_id).where(Report.id == sealed.report_id)) == current.key_id
        with pytest.raises(RuntimeError):  # a restarted bot remembers its generation
            await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        # The leaked recovery file's signing key (signing_1) signs a key of theirs: refused.
        evil = TeamPrivateKey.generate()
        for generation in (2, 3, 9):
            await publish(sm, evil.public_key(), generation, signing_1.public_bytes(),
                          signing_1.sign_team_public_key(evil.public_key(), generation, signing_1.public_bytes()))
            assert not await vault.team_key.refresh(sm)
            with pytest.raises(RuntimeError):
                await ReportVault.load(sm, public_file, kdf_floor=KDF_TESTING, **files)
        assert vault.team_key.current.key_id == current.key_id
        assert generation_file.read_text().strip() == "2" and pin.read_bytes() == signing_2.public_bytes()


async def test_a_forged_or_modified_rotation_row_is_never_resumed(tmp_path):
    """Whoever can write the database but not read the console secret cannot point a
    resume at a key of their own (the row's MAC), so nothing is re-keyed to it."""
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing, new, evil = TeamPrivateKey.generate(), TeamSigningKey.generate(), *(
            TeamPrivateKey.generate() for _ in range(2))
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        sealed = await store(sm, vault, "a report")
        await start_rotation(sm, old, signing, new, TeamSigningKey.generate(), console_secret=SECRET, generation=0, actor_id=None)
        async with write_session(sm) as session:
            await session.execute(update(KeyRotation).values(
                new_public_key=evil.public_key().to_bytes(), new_key_id=evil.key_id))
        with pytest.raises(RotationError) as refused:
            await run_rotation(sm, old, console_secret=SECRET)
        assert refused.value.code == "tampered"
        with pytest.raises(RotationError):  # nor with another console's secret
            await run_rotation(sm, old, console_secret=b"another console secret, 32 bytes")
        async with sm() as session:
            assert (await session.get(Report, sealed.report_id)).team_key_id == old.key_id
            assert (await session.scalar(select(func.count()).select_from(TeamKeyGrant))) == 0


async def test_reports_the_old_key_cannot_open_keep_the_rotation_unfinished(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing, new = TeamPrivateKey.generate(), TeamSigningKey.generate(), TeamPrivateKey.generate()
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        good = await store(sm, vault, "a report")
        bad = await store(sm, vault, "a report whose wrap was modified")
        member_id, _ = await add_member(sm, "amal", old)
        async with write_session(sm) as session:  # same key id, broken ciphertext
            wrapped = bytearray(await session.scalar(select(Report.wrapped_key_team).where(Report.id == bad.report_id)))
            wrapped[-1] ^= 1
            await session.execute(update(Report).where(Report.id == bad.report_id).values(wrapped_key_team=bytes(wrapped)))
        await start_rotation(sm, old, signing, new, TeamSigningKey.generate(), console_secret=SECRET, generation=0, actor_id=None)
        with pytest.raises(RotationError) as stopped:
            await run_rotation(sm, TeamKeyRing([new, old]), console_secret=SECRET)
        assert stopped.value.code == "failed" and stopped.value.failed == (bad.designation,)
        async with sm() as session:  # unfinished, both grants kept, the good report re-keyed
            assert (await session.scalar(select(KeyRotation))).finished_at is None
            assert sorted((await session.scalars(select(TeamKeyGrant.team_key_id))).all()) == sorted(
                [old.key_id, new.key_id])
            assert (await session.get(Report, good.report_id)).team_key_id == new.key_id
        done = await run_rotation(sm, TeamKeyRing([new, old]), console_secret=SECRET, accept_failed=True)
        assert done.finished and done.failed == 1
        async with sm() as session:
            assert (await session.scalars(select(TeamKeyGrant.team_key_id))).all() == [new.key_id]


async def test_database_writers_get_no_key_and_cannot_bend_the_generation_or_replay_a_row(tmp_path):
    """From the second attacker trial: a member row written into the database is never given
    the new key; a lowered generation (bots would refuse the new key as a rollback) stops
    the start; a finished rotation made unfinished again is not resumed."""
    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, signing, new = TeamPrivateKey.generate(), TeamSigningKey.generate(), TeamPrivateKey.generate()
        next_signing = TeamSigningKey.generate()
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, old.public_key(), kdf_floor=KDF_TESTING)
        await store(sm, vault, "a report")
        member_id, _ = await add_member(sm, "amal", old)
        rogue_private = TeamPrivateKey.generate()
        async with write_session(sm) as session:  # no MAC: written by someone else
            session.add(StaffUser(id="r" * 32, username="rogue", role="admin", state="active", locale="en",
                                  created_at=NOW, public_key=rogue_private.public_key().to_bytes()))
            await session.flush()
            session.add(TeamKeyGrant(user_id="r" * 32, team_key_id=old.key_id, granted_at=NOW, sealed=b"x"))
        await start_rotation(sm, old, signing, new, next_signing, console_secret=SECRET, generation=0, actor_id=None)
        await run_rotation(sm, old, console_secret=SECRET)
        async with sm() as session:
            grants = (await session.execute(select(TeamKeyGrant.user_id, TeamKeyGrant.team_key_id))).all()
        assert grants == [(member_id, new.key_id)]

        # The generation in the database lowered: the next start refuses (nothing changes).
        async with write_session(sm) as session:
            await session.execute(delete(SystemSetting).where(SystemSetting.name == "team_key_generation"))
        newer = TeamPrivateKey.generate()
        with pytest.raises(RotationError) as bent:
            await start_rotation(sm, new, next_signing, newer, TeamSigningKey.generate(), console_secret=SECRET,
                                 generation=1, actor_id=None)
        assert bent.value.code == "tampered"
        assert (await setting(sm, "team_key_id")).decode() == new.key_id

        # The finished rotation's genuine row made unfinished again: not resumed.
        async with write_session(sm) as session:
            await session.merge(SystemSetting(name="team_key_generation", value=b"1"))
        await start_rotation(sm, new, next_signing, newer, TeamSigningKey.generate(), console_secret=SECRET,
                             generation=1, actor_id=None)
        await run_rotation(sm, new, console_secret=SECRET)
        async with write_session(sm) as session:
            await session.execute(update(KeyRotation).where(KeyRotation.new_key_id == new.key_id).values(finished_at=None))
        with pytest.raises(RotationError) as replayed:
            await run_rotation(sm, TeamKeyRing([newer, new]), console_secret=SECRET)
        assert replayed.value.code == "tampered"


async def test_on_one_host_the_bot_takes_the_new_key_from_its_own_files(tmp_path):
    """The second attacker trial's race: whoever holds the old recovery file's signing key
    and can write the database swaps the publication the moment it is written. On one host
    the rotation writes the bot's own files, which the bot reads first: no swap moves it."""
    from nazaha.storage.keyfiles import KeyPaths, pin_rotation_on_this_host

    async with console_store("sqlite", tmp_path) as engine:
        sm = sessionmaker_of(engine)
        old, leaked_signing, new, next_signing = (
            TeamPrivateKey.generate(), TeamSigningKey.generate(), TeamPrivateKey.generate(), TeamSigningKey.generate())
        await initialise_system(sm, old.public_key(), KDF_TESTING)
        paths = KeyPaths.for_data_dir(tmp_path / "var")
        paths.data_dir.mkdir()
        paths.team_public.write_bytes(old.public_key().to_bytes())
        paths.team_signing_public.write_bytes(leaked_signing.public_bytes())
        files = dict(signing_pin_path=paths.team_signing_public, public_path=paths.team_public,
                     generation_path=paths.team_key_generation)
        vault = await ReportVault.load(sm, paths.team_public, kdf_floor=KDF_TESTING, **files)
        await start_rotation(sm, old, leaked_signing, new, next_signing, console_secret=SECRET, generation=0,
                             actor_id=None)
        assert pin_rotation_on_this_host(paths, new.public_key(), 1, next_signing.public_bytes())
        evil, evil_signing = TeamPrivateKey.generate(), TeamSigningKey.generate()
        await publish(sm, evil.public_key(), 1, evil_signing.public_bytes(),
                      leaked_signing.sign_team_public_key(evil.public_key(), 1, evil_signing.public_bytes()))
        await vault.team_key.refresh(sm)
        assert vault.team_key.current.key_id == new.key_id
        sealed = await store(sm, vault, "written after the swap")
        async with sm() as session:
            assert await session.scalar(select(Report.team_key_id).where(Report.id == sealed.report_id)) == new.key_id
        with pytest.raises(RuntimeError):  # restarted, it refuses the swapped database (fails closed)
            await ReportVault.load(sm, paths.team_public, kdf_floor=KDF_TESTING, **files)
        assert paths.team_public.read_bytes() == new.public_key().to_bytes()


def _cli(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from nazaha.bot.cli import main; main()", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


async def _reports_on(sm, key_id: str) -> int:
    async with sm() as session:
        return await session.scalar(select(func.count()).select_from(Report).where(Report.team_key_id == key_id))


async def test_a_rotation_killed_half_way_resumes_and_finishes(tmp_path):
    """`nazaha keys rotate` over 1,500 reports in batches of 25 is SIGKILLed once some but
    not all of them are re-keyed; the same command run again resumes and finishes."""
    from nazaha.bot.settings import Settings
    from nazaha.bot.setup import initialise
    from nazaha.storage.console_db import create_console_engine, prepare_console_store
    from nazaha.storage.database import create_sessionmaker
    from nazaha.storage.keyfiles import KeyPaths, load_team_public_key

    usb = tmp_path / "usb"
    usb.mkdir()
    old_file, new_file = usb / "old.key", usb / "new.key"
    (usb / "old.pass").write_text("olive lantern mends a copper kite at dusk")
    (usb / "new.pass").write_text("seven quiet herons guard the salt marsh gate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")}
    env.update(NAZAHA_DATA_DIR=str(tmp_path / "var"), NAZAHA_KDF_PROFILE="testing",
               NAZAHA_ROTATION_BATCH_SIZE="25", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", kdf_profile="testing")
    await initialise(settings, passphrase="olive lantern mends a copper kite at dusk", recovery_file=old_file)
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        await prepare_console_store(engine)
        sm = create_sessionmaker(engine)
        paths = KeyPaths.for_data_dir(settings.data_dir)
        vault = await ReportVault.load(sm, load_team_public_key(paths), kdf_floor=KDF_TESTING)
        reports = [await store(sm, vault, f"report {n}") for n in range(5)]
        old = (open_team_recovery(old_file.read_bytes(), "olive lantern mends a copper kite at dusk", KDF_TESTING))[0]
        await _bulk_reports(sm, old, 1500)
        total = await _reports_on(sm, old.key_id)

        child = _cli(env, "keys", "rotate", "--key-file", str(old_file), "--passphrase-file", str(usb / "old.pass"),
                     "--recovery-file", str(new_file), "--new-passphrase-file", str(usb / "new.pass"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:  # until at least one batch is committed
            async with sm() as session:
                rotation = await session.scalar(select(KeyRotation))
            if rotation is not None and await _reports_on(sm, rotation.new_key_id) > 0:
                break
            assert child.poll() is None, child.stdout.read()
            assert loop.time() < deadline, "the rotation never committed a batch"
            await asyncio.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=WAIT)
        child.stdout.close()
        left = await _reports_on(sm, old.key_id)
        assert 0 < left < total, "the kill did not land half-way"
        async with sm() as session:
            assert (await session.scalar(select(KeyRotation))).finished_at is None

        resumed = _cli(env, "keys", "rotate", "--key-file", str(old_file), "--passphrase-file", str(usb / "old.pass"))
        out, _ = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, out
        assert "Resuming" in out and "Rotation finished" in out
        new, signing = open_team_recovery(new_file.read_bytes(), "seven quiet herons guard the salt marsh gate",
                                          KDF_TESTING)
        # The new file holds the next signing key (the one published for the bots to pin);
        # on this host the command pinned it in the bot's data dir itself, with the key.
        assert signing is not None and signing.public_bytes() == await setting(sm, "team_next_signing_key")
        assert signing.public_bytes() == paths.team_signing_public.read_bytes()
        assert paths.team_public.read_bytes() == new.public_key().to_bytes()
        assert paths.team_key_generation.read_text().strip() == "1"
        assert await _reports_on(sm, old.key_id) == 0
        assert await _reports_on(sm, new.key_id) == total
        for sealed in reports:  # both sides still open the real reports
            assert (await vault.open_with_team(sealed.designation, new)).fields["description"]
            assert (await vault.open_with_receipt(sealed.receipt)).fields["description"]
        async with sm() as session:
            rows = (await session.execute(
                select(Report.id, Report.wrapped_key_team, Report.key_epoch).limit(50)
            )).all()
        for report_id, wrapped, epoch in rows:  # and the bulk ones: no batch was lost or doubled
            assert epoch == 1
            unwrap_with_team(wrapped, new, report_id, epoch)
        async with sm() as session:
            assert await session.scalar(select(func.count()).select_from(CaseKeyEpoch)) == total
    finally:
        await engine.dispose()


async def _bulk_reports(sm, team: TeamPrivateKey, count: int) -> None:
    """``count`` reports with real team wraps and a (shared) reporter public key."""
    import datetime as dt
    import secrets

    from nazaha.storage.crypto import new_data_key, wrap_for_team

    reporter_public = TeamPrivateKey.generate().public_key().to_bytes()
    rows = []
    for n in range(count):
        report_id = secrets.token_hex(16)
        rows.append({
            "id": report_id, "designation": f"B-{n:06d}", "kind": "complaint", "status": "received",
            "created_on": dt.date(2026, 11, 1), "team_key_id": team.key_id,
            "wrapped_key_team": wrap_for_team(new_data_key(), team.public_key(), report_id),
            "wrapped_key_reporter": secrets.token_bytes(60), "receipt_lookup": secrets.token_bytes(32),
            "reporter_public_key": reporter_public, "key_epoch": 0,
        })
    async with write_session(sm) as session:
        await session.execute(Report.__table__.insert(), rows)


def test_recovery_file_round_trip_keeps_the_signing_key():
    team, signing = TeamPrivateKey.generate(), TeamSigningKey.generate()
    blob = seal_team_recovery(team, signing, "a long enough passphrase here", KDF_TESTING, KDF_TESTING)
    opened, opened_signing = open_team_recovery(blob, "a long enough passphrase here", KDF_TESTING)
    assert opened.key_id == team.key_id and opened_signing.public_bytes() == signing.public_bytes()
