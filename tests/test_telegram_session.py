"""BotApiSession: orjson, Response[T] classes built once, unread results not parsed."""

from __future__ import annotations

import json

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import Message

from nazaha.bot.telegram_session import BotApiSession, results_unused

TOKEN = "123456:TEST-session-token-000000000000000"
MESSAGE = {
    "message_id": 5,
    "date": 1_700_000_000,
    "chat": {"id": 42, "type": "private"},
    "text": "مرحبا",
}


@pytest.fixture
async def bot():
    session = BotApiSession()
    yield Bot(TOKEN, session=session)
    await session.close()


def check(bot: Bot, status: int, payload: dict) -> object:
    method = SendMessage(chat_id=42, text="x")
    return bot.session.check_response(bot, method, status, json.dumps(payload))


def test_results_are_parsed_by_default(bot):
    response = check(bot, 200, {"ok": True, "result": MESSAGE})
    assert isinstance(response.result, Message) and response.result.text == "مرحبا"


def test_response_class_is_built_once(bot):
    check(bot, 200, {"ok": True, "result": MESSAGE})
    first = bot.session._response_types[Message]
    check(bot, 200, {"ok": True, "result": MESSAGE})
    assert bot.session._response_types[Message] is first
    from aiogram.methods.base import Response

    assert Response[Message] is first  # pydantic's cache now hits


def test_unused_results_are_not_parsed(bot):
    with results_unused():
        response = check(bot, 200, {"ok": True, "result": MESSAGE})
    assert response.result is None
    # Outside the block parsing is back.
    assert isinstance(check(bot, 200, {"ok": True, "result": MESSAGE}).result, Message)


@pytest.mark.parametrize(
    "status, payload, error",
    [
        (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
               "parameters": {"retry_after": 3}}, TelegramRetryAfter),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
         TelegramBadRequest),
        (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
         TelegramForbiddenError),
        (200, {"ok": False, "error_code": 400, "description": "Bad Request: odd"}, TelegramAPIError),
    ],
)
def test_errors_still_raise_when_results_are_unused(bot, status, payload, error):
    with results_unused(), pytest.raises(error) as raised:
        check(bot, status, payload)
    if error is TelegramRetryAfter:
        assert raised.value.retry_after == 3


KEYBOARD = {"inline_keyboard": [[{"text": "Jenin", "callback_data": "r:gov:jenin"}]]}
PRESS = {
    "update_id": 9,
    "callback_query": {
        "id": "77",
        "from": {"id": 42, "is_bot": False, "first_name": "A"},
        "chat_instance": "c",
        "data": "r:gov:jenin",
        "message": {**MESSAGE, "reply_markup": KEYBOARD},
    },
}


def test_updates_lose_the_pressed_message_keyboard_and_nothing_else():
    from aiogram.types import Update

    from nazaha.bot.telegram_session import loads_lean_updates

    typed = {"update_id": 10, "message": {**MESSAGE, "reply_markup": KEYBOARD}}
    answer = loads_lean_updates(json.dumps({"ok": True, "result": [PRESS, typed]}))
    press, message = answer["result"]
    assert "reply_markup" not in press["callback_query"]["message"]
    assert press["callback_query"]["data"] == "r:gov:jenin"
    assert press["callback_query"]["message"]["text"] == "مرحبا"
    assert message == typed  # only button presses are trimmed
    # A webhook body is a single update.
    single = loads_lean_updates(json.dumps(PRESS).encode())
    assert "reply_markup" not in single["callback_query"]["message"]
    assert Update.model_validate(single).callback_query.message.message_id == 5
    # Other answers pass through untouched.
    other = {"ok": True, "result": {**MESSAGE, "reply_markup": KEYBOARD}}
    assert loads_lean_updates(json.dumps(other)) == other


async def test_get_updates_answers_parse_without_keyboards(bot):
    from aiogram.methods import GetUpdates

    response = bot.session.check_response(
        bot, GetUpdates(), 200, json.dumps({"ok": True, "result": [PRESS]})
    )
    (update,) = response.result
    assert update.callback_query.data == "r:gov:jenin"
    assert update.callback_query.message.reply_markup is None


def test_requests_without_files_are_json_bodies(bot):
    from aiogram.methods import SendDocument
    from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="جنين", callback_data="r:gov:jenin")]]
    )
    method = SendMessage(chat_id=42, text="\u200fنص", reply_markup=keyboard, protect_content=True, parse_mode=None)
    body = json.loads(bot.session.json_body(bot, method))
    assert body == {
        "chat_id": 42,
        "text": "\u200fنص",
        "protect_content": True,
        "reply_markup": {"inline_keyboard": [[{"text": "جنين", "callback_data": "r:gov:jenin"}]]},
    }
    upload = SendDocument(chat_id=42, document=BufferedInputFile(b"%PDF", filename="a.pdf"))
    assert bot.session.json_body(bot, upload) is None  # files keep aiogram's multipart path


# ---- undecodable updates are skipped, never fatal ----------------------------------------

POISON = {
    "update_id": 11,
    "message": {
        "message_id": 9,
        "date": 1_700_000_000,
        "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "A", "language_code": "en"},
        "forward_origin": {"type": "hidden_user", "date": 1422450181},
        "text": "forwarded",
    },
}


def plain_update(update_id: int, chat_id: int) -> dict:
    return {
        "update_id": update_id,
        "message": {**MESSAGE, "chat": {"id": chat_id, "type": "private"}},
    }


def test_an_undecodable_update_is_skipped_and_the_rest_of_the_batch_kept(bot):
    from aiogram.methods import GetUpdates

    seen = []
    bot.session.on_undecodable = seen.append
    method = GetUpdates(offset=10)
    content = json.dumps({"ok": True, "result": [plain_update(10, 7), POISON, plain_update(12, 8)]})
    response = bot.session.check_response(bot, method, 200, content)
    assert [u.update_id for u in response.result] == [10, 12]
    assert seen == [POISON]
    assert bot.session._skip_through == 11


async def test_the_next_get_updates_confirms_a_skipped_update(bot):
    from aiogram.methods import GetUpdates

    bot.session.on_undecodable = lambda raw: None
    method = GetUpdates(offset=10)
    # The poison update is the last of its batch: aiogram would set the offset to 11 only.
    content = json.dumps({"ok": True, "result": [plain_update(10, 7), POISON]})
    bot.session.check_response(bot, method, 200, content)
    method.offset = 11
    sent = []

    def capture(bot_, method_):
        sent.append(method_.offset)
        raise RuntimeError("stop before the network")

    bot.session.json_body = capture
    with pytest.raises(RuntimeError):
        await bot.session.make_request(bot, method)
    assert sent == [12]


def test_other_decode_failures_still_raise(bot):
    from aiogram.exceptions import ClientDecodeError
    from aiogram.methods import GetUpdates

    with pytest.raises(ClientDecodeError):
        bot.session.check_response(bot, GetUpdates(), 200, json.dumps({"ok": True, "result": 5}))
    with pytest.raises(ClientDecodeError):
        check(bot, 200, {"ok": True, "result": {"message_id": "x"}})


def test_private_sender_of_raw_updates():
    from nazaha.bot.undecodable import private_sender

    assert private_sender(POISON) == (42, "en")
    callback = {
        "update_id": 3,
        "callback_query": {"id": "q", "from": {"id": 5}, "message": {"chat": {"id": 5, "type": "private"}}},
    }
    assert private_sender(callback) == (5, None)
    group = {"update_id": 4, "message": {"chat": {"id": -100, "type": "supergroup"}}}
    assert private_sender(group) is None
    assert private_sender({"update_id": 5}) is None and private_sender([1]) is None
    assert private_sender({"update_id": 6, "message": {"chat": {"id": "42", "type": "private"}}}) is None
    # Never a group, a channel, another kind of update, or a "private" chat that is not the sender's.
    for kind, chat_type in (("message", "group"), ("edited_message", "supergroup"), ("channel_post", "channel")):
        raw = {"update_id": 7, kind: {"chat": {"id": -5, "type": chat_type}, "from": {"id": 5}}}
        assert private_sender(raw) is None
    assert private_sender({"update_id": 8, "business_message": {"chat": {"id": 5, "type": "private"}, "from": {"id": 5}}}) is None
    assert private_sender({"update_id": 9, "message": {"chat": {"id": 5, "type": "private"}, "from": {"id": 6}}}) is None
    assert private_sender({"update_id": 10, "edited_message": {"chat": {"id": 5, "type": "private"}, "from": {"id": 5}}}) == (5, None)


async def test_webhook_answers_200_to_an_undecodable_update(bot):
    """The webhook server (nazaha/bot/webhook.py) skips an update aiogram cannot decode,
    answering 200 (Telegram must not resend it), and serves the next one."""
    from aiogram import Dispatcher
    from aiohttp.test_utils import TestClient, TestServer

    from nazaha.bot.confirm import UpdateRunner
    from nazaha.bot.webhook import WebhookServer

    seen, handled = [], []
    dp = Dispatcher()
    dp.message.register(lambda message: handled.append(message.message_id))
    server = WebhookServer(UpdateRunner(dp, bot), "s3cret", undecodable=seen.append)
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    async with TestClient(TestServer(server.app)) as client:
        for update in (POISON, plain_update(12, 8)):
            response = await client.post("/webhook", json=update, headers=headers)
            assert response.status == 200
    # The second answer came once its update was handled (no commit in this dispatcher).
    assert seen == [POISON] and handled == [5]
