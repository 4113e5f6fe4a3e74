"""End to end: the real `nazaha bot` process sends awareness broadcasts through the sandbox
emulator over HTTP. The test plays the console (it writes broadcasts, approvals, pauses
and test-send requests into the database, as the console does) and reads what every user
received from the emulator: its timestamps for the pace, its chats for duplicates."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update

from nazaha.awareness.broadcast_message import TEST_UNSUBSCRIBE_DATA
from nazaha.awareness.markup import parse_markup
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.handlers import awareness_callbacks as aw
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.awareness_models import Subscriber
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import create_engine, create_sessionmaker, write_transaction
from nazaha.storage.keyfiles import KeyPaths, load_bot_secrets
from tests.broadcast_support import (
    add_broadcast,
    ask_test_send,
    delivered_per_chat,
    linked_staff_chat,
    max_per_chat_window,
    max_per_window,
    send_calls,
    set_status,
    started_users,
    subscribe,
    utcnow,
)
from tests.e2e_support import TOKEN, BotProcess, Chat, press_callback, run_init

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RATE = 200  # messages/s: high enough to keep the tests short, low enough to be paced
HOSTILE = "<b>not bold</b> & *half _open [link( `x` 😀 **قانون النزاهة** &amp; <i> 5*3_2 [a](b"


class Broadcasts:
    """One `nazaha bot` process, the emulator in this process, and the bot's database."""

    def __init__(self, tmp: Path, server: SandboxServer) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "var"
        self.server = server
        self.emulator = server.emulator
        self.bot = BotProcess(
            self.data_dir, server.url, tmp / "bot.log",
            {"NAZAHA_BROADCAST_RATE": str(RATE), "NAZAHA_BROADCAST_CHECK_SECONDS": "0.2"},
        )
        self.engine: Any = None
        self.sessionmaker: Any = None
        self.store: SubscriberStore | None = None
        self.box: BotKeyBox | None = None
        self.client = SandboxClient(server.url, token=TOKEN)  # users who write to the bot
        self.pepper = b""

    def open_database(self) -> None:
        bot_key, pepper = load_bot_secrets(KeyPaths.for_data_dir(self.data_dir))
        self.box, self.pepper = BotKeyBox(bot_key), pepper
        self.engine = create_engine(f"sqlite+aiosqlite:///{self.data_dir / 'nazaha.db'}")
        self.sessionmaker = create_sessionmaker(self.engine)
        self.store = SubscriberStore(self.sessionmaker, self.box, pepper)

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "nazaha.db", timeout=10) as db:
            return db.execute(sql, args).fetchall()

    def status(self, broadcast_id: int) -> str:
        return self.rows("SELECT status FROM broadcasts WHERE id = ?", broadcast_id)[0][0]

    def outbox(self, broadcast_id: int) -> dict[str, int]:
        return dict(self.rows(
            "SELECT state, count(*) FROM broadcast_outbox WHERE broadcast_id = ? GROUP BY state", broadcast_id
        ))

    async def new_audience(self, count: int, *, topics: Callable[[int], set[str]] = lambda i: set(),
                           language: Callable[[int], str] = lambda i: "ar") -> list[int]:
        """``count`` new users who opened the bot, subscribed; earlier subscribers leave
        (set inactive), so that each test's broadcasts reach its own audience only."""
        async with write_transaction(self.sessionmaker) as session:
            await session.execute(update(Subscriber).values(active=False))
        users = started_users(self.emulator, TOKEN, count)
        assert self.store is not None
        await subscribe(self.store, [(u, language(i), topics(i)) for i, u in enumerate(users)])
        return users

    async def until(self, predicate: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
        """Wait (without blocking the emulator) until ``predicate()``; the bot must live."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.bot.assert_alive()
            assert time.monotonic() < deadline, f"{what}: not reached in time"
            await asyncio.sleep(0.2)

    async def until_done(self, broadcast_id: int, timeout: float = 90.0) -> None:
        await self.until(lambda: self.status(broadcast_id) == "done", timeout, f"broadcast {broadcast_id} done")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broadcasts")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        d = Broadcasts(tmp, server)
        run_init(d.data_dir, server.url)
        d.open_database()
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await d.client.close()
            await d.engine.dispose()


def texts_received(d: Broadcasts, users: list[int]) -> dict[int, list[str]]:
    bot = d.emulator.get_bot(TOKEN)
    return {
        u: [m.text or m.caption or "" for m in bot.chats[u].messages.values() if m.from_bot] if u in bot.chats else []
        for u in users
    }


async def test_nothing_before_approval_and_a_schedule_is_kept(deployment: Broadcasts):
    d = deployment
    users = await d.new_audience(5)
    past = utcnow() - dt.timedelta(minutes=5)
    submitted = await add_broadcast(d.sessionmaker, {"ar": "waiting for an admin"}, status="submitted", send_at=past)
    draft = await add_broadcast(d.sessionmaker, {"ar": "a draft"}, status="draft")
    later = await add_broadcast(d.sessionmaker, {"ar": "in an hour"}, send_at=utcnow() + dt.timedelta(hours=1))
    # A broadcast approved after those: once it is done, the sender has looked at them all.
    control = await add_broadcast(d.sessionmaker, {"ar": "approved"})
    await d.until_done(control)
    for broadcast_id in (submitted, draft, later):
        assert d.outbox(broadcast_id) == {}
        assert d.rows("SELECT started_at FROM broadcasts WHERE id = ?", broadcast_id) == [(None,)]
    assert texts_received(d, users) == {u: ["approved"] for u in users}
    # The admin approves; the scheduled one goes at its time, not before.
    await set_status(d.sessionmaker, submitted, "approved")
    await d.until_done(submitted)
    send_at = utcnow() + dt.timedelta(seconds=2)
    await set_status(d.sessionmaker, later, "approved", send_at=send_at)
    await d.until_done(later)
    (started,) = d.rows("SELECT started_at FROM broadcasts WHERE id = ?", later)[0]
    assert dt.datetime.fromisoformat(started).replace(tzinfo=dt.timezone.utc) >= send_at
    assert texts_received(d, users) == {u: ["approved", "waiting for an admin", "in an hour"] for u in users}
    assert d.status(draft) == "draft"


async def test_two_thousand_subscribers_with_429_5xx_and_403(deployment: Broadcasts):
    d = deployment
    topics = [{"forms"}, {"rights"}, {"budget"}, set()]  # "budget" only: not in the audience
    users = await d.new_audience(
        2000, topics=lambda i: topics[i % 4], language=lambda i: "en" if i % 3 == 0 else "ar"
    )
    audience = [u for i, u in enumerate(users) if i % 4 != 2]
    blocked = set(audience[::50])
    emulator_bot = d.emulator.get_bot(TOKEN)
    for user_id in blocked:
        d.emulator.set_blocked(emulator_bot, user_id, True)
    emulator_bot.calls.clear()
    broadcast_id = await add_broadcast(
        d.sessionmaker, {"ar": "**النزاهة** تبدأ بك", "en": "Integrity starts *with you*"},
        topics="forms,rights", status="submitted",
    )
    # Flood control, server errors: spread over the run by the order of the faults.
    d.emulator.add_fault(emulator_bot, "sendMessage", 500, count=3)
    d.emulator.add_fault(emulator_bot, "sendMessage", 429, count=1, retry_after=1)
    d.emulator.add_fault(emulator_bot, "sendMessage", 502, count=2)
    d.emulator.add_fault(emulator_bot, "sendMessage", 429, count=2, retry_after=1)
    d.emulator.add_fault(emulator_bot, "sendMessage", 503, count=5)
    expected = len(audience) - len(blocked)
    await set_status(d.sessionmaker, broadcast_id, "approved")
    # The emulator shares this process: while it times the sends, no garbage collection
    # pause and no database query of the test holds its loop (either would bunch arrivals).
    gc.disable()
    try:
        await d.until(lambda: sum(delivered_per_chat(d.emulator, TOKEN, audience).values()) >= expected,
                      timeout=120, what="every message delivered")
    finally:
        gc.enable()
    await d.until_done(broadcast_id)

    received = delivered_per_chat(d.emulator, TOKEN, users)
    assert {u for u in audience if received[u] != 1} == blocked
    assert all(received[u] == 0 for u in blocked) and all(received[u] == 0 for u in users if u not in audience)
    assert d.outbox(broadcast_id) == {"sent": len(audience) - len(blocked), "blocked": len(blocked)}
    # Who blocked the bot is no longer a subscriber; the rows stay, without them.
    assert d.rows("SELECT state, count(*) FROM broadcast_outbox WHERE broadcast_id = ? AND subscriber_id IS NULL "
                  "GROUP BY state", broadcast_id) == [("blocked", len(blocked))]
    assert d.rows("SELECT count(*) FROM subscribers WHERE chat_key IN (%s)" % ",".join("?" * len(blocked)),
                  *[d.store.chat_key(u) for u in blocked]) == [(0,)]
    calls = send_calls(d.emulator, TOKEN)
    assert sum(1 for c in calls if c["error_code"] == 429) == 3
    assert sum(1 for c in calls if (c["error_code"] or 0) >= 500) == 10
    assert max_per_window([c["at"] for c in calls]) <= RATE
    assert max_per_chat_window(calls) <= 1
    received_texts = texts_received(d, audience)
    for index, user_id in enumerate(users):
        if user_id in audience and user_id not in blocked:
            wanted = "Integrity starts with you" if index % 3 == 0 else "النزاهة تبدأ بك"
            assert received_texts[user_id] == [wanted]
    # The log says how many, never to whom.
    log = d.bot.log_path.read_text(errors="replace")
    assert not [u for u in users[:200] if str(u) in log]


async def test_pause_resume_and_cancel(deployment: Broadcasts):
    d = deployment
    users = await d.new_audience(600)
    first = await add_broadcast(d.sessionmaker, {"ar": "first"}, status="submitted")
    emulator_bot = d.emulator.get_bot(TOKEN)
    before = len(send_calls(d.emulator, TOKEN))
    await set_status(d.sessionmaker, first, "approved")
    await d.until(lambda: len(send_calls(d.emulator, TOKEN)) - before >= 100, what="a hundred sent")
    await set_status(d.sessionmaker, first, "paused")
    await d.until(lambda: d.outbox(first).get("sending", 0) == 0, what="in-flight finished")
    sent_when_paused = d.outbox(first)["sent"]
    assert d.outbox(first).get("queued", 0) > 0
    # Another broadcast goes out meanwhile: the sender is running, the paused one waits.
    other_users = started_users(d.emulator, TOKEN, 3, language="en")
    await subscribe(d.store, [(u, "en", ()) for u in other_users])
    other = await add_broadcast(d.sessionmaker, {"en": "other"}, languages="en")
    await d.until_done(other)
    assert d.outbox(first)["sent"] == sent_when_paused
    await set_status(d.sessionmaker, first, "sending")  # resume
    await d.until_done(first)
    assert delivered_per_chat(d.emulator, TOKEN, users) == {u: 1 for u in users}

    second = await add_broadcast(d.sessionmaker, {"ar": "second"}, status="submitted")
    calls_before = len(emulator_bot.calls)
    await set_status(d.sessionmaker, second, "approved")
    await d.until(lambda: len(emulator_bot.calls) - calls_before >= 50, what="fifty sent")
    await set_status(d.sessionmaker, second, "cancelled")
    await d.until(lambda: d.rows("SELECT finished_at FROM broadcasts WHERE id = ?", second)[0][0] is not None,
                  what="cancel finished")
    states = d.outbox(second)
    assert set(states) == {"sent", "skipped"} and sum(states.values()) == len(users) + len(other_users)
    received = texts_received(d, [*users, *other_users])  # the outbox is in random order
    assert sum(1 for u in [*users, *other_users] if "second" in received[u]) == states["sent"]
    assert d.status(second) == "cancelled"


async def test_text_that_breaks_telegram_parsers_arrives_as_typed(deployment: Broadcasts):
    d = deployment
    users = await d.new_audience(3)
    broadcast_id = await add_broadcast(d.sessionmaker, {"ar": HOSTILE})
    await d.until_done(broadcast_id)
    expected = parse_markup(HOSTILE)
    bot = d.emulator.get_bot(TOKEN)
    for user_id in users:
        (message,) = [m for m in bot.chats[user_id].messages.values() if m.from_bot]
        assert message.text == expected.text
        assert message.entities == [e.model_dump(exclude_none=True) for e in expected.entities]
    assert d.outbox(broadcast_id) == {"sent": 3}


async def test_a_test_send_reaches_the_linked_staff_chat(deployment: Broadcasts):
    d = deployment
    """After a message saying it is a test, with test data under its buttons."""
    (staff,) = started_users(d.emulator, TOKEN, 1, language="en")
    link_id = await linked_staff_chat(d.sessionmaker, d.box, d.pepper, staff)
    draft = await add_broadcast(d.sessionmaker, {"ar": "مسودة", "en": "A *draft* & <b>"}, status="draft")
    test_id = await ask_test_send(d.sessionmaker, draft, link_id, "en")
    await d.until(lambda: d.rows("SELECT state FROM broadcast_test_sends WHERE id = ?", test_id) == [("sent",)],
                  what="test sent")
    label = "TEST of a broadcast draft that is not approved — only you received this"
    assert texts_received(d, [staff]) == {staff: [label, "A draft & <b>"]}
    (message,) = [m for m in d.emulator.get_bot(TOKEN).chats[staff].messages.values() if m.from_bot and m.reply_markup]
    assert message.reply_markup["inline_keyboard"] == [[{"text": "Unsubscribe", "callback_data": TEST_UNSUBSCRIBE_DATA}]]
    assert d.status(draft) == "draft" and d.outbox(draft) == {}


async def test_figures_outlive_stop_and_wipe_and_who_blocked_the_bot_can_subscribe_again(deployment: Broadcasts):
    d = deployment
    users = await d.new_audience(4)
    blocker, stopper, wiper, stayer = users
    emulator_bot = d.emulator.get_bot(TOKEN)
    d.emulator.set_blocked(emulator_bot, blocker, True)
    first = await add_broadcast(d.sessionmaker, {"ar": "first"})
    await d.until_done(first)
    figures = {"sent": 3, "blocked": 1}
    assert d.outbox(first) == figures

    def subscribed(user_id: int) -> bool:
        assert d.store is not None
        return bool(d.rows("SELECT count(*) FROM subscribers WHERE chat_key = ?", d.store.chat_key(user_id))[0][0])

    assert not subscribed(blocker)  # a 403 deleted the subscription (and its topics)
    # Two recipients leave the bot's way: /stop, and /wipe ("Yes, erase").
    await Chat(d.client, {"id": stopper}).send("/stop")
    wiping = Chat(d.client, {"id": wiper})
    await wiping.send("/wipe")
    await press_callback(wiping, "w:yes")
    await d.until(lambda: not subscribed(stopper) and not subscribed(wiper), what="both unsubscribed")
    assert d.outbox(first) == figures  # the finished broadcast's figures did not shrink
    assert d.rows("SELECT count(*) FROM broadcast_outbox WHERE broadcast_id = ? AND subscriber_id IS NULL",
                  first) == [(3,)]

    # The one who blocked the bot unblocks it and subscribes again from /subscribe.
    d.emulator.set_blocked(emulator_bot, blocker, False)
    returning = Chat(d.client, {"id": blocker})
    await returning.send("/subscribe")
    await press_callback(returning, aw.subscribe_all())
    await d.until(lambda: subscribed(blocker), what="subscribed again")
    second = await add_broadcast(d.sessionmaker, {"ar": "second"})
    await d.until_done(second)
    assert d.outbox(second) == {"sent": 2}
    received = texts_received(d, users)
    assert [t for t in received[blocker] if t in ("first", "second")] == ["second"]
    assert [t for t in received[stayer] if t in ("first", "second")] == ["first", "second"]
    assert "second" not in received[stopper] + received[wiper]
    assert d.outbox(first) == figures


async def test_killed_mid_broadcast_and_restarted_it_finishes_at_most_once(deployment: Broadcasts):
    d = deployment
    users = await d.new_audience(1500)
    emulator_bot = d.emulator.get_bot(TOKEN)
    broadcast_id = await add_broadcast(d.sessionmaker, {"ar": "once"}, status="submitted")
    before = len(send_calls(d.emulator, TOKEN))
    await set_status(d.sessionmaker, broadcast_id, "approved")
    await d.until(lambda: len(send_calls(d.emulator, TOKEN)) - before >= len(users) // 3, what="a third sent")
    d.bot.kill()
    in_flight = d.rows("SELECT count(*) FROM broadcast_outbox WHERE broadcast_id = ? AND state = 'sending'",
                       broadcast_id)[0][0]
    assert in_flight > 0
    await d.bot.launch()
    await d.until_done(broadcast_id, timeout=120)

    received = delivered_per_chat(d.emulator, TOKEN, users)
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    losses = sum(1 for n in received.values() if n == 0)
    assert duplicates == 0
    assert losses + duplicates <= in_flight
    states = d.outbox(broadcast_id)
    assert states.get("in_doubt", 0) == in_flight
    assert states["sent"] + in_flight == len(users)
    audience = set(users)
    assert max_per_chat_window(c for c in emulator_bot.calls if c["method"] == "sendMessage" and c["chat_id"] in audience) <= 1
