"""End to end (issue 8): the conversation keeps what the user gave it.

Stale buttons, editing the description, edited messages, receipts typed in the wrong
place, the follow-up thread after a reply, a follow-up session expiring while the reporter
types, and what the reporter is told after a restart.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import TOKEN, Chat, assert_no_unknown_calls, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment
from tests.test_e2e_followup import designations, open_chat, report_with_evidence

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SESSION_TTL = 4  # seconds: a follow-up session closes after this much silence
RECEIPT_SHAPE = "1234 5678 9012 3456 7890"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-conversation")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client, NAZAHA_SESSION_TTL_SECONDS=str(SESSION_TTL))
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def to_description(chat: Chat) -> dict:
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    return await chat.expect("Describe what happened")


async def description_to_review(chat: Chat) -> dict:
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    return await chat.expect("Please check your complaint")


def button_data(message: dict, label: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for button in row:
            if label in button["text"]:
                return button["callback_data"]
    raise AssertionError(label)


async def test_done_pressed_twice_does_not_skip_the_evidence_step(deployment: Deployment):
    chat = await open_chat(deployment)
    question = await to_description(chat)
    await chat.send(DESCRIPTION)
    await chat.expect("Received")
    done = button_data(question, "Done")
    await chat.press_data(question["message_id"], done)
    await chat.expect("Do you have evidence?")
    await chat.press_data(question["message_id"], done)  # the same button again
    await chat.expect("This button has expired.")
    again = await chat.expect("Do you have evidence?")
    assert "Done" in json.dumps(again["reply_markup"])
    await chat.press("Done")  # the evidence step's own button still works
    await chat.expect("stay in touch")


async def test_editing_the_description_adds_to_it_or_replaces_it_after_asking(deployment: Deployment):
    chat = await open_chat(deployment)
    await to_description(chat)
    await chat.send(DESCRIPTION)
    await description_to_review(chat)
    await chat.press("Edit: Description")
    shown = await chat.expect("Your description so far:")
    assert DESCRIPTION in shown["text"]
    await chat.send("The clerk at the window saw it too.")
    await chat.press("Done")
    review = await chat.expect("Please check your complaint")
    assert DESCRIPTION in review["text"] and "The clerk at the window saw it too." in review["text"]

    await chat.press("Edit: Description")
    await chat.expect("Your description so far:")
    await chat.press("Replace it")
    await chat.expect("Delete the description you wrote")
    await chat.press("No, keep it")
    await chat.expect("Send more messages to add to it")
    await chat.press("Replace it")
    await chat.press("Yes, delete it")
    await chat.expect("Your description was deleted")
    await chat.send("A nurse asked for money before treating my mother at the hospital.")
    await chat.press("Done")
    review = await chat.expect("Please check your complaint")
    assert "A nurse asked for money" in review["text"] and DESCRIPTION not in review["text"]


async def test_an_edited_message_updates_the_answer_before_submission_only(deployment: Deployment):
    chat = await open_chat(deployment)
    await to_description(chat)
    slip = "The official Ahmad Saleh asked me for 200 shekels to stamp the permit."
    fixed = "The official at the second window asked me for 200 shekels to stamp the permit."
    message_id = await chat.send(slip)
    await chat.expect("Received")
    await deployment.client.edit_text(chat.user_id, message_id, fixed)
    await chat.expect("Your edit was applied")
    review = await description_to_review(chat)
    assert fixed in review["text"] and "Ahmad Saleh" not in review["text"]
    before = set(designations(deployment))
    await chat.press("Send the complaint")
    await chat.expect("Your receipt number:")
    (designation,) = set(designations(deployment)) - before
    stored = json.dumps(deployment.decrypt_with_team_key(designation), ensure_ascii=False)
    assert "second window" in stored and "Ahmad Saleh" not in stored

    # Once sent, the report's messages left the chat (issue 11): the slip cannot be edited
    # any more. An edit of a later message is answered: a sent report cannot change.
    assert {m["message_id"]: m for m in await chat.messages()}[message_id]["deleted"]
    later = await chat.send("One more thing about the permit office.")
    await chat.expect("What would you like to do?")
    await deployment.client.edit_text(chat.user_id, later, slip + " (again)")
    told = await chat.expect("cannot be changed")
    assert "Follow up" in told["text"]


async def test_a_receipt_in_the_wrong_place_is_deleted_or_asked_about(deployment: Deployment):
    chat = await open_chat(deployment)
    await chat.send("/start")
    await chat.expect("What would you like to do?")
    typed = await chat.send("\u200f١٢٣٤ ٥٦٧٨ ٩٠١٢ ٣٤٥٦ ٧٨٩٠")
    offer = await chat.expect("looks like a receipt number")
    assert "Follow up" in json.dumps(offer["reply_markup"], ensure_ascii=False)
    messages = {m["message_id"]: m for m in await chat.messages()}
    assert messages[typed]["deleted"]

    await to_description(chat)
    pasted = await chat.send(RECEIPT_SHAPE)
    await chat.expect("not added to your report")
    assert {m["message_id"]: m for m in await chat.messages()}[pasted]["deleted"]
    inside = await chat.send(f"{DESCRIPTION} My earlier receipt was {RECEIPT_SHAPE}.")
    await chat.expect("looks like a receipt")
    await chat.press("Remove the number")
    await chat.expect("The number was removed")
    assert {m["message_id"]: m for m in await chat.messages()}[inside]["deleted"]
    review = await description_to_review(chat)
    assert "1234" not in review["text"] and "My earlier receipt was …" in review["text"]


async def start_follow_up(chat: Chat, receipt: str) -> dict:
    await chat.send("/followup")
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    return await chat.expect("Your complaint")


async def test_the_thread_shows_the_reply_just_sent(deployment: Deployment):
    chat = await open_chat(deployment)
    receipt, _ = await report_with_evidence(chat, notify=False, files=[])
    view = await start_follow_up(chat, receipt)
    assert "No messages yet" in view["text"]
    await chat.press("Reply to the caseworkers")
    await chat.expect("Write your message")
    await chat.send("The invoice is dated 3 March.")
    await chat.expect("Your message was sent")
    view = await chat.expect("The invoice is dated 3 March.")
    assert "No messages yet" not in view["text"] and "Your complaint" in view["text"]


async def test_follow_up_activity_renews_and_a_late_reply_is_kept(deployment: Deployment):
    chat = await open_chat(deployment)
    receipt, designation = await report_with_evidence(chat, notify=False, files=[])
    await start_follow_up(chat, receipt)
    # Taps renew the session: three Refresh taps, each after most of its lifetime.
    for _ in range(3):
        await asyncio.sleep(SESSION_TTL * 0.6)
        await chat.press("Refresh")
        await chat.expect("Your complaint")
    await chat.press("Reply to the caseworkers")
    await chat.expect("Write your message")
    await asyncio.sleep(SESSION_TTL + 1)  # the reporter types for longer than the session
    await chat.send("The second payment was made in cash on Sunday.")
    told = await chat.expect("of silence")
    assert "kept in memory" in told["text"]
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    confirm = await chat.expect("Send this message to the caseworkers")
    assert "The second payment was made in cash on Sunday." in confirm["text"]
    await chat.press("Send it")
    await chat.expect("Your message was sent")
    view = await chat.expect("The second payment was made in cash on Sunday.")
    assert "Your complaint" in view["text"]


async def test_after_a_restart_the_follow_up_says_what_happened(deployment: Deployment):
    chat = await open_chat(deployment)
    receipt, _ = await report_with_evidence(chat, notify=False, files=[])
    await start_follow_up(chat, receipt)
    await chat.press("Reply to the caseworkers")
    await chat.expect("Write your message")
    deployment.bot.stop()
    await deployment.bot.launch()
    await chat.send("Are you still there?")
    told = await chat.expect("The service was restarted")
    texts = [m["text"] or "" for m in await chat.bot_messages_since(told["message_id"] - 1)]
    assert not any("silence" in t for t in texts)
    await assert_no_unknown_calls(deployment.client)  # every method the bot used is modelled
