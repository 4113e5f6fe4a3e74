"""The Bot API emulator, driven over real HTTP by a real aiogram Bot and the control client."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputPollOption,
    KeyboardButton,
    MessageEntity,
    MessageId,
    ReplyKeyboardMarkup,
)
from aiohttp import web

from nazaha.sandbox.client import SandboxClient, SandboxControlError
from nazaha.sandbox.server import SandboxServer

TOKEN = "4242:AAAA_sandbox_test_token_0123456789"
OTHER_TOKEN = "5151:BBBB_sandbox_other_token_987654321"


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as s:
        yield s


@pytest.fixture
async def client(server: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(server.url) as c:
        yield c


class QuickCloseSession(AiohttpSession):
    """aiogram's AiohttpSession, minus the 250 ms grace sleep in close() (keeps the suite fast)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(server: SandboxServer, token: str = TOKEN) -> Bot:
    return Bot(token, session=QuickCloseSession(api=TelegramAPIServer.from_base(server.url)))


@pytest.fixture
async def bot(server: SandboxServer) -> AsyncIterator[Bot]:
    b = make_bot(server)
    yield b
    await b.session.close()


async def started_user(client: SandboxClient, bot: Bot, **kwargs: Any) -> tuple[dict[str, Any], int]:
    """A user who has sent /start; returns (user, next getUpdates offset)."""
    user = await client.create_user(**kwargs)
    await client.send_text(user["id"], "/start")
    updates = await bot.get_updates(timeout=0)
    return user, updates[-1].update_id + 1


async def test_core_methods_with_real_aiogram_bot(server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 4242 and me.is_bot and me.username == "sandbox_4242_bot"

    user = await client.create_user(first_name="Salma", language_code="ar")
    sent = await client.send_text(user["id"], "/start")
    [update] = await bot.get_updates(timeout=0)
    assert update.message.text == "/start" and update.message.from_user.id == user["id"]
    assert update.message.from_user.language_code == "ar" and update.message.chat.type == "private"
    assert update.message.entities[0].type == "bot_command"
    assert update.message.message_id == sent["message_id"]

    keyboard = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="نعم", callback_data="yes"),
        InlineKeyboardButton(text="Site", url="https://example.org/"),
    ]])
    msg = await bot.send_message(user["id"], "مرحبا", reply_markup=keyboard, protect_content=True)
    assert msg.text == "مرحبا" and msg.has_protected_content and msg.from_user.id == 4242
    assert msg.reply_markup.model_dump(exclude_none=True) == keyboard.model_dump(exclude_none=True)
    assert msg.chat.id == user["id"]

    pressed = await client.press(user["id"], msg.message_id, "yes")
    [cb_update] = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    query = cb_update.callback_query
    assert cb_update.update_id == pressed["update_id"] and query.id == pressed["callback_query_id"]
    assert query.data == "yes" and query.message.message_id == msg.message_id and query.chat_instance
    assert await bot.answer_callback_query(query.id, text="تم")
    answer = await client.callback_answer(query.id)
    assert answer["answered"] and answer["answer"]["text"] == "تم"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("nonexistent")

    edited = await bot.edit_message_text("تم التعديل", chat_id=user["id"], message_id=msg.message_id)
    assert edited.text == "تم التعديل" and edited.edit_date is not None
    assert edited.reply_markup is None  # an edit without reply_markup removes the keyboard
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("تم التعديل", chat_id=user["id"], message_id=msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=user["id"], message_id=999)

    reply_kb = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="إلغاء")]], resize_keyboard=True)
    kb_msg = await bot.send_message(user["id"], "اختر", reply_markup=reply_kb)
    assert kb_msg.reply_markup is None  # Telegram echoes only inline keyboards

    assert await bot.delete_message(user["id"], msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user["id"], msg.message_id)

    view = {m["message_id"]: m for m in await client.messages(user["id"])}
    assert view[sent["message_id"]]["from_bot"] is False
    deleted = view[msg.message_id]
    assert deleted["deleted"] and deleted["edited"] and deleted["protect_content"] and deleted["edit_count"] == 1
    assert view[kb_msg.message_id]["reply_markup"]["keyboard"][0][0]["text"] == "إلغاء"
    assert list(view) == sorted(view)

    assert await bot.set_my_commands([BotCommand(command="start", description="ابدأ")], language_code="ar")
    assert await bot.set_my_commands([BotCommand(command="start", description="Start")], language_code="en")
    assert [c.description for c in await bot.get_my_commands(language_code="ar")] == ["ابدأ"]
    assert await client.commands(language_code="en") == [{"command": "start", "description": "Start"}]
    assert await client.commands() == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Command", description="x")])
    assert await bot.set_my_description("وصف", language_code="ar")
    assert (await bot.get_my_description(language_code="ar")).description == "وصف"
    assert await bot.send_chat_action(user["id"], "typing")

    sends = await client.calls("sendMessage")
    assert len(sends) == 2 and sends[0]["params"]["protect_content"] is True
    assert sends[0]["params"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"
    assert all(call["ok"] for call in sends)


async def test_get_updates_long_poll_and_offset(server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    user = await client.create_user()
    poll = asyncio.create_task(bot.get_updates(timeout=20))
    await asyncio.sleep(0)  # let the poll start; correctness does not depend on it
    started = time.monotonic()
    sent = await client.send_text(user["id"], "hello")
    updates = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 2
    assert [u.update_id for u in updates] == [sent["update_id"]]

    # not confirmed yet: delivered again
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [sent["update_id"]]
    second = await client.send_text(user["id"], "second")
    assert second["update_id"] == sent["update_id"] + 1
    confirmed = await bot.get_updates(offset=sent["update_id"] + 1, timeout=0)
    assert [u.message.text for u in confirmed] == ["second"]
    assert await bot.get_updates(offset=second["update_id"] + 1, timeout=0) == []

    started = time.monotonic()
    assert await bot.get_updates(offset=second["update_id"] + 1, timeout=1) == []
    assert time.monotonic() - started >= 0.9

    for i in range(5):
        await client.send_text(user["id"], f"m{i}")
    assert len(await bot.get_updates(limit=2, timeout=0)) == 2

    # a newer getUpdates terminates a waiting one, as on Telegram
    await bot.get_updates(offset=-1)  # keep only the last one...
    last = await bot.get_updates(timeout=0)
    older = asyncio.create_task(bot.get_updates(offset=last[-1].update_id + 1, timeout=20))
    await asyncio.sleep(0.05)
    newer = asyncio.create_task(bot.get_updates(offset=last[-1].update_id + 1, timeout=20))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(older, 5)
    await client.send_text(user["id"], "wake")
    assert [u.message.text for u in await asyncio.wait_for(newer, 5)] == ["wake"]


async def test_injected_duplicate_update_is_delivered_twice(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    await client.send_text(user["id"], "report")
    [original] = await bot.get_updates(offset=offset, timeout=0)
    raw = original.model_dump(mode="json", by_alias=True, exclude_none=True)
    await client.inject_update(raw)
    [duplicate] = await bot.get_updates(offset=original.update_id + 1, timeout=0)
    assert duplicate.update_id == original.update_id and duplicate.message.text == "report"
    forged = await client.inject_update({"callback_query": {
        "id": "forged", "from": user, "chat_instance": "1", "data": "x" * 200}})
    [update] = await bot.get_updates(offset=original.update_id + 1, timeout=0)
    assert update.update_id == forged["update_id"] > original.update_id
    assert update.callback_query.data == "x" * 200
    assert await bot.answer_callback_query("forged")  # Telegram delivered it, so it can be answered once
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("forged")


async def test_text_and_callback_data_limits(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    assert len((await bot.send_message(user["id"], "a" * 4096)).text) == 4096
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(user["id"], "a" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(user["id"], " \n ")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(123, "hi")

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="b", callback_data=data)]])

    await bot.send_message(user["id"], "ok", reply_markup=keyboard("ع" * 32))  # 64 bytes
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user["id"], "too long", reply_markup=keyboard("ع" * 32 + "x"))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user["id"], "too long", reply_markup=keyboard("x" * 65))

    stranger = await client.create_user()
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(stranger["id"], "hello")


async def test_html_parse_mode(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    raw = '<b>رقم</b> &lt;1&gt; <a href="https://example.org">link</a>'
    msg = await bot.send_message(user["id"], raw, parse_mode="HTML")
    assert msg.text == "رقم <1> link"
    assert [(e.type, e.offset, e.length) for e in msg.entities] == [("bold", 0, 3), ("text_link", 8, 4)]
    [view] = [m for m in await client.messages(user["id"]) if m["message_id"] == msg.message_id]
    assert view["html"] == raw and view["text"] == "رقم <1> link"
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(user["id"], "a <script>x</script>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(user["id"], "1 < 2", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(user["id"], "<b>open", parse_mode="HTML")


async def test_faults_surface_as_aiogram_errors(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    await client.add_fault("sendMessage", 429, count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as info:
            await bot.send_message(user["id"], "hi")
        assert info.value.retry_after == 3
    await bot.send_message(user["id"], "now it works")

    await client.add_fault("sendMessage", 403)
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await bot.send_message(user["id"], "hi")
    await client.add_fault("getMe", 502)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    await client.add_fault("getMe", 500, count=5)
    await client.clear_faults()
    await bot.get_me()

    await client.set_blocked(user["id"], True)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(user["id"], "hi")
    await client.set_blocked(user["id"], False)
    await bot.send_message(user["id"], "unblocked")

    calls = await client.calls("sendmessage")
    assert [c["error_code"] for c in calls] == [429, 429, None, 403, 403, None]


async def test_delete_window_of_48_hours(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    old = await bot.send_message(user["id"], "old")
    await client.advance_clock(47 * 3600)
    recent = await bot.send_message(user["id"], "recent")
    assert await bot.delete_message(user["id"], old.message_id)  # 47 hours old: allowed
    old2 = await bot.send_message(user["id"], "old2")
    await client.advance_clock(48 * 3600 + 5)
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_message(user["id"], old2.message_id)
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_messages(user["id"], [recent.message_id, old2.message_id])
    fresh = await bot.send_message(user["id"], "fresh")
    assert fresh.date.timestamp() > time.time() + 90 * 3600  # dates follow the emulator clock
    assert await bot.delete_messages(user["id"], [old2.message_id, fresh.message_id])
    view = {m["message_id"]: m["deleted"] for m in await client.messages(user["id"])}
    assert view[fresh.message_id] and not view[old2.message_id]


async def test_webhook_delivery_with_secret_and_retries(server: SandboxServer, client: SandboxClient,
                                                        bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    statuses = [500]  # first delivery fails, then 200
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
            arrived.set()
        if status == 200 and body["message"]["text"] == "ping":
            # aiogram can answer an update in the webhook response: Telegram runs that method
            return web.json_response({"method": "sendMessage", "chat_id": body["message"]["chat"]["id"],
                                      "text": "pong"})
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        user = await client.create_user()
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cr3t-Token_x")
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()
        sent = await client.send_text(user["id"], "via webhook")
        await asyncio.wait_for(arrived.wait(), 5)
        [(secret, body)] = received
        assert secret == "s3cr3t-Token_x"
        assert body["update_id"] == sent["update_id"] and body["message"]["text"] == "via webhook"
        details = await client.bot_info()
        assert details["webhook_attempts"] == 2 and details["webhook_delivered"] == 1
        assert details["webhook"]["last_error_message"].startswith("Wrong response from the webhook: 500")
        assert (await bot.get_webhook_info()).pending_update_count == 0
        await client.send_text(user["id"], "ping")
        reply = await client.wait_for_bot_message(user["id"], timeout=5)
        assert reply["text"] == "pong"

        assert await bot.delete_webhook()
        await client.send_text(user["id"], "polling again")
        [update] = await bot.get_updates(timeout=0)
        assert update.message.text == "polling again"
    finally:
        await runner.cleanup()


async def _receiver(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"


async def test_webhook_delivery_to_replicas_round_robin_all_and_in_parallel(
        client: SandboxClient, bot: Bot) -> None:
    """The test-only delivery options: round robin over several URLs (a retry goes to the
    next one, as through a reverse proxy), every update to every URL, several in flight,
    and a POST left unanswered past the timeout counts as failed and is retried."""
    seen: dict[str, list[int]] = {"a": [], "b": []}
    secrets_seen: set[str | None] = set()
    refuse_next = {"a": 0}
    hold = asyncio.Event()
    release = asyncio.Event()
    held: list[str] = []
    answered: list[str] = []
    arrived_after: dict[str, list[str]] = {}

    def receiver(name: str):
        async def receive(request: web.Request) -> web.Response:
            body = await request.json()
            secrets_seen.add(request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
            text = body["message"]["text"]
            if text.startswith("hold"):
                held.append(text)
                arrived_after[text] = list(answered)
                await hold.wait()
                answered.append(text)
            if text == "slow" and name == "a":
                await release.wait()  # not answered in time: the sandbox times out
            if refuse_next.get(name):
                refuse_next[name] -= 1
                return web.json_response({}, status=503)
            seen[name].append(body["update_id"])
            return web.json_response({})
        return receive

    runner_a, url_a = await _receiver(receiver("a"))
    runner_b, url_b = await _receiver(receiver("b"))
    try:
        user = await client.create_user()
        assert await bot.set_webhook(url_a, secret_token="replica-secret")
        view = await client.set_webhook_delivery([url_a, url_b])
        assert view == {"urls": [url_a, url_b], "mode": "round_robin", "concurrency": None, "timeout": 15.0}

        async def delivered(count: int) -> None:
            for _ in range(500):
                if (await client.bot_info())["webhook_delivered"] >= count:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("not delivered")

        first = await client.send_text(user["id"], "one")
        second = await client.send_text(user["id"], "two")
        await delivered(2)
        assert seen == {"a": [first["update_id"]], "b": [second["update_id"]]}
        # A refusal from a is retried on b.
        refuse_next["a"] = 1
        third = await client.send_text(user["id"], "three")
        await delivered(3)
        assert seen["b"][-1] == third["update_id"]
        log = [(entry["update_id"], entry["url"], entry["status"]) for entry in await client.webhook_log()]
        assert log[-2:] == [(third["update_id"], url_a, 503), (third["update_id"], url_b, 200)]

        # Every update to every URL.
        await client.set_webhook_delivery([url_a, url_b], mode="all")
        both = await client.send_text(user["id"], "both")
        await delivered(4)
        assert seen["a"][-1] == seen["b"][-1] == both["update_id"]

        # Several chats in parallel, one chat's updates one after the other: the held updates
        # of two users both reach the receiver before either answers; the same user's next
        # update waits for its previous one.
        other = await client.create_user()
        await client.set_webhook_delivery([url_a])
        for sender, text in ((user, "hold 1"), (other, "hold 2"), (user, "hold 3")):
            await client.send_text(sender["id"], text)
        for _ in range(500):
            if len(held) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(held) == ["hold 1", "hold 2"]  # two chats at once
        hold.set()
        await delivered(7)
        assert held[2] == "hold 3" and "hold 1" in arrived_after["hold 3"]  # after its chat's previous

        # An unanswered POST fails after the timeout and is retried (on b, round robin).
        await client.set_webhook_delivery([url_a, url_b], timeout=0.5)
        slow = await client.send_text(user["id"], "slow")
        await delivered(8)
        entries = [entry for entry in await client.webhook_log() if entry["update_id"] == slow["update_id"]]
        assert [(entry["url"], entry["status"], entry["error"]) for entry in entries] == [
            (url_a, None, "Timeout expired"), (url_b, 200, None)]
        assert secrets_seen == {"replica-secret"}
        assert (await bot.get_webhook_info()).pending_update_count == 0
    finally:
        release.set()
        await bot.delete_webhook()
        await runner_a.cleanup()
        await runner_b.cleanup()


async def test_unusual_characters_round_trip_exactly(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    text = "\u202eabc\u202c \u200f\u0645\u0631\u062d\u0628\u0627\u200e \u200b\u200c\u200d\ufeff \x01\x07\x1b\t\r\n😀 x"
    await client.send_text(user["id"], text)
    [update] = await bot.get_updates(offset=offset, timeout=0)
    assert update.message.text == text
    msg = await bot.send_message(user["id"], text)
    assert msg.text == text
    [view] = [m for m in await client.messages(user["id"]) if m["message_id"] == msg.message_id]
    assert view["text"] == text
    found = await client.wait_for_bot_message(user["id"], after_message_id=update.message.message_id, timeout=1)
    assert found["text"] == text


async def test_files_round_trip(server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    content = bytes(range(256)) * 300
    await client.send_document(user["id"], "تقرير.pdf", content, "application/pdf")
    [update] = await bot.get_updates(offset=offset, timeout=0)
    doc = update.message.document
    assert doc.file_name == "تقرير.pdf" and doc.mime_type == "application/pdf" and doc.file_size == len(content)
    file = await bot.get_file(doc.file_id)
    downloaded = await bot.download_file(file.file_path)
    assert downloaded.read() == content

    await client.send_photo(user["id"])
    [photo_update] = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    biggest = photo_update.message.photo[-1]
    assert len(photo_update.message.photo) == 2 and biggest.width > photo_update.message.photo[0].width
    assert (await bot.download_file((await bot.get_file(biggest.file_id)).file_path)).read()[:2] == b"\xff\xd8"

    await client.send_document(user["id"], "big.bin", b"x", file_size=20 * 1024 * 1024 + 1)
    [big] = await bot.get_updates(offset=photo_update.update_id + 1, timeout=0)
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(big.message.document.file_id)

    sent = await bot.send_document(user["id"], BufferedInputFile(b"receipt", filename="r.txt"), caption="ok",
                                   protect_content=True)
    assert sent.document.file_name == "r.txt" and sent.caption == "ok" and sent.has_protected_content
    assert (await bot.download_file((await bot.get_file(sent.document.file_id)).file_path)).read() == b"receipt"

    for kind in ("sticker", "location", "voice"):
        await getattr(client, f"send_{kind}")(user["id"])
    kinds = await bot.get_updates(offset=big.update_id + 1, timeout=0)
    assert kinds[0].message.sticker and kinds[1].message.location.latitude and kinds[2].message.voice


async def test_raw_http_errors_and_two_bots(server: SandboxServer, client: SandboxClient) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/botnot-a-token/getMe") as resp:
            assert resp.status == 401 and (await resp.json())["description"] == "Unauthorized"
        async with http.post(f"{server.url}/bot{TOKEN}/noSuchMethod") as resp:
            body = await resp.json()
            assert resp.status == 404 and body == {"ok": False, "error_code": 404,
                                                   "description": "Not Found: method not found"}
        async with http.post(f"{server.url}/bot{TOKEN}/getUpdates", json={"timeout": 0}) as resp:
            assert (await resp.json()) == {"ok": True, "result": []}
        user = await client.create_user()
        await client.send_text(user["id"], "/start")
        markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        async with http.post(f"{server.url}/bot{TOKEN}/sendMessage",
                             json={"chat_id": user["id"], "text": "json body", "reply_markup": markup}) as resp:
            assert resp.status == 200 and (await resp.json())["result"]["reply_markup"] == markup
        form = {"chat_id": str(user["id"]), "text": "[1]", "protect_content": "true",
                "reply_markup": '{"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}'}
        async with http.post(f"{server.url}/bot{TOKEN}/sendmessage", data=form) as resp:
            result = (await resp.json())["result"]
            assert result["text"] == "[1]" and result["has_protected_content"] and result["reply_markup"] == markup
        async with http.get(f"{server.url}/bot{TOKEN}/sendMessage",
                            params={"chat_id": user["id"], "text": "x", "reply_markup": "{bad"}) as resp:
            assert resp.status == 400 and "reply keyboard markup" in (await resp.json())["description"]
        async with http.get(f"{server.url}/") as resp:
            page = await resp.text()
            assert resp.status == 200 and "chat.js" in page and "default-src 'self'" in resp.headers[
                "Content-Security-Policy"]
        async with http.get(f"{server.url}/sandbox/static/chat.js") as resp:
            assert resp.status == 200 and "textContent" in await resp.text()

    first, second = make_bot(server), make_bot(server, OTHER_TOKEN)
    try:
        user = await client.create_user(language_code="en")
        await client.send_text(user["id"], "to first")
        await client.send_text(user["id"], "to second", token=OTHER_TOKEN)
        u1 = (await first.get_updates(timeout=0))[-1]
        [u2] = await second.get_updates(timeout=0)
        assert (u1.message.text, u2.message.text) == ("to first", "to second")
        assert (await second.get_me()).id == 5151
        await second.send_message(user["id"], "from second")
        assert [m["text"] for m in await client.messages(user["id"], token=OTHER_TOKEN)] == ["to second",
                                                                                          "from second"]
        assert [m["text"] for m in await client.messages(user["id"])] == ["to first"]
        with pytest.raises(TimeoutError):
            await client.wait_for_bot_message(user["id"], timeout=0.2)
    finally:
        await first.session.close()
        await second.session.close()


async def test_chat_wait_by_version(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    state = await client.wait_for_change(user["id"], version=0, timeout=1)
    version = state["version"]
    waiter = asyncio.create_task(client.wait_for_change(user["id"], version=version, timeout=5))
    msg = await bot.send_message(user["id"], "first")
    changed = await asyncio.wait_for(waiter, 5)
    assert changed["version"] > version and changed["messages"][-1]["text"] == "first"
    waiter = asyncio.create_task(client.wait_for_change(user["id"], version=changed["version"], timeout=5))
    await bot.edit_message_text("edited", chat_id=user["id"], message_id=msg.message_id)
    assert (await asyncio.wait_for(waiter, 5))["messages"][-1]["text"] == "edited"
    with pytest.raises(TimeoutError):
        await client.wait_for_change(user["id"], version=10**6, timeout=0.1)


async def test_control_api_needs_this_runs_key_and_its_own_host(server: SandboxServer) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own Host header."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        api = f"{server.url}/sandbox/api/bot"
        async with http.get(api) as resp:
            assert resp.status == 401  # no key
        async with http.get(api, headers={"X-Sandbox-Key": "guessed"}) as resp:
            assert resp.status == 401
        async with http.get(api, headers={"X-Sandbox-Key": server.control_key}) as resp:
            assert resp.status == 200
        for path in ("/sandbox/api/bot", "/", f"/bot{TOKEN}/getMe"):
            async with http.get(server.url + path, headers={"Host": f"rebind.example:{server.port}",
                                                             "X-Sandbox-Key": server.control_key}) as resp:
                assert resp.status == 421, path
        async with http.get(f"http://localhost:{server.port}/") as resp:
            assert resp.status == 200  # another name of the same loopback address
        async with http.get(f"{server.url}/favicon.ico") as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert server.page_url == f"{server.url}/#key={server.control_key}"
    other = SandboxServer(host="127.0.0.1", port=0)
    assert other.control_key != server.control_key  # a new key per run


async def test_user_edits_a_message(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    sent = await client.send_text(user["id"], "the first words")
    offset = (await bot.get_updates(offset=offset, timeout=0))[-1].update_id + 1
    edited = await client.edit_text(user["id"], sent["message_id"], "the corrected words")
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.update_id for u in updates] == [edited["update_id"]]
    update = updates[0]
    assert update.message is None and update.edited_message is not None
    assert update.edited_message.message_id == sent["message_id"]
    assert update.edited_message.text == "the corrected words"
    assert update.edited_message.edit_date is not None
    view = next(m for m in await client.messages(user["id"]) if m["message_id"] == sent["message_id"])
    assert view["text"] == "the corrected words" and view["edited"] and view["edit_count"] == 1
    bot_msg = await bot.send_message(user["id"], "from the bot")
    with pytest.raises(SandboxControlError):
        await client.edit_text(user["id"], bot_msg.message_id, "not mine")
    with pytest.raises(SandboxControlError):
        await client.edit_text(user["id"], sent["message_id"], "")

# ---- what Telegram sends: edits, albums, more kinds, groups, raw updates, expired queries ----


async def test_user_edits_arrive_as_edited_message(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    sent = await client.send_text(user["id"], "The director Ahmad took 300 shekels")
    edited = await client.edit_text(user["id"], sent["message_id"], "The director took 300 shekels")
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.update_id for u in updates] == [sent["update_id"], edited["update_id"]]
    change = updates[1].edited_message
    assert change.message_id == sent["message_id"] and change.text == "The director took 300 shekels"
    assert change.edit_date is not None and updates[1].message is None
    [view] = [m for m in await client.messages(user["id"]) if m["message_id"] == sent["message_id"]]
    assert view["edited"] and view["text"] == "The director took 300 shekels"
    photo = await client.send_photo(user["id"], caption="stamp no. 4471")
    await client.edit_caption(user["id"], photo["message_id"], "stamp no. 4472")
    updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    assert updates[-1].edited_message.caption == "stamp no. 4472"
    with pytest.raises(Exception, match="400"):
        await client.edit_text(user["id"], photo["message_id"], "text on a photo")


async def test_albums_video_audio_animation_video_note_poll(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    album = await client.send_media_group(
        user["id"], [{"kind": "photo"}, {"kind": "photo"}, {"kind": "video"}], caption="signed on 3 March")
    updates = await bot.get_updates(offset=offset, timeout=0)
    messages = [u.message for u in updates]
    assert [m.message_id for m in messages] == [a["message_id"] for a in album]
    assert len({m.media_group_id for m in messages}) == 1 and messages[0].media_group_id
    assert messages[0].caption == "signed on 3 March" and messages[1].caption is None
    assert messages[0].photo and messages[2].video and messages[2].video.mime_type == "video/mp4"

    await client.send_video_note(user["id"])
    await client.send_audio(user["id"], performer="Someone", title="Meeting")
    await client.send_animation(user["id"], caption="gif")
    await client.send_poll(user["id"], "Who?", ("A", "B", "C"))
    await client.send_location(user["id"])
    await client.send_contact(user["id"], "+970599123456")
    updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    note, audio, animation, poll, location, contact = (u.message for u in updates)
    assert note.video_note.length == 240 and note.caption is None and note.content_type == "video_note"
    assert audio.audio.title == "Meeting" and audio.audio.file_name == "recording.mp3"
    assert animation.animation and animation.document and animation.caption == "gif"
    assert [o.text for o in poll.poll.options] == ["A", "B", "C"] and poll.poll.question == "Who?"
    assert location.location.latitude and contact.contact.phone_number == "+970599123456"
    # Every file can be downloaded by the bot.
    for file_id in (note.video_note.file_id, audio.audio.file_id, animation.animation.file_id,
                    messages[2].video.file_id):
        assert (await bot.get_file(file_id)).file_path


async def test_groups_channels_my_chat_member_and_leave_chat(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    group = await client.create_group("supergroup", "Ministry staff")
    assert group["id"] < 0 and group["type"] == "supergroup"
    # Not a member: nothing reaches the bot, and it cannot post there.
    assert (await client.send_group_text(group["id"], "hello", user["id"]))["update_id"] is None
    with pytest.raises(TelegramForbiddenError, match="not a member of the supergroup chat"):
        await bot.send_message(group["id"], "hi")

    added = await client.set_bot_status(group["id"], "member", user["id"])
    written = await client.send_group_text(group["id"], "/start@sandbox_4242_bot", user["id"])
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.update_id for u in updates] == [added["update_id"], written["update_id"]]
    joined = updates[0].my_chat_member
    assert joined.chat.id == group["id"] and joined.from_user.id == user["id"]
    assert (joined.old_chat_member.status, joined.new_chat_member.status) == ("left", "member")
    assert updates[1].message.chat.type == "supergroup" and updates[1].message.from_user.id == user["id"]

    await bot.send_message(group["id"], "posted")
    assert [m["text"] for m in (await client.group(group["id"]))["messages"] if m["from_bot"]] == ["posted"]
    assert await bot.leave_chat(group["id"])
    state = await client.group(group["id"])
    assert state["bot_status"] == "left"
    [left] = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    assert left.my_chat_member.new_chat_member.status == "left"
    with pytest.raises(TelegramForbiddenError):
        await bot.leave_chat(group["id"])
    with pytest.raises(TelegramBadRequest, match="private chats"):
        await bot.leave_chat(user["id"])

    channel = await client.create_group("channel", "News")
    await client.set_bot_status(channel["id"], "administrator", user["id"])
    await client.send_group_text(channel["id"], "announcement")
    promoted, post = await bot.get_updates(offset=left.update_id + 1, timeout=0)
    assert promoted.my_chat_member.new_chat_member.status == "administrator"
    assert post.channel_post.chat.type == "channel" and post.channel_post.from_user is None
    assert post.channel_post.sender_chat.id == channel["id"]


async def test_raw_updates_of_any_shape(server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    weird = {"message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                         "forward_origin": {"type": "hidden_user", "date": 1422450181}, "text": "x"},
             "something_new": {"field": [1, 2]}}
    injected = await client.inject_update(weird)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/bot{TOKEN}/getUpdates") as resp:
            body = await resp.json()
    assert body["result"] == [{"update_id": injected["update_id"], **weird}]  # verbatim
    with pytest.raises(Exception, match="400"):
        await client.inject_update({"update_id": "seven"})


async def test_callback_queries_expire_after_the_answer_window(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data="go")]])
    msg = await bot.send_message(user["id"], "?", reply_markup=keyboard)
    late = await client.press(user["id"], msg.message_id, "go")
    await client.advance_clock(16)  # Telegram's window is about 15 s
    with pytest.raises(TelegramBadRequest, match="query is too old and response timeout expired or query ID is invalid"):
        await bot.answer_callback_query(late["callback_query_id"])
    prompt = await client.press(user["id"], msg.message_id, "go")
    await client.advance_clock(10)
    assert await bot.answer_callback_query(prompt["callback_query_id"], text="ok")


async def test_video_audio_video_note_and_animation_as_telegram_sends_them(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    for kind in ("video", "video_note", "audio", "animation"):
        await client.send_message(user["id"], kind, content=kind.encode() * 10, caption="c" if kind != "video_note" else None)
    video, note, audio, animation = [u.message for u in await bot.get_updates(offset=offset, timeout=0)]
    assert video.video.mime_type == "video/mp4" and video.video.width and video.caption == "c"
    assert note.video_note.length and note.video_note.duration and note.caption is None
    assert getattr(note.video_note, "mime_type", None) is None
    assert audio.audio.mime_type == "audio/mpeg"
    # Telegram sets both fields on an animation, for older clients.
    assert animation.animation and animation.document.file_id == animation.animation.file_id
    content = await bot.download_file((await bot.get_file(note.video_note.file_id)).file_path)
    assert content.read() == b"video_note" * 10


async def test_media_group_is_one_update_per_item_with_one_group_id(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    sent = await client.send_media_group(
        user["id"],
        [{"kind": "photo"}, {"kind": "video", "content": b"v"}, {"kind": "photo"}],
        caption="three of them",
    )
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.message.message_id for u in updates] == [m["message_id"] for m in sent]
    group_id = updates[0].message.media_group_id
    assert group_id and {u.message.media_group_id for u in updates} == {group_id}
    assert [u.message.caption for u in updates] == ["three of them", None, None]
    assert updates[0].message.photo and updates[1].message.video and updates[2].message.photo
    # A second album gets a new id; Telegram's album rules are kept.
    again = await client.send_media_group(user["id"], [{"kind": "document", "content": b"a"}] * 2)
    assert again[0]["message"]["media_group_id"] != group_id
    with pytest.raises(Exception, match="album"):
        await client.send_media_group(user["id"], [{"kind": "photo"}, {"kind": "audio"}])
    with pytest.raises(Exception, match="2 to 10"):
        await client.send_media_group(user["id"], [{"kind": "photo"}])


# ---- polls and quizzes ----------------------------------------------------------------------------


async def test_polls_and_quizzes_as_telegram_sends_them(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    # A regular poll: anonymous by default, options given as strings or InputPollOption objects.
    sent = await bot.send_poll(user["id"], "Which service failed you?",
                               ["Water", InputPollOption(text="Electricity"), "Roads"], protect_content=True,
                               reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
                                   InlineKeyboardButton(text="More", callback_data="more")]]))
    poll = sent.poll
    assert sent.has_protected_content and sent.reply_markup.inline_keyboard[0][0].callback_data == "more"
    assert poll.is_anonymous and poll.type == "regular" and not poll.allows_multiple_answers
    assert poll.allows_revoting and not poll.is_closed and poll.total_voter_count == 0
    assert [(o.text, o.voter_count) for o in poll.options] == [("Water", 0), ("Electricity", 0), ("Roads", 0)]
    assert poll.correct_option_ids is None and poll.explanation is None

    # An anonymous poll: the bot learns the counts (a `poll` update), never who voted.
    voted = await client.vote_poll(user["id"], sent.message_id, [1])
    [update] = await bot.get_updates(offset=offset, timeout=0)
    assert [update.update_id] == voted["update_ids"] and update.poll_answer is None
    assert update.poll.id == poll.id and [o.voter_count for o in update.poll.options] == [0, 1, 0]
    assert update.poll.total_voter_count == 1 and voted["poll"]["chosen"] == [1]
    changed = await client.vote_poll(user["id"], sent.message_id, [2])  # regular polls allow revoting
    assert [o.voter_count for o in (await bot.get_updates(offset=update.update_id + 1, timeout=0))[0].poll.options] \
        == [0, 0, 1]
    assert (await client.vote_poll(user["id"], sent.message_id, [2]))["update_ids"] == []  # nothing changed
    with pytest.raises(SandboxControlError, match="one answer only"):
        await client.vote_poll(user["id"], sent.message_id, [0, 1])
    with pytest.raises(SandboxControlError, match="no such option"):
        await client.vote_poll(user["id"], sent.message_id, [3])
    offset = changed["update_ids"][-1] + 1

    # A quiz that is not anonymous: `poll_answer` (with the user) then `poll`; the solution
    # is visible to the bot that sent it; one answer only.
    quiz = await bot.send_poll(user["id"], "Who signs the tender?", ["The minister", "The committee"],
                               type="quiz", correct_option_id=1, is_anonymous=False,
                               explanation="Law <b>8</b> of 1998", explanation_parse_mode="HTML")
    assert quiz.poll.type == "quiz" and quiz.poll.correct_option_ids == [1] and quiz.poll.correct_option_id == 1
    assert quiz.poll.explanation == "Law 8 of 1998" and quiz.poll.explanation_entities[0].type == "bold"
    assert not quiz.poll.allows_revoting and not quiz.poll.is_anonymous
    answer = await client.vote_poll(user["id"], quiz.message_id, [0])
    answer_update, poll_update = await bot.get_updates(offset=offset, timeout=0)
    assert [answer_update.update_id, poll_update.update_id] == answer["update_ids"]
    assert answer_update.poll_answer.user.id == user["id"] and answer_update.poll_answer.option_ids == [0]
    assert answer_update.poll_answer.option_persistent_ids == ["0"]
    assert poll_update.poll.correct_option_ids == [1] and poll_update.poll.options[0].voter_count == 1
    assert answer["poll"]["correct_option_ids"] == [1] and answer["poll"]["explanation"] == "Law 8 of 1998"
    with pytest.raises(SandboxControlError, match="only once") as refused:
        await client.vote_poll(user["id"], quiz.message_id, [1])
    assert refused.value.status == 409
    with pytest.raises(SandboxControlError, match="retract"):
        await client.vote_poll(user["id"], quiz.message_id, [])

    # A quiz may have several correct options (Bot API 9.6) and the legacy parameter still works.
    several = await bot.send_poll(user["id"], "Which are public funds?", ["Taxes", "Gifts", "Fees"], type="quiz",
                                  correct_option_ids=[0, 2], allows_multiple_answers=True)
    assert several.poll.correct_option_ids == [0, 2] and several.poll.correct_option_id is None
    await client.vote_poll(user["id"], several.message_id, [0, 2])

    stopped = await bot.stop_poll(user["id"], quiz.message_id)
    assert stopped.is_closed and stopped.options[0].voter_count == 1
    with pytest.raises(TelegramBadRequest, match="poll has already been closed"):
        await bot.stop_poll(user["id"], quiz.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not a poll"):
        await bot.stop_poll(user["id"], 1)  # the user's /start
    with pytest.raises(TelegramBadRequest, match="message with poll to stop not found"):
        await bot.stop_poll(user["id"], 999)
    with pytest.raises(SandboxControlError, match="closed") as closed:
        await client.vote_poll(user["id"], quiz.message_id, [1])
    assert closed.value.status == 409
    updates = await bot.get_updates(offset=poll_update.update_id + 1, timeout=0)
    assert updates[-1].poll.id == quiz.poll.id and updates[-1].poll.is_closed  # the stop is an update too

    view = {m["message_id"]: m for m in await client.messages(user["id"])}
    assert view[quiz.message_id]["kind"] == "poll" and view[quiz.message_id]["poll"]["is_closed"]
    assert view[sent.message_id]["poll"]["options"][2]["voter_count"] == 1


async def test_send_poll_refuses_what_telegram_refuses(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    refusals = [
        (dict(question="?" * 301, options=["a", "b"]), "poll question length must not exceed 300"),
        (dict(question="   ", options=["a", "b"]), "text must be non-empty"),
        (dict(question="Q", options=[]), "poll must have at least one answer option"),
        (dict(question="Q", options=[str(i) for i in range(13)]), "poll can't have more than 12 options"),
        (dict(question="Q", options=["a", "x" * 101]), "poll options length must not exceed 100"),
        (dict(question="Q", options=["a", " "]), "text must be non-empty"),
        (dict(question="Q", options=["a", "b"], type="quiz"), "correct quiz option list must be non-empty"),
        (dict(question="Q", options=["a", "b"], type="quiz", correct_option_id=2), "wrong quiz correct_option_id"),
        (dict(question="Q", options=["a", "b"], type="quiz", correct_option_ids=[1, 0]),
         "correct quiz option list must be increasing"),
        (dict(question="Q", options=["a", "b"], type="quiz", correct_option_id=0, explanation="e" * 201),
         "quiz explanation must have at most 200 characters"),
        (dict(question="Q", options=["a", "b"], type="quiz", correct_option_id=0, explanation="1\n2\n3\n4"),
         "at most 2 line feeds"),
        (dict(question="Q", options=["a", "b"], type="vote"), "unsupported poll type specified"),
        (dict(question="Q", options=["a", "b"], open_period=3), "open_period must be from 5"),
        (dict(question="Q", options=["a", "b"], open_period=60, close_date=int(time.time()) + 60),
         "can't be used together"),
    ]
    for kwargs, description in refusals:
        with pytest.raises(TelegramBadRequest, match=description):
            await bot.send_poll(user["id"], **kwargs)
    assert await client.calls("sendPoll") and all(not c["ok"] for c in await client.calls("sendPoll"))
    # Limits are counted as Telegram counts them: 300 and 100 characters exactly are fine,
    # and a quiz's explanation at exactly 200 characters too.
    ok = await bot.send_poll(user["id"], "ق" * 300, ["ب" * 100, "b"], type="quiz", correct_option_id=0,
                             explanation="e" * 200)
    assert len(ok.poll.question) == 300 and ok.poll.explanation == "e" * 200
    await client.set_blocked(user["id"], True)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_poll(user["id"], "Q", ["a", "b"])


async def test_poll_form_encoded_and_timed_polls_close_on_the_emulator_clock(
        server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    async with aiohttp.ClientSession() as http:  # form-encoded, as some clients send it
        async with http.post(f"{server.url}/bot{TOKEN}/sendPoll", data={
                "chat_id": str(user["id"]), "question": "Open for a minute", "options": '["a", {"text": "b"}]',
                "is_anonymous": "false", "open_period": "60"}) as resp:
            body = await resp.json()
    assert resp.status == 200, body
    poll = body["result"]["poll"]
    assert not poll["is_anonymous"] and poll["open_period"] == 60 and poll["close_date"] == body["result"]["date"] + 60
    await client.advance_clock(61)
    view = next(m for m in await client.messages(user["id"]) if m["message_id"] == body["result"]["message_id"])
    assert view["poll"]["is_closed"]
    [closed] = await bot.get_updates(offset=offset, timeout=0)
    assert closed.poll.id == poll["id"] and closed.poll.is_closed and closed.poll.close_date is None
    with pytest.raises(SandboxControlError, match="closed"):
        await client.vote_poll(user["id"], body["result"]["message_id"], [0])


async def test_allowed_updates_filter_poll_updates_and_default_excludes_reactions(
        client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    sent = await bot.send_poll(user["id"], "Q", ["a", "b"], is_anonymous=False)
    # The bot asks for messages only: votes create no updates for it.
    assert await bot.get_updates(offset=offset, timeout=0, allowed_updates=["message"]) == []
    assert (await client.vote_poll(user["id"], sent.message_id, [0]))["update_ids"]
    assert await bot.get_updates(offset=offset, timeout=0) == []  # allowed_updates persists
    # An empty list means Telegram's default: everything but chat_member and reactions.
    await bot.get_updates(offset=offset, timeout=0, allowed_updates=[])
    await client.vote_poll(user["id"], sent.message_id, [1])
    reaction = {"message_reaction": {"chat": {"id": user["id"], "type": "private"}, "message_id": 1,
                                     "date": 0, "old_reaction": [], "new_reaction": []}}
    await client.inject_update(reaction)
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.event_type for u in updates] == ["poll_answer", "poll"]
    await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0,
                          allowed_updates=["message_reaction", "poll_answer"])
    await client.inject_update(reaction)
    await client.vote_poll(user["id"], sent.message_id, [0])
    assert [u.event_type for u in await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)] == [
        "message_reaction", "poll_answer"]


# ---- photos with captions -------------------------------------------------------------------------


async def test_send_photo_caption_and_file_id_reuse(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    raw = '<b>تنبيه</b> 😀 <a href="https://example.org/x">المصدر</a>'
    sent = await bot.send_photo(user["id"], BufferedInputFile(b"\xff\xd8 jpeg", filename="p.jpg"), caption=raw,
                                parse_mode="HTML", protect_content=True)
    assert sent.caption == "تنبيه 😀 المصدر" and sent.has_protected_content
    assert [(e.type, e.offset, e.length) for e in sent.caption_entities] == [("bold", 0, 5), ("text_link", 9, 6)]
    assert sent.caption_entities[1].url == "https://example.org/x"  # offsets in UTF-16: the emoji counts 2
    sizes = [(p.file_id, p.width) for p in sent.photo]
    assert len(sizes) == 2 and sizes[0][1] < sizes[1][1]

    # Sending it again by file_id gives the same photo (same file_ids), with another caption.
    again = await bot.send_photo(user["id"], sent.photo[-1].file_id, caption="plain",
                                 caption_entities=[MessageEntity(type="italic", offset=0, length=5)])
    assert [(p.file_id, p.width) for p in again.photo] == sizes
    assert again.caption == "plain" and again.caption_entities[0].type == "italic"
    assert (await bot.download_file((await bot.get_file(again.photo[-1].file_id)).file_path)).read() == b"\xff\xd8 jpeg"
    # A user's photo can be sent on by its file_id too; a document's cannot be sent as a photo.
    await client.send_photo(user["id"], caption="from the user")
    [update] = await bot.get_updates(offset=offset, timeout=0)
    forwarded = await bot.send_photo(user["id"], update.message.photo[-1].file_id)
    assert [p.file_id for p in forwarded.photo] == [p.file_id for p in update.message.photo]
    assert forwarded.caption is None
    doc = await bot.send_document(user["id"], BufferedInputFile(b"%PDF", filename="a.pdf"))
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_photo(user["id"], doc.document.file_id)
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(user["id"], "no-such-file-id")

    # The limit is 1024 UTF-16 code units of the caption after entity parsing.
    assert len((await bot.send_photo(user["id"], sent.photo[-1].file_id,
                                     caption="<b>" + "a" * 1024 + "</b>", parse_mode="HTML")).caption) == 1024
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(user["id"], sent.photo[-1].file_id, caption="a" * 1023 + "😀")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_photo(user["id"], sent.photo[-1].file_id, caption="<b>open", parse_mode="HTML")
    blank = await bot.send_photo(user["id"], sent.photo[-1].file_id, caption="  ")
    assert blank.caption is None
    spoiler = await bot.send_photo(user["id"], sent.photo[-1].file_id, caption="c", has_spoiler=True,
                                   show_caption_above_media=True)
    assert spoiler.has_media_spoiler and spoiler.show_caption_above_media

    view = {m["message_id"]: m for m in await client.messages(user["id"])}
    assert view[sent.message_id]["caption_html"] == raw and view[sent.message_id]["caption"] == sent.caption
    assert view[sent.message_id]["caption_entities"][1]["url"] == "https://example.org/x"


# ---- copies -----------------------------------------------------------------------------------------


async def test_copy_message_returns_a_message_id_and_copies_content(client: SandboxClient, bot: Bot) -> None:
    author, _ = await started_user(client, bot)
    reader, _ = await started_user(client, bot, language_code="en")
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Stop", callback_data="stop")]])
    original = await bot.send_message(author["id"], "<b>Weekly</b> tip", parse_mode="HTML", reply_markup=keyboard)
    copied = await bot.copy_message(reader["id"], author["id"], original.message_id)
    assert isinstance(copied, MessageId) and copied.message_id >= 1
    [view] = [m for m in await client.messages(reader["id"]) if m["message_id"] == copied.message_id]
    assert view["text"] == "Weekly tip" and view["entities"][0]["type"] == "bold"
    assert view["reply_markup"] is None and not view["forwarded"] and view["from_bot"]  # no keyboard, no origin
    with_keyboard = await bot.copy_message(reader["id"], author["id"], original.message_id, reply_markup=keyboard,
                                           protect_content=True)
    [view] = [m for m in await client.messages(reader["id"]) if m["message_id"] == with_keyboard.message_id]
    assert view["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "stop" and view["protect_content"]

    # A photo keeps its file_ids; its caption is kept, replaced (with entities) or removed.
    photo = await bot.send_photo(author["id"], BufferedInputFile(b"\xff\xd8", filename="p.jpg"), caption="old")
    same = await bot.copy_message(reader["id"], author["id"], photo.message_id)
    new = await bot.copy_message(reader["id"], author["id"], photo.message_id, caption="<i>new</i>",
                                 parse_mode="HTML")
    [bare] = await bot.copy_messages(reader["id"], author["id"], [photo.message_id], remove_caption=True)
    views = {m["message_id"]: m for m in await client.messages(reader["id"])}
    assert views[same.message_id]["caption"] == "old"
    assert views[new.message_id]["caption"] == "new"
    assert views[new.message_id]["caption_entities"][0]["type"] == "italic"
    assert views[bare.message_id]["caption"] is None
    assert views[same.message_id]["media"]["photo"] == [p.model_dump(exclude_none=True) for p in photo.photo]

    # A quiz copied keeps its question, options and solution, as a new poll without votes.
    quiz = await bot.send_poll(author["id"], "Q", ["a", "b", "c"], type="quiz", correct_option_id=2,
                               explanation="because")
    await client.vote_poll(author["id"], quiz.message_id, [2])
    quiz_copy = await bot.copy_message(reader["id"], author["id"], quiz.message_id)
    copy_view = next(m for m in await client.messages(reader["id"]) if m["message_id"] == quiz_copy.message_id)
    assert [o["text"] for o in copy_view["poll"]["options"]] == ["a", "b", "c"]
    assert copy_view["poll"]["total_voter_count"] == 0 and copy_view["poll"]["id"] != quiz.poll.id
    answered = await client.vote_poll(reader["id"], quiz_copy.message_id, [2])
    assert answered["poll"]["correct_option_ids"] == [2] and answered["poll"]["explanation"] == "because"

    # Messages from a group the bot is in can be copied to users (a broadcast from a staff chat).
    group = await client.create_group("supergroup", "Staff")
    await client.set_bot_status(group["id"], "member", author["id"])
    posted = await client.send_group_text(group["id"], "Announcement #1", author["id"])
    from_group = await bot.copy_message(reader["id"], group["id"], posted["message_id"])
    assert next(m for m in await client.messages(reader["id"])
                if m["message_id"] == from_group.message_id)["text"] == "Announcement #1"

    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(reader["id"], author["id"], 999)
    await bot.delete_message(author["id"], original.message_id)
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(reader["id"], author["id"], original.message_id)
    # copyMessages skips what it cannot copy.
    copies = await bot.copy_messages(reader["id"], author["id"], [original.message_id, photo.message_id, 999])
    assert len(copies) == 1
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_messages(reader["id"], author["id"], [original.message_id])
    await client.set_blocked(reader["id"], True)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.copy_message(reader["id"], author["id"], photo.message_id)
    stranger = await client.create_user()
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.copy_message(stranger["id"], author["id"], photo.message_id)


async def test_forwards_refuse_protected_content_copies_do_not_and_deleted_messages_are_gone(
        server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    """What a bot token can read of a private chat: forwards of ``protect_content`` messages
    fail with Telegram's description; a bot's copies of them succeed (TDLib exempts bots);
    deleted messages (the user's too, within 48 hours) can be neither copied nor forwarded."""
    reporter, _ = await started_user(client, bot)
    attacker, _ = await started_user(client, bot, language_code="en")
    typed = await client.send_text(reporter["id"], "my secret words")
    plain = await bot.send_message(reporter["id"], "a question")
    guarded = await bot.send_message(reporter["id"], "the receipt 1234", protect_content=True)

    forwarded = await bot.forward_message(attacker["id"], reporter["id"], typed["message_id"])
    assert forwarded.text == "my secret words" and forwarded.forward_origin.type == "user"
    assert forwarded.forward_origin.sender_user.id == reporter["id"]
    from_bot = await bot.forward_message(attacker["id"], reporter["id"], plain.message_id)
    assert from_bot.forward_origin.sender_user.is_bot and from_bot.text == "a question"
    with pytest.raises(TelegramBadRequest, match="message has protected content and can't be forwarded"):
        await bot.forward_message(attacker["id"], reporter["id"], guarded.message_id)
    # forwardMessages skips it, and fails with that reason when nothing else is left.
    ids = await bot.forward_messages(attacker["id"], reporter["id"], [plain.message_id, guarded.message_id])
    assert len(ids) == 1
    with pytest.raises(TelegramBadRequest, match="protected content"):
        await bot.forward_messages(attacker["id"], reporter["id"], [guarded.message_id])
    # A bot may copy protected content (it is the sender's own text; TDLib lets bots copy it).
    copied = await bot.copy_message(attacker["id"], reporter["id"], guarded.message_id)
    view = {m["message_id"]: m for m in await client.messages(attacker["id"])}
    assert view[copied.message_id]["text"] == "the receipt 1234"

    # Deleting: the user's own message and the bot's, in a private chat, within 48 hours.
    assert await bot.delete_messages(reporter["id"], [typed["message_id"], guarded.message_id])
    for message_id in (typed["message_id"], guarded.message_id):
        with pytest.raises(TelegramBadRequest, match="message to copy not found"):
            await bot.copy_message(attacker["id"], reporter["id"], message_id)
        with pytest.raises(TelegramBadRequest, match="message to forward not found"):
            await bot.forward_message(attacker["id"], reporter["id"], message_id)
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_reply_markup(chat_id=reporter["id"], message_id=message_id)
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_messages(attacker["id"], reporter["id"], [typed["message_id"], guarded.message_id])
    with pytest.raises(TelegramBadRequest, match="message to forward not found"):
        await bot.forward_messages(attacker["id"], reporter["id"], [typed["message_id"]])
    left = [m for m in await client.messages(reporter["id"]) if not m["deleted"]]
    assert [m["text"] for m in left] == ["/start", "a question"]

    # The call log shows each attempt, with Telegram's exact description.
    refused = [c for c in await client.calls("forwardMessage") if not c["ok"]]
    assert refused[0]["error_code"] == 400
    assert refused[0]["description"] == "Bad Request: message has protected content and can't be forwarded"
    assert [c["ok"] for c in await client.calls("deleteMessages")] == [True]


# ---- entities Telegram finds by itself ---------------------------------------------------------------


def _covered(text: str, entity: Any) -> str:
    data = text.encode("utf-16-le")
    return data[2 * entity.offset:2 * (entity.offset + entity.length)].decode("utf-16-le")


async def test_telegram_finds_links_mentions_hashtags_and_commands(client: SandboxClient, bot: Bot) -> None:
    user, offset = await started_user(client, bot)
    text = ("😀 Visit nazaha.ps or https://nazaha.ps/report?lang=ar. Write to tips@nazaha.ps, "
            "follow @nazaha_news, #شفافية $USD, send /report or /help@sandbox_4242_bot; not file.pdf, e.g. a@b")
    msg = await bot.send_message(user["id"], text)
    found = [(e.type, _covered(text, e)) for e in msg.entities]
    assert found == [("url", "nazaha.ps"), ("url", "https://nazaha.ps/report?lang=ar"), ("email", "tips@nazaha.ps"),
                     ("mention", "@nazaha_news"), ("hashtag", "#شفافية"), ("cashtag", "$USD"),
                     ("bot_command", "/report"), ("bot_command", "/help@sandbox_4242_bot")]
    assert msg.entities[0].offset == 9  # UTF-16: the emoji counts 2

    # The bot's own entities are kept; found ones are added where they cross none but formatting.
    html = ('<a href="https://other.org">https://shown.org</a> <b>see https://in-bold.org</b> '
            '<code>@not_a_mention</code> @mention_me')
    msg = await bot.send_message(user["id"], html, parse_mode="HTML")
    assert [(e.type, _covered(msg.text, e)) for e in msg.entities] == [
        ("text_link", "https://shown.org"), ("bold", "see https://in-bold.org"), ("url", "https://in-bold.org"),
        ("code", "@not_a_mention"), ("mention", "@mention_me")]
    plain = await bot.send_message(user["id"], "no links here, 500 dinars.")
    assert plain.entities is None
    # Captions too.
    photo = await bot.send_photo(user["id"], BufferedInputFile(b"\xff\xd8", filename="p.jpg"),
                                 caption="Details: https://nazaha.ps/x")
    assert [(e.type, _covered(photo.caption, e)) for e in photo.caption_entities] == [("url", "https://nazaha.ps/x")]

    # What users type gets the entities their Telegram app finds: a command anywhere.
    await client.send_text(user["id"], "/start ref_42")
    await client.send_text(user["id"], "please /cancel this, see https://example.org")
    first, second = (u.message for u in await bot.get_updates(offset=offset, timeout=0))
    assert [(e.type, e.offset, e.length) for e in first.entities] == [("bot_command", 0, 6)]
    assert [(e.type, _covered(second.text, e)) for e in second.entities] == [
        ("bot_command", "/cancel"), ("url", "https://example.org")]


# ---- what the emulator returns, read by both Python libraries ----------------------------------------


async def test_results_parse_in_aiogram_and_python_telegram_bot(server: SandboxServer, client: SandboxClient,
                                                               bot: Bot) -> None:
    import warnings

    import aiogram.types as ag
    import telegram

    user, offset = await started_user(client, bot)
    group = await client.create_group("supergroup", "Staff")
    channel = await client.create_group("channel", "News")
    for chat in (group, channel):
        await client.set_bot_status(chat["id"], "administrator", user["id"])

    async def call(method: str, **params: Any) -> Any:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/bot{TOKEN}/{method}", json=params) as resp:
                body = await resp.json()
        assert body["ok"], body
        return body["result"]

    ptb = telegram.Bot(TOKEN)
    raw: list[tuple[str, Any, Any, Any]] = []  # (what, data, aiogram type, ptb type)
    for chat_id in (user["id"], group["id"], channel["id"]):
        raw.append(("getChat", await call("getChat", chat_id=chat_id), ag.ChatFullInfo, telegram.ChatFullInfo))
    raw.append(("getMe", await call("getMe"), ag.User, telegram.User))
    raw.append(("sendMessage", await call("sendMessage", chat_id=user["id"], text="see https://nazaha.ps"),
                ag.Message, telegram.Message))
    photo = await bot.send_photo(user["id"], BufferedInputFile(b"\xff\xd8", filename="p.jpg"), caption="c")
    raw.append(("sendPhoto", await call("sendPhoto", chat_id=user["id"], photo=photo.photo[-1].file_id,
                                        caption="<b>x</b>", parse_mode="HTML"), ag.Message, telegram.Message))
    quiz = await call("sendPoll", chat_id=user["id"], question="Q", options=["a", {"text": "b"}], type="quiz",
                      correct_option_ids=[1], is_anonymous=False, explanation="why")
    raw.append(("sendPoll", quiz, ag.Message, telegram.Message))
    raw.append(("sendPoll regular", await call("sendPoll", chat_id=user["id"], question="Q", options=["a", "b"]),
                ag.Message, telegram.Message))
    raw.append(("copyMessage", await call("copyMessage", chat_id=user["id"], from_chat_id=user["id"],
                                          message_id=quiz["message_id"]), ag.MessageId, telegram.MessageId))
    await client.vote_poll(user["id"], quiz["message_id"], [0])
    for update in await call("getUpdates", offset=offset):
        raw.append((f"update {next(k for k in update if k != 'update_id')}", update, ag.Update, telegram.Update))
    assert {what for what, *_ in raw} >= {"update poll", "update poll_answer"}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # python-telegram-bot warns about the legacy correct_option_id
        for what, data, aiogram_type, ptb_type in raw:
            parsed = aiogram_type.model_validate(data)
            assert parsed is not None, what
            via_ptb = ptb_type.de_json(data, ptb)
            assert via_ptb is not None, what
            assert not set(via_ptb.api_kwargs) - {"correct_option_id"}, (what, via_ptb.api_kwargs)
        poll_update = telegram.Update.de_json(next(d for w, d, *_ in raw if w == "update poll"), ptb)
    assert poll_update.poll.correct_option_ids == (1,) and poll_update.poll.options[0].voter_count == 1
    chat_info = ag.ChatFullInfo.model_validate(raw[0][1])
    assert chat_info.accepted_gift_types.gifts_from_channels is False and chat_info.type == "private"
    assert telegram.ChatFullInfo.de_json(raw[1][1], ptb).permissions.can_send_polls


# ---- the call log ------------------------------------------------------------------------------------


async def test_unknown_methods_are_404_and_logged(server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
    from tests.e2e_support import assert_no_unknown_calls

    user, _ = await started_user(client, bot)
    await assert_no_unknown_calls(client)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/bot{TOKEN}/sendDice", json={"chat_id": user["id"]}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    [call] = [c for c in await client.calls() if c["unknown"]]
    assert call["method"] == "sendDice" and call["error_code"] == 404 and call["chat_id"] == user["id"]
    assert all(not c["unknown"] for c in await client.calls("getUpdates"))
    assert (await client.bot_info())["unknown_methods"] == {"sendDice": 1}
    with pytest.raises(AssertionError, match="sendDice"):
        await assert_no_unknown_calls(client)
    await client.clear_calls()
    with pytest.raises(AssertionError, match="sendDice"):  # still noticed after the log is cleared
        await assert_no_unknown_calls(client)


async def test_call_log_cap_is_visible() -> None:
    from nazaha.sandbox.client import CallLogTruncated
    from nazaha.sandbox.emulator import BotApiEmulator

    async with SandboxServer(default_token=TOKEN, emulator=BotApiEmulator(max_calls=3)) as capped, \
            SandboxClient(capped.url) as control:
        b = make_bot(capped)
        try:
            for _ in range(5):
                await b.get_me()
        finally:
            await b.session.close()
        with pytest.raises(CallLogTruncated) as truncated:
            await control.calls()
        assert truncated.value.dropped == 2
        assert len(await control.calls(allow_truncated=True)) == 3
        assert (await control.bot_info())["calls_dropped"] == 2
        await control.clear_calls()
        assert await control.calls() == []


async def test_sends_are_logged_per_chat_with_a_monotonic_time(client: SandboxClient, bot: Bot) -> None:
    first, _ = await started_user(client, bot)
    second, _ = await started_user(client, bot)
    await client.clear_calls()
    before = time.monotonic()
    await bot.send_message(first["id"], "a")
    await bot.send_message(second["id"], "b")
    await client.set_blocked(second["id"], True)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(second["id"], "c")
    calls = await client.calls("sendMessage")
    assert [c["chat_id"] for c in calls] == [first["id"], second["id"], second["id"]]
    assert [c["ok"] for c in calls] == [True, True, False] and calls[2]["error_code"] == 403
    stamps = [c["mono"] for c in calls]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= time.monotonic()
    assert len(await client.calls("sendMessage", chat_id=second["id"])) == 2


# ---- what broadcast tests need ------------------------------------------------------------------------


async def test_many_started_users_without_updates(client: SandboxClient, bot: Bot) -> None:
    ids = await client.create_users(300, language_code="en")
    assert len(set(ids)) == 300
    assert await bot.get_updates(timeout=0) == []  # as if they had pressed /start long ago
    for user_id in (ids[0], ids[-1]):
        assert (await bot.send_message(user_id, "Weekly tip")).chat.id == user_id
    assert (await bot.get_chat(ids[0])).type == "private"
    with pytest.raises(SandboxControlError, match="count"):
        await client.create_users(0)


async def test_blocked_users_refuse_every_kind_of_send(client: SandboxClient, bot: Bot) -> None:
    author, _ = await started_user(client, bot)
    [blocked] = await client.create_users(1)
    source = await bot.send_message(author["id"], "to copy")
    photo = await bot.send_photo(author["id"], BufferedInputFile(b"\xff\xd8", filename="p.jpg"))
    await client.set_blocked(blocked, True)
    sends = {
        "sendMessage": lambda: bot.send_message(blocked, "hi"),
        "sendPhoto": lambda: bot.send_photo(blocked, photo.photo[-1].file_id, caption="c"),
        "sendDocument": lambda: bot.send_document(blocked, BufferedInputFile(b"x", filename="x.txt")),
        "sendPoll": lambda: bot.send_poll(blocked, "Q", ["a", "b"]),
        "copyMessage": lambda: bot.copy_message(blocked, author["id"], source.message_id),
        "copyMessages": lambda: bot.copy_messages(blocked, author["id"], [source.message_id]),
        "sendChatAction": lambda: bot.send_chat_action(blocked, "typing"),
    }
    for name, send in sends.items():
        with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
            await send()
        [call] = await client.calls(name, chat_id=blocked)
        assert call["error_code"] == 403 and not call["ok"], name
    await client.set_blocked(blocked, False)
    await bot.copy_message(blocked, author["id"], source.message_id)


async def test_injected_rate_limits_and_server_errors_per_method(client: SandboxClient, bot: Bot) -> None:
    user, _ = await started_user(client, bot)
    source = await bot.send_message(user["id"], "to copy")
    photo = await bot.send_photo(user["id"], BufferedInputFile(b"\xff\xd8", filename="p.jpg"))
    sends = {
        "sendMessage": lambda: bot.send_message(user["id"], "hi"),
        "sendPhoto": lambda: bot.send_photo(user["id"], photo.photo[-1].file_id),
        "copyMessage": lambda: bot.copy_message(user["id"], user["id"], source.message_id),
    }
    for name, send in sends.items():
        await client.add_fault(name, 429, count=2, retry_after=7)
        for _ in range(2):
            with pytest.raises(TelegramRetryAfter) as limited:
                await send()
            assert limited.value.retry_after == 7
        for code in (500, 502):
            await client.add_fault(name, code)
            with pytest.raises(TelegramServerError):
                await send()
        await send()  # the faults are used up
        codes = [c["error_code"] for c in await client.calls(name)][-5:]
        assert codes == [429, 429, 500, 502, None], name
    async with aiohttp.ClientSession() as http:  # the raw body Telegram sends with a 429
        await client.add_fault("sendMessage", 429, retry_after=3)
        async with http.post(f"{client.base_url}/bot{TOKEN}/sendMessage",
                             json={"chat_id": user["id"], "text": "x"}) as resp:
            assert resp.status == 429 and await resp.json() == {
                "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3}}
