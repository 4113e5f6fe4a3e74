"""End to end: crashes, duplicated updates, expiring drafts and receipts Telegram would not take."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.models import UserPreference
from tests.e2e_support import RECEIPT_RE, TOKEN, Chat, find_plaintext, press_callback, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment

pytestmark = [pytest.mark.e2e]


@pytest_asyncio.fixture
async def fresh(tmp_path):
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client)
        run_init(d.data_dir, server.url)
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def walk_to_description(chat: Chat) -> None:
    await chat.send("/report")
    await chat.press("I understand, continue")
    await chat.expect("What kind of corruption")
    await chat.press("Bribery")
    await chat.expect("Which kind of institution")
    await chat.press("Security services")
    await chat.expect("In which governorate")
    await chat.press("Rafah")
    await chat.expect("When did it happen?")
    await chat.press("Within the last year")
    await chat.expect("Describe what happened")


async def test_a_restart_loses_the_draft_and_the_user_is_told_plainly(fresh: Deployment):
    """Drafts live only in the bot's memory (issue 7): after a crash nothing of the draft
    is on disk, and the user is told what happened, in their language, once. Nothing per
    account says who had a conversation (issue 11): for a while after a restart, whoever
    first writes plain text (or taps an old button) is told; a first update that is a
    command is not."""
    await fresh.bot.launch()
    chat = await Chat.open(fresh.client, "en")
    bystander = await Chat.open(fresh.client, "en")
    await bystander.send("/start")
    await bystander.expect("What would you like to do?")
    tapper = await Chat.open(fresh.client, "en")
    await tapper.send("/complaint")
    safety = await tapper.expect("Your safety comes first.")
    await walk_to_description(chat)
    await chat.send(DESCRIPTION)
    await chat.expect("characters so far")
    fresh.bot.kill()
    # Nothing of the draft can be read back from the data dir, with the bot key or without,
    # and the preferences rows do not tell who had begun a report.
    assert not find_plaintext(DESCRIPTION[:20], [fresh.data_dir])
    rows = opened_preferences(fresh)
    kept = {json.dumps(row, sort_keys=True) for row in rows.values()}  # alike for all three
    assert len(rows) == 3 and len(kept) == 1 and set(next(iter(rows.values()))) <= {"locale", "wipe_from"}, rows
    # The user keeps typing while the bot is down.
    await chat.send("It happened twice at the main office.")
    await fresh.bot.launch()
    await chat.expect("The service was restarted recently. If you were in the middle of a report")
    await chat.expect("What would you like to do?")
    # Told once: the next message gets the menu only.
    await chat.send("hello")
    await chat.expect("What would you like to do?")
    texts = [m["text"] for m in await chat.bot_messages_since(chat.last_seen)]
    assert not any("The service was restarted" in t for t in texts)
    # Whether the safety notice was read lived in memory: it is shown again.
    await chat.send("/report")
    await chat.expect("Your safety comes first.")
    # A first update that is a command gets no notice, nor do later ones.
    await bystander.send("/start")
    await bystander.expect("What would you like to do?")
    await bystander.send("hello")
    await bystander.expect("What would you like to do?")
    texts = [m["text"] or "" for m in await bystander.messages() if m["from_bot"]]
    assert not any("The service was restarted" in t for t in texts)
    # A button of a conversation the restart lost: told too, and the button has expired.
    await tapper.press("I understand, continue", in_message=safety)
    await tapper.expect("The service was restarted recently")
    await tapper.expect("This button has expired.")


def opened_preferences(d: Deployment) -> dict[str, dict]:
    """Every preferences row, opened with the bot key: pseudonym -> its JSON."""
    box = BotKeyBox((d.data_dir / "bot.key").read_bytes())
    rows = d.db_rows("SELECT pseudonym, sealed FROM user_preferences")
    return {key: json.loads(box.open("prefs", key, sealed)) for key, sealed in rows}


def prefs_key(d: Deployment, chat: Chat) -> str:
    return pseudonym((d.data_dir / "pepper.key").read_bytes(), "prefs", chat.user_id)


async def test_a_begun_report_leaves_the_preferences_row_as_browsing_does(fresh: Deployment):
    """Issue 11: the bot host knows every awareness subscriber's Telegram id, so their row
    (opened with the bot key and pepper) must not tell that they began a report: after a
    report is begun and the safety notice acknowledged, the row holds what the row of an
    account that only browsed the menu and Learn holds."""
    await fresh.bot.launch()
    reporter = await Chat.open(fresh.client, "en")
    browser = await Chat.open(fresh.client, "en")
    await reporter.send("/report")
    await reporter.expect("Your safety comes first.")
    await reporter.press("I understand, continue")
    await reporter.expect("What kind of corruption")
    await reporter.press("Bribery")
    await reporter.expect("Which kind of institution")
    await browser.send("/start")
    await browser.expect("What would you like to do?")
    await press_callback(browser, "m:learn")
    await browser.expect("Learn about corruption")
    await browser.send("hello")  # the bot's first run: nobody is told of a restart
    await browser.expect("choose a topic with the buttons below")  # typed while in Learn
    assert not any("restarted" in (m["text"] or "") for m in await browser.messages())

    def same_but_language(rows: dict[str, dict]) -> None:
        kept = {who: rows[prefs_key(fresh, chat)] for who, chat in (("r", reporter), ("b", browser))}
        assert set(kept["r"]) == set(kept["b"]) <= {"locale", "wipe_from"}, kept
        assert {k: v for k, v in kept["r"].items() if k != "locale"} == {
            k: v for k, v in kept["b"].items() if k != "locale"
        }, kept

    same_but_language(opened_preferences(fresh))
    # The acknowledgement is still remembered (in memory): the next report skips it.
    await reporter.send("/cancel")
    await reporter.press("Yes, discard it")
    await reporter.expect("Your draft was deleted")
    await reporter.send("/report")
    await reporter.expect("What kind of corruption")
    assert sum("Your safety comes first." in (m["text"] or "") for m in await reporter.messages()) == 1
    same_but_language(opened_preferences(fresh))


async def test_rows_an_older_release_left_are_rewritten_at_start(fresh: Deployment):
    """An older release sealed "safety notice read" and "a conversation was open in run X
    until hour H" into the row. The bot's start rewrites such rows without them (the old
    version gone from the database and WAL), and a mark still current opens the restart
    notice's window."""
    chat = await Chat.open(fresh.client, "en")
    box = BotKeyBox((fresh.data_dir / "bot.key").read_bytes())
    key = prefs_key(fresh, chat)
    now = dt.datetime.now(dt.timezone.utc)
    old = {
        "locale": "en", "safety_seen": True, "wipe_from": 1, "conversation_run": "0f0f0f0f0f0f0f0f",
        "conversation_until": (now + dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H"),
    }
    sealed = box.seal("prefs", key, json.dumps(old).encode())
    engine = create_engine(f"sqlite+aiosqlite:///{fresh.data_dir / 'nazaha.db'}")
    try:
        async with create_sessionmaker(engine)() as session:
            session.add(UserPreference(pseudonym=key, sealed=sealed, expires_at=now + dt.timedelta(days=20)))
            await session.commit()
    finally:
        await engine.dispose()
    await fresh.bot.launch()
    assert opened_preferences(fresh) == {key: {"locale": "en", "wipe_from": 1}}
    for part in (sealed[13:45], sealed[-32:]):  # slices of the old ciphertext and its tag
        hits = [p.name for p in fresh.data_dir.rglob("*") if p.is_file() and part in p.read_bytes()]
        assert not hits, hits
    await chat.send("Are you still there?")
    await chat.expect("The service was restarted recently")
    await chat.expect("What would you like to do?")


async def test_duplicated_update_produces_one_report(fresh: Deployment):
    await fresh.bot.launch()
    chat = await Chat.open(fresh.client, "en")
    await walk_to_description(chat)
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    review = await chat.expect("Please check your report")
    # Telegram may deliver the same update twice (webhook retries, restarts).
    update = {
        "update_id": 900_000,
        "callback_query": {
            "id": "dup-1",
            "from": chat.user,
            "chat_instance": "dup",
            "message": {
                "message_id": review["message_id"],
                "date": review["date"],
                "chat": {"id": chat.user_id, "type": "private"},
                "from": {"id": 424242, "is_bot": True, "first_name": "Nazaha"},
                "text": review["text"],
            },
            "data": "n:submit",
        },
    }
    await fresh.client.inject_update(update)
    await fresh.client.inject_update(update)
    await chat.expect("Your receipt number:")
    # Wait until the bot has confirmed both updates, then count.
    for _ in range(100):
        calls = await fresh.client.calls("getUpdates")
        if any(int(c["params"].get("offset") or 0) > 900_000 for c in calls):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("bot never confirmed the duplicated update")
    receipts = [m for m in await chat.messages() if m["from_bot"] and "Your receipt number:" in (m["text"] or "")]
    assert len(receipts) == 1
    assert fresh.db_rows("SELECT count(*) FROM reports") == [(1,)]
    assert fresh.db_rows("SELECT count(*) FROM processed_updates WHERE update_id = 900000") == [(1,)]


async def test_draft_expires_and_user_is_told(fresh: Deployment):
    fresh.bot.extra_env["NAZAHA_DRAFT_TTL_SECONDS"] = "2"
    await fresh.bot.launch()
    chat = await Chat.open(fresh.client, "en")
    await walk_to_description(chat)
    typed = await chat.send(DESCRIPTION)
    await chat.expect("characters so far")
    await asyncio.sleep(2.5)  # the TTL itself is what is under test, not a synchronisation
    later = await chat.send("more text after a long pause")
    await chat.expect("Your unfinished report was deleted")
    # What the expired draft left in the chat is deleted then (not the message just sent).
    await chat.expect("the messages you wrote for it were deleted from this chat")
    await chat.expect("What would you like to do?")
    shown = {m["message_id"]: m["deleted"] for m in await chat.messages()}
    assert shown[typed] and not shown[later]


async def test_quick_messages_of_one_user_are_handled_in_order(fresh: Deployment):
    await fresh.bot.launch()
    chat = await Chat.open(fresh.client, "en")
    await walk_to_description(chat)
    parts = [f"Part {i}: the clerk asked for money again at the counter." for i in range(6)]
    for part in parts:  # no waiting between messages: a racing read-modify-write would lose some
        await chat.send(part)
    await chat.expect(f"({sum(len(p) for p in parts)} characters so far)")
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    review = await chat.expect("Please check your report")
    assert "\n\n".join(parts) in review["text"]


async def polling(d: Deployment, timeout: float = 90.0) -> None:
    """Wait until the bot process has started polling (start-up is slow on a busy machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await d.client.calls("getUpdates"):
        d.bot.assert_alive()
        assert asyncio.get_running_loop().time() < deadline, "the bot never started polling"
        await asyncio.sleep(0.1)


async def walk_to_review(chat: Chat) -> None:
    await walk_to_description(chat)
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your report")


def receipt_calls(calls: list[dict]) -> list[dict]:
    return [c for c in calls if "Your receipt number:" in ((c.get("params") or {}).get("text") or "")]


async def test_receipt_arrives_after_four_429s(fresh: Deployment):
    fresh.bot.start()
    await polling(fresh)
    chat = await Chat.open(fresh.client, "en")
    await walk_to_review(chat)
    await fresh.client.clear_calls()
    # Telegram's flood control refuses the next four messages, asking for a second each time.
    await fresh.client.add_fault("sendMessage", 429, count=4, retry_after=1)
    await press_callback(chat, "n:submit:review")
    receipt = await chat.expect("Your receipt number:", timeout=30)
    assert receipt["protect_content"] is True
    attempts = receipt_calls(await fresh.client.calls("sendMessage"))
    assert [c["error_code"] for c in attempts] == [429, 429, 429, 429, None]
    gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
    assert all(gap >= 0.9 for gap in gaps), gaps  # retry_after honoured
    await chat.expect("you can erase this")
    # Nothing was lost, so nothing is offered at the next contact.
    await chat.send("/start")
    await chat.expect("What would you like to do?")
    texts = [m["text"] or "" for m in await chat.messages() if m["from_bot"]]
    assert not any("could not be delivered" in t for t in texts)
    assert fresh.db_rows("SELECT count(*) FROM reports") == [(1,)]


async def test_receipt_lost_to_a_long_outage_can_be_shown_once(fresh: Deployment):
    fresh.bot.start()
    await polling(fresh)
    chat = await Chat.open(fresh.client, "en")
    await walk_to_review(chat)
    # Telegram announces an outage longer than the retry budget: the receipt message and
    # the one after it are not delivered, but the report is stored.
    await fresh.client.add_fault("sendMessage", 429, count=2, retry_after=3600)
    await press_callback(chat, "n:submit:review")
    for _ in range(200):
        calls = await fresh.client.calls("sendMessage")
        if sum(1 for c in calls if c["error_code"] == 429) == 2:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the bot never tried to send the receipt")
    assert fresh.db_rows("SELECT count(*) FROM reports") == [(1,)]
    assert not any("Your receipt number:" in (m["text"] or "") for m in await chat.messages())

    # Next contact: the user is told, with a button.
    await chat.send("/start")
    notice = await chat.expect("its receipt could not be delivered")
    await chat.expect("What would you like to do?")
    await chat.press("Show my receipt", in_message=notice)
    shown = await chat.expect("Your receipt number:")
    assert shown["protect_content"] is True
    receipt = RECEIPT_RE.search(shown["text"]).group(1)
    assert await fresh.open_with_receipt(receipt) is not None  # the receipt of the stored report

    # Once only: a second press finds nothing, and the receipt went into no file or log.
    await chat.press("Show my receipt", in_message=notice)
    await chat.expect("This receipt is no longer available")
    assert sum("Your receipt number:" in (m["text"] or "") for m in await chat.messages()) == 1
    await chat.send("/start")
    await chat.expect("What would you like to do?")
    assert sum("could not be delivered" in (m["text"] or "") for m in await chat.messages()) == 1
    assert find_plaintext(receipt, [fresh.data_dir, fresh.bot.log_path]) == []
    assert find_plaintext(receipt.replace(" ", ""), [fresh.data_dir, fresh.bot.log_path]) == []


async def test_polling_confirms_only_settled_updates_so_a_kill_loses_none(fresh: Deployment):
    """Polling (issue 12): the getUpdates offset never passes an update still in progress.
    An album is being gathered (a long quiet period) while other users are answered; the bot
    is killed with SIGKILL. After the restart every update is there again: the album is
    answered; the others, answered before the kill but not yet confirmable (they come after
    the album), are delivered again and answered again (nothing was stored for them, and
    the replay is harmless). None is lost."""
    fresh.bot.extra_env["NAZAHA_ALBUM_QUIET_SECONDS"] = "600"
    await fresh.bot.launch()
    album_chat = await Chat.open(fresh.client, "en")
    await album_chat.send("/start")
    await album_chat.expect("What would you like to do?")
    sent = await fresh.client.send_media_group(album_chat.user_id, [{"kind": "photo"}, {"kind": "photo"}])
    album_ids = [item["update_id"] for item in sent]
    album_chat.last_seen = max(item["message_id"] for item in sent)
    others = [await Chat.open(fresh.client, "en") for _ in range(3)]
    for chat in others:
        await chat.send("/start")
    for chat in others:
        await chat.expect("What would you like to do?")
    # The bot asks Telegram again after answering them, never confirming past the album.
    asked = len(await fresh.client.calls("getUpdates"))
    for _ in range(200):
        calls = await fresh.client.calls("getUpdates")
        if len(calls) > asked + 1:
            break
        await asyncio.sleep(0.05)
    offsets = [int(c["params"].get("offset") or 0) for c in calls]
    assert len(offsets) > asked + 1 and max(offsets) <= min(album_ids)
    assert await album_chat.bot_messages_since(album_chat.last_seen) == []
    fresh.bot.kill()
    fresh.bot.extra_env["NAZAHA_ALBUM_QUIET_SECONDS"] = "0.5"
    await fresh.bot.launch()
    await album_chat.expect("")  # the album reached the restarted bot
    for _ in range(200):
        if (await fresh.client.bot_info())["pending_updates"] == 0:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("updates left unconfirmed")
    for chat in others:
        menus = [m for m in await chat.messages() if m["from_bot"] and "What would you like to do?" in (m["text"] or "")]
        assert len(menus) >= 1


async def test_polling_sigterm_finishes_what_it_can_and_leaves_the_rest_with_telegram(fresh: Deployment):
    """SIGTERM (issue 12): no new update is taken, those in progress get
    NAZAHA_SHUTDOWN_GRACE_SECONDS; one still unfinished then (an album being gathered) is
    cut short and left unconfirmed, so the next run answers it. The stop is clean."""
    fresh.bot.extra_env.update(NAZAHA_ALBUM_QUIET_SECONDS="600", NAZAHA_SHUTDOWN_GRACE_SECONDS="1")
    await fresh.bot.launch()
    chat = await Chat.open(fresh.client, "en")
    await chat.send("/start")
    await chat.expect("What would you like to do?")
    sent_at = time.monotonic()
    sent = await fresh.client.send_media_group(chat.user_id, [{"kind": "photo"}, {"kind": "photo"}])
    chat.last_seen = max(item["message_id"] for item in sent)
    for _ in range(400):  # until the bot is gathering the album: it then polls without waiting
        calls = await fresh.client.calls("getUpdates")
        if any(c["mono"] > sent_at and not int(c["params"].get("timeout") or 0) for c in calls):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the bot never took the album")
    process = fresh.bot.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 60) == 0
    assert "polling stopped" in fresh.bot.log_path.read_text(errors="replace")
    offsets = [int(c["params"].get("offset") or 0) for c in await fresh.client.calls("getUpdates")]
    assert max(offsets) <= sent[0]["update_id"]  # the album was never confirmed
    assert (await fresh.client.bot_info())["pending_updates"] == 2
    fresh.bot.extra_env["NAZAHA_ALBUM_QUIET_SECONDS"] = "0.5"
    await fresh.bot.launch()
    await chat.expect("")  # the next run answers the album
