"""The Bot API methods of the emulator: parameter coercion, validation, results, webhooks."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Awaitable, Callable

from .emulator import (
    DELETE_WINDOW_SECONDS,
    MAX_DOWNLOAD_SIZE,
    PRESENT_STATUSES,
    BotApiEmulator,
    BotState,
    ChatState,
    StoredMessage,
    update_chat_key,
)
from .entities import with_found_entities
from .polls import build_poll, register as register_poll, stop_poll
from .formatting import (
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    ApiError,
    bad_request,
    parse_html,
    utf16_len,
    validate_reply_markup,
)

__all__ = ["dispatch", "coerce_params", "METHODS"]

Files = dict[str, tuple[str, bytes, str | None]]  # field -> (filename, content, content_type)
Method = Callable[[BotApiEmulator, BotState, dict[str, Any], Files], Awaitable[Any]]

METHODS: dict[str, tuple[str, Method]] = {}  # lower-case name -> (canonical name, implementation)

# Form-encoded requests carry every value as a string; these say how to read them back.
JSON_FIELDS = {
    "reply_markup", "link_preview_options", "commands", "scope", "reply_parameters", "allowed_updates",
    "entities", "caption_entities", "message_ids", "menu_button", "media", "results",
    "options", "correct_option_ids", "question_entities", "explanation_entities", "description_entities",
    "explanation_media", "country_codes",
}
BOOL_FIELDS = {
    "protect_content", "disable_notification", "show_alert", "drop_pending_updates",
    "disable_web_page_preview", "allow_sending_without_reply", "show_caption_above_media", "has_spoiler",
    "disable_content_type_detection", "allow_paid_broadcast", "for_channels",
    "is_anonymous", "allows_multiple_answers", "allows_revoting", "is_closed", "shuffle_options",
    "allow_adding_options", "hide_results_until_closes", "members_only", "remove_caption",
}
INT_FIELDS = {
    "message_id", "offset", "limit", "timeout", "cache_time", "max_connections", "reply_to_message_id",
    "user_id", "message_thread_id", "from_chat_id", "duration", "width", "height",
    "correct_option_id", "open_period", "close_date",
}
_INT_RE = re.compile(r"^-?\d+$")


def coerce_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn form strings (or JSON values) into the types the Bot API documents."""
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_FIELDS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                if key == "reply_markup":
                    raise bad_request("can't parse reply keyboard markup JSON object") from None
                raise bad_request(f"can't parse {key} JSON object") from None
        elif key in BOOL_FIELDS and isinstance(value, str):
            value = value.strip().lower() in ("true", "1", "yes")
        elif key in INT_FIELDS and isinstance(value, str):
            if not _INT_RE.match(value.strip()):
                raise bad_request(f"invalid {key} specified")
            value = int(value)
        elif key == "chat_id" and isinstance(value, str) and _INT_RE.match(value.strip()):
            value = int(value)
        elif key in ("latitude", "longitude") and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad_request(f"invalid {key} specified") from None
        params[key] = value
    return params


def method(name: str) -> Callable[[Method], Method]:
    def register(func: Method) -> Method:
        METHODS[name.lower()] = (name, func)
        return func

    return register


def _summarise_files(params: dict[str, Any], files: Files) -> dict[str, Any]:
    if not files:
        return dict(params)
    recorded = dict(params)
    for field, (filename, content, ctype) in files.items():
        recorded[field] = {"upload": filename, "size": len(content), "content_type": ctype}
    return recorded


async def dispatch(emu: BotApiEmulator, token: str, name: str, raw: dict[str, Any],
                   files: Files) -> tuple[int, dict[str, Any]]:
    bot = emu.get_bot(token)
    if bot is None:
        return 401, ApiError(401, "Unauthorized").payload()
    entry = METHODS.get(name.lower())
    if entry is None:
        # Telegram answers 404; the call is logged (and counted apart from the capped log) so
        # that tests notice a method the bot uses but the emulator does not model
        error = ApiError(404, "Not Found: method not found")
        bot.unknown_methods[name] = bot.unknown_methods.get(name, 0) + 1
        bot.log_call({"method": name, "params": _summarise_files(dict(raw), files), "at": emu.now(),
                      "mono": time.monotonic(), "chat_id": raw.get("chat_id"), "ok": False, "error_code": 404,
                      "description": error.description, "unknown": True})
        return 404, error.payload()
    canonical, func = entry
    record: dict[str, Any] = {"method": canonical, "params": None, "at": emu.now(), "mono": time.monotonic(),
                              "chat_id": raw.get("chat_id"), "ok": True, "error_code": None, "unknown": False}
    bot.log_call(record)
    try:
        params = coerce_params(raw)
        record["params"] = _summarise_files(params, files)
        record["chat_id"] = params.get("chat_id")
        fault = bot.take_fault(canonical)
        if fault is not None:
            raise fault
        result = await func(emu, bot, params, files)
    except ApiError as err:
        if record["params"] is None:
            record["params"] = dict(raw)
        record["ok"] = False
        record["error_code"] = err.error_code
        record["description"] = err.description
        return err.error_code, err.payload()
    return 200, {"ok": True, "result": result}


# ---- helpers -------------------------------------------------------------------------------------


def _chat(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], *, sending: bool = False) -> ChatState:
    chat_id = params.get("chat_id")
    if chat_id is None or chat_id == "":
        raise bad_request("chat_id is empty")
    if not isinstance(chat_id, int):
        raise bad_request("chat not found")
    user = emu.users.get(chat_id)
    if user is None:
        group = emu.groups.get(chat_id)
        if group is None:
            raise bad_request("chat not found")
        chat = bot.group_chat(group)
        if chat.member_status not in PRESENT_STATUSES:
            where = "channel" if group["type"] == "channel" else (
                "supergroup" if group["type"] == "supergroup" else "group")
            if chat.member_status == "kicked":
                raise ApiError(403, f"Forbidden: bot was kicked from the {where} chat")
            raise ApiError(403, f"Forbidden: bot is not a member of the {where} chat")
        return chat
    chat = bot.chat_for(user)
    if sending:
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if not chat.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
    return chat


def _message(chat: ChatState, params: dict[str, Any], missing: str) -> StoredMessage:
    message_id = params.get("message_id")
    msg = chat.messages.get(message_id) if isinstance(message_id, int) else None
    if msg is None or msg.deleted:
        raise bad_request(missing)
    return msg


def _formatted(params: dict[str, Any], key: str, entities_key: str, limit: int,
               empty_error: str, long_error: str) -> tuple[str, str, list[dict[str, Any]] | None, str | None]:
    """(plain text, raw text, entities, parse_mode) for a text or caption parameter."""
    raw = params.get(key)
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raw = str(raw)
    parse_mode = params.get("parse_mode") or None
    entities = params.get(entities_key) or None
    if parse_mode and str(parse_mode).lower() == "html":
        plain, parsed = parse_html(raw)
        entities = parsed or None
    elif parse_mode and str(parse_mode).lower() not in ("markdown", "markdownv2"):
        raise bad_request("unsupported parse_mode")
    else:
        plain = raw  # Markdown modes are stored unparsed: the emulator does not render them
    if not plain.strip():
        raise bad_request(empty_error)
    if utf16_len(plain) > limit:
        raise bad_request(long_error)
    # Telegram adds the links, mentions, hashtags and commands it finds (entities.py)
    return plain, raw, with_found_entities(plain, entities), parse_mode


def _apply_common(msg: StoredMessage, params: dict[str, Any]) -> None:
    msg.protect_content = bool(params.get("protect_content"))
    reply_to = params.get("reply_to_message_id")
    rp = params.get("reply_parameters")
    if isinstance(rp, dict) and isinstance(rp.get("message_id"), int):
        reply_to = rp["message_id"]
    if isinstance(reply_to, int):
        if reply_to not in msg.chat.messages and not (isinstance(rp, dict) and rp.get("allow_sending_without_reply")):
            pass  # Telegram would reject; a stale reply target is harmless here, so accept it
        msg.reply_to = reply_to
    if params.get("link_preview_options"):
        msg.extra["link_preview_options"] = params["link_preview_options"]


def _check_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    return validate_reply_markup(params.get("reply_markup"))


# ---- methods: bot identity --------------------------------------------------------------------


@method("getMe")
async def get_me(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return bot.me()


@method("logOut")
async def log_out(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return True


@method("close")
async def close(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return True


# ---- methods: updates -------------------------------------------------------------------------

CONFLICT_WEBHOOK = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
CONFLICT_POLLER = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


@method("getUpdates")
async def get_updates(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    if bot.webhook:
        raise ApiError(409, CONFLICT_WEBHOOK)
    limit = params.get("limit") or 100
    limit = max(1, min(100, int(limit)))
    timeout = max(0, int(params.get("timeout") or 0))
    if "allowed_updates" in params and isinstance(params["allowed_updates"], list):
        bot.allowed_updates = [str(u) for u in params["allowed_updates"]]
    offset = params.get("offset")
    if isinstance(offset, int) and offset != 0:
        emu.confirm_updates(bot, offset)
    # a newer getUpdates ends an older waiting one with 409, as on Telegram
    bot.poll_generation += 1
    generation = bot.poll_generation
    bot.updates_signal.fire()
    if not bot.queue and timeout > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not bot.queue and not emu.closing:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await bot.updates_signal.wait(remaining):
                break
            if bot.poll_generation != generation:
                raise ApiError(409, CONFLICT_POLLER)
            if bot.webhook:
                raise ApiError(409, CONFLICT_WEBHOOK)
    result = []
    for i, queued in enumerate(bot.queue):
        if i >= limit:
            break
        queued.delivered = True
        result.append(queued.update)
    return result


def _start_webhook(emu: BotApiEmulator, bot: BotState) -> None:
    _stop_webhook(bot)
    bot.webhook_task = asyncio.get_running_loop().create_task(_deliver_webhook(emu, bot))


def _stop_webhook(bot: BotState) -> None:
    if bot.webhook_task is not None:
        bot.webhook_task.cancel()
        bot.webhook_task = None


async def _deliver_webhook(emu: BotApiEmulator, bot: BotState) -> None:
    """POST queued updates to the webhook, each retried with a backoff until it is answered
    2xx: one chat's updates one after the other, in order, different chats' in parallel
    (``WebhookDelivery``: how many at once, which URLs)."""
    webhook = bot.webhook
    active: dict[int, asyncio.Task[None]] = {}  # id(queued update) -> its delivery

    def alive() -> bool:
        return not emu.closing and webhook is not None and bot.webhook is webhook

    try:
        while alive():
            assert webhook is not None
            limit = bot.webhook_delivery.limit(webhook)
            waiting_chats: set[Any] = set()  # chats with an earlier update not yet answered
            for index, queued in enumerate(list(bot.queue)):
                chat = update_chat_key(queued.update)
                key = chat if chat is not None else ("update", index)
                if id(queued) in active or key in waiting_chats:
                    waiting_chats.add(key)
                    continue
                waiting_chats.add(key)
                if len(active) >= limit:
                    break
                task = asyncio.get_running_loop().create_task(_deliver_update(emu, bot, queued, alive))
                active[id(queued)] = task
            woken = asyncio.ensure_future(bot.updates_signal.next_fire().wait())
            try:
                await asyncio.wait([woken, *active.values()], return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            for key in [key for key, task in active.items() if task.done()]:
                del active[key]
    finally:
        for task in active.values():
            task.cancel()


async def _deliver_update(emu: BotApiEmulator, bot: BotState, queued: Any, alive: Callable[[], bool]) -> None:
    """Deliver one update until it is answered 2xx (by every URL in mode "all"), then take
    it off the queue; a method in the webhook's answer is executed, as Telegram does."""
    import aiohttp

    session = await emu.http_session()
    backoff = 0.05
    answered: set[str] = set()  # URLs that answered 2xx (mode "all")
    while alive():
        webhook = bot.webhook
        assert webhook is not None
        delivery = bot.webhook_delivery
        urls = [url for url in delivery.targets(webhook["url"]) if url not in answered]
        headers = {}
        if webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook["secret_token"]

        async def post(url: str) -> tuple[str, str | None, dict[str, Any] | None]:
            queued.attempts += 1
            bot.webhook_attempts += 1
            status: int | None = None
            error: str | None = None
            reply: dict[str, Any] | None = None
            try:
                async with session.post(url, json=queued.update, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=delivery.timeout)) as resp:
                    status = resp.status
                    if 200 <= resp.status < 300:
                        reply = await _read_webhook_reply(resp)
                    else:
                        await resp.read()
                        error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = "Connection refused" if isinstance(exc, aiohttp.ClientConnectionError) else "Timeout expired"
            bot.webhook_log.append({"update_id": queued.update_id, "url": url, "status": status, "error": error})
            return url, error, reply

        results = await asyncio.gather(*(post(url) for url in urls))
        errors = []
        for url, error, reply in results:
            if error is not None:
                errors.append(error)
                continue
            answered.add(url)
            if reply and isinstance(reply.get("method"), str):
                name = reply.pop("method")
                try:
                    await dispatch(emu, bot.token, name, reply, {})
                except Exception:  # noqa: BLE001 - a bad reply must not stop delivery
                    pass
        if not errors or (delivery.mode != "all" and answered):
            try:
                bot.queue.remove(queued)
            except ValueError:
                pass  # dropped meanwhile (drop_pending_updates)
            bot.webhook_delivered += 1
            bot.updates_signal.fire()  # the delivery loop takes the next update
            return
        bot.webhook_last_error_date = emu.now_int()
        bot.webhook_last_error_message = errors[-1]
        await bot.updates_signal.wait(backoff)  # a backoff, also cut short by new updates
        backoff = min(backoff * 2, 1.0)


async def _read_webhook_reply(resp: Any) -> dict[str, Any] | None:
    import aiohttp

    ctype = resp.content_type or ""
    try:
        if ctype == "application/json":
            data = await resp.json(content_type=None)
            return data if isinstance(data, dict) else None
        if ctype.startswith("multipart/"):
            reader = aiohttp.MultipartReader(resp.headers, resp.content)
            data = {}
            while (part := await reader.next()) is not None:
                if part.name:
                    data[part.name] = await part.text()
            return data
    except (ValueError, aiohttp.ClientError):
        return None
    await resp.read()
    return None


_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@method("setWebhook")
async def set_webhook(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    url = params.get("url") or ""
    secret = params.get("secret_token") or None
    if secret is not None and not _SECRET_RE.match(str(secret)):
        raise bad_request("secret token contains unallowed characters")
    if params.get("drop_pending_updates"):
        bot.queue.clear()
    if not url:
        bot.webhook = None
        _stop_webhook(bot)
        return True
    if not re.match(r"^https?://", str(url)):
        raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
    allowed = params.get("allowed_updates")
    webhook = {
        "url": str(url),
        "secret_token": secret,
        "max_connections": params.get("max_connections") or 40,
        "allowed_updates": [str(u) for u in allowed] if isinstance(allowed, list) else [],
    }
    if webhook == bot.webhook and bot.webhook_task is not None and not bot.webhook_task.done():
        return True  # the same webhook again (another replica starting): deliveries go on
    bot.webhook = webhook
    bot.webhook_last_error_date = None
    bot.webhook_last_error_message = None
    bot.updates_signal.fire()  # a waiting getUpdates now fails with 409
    _start_webhook(emu, bot)
    return True


@method("deleteWebhook")
async def delete_webhook(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    bot.webhook = None
    _stop_webhook(bot)
    if params.get("drop_pending_updates"):
        bot.queue.clear()
    return True


@method("getWebhookInfo")
async def get_webhook_info(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return bot.webhook_info()


# ---- methods: messages ------------------------------------------------------------------------


@method("sendMessage")
async def send_message(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat = _chat(emu, bot, params, sending=True)
    plain, raw, entities, parse_mode = _formatted(
        params, "text", "entities", MAX_TEXT_LENGTH, "message text is empty", "message is too long")
    markup = _check_markup(params)
    msg = chat.new_message(True, emu.now_int(), "text")
    msg.text, msg.html, msg.entities, msg.parse_mode = plain, raw, entities, parse_mode
    msg.reply_markup = markup
    _apply_common(msg, params)
    chat.changed()
    return msg.to_message()


@method("sendPoll")
async def send_poll(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """A poll or quiz (see polls.py): the Message with ``poll``, the quiz's solution visible
    to this bot, which alone gets ``poll`` (and, unless anonymous, ``poll_answer``) updates."""
    chat = _chat(emu, bot, params, sending=True)
    poll = build_poll(emu, bot, params)
    markup = _check_markup(params)
    msg = chat.new_message(True, emu.now_int(), "poll")
    msg.poll = poll
    msg.reply_markup = markup
    _apply_common(msg, params)
    register_poll(bot, chat, poll)
    chat.changed()
    return msg.to_message()


@method("stopPoll")
async def stop_poll_method(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    markup = _check_markup(params)
    if markup is not None and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    chat = _chat(emu, bot, params)
    message_id = params.get("message_id")
    msg = chat.messages.get(message_id) if isinstance(message_id, int) and message_id > 0 else None
    return stop_poll(emu, bot, chat, msg, markup)


# ---- methods: copies ---------------------------------------------------------------------------

_NOT_COPIED = ("media_group_id",)  # Message fields a copy does not take over


def _copy_into(emu: BotApiEmulator, bot: BotState, source: StoredMessage, target: ChatState,
               params: dict[str, Any], *, remove_caption: bool = False) -> StoredMessage:
    """A copy of ``source`` in ``target``, sent by ``bot``: the same content (the same file_ids;
    a poll becomes a new poll of this bot, open and without votes), no forward origin, no
    keyboard unless ``reply_markup`` is given, the caption replaced if ``caption`` is."""
    if source.poll is not None and source.poll.type == "quiz" and source.poll.owner is not bot:
        raise bad_request("the message can't be copied")  # a quiz whose solution the bot cannot see
    msg = target.new_message(True, emu.now_int(), source.kind)
    msg.text, msg.html, msg.entities, msg.parse_mode = source.text, source.html, source.entities, source.parse_mode
    msg.media = {key: value for key, value in source.media.items()}
    msg.extra = {key: value for key, value in source.extra.items() if key not in _NOT_COPIED}
    if source.poll is not None:
        msg.poll = source.poll.copy_for(bot, emu.now_int())
        register_poll(bot, target, msg.poll)
    elif source.kind != "text":  # media: the caption is kept, replaced or removed
        if "caption" in params:
            msg.caption, msg.caption_html, msg.caption_entities = _caption(params)
            msg.parse_mode = params.get("parse_mode") or None
        elif not remove_caption:
            msg.caption, msg.caption_html, msg.caption_entities = (source.caption, source.caption_html,
                                                                   source.caption_entities)
        if params.get("show_caption_above_media") and msg.caption is not None:
            msg.extra["show_caption_above_media"] = True
    msg.reply_markup = _check_markup(params)
    _apply_common(msg, params)
    return msg


def _copy_source(emu: BotApiEmulator, bot: BotState, params: dict[str, Any]) -> ChatState:
    from_chat_id = params.get("from_chat_id")
    if from_chat_id is None or from_chat_id == "":
        raise bad_request("from_chat_id is empty")
    return _chat(emu, bot, {"chat_id": from_chat_id})


# A message sent with ``protect_content`` can still be copied by a bot: the Bot API lists no
# such restriction for copyMessage(s) (it does for forwardMessage(s)), and TDLib, which the
# Bot API server runs, exempts bots' copies from content protection (``get_forwarded_messages``
# skips a protected message only ``if (!(need_copy && is_bot))``). The emulator copies them:
# whoever holds a bot's token can read a protected message by copying it elsewhere.


@method("copyMessage")
async def copy_message(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """Returns a MessageId (``{"message_id": N}``), not a Message, as Telegram does. A
    protected message is copied too (see above)."""
    source_chat = _copy_source(emu, bot, params)
    target = _chat(emu, bot, params, sending=True)
    message_id = params.get("message_id")
    source = source_chat.messages.get(message_id) if isinstance(message_id, int) else None
    if source is None or source.deleted:
        raise bad_request("message to copy not found")
    _check_markup(params)
    msg = _copy_into(emu, bot, source, target, params)
    target.changed()
    return {"message_id": msg.message_id}


@method("copyMessages")
async def copy_messages(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """Copies 1-100 messages (ids in strictly increasing order); skips those that cannot be
    found or copied, and fails only if none could be. Returns the MessageIds of the copies."""
    source_chat = _copy_source(emu, bot, params)
    target = _chat(emu, bot, params, sending=True)
    ids = params.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100 or not all(isinstance(i, int) for i in ids):
        raise bad_request("message_ids must contain 1-100 message identifiers")
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise bad_request("message identifiers must be in a strictly increasing order")
    options = {k: v for k, v in params.items() if k in ("protect_content", "disable_notification")}
    copies = []
    for message_id in ids:
        source = source_chat.messages.get(message_id)
        if source is None or source.deleted:
            continue
        try:
            copies.append(_copy_into(emu, bot, source, target, options,
                                     remove_caption=bool(params.get("remove_caption"))))
        except ApiError:
            continue  # Telegram skips what it cannot copy
    if not copies:
        raise bad_request("message to copy not found")
    target.changed()
    return [{"message_id": m.message_id} for m in copies]


# ---- methods: forwards ---------------------------------------------------------------------------

PROTECTED = "message has protected content and can't be forwarded"


def _origin(source: StoredMessage) -> dict[str, Any]:
    """The ``forward_origin`` a forward of ``source`` carries (an earlier forward's, kept)."""
    if source.forward_origin is not None:
        return dict(source.forward_origin)
    chat = source.chat
    if chat.group is not None and chat.group["type"] == "channel":
        return {"type": "channel", "chat": chat.chat_dict(), "message_id": source.message_id, "date": source.date}
    sender = chat.bot.user_dict() if source.from_bot else (source.sender or chat.user).copy()
    return {"type": "user", "sender_user": sender, "date": source.date}


def _forward_into(emu: BotApiEmulator, source: StoredMessage, target: ChatState,
                  params: dict[str, Any]) -> StoredMessage:
    """A forward of ``source`` into ``target``: the same content (a poll is the same poll,
    votes and all), its origin, no keyboard. Protected content: 400, as on Telegram."""
    if source.protect_content:
        raise bad_request(PROTECTED)
    msg = target.new_message(True, emu.now_int(), source.kind)
    msg.text, msg.html, msg.entities, msg.parse_mode = source.text, source.html, source.entities, source.parse_mode
    msg.caption, msg.caption_html, msg.caption_entities = source.caption, source.caption_html, source.caption_entities
    msg.media = dict(source.media)
    msg.extra = {key: value for key, value in source.extra.items() if key not in _NOT_COPIED}
    msg.poll = source.poll
    msg.forward_origin = _origin(source)
    msg.protect_content = bool(params.get("protect_content"))
    return msg


@method("forwardMessage")
async def forward_message(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """Returns the new Message (with ``forward_origin``). A message sent with
    ``protect_content`` cannot be forwarded: 400 "message has protected content and can't be
    forwarded" (Bot API: "Service messages and messages with protected content can't be
    forwarded"). Missing or deleted: 400 "message to forward not found"."""
    source_chat = _copy_source(emu, bot, params)
    target = _chat(emu, bot, params, sending=True)
    message_id = params.get("message_id")
    source = source_chat.messages.get(message_id) if isinstance(message_id, int) else None
    if source is None or source.deleted:
        raise bad_request("message to forward not found")
    msg = _forward_into(emu, source, target, params)
    target.changed()
    return msg.to_message()


@method("forwardMessages")
async def forward_messages(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """Forwards 1-100 messages (ids in strictly increasing order); skips those that cannot
    be found or are protected, and fails (with the first reason) only if none could be
    forwarded. Returns the MessageIds of the forwards."""
    source_chat = _copy_source(emu, bot, params)
    target = _chat(emu, bot, params, sending=True)
    ids = params.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100 or not all(isinstance(i, int) for i in ids):
        raise bad_request("message_ids must contain 1-100 message identifiers")
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise bad_request("message identifiers must be in a strictly increasing order")
    forwards = []
    first_error: ApiError | None = None
    for message_id in ids:
        source = source_chat.messages.get(message_id)
        try:
            if source is None or source.deleted:
                raise bad_request("message to forward not found")
            forwards.append(_forward_into(emu, source, target, params))
        except ApiError as err:  # Telegram skips what it cannot forward
            first_error = first_error or err
    if not forwards:
        raise first_error or bad_request("message to forward not found")
    target.changed()
    return [{"message_id": m.message_id} for m in forwards]


def _record_edit(msg: StoredMessage, emu: BotApiEmulator) -> None:
    msg.edits.append({"at": emu.now_int(), "text": msg.text, "html": msg.html, "caption": msg.caption,
                      "reply_markup": msg.reply_markup})
    msg.edit_date = emu.now_int()


def _editable(emu: BotApiEmulator, bot: BotState, params: dict[str, Any]) -> tuple[ChatState, StoredMessage]:
    if params.get("inline_message_id"):
        raise bad_request("message to edit not found")
    chat = _chat(emu, bot, params)
    msg = _message(chat, params, "message to edit not found")
    if not msg.from_bot:
        raise bad_request("message can't be edited")
    return chat, msg


NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message")


@method("editMessageText")
async def edit_message_text(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat, msg = _editable(emu, bot, params)
    if msg.kind != "text":
        raise bad_request("there is no text in the message to edit")
    plain, raw, entities, parse_mode = _formatted(
        params, "text", "entities", MAX_TEXT_LENGTH, "message text is empty", "message is too long")
    markup = _check_markup(params)
    if markup is not None and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    if plain == msg.text and entities == msg.entities and markup == msg.reply_markup:
        raise bad_request(NOT_MODIFIED)
    msg.text, msg.html, msg.entities, msg.parse_mode = plain, raw, entities, parse_mode
    msg.reply_markup = markup  # no reply_markup in an edit removes the inline keyboard
    _record_edit(msg, emu)
    chat.changed()
    return msg.to_message()


@method("editMessageCaption")
async def edit_message_caption(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat, msg = _editable(emu, bot, params)
    if msg.kind in ("text", "poll"):
        raise bad_request("there is no caption in the message to edit")
    if params.get("caption"):
        plain, raw, entities, _ = _formatted(params, "caption", "caption_entities", MAX_CAPTION_LENGTH,
                                             "message caption is empty", "message caption is too long")
    else:
        plain, raw, entities = None, None, None
    markup = _check_markup(params)
    if plain == msg.caption and entities == msg.caption_entities and markup == msg.reply_markup:
        raise bad_request(NOT_MODIFIED)
    msg.caption, msg.caption_html, msg.caption_entities, msg.reply_markup = plain, raw, entities, markup
    _record_edit(msg, emu)
    chat.changed()
    return msg.to_message()


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(emu: BotApiEmulator, bot: BotState, params: dict[str, Any],
                                    files: Files) -> Any:
    chat, msg = _editable(emu, bot, params)
    markup = _check_markup(params)
    if markup is not None and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    current = msg.reply_markup if msg.reply_markup and "inline_keyboard" in msg.reply_markup else None
    if markup == current or (markup is not None and not any(markup["inline_keyboard"]) and current is None):
        raise bad_request(NOT_MODIFIED)
    msg.reply_markup = markup
    _record_edit(msg, emu)
    chat.changed()
    return msg.to_message()


def _delete(emu: BotApiEmulator, chat: ChatState, message_id: Any) -> None:
    msg = chat.messages.get(message_id) if isinstance(message_id, int) else None
    if msg is None or msg.deleted:
        raise bad_request("message to delete not found")
    if emu.now() - msg.date > DELETE_WINDOW_SECONDS:
        raise bad_request("message can't be deleted")
    msg.deleted = True


@method("deleteMessage")
async def delete_message(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat = _chat(emu, bot, params)
    _delete(emu, chat, params.get("message_id"))
    chat.changed()
    return True


@method("deleteMessages")
async def delete_messages(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat = _chat(emu, bot, params)
    ids = params.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise bad_request("message_ids must contain 1-100 message identifiers")
    deleted = 0
    first_error: ApiError | None = None
    for message_id in ids:
        try:
            _delete(emu, chat, message_id)
            deleted += 1
        except ApiError as err:  # Telegram skips the ones it cannot delete
            first_error = first_error or err
    if deleted == 0 and first_error is not None:
        raise first_error
    chat.changed()
    return True


@method("answerCallbackQuery")
async def answer_callback_query(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    query = bot.callback_queries.get(str(params.get("callback_query_id") or ""))
    if query is None or query["answered"] or emu.now() - query.get("at", emu.now()) > emu.callback_answer_window:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = params.get("text")
    if text is not None and len(str(text)) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query["answered"] = True
    query["answer"] = {"text": text, "show_alert": bool(params.get("show_alert")), "url": params.get("url")}
    return True


@method("leaveChat")
async def leave_chat(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    chat = _chat(emu, bot, params)
    if chat.group is None:
        raise bad_request("chat member status can't be changed in private chats")
    emu.bot_left(bot, chat)
    return True


@method("sendChatAction")
async def send_chat_action(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    _chat(emu, bot, params, sending=True)
    if not params.get("action"):
        raise bad_request("action is empty")
    return True


# Everything a ChatPermissions can say, all allowed (a group's defaults on Telegram).
_GROUP_PERMISSIONS = {flag: True for flag in (
    "can_send_messages", "can_send_audios", "can_send_documents", "can_send_photos", "can_send_videos",
    "can_send_video_notes", "can_send_voice_notes", "can_send_polls", "can_send_other_messages",
    "can_add_web_page_previews", "can_change_info", "can_invite_users", "can_pin_messages", "can_manage_topics")}


@method("getChat")
async def get_chat(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    """A ChatFullInfo with every field Telegram always sends (aiogram and python-telegram-bot
    both require them): ``accent_color_id``, ``max_reaction_count`` and
    ``accepted_gift_types`` (all five kinds of Bot API 9.x), plus a group's ``permissions``."""
    chat = _chat(emu, bot, params)
    info: dict[str, Any] = {
        **chat.chat_dict(),
        "accent_color_id": abs(chat.chat_id) % 7,  # one of the 7 built-in colours, as for names
        "max_reaction_count": 11,
        "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                "premium_subscription": False, "gifts_from_channels": False},
    }
    if chat.group is not None and chat.group["type"] in ("group", "supergroup"):
        info["permissions"] = dict(_GROUP_PERMISSIONS)
    return info


# ---- methods: media -----------------------------------------------------------------------------


def _input_file(emu: BotApiEmulator, params: dict[str, Any], files: Files, field: str, folder: str,
                ext: str, mime: str | None) -> tuple[Any, str | None]:
    """Resolve an InputFile parameter: an upload (direct or attach://), a known file_id or a URL."""
    value = params.get(field)
    upload = files.get(field)
    if isinstance(value, str) and value.startswith("attach://"):
        upload = files.get(value[len("attach://"):])
        if upload is None:
            raise bad_request("file must be non-empty")
    if upload is not None:
        filename, content, ctype = upload
        if not content:
            raise bad_request("file must be non-empty")
        if "." in filename:
            ext = "." + filename.rsplit(".", 1)[1][:10]
        return emu.store_file(content, folder=folder, extension=ext, mime_type=ctype or mime,
                              file_name=filename), filename
    if not value or not isinstance(value, str):
        raise bad_request(f"there is no {field} in the request")
    if value.startswith(("http://", "https://")):
        # never fetched: the emulator makes no outgoing requests except webhooks
        return emu.store_file(b"", folder=folder, extension=ext, mime_type=mime), value.rsplit("/", 1)[-1]
    stored = emu.files.get(value)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return stored, stored.file_name


def _caption(params: dict[str, Any]) -> tuple[str | None, str | None, list[dict[str, Any]] | None]:
    """(caption, raw caption, entities) of a media message: parsed like a message's text,
    at most 1024 UTF-16 code units after entity parsing; an empty or blank caption is none."""
    raw = params.get("caption")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None, None
    try:
        caption, raw, entities, _ = _formatted(params, "caption", "caption_entities", MAX_CAPTION_LENGTH,
                                               "message caption is empty", "message caption is too long")
    except ApiError as err:
        if err.description.endswith("message caption is empty"):
            return None, None, None  # markup only, e.g. "<b> </b>"
        raise
    return caption, raw, entities


def _send_media(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], kind: str,
                media: dict[str, Any]) -> dict[str, Any]:
    chat = _chat(emu, bot, params, sending=True)
    caption, raw, entities = _caption(params)
    markup = _check_markup(params)
    msg = chat.new_message(True, emu.now_int(), kind)
    msg.media = media
    msg.caption, msg.caption_html, msg.caption_entities = caption, raw, entities
    msg.parse_mode = params.get("parse_mode") or None
    msg.reply_markup = markup
    if params.get("show_caption_above_media") and caption is not None:
        msg.extra["show_caption_above_media"] = True
    if params.get("has_spoiler"):
        msg.extra["has_media_spoiler"] = True
    _apply_common(msg, params)
    chat.changed()
    return msg.to_message()


def _photo_sizes(emu: BotApiEmulator, params: dict[str, Any], files: Files) -> list[dict[str, Any]]:
    """The PhotoSize list for sendPhoto's ``photo``: a new photo for an upload (or an URL,
    never fetched), the same sizes and file_ids again for the file_id of a known photo."""
    value = params.get("photo")
    upload = files.get("photo")
    if isinstance(value, str) and value.startswith("attach://"):
        upload = files.get(value[len("attach://"):])
        if upload is None:
            raise bad_request("file must be non-empty")
    if upload is not None:
        if not upload[1]:
            raise bad_request("file must be non-empty")
        return emu.store_photo(upload[1])
    if not value or not isinstance(value, str):
        raise bad_request("there is no photo in the request")
    if value.startswith(("http://", "https://")):
        return emu.store_photo(b"")  # never fetched: the emulator makes no outgoing requests but webhooks
    sizes = emu.photo_sizes.get(value)
    if sizes is None:
        if value in emu.files:
            raise bad_request("type of file mismatch")  # e.g. a document's file_id
        raise bad_request("wrong file identifier/HTTP URL specified")
    return sizes


@method("sendPhoto")
async def send_photo(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    _chat(emu, bot, params, sending=True)
    return _send_media(emu, bot, params, "photo", {"photo": _photo_sizes(emu, params, files)})


@method("sendDocument")
async def send_document(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    _chat(emu, bot, params, sending=True)
    stored, name = _input_file(emu, params, files, "document", "documents", "", "application/octet-stream")
    doc = {**stored.to_file(False), "file_name": name or stored.file_name or "file",
           "mime_type": stored.mime_type or "application/octet-stream"}
    return _send_media(emu, bot, params, "document", {"document": doc})


@method("getFile")
async def get_file(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    stored = emu.files.get(str(params.get("file_id") or ""))
    if stored is None:
        raise bad_request("invalid file_id")
    if stored.file_size > MAX_DOWNLOAD_SIZE:
        raise bad_request("file is too big")
    return stored.to_file()


# ---- methods: commands, descriptions, menu ------------------------------------------------------

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_LANG_RE = re.compile(r"^([a-z]{2})?$")


def scope_key(scope: Any) -> str:
    if scope is None or scope == "":
        scope = {"type": "default"}
    if isinstance(scope, str):
        scope = json.loads(scope) if scope.startswith("{") else {"type": scope}
    if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
        raise bad_request("can't parse BotCommandScope JSON object")
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def _language(params: dict[str, Any]) -> str:
    lang = str(params.get("language_code") or "")
    if not _LANG_RE.match(lang):
        raise bad_request("invalid language code specified")
    return lang


@method("setMyCommands")
async def set_my_commands(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    commands = params.get("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad_request("can't parse commands JSON object")
    cleaned = []
    for cmd in commands:
        if not isinstance(cmd, dict):
            raise bad_request("can't parse BotCommand JSON object")
        name = str(cmd.get("command") or "")
        description = str(cmd.get("description") or "")
        if not _COMMAND_RE.match(name):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(description) <= 256:
            raise bad_request("command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID")
        cleaned.append({"command": name, "description": description})
    key = (scope_key(params.get("scope")), _language(params))
    if cleaned:
        bot.commands[key] = cleaned
    else:
        bot.commands.pop(key, None)
    return True


@method("getMyCommands")
async def get_my_commands(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return bot.commands.get((scope_key(params.get("scope")), _language(params)), [])


@method("deleteMyCommands")
async def delete_my_commands(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    bot.commands.pop((scope_key(params.get("scope")), _language(params)), None)
    return True


def _text_setting(store: dict[str, str], params: dict[str, Any], field: str, limit: int) -> bool:
    value = str(params.get(field) or "")
    if len(value) > limit:
        raise bad_request(f"{field} is too long")
    lang = _language(params)
    if value:
        store[lang] = value
    else:
        store.pop(lang, None)
    return True


@method("setMyDescription")
async def set_my_description(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return _text_setting(bot.descriptions, params, "description", 512)


@method("getMyDescription")
async def get_my_description(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    lang = _language(params)
    return {"description": bot.descriptions.get(lang, bot.descriptions.get("", ""))}


@method("setMyShortDescription")
async def set_my_short_description(emu: BotApiEmulator, bot: BotState, params: dict[str, Any],
                                   files: Files) -> Any:
    return _text_setting(bot.short_descriptions, params, "short_description", 120)


@method("getMyShortDescription")
async def get_my_short_description(emu: BotApiEmulator, bot: BotState, params: dict[str, Any],
                                   files: Files) -> Any:
    lang = _language(params)
    return {"short_description": bot.short_descriptions.get(lang, bot.short_descriptions.get("", ""))}


@method("setMyName")
async def set_my_name(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    return _text_setting(bot.names, params, "name", 64)


@method("getMyName")
async def get_my_name(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    lang = _language(params)
    return {"name": bot.names.get(lang, bot.names.get("", bot.first_name))}


@method("setChatMenuButton")
async def set_chat_menu_button(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    button = params.get("menu_button") or {"type": "default"}
    if not isinstance(button, dict) or button.get("type") not in ("default", "commands", "web_app"):
        raise bad_request("can't parse MenuButton JSON object")
    if params.get("chat_id") is not None:
        _chat(emu, bot, params).menu_button = button
    else:
        bot.default_menu_button = button if button["type"] != "default" else {"type": "commands"}
    return True


@method("getChatMenuButton")
async def get_chat_menu_button(emu: BotApiEmulator, bot: BotState, params: dict[str, Any], files: Files) -> Any:
    if params.get("chat_id") is not None:
        chat = _chat(emu, bot, params)
        if chat.menu_button and chat.menu_button.get("type") != "default":
            return chat.menu_button
    return bot.default_menu_button
