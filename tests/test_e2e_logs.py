"""End to end: the bot's log at DEBUG holds nothing that identifies anyone, whatever happens.

The real `nazaha bot` runs against the sandbox emulator at DEBUG level while the emulator
answers sendMessage with 429, 500, 502, 403 and 400 (their descriptions quoting the chat id,
name and username, as Telegram's "Flood control exceeded ... in chat <id>" does), a user
forwards an old message whose origin aiogram cannot decode (the bot must skip it, tell that
user, and keep answering others), and a report carries a photo whose EXIF holds GPS data and
a camera owner's name. Then the log is searched for every id, name, canary, receipt, token
and file id.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import RECEIPT_RE, TOKEN, Chat, find_plaintext, run_init
from tests.test_e2e_bot import Deployment, ar
from tests.test_e2e_resilience import walk_to_description

pytestmark = [pytest.mark.e2e]

# Canaries are put together at run time so that the test's own source, which a traceback
# could quote, does not contain them.
OWNER = "Camera" + "Owner-Qz7"
ARTIST = "Artist" + "Name-Vw4"
FILE_CANARY = "scan" + "-of-contract-Kp2"
DESCRIPTION_CANARY = "Descr" + "iption-Canary-Hj5"
FIRST_NAMES = ("Reporter" + "Yx", "Forwarder" + "Tb", "Bystander" + "Lm")
LAST_NAME = "Family" + "Nm"
USERNAMES = ("rep" + "_user_q1", "fwd" + "_user_q2", "by" + "_user_q3")
PHONE = "0599 " + "123 456"
UNREADABLE = "Your last message could not be read. Please send it again, as plain text if you can."


def exif_jpeg() -> bytes:
    """A JPEG whose EXIF holds GPS coordinates, an artist and a camera owner's name."""
    image = Image.new("RGB", (64, 48), (30, 120, 200))
    exif = Image.Exif()
    exif[0x013B] = ARTIST  # Artist
    exif[0x010E] = OWNER  # ImageDescription
    exif.get_ifd(0x8769)[0xA430] = OWNER  # CameraOwnerName
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (31.0, 54.0, 13.0), "E", (35.0, 12.0, 34.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


async def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def failed_send_codes(client: SandboxClient) -> list[int]:
    return [c["error_code"] for c in await client.calls("sendMessage") if not c["ok"]]


def file_ids(value: Any) -> set[str]:
    """Every file_id and file_unique_id anywhere in a JSON value."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("file_id", "file_unique_id") and isinstance(item, str):
                found.add(item)
            else:
                found |= file_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= file_ids(item)
    return found


@pytest_asyncio.fixture
async def deployment(tmp_path):
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client, NAZAHA_LOG_LEVEL="DEBUG")
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            await wait_until(lambda: client.calls("getUpdates"), 120, "the bot to start polling")
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def open_chat(client: SandboxClient, index: int, language: str) -> Chat:
    user = await client.create_user(
        first_name=FIRST_NAMES[index],
        last_name=LAST_NAME,
        username=USERNAMES[index],
        language_code=language,
    )
    return Chat(client, user)


async def test_log_at_debug_holds_no_id_name_canary_receipt_token_or_file_id(deployment: Deployment):
    client = deployment.client
    reporter = await open_chat(client, 0, "en")
    forwarder = await open_chat(client, 1, "ar")
    bystander = await open_chat(client, 2, "en")
    quoting = f"chat {reporter.user_id} ({FIRST_NAMES[0]} @{USERNAMES[0]})"

    # 429, then 500 and 502: the reply still arrives (retried).
    await client.add_fault(
        "sendMessage", 429, retry_after=1,
        description=f"Too Many Requests: Flood control exceeded in {quoting}; retry after 1",
    )
    await client.add_fault("sendMessage", 500, description=f"Internal Server Error in {quoting}")
    await client.add_fault("sendMessage", 502)
    await reporter.send("/start")
    await reporter.expect("What would you like to do?", timeout=60)
    # 403 and 400 are not retried: those replies are dropped, the bot carries on.
    await client.add_fault("sendMessage", 403, description=f"Forbidden: bot was blocked by {quoting}")
    await reporter.send("/help")
    await wait_until(lambda: _has(client, 403), what="the 403")
    await client.add_fault("sendMessage", 400, description=f"Bad Request: {quoting} not found")
    await reporter.send("/help")
    await wait_until(lambda: _has(client, 400), what="the 400")
    assert sorted(await failed_send_codes(client)) == [400, 403, 429, 500, 502]

    # An update aiogram cannot decode, then another user's message: both are answered.
    await client.send_message(
        forwarder.user_id, "text", text=f"{FIRST_NAMES[1]} {PHONE} {DESCRIPTION_CANARY}",
        forward_origin={"type": "hidden_user", "date": 1422450181},
    )
    await bystander.send("/start")
    await forwarder.expect(ar(UNREADABLE), timeout=60)
    await bystander.expect("What would you like to do?", timeout=60)

    # A report with a photo and a document whose EXIF holds GPS and a name.
    await walk_to_description(reporter)
    await reporter.send(f"{DESCRIPTION_CANARY}: the clerk asked for money, call me on {PHONE}.")
    await reporter.press("Done")
    await reporter.expect("Do you have evidence?")
    await reporter.send_kind("photo", content=exif_jpeg(), caption=OWNER)
    await reporter.expect("Saved and encrypted")
    await reporter.send_kind("document", filename=f"{FILE_CANARY}.jpg", content=exif_jpeg(), mime="image/jpeg")
    await reporter.expect("Saved and encrypted")
    await reporter.press("Done")
    await reporter.press("Stay anonymous")
    await reporter.press("No notifications")
    await reporter.expect("Please check your report")
    await reporter.press("Send the report")
    receipt = RECEIPT_RE.search((await reporter.expect("Your receipt number:"))["text"]).group(1)

    deployment.bot.stop()
    log_text = deployment.bot.log_path.read_text(encoding="utf-8", errors="replace")
    assert "an update that could not be decoded was skipped" in log_text

    chats = (reporter, forwarder, bystander)
    ids = set()
    for chat in chats:
        ids |= file_ids(await chat.messages())
    assert len(ids) >= 4  # photo sizes and the document, ids and unique ids
    needles = {
        *(str(chat.user_id) for chat in chats),
        *FIRST_NAMES,
        LAST_NAME,
        *USERNAMES,
        OWNER,
        ARTIST,
        FILE_CANARY,
        DESCRIPTION_CANARY,
        PHONE,
        PHONE.replace(" ", ""),
        receipt,
        receipt.replace(" ", ""),
        TOKEN,
        TOKEN.split(":", 1)[1],
        *ids,
    }
    leaked = {needle: find_plaintext(needle, [deployment.bot.log_path]) for needle in needles}
    assert not {n for n, hits in leaked.items() if hits}, log_text[-4000:]


async def _has(client: SandboxClient, code: int) -> bool:
    return code in await failed_send_codes(client)
