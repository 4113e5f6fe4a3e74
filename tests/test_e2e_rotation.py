"""End to end: `nazaha keys rotate` while the bot runs (issue 10). The running bot follows the
new, signed team public key without a restart; reports and files sent after the rotation are
sealed to the new keys; a report from before is still read by its reporter with the receipt
(staff replies written after the rotation included) and by the team with the new recovery
file alone, evidence of both epochs included; its notification link still works."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import CaseService
from nazaha.storage.crypto import KDF_TESTING, UnknownKeyId, open_team_recovery
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import (
    KeyPaths,
    load_team_private_key,
    load_team_public_key,
)
from nazaha.storage.notifications import NotificationDispatcher
from nazaha.storage.reports import ReportVault
from tests.e2e_support import (
    PASSPHRASE,
    TOKEN,
    nazaha_command,
    nazaha_env,
    recovery_file,
    run_init,
)
from tests.test_e2e_bot import Deployment
from tests.test_e2e_followup import open_chat, report_with_evidence, send_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NEW_PASSPHRASE = "seven quiet herons guard the salt marsh gate"
WAIT = 60.0  # seconds: an upper bound for conditions, never a sleep


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-rotation")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client, NAZAHA_NOTIFY_INTERVAL_SECONDS="0.2",
                       NAZAHA_TEAM_KEY_CHECK_SECONDS="0.2")
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def rotate(d: Deployment) -> str:
    (d.tmp / "new-passphrase.txt").write_text(NEW_PASSPHRASE)
    out = subprocess.run(
        nazaha_command(
            "keys", "rotate", "--key-file", str(recovery_file(d.data_dir)),
            "--passphrase-file", str(d.tmp / "passphrase.txt"),
            "--recovery-file", str(d.tmp / "new-recovery.key"),
            "--new-passphrase-file", str(d.tmp / "new-passphrase.txt"),
        ),
        env=nazaha_env(d.data_dir, d.server.url), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


async def test_the_running_bot_follows_a_rotation_and_nothing_is_lost(deployment: Deployment):
    d = deployment
    pid = d.bot.process.pid
    reporter = await open_chat(d)
    receipt, designation = await report_with_evidence(reporter, notify=True, files=[send_photo])
    paths = KeyPaths.for_data_dir(d.data_dir)
    old_public = paths.team_public.read_bytes()
    old = load_team_private_key(recovery_file(d.data_dir), PASSPHRASE, floor=KDF_TESTING)
    # The reporter's follow-up session is open while the key is rotated.
    await reporter.send("/followup")
    await reporter.expect("Please type your receipt number")
    await reporter.send(receipt)
    assert "1 file" in (await reporter.expect("Your complaint"))["text"]

    printed = rotate(d)
    assert "Rotation finished" in printed and PASSPHRASE not in printed and NEW_PASSPHRASE not in printed
    new, _ = open_team_recovery((d.tmp / "new-recovery.key").read_bytes(), NEW_PASSPHRASE, KDF_TESTING)
    # The bot accepts the signed key without a restart (and rewrites its public key file).
    await until(lambda: paths.team_public.read_bytes() != old_public, "the bot to follow the new key")
    assert paths.team_public.read_bytes() == new.public_key().to_bytes()
    d.bot.assert_alive()
    assert d.bot.process.pid == pid
    # The old recovery file: a clear answer, no traceback.
    refused = subprocess.run(
        nazaha_command("decrypt", designation, "--key-file", str(recovery_file(d.data_dir)),
                       "--passphrase-file", str(d.tmp / "passphrase.txt")),
        env=nazaha_env(d.data_dir, d.server.url), capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "use the recovery file of the current key" in refused.stderr

    engine = create_engine(f"sqlite+aiosqlite:///{d.data_dir / 'nazaha.db'}")
    try:
        sm = create_sessionmaker(engine)
        cases = CaseService(sm)
        vault = await ReportVault.load(sm, load_team_public_key(paths), kdf_floor=KDF_TESTING)
        with pytest.raises(UnknownKeyId):
            await vault.unlock_with_team(designation, old)
        assert (await vault.unlock_with_team(designation, new)).key_epoch == 1

        # The session that began before the rotation writes under the new case key.
        await reporter.press("Reply to the caseworkers")
        await reporter.expect("Write your message")
        await reporter.send("The licensing office in Bethlehem")
        await reporter.expect("Your message was sent")
        await reporter.press("Add evidence")
        await reporter.expect("Send photos")
        await send_photo(reporter)
        await reporter.press("Done")
        await reporter.expect("2 files")
        await reporter.press("End the session")
        await reporter.expect("The follow-up session has ended")

        case = await vault.unlock_with_team(designation, new)
        async with sm() as session:
            from sqlalchemy import select

            from nazaha.storage.cases import _message_field
            from nazaha.storage.models import CaseMessage

            written = (await session.execute(
                select(CaseMessage.id, CaseMessage.sealed_body).where(CaseMessage.report_id == case.report_id)
            )).one()
        assert case.sealed_epoch(_message_field(written.id, "reporter"), written.sealed_body) == (
            1, "The licensing office in Bethlehem".encode()
        )
        records = await cases.evidence(case)
        assert [r.key_epoch for r in records] == [0, 1]  # each file under the key of its day
        blobs = BlobStore(d.data_dir / "blobs")
        for record in records:
            data = await blobs.read_bytes(case.epoch_key(record.key_epoch), case.report_id, record.id, "original")
            assert data[:2] == b"\xff\xd8"  # a JPEG, opened

        # A reply written now, the notification through the re-sealed link, and the
        # reporter reading it with the receipt.
        await cases.add_staff_reply(case, "Thank you. Which day was it?")
        assert await NotificationDispatcher(sm).dispatch(new) == 1
        await reporter.expect("There is an update on your report.")
        await reporter.send("/followup")
        await reporter.expect("Please type your receipt number")
        await reporter.send(receipt)
        view = await reporter.expect("Which day was it?")
        assert "2 files" in view["text"]

        # A report sent after the rotation is wrapped to the new key.
        second = await open_chat(d)
        _, later = await report_with_evidence(second, notify=False, files=[])
        assert d.db_rows(f"SELECT team_key_id FROM reports WHERE designation = '{later}'") == [(new.key_id,)]
        d.bot.assert_alive()
        assert d.bot.process.pid == pid
    finally:
        await engine.dispose()
