"""The broadcast engine (nazaha/awareness/sender.py) against the sandbox emulator over HTTP,
on SQLite and PostgreSQL: audience, pacing, 429/5xx/403, pause/resume/cancel, crash
recovery, images, test sends, channel posts, progress."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import time
from collections.abc import Awaitable, Callable

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select, text, update

from nazaha.awareness.broadcast_message import TEST_UNSUBSCRIBE_DATA, UNSUBSCRIBE_DATA
from nazaha.awareness.broadcast_progress import progress
from nazaha.awareness.markup import parse_markup
from nazaha.awareness.pacing import Pacer
from nazaha.awareness import staff_chats
from nazaha.awareness.sender import TEST_RESULT_TTL, BroadcastSender, Content
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.bot.retry import RetryPolicy
from nazaha.bot.telegram_session import BotApiSession
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.awareness_models import (
    BroadcastImage,
    BroadcastOutbox,
    BroadcastTestSend,
    Subscriber,
    SubscriberTopic,
)
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import write_transaction
from tests.broadcast_support import (
    add_broadcast,
    ask_test_send,
    broadcast_row,
    clear_awareness,
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
from tests.e2e_support import TOKEN

FAST_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.05, backoff_cap=0.2)
HOSTILE = "<b>not bold</b> & *half _open [link( `code` 😀 **قانون** النزاهة &amp; <i> _x_ \\*"


@pytest_asyncio.fixture
async def sandbox():
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        yield server


@pytest_asyncio.fixture
async def bot(sandbox):
    bot = Bot(
        TOKEN,
        session=BotApiSession(api=TelegramAPIServer.from_base(sandbox.url)),
        default=DefaultBotProperties(parse_mode=None),
    )
    try:
        yield bot
    finally:
        await bot.session.close()


@pytest.fixture
def box() -> BotKeyBox:
    return BotKeyBox(os.urandom(32))


@pytest_asyncio.fixture
async def store(sessionmaker, box):
    """Subscribers on an empty awareness side (PostgreSQL's database is shared by the run:
    emptied before and after)."""
    await clear_awareness(sessionmaker)
    yield SubscriberStore(sessionmaker, box, os.urandom(32))
    await clear_awareness(sessionmaker)


def make_sender(sessionmaker, bot, store, box, *, rate: int = 500, **kwargs) -> BroadcastSender:
    kwargs.setdefault("retry", FAST_RETRY)
    return BroadcastSender(sessionmaker, bot, store, box, Pacer(rate, 1), check_seconds=0.05, **kwargs)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def until_status(sessionmaker, broadcast_id: int, *statuses: str, timeout: float = 60.0) -> None:
    async def reached() -> bool:
        return (await broadcast_row(sessionmaker, broadcast_id)).status in statuses

    await wait_until(reached, timeout)


async def outbox_states(sessionmaker, broadcast_id: int) -> dict[str, int]:
    async with sessionmaker() as session:
        return {k: v for k, v in (await progress(session, broadcast_id)).items() if v}


class Running:
    """The sender's ``run()`` as a task for the length of a ``with`` block."""

    def __init__(self, sender: BroadcastSender) -> None:
        self.sender = sender
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BroadcastSender:
        self.task = asyncio.create_task(self.sender.run())
        return self.sender

    async def __aexit__(self, *exc) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


# ---- audience --------------------------------------------------------------------------


async def test_audience_by_topic_and_language_and_materialising_twice_adds_nothing(
    sessionmaker, store, bot, box
):
    await subscribe(store, [
        (1001, "ar", {"forms"}),
        (1002, "en", {"forms", "rights"}),
        (1003, "ar", {"budget"}),  # another topic only: not in the audience
        (1004, "ar", set()),  # no topic chosen: everything
        (1005, "en", {"rights"}),
    ])
    async with write_transaction(sessionmaker) as session:  # blocked earlier: never queued
        await session.execute(update(Subscriber).where(Subscriber.chat_key == store.chat_key(1005)).values(active=False))
    sender = make_sender(sessionmaker, bot, store, box)
    everyone = await add_broadcast(sessionmaker, {"ar": "x"})
    forms = await add_broadcast(sessionmaker, {"ar": "x"}, topics="forms,rights")
    arabic_forms = await add_broadcast(sessionmaker, {"ar": "x"}, topics="forms", languages="ar")
    now = utcnow()
    assert await sender.materialise(everyone, "", "", False, now) == 4
    assert await sender.materialise(forms, "forms,rights", "", False, now) == 3
    assert await sender.materialise(arabic_forms, "forms", "ar", False, now) == 2
    # Started once only; and the rows are unique per subscriber if it ever ran again.
    assert await sender.materialise(everyone, "", "", False, now) is None
    await set_status(sessionmaker, everyone, "sending", started_at=None)
    assert await sender.materialise(everyone, "", "", False, now) == 0
    assert (await outbox_states(sessionmaker, everyone)) == {"queued": 4, "total": 4, "remaining": 4}
    row = await broadcast_row(sessionmaker, forms)
    assert row.status == "sending" and row.started_at is not None


def test_a_subscriber_gets_their_language_or_the_broadcasts_first():
    content = Content(1, ("en", "ar"), {"ar": "a", "en": "e"})
    assert content.language_for("ar") == "ar" and content.language_for("en") == "en"
    only_arabic = Content(1, ("en", "ar"), {"ar": "a"})
    assert only_arabic.language_for("en") == "ar"
    assert Content(1, (), {"en": "e"}).language_for("ar") == "en"
    assert Content(1, (), {}).language_for("ar") is None


# ---- nothing before approval; schedules ------------------------------------------------


async def test_nothing_is_sent_before_approval_or_before_its_time(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 3)
    await subscribe(store, [(u, "ar", ()) for u in users])
    past = utcnow() - dt.timedelta(hours=1)
    waiting = [
        await add_broadcast(sessionmaker, {"ar": f"not yet {status}"}, status=status, send_at=past)
        for status in ("draft", "submitted", "rejected", "cancelled", "paused")
    ]
    later = utcnow() + dt.timedelta(hours=2)
    scheduled = await add_broadcast(sessionmaker, {"ar": "at nine"}, send_at=later)
    clock = [utcnow()]
    sender = make_sender(sessionmaker, bot, store, box, now=lambda: clock[0])
    for _ in range(3):
        await sender.pass_once()
    assert not send_calls(sandbox.emulator, TOKEN)
    for broadcast_id in [*waiting, scheduled]:
        assert await outbox_states(sessionmaker, broadcast_id) == {}
        assert (await broadcast_row(sessionmaker, broadcast_id)).started_at is None
    clock[0] = later + dt.timedelta(seconds=1)  # its time has come
    async with Running(sender):
        await until_status(sessionmaker, scheduled, "done")
    assert all(count == 1 for count in delivered_per_chat(sandbox.emulator, TOKEN, users).values())
    assert all(c["params"]["text"] == "at nine" for c in send_calls(sandbox.emulator, TOKEN))


# ---- delivery under faults --------------------------------------------------------------


async def test_every_subscriber_once_despite_429_5xx_and_403(sessionmaker, store, bot, box, sandbox):
    rate = 100
    users = started_users(sandbox.emulator, TOKEN, 120)
    blocked = set(users[::15])
    for user_id in blocked:
        sandbox.emulator.set_blocked(sandbox.emulator.get_bot(TOKEN), user_id, True)
    await subscribe(store, [(u, "ar" if i % 3 else "en", ()) for i, u in enumerate(users)])
    emulator_bot = sandbox.emulator.get_bot(TOKEN)
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 500, count=4)
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 429, count=1, retry_after=1)
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 502, count=2)
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "مرحبا **بكم**", "en": "Hello *all*"})
    sender = make_sender(sessionmaker, bot, store, box, rate=rate)
    # The emulator shares this event loop: a garbage collection pause would hold calls that
    # were sent and stamp them late, together with later ones.
    gc.disable()
    try:
        async with Running(sender):
            await until_status(sessionmaker, broadcast_id, "done")
    finally:
        gc.enable()
    delivered = delivered_per_chat(sandbox.emulator, TOKEN, users)
    assert {u for u, n in delivered.items() if n != 1} == blocked
    assert all(delivered[u] == 0 for u in blocked)
    states = await outbox_states(sessionmaker, broadcast_id)
    assert states == {"sent": 120 - len(blocked), "blocked": len(blocked), "total": 120}
    # Those who blocked the bot are no longer subscribers; their rows stay, without them.
    assert await still_subscribed(sessionmaker, store, users) == set(users) - blocked
    assert await rows_without_subscriber(sessionmaker, broadcast_id) == {"blocked": len(blocked)}
    calls = send_calls(sandbox.emulator, TOKEN)
    assert max_per_window([c["at"] for c in calls]) <= rate
    assert max_per_chat_window(calls) <= 1
    # The 429 stopped every send for its second (sends already on their way excepted).
    refused = next(c for c in calls if c["error_code"] == 429)
    assert not [c for c in calls if 0.1 < c["at"] - refused["at"] < 0.95]
    # Each language got its version, with the entities of the markup.
    by_chat = {c["params"]["chat_id"]: c["params"] for c in calls if c["ok"]}
    assert by_chat[users[1]]["text"] == "مرحبا بكم"
    assert by_chat[users[3]]["text"] == "Hello all"
    assert by_chat[users[3]]["entities"] == [{"type": "italic", "offset": 6, "length": 3}]
    assert by_chat[users[3]]["reply_markup"]["inline_keyboard"][-1][0]["callback_data"] == UNSUBSCRIBE_DATA


async def still_subscribed(sessionmaker, store: SubscriberStore, users: list[int]) -> set[int]:
    async with sessionmaker() as session:
        keys = set((await session.execute(select(Subscriber.chat_key))).scalars())
    return {u for u in users if store.chat_key(u) in keys}


async def rows_without_subscriber(sessionmaker, broadcast_id: int) -> dict[str, int]:
    """The broadcast's outbox rows whose subscriber is gone, per state."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(BroadcastOutbox.state, func.count())
            .where(BroadcastOutbox.broadcast_id == broadcast_id, BroadcastOutbox.subscriber_id.is_(None))
            .group_by(BroadcastOutbox.state)
        )
        return dict(rows.all())


async def test_a_refusal_fails_one_row_and_retries_end(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 3)
    await subscribe(store, [(u, "ar", ()) for u in users])
    emulator_bot = sandbox.emulator.get_bot(TOKEN)
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 400, count=1)
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    sender = make_sender(sessionmaker, bot, store, box, retry=RetryPolicy(max_attempts=3, backoff_base=0.05))
    async with Running(sender):
        await until_status(sessionmaker, broadcast_id, "done")
        # Then a server that keeps failing: three attempts (two seconds apart: one chat), then failed.
        sandbox.emulator.add_fault(emulator_bot, "sendMessage", 500, count=1000)
        second = await add_broadcast(sessionmaker, {"ar": "y"})
        sender.wake()
        await until_status(sessionmaker, second, "done")
    assert await outbox_states(sessionmaker, broadcast_id) == {"sent": 2, "failed": 1, "total": 3}
    assert await outbox_states(sessionmaker, second) == {"failed": 3, "total": 3}
    async with sessionmaker() as session:
        rows = (await session.execute(
            select(BroadcastOutbox.attempts, BroadcastOutbox.error_code).where(BroadcastOutbox.broadcast_id == second)
        )).all()
    assert {tuple(r) for r in rows} == {(3, 500)}


# ---- pause, resume, cancel ----------------------------------------------------------------


async def test_pause_resume_and_cancel(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 60)
    await subscribe(store, [(u, "ar", ()) for u in users])
    first = await add_broadcast(sessionmaker, {"ar": "first"})
    sender = make_sender(sessionmaker, bot, store, box, rate=20)
    async with Running(sender):
        await wait_until(lambda: _sent_at_least(sessionmaker, first, 10))
        await set_status(sessionmaker, first, "paused")
        await wait_until(lambda: _none_sending(sessionmaker, first))
        paused_at = len(send_calls(sandbox.emulator, TOKEN))
        # A full pass later nothing more went out.
        passes = sender.passes
        await wait_until(lambda: _true(sender.passes >= passes + 3))
        assert len(send_calls(sandbox.emulator, TOKEN)) == paused_at
        states = await outbox_states(sessionmaker, first)
        assert states["queued"] > 0 and states["sent"] == paused_at
        await set_status(sessionmaker, first, "sending")  # resume
        await until_status(sessionmaker, first, "done")
        assert delivered_per_chat(sandbox.emulator, TOKEN, users) == {u: 1 for u in users}

        second = await add_broadcast(sessionmaker, {"ar": "second"})
        await wait_until(lambda: _sent_at_least(sessionmaker, second, 5))
        await set_status(sessionmaker, second, "cancelled")

        async def finished() -> bool:
            return (await broadcast_row(sessionmaker, second)).finished_at is not None

        await wait_until(finished)
    states = await outbox_states(sessionmaker, second)
    assert states.get("queued", 0) == 0 and states.get("sending", 0) == 0
    assert states["skipped"] > 0 and states["sent"] + states["skipped"] == 60
    assert (await broadcast_row(sessionmaker, second)).status == "cancelled"


async def _true(value: bool) -> bool:
    return value


async def _sent_at_least(sessionmaker, broadcast_id: int, count: int) -> bool:
    return (await outbox_states(sessionmaker, broadcast_id)).get("sent", 0) >= count


async def _none_sending(sessionmaker, broadcast_id: int) -> bool:
    return (await outbox_states(sessionmaker, broadcast_id)).get("sending", 0) == 0


# ---- crash recovery ---------------------------------------------------------------------


async def test_rows_in_flight_at_a_crash_are_in_doubt_and_never_sent_again(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 10)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    sender = make_sender(sessionmaker, bot, store, box)
    await sender.materialise(broadcast_id, "", "", False, utcnow())
    # A process claimed three rows and died.
    async with write_transaction(sessionmaker) as session:
        ids = (await session.execute(
            select(BroadcastOutbox.id).where(BroadcastOutbox.broadcast_id == broadcast_id)
            .order_by(BroadcastOutbox.id).limit(3)
        )).scalars().all()
        await session.execute(update(BroadcastOutbox).where(BroadcastOutbox.id.in_(ids)).values(state="sending"))
    async with Running(make_sender(sessionmaker, bot, store, box)):
        await until_status(sessionmaker, broadcast_id, "done")
    assert await outbox_states(sessionmaker, broadcast_id) == {"sent": 7, "in_doubt": 3, "total": 10}
    assert sorted(delivered_per_chat(sandbox.emulator, TOKEN, users).values()) == [0] * 3 + [1] * 7


async def test_subscribers_who_leave_after_the_start_get_nothing_and_count_as_left(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 5)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    sender = make_sender(sessionmaker, bot, store, box)
    assert await sender.materialise(broadcast_id, "", "", False, utcnow()) == 5
    await store.stop_now(users[0])  # /stop (and /wipe): the subscription goes, its row stays
    ids = {u: (await store.get(u)).id for u in users[1:]}
    async with write_transaction(sessionmaker) as session:
        await SubscriberStore.delete_blocked(session, [ids[users[1]]])  # blocked, seen by another broadcast
        await session.execute(  # inactive: a row older than migration 0011
            update(Subscriber).where(Subscriber.id == ids[users[2]]).values(active=False)
        )
    assert await rows_without_subscriber(sessionmaker, broadcast_id) == {"queued": 2}
    async with Running(sender):
        await until_status(sessionmaker, broadcast_id, "done")
    # Never sent, never lost from the figures: two queued rows without a subscriber (NULLs
    # are distinct under the unique (broadcast, subscriber)) and one inactive are "left".
    assert await outbox_states(sessionmaker, broadcast_id) == {"sent": 2, "left": 3, "total": 5}
    assert await rows_without_subscriber(sessionmaker, broadcast_id) == {"left": 2}
    assert delivered_per_chat(sandbox.emulator, TOKEN, users) == {
        users[0]: 0, users[1]: 0, users[2]: 0, users[3]: 1, users[4]: 1,
    }


async def test_a_finished_broadcasts_figures_stay_when_its_recipients_leave(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 5)
    sandbox.emulator.set_blocked(sandbox.emulator.get_bot(TOKEN), users[4], True)
    await subscribe(store, [(u, "ar", {"forms"}) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    async with Running(make_sender(sessionmaker, bot, store, box)):
        await until_status(sessionmaker, broadcast_id, "done")
    figures = {"sent": 4, "blocked": 1, "total": 5}
    assert await outbox_states(sessionmaker, broadcast_id) == figures
    # Recipients leave afterwards (/stop and /wipe delete the subscription the same way).
    for user_id in users[:3]:
        await store.stop_now(user_id)
    assert await still_subscribed(sessionmaker, store, users) == {users[3]}
    assert await outbox_states(sessionmaker, broadcast_id) == figures
    assert await rows_without_subscriber(sessionmaker, broadcast_id) == {"sent": 3, "blocked": 1}
    async with sessionmaker() as session:  # their topics went with them
        assert (await session.execute(select(func.count()).select_from(SubscriberTopic))).scalar() == 1


async def test_migration_0011_deletes_blocked_subscribers_and_keeps_every_row(empty_url):
    from alembic import command

    from nazaha.storage.database import create_engine
    from nazaha.storage.migrations import alembic_config, upgrade_database

    url = empty_url
    engine = create_engine(url)

    async def rows(sql: str) -> list[tuple]:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql))]

    try:
        await upgrade_database(url, "0010")
        async with engine.begin() as conn:  # as 0009's sender left them
            for sid, active in ((1, True), (2, False), (3, True)):
                await conn.execute(text(
                    "INSERT INTO subscribers (id, chat_key, sealed_chat, language, active, joined_on)"
                    " VALUES (:id, :key, :sealed, 'ar', :active, :day)"
                ), {"id": sid, "key": f"{sid:064x}", "sealed": b"x", "active": active, "day": dt.date(2026, 11, 1)})
                await conn.execute(text("INSERT INTO subscriber_topics (subscriber_id, topic) VALUES (:id, 'forms')"),
                                   {"id": sid})
            await conn.execute(text(
                "INSERT INTO broadcasts (id, name, status, author_id, topics, languages, created_at, review_note)"
                " VALUES (1, 'b', 'sending', 1, '', '', :at, '')"
            ), {"at": utcnow()})
            for rid, sid, state in ((1, 1, "sent"), (2, 2, "blocked"), (3, 3, "queued")):
                await conn.execute(text(
                    "INSERT INTO broadcast_outbox (id, broadcast_id, subscriber_id, state, attempts)"
                    " VALUES (:id, 1, :sid, :state, 0)"
                ), {"id": rid, "sid": sid, "state": state})
        await upgrade_database(url, "0011")
        assert await rows("SELECT id FROM subscribers ORDER BY id") == [(1,), (3,)]
        assert await rows("SELECT subscriber_id FROM subscriber_topics ORDER BY 1") == [(1,), (3,)]
        assert await rows("SELECT id, subscriber_id, state FROM broadcast_outbox ORDER BY id") == [
            (1, 1, "sent"), (2, None, "blocked"), (3, 3, "queued"),
        ]
        async with engine.begin() as conn:  # deleting a subscriber now keeps its rows
            await conn.execute(text("DELETE FROM subscribers WHERE id = 3"))
            await conn.execute(text("UPDATE broadcast_outbox SET state = 'left' WHERE id = 3"))
        assert await rows("SELECT id, subscriber_id, state FROM broadcast_outbox ORDER BY id") == [
            (1, 1, "sent"), (2, None, "blocked"), (3, None, "left"),
        ]

        def downgrade(sync_conn) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = sync_conn
            command.downgrade(config, "0010")

        async with engine.begin() as conn:  # 0010 has no place for rows without a subscriber
            await conn.run_sync(downgrade)
        assert await rows("SELECT id, subscriber_id, state FROM broadcast_outbox ORDER BY id") == [(1, 1, "sent")]
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM subscribers WHERE id = 1"))  # cascades again
        assert await rows("SELECT count(*) FROM broadcast_outbox") == [(0,)]
    finally:
        await engine.dispose()


async def test_a_clean_stop_puts_unsent_rows_back(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 30)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    async with Running(make_sender(sessionmaker, bot, store, box, rate=10)):
        await wait_until(lambda: _sent_at_least(sessionmaker, broadcast_id, 3))
    states = await outbox_states(sessionmaker, broadcast_id)
    assert states.get("sending", 0) == 0 and states.get("in_doubt", 0) == 0
    async with Running(make_sender(sessionmaker, bot, store, box, rate=200)):
        await until_status(sessionmaker, broadcast_id, "done")
    assert delivered_per_chat(sandbox.emulator, TOKEN, users) == {u: 1 for u in users}


# ---- content ----------------------------------------------------------------------------


async def test_an_image_is_uploaded_once_then_sent_by_file_id(sessionmaker, store, bot, box, sandbox):
    from nazaha.sandbox.client import TINY_JPEG

    users = started_users(sandbox.emulator, TOKEN, 6)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "صورة **مهمة**"}, image=TINY_JPEG)
    async with Running(make_sender(sessionmaker, bot, store, box)):
        await until_status(sessionmaker, broadcast_id, "done")
    calls = [c for c in send_calls(sandbox.emulator, TOKEN) if c["method"] == "sendPhoto"]
    assert len(calls) == 6
    uploads = [c for c in calls if c["params"]["photo"].startswith("attach://")]
    assert len(uploads) == 1 and uploads[0] is calls[0]
    async with sessionmaker() as session:
        file_id = (await session.execute(select(BroadcastImage.file_id))).scalar_one()
    assert file_id and all(c["params"]["photo"] == file_id for c in calls[1:])
    assert all(c["params"]["caption"] == "صورة مهمة" and "parse_mode" not in c["params"] for c in calls)
    assert calls[0]["params"]["caption_entities"] == [{"type": "bold", "offset": 5, "length": 4}]


async def test_characters_that_break_telegram_parsers_arrive_as_typed(sessionmaker, store, bot, box, sandbox):
    users = started_users(sandbox.emulator, TOKEN, 2)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": HOSTILE})
    async with Running(make_sender(sessionmaker, bot, store, box)):
        await until_status(sessionmaker, broadcast_id, "done")
    expected = parse_markup(HOSTILE)
    assert await outbox_states(sessionmaker, broadcast_id) == {"sent": 2, "total": 2}
    for user_id in users:
        (message,) = [m for m in sandbox.emulator.get_bot(TOKEN).chats[user_id].messages.values() if m.from_bot]
        assert message.text == expected.text
        assert message.parse_mode is None
        assert message.entities == [e.model_dump(exclude_none=True) for e in expected.entities]


TEST_LABEL = "TEST of a broadcast draft that is not approved — only you received this"
APPROVED_TEST_LABEL = "TEST of a broadcast — only you received this"


async def test_a_test_send_reaches_the_linked_staff_chat_whatever_the_status(sessionmaker, store, bot, box, sandbox):
    """Labelled, with test buttons; its row is deleted at the latest TEST_RESULT_TTL after
    the request (the console deletes it sooner, once it showed the result)."""
    (staff,) = started_users(sandbox.emulator, TOKEN, 1, language="en")
    link_id = await linked_staff_chat(sessionmaker, box, os.urandom(32), staff)
    draft = await add_broadcast(sessionmaker, {"ar": "نص", "en": "A **draft**"}, status="draft")
    test_id = await ask_test_send(sessionmaker, draft, link_id, "en")
    clock = [utcnow()]
    sender = make_sender(sessionmaker, bot, store, box, now=lambda: clock[0])

    async def state() -> str | None:
        async with sessionmaker() as session:
            return (await session.execute(
                select(BroadcastTestSend.state).where(BroadcastTestSend.id == test_id)
            )).scalar_one_or_none()

    async with Running(sender):
        async def sent() -> bool:
            return await state() == "sent"

        await wait_until(sent)
        label, message = [m for m in sandbox.emulator.get_bot(TOKEN).chats[staff].messages.values() if m.from_bot]
        assert label.text == TEST_LABEL and label.reply_markup is None
        assert message.text == "A draft"
        assert message.reply_markup["inline_keyboard"][-1][0] == {"text": "Unsubscribe", "callback_data": TEST_UNSUBSCRIBE_DATA}
        assert (await broadcast_row(sessionmaker, draft)).status == "draft"  # a test changes nothing
        assert await outbox_states(sessionmaker, draft) == {}
        # A test of an approved broadcast (here one already sent) does not say "not approved".
        sent_one = await add_broadcast(sessionmaker, {"en": "Sent already"}, status="done")
        await ask_test_send(sessionmaker, sent_one, link_id, "en")

        async def both() -> bool:
            return len([m for m in sandbox.emulator.get_bot(TOKEN).chats[staff].messages.values() if m.from_bot]) == 4

        await wait_until(both)
        *_, label, message = [m for m in sandbox.emulator.get_bot(TOKEN).chats[staff].messages.values() if m.from_bot]
        assert (label.text, message.text) == (APPROVED_TEST_LABEL, "Sent already")
        # Not shown by the console in time: the sender deletes it, no history is kept.
        clock[0] += TEST_RESULT_TTL + dt.timedelta(seconds=1)

        async def gone() -> bool:
            return await state() is None

        await wait_until(gone)


async def test_a_staff_chat_that_blocked_the_bot_is_unlinked_by_its_test(sessionmaker, store, bot, box, sandbox):
    (staff,) = started_users(sandbox.emulator, TOKEN, 1, language="en")
    link_id = await linked_staff_chat(sessionmaker, box, os.urandom(32), staff)
    sandbox.emulator.set_blocked(sandbox.emulator.get_bot(TOKEN), staff, True)
    draft = await add_broadcast(sessionmaker, {"en": "A draft"}, status="draft")
    await ask_test_send(sessionmaker, draft, link_id, "en")
    async with Running(make_sender(sessionmaker, bot, store, box)):
        async def unlinked() -> bool:
            return not await staff_chats.is_linked(sessionmaker, link_id)

        await wait_until(unlinked)
    async with sessionmaker() as session:  # its test went with the link
        assert (await session.execute(select(BroadcastTestSend.id))).first() is None


async def test_a_channel_post_goes_to_each_publication_chat_without_unsubscribe(sessionmaker, store, bot, box, sandbox):
    emulator = sandbox.emulator
    (admin,) = started_users(emulator, TOKEN, 1)
    channel = emulator.create_group("channel", "Coalition")
    emulator.set_bot_status(emulator.get_bot(TOKEN), channel["id"], "administrator", admin)
    users = started_users(emulator, TOKEN, 2, language="en")
    await subscribe(store, [(u, "en", ()) for u in users])
    broadcast_id = await add_broadcast(
        sessionmaker, {"ar": "للجميع", "en": "For all"}, languages="ar,en", to_channel=True
    )
    sender = make_sender(sessionmaker, bot, store, box, publication_chat_ids=[channel["id"]])
    async with Running(sender):
        await until_status(sessionmaker, broadcast_id, "done")
    row = await broadcast_row(sessionmaker, broadcast_id)
    assert row.channel_state == "sent"
    posts = [m for m in emulator.get_bot(TOKEN).chats[channel["id"]].messages.values() if m.from_bot]
    assert [p.text for p in posts] == ["للجميع"]  # the broadcast's first language
    assert not posts[0].reply_markup
    assert delivered_per_chat(emulator, TOKEN, users) == {u: 1 for u in users}


async def test_a_channel_post_whose_answer_times_out_is_in_doubt_and_not_posted_again(
    sessionmaker, store, box, sandbox, monkeypatch
):
    emulator = sandbox.emulator
    (admin,) = started_users(emulator, TOKEN, 1)
    channel = emulator.create_group("channel", "Coalition")
    emulator.set_bot_status(emulator.get_bot(TOKEN), channel["id"], "administrator", admin)
    users = started_users(emulator, TOKEN, 2)
    await subscribe(store, [(u, "ar", ()) for u in users])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "للجميع"}, to_channel=True)
    # Telegram posts it, but its answer does not come back before the bot's timeout: the
    # post may well be there, so it is neither "failed" nor posted again.
    answered = asyncio.Event()
    real_call = emulator.call

    async def slow_to_answer(token, method, params, files=None):
        answer = await real_call(token, method, params, files)
        if method.lower() == "sendmessage" and str(params.get("chat_id")) == str(channel["id"]):
            await answered.wait()
        return answer

    monkeypatch.setattr(emulator, "call", slow_to_answer)
    impatient = Bot(
        TOKEN,
        session=BotApiSession(api=TelegramAPIServer.from_base(sandbox.url), timeout=1),
        default=DefaultBotProperties(parse_mode=None),
    )
    try:
        sender = make_sender(sessionmaker, impatient, store, box, publication_chat_ids=[channel["id"]])
        async with Running(sender):
            await until_status(sessionmaker, broadcast_id, "done")
    finally:
        answered.set()
        await impatient.session.close()
    assert (await broadcast_row(sessionmaker, broadcast_id)).channel_state == "in_doubt"
    posts = [m for m in emulator.get_bot(TOKEN).chats[channel["id"]].messages.values() if m.from_bot]
    assert [p.text for p in posts] == ["للجميع"]
    assert len(emulator.calls(emulator.get_bot(TOKEN), "sendMessage", chat_id=channel["id"])) == 1
    assert delivered_per_chat(emulator, TOKEN, users) == {u: 1 for u in users}


async def test_progress_counts_every_state(sessionmaker, store, bot, box):
    await subscribe(store, [(2000 + i, "ar", ()) for i in range(5)])
    broadcast_id = await add_broadcast(sessionmaker, {"ar": "x"})
    sender = make_sender(sessionmaker, bot, store, box)
    await sender.materialise(broadcast_id, "", "", False, utcnow())
    async with write_transaction(sessionmaker) as session:
        await session.execute(text(
            "UPDATE broadcast_outbox SET state = 'sent' WHERE id IN "
            "(SELECT id FROM broadcast_outbox ORDER BY id LIMIT 2)"
        ))
    async with sessionmaker() as session:
        counts = await progress(session, broadcast_id)
    assert counts == {
        "queued": 3, "sending": 0, "sent": 2, "failed": 0, "blocked": 0, "in_doubt": 0,
        "skipped": 0, "left": 0, "total": 5, "remaining": 3,
    }


# ---- the pacer itself -------------------------------------------------------------------


async def test_the_pacer_never_exceeds_its_rate_overall_or_per_chat():
    pacer = Pacer(50, 1)
    stamps: list[tuple[float, str]] = []

    async def send(key: str) -> None:
        await pacer.acquire(key)
        stamps.append((time.time(), key))

    # 66 sends, 60 to chats of their own and two each to three chats, all asking at once:
    # the overall pace, and each chat's (one per two seconds).
    await asyncio.gather(*(send(f"s{i}" if i < 60 else f"t{i % 3}") for i in range(66)))
    assert max_per_window([t for t, _ in stamps]) <= 50
    for chat in {k for _, k in stamps}:
        assert max_per_window([t for t, k in stamps if k == chat], width=2.0) <= 1


async def test_a_pause_holds_every_slot():
    pacer = Pacer(1000, 1)
    await pacer.acquire("a")
    pacer.pause(0.3)
    started = time.monotonic()
    await pacer.acquire("b")
    assert time.monotonic() - started >= 0.29
