"""End to end: the real bot process against the sandbox and the caseworkers' console on the
same data dir and database. A report filed in the chat appears in the inbox; a reply and a
status change reach the reporter (content-free notification, then words in follow-up); the
reporter's follow-up message appears on the case page and marks the case unseen; news for
a reporter made while no bot runs is kept by the console and sent once a bot runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3

import pytest
import pytest_asyncio
from fastapi.testclient import TestClient

from nazaha.admin.app import create_app
from nazaha.bot.settings import Settings
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.console_db import console_db_path
from tests.console_support import MovableClock, csrf_of, enrol
from tests.e2e_support import PASSPHRASE, RECEIPT_RE, TOKEN, Chat, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "https://testserver"  # the console's cookies are Secure: the test client sends them over https only
NOTIFICATION = "There is an update on your report."
INVITATION_RE = re.compile(r"http://\S+/invite/\S+")
ROW_RE = re.compile(r'<tr class="(unseen)?">\s*<td><input type="checkbox" name="case" value="(R-[A-Z0-9]+)"')


class ConsoleBrowser:
    """One signed-in browser on the console app. Requests run in a worker thread so that
    the sandbox, served by this test's event loop, keeps answering the bot meanwhile."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def get(self, path: str, **kwargs):
        return await asyncio.to_thread(self.client.get, path, **kwargs)

    async def post(self, path: str, data: dict[str, str]):
        return await asyncio.to_thread(self.client.post, path, data=data)

    async def inbox(self) -> dict[str, bool]:
        """Designation → marked new or updated since this member last looked."""
        page = await self.get("/cases")
        assert page.status_code == 200, page.text
        return {designation: bool(unseen) for unseen, designation in ROW_RE.findall(page.text)}

    async def act(self, designation: str, action: str, **form: str):
        page = await self.get(f"/cases/{designation}")
        answer = await self.post(f"/cases/{designation}/{action}", {"csrf": csrf_of(page.text), **form})
        assert answer.status_code == 303 and "done=1" in answer.headers["location"], answer.headers
        return answer


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-console")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client, NAZAHA_NOTIFY_INTERVAL_SECONDS="0.2")
        init = await asyncio.to_thread(run_init, d.data_dir, server.url)
        # `nazaha init` printed the first administrator's invitation: its console store is
        # beside the data dir (never in it, or the bot would refuse to start).
        link = INVITATION_RE.search(init.stdout).group(0)
        await d.bot.launch()
        d.settings = Settings(
            _env_file=None,
            data_dir=d.data_dir,
            console_dir=d.data_dir.parent / f"{d.data_dir.name}-console",
            kdf_profile="testing",
            notify_interval_seconds=0.2,  # how often the console sends news kept for later
        )
        d.clock = MovableClock(dt.datetime.now(dt.timezone.utc))  # the bot's dates are real ones
        app = create_app(d.settings, clock=d.clock)
        test_client = TestClient(app, base_url=BASE, follow_redirects=False, headers={"Accept-Language": "en"})
        await asyncio.to_thread(test_client.__enter__)
        try:
            await asyncio.to_thread(enrol, test_client, link, d.clock, team_passphrase=PASSPHRASE)
            d.admin = ConsoleBrowser(test_client)
            yield d
        finally:
            await asyncio.to_thread(test_client.__exit__, None, None, None)
            d.bot.stop()
            await client.close()


def bot_rows(d: Deployment, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(d.data_dir / "nazaha.db") as db:
        return db.execute(sql, args).fetchall()


def pending_news(d: Deployment) -> list[str]:
    """The console's own store of news kept for later (``console.pending_news``)."""
    with sqlite3.connect(console_db_path(d.settings.effective_console_dir)) as db:
        return [r[0] for r in db.execute("SELECT report_id FROM pending_news")]


def report_id_of(d: Deployment, designation: str) -> str:
    return bot_rows(d, "SELECT id FROM reports WHERE designation = ?", designation)[0][0]


def links(d: Deployment, designation: str) -> int:
    return bot_rows(
        d, "SELECT count(*) FROM notification_links l JOIN reports r ON r.id = l.report_id WHERE r.designation = ?",
        designation,
    )[0][0]


async def notifications(chat: Chat) -> list[dict]:
    return [m for m in await chat.bot_messages_since(0) if NOTIFICATION in (m.get("text") or "")]


async def file_complaint(chat: Chat, *, contact: bool) -> str:
    """A complaint that opts in to notifications; returns the receipt."""
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    if contact:
        await chat.press("Share my contact details")
        await chat.press("I agree")
        await chat.expect("write the name")
        await chat.send("Samira K.")
        await chat.expect("phone number")
        await chat.send("0599 123 456")
    else:
        await chat.press("Stay anonymous")
    await chat.press("Notify me")
    await chat.expect("Please check your complaint")
    await chat.press("Send the complaint")
    return RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)


async def follow_up_from(chat: Chat, notice: dict, receipt: str) -> dict:
    """Tap "Follow up" in a notification, type the receipt; returns the follow-up view."""
    await chat.press("Follow up with my receipt", in_message=notice)
    await chat.expect("Please type your receipt number")
    await chat.send(receipt)
    return await chat.expect("Your complaint")


async def test_report_reply_status_and_follow_up_through_the_console(world: Deployment):
    d = world
    admin = d.admin
    chat = await Chat.open(d.client, "en")
    receipt = await file_complaint(chat, contact=True)

    # 1. The report is in the inbox (the only case: the citizen never sees its designation),
    # new to the caseworker; its answers are on the case page.
    inbox = await admin.inbox()
    assert len(inbox) == 1, inbox
    ((designation, unseen),) = inbox.items()
    assert unseen
    page = await admin.get(f"/cases/{designation}")
    assert page.status_code == 200
    assert DESCRIPTION in page.text and "Samira K." in page.text and "0599 123 456" in page.text
    assert "The reporter gets notifications" in page.text
    assert (await admin.inbox())[designation] is False  # opened: no longer new

    # 2. A reply with "notify": the content-free notification, then the reply in follow-up.
    reply = "Thank you. Could you tell us the date of the payment?"
    await admin.act(designation, "reply", body=reply, notify="1")
    notice = await chat.expect(NOTIFICATION)
    assert "payment" not in notice["text"]
    view = await follow_up_from(chat, notice, receipt)
    assert reply in view["text"]
    assert "Received: waiting to be read by a caseworker." in view["text"]
    assert "Update notifications are on" in view["text"]

    # 3. Acknowledged, with "notify": notified, and read in words in follow-up.
    await admin.act(designation, "status", status="acknowledged", notify="1")
    notice = await chat.expect(NOTIFICATION)
    assert len(await notifications(chat)) == 2
    # The follow-up session is still open: the notification's button starts a new one (it
    # may be about another report), asking for a receipt; it has not expired.
    view = await follow_up_from(chat, notice, receipt)
    assert "Acknowledged: a caseworker has read it." in view["text"]
    assert (await admin.inbox())[designation] is False  # the member's own changes are not news to them

    # 4. The reporter writes in follow-up: the case is marked for the caseworker until they
    # open it, and the message is on the case page.
    await chat.press("Reply to the caseworkers", in_message=view)
    await chat.expect("Write your message")
    message = "The payment was on the third of March, in cash, at the permits office."
    await chat.send(message)
    await chat.expect("Your message was sent")
    view = await chat.expect(message)  # the view comes back with the message in it
    assert (await admin.inbox())[designation] is True
    page = await admin.get(f"/cases/{designation}")
    assert message in page.text and reply in page.text
    assert (await admin.inbox())[designation] is False

    # 3 (end). Closed with an outcome, "notify" ticked: closing deletes the notification
    # links, so nothing is sent (the console sends no news for a closed case); the reporter
    # reads the outcome in words when following up.
    assert links(d, designation) == 1
    await admin.act(designation, "status", status="closed", outcome="substantiated", notify="1")
    assert links(d, designation) == 0
    assert bot_rows(d, "SELECT count(*) FROM notification_instructions") == [(0,)]
    assert pending_news(d) == []
    await chat.press("Refresh", in_message=view)
    view = await chat.expect("Closed: the facts were confirmed.")
    assert view["text"].startswith("Your complaint")
    assert "Update notifications are on" not in view["text"]
    assert reply in view["text"] and message in view["text"]
    assert len(await notifications(chat)) == 2
    d.bot.assert_alive()


async def test_news_kept_while_no_bot_runs_is_sent_when_a_bot_runs(world: Deployment):
    d = world
    admin = d.admin
    chat = await Chat.open(d.client, "en")
    before = set(await admin.inbox())
    receipt = await file_complaint(chat, contact=False)
    (designation,) = set(await admin.inbox()) - before
    report_id = report_id_of(d, designation)

    # The bot stops cleanly: its mailbox is withdrawn, so nothing can be addressed to it.
    d.bot.stop()
    assert bot_rows(d, "SELECT count(*) FROM bot_mailboxes") == [(0,)]

    reply = "We have opened an inquiry into the clinic."
    await admin.act(designation, "reply", body=reply, notify="1")
    assert pending_news(d) == [report_id]
    assert bot_rows(d, "SELECT count(*) FROM notification_instructions") == [(0,)]
    assert await notifications(chat) == []

    # A bot runs again: the signed-in administrator's session holds the team key, so the
    # console's housekeeping sends the kept news to the new mailbox.
    await d.bot.launch()
    notice = await chat.expect(NOTIFICATION)
    assert "inquiry" not in notice["text"]
    assert pending_news(d) == []
    view = await follow_up_from(chat, notice, receipt)
    assert reply in view["text"]
    assert len(await notifications(chat)) == 1
