"""End to end (issue 11, seized-host trial): what a seized bot token reads of a reporter's chat.

Telegram keeps a bot's private chats, and whoever holds the token can copy or forward any
message still there into a chat of their own, and read the bot's own messages back by
editing them. So the bot deletes what a report, a discarded draft or a follow-up left in the
chat; what is still shown (the receipt) is protected (forwards refused) and the user can
delete it. The attacker here holds only the token and tries every message id of the chat.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import RECEIPT_RE, TOKEN, Chat, assert_no_unknown_calls, run_init
from tests.test_e2e_bot import Deployment
from tests.test_e2e_followup import gps_jpeg, open_chat

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DESCRIPTION = "The clerk at the land registry asked for 300 dinars to register the deed."
MORE = "He said the stamp costs extra unless I pay him in cash at his house in Beit Sahour."
NAME = "Samira Kanaan"
PHONE = "0599 123 456"
CAPTION = "Photo of the handwritten price list on his desk"
PROTECTED = "Bad Request: message has protected content and can't be forwarded"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-chat-trail")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


class Attacker:
    """Holds only the bot token (from a seized host) and a Telegram account of their own."""

    def __init__(self, d: Deployment, own: Chat) -> None:
        self.url = f"{d.server.url}/bot{TOKEN}"
        self.client = d.client
        self.own = own

    @classmethod
    async def arrive(cls, d: Deployment) -> "Attacker":
        own = await open_chat(d)
        await own.send("/start")  # so that the bot may post into the attacker's chat
        await own.expect("Welcome")
        return cls(d, own)

    async def call(self, method: str, **params) -> dict:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/{method}", json=params) as resp:
                return await resp.json()

    async def harvest(self, victim: int, upto: int, *, edit: bool = False) -> tuple[list[str], dict[int, dict]]:
        """Every text the token yields of chat ``victim``, ids 1..``upto``: copies and
        forwards (each id, and 100 at a time) into the attacker's chat, and (``edit``) the
        bot's own messages read back by changing their buttons, which the reporter would
        see. Also each id's answers."""
        before = {m["message_id"] for m in await self.own.messages()}
        answers: dict[int, dict] = {}
        texts: list[str] = []
        ids = list(range(1, upto + 1))
        for start in range(0, len(ids), 100):
            batch = ids[start : start + 100]
            for method in ("copyMessages", "forwardMessages"):
                await self.call(method, chat_id=self.own.user_id, from_chat_id=victim, message_ids=batch)
        for message_id in ids:
            answer = {}
            for method in ("copyMessage", "forwardMessage"):
                answer[method] = await self.call(
                    method, chat_id=self.own.user_id, from_chat_id=victim, message_id=message_id
                )
            if edit:
                edited = await self.call(
                    "editMessageReplyMarkup", chat_id=victim, message_id=message_id,
                    reply_markup={"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]},
                )
                answer["editMessageReplyMarkup"] = edited
                if edited.get("ok"):
                    texts.append(edited["result"].get("text") or edited["result"].get("caption") or "")
            forwarded = answer["forwardMessage"]
            if forwarded.get("ok"):
                texts.append(forwarded["result"].get("text") or forwarded["result"].get("caption") or "")
            answers[message_id] = answer
        for message in await self.own.messages():
            if message["message_id"] not in before:
                texts.append((message["text"] or "") + (message["caption"] or ""))
        return texts, answers


def visible(messages: list[dict]) -> list[dict]:
    return [m for m in messages if not m["deleted"]]


async def until_deleted(chat: Chat, message_id: int, timeout: float = 20.0) -> None:
    """Wait until the chat shows message ``message_id`` deleted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state = await chat.client.wait_for_change(chat.user_id, -1, timeout=timeout)
    while not any(m["message_id"] == message_id and m["deleted"] for m in state["messages"]):
        remaining = deadline - loop.time()
        assert remaining > 0, f"message {message_id} was not deleted"
        state = await chat.client.wait_for_change(chat.user_id, state["version"], timeout=remaining)


def leaked(texts: list[str], *needles: str) -> list[str]:
    return [needle for needle in needles if any(needle in text for text in texts)]


async def complaint_to_review(chat: Chat) -> None:
    """A complaint with a two-part description, an edited description, a captioned photo and
    contact details, up to the review screen."""
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.expect("characters so far")
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.send_kind("photo", content=gps_jpeg(), caption=CAPTION)
    await chat.expect("Saved and encrypted")
    await chat.press("Done")
    await chat.press("Share my contact details")
    await chat.press("I agree")
    await chat.expect("write the name")
    await chat.send(NAME)
    await chat.expect("phone number")
    await chat.send(PHONE)
    await chat.press("No notifications")
    await chat.expect("Please check your complaint")
    await chat.press("Edit: Description")
    so_far = await chat.expect("Your description so far:")
    assert so_far["protect_content"] is True
    await chat.send(MORE)
    await chat.press("Done")
    review = await chat.expect("Please check your complaint")
    assert review["protect_content"] is True and NAME in review["text"] and CAPTION in review["text"]


async def test_a_seized_token_reads_nothing_of_a_sent_report_and_the_receipt_can_go(deployment: Deployment):
    chat = await open_chat(deployment)
    await complaint_to_review(chat)
    await chat.press("Send the complaint")
    receipt_message = await chat.expect("Your receipt number:")
    receipt = RECEIPT_RE.search(receipt_message["text"]).group(1)
    told = await chat.expect("were deleted from this chat")
    assert "Your complaint was received" in told["text"]
    await chat.expect("When you have written your receipt down")

    # The reporter's chat now shows the receipt (protected, with its delete button), the
    # notice and what to do next; of the conversation, only the questions asked before
    # their first message (/complaint) could be left, and it began with that message.
    shown = visible(await chat.messages())
    after = [m for m in shown if m["message_id"] >= receipt_message["message_id"]]
    assert [m["text"][:25] for m in after] == [
        receipt_message["text"][:25], told["text"][:25], "When you have written you"
    ]
    assert [m for m in shown if not m["from_bot"]] == []
    assert leaked([m["text"] or "" for m in shown], DESCRIPTION, MORE, NAME, PHONE, CAPTION,
                  "Please check your complaint", "Your description so far") == []
    assert after[0]["protect_content"] is True
    assert after[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "s:delete"
    report = await deployment.open_with_receipt(receipt)
    assert report.fields["contact_name"] == NAME and MORE in report.fields["description"]

    # The attacker, with the token alone, tries every id of the chat.
    attacker = await Attacker.arrive(deployment)
    upto = max(m["message_id"] for m in await chat.messages()) + 30
    texts, answers = await attacker.harvest(chat.user_id, upto)
    assert leaked(texts, DESCRIPTION, MORE, NAME, PHONE, CAPTION, "Please check your complaint",
                  "Your description so far") == []
    # The receipt cannot be forwarded (protected) ...
    at_receipt = answers[receipt_message["message_id"]]
    assert at_receipt["forwardMessage"] == {"ok": False, "error_code": 400, "description": PROTECTED}
    # ... but a bot may copy protected content, as Telegram lets it: while the receipt is in
    # the chat the token can read it (docs/security.md, Residual risks). Nothing else.
    assert at_receipt["copyMessage"]["ok"] is True
    assert leaked(texts, receipt) == [receipt]

    # The reporter wrote it down and deletes it: then the token reads no receipt either,
    # not even by editing the bot's messages that are left.
    await chat.press_data(receipt_message["message_id"], "s:delete")
    await until_deleted(chat, receipt_message["message_id"])
    texts, answers = await attacker.harvest(chat.user_id, upto, edit=True)
    assert leaked(texts, receipt, DESCRIPTION, MORE, NAME, PHONE, CAPTION, "Please check your complaint") == []
    assert any(a["editMessageReplyMarkup"].get("ok") for a in answers.values())  # the edit path was open
    deletions = await deployment.client.calls("deleteMessages", chat_id=chat.user_id)
    assert deletions and all(c["ok"] for c in deletions)
    assert all(1 <= len(c["params"]["message_ids"]) <= 100 for c in deletions)
    await assert_no_unknown_calls(deployment.client)


async def test_a_refused_deletion_does_not_fail_the_submission(deployment: Deployment):
    chat = await open_chat(deployment)
    await chat.send("/report")
    await chat.press("I understand, continue")
    await chat.press("Bribery")
    await chat.press("Ministry")
    await chat.press("Nablus")
    await chat.press("still going on")
    await chat.expect("Describe what happened")
    typed = await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your report")
    # Telegram refuses every deletion (e.g. the messages are over 48 hours old).
    await deployment.client.add_fault(
        "deleteMessages", 400, count=50, description="Bad Request: message can't be deleted"
    )
    try:
        await chat.press("Send the report")
        receipt_message = await chat.expect("Your receipt number:")
        await chat.expect("When you have written your receipt down")
    finally:
        await deployment.client.clear_faults()
    receipt = RECEIPT_RE.search(receipt_message["text"]).group(1)
    assert (await deployment.open_with_receipt(receipt)).fields["description"] == DESCRIPTION
    refused = await deployment.client.calls("deleteMessages", chat_id=chat.user_id)
    assert refused and not any(c["ok"] for c in refused)
    # The user is not told that something was deleted: nothing was.
    shown = visible(await chat.messages())
    assert not any("deleted from this chat" in (m["text"] or "") for m in shown)
    assert any(m["message_id"] == typed for m in shown)
    deployment.bot.assert_alive()


async def test_a_discarded_draft_leaves_the_chat_too(deployment: Deployment):
    chat = await open_chat(deployment)
    await chat.send("/report")
    await chat.press("I understand, continue")
    await chat.press("Bribery")
    await chat.press("Ministry")
    await chat.press("Nablus")
    await chat.press("still going on")
    await chat.expect("Describe what happened")
    typed = await chat.send(DESCRIPTION)
    await chat.expect("characters so far")
    await chat.send("/cancel")
    await chat.expect("Discard this report?")
    await chat.press("Yes, discard it")
    await chat.expect("deleted from this chat too")
    await chat.expect("Your draft was deleted. Nothing was sent.")
    messages = {m["message_id"]: m for m in await chat.messages()}
    assert messages[typed]["deleted"] and messages[1]["deleted"]  # from /report on
    assert not any(DESCRIPTION in (m["text"] or "") for m in visible(list(messages.values())))


async def test_follow_up_replies_and_files_leave_the_chat_once_stored(deployment: Deployment):
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
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your complaint")
    await chat.press("Send the complaint")
    receipt_message = await chat.expect("Your receipt number:")
    receipt = RECEIPT_RE.search(receipt_message["text"]).group(1)
    await chat.expect("When you have written your receipt down")

    began = await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    view = await chat.expect("No messages yet")
    assert view["protect_content"] is True  # the case view shows the thread
    await chat.press("Reply to the caseworkers")
    await chat.expect("Write your message")
    reply = "The second payment was made in cash on Sunday, near the mosque."
    replied = await chat.send(reply)
    await chat.expect("Your message was sent")
    view = await chat.expect(reply)
    assert view["protect_content"] is True
    await until_deleted(chat, replied)
    await chat.press("Add evidence")
    await chat.expect("Send photos")
    photo = await chat.send_kind("photo", content=gps_jpeg(), caption=CAPTION)
    await chat.expect("Saved and encrypted")
    await until_deleted(chat, photo)
    await chat.press("Done")
    await chat.expect("Evidence: 1 file")
    await chat.press("End the session")
    await chat.expect("this follow-up were deleted from this chat")
    await chat.expect("The follow-up session has ended")

    messages = {m["message_id"]: m for m in await chat.messages()}
    assert all(messages[i]["deleted"] for i in messages if began <= i < max(messages) - 1)
    attacker = await Attacker.arrive(deployment)
    texts, _ = await attacker.harvest(chat.user_id, max(messages) + 30)
    assert leaked(texts, reply, CAPTION, DESCRIPTION, "No messages yet", "Evidence:") == []
    # What is left of the chat: the receipt (and the questions before /complaint: none).
    assert leaked(texts, receipt) == [receipt]
