"""Metrics (nazaha/metrics.py): label values from fixed lists only; updates counted by type
and outcome; Bot API requests and errors counted at the session over real HTTP (the
sandbox); queue depths counted from the database; the bot's endpoint served over HTTP; the
console's /metrics behind its bearer token, with route templates and sign-in results."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import Update
from fastapi.testclient import TestClient
from sqlalchemy import insert

from nazaha import metrics
from nazaha.admin.app import console_routes, create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.observability import MetricsServer, UpdateMetrics, publicly_reachable, publish_queue_depths
from nazaha.bot.setup import initialise
from nazaha.bot.telegram_session import BotApiSession, error_code_of, results_unused
from nazaha.handlers.middlewares import UnitOfWorkMiddleware
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.awareness_models import BroadcastOutbox, Subscriber
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import write_transaction
from nazaha.storage.keyfiles import KeyPaths
from nazaha.storage.models import BotMailbox, NotificationInstruction
from nazaha.storage.queue_depths import count_queues
from tests.broadcast_support import add_broadcast, ask_test_send, clear_awareness, linked_staff_chat, set_status, started_users
from tests.console_support import PASSPHRASE, STAFF_PASSWORD, MovableClock, console_settings, enrol, login, totp_code
from tests.e2e_support import TOKEN

BASE = "https://testserver"
METRICS_TOKEN = "m3tr1cs-" + "x" * 40


def sample(registry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def bot_sample(name: str, **labels: str) -> float:
    return sample(metrics.BOT_REGISTRY, name, **labels)


def labelled_samples(registry):
    """(metric name, labels) of every sample of ours."""
    for family in registry.collect():
        if family.name.startswith("nazaha_"):
            for s in family.samples:
                yield s.name, s.labels


# ---------------------------------------------------------------------- label values


def test_label_values_come_from_fixed_lists():
    assert metrics.api_method("sendMessage") == "sendMessage"
    assert metrics.api_method("sendMessage\n") == "other"
    assert metrics.api_method("R-7Q2K9M") == "other"
    assert metrics.api_method(None) == "other"
    assert [metrics.api_error_code(c) for c in (400, "403", 429, 500, 502, 599, 418, "x", None, "network")] == [
        "400", "403", "429", "5xx", "5xx", "5xx", "other", "other", "other", "network"]
    assert [metrics.status_class(s) for s in (101, 200, 303, 404, 503, 99, 600)] == [
        "1xx", "2xx", "3xx", "4xx", "5xx", "other", "other"]
    assert metrics.http_method("GET") == "GET" and metrics.http_method("PROPFIND") == "other"
    assert metrics.outcome_label("handled") == "handled" and metrics.outcome_label("1234 5678") == "other"
    message = Update.model_validate({"update_id": 1, "message": {
        "message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}})
    assert metrics.update_kind(message) == "message"
    assert metrics.update_kind(Update(update_id=2)) == "other"  # no known type
    assert metrics.update_kind(object()) == "other"


@pytest.mark.parametrize(
    "exc, code",
    [
        (TelegramRetryAfter(method=None, message="m", retry_after=3), 429),
        (TelegramMigrateToChat(method=None, message="m", migrate_to_chat_id=-1), 400),
        (TelegramBadRequest(method=None, message="m"), 400),
        (TelegramUnauthorizedError(method=None, message="m"), 401),
        (TelegramForbiddenError(method=None, message="m"), 403),
        (TelegramNotFound(method=None, message="m"), 404),
        (TelegramConflictError(method=None, message="m"), 409),
        (TelegramEntityTooLarge(method=None, message="m"), 413),
        (TelegramServerError(method=None, message="m"), 500),
        (TelegramNetworkError(method=None, message="m"), "network"),
        (TelegramAPIError(method=None, message="m"), "other"),
    ],
)
def test_error_codes_of_aiogram_exceptions(exc, code):
    assert error_code_of(exc) == code


# ---------------------------------------------------------------------- updates


def press_update(update_id: int) -> Update:
    return Update.model_validate({"update_id": update_id, "callback_query": {
        "id": "cq-secret-77", "from": {"id": 987654321, "is_bot": False, "first_name": "Samira"},
        "chat_instance": "ci", "data": "r:gov:jenin"}})


async def test_updates_are_counted_by_type_and_outcome():
    middleware = UpdateMetrics()

    async def handled(event, data):
        return "done"

    async def unhandled(event, data):
        return UNHANDLED

    async def throttled(event, data):
        metrics.mark_outcome(data, "throttled")
        return None

    async def broken(event, data):
        raise RuntimeError("escaped")

    async def stopped(event, data):
        raise asyncio.CancelledError

    def count(outcome: str) -> float:
        return bot_sample("nazaha_updates_total", kind="callback_query", outcome=outcome)

    before = {o: count(o) for o in ("handled", "unhandled", "throttled", "error", "cancelled")}
    timed = bot_sample("nazaha_update_duration_seconds_count", kind="callback_query")
    assert await middleware(handled, press_update(1), {}) == "done"
    assert await middleware(unhandled, press_update(2), {}) is UNHANDLED
    assert await middleware(throttled, press_update(3), {}) is None
    with pytest.raises(RuntimeError):
        await middleware(broken, press_update(4), {})
    with pytest.raises(asyncio.CancelledError):
        await middleware(stopped, press_update(5), {})
    assert {o: count(o) - before[o] for o in before} == {
        "handled": 1, "unhandled": 1, "throttled": 1, "error": 1, "cancelled": 1}
    assert bot_sample("nazaha_update_duration_seconds_count", kind="callback_query") == timed + 5


async def test_a_redelivered_update_counts_as_duplicate():
    """The unit of work's in-memory dedup marks the outcome the outer middleware reads."""

    class FakeBot:
        id = 1

    inner = UnitOfWorkMiddleware()
    outer = UpdateMetrics()
    update = press_update(50)
    inner.recent.claim(FakeBot.id, update.update_id)  # already handled once

    async def chain(event, data):
        return await inner(lambda e, d: None, event, data)

    before = bot_sample("nazaha_updates_total", kind="callback_query", outcome="duplicate")
    await outer(chain, update, {"bot": FakeBot(), "uow": None})
    assert bot_sample("nazaha_updates_total", kind="callback_query", outcome="duplicate") == before + 1


# ---------------------------------------------------------------------- the Bot API session


@pytest_asyncio.fixture
async def sandbox():
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        yield server


@pytest_asyncio.fixture
async def bot(sandbox):
    bot = Bot(TOKEN, session=BotApiSession(api=TelegramAPIServer.from_base(sandbox.url)),
              default=DefaultBotProperties(parse_mode=None))
    try:
        yield bot
    finally:
        await bot.session.close()


async def test_bot_api_requests_and_errors_are_counted_once_by_method_and_code(sandbox, bot):
    (chat_id,) = started_users(sandbox.emulator, TOKEN, 1)
    emulator_bot = sandbox.emulator.get_bot(TOKEN)

    def requests() -> float:
        return bot_sample("nazaha_bot_api_requests_total", method="sendMessage")

    def errors(code: str) -> float:
        return bot_sample("nazaha_bot_api_errors_total", method="sendMessage", code=code)

    before = requests(), errors("403"), errors("429"), errors("5xx")
    await bot.send_message(chat_id, "first")  # the JSON path of make_request
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 403)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(chat_id, "second")
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 429, retry_after=1)
    with pytest.raises(TelegramRetryAfter), results_unused():
        await bot.send_message(chat_id, "third")
    # The broadcast sender's path: post_json directly (counted once, not again inside).
    sandbox.emulator.add_fault(emulator_bot, "sendMessage", 502)
    method = SendMessage(chat_id=chat_id, text="fourth")
    with pytest.raises(TelegramServerError):
        await bot.session.post_json(bot, method, bot.session.json_body(bot, method))
    await bot.session.post_json(bot, method, bot.session.json_body(bot, method))
    after = requests(), errors("403"), errors("429"), errors("5xx")
    assert [a - b for a, b in zip(after, before)] == [5, 1, 1, 1]


async def test_an_unreachable_bot_api_counts_as_a_network_error():
    with socket_closed_port() as port:
        bot = Bot(TOKEN, session=BotApiSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}")))
        before = bot_sample("nazaha_bot_api_errors_total", method="getMe", code="network")
        try:
            with pytest.raises(TelegramNetworkError):
                await bot.get_me()
        finally:
            await bot.session.close()
    assert bot_sample("nazaha_bot_api_errors_total", method="getMe", code="network") == before + 1


class socket_closed_port:
    """A local port nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


# ---------------------------------------------------------------------- queue depths


async def test_queue_depths_are_counted_from_the_database(sessionmaker):
    await clear_awareness(sessionmaker)
    try:
        now = dt.datetime.now(dt.timezone.utc)
        sending = await add_broadcast(sessionmaker, {"ar": "a"})
        paused = await add_broadcast(sessionmaker, {"ar": "b"})
        done = await add_broadcast(sessionmaker, {"ar": "c"})
        await add_broadcast(sessionmaker, {"ar": "d"}, status="draft")
        await set_status(sessionmaker, sending, "sending", started_at=now)
        await set_status(sessionmaker, paused, "paused", started_at=now)
        await set_status(sessionmaker, done, "done", started_at=now, finished_at=now)
        async with write_transaction(sessionmaker) as session:
            ids = []
            for n in range(4):
                result = await session.execute(insert(Subscriber).values(
                    chat_key=f"k{n}", sealed_chat=b"x", language="ar", joined_on=now.date()))
                ids.append(result.inserted_primary_key[0])
            rows = [(sending, ids[0], "queued"), (sending, ids[1], "sent"), (sending, ids[2], "queued"),
                    (paused, ids[0], "queued"), (paused, ids[1], "blocked"),
                    (done, ids[0], "sent"), (done, ids[1], "sent")]
            for broadcast_id, subscriber_id, state in rows:
                await session.execute(insert(BroadcastOutbox).values(
                    broadcast_id=broadcast_id, subscriber_id=subscriber_id, state=state))
            session.add(BotMailbox(id="m1", public_key=b"k", opened_on=now.date()))
            await session.flush()
            session.add_all([NotificationInstruction(id=f"i{n}", mailbox_id="m1", sealed=b"s") for n in range(2)])
        await ask_test_send_to_linked_chat(sessionmaker, sending)

        depths = await count_queues(sessionmaker)
        assert depths.broadcasts == {"draft": 1, "submitted": 0, "rejected": 0, "approved": 0,
                                     "sending": 1, "paused": 1, "done": 1, "cancelled": 0}
        # Only the broadcasts sending or paused: the finished one's rows are history.
        assert depths.outbox == {"queued": 3, "sending": 0, "sent": 1, "failed": 0, "blocked": 1,
                                 "in_doubt": 0, "skipped": 0, "left": 0}
        assert depths.broadcast_outbox == 3
        assert depths.notification_instructions == 2
        assert depths.broadcast_test_sends == 1

        publish_queue_depths(depths, undelivered_receipts=4)
        assert bot_sample("nazaha_queue_depth", queue="broadcast_outbox") == 3
        assert bot_sample("nazaha_queue_depth", queue="notification_instructions") == 2
        assert bot_sample("nazaha_queue_depth", queue="undelivered_receipts") == 4
        assert bot_sample("nazaha_broadcasts", status="paused") == 1
        assert bot_sample("nazaha_broadcast_outbox_messages", state="blocked") == 1
    finally:
        await clear_awareness(sessionmaker)
        async with write_transaction(sessionmaker) as session:
            from sqlalchemy import delete

            await session.execute(delete(NotificationInstruction))
            await session.execute(delete(BotMailbox))


async def ask_test_send_to_linked_chat(sessionmaker, broadcast_id: int) -> None:
    """A queued "send a test to me" (a staff chat linked first, as the bot links one)."""
    link_id = await linked_staff_chat(sessionmaker, BotKeyBox(os.urandom(32)), os.urandom(32), 4242)
    await ask_test_send(sessionmaker, broadcast_id, link_id, "ar")


# ---------------------------------------------------------------------- the bot's endpoint


async def test_the_bot_serves_metrics_on_its_own_address():
    server = await MetricsServer.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as answer:
                body = await answer.text()
                assert answer.status == 200
                assert answer.headers["Content-Type"].startswith("text/plain")
            async with http.get(f"http://127.0.0.1:{server.port}/") as other:
                assert other.status == 404
        assert "# TYPE nazaha_updates_total counter" in body
        assert 'nazaha_queue_depth{queue="broadcast_outbox"}' in body
        assert "nazaha_console_" not in body  # the console's registry is its own
        assert "_created" not in body
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(f"http://127.0.0.1:{server.port}/metrics")


def test_public_addresses_are_told_apart():
    assert not publicly_reachable("127.0.0.1")
    assert not publicly_reachable("localhost")
    assert not publicly_reachable("10.1.2.3")
    assert not publicly_reachable("::1")
    assert not publicly_reachable("192.168.7.20")
    assert publicly_reachable("0.0.0.0")  # every interface
    assert publicly_reachable("::")
    assert publicly_reachable("8.8.8.8")
    assert publicly_reachable("metrics.example.org")


# ---------------------------------------------------------------------- the console


@pytest_asyncio.fixture
async def console(tmp_path):
    settings = console_settings(tmp_path / "var", console_metrics_token=METRICS_TOKEN)
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        client.clock = clock
        client.link = link
        yield client


def scrape(client: TestClient, token: str | None = METRICS_TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/metrics", headers=headers)


def console_sample(name: str, **labels: str) -> float:
    return sample(metrics.CONSOLE_REGISTRY, name, **labels)


async def test_console_metrics_need_the_token(console, tmp_path):
    assert scrape(console, None).status_code == 404
    assert scrape(console, "wrong").status_code == 404
    assert console.get("/metrics", headers={"Authorization": "Basic " + METRICS_TOKEN}).status_code == 404
    answer = scrape(console)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "nazaha_console_requests_total" in answer.text
    assert "nazaha_updates_total" not in answer.text  # the bot's registry is its own


async def test_console_without_a_token_has_no_metrics(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


async def test_console_requests_are_labelled_by_route_template_and_logins_counted(console):
    admin = enrol(console, console.link, console.clock, team_passphrase=PASSPHRASE)
    before_case = console_sample("nazaha_console_requests_total", method="GET", route="/cases/{designation}",
                                 status="4xx")
    before_unmatched = console_sample("nazaha_console_requests_total", method="GET", route="unmatched", status="4xx")
    before_ok = console_sample("nazaha_console_logins_total", result="ok")
    before_failed = console_sample("nazaha_console_logins_total", result="failed")

    assert console.get("/cases/R-ZZ9QX7").status_code == 404  # no such case: its template still
    assert console.get("/no/such/page/R-QQ1234").status_code == 404
    console.clock.advance(seconds=60)
    assert login(console, "admin", "not the password", "000000").status_code == 401
    assert login(console, "admin", STAFF_PASSWORD, totp_code(admin.totp_secret, console.clock)).status_code == 303

    assert console_sample("nazaha_console_requests_total", method="GET", route="/cases/{designation}",
                          status="4xx") == before_case + 1
    assert console_sample("nazaha_console_requests_total", method="GET", route="unmatched",
                          status="4xx") == before_unmatched + 1
    assert console_sample("nazaha_console_logins_total", result="ok") == before_ok + 1
    assert console_sample("nazaha_console_logins_total", result="failed") == before_failed + 1
    assert console_sample("nazaha_console_request_duration_seconds_count", route="/login") >= 4

    text = scrape(console).text
    for secret in ("R-ZZ9QX7", "R-QQ1234", "/no/such", "admin", console.link.rsplit("/", 1)[1]):
        assert secret not in text
    assert_labels_fixed(labelled_samples(metrics.CONSOLE_REGISTRY),
                        routes={path for _, path in console_routes(console.app)})


def assert_labels_fixed(samples, routes: set[str] | None = None) -> None:
    """Every label value of every sample of ours (``(name, labels)`` pairs, e.g. from
    :func:`labelled_samples` or a parsed scrape) is one of the fixed lists."""
    allowed = {
        "kind": metrics.UPDATE_KINDS | {"other"},
        "outcome": set(metrics.OUTCOMES) | {"other"},
        "method": metrics.API_METHODS | metrics.HTTP_METHODS | {"other"},
        "code": set(metrics.API_ERROR_CODES),
        "queue": set(metrics.QUEUES),
        "status": set(metrics.STATUS_CLASSES) | {"other"} | set(metrics.BROADCAST_STATUSES),
        "state": set(metrics.OUTBOX_STATES),
        "result": set(metrics.LOGIN_RESULTS) | {"other"},
        "route": (routes or set()) | {"/static", metrics.UNMATCHED_ROUTE},
        "le": None,  # histogram bucket bounds: numbers
    }
    for name, labels in samples:
        if not name.startswith("nazaha_"):
            continue
        for label, value in labels.items():
            assert label in allowed, (name, label)
            if label == "le":
                assert value == "+Inf" or re.fullmatch(r"\d+(\.\d+)?", value), (name, value)
            else:
                assert value in allowed[label], (name, label, value)


def test_bot_labels_are_fixed_after_the_tests_above():
    assert_labels_fixed(labelled_samples(metrics.BOT_REGISTRY))
