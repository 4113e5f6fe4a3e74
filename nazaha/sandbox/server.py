"""HTTP front of the emulator: the Bot API, file downloads, the control API and the chat page.

Nothing here logs requests (``access_log=None``): URLs carry the bot token and bodies carry
message text and user ids.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from . import DEFAULT_SANDBOX_TOKEN, LOCAL_CONTROL_KEYS
from .botapi import scope_key
from .emulator import BotApiEmulator, BotState, WebhookDelivery
from .formatting import ApiError
from .polls import VoteRefused, close_due_polls, vote

__all__ = ["create_app", "SandboxServer", "serve_forever"]

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 100 * 1024 * 1024
EMULATOR_KEY: web.AppKey[BotApiEmulator] = web.AppKey("emulator", BotApiEmulator)
DEFAULT_TOKEN_KEY: web.AppKey[str] = web.AppKey("default_token", str)
CONTROL_KEY: web.AppKey[str] = web.AppKey("control_key", str)
RUN_ID_KEY: web.AppKey[str] = web.AppKey("run_id", str)
# Host headers accepted ("127.0.0.1:8081"); empty = any (a server bound to all interfaces).
# Filled by SandboxServer.start once the port is known.
ALLOWED_HOSTS_KEY: web.AppKey[set[str]] = web.AppKey("allowed_hosts", set)
# The control API's per-run key travels in this header (the chat page reads it from the
# address fragment, which browsers never send to a server).
CONTROL_KEY_HEADER = "X-Sandbox-Key"
CONTROL_PREFIX = "/sandbox/api/"
CALLS_DROPPED_HEADER = "X-Sandbox-Calls-Dropped"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _dumps(data: Any) -> str:
    # ensure_ascii keeps lone surrogates and control characters safe on the wire
    return json.dumps(data, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(data), status=status, content_type="application/json")


# ---- Bot API -------------------------------------------------------------------------------------


async def _read_bot_params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes, str | None]]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[str, bytes, str | None]] = {}
    if request.method != "POST" or not request.body_exists:
        return params, files
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json(loads=json.loads)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request: can't parse JSON")
        params.update(body)
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = (value.filename or key, value.file.read(), value.content_type)
            else:
                params[key] = value
    else:
        await request.read()
    return params, files


async def bot_api(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    try:
        params, files = await _read_bot_params(request)
    except ApiError as err:
        return _json(err.payload(), err.error_code)
    status, payload = await emulator.call(request.match_info["token"], request.match_info["method"], params, files)
    return _json(payload, status)


async def download_file(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR_KEY]
    if emulator.get_bot(request.match_info["token"]) is None:
        return _json(ApiError(401, "Unauthorized").payload(), 401)
    stored = emulator.files_by_path.get(request.match_info["path"])
    if stored is None:
        return _json(ApiError(404, "Not Found").payload(), 404)
    response = web.StreamResponse(headers={"Content-Type": stored.mime_type or "application/octet-stream"})
    response.content_length = len(stored.content)
    await response.prepare(request)
    view = memoryview(stored.content)
    for start in range(0, len(view), 65536):
        await response.write(view[start:start + 65536])
    await response.write_eof()
    return response


# ---- control API ---------------------------------------------------------------------------------


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _bot(request: web.Request, body: dict[str, Any] | None = None) -> BotState:
    token = (body or {}).get("token") or request.query.get("token") or request.app[DEFAULT_TOKEN_KEY]
    bot = request.app[EMULATOR_KEY].get_bot(str(token))
    if bot is None:
        raise ControlError(400, "malformed token")
    return bot


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(400, f"{name} must be an integer") from None


def _float(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ControlError(400, f"{name} must be a number") from None


def control(handler: Any) -> Any:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as err:
            return _json({"error": err.message}, err.status)
        except LookupError as err:
            return _json({"error": str(err) or "not found"}, 404)
        except ApiError as err:
            return _json({"error": err.description}, 400)

    return wrapped


@control
async def api_create_user(request: web.Request) -> web.Response:
    body = await _body(request)
    _bot(request, body)  # validates the token, creates the bot lazily
    user = request.app[EMULATOR_KEY].create_user(
        first_name=str(body.get("first_name") or "Test"),
        last_name=body.get("last_name"),
        username=body.get("username"),
        language_code=body.get("language_code", "ar"),
        is_premium=body.get("is_premium"),
    )
    return _json(user)


@control
async def api_create_users(request: web.Request) -> web.Response:
    """``{count, language_code? (default "ar"), first_name?}`` -> ``{ids}``: users who have
    each "pressed /start" with this bot (it may message them), with no update queued."""
    body = await _body(request)
    bot = _bot(request, body)
    try:
        ids = request.app[EMULATOR_KEY].create_started_users(
            bot, _int(body.get("count"), "count"), body.get("language_code", "ar"),
            str(body.get("first_name") or "Subscriber"))
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    return _json({"ids": ids})


@control
async def api_send_message(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    emulator = request.app[EMULATOR_KEY]
    kind = str(body.get("kind") or "text")
    fields = {k: v for k, v in body.items() if k not in ("token", "user_id", "kind", "content_b64")}
    if body.get("content_b64") is not None:
        try:
            fields["content"] = base64.b64decode(str(body["content_b64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ControlError(400, "content_b64 is not valid base64") from None
    try:
        update_id, msg = emulator.user_message(bot, _int(body.get("user_id"), "user_id"), kind, **fields)
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    result: dict[str, Any] = {"update_id": update_id, "message_id": msg.message_id}
    if msg.media or msg.poll is not None:
        result["message"] = msg.to_message()
    return _json(result)


@control
async def api_edit_message(request: web.Request) -> web.Response:
    """The user edits their message ``message_id``: ``{user_id, text}`` or ``{user_id, caption}``."""
    body = await _body(request)
    bot = _bot(request, body)
    try:
        update_id, msg = request.app[EMULATOR_KEY].user_edit(
            bot, _int(body.get("user_id"), "user_id"), _int(request.match_info["message_id"], "message_id"),
            text=body.get("text"), caption=body.get("caption"))
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    return _json({"update_id": update_id, "message": msg.to_message()})


@control
async def api_create_group(request: web.Request) -> web.Response:
    body = await _body(request)
    _bot(request, body)
    try:
        group = request.app[EMULATOR_KEY].create_group(str(body.get("type") or "group"),
                                                        str(body.get("title") or "Sandbox group"))
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    return _json(group)


@control
async def api_group_bot_status(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    try:
        update_id = request.app[EMULATOR_KEY].set_bot_status(
            bot, _int(request.match_info["chat_id"], "chat_id"), str(body.get("status") or ""),
            _int(body.get("user_id"), "user_id"))
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    return _json({"update_id": update_id})


@control
async def api_group_message(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    user_id = body.get("user_id")
    try:
        update_id, msg = request.app[EMULATOR_KEY].group_message(
            bot, _int(request.match_info["chat_id"], "chat_id"),
            _int(user_id, "user_id") if user_id is not None else None, body.get("text"))
    except ValueError as err:
        raise ControlError(400, str(err)) from None
    return _json({"update_id": update_id, "message_id": msg.message_id})


@control
async def api_group(request: web.Request) -> web.Response:
    bot = _bot(request)
    chat = bot.group_chat(request.app[EMULATOR_KEY].get_group(_int(request.match_info["chat_id"], "chat_id")))
    return _json({"chat": chat.chat_dict(), "bot_status": chat.member_status,
                  "messages": [m.to_view() for m in chat.messages.values()]})


@control
async def api_press(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    data = body.get("data")
    if not isinstance(data, str):
        raise ControlError(400, "data must be a string")
    update_id, query_id = request.app[EMULATOR_KEY].press_button(
        bot, _int(body.get("user_id"), "user_id"), _int(body.get("message_id"), "message_id"), data)
    return _json({"update_id": update_id, "callback_query_id": query_id})


@control
async def api_callback_answer(request: web.Request) -> web.Response:
    bot = _bot(request)
    query = bot.callback_queries.get(request.match_info["query_id"])
    if query is None:
        raise LookupError("unknown callback query")
    return _json({"answered": query["answered"], "answer": query["answer"]})


@control
async def api_inject_update(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    update = body.get("update")
    if not isinstance(update, dict):
        raise ControlError(400, "update must be an object")
    if "update_id" in update and (not isinstance(update["update_id"], int) or isinstance(update["update_id"], bool)):
        raise ControlError(400, "update_id must be an integer")
    return _json({"update_id": request.app[EMULATOR_KEY].inject_update(bot, dict(update))})


def _chat_of(request: web.Request, bot: BotState) -> Any:
    user = request.app[EMULATOR_KEY].get_user(_int(request.match_info["user_id"], "user_id"))
    return bot.chat_for(user)


@control
async def api_vote(request: web.Request) -> web.Response:
    """The user answers the poll in message ``message_id``: ``{user_id, option_ids, chat_id?}``
    (positions from 0; ``[]`` retracts). ``chat_id`` defaults to the user's private chat.
    ``{update_ids, poll}``: the updates queued for the bot that sent the poll (none when
    nothing changed) and the poll as the user now sees it. 409 for a vote the poll's state
    refuses (closed, a second answer to a quiz), 400 for a malformed one."""
    body = await _body(request)
    bot = _bot(request, body)
    emulator = request.app[EMULATOR_KEY]
    user = emulator.get_user(_int(body.get("user_id"), "user_id"))
    chat_id = body.get("chat_id")
    chat = (bot.chat_for(user) if chat_id is None or _int(chat_id, "chat_id") == user["id"]
            else bot.group_chat(emulator.get_group(_int(chat_id, "chat_id"))))
    msg = chat.messages.get(_int(request.match_info["message_id"], "message_id"))
    if msg is None or msg.deleted:
        raise LookupError("no such message in this chat")
    try:
        update_ids = vote(emulator, bot, chat, msg, user, body.get("option_ids"))
    except VoteRefused as err:
        raise ControlError(err.status, err.message) from None
    assert msg.poll is not None
    return _json({"update_ids": update_ids, "poll": msg.poll.view(user["id"])})


@control
async def api_chat_messages(request: web.Request) -> web.Response:
    bot = _bot(request)
    chat = _chat_of(request, bot)
    close_due_polls(request.app[EMULATOR_KEY], bot)
    return _json([m.to_view() for m in chat.messages.values()])


@control
async def api_chat_wait(request: web.Request) -> web.Response:
    """Long-poll a chat.

    ``?version=V``: return when the chat's version (bumped by every message, edit or deletion
    from either side) exceeds V, with all messages. Otherwise ``?after=N``: return when the bot
    has sent a message with id > N, with the bot's messages after N. 408 on timeout.
    """
    emulator = request.app[EMULATOR_KEY]
    bot = _bot(request)
    chat = _chat_of(request, bot)
    close_due_polls(emulator, bot)
    timeout = min(_float(request.query.get("timeout"), "timeout", 10.0), 300.0)
    if "version" in request.query:
        version = _int(request.query["version"], "version")
        ok = await emulator.wait_chat(chat, lambda: chat.version > version, timeout)
        if not ok:
            return _json({"timed_out": True, "version": chat.version, "messages": []}, 408)
        return _json({"version": chat.version, "messages": [m.to_view() for m in chat.messages.values()]})
    after = _int(request.query.get("after", 0), "after")
    ok = await emulator.wait_chat(chat, lambda: chat.first_bot_message_after(after) is not None, timeout)
    if not ok:
        return _json({"timed_out": True, "version": chat.version, "messages": []}, 408)
    return _json({"version": chat.version, "messages": [m.to_view() for m in chat.bot_messages_after(after)]})


@control
async def api_add_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    if not body.get("method"):
        raise ControlError(400, "method is required")
    retry_after = body.get("retry_after")
    request.app[EMULATOR_KEY].add_fault(
        bot, str(body["method"]), _int(body.get("error_code"), "error_code"), _int(body.get("count", 1), "count"),
        _int(retry_after, "retry_after") if retry_after is not None else None, body.get("description"))
    return _json({"ok": True})


@control
async def api_webhook_delivery(request: web.Request) -> web.Response:
    """Test-only: how webhook updates are delivered (``WebhookDelivery``): a reverse proxy in
    front of several replicas, Telegram's parallel connections, its timeout."""
    body = await _body(request)
    bot = _bot(request, body)
    urls = body.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(url, str) and url.startswith(("http://", "https://"))
                                             for url in urls):
        raise ControlError(400, "urls must be a list of http(s) URLs")
    concurrency = body.get("concurrency")
    try:
        bot.webhook_delivery = WebhookDelivery(
            urls, str(body.get("mode") or "round_robin"),
            _int(concurrency, "concurrency") if concurrency is not None else None,
            _float(body.get("timeout"), "timeout", 15.0))
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    bot.updates_signal.fire()  # the delivery loop picks the new concurrency up
    return _json(bot.webhook_delivery.to_view())


@control
async def api_webhook_log(request: web.Request) -> web.Response:
    """Every webhook POST, oldest first: {update_id, url, status, error}."""
    return _json(list(_bot(request).webhook_log))


@control
async def api_clear_faults(request: web.Request) -> web.Response:
    _bot(request).faults.clear()
    return _json({"ok": True})


@control
async def api_set_blocked(request: web.Request) -> web.Response:
    body = await _body(request)
    bot = _bot(request, body)
    request.app[EMULATOR_KEY].set_blocked(bot, _int(request.match_info["user_id"], "user_id"),
                                          bool(body.get("blocked", True)))
    return _json({"ok": True})


@control
async def api_calls(request: web.Request) -> web.Response:
    bot = _bot(request)
    calls = request.app[EMULATOR_KEY].calls(bot, request.query.get("method") or None,
                                              request.query.get("chat_id") or None)
    response = _json(calls)
    # a capped log says so: the client refuses a truncated log unless told it may be
    response.headers[CALLS_DROPPED_HEADER] = str(bot.calls_dropped)
    return response


@control
async def api_clear_calls(request: web.Request) -> web.Response:
    bot = _bot(request)
    bot.calls.clear()
    bot.calls_dropped = 0
    return _json({"ok": True})


@control
async def api_clock(request: web.Request) -> web.Response:
    body = await _body(request)
    emulator = request.app[EMULATOR_KEY]
    offset = emulator.advance_clock(_float(body.get("advance_seconds"), "advance_seconds", 0.0))
    return _json({"offset": offset, "now": emulator.now()})


@control
async def api_commands(request: web.Request) -> web.Response:
    bot = _bot(request)
    lang = request.query.get("language_code") or ""
    try:
        key = scope_key(request.query.get("scope") or None)
    except ValueError:
        raise ControlError(400, "scope must be a type name or a JSON object") from None
    return _json(bot.commands.get((key, lang), []))


@control
async def api_bot(request: web.Request) -> web.Response:
    bot = _bot(request)
    return _json({
        **bot.me(),
        "webhook": bot.webhook_info(),
        "webhook_secret_set": bool(bot.webhook and bot.webhook.get("secret_token")),
        "webhook_attempts": bot.webhook_attempts,
        "webhook_delivered": bot.webhook_delivered,
        "pending_updates": len(bot.queue),
        "calls_logged": len(bot.calls),
        "calls_dropped": bot.calls_dropped,
        "unknown_methods": dict(bot.unknown_methods),
        "descriptions": bot.descriptions,
        "short_descriptions": bot.short_descriptions,
        "menu_button": bot.default_menu_button,
        "run_id": request.app[RUN_ID_KEY],  # new at each start: the chat page's saved user is of this run
    })


async def chat_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "chat.html", headers=PAGE_HEADERS)


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={**PAGE_HEADERS, "Content-Type": "image/svg+xml"})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=PAGE_HEADERS)


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` headers a server bound to ``host:port`` answers: its own address, and for
    a loopback address every loopback name. Empty (any host) for a wildcard address, which a
    DNS-rebinding page cannot reach through a browser on another machine anyway."""
    if host in ("", "0.0.0.0", "::"):
        return set()
    names = {host}
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        names |= {"127.0.0.1", "localhost", "::1"}
    return {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse other ``Host`` headers (DNS rebinding: a web page whose name now points at this
    machine) with 421, and control-API calls without this run's key with 401."""
    hosts = request.app[ALLOWED_HOSTS_KEY]
    if hosts and (request.host or "").lower() not in hosts:
        return _json({"error": "unknown host"}, 421)
    if request.path.startswith(CONTROL_PREFIX):
        given = request.headers.get(CONTROL_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode(), request.app[CONTROL_KEY].encode()):
            return _json({"error": "missing or wrong control key"}, 401)
    return await handler(request)


def create_app(emulator: BotApiEmulator | None = None, default_token: str = DEFAULT_SANDBOX_TOKEN, *,
               control_key: str | None = None, hosts: set[str] | None = None) -> web.Application:
    """``control_key``: what the control API requires in ``X-Sandbox-Key`` (random if not
    given); ``hosts``: the Host headers answered (empty or None: any)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    app[EMULATOR_KEY] = emulator if emulator is not None else BotApiEmulator()
    app[DEFAULT_TOKEN_KEY] = default_token
    app[CONTROL_KEY] = control_key or secrets.token_urlsafe(24)
    app[RUN_ID_KEY] = secrets.token_hex(8)
    app[ALLOWED_HOSTS_KEY] = hosts if hosts is not None else set()
    r = app.router
    r.add_route("*", "/bot{token}/{method}", bot_api)
    r.add_get("/file/bot{token}/{path:.+}", download_file)
    api = "/sandbox/api"
    r.add_post(f"{api}/users", api_create_user)
    r.add_post(f"{api}/users/batch", api_create_users)
    r.add_post(f"{api}/users/{{user_id}}/blocked", api_set_blocked)
    r.add_post(f"{api}/messages", api_send_message)
    r.add_post(f"{api}/messages/{{message_id}}/edit", api_edit_message)
    r.add_post(f"{api}/messages/{{message_id}}/poll-answer", api_vote)
    r.add_post(f"{api}/groups", api_create_group)
    r.add_get(f"{api}/groups/{{chat_id}}", api_group)
    r.add_post(f"{api}/groups/{{chat_id}}/bot", api_group_bot_status)
    r.add_post(f"{api}/groups/{{chat_id}}/messages", api_group_message)
    r.add_post(f"{api}/callbacks", api_press)
    r.add_get(f"{api}/callbacks/{{query_id}}", api_callback_answer)
    r.add_post(f"{api}/updates", api_inject_update)
    r.add_get(f"{api}/chats/{{user_id}}/messages", api_chat_messages)
    r.add_get(f"{api}/chats/{{user_id}}/wait", api_chat_wait)
    r.add_post(f"{api}/faults", api_add_fault)
    r.add_post(f"{api}/webhook/delivery", api_webhook_delivery)
    r.add_get(f"{api}/webhook/log", api_webhook_log)
    r.add_delete(f"{api}/faults", api_clear_faults)
    r.add_get(f"{api}/calls", api_calls)
    r.add_delete(f"{api}/calls", api_clear_calls)
    r.add_post(f"{api}/clock", api_clock)
    r.add_get(f"{api}/commands", api_commands)
    r.add_get(f"{api}/bot", api_bot)
    r.add_get("/", chat_page)
    r.add_get("/chat", chat_page)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/sandbox/static/{name}", static_file)

    async def on_shutdown(app: web.Application) -> None:
        await app[EMULATOR_KEY].close()

    app.on_shutdown.append(on_shutdown)
    return app


class SandboxServer:
    """Run the emulator on a real port: ``async with SandboxServer() as s: s.url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_token: str | None = None,
                 emulator: BotApiEmulator | None = None, control_key: str | None = None) -> None:
        self.host = host
        self.port = port
        self.default_token = default_token or DEFAULT_SANDBOX_TOKEN
        self.emulator = emulator if emulator is not None else BotApiEmulator()
        # A new key per run: the control API acts as any user and reads every chat.
        self.control_key = control_key or secrets.token_urlsafe(24)
        self._hosts: set[str] = set()
        self.app = create_app(self.emulator, self.default_token, control_key=self.control_key,
                              hosts=self._hosts)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def page_url(self) -> str:
        """The chat page with this run's control key in the fragment (never sent in requests)."""
        return f"{self.url}/#key={self.control_key}"

    async def start(self) -> "SandboxServer":
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server  # the only way aiohttp exposes the bound port
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
        self._hosts |= allowed_hosts(self.host, self.port)
        LOCAL_CONTROL_KEYS[self.url] = self.control_key
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            LOCAL_CONTROL_KEYS.pop(self.url, None)
            await self.emulator.close()  # release long-polls first so shutdown is quick
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "SandboxServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def serve_forever(host: str = "127.0.0.1", port: int = 8081, default_token: str | None = None) -> None:
    """Run the sandbox until cancelled (the ``nazaha sandbox`` command)."""
    async with SandboxServer(host=host, port=port, default_token=default_token) as server:
        print(f"Nazaha sandbox: chat page at {server.page_url}  (Bot API base URL: {server.url})", flush=True)
        await asyncio.Event().wait()
