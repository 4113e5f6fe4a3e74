"""End to end: evidence, follow-up with the receipt, replies, notifications, /forget, /wipe."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import zipfile

import pytest
import pytest_asyncio
from PIL import Image

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import CaseService
from nazaha.storage.crypto import KDF_TESTING, format_receipt
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import KeyPaths, load_team_private_key, load_team_public_key
from nazaha.storage.notifications import NotificationDispatcher
from nazaha.storage.reports import ReportVault
from tests.e2e_support import (
    PASSPHRASE, RECEIPT_RE, TOKEN, Chat, find_plaintext, press_callback, recovery_file, run_init,
)
from tests.test_e2e_bot import DESCRIPTION, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CANARY = "CANARY-evidence-" + "x93kq"


def gps_jpeg() -> bytes:
    """A JPEG carrying GPS coordinates and an author in its EXIF."""
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x013B] = "Reporter Full Name"  # Artist
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (31.0, 54.0, 13.0)
    gps[3] = "E"
    gps[4] = (35.0, 12.0, 34.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


class Staff:
    """What the console will do, through the same storage services."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.engine = create_engine(f"sqlite+aiosqlite:///{d.data_dir / 'nazaha.db'}")
        self.sessionmaker = create_sessionmaker(self.engine)
        self.cases = CaseService(self.sessionmaker)
        self.blobs = BlobStore(d.data_dir / "blobs")
        paths = KeyPaths.for_data_dir(d.data_dir)
        self.team_private = load_team_private_key(recovery_file(d.data_dir), PASSPHRASE, floor=KDF_TESTING)
        self.team_public = load_team_public_key(paths)

    async def case(self, designation: str):
        vault = await ReportVault.load(self.sessionmaker, self.team_public, kdf_floor=KDF_TESTING)
        return await vault.unlock_with_team(designation, self.team_private)

    async def close(self) -> None:
        await self.engine.dispose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-followup")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client, NAZAHA_NOTIFY_INTERVAL_SECONDS="0.2")
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        d.staff = Staff(d)
        try:
            yield d
        finally:
            d.bot.stop()
            await d.staff.close()
            await client.close()


def designations(d: Deployment) -> list[str]:
    with sqlite3.connect(d.data_dir / "nazaha.db") as db:
        return [r[0] for r in db.execute("SELECT designation FROM reports")]


async def report_with_evidence(chat: Chat, *, notify: bool, files) -> tuple[str, str]:
    """Complete a complaint with the given files; returns (receipt, designation)."""
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    for send in files:
        await send(chat)
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("Notify me" if notify else "No notifications")
    await chat.expect("Please check your complaint")
    before = set(designations(chat.deployment))
    await chat.press("Send the complaint")
    receipt = RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)
    (designation,) = set(designations(chat.deployment)) - before
    return receipt, designation


async def open_chat(d: Deployment, language="en") -> Chat:
    chat = await Chat.open(d.client, language)
    chat.deployment = d
    return chat


async def send_photo(chat: Chat) -> None:
    await chat.send_kind("photo", content=gps_jpeg())
    await chat.expect("Saved and encrypted")


async def send_gps_document(chat: Chat) -> None:
    await chat.send_kind("document", filename="IMG_0001.jpg", content=gps_jpeg(), mime="image/jpeg")
    await chat.expect("files sent as documents can carry")
    await chat.expect("Saved and encrypted")


async def send_canary_text_file(chat: Chat) -> None:
    content = (CANARY + " minutes of the tender committee\n").encode() * 5000  # ~200 KB
    await chat.send_kind("document", filename="minutes.txt", content=content, mime="text/plain")
    await chat.expect("Saved and encrypted")


async def test_evidence_is_sealed_and_images_are_scrubbed(deployment: Deployment):
    chat = await open_chat(deployment)
    receipt, designation = await report_with_evidence(
        chat, notify=False, files=[send_photo, send_gps_document, send_canary_text_file]
    )
    staff = deployment.staff
    case = await staff.case(designation)
    records = await staff.cases.evidence(case)
    assert [r.kind for r in records] == ["photo", "document", "document"]
    original_bytes = gps_jpeg()
    for record in records[:2]:
        assert record.has_clean_copy and record.flagged is None
        original = await staff.blobs.read_bytes(case.data_key, case.report_id, record.id, "original")
        clean = await staff.blobs.read_bytes(case.data_key, case.report_id, record.id, "clean")
        if record.kind == "document":
            assert original == original_bytes  # the untouched original, byte for byte
        assert b"Reporter Full Name" in original
        assert b"Reporter Full Name" not in clean and b"Exif" not in clean
        assert not Image.open(io.BytesIO(clean)).getexif()
    assert not records[2].has_clean_copy
    text = await staff.blobs.read_bytes(case.data_key, case.report_id, records[2].id, "original")
    assert text.startswith(CANARY.encode())
    # Nothing of it in plaintext anywhere under the data dir.
    assert find_plaintext(CANARY, [deployment.data_dir]) == []
    assert find_plaintext("Reporter Full Name", [deployment.data_dir]) == []


async def test_oversized_file_is_refused_and_the_flow_continues(deployment: Deployment):
    chat = await open_chat(deployment)
    await chat.send("/report")
    await chat.press("I understand, continue")
    await chat.press("Bribery")
    await chat.press("Ministry")
    await chat.press("Jenin")
    await chat.press("Earlier")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.send_kind(
        "document", filename="video.mp4", content=b"0" * 1024, mime="video/mp4", file_size=25 * 1024 * 1024
    )
    await chat.expect("larger than 20 MB")
    # A zip file that claims to be a photo: kept sealed as it is, flagged, no clean copy.
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a.txt", "not a picture")
    await chat.send_kind("document", filename="photo.jpg", content=zipped.getvalue(), mime="image/jpeg")
    await chat.expect("could not be read as an image")
    await chat.send_kind("location")
    await chat.expect("we do not accept locations")
    await chat.send_kind("sticker")
    await chat.expect("cannot be added as evidence")
    await chat.press("Done")
    await chat.expect("How would you like to stay in touch?")


async def test_follow_up_from_another_account_reply_and_notification(deployment: Deployment):
    reporter = await open_chat(deployment)
    receipt, designation = await report_with_evidence(reporter, notify=True, files=[])
    quiet = await open_chat(deployment)
    _, quiet_designation = await report_with_evidence(quiet, notify=False, files=[])

    # A caseworker replies to both reports.
    staff = deployment.staff
    await staff.cases.add_staff_reply(await staff.case(designation), "Thank you. Do you have the invoice?")
    await staff.cases.add_staff_reply(await staff.case(quiet_designation), "Thank you for your complaint.")
    # The console removes the links' outer layer and hands the running bot one-time
    # instructions sealed to its memory-only mailbox.
    assert await NotificationDispatcher(staff.sessionmaker).dispatch(staff.team_private) == 1
    notice = await reporter.expect("There is an update on your report.")
    assert "invoice" not in notice["text"]  # content-free
    for _ in range(100):
        with sqlite3.connect(deployment.data_dir / "nazaha.db") as db:
            if db.execute("SELECT count(*) FROM notification_instructions").fetchone() == (0,):
                break
        await asyncio.sleep(0.1)
    assert not [m for m in await quiet.bot_messages_since(0) if "There is an update" in (m["text"] or "")]

    # The reporter follows up from a different Telegram account, typing Arabic-Indic digits.
    other = await open_chat(deployment, "en")
    await other.send("/followup")
    await other.expect("Please type your receipt number")
    typed = "\u200f" + receipt.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    receipt_message_id = await other.send(typed)
    view = await other.expect("Your complaint")
    assert "Do you have the invoice?" in view["text"]
    assert "Received" in view["text"]
    messages = {m["message_id"]: m for m in await other.messages()}
    assert messages[receipt_message_id]["deleted"]  # the receipt does not stay on screen

    await other.press("Reply to the caseworkers")
    await other.expect("Write your message")
    await other.send("Yes: \u200fالفاتورة رقم ١٢")
    await other.expect("Your message was sent")
    thread = await staff.cases.thread(await staff.case(designation))
    assert [m.direction for m in thread] == ["staff", "reporter"]
    assert thread[1].body == "Yes: \u200fالفاتورة رقم ١٢"

    await other.press("Add evidence")
    await other.expect("Send photos")
    await other.send_kind("photo", content=gps_jpeg())
    await other.expect("Saved and encrypted")
    await other.press("Done")
    view = await other.expect("Your complaint")
    assert "1 file" in view["text"]

    # End the session, then wipe: every message of the conversation is deleted.
    await other.press("End the session")
    await other.expect("The follow-up session has ended")
    await other.press("Erase this conversation")
    await other.expect("Erase this conversation?")
    await other.press("Yes, erase everything")
    await other.expect("This conversation was erased")
    remaining = [m for m in await other.messages() if not m["deleted"]]
    assert len(remaining) == 1 and "erased" in remaining[0]["text"]
    assert await deployment.client.calls("deleteMessages")


async def test_notifications_stop_with_the_receipt_not_with_forget(deployment: Deployment):
    """No bot-side key can find a chat's links: /forget explains, the receipt stops them."""
    chat = await open_chat(deployment)
    receipt, designation = await report_with_evidence(chat, notify=True, files=[])

    def links() -> int:
        with sqlite3.connect(deployment.data_dir / "nazaha.db") as db:
            return db.execute(
                "SELECT count(*) FROM notification_links l JOIN reports r ON r.id = l.report_id "
                "WHERE r.designation = ?",
                (designation,),
            ).fetchone()[0]

    assert links() == 1
    await chat.send("/forget")
    await chat.expect("Stop notifications")
    assert links() == 1
    await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    view = await chat.expect("Your complaint")
    assert "Update notifications are on" in view["text"]
    await chat.press("Stop notifications")
    await chat.expect("this report will send no more notifications")
    assert links() == 0
    view = await chat.expect("Your complaint")
    assert "Update notifications are on" not in view["text"]


async def test_six_wrong_receipts_are_throttled(deployment: Deployment):
    chat = await open_chat(deployment)
    await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    for attempt in range(5):
        await chat.send("1111 2222 3333 4444 555" + str(attempt))
        await chat.expect("This receipt number was not found")
    await chat.send("1111 2222 3333 4444 5559")
    await chat.expect("Too many attempts")
    # Even a right-looking attempt from this account now waits for the hour to pass.
    await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    await chat.send("9999 2222 3333 4444 5555")
    await chat.expect("Too many attempts")


async def test_withdrawals_and_the_status_in_words(deployment: Deployment):
    """Contact details withdrawn (gone from the database), the complaint withdrawn (kept,
    notifications stopped), and the caseworkers' status changes read in words."""
    import datetime as dt

    chat = await open_chat(deployment)
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Share my contact details")
    await chat.press("I agree")
    await chat.expect("write the name")
    await chat.send("Samira K.")
    await chat.expect("phone number")
    await chat.send("0599 123 456")
    await chat.press("Notify me")
    await chat.expect("Please check your complaint")
    before = set(designations(deployment))
    await chat.press("Send the complaint")
    receipt = RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)
    (designation,) = set(designations(deployment)) - before

    staff = deployment.staff
    case = await staff.case(designation)

    def row(column: str):
        with sqlite3.connect(deployment.data_dir / "nazaha.db") as db:
            return db.execute(f"SELECT {column} FROM reports WHERE designation = ?", (designation,)).fetchone()[0]

    def links() -> int:
        with sqlite3.connect(deployment.data_dir / "nazaha.db") as db:
            return db.execute(
                "SELECT count(*) FROM notification_links WHERE report_id = ?", (case.report_id,)
            ).fetchone()[0]

    async def fields() -> dict:
        vault = await ReportVault.load(staff.sessionmaker, staff.team_public, kdf_floor=KDF_TESTING)
        return (await vault.open_with_team(designation, staff.team_private)).fields

    assert (await fields())["contact_name"] == "Samira K." and links() == 1

    await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    view = await chat.expect("Your complaint")
    assert "Received: waiting to be read by a caseworker." in view["text"]

    # Withdraw the contact details: asked first, then done and said.
    await chat.press("Withdraw my contact details")
    await chat.expect("Withdraw your contact details?")
    assert (await fields())["contact_phone"] == "0599 123 456"  # nothing done before "Yes"
    await chat.press("Yes, delete them")
    await chat.expect("Done: your contact details were deleted.")
    view = await chat.expect("You withdrew your contact details on")
    buttons = [b["text"] for r in view["reply_markup"]["inline_keyboard"] for b in r]
    assert not any("contact details" in label for label in buttons)
    today = dt.datetime.now(dt.timezone.utc).date()
    assert row("contact_withdrawn_on") == today.isoformat()
    assert await staff.cases.withdrawals(case.report_id) == (today, None)
    remaining = await fields()
    assert not {"contact", "contact_name", "contact_phone"} & set(remaining)
    assert remaining["description"] == DESCRIPTION
    # The old "Yes" does nothing a second time.
    await press_callback(chat, "n:confirm:withdraw_contact")
    await chat.expect("This button has expired.")

    # "No" keeps the complaint; "Yes" withdraws it and stops its notifications.
    await chat.press("Withdraw this complaint")
    await chat.expect("Withdraw this complaint?")
    await chat.press("No, do not withdraw")
    await chat.expect("Your complaint")
    assert row("withdrawn_on") is None and links() == 1
    await chat.press("Withdraw this complaint")
    await chat.expect("Withdraw this complaint?")
    await chat.press("Yes, withdraw it")
    await chat.expect("Done: you withdrew this complaint")
    view = await chat.expect("You withdrew this complaint on")
    assert "Update notifications are on" not in view["text"]
    assert row("withdrawn_on") == today.isoformat() and links() == 0

    # The caseworkers keep working it; the reporter reads each change in words.
    await staff.cases.set_status(case.report_id, "referred")
    await chat.press("Refresh")
    view = await chat.expect("Your complaint")
    assert "Referred: passed to the competent authority." in view["text"]
    await staff.cases.add_staff_reply(case, "We passed it to the Ministry of Health.")
    await staff.cases.set_status(case.report_id, "closed", "substantiated")
    await chat.press("Refresh")
    view = await chat.expect("Your complaint")
    assert "Closed: the facts were confirmed." in view["text"]
    assert "We passed it to the Ministry of Health." in view["text"]
    assert "You withdrew this complaint on" in view["text"]

    # Following up still works, and the view comes back updated right after a message.
    await chat.press("Reply to the caseworkers")
    await chat.expect("Write your message")
    await chat.send("Thank you for following it up.")
    await chat.expect("Your message was sent")
    view = await chat.expect("Thank you for following it up.")
    assert view["text"].startswith("Your complaint")
    thread = await staff.cases.thread(case)
    assert [m.direction for m in thread] == ["staff", "reporter"]


async def test_a_legacy_report_gets_its_reporter_public_key_at_follow_up(deployment: Deployment):
    """A report stored before reporter public keys (column NULL) gets the key derived from
    its receipt when its reporter follows up, and only that report."""
    from nazaha.storage.crypto import derive_reporter_keys
    from nazaha.storage.reports import SETTING_RECEIPT_SALT

    chat = await open_chat(deployment)
    receipt, designation = await report_with_evidence(chat, notify=False, files=[])
    _, untouched = await report_with_evidence(await open_chat(deployment), notify=False, files=[])

    def key_of(d: str) -> bytes | None:
        ((value,),) = deployment.db_rows(
            f"SELECT reporter_public_key FROM reports WHERE designation = '{d}'"
        )
        return value

    salt = bytes(deployment.db_rows(
        f"SELECT value FROM system_settings WHERE name = '{SETTING_RECEIPT_SALT}'"
    )[0][0])
    derived = derive_reporter_keys(receipt, salt, KDF_TESTING, KDF_TESTING).kem_private().public_key().to_bytes()
    assert key_of(designation) == derived  # stored at submission
    untouched_key = key_of(untouched)
    with sqlite3.connect(deployment.data_dir / "nazaha.db") as db:  # as if stored before 0007
        db.execute("UPDATE reports SET reporter_public_key = NULL WHERE designation = ?", (designation,))
    assert key_of(designation) is None

    other = await open_chat(deployment)
    await other.send("/followup")
    await other.expect("Please type your receipt number")
    await other.send(format_receipt(receipt))
    await other.expect("Your complaint")
    assert key_of(designation) == derived
    assert key_of(untouched) == untouched_key
    await other.press("End the session")
    await other.expect("The follow-up session has ended")
