"""End to end: /wipe asks first and a second wipe covers everything since the first; the
receipt's timelines; the bot never posts in groups or channels it was not configured for,
and leaves them."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import RECEIPT_RE, TOKEN, BotProcess, Chat, run_init
from tests.test_e2e_followup import gps_jpeg

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LONG_ENOUGH = "The clerk at the licensing office asked for 200 shekels to stamp the permit."


class Deployment:
    def __init__(self, tmp, server: SandboxServer, client: SandboxClient, staff: dict) -> None:
        self.data_dir = tmp / "var"
        self.server = server
        self.client = client
        self.staff = staff
        self.bot = BotProcess(
            self.data_dir, server.url, tmp / "bot.log",
            {"NAZAHA_STAFF_CHAT_IDS": f"[{staff['id']}]"},
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-wipe")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        staff = await client.create_group("supergroup", "Staff")  # configured before start
        d = Deployment(tmp, server, client, staff)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def visible(chat: Chat) -> list[dict]:
    return [m for m in await chat.messages() if not m["deleted"]]


async def erase(chat: Chat, *, via_button: bool = False) -> dict:
    """/wipe (or the erase button), read the question, say yes; returns the question."""
    if via_button:
        await chat.press("Erase this conversation")
    else:
        await chat.send("/wipe")
    question = await chat.expect("Erase this conversation?")
    assert "receipt" in question["text"]
    await chat.press("Yes, erase everything")
    await chat.expect("This conversation was erased")
    return question


async def to_evidence_step(chat: Chat) -> None:
    await chat.send("/report")
    await chat.expect("Your safety comes first.")
    await chat.press("I understand, continue")
    await chat.expect("What kind of corruption")
    await chat.press("Bribery")
    await chat.expect("Which kind of institution")
    await chat.press("Local council or municipality")
    await chat.expect("In which governorate")
    await chat.press("Hebron")
    await chat.expect("When did it happen?")
    await chat.press("Within the last month")
    await chat.expect("Describe what happened")
    await chat.send(LONG_ENOUGH)
    await chat.expect("characters so far")
    await chat.press("Done")
    await chat.expect("Do you have evidence?")


async def test_second_wipe_erases_everything_written_after_the_first(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("hello")  # no /start: the conversation still has a beginning
    await chat.expect("What would you like to do?")
    await erase(chat)
    [notice] = await visible(chat)
    assert "erased" in notice["text"]

    await chat.send("written after the first wipe")
    await chat.expect("What would you like to do?")
    await chat.send("/help")
    await chat.expect("/wipe")
    await erase(chat)
    remaining = await visible(chat)
    assert len(remaining) == 1 and "erased" in remaining[0]["text"]
    assert remaining[0]["message_id"] > notice["message_id"]


async def test_wipe_mid_report_says_what_is_lost_and_no_keeps_it(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await to_evidence_step(chat)
    blobs = deployment.data_dir / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()} if blobs.exists() else set()
    await chat.send_kind("photo", content=gps_jpeg())
    await chat.expect("Saved and encrypted")
    added = {p for p in blobs.rglob("*") if p.is_file()} - before
    assert added

    await chat.send("/wipe")
    question = await chat.expect("Erase this conversation?")
    assert "unfinished report will be discarded, with the files you added" in question["text"]
    await chat.press("No, keep it")
    await chat.expect("Do you have evidence?")
    assert not [m for m in await chat.messages() if m["deleted"]]  # nothing erased
    assert all(p.exists() for p in added)  # nor the file

    await erase(chat)
    remaining = await visible(chat)
    assert len(remaining) == 1 and "erased" in remaining[0]["text"]
    assert not any(p.exists() for p in added)
    await chat.send("/cancel")
    await chat.expect("There is no report in progress")


async def test_receipt_states_timelines_and_its_erase_button_asks_first(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await to_evidence_step(chat)
    await chat.press("Done")
    await chat.expect("How would you like to stay in touch?")
    await chat.press("Stay anonymous")
    await chat.expect("Would you like a short notification")
    await chat.press("No notifications")
    await chat.expect("Please check your report")
    await chat.press("Send the report")
    receipt_message = await chat.expect("Your receipt number:")
    assert RECEIPT_RE.search(receipt_message["text"])
    assert "within 7 days" in receipt_message["text"]
    assert "within 3 months" in receipt_message["text"]

    question = await erase(chat, via_button=True)
    assert "write it down" in question["text"]
    remaining = await visible(chat)
    assert len(remaining) == 1 and "erased" in remaining[0]["text"]  # the receipt too


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_bot_leaves_unconfigured_groups_and_channels_and_never_posts_there(deployment: Deployment):
    client = deployment.client
    admin = await client.create_user("Admin", "en")
    left_chats: set[int] = set()

    async def has_left(chat_id: int):
        async def check() -> bool:
            return (await client.group(chat_id))["bot_status"] == "left"
        return check

    for chat_type in ("group", "supergroup", "channel"):
        group = await client.create_group(chat_type, "Somewhere")
        status = "administrator" if chat_type == "channel" else "member"
        await client.set_bot_status(group["id"], status, admin["id"])
        # Messages that arrive before the bot has left get no answer either.
        for text in ("/start", "/start@sandbox_bot", "/wipe", "hello", "/report") * 3:
            await client.send_group_text(group["id"], text, None if chat_type == "channel" else admin["id"])
        await client.inject_update({  # undecodable, from the group: nobody is told there
            "message": {"message_id": 999, "date": 0, "chat": {"id": group["id"], "type": chat_type},
                        "from": admin, "forward_origin": {"type": "hidden_user", "date": 1422450181},
                        "text": "forwarded"}})
        await wait_for(await has_left(group["id"]))
        left_chats.add(group["id"])

    # The configured staff chat is not left.
    await client.set_bot_status(deployment.staff["id"], "member", admin["id"])
    # Everything before this private message has been handled once it is answered.
    chat = await Chat.open(client, "en")
    await chat.send("/start")
    await chat.expect("Welcome to Nazaha")
    assert (await client.group(deployment.staff["id"]))["bot_status"] == "member"
    left = {c["params"]["chat_id"] for c in await client.calls("leaveChat")}
    assert left >= left_chats and deployment.staff["id"] not in left
    for chat_id in left_chats | {deployment.staff["id"]}:
        assert not [m for m in (await client.group(chat_id))["messages"] if m["from_bot"]]
    sent_to = {c["params"].get("chat_id") for c in await client.calls("sendMessage")}
    assert not sent_to & (left_chats | {deployment.staff["id"]})
    log = deployment.bot.log_path.read_text(errors="replace")
    assert "left a group or channel" in log
    assert not any(str(abs(chat_id)) in log for chat_id in left_chats)
