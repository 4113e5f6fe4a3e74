"""Confirming updates to Telegram only once they are settled (issue 12): the settlement,
the unit-of-work middleware's commit point, the webhook server (real HTTP) and the polling
loop (real HTTP against the sandbox)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import SendMessage
from aiogram.types import Message, Update
from aiohttp.test_utils import TestClient, TestServer

from nazaha.bot.confirm import Settlement, UpdateRunner, Verdict
from nazaha.bot.health import database_probe, readiness
from nazaha.bot.polling import ConfirmingPoller
from nazaha.bot.telegram_session import BotApiSession
from nazaha.bot.webhook import WebhookServer
from nazaha.handlers.middlewares import UnitOfWorkMiddleware
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.database import create_engine

TOKEN = "4242:AAAA_confirmation_test_token_0123456"
SECRET = "replica-secret_1"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


class RecordingSession(BaseSession):
    """Bot API calls recorded instead of sent; ``gate`` (when set) holds every call."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()  # a call is being held

    async def make_request(self, bot: Bot, method: Any, timeout: int | None = None) -> Any:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        self.sent.append(method.text if isinstance(method, SendMessage) else type(method).__name__)
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    async def close(self) -> None:
        pass


class FakeUow:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def commit(self) -> None:
        self.log.append("commit")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message_update(update_id: int, text: str, chat_id: int = 9) -> Update:
    return Update.model_validate({"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "chat": {"id": chat_id, "type": "private", "first_name": "A"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "A"}, "text": text}})


def dispatcher(events: list[str], behaviour: dict[str, Any]) -> Dispatcher:
    """The bot's update middleware with a fake unit of work; a message handler that queues a
    reply, after ``behaviour[text]`` (an exception to raise, or an event to wait for)."""
    dp = Dispatcher()

    async def with_uow(handler, event, data):
        data["uow"] = FakeUow(events)
        return await handler(event, data)

    dp.update.outer_middleware(with_uow)
    dp.update.outer_middleware(UnitOfWorkMiddleware())

    async def on_message(message: Message, outbox) -> None:
        events.append(f"handle {message.text}")
        how = behaviour.get(message.text)
        if isinstance(how, asyncio.Event):
            await how.wait()
        elif isinstance(how, list) and how:
            raise how.pop(0)
        outbox.send(message.chat.id, f"reply to {message.text}")

    dp.message.register(on_message)
    return dp


@pytest.fixture
async def recording_bot():
    from nazaha.bot.app import build_i18n

    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):  # the failure notice is translated
        yield Bot(TOKEN, session=RecordingSession())


async def test_settlement_first_verdict_wins_and_followers_take_the_leaders():
    settlement = Settlement()
    settlement.confirm()
    assert settlement.failed() is False and settlement.verdict is Verdict.CONFIRM
    handed = Settlement()
    assert handed.failed() is True and handed.verdict is Verdict.HAND_BACK
    closed = Settlement(may_retry=False)
    assert closed.failed() is False and closed.verdict is Verdict.CONFIRM  # given up
    leader, follower = Settlement(), Settlement()
    follower.follow(leader)
    follower.finish(crashed=False)  # its own end does not count
    assert follower.verdict is None
    leader.failed()
    assert await asyncio.wait_for(follower.wait(), 1) is Verdict.HAND_BACK


async def test_commit_confirms_before_the_replies_leave(recording_bot):
    """The update is confirmed right after its commit, while its reply is still held."""
    events: list[str] = []
    dp = dispatcher(events, {})
    recording_bot.session.gate = asyncio.Event()
    runner = UpdateRunner(dp, recording_bot)
    settlement = runner.feed(message_update(1, "hello"))
    assert await asyncio.wait_for(settlement.wait(), 5) is Verdict.CONFIRM
    await asyncio.wait_for(recording_bot.session.waiting.wait(), 5)
    assert events == ["handle hello", "commit"] and recording_bot.session.sent == []
    assert runner.in_flight == 1  # the reply is on its way
    recording_bot.session.gate.set()
    assert await runner.drain(5) == 0
    assert recording_bot.session.sent == ["reply to hello"]


async def test_a_failure_is_handed_back_in_silence_until_its_window_closes(recording_bot):
    events: list[str] = []
    dp = dispatcher(events, {"boom": [RuntimeError("x"), RuntimeError("y")]})
    clock = Clock()
    runner = UpdateRunner(dp, recording_bot, retry_seconds=60, clock=clock)
    update = message_update(5, "boom")
    assert await runner.feed(update).wait() is Verdict.HAND_BACK
    clock.now += 59
    assert await runner.feed(update).wait() is Verdict.HAND_BACK  # still within 60 s of the first
    await runner.drain(5)
    assert recording_bot.session.sent == []  # nobody told: a redelivery is coming
    clock.now += 2
    # The window is over: a failure now is given up (confirmed), and the user is told.
    behaviour_failure = dispatcher(events, {"boom": [RuntimeError("z")]})
    runner.dispatcher = behaviour_failure
    assert await runner.feed(update).wait() is Verdict.CONFIRM
    await runner.drain(5)
    assert len(recording_bot.session.sent) == 1 and "went wrong" in recording_bot.session.sent[0]
    # A success forgets the failures: the next failure of that id gets a new window.
    runner.dispatcher = dispatcher(events, {})
    assert await runner.feed(update).wait() is Verdict.CONFIRM
    runner.dispatcher = dispatcher(events, {"boom": [RuntimeError("again")]})
    assert await runner.feed(update).wait() is Verdict.HAND_BACK


async def test_a_second_delivery_of_an_update_in_progress_waits_for_the_first(recording_bot):
    events: list[str] = []
    release = asyncio.Event()
    runner = UpdateRunner(dispatcher(events, {"slow": release}), recording_bot)
    first = runner.feed(message_update(7, "slow"))
    second = runner.feed(message_update(7, "slow"))
    await asyncio.sleep(0)
    assert first.verdict is None and second.verdict is None
    release.set()
    assert await second.wait() is Verdict.CONFIRM
    await runner.drain(5)
    assert events.count("handle slow") == 1


async def test_webhook_server_answers_after_commit_refuses_strangers_and_stops_gracefully(recording_bot):
    events: list[str] = []
    hold = asyncio.Event()
    dp = dispatcher(events, {"boom": [RuntimeError("x")], "hold": hold})
    runner = UpdateRunner(dp, recording_bot)

    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionRefusedError("no redis here")

    probes = {"database": ok}
    server = WebhookServer(runner, SECRET, probes=probes)
    session: RecordingSession = recording_bot.session
    async with TestClient(TestServer(server.app)) as client:
        update = message_update(1, "hello").model_dump(mode="json", exclude_none=True)
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}):
            response = await client.post("/webhook", json=update, headers=headers)
            assert response.status == 401
        assert events == []  # nothing was read
        # 200 once committed, while the reply is still held.
        session.gate = asyncio.Event()
        response = await client.post("/webhook", json=update, headers=HEADERS)
        assert response.status == 200 and events == ["handle hello", "commit"] and session.sent == []
        session.gate.set()
        # Failed before the commit: 500, Telegram sends it again; nothing said to the user.
        failing = message_update(2, "boom").model_dump(mode="json", exclude_none=True)
        assert (await client.post("/webhook", json=failing, headers=HEADERS)).status == 500
        assert (await client.post("/webhook", json=failing, headers=HEADERS)).status == 200
        await runner.drain(5)
        assert session.sent == ["reply to hello", "reply to boom"]
        assert (await client.post("/webhook", data=b"{not json", headers=HEADERS)).status == 400
        # Health and readiness.
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["checks"] == {"database": "ok"}
        probes["redis"] = down
        server.probes = probes
        ready = await client.get("/readyz")
        body = await ready.json()
        assert ready.status == 503 and body["checks"] == {"database": "ok", "redis": "failed (ConnectionRefusedError)"}
        assert "no redis here" not in await ready.text()
        # Graceful stop: an update still before its commit when the grace ends is handed back.
        held = message_update(3, "hold").model_dump(mode="json", exclude_none=True)
        posted = asyncio.create_task(client.post("/webhook", json=held, headers=HEADERS))
        while "handle hold" not in events:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(server.stop(grace_seconds=0.2))
        while not server.stopping:
            await asyncio.sleep(0)
        assert (await client.post("/webhook", json=update, headers=HEADERS)).status == 503
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        assert (await posted).status == 500  # cut short before its commit: Telegram retries
        await stopping
        assert "commit" not in events[events.index("handle hold"):]


async def test_an_album_is_confirmed_with_its_first_file():
    from nazaha.handlers.albums import AlbumCollector, AlbumMiddleware

    collector: AlbumCollector[Message] = AlbumCollector(quiet_seconds=60)
    middleware = AlbumMiddleware(collector)
    handled = asyncio.Event()

    def album_part(update_id: int) -> Update:
        return Update.model_validate({"update_id": update_id, "message": {
            "message_id": update_id, "date": 0, "media_group_id": "g1",
            "chat": {"id": 9, "type": "private", "first_name": "A"}, "photo": [
                {"file_id": f"f{update_id}", "file_unique_id": f"u{update_id}", "width": 1, "height": 1}]}})

    async def handler(event, data):
        handled.set()

    # Polling: the later file waits for the album's first update.
    first, second = Settlement(), Settlement()
    leading = asyncio.create_task(middleware(handler, album_part(1), {"settlement": first}))
    await asyncio.sleep(0)
    assert await middleware(handler, album_part(2), {"settlement": second}) is None
    second.finish(crashed=False)  # the later file's own processing ended at once...
    assert second.verdict is None  # ...but it waits for the album's first update
    first.failed()
    assert await second.wait() is Verdict.HAND_BACK  # handed back with it
    leading.cancel()
    # Webhook: Telegram sends the next file only once the previous is answered, so each
    # is confirmed as soon as it is gathered.
    first, second = Settlement(holds_chat=True), Settlement(holds_chat=True)
    leading = asyncio.create_task(middleware(handler, album_part(3), {"settlement": first}))
    await asyncio.sleep(0)
    assert first.verdict is Verdict.CONFIRM and not handled.is_set()
    assert await middleware(handler, album_part(4), {"settlement": second}) is None
    assert second.verdict is Verdict.CONFIRM
    leading.cancel()


@pytest.fixture
async def sandbox():
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        async with SandboxClient(server.url, token=TOKEN) as client:
            yield server, client


async def test_polling_moves_the_offset_only_past_settled_updates(sandbox):
    server, client = sandbox
    session = BotApiSession(api=TelegramAPIServer.from_base(server.url))
    bot = Bot(TOKEN, session=session)
    events: list[str] = []
    release = asyncio.Event()
    dp = dispatcher(events, {"slow": release, "flaky": [RuntimeError("once")]})
    undecodable: list[Any] = []
    poller = ConfirmingPoller(
        UpdateRunner(dp, bot), polling_timeout=1, retry_min=0.05, undecodable=undecodable.append,
    )
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop, grace_seconds=5))
    client_calls: list[int] = []
    try:
        user = await client.create_user()
        slow = await client.send_text(user["id"], "slow")
        quick = await client.send_text(user["id"], "quick")
        flaky = await client.send_text(user["id"], "flaky")
        poison = await client.inject_update({"message": {"message_id": 99, "date": 0, "chat": {
            "id": user["id"], "type": "private"}, "forward_origin": {"type": "hidden_user", "date": 0}}})

        async def offsets() -> list[int]:
            return [int(c["params"].get("offset") or 0) for c in await client.calls("getUpdates")]

        # The quick, the flaky (retried after its failure) and the poison updates settle...
        await until(lambda: "handle quick" in events and events.count("handle flaky") == 2 and undecodable)
        # ...and Telegram is asked again since, but never past the slow one in progress.
        asked = len(await offsets())
        await until(lambda: len(client_calls) > asked + 1, refresh=lambda: refresh(client_calls, offsets))
        assert max(await offsets()) <= slow["update_id"]
        release.set()
        await until(lambda: client_calls and max(client_calls) > poison["update_id"],
                    refresh=lambda: refresh(client_calls, offsets))
        assert events.count("handle slow") == 1 and events.count("handle quick") == 1
        assert quick["update_id"] < flaky["update_id"] < poison["update_id"]
    finally:
        stop.set()
        await asyncio.wait_for(polling, 10)
        await session.close()
    assert (await client.bot_info())["pending_updates"] == 0


async def test_polling_survives_failing_get_updates(sandbox):
    """5xx and 429 on getUpdates: asked again after a back-off, nothing lost."""
    server, client = sandbox
    session = BotApiSession(api=TelegramAPIServer.from_base(server.url))
    bot = Bot(TOKEN, session=session)
    events: list[str] = []
    poller = ConfirmingPoller(UpdateRunner(dispatcher(events, {}), bot), polling_timeout=1, error_min=0.05)
    user = await client.create_user()
    await client.add_fault("getUpdates", 502, count=2)
    await client.add_fault("getUpdates", 429, count=1, retry_after=1)
    await client.add_fault("getUpdates", 500, count=1)
    for text in ("one", "two", "three"):
        await client.send_text(user["id"], text)
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop, grace_seconds=5))
    try:
        await until(lambda: all(f"handle {t}" in events for t in ("one", "two", "three")))
    finally:
        stop.set()
        await asyncio.wait_for(polling, 10)
        await session.close()
    failed = [c["error_code"] for c in await client.calls("getUpdates") if not c["ok"]]
    assert failed == [502, 502, 429, 500]
    assert events.count("handle one") == 1 and (await client.bot_info())["pending_updates"] == 0


async def test_polling_stop_confirms_what_settled_and_hands_back_the_rest(sandbox):
    server, client = sandbox
    session = BotApiSession(api=TelegramAPIServer.from_base(server.url))
    bot = Bot(TOKEN, session=session)
    events: list[str] = []
    never = asyncio.Event()
    poller = ConfirmingPoller(UpdateRunner(dispatcher(events, {"stuck": never}), bot), polling_timeout=1)
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop, grace_seconds=0.1))
    try:
        user = await client.create_user()
        stuck = await client.send_text(user["id"], "stuck")
        await client.send_text(user["id"], "fine")
        for _ in range(1000):
            if "handle fine" in events and "handle stuck" in events:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(polling, 10)
    finally:
        await session.close()
    # The stuck update was cut short and stays with "Telegram"; nothing after it was lost
    # either (it is delivered again after a restart, where dedup recognises it).
    pending = (await client.bot_info())["pending_updates"]
    assert pending == 2
    offsets = [int(c["params"].get("offset") or 0) for c in await client.calls("getUpdates")]
    assert offsets[-1] == stuck["update_id"]


async def refresh(into: list[int], offsets) -> None:
    into[:] = await offsets()


async def until(condition, *, refresh=None) -> None:
    """Wait (polling every 10 ms, at most 10 s) until ``condition()`` is true; ``refresh``
    (async) runs before each check."""
    for _ in range(1000):
        if refresh is not None:
            await refresh()
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_database_probe_opens_the_file_anew_and_never_creates_it(tmp_path):
    path = tmp_path / "nazaha.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        probes = {"database": database_probe(engine)}
        assert await readiness(probes) == {"database": "ok"}
        path.rename(tmp_path / "away.db")
        assert (await readiness(probes))["database"].startswith("failed (")
        assert not path.exists()  # not created empty in its place

        async def hangs() -> None:
            await asyncio.Event().wait()

        assert await readiness({"slow": hangs}, timeout=0.05) == {"slow": "failed (timeout)"}
    finally:
        await engine.dispose()
