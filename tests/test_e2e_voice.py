"""End to end: voice notes are warned about, sealed, and get a voice-reduced copy; a voice
note can be the description."""

from __future__ import annotations

import pytest
import pytest_asyncio

from nazaha.flows.report_flow import VOICE_DESCRIPTION
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage import voice
from nazaha.storage.reports import ReportVault
from nazaha.storage.crypto import KDF_TESTING
from tests.e2e_support import RECEIPT_RE, TOKEN, Chat, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment
from tests.test_e2e_followup import Staff, designations
from tests.test_voice import decode, dominant, tone

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

WARNING = "A voice can identify the person speaking"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-voice")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        d.staff = Staff(d)
        try:
            yield d
        finally:
            d.bot.stop()
            await d.staff.close()
            await client.close()


async def start_complaint(d: Deployment) -> Chat:
    chat = await Chat.open(d.client, "en")
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("If typing is hard, you can send a voice note instead")
    return chat


async def finish(chat: Chat, d: Deployment) -> str:
    """From the evidence question to the receipt; returns the new report's designation."""
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    review = await chat.expect("Please check your complaint")
    before = set(designations(d))
    await chat.press("Send the complaint")
    assert RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"])
    (designation,) = set(designations(d)) - before
    return review, designation


async def assert_voice_reduced(d: Deployment, case, record, sent: bytes, freq: float) -> None:
    blobs = d.staff.blobs
    assert record.kind == "voice" and record.has_clean_copy and record.flagged is None
    original = await blobs.read_bytes(case.data_key, case.report_id, record.id, "original")
    assert original == sent  # the untouched recording, byte for byte
    clean = await blobs.read_bytes(case.data_key, case.report_id, record.id, "clean")
    samples, rate, tags = decode(clean)
    assert dominant(samples, rate) == pytest.approx(freq * voice.RATIO, rel=0.02)
    assert set(tags) <= {"encoder"} and b"Ahmad" not in clean


async def test_voice_evidence_is_warned_about_once_and_gets_a_reduced_copy(deployment: Deployment):
    d = deployment
    chat = await start_complaint(d)
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    first = tone(440.0)
    await chat.send_kind("voice", content=first)
    warning = await chat.expect(WARNING)
    saved = await chat.expect("Saved and encrypted")
    assert warning["message_id"] < saved["message_id"]  # the warning comes first
    # The second recording of the same draft is not warned about again.
    second = tone(300.0)
    await chat.send_kind("voice", content=second)
    await chat.expect("You have added 2 files")
    assert not [m for m in await chat.bot_messages_since(chat.last_seen) if WARNING in (m.get("text") or "")]
    # Something that is not a recording: kept as sent, flagged, and the user is told.
    await chat.send_kind("voice", content=b"OggS\0not really a recording")
    await chat.expect("without a voice-reduced copy")
    _, designation = await finish(chat, d)

    case = await d.staff.case(designation)
    records = await d.staff.cases.evidence(case)
    assert [r.kind for r in records] == ["voice", "voice", "voice"]
    await assert_voice_reduced(d, case, records[0], first, 440.0)
    await assert_voice_reduced(d, case, records[1], second, 300.0)
    assert not records[2].has_clean_copy and records[2].flagged in voice.AUDIO_FLAGS


async def test_a_voice_note_can_be_the_description(deployment: Deployment):
    d = deployment
    chat = await start_complaint(d)
    recording = tone(250.0)
    await chat.send_kind("voice", content=recording)
    await chat.expect(WARNING)
    await chat.expect("saved and encrypted as your description")
    await chat.expect("Do you have evidence?")
    review, designation = await finish(chat, d)
    assert "[described in a voice note]" in review["text"]

    case = await d.staff.case(designation)
    (record,) = await d.staff.cases.evidence(case)
    await assert_voice_reduced(d, case, record, recording, 250.0)
    vault = await ReportVault.load(d.staff.sessionmaker, d.staff.team_public, kdf_floor=KDF_TESTING)
    opened = await vault.open_with_team(designation, d.staff.team_private)
    assert opened.fields["description"] == VOICE_DESCRIPTION
