"""In-memory state of the Telegram Bot API emulator.

Everything lives in one asyncio event loop, so no locks are needed: state changes happen
between awaits. Waiting (getUpdates long-poll, webhook delivery, the control API's chat wait)
uses :class:`Signal`, an event that is replaced each time it fires, never sleeps.

Lookups are O(1) per request: messages are kept per chat in dicts keyed by message id,
updates per bot in a deque, files in dicts by id and by path.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import re
import secrets
import time
from typing import Any, Awaitable, Callable

from .formatting import ApiError

__all__ = ["BotApiEmulator", "BotState", "ChatState", "StoredMessage", "StoredFile", "Signal", "ApiError"]

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]{20,}$")
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
DELETE_WINDOW_SECONDS = 48 * 3600
FIRST_USER_ID = 700_000_001


class Signal:
    """A broadcast wake-up: ``fire()`` wakes every current waiter."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next fire; False on timeout."""
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


class StoredFile:
    __slots__ = ("file_id", "file_unique_id", "content", "file_size", "file_path", "mime_type", "file_name")

    def __init__(self, file_id: str, file_unique_id: str, content: bytes, file_size: int,
                 file_path: str, mime_type: str | None, file_name: str | None) -> None:
        self.file_id = file_id
        self.file_unique_id = file_unique_id
        self.content = content
        self.file_size = file_size
        self.file_path = file_path
        self.mime_type = mime_type
        self.file_name = file_name

    def to_file(self, with_path: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
        }
        if with_path:
            result["file_path"] = self.file_path
        return result


class StoredMessage:
    """One message of a private chat, from either side, with its edit history."""

    __slots__ = (
        "message_id", "chat", "from_bot", "date", "kind", "text", "html", "parse_mode", "entities",
        "caption", "caption_html", "caption_entities", "reply_markup", "protect_content", "deleted",
        "edit_date", "edits", "media", "forward_origin", "reply_to", "extra",
    )

    def __init__(self, chat: "ChatState", message_id: int, from_bot: bool, date: int, kind: str) -> None:
        self.chat = chat
        self.message_id = message_id
        self.from_bot = from_bot
        self.date = date
        self.kind = kind
        self.text: str | None = None
        self.html: str | None = None
        self.parse_mode: str | None = None
        self.entities: list[dict[str, Any]] | None = None
        self.caption: str | None = None
        self.caption_html: str | None = None
        self.caption_entities: list[dict[str, Any]] | None = None
        self.reply_markup: dict[str, Any] | None = None
        self.protect_content = False
        self.deleted = False
        self.edit_date: int | None = None
        self.edits: list[dict[str, Any]] = []
        self.media: dict[str, Any] = {}  # Message fields for non-text kinds (photo, document, ...)
        self.forward_origin: dict[str, Any] | None = None
        self.reply_to: int | None = None
        self.extra: dict[str, Any] = {}  # other Message fields passed through (e.g. link_preview_options)

    def to_message(self, with_reply: bool = True) -> dict[str, Any]:
        """The Bot API ``Message`` object as it is now."""
        chat = self.chat
        msg: dict[str, Any] = {
            "message_id": self.message_id,
            "from": chat.bot.user_dict() if self.from_bot else chat.user.copy(),
            "chat": chat.chat_dict(),
            "date": self.date,
        }
        if self.forward_origin is not None:
            msg["forward_origin"] = self.forward_origin
        if self.edit_date is not None:
            msg["edit_date"] = self.edit_date
        if self.protect_content:
            msg["has_protected_content"] = True
        if with_reply and self.reply_to is not None:
            replied = chat.messages.get(self.reply_to)
            if replied is not None and not replied.deleted:
                msg["reply_to_message"] = replied.to_message(with_reply=False)
        if self.text is not None:
            msg["text"] = self.text
            if self.entities:
                msg["entities"] = self.entities
        msg.update(self.media)
        if self.caption is not None:
            msg["caption"] = self.caption
            if self.caption_entities:
                msg["caption_entities"] = self.caption_entities
        msg.update(self.extra)
        # Telegram echoes only inline keyboards in Message objects
        if self.reply_markup is not None and "inline_keyboard" in self.reply_markup:
            msg["reply_markup"] = self.reply_markup
        return msg

    def to_view(self) -> dict[str, Any]:
        """The control API's flat view of the message (for tests and the chat page)."""
        return {
            "message_id": self.message_id,
            "from_bot": self.from_bot,
            "kind": self.kind,
            "text": self.text,
            "html": self.html,
            "parse_mode": self.parse_mode,
            "entities": self.entities,
            "caption": self.caption,
            "caption_html": self.caption_html,
            "media": self.media or None,
            "reply_markup": self.reply_markup,
            "protect_content": self.protect_content,
            "deleted": self.deleted,
            "edited": self.edit_date is not None,
            "edit_count": len(self.edits),
            "edit_date": self.edit_date,
            "date": self.date,
            "reply_to_message_id": self.reply_to,
            "forwarded": self.forward_origin is not None,
        }


class ChatState:
    """The private chat between one user and one bot (chat id = user id)."""

    __slots__ = ("bot", "user", "messages", "bot_message_ids", "next_message_id", "version",
                 "signal", "blocked", "started", "menu_button")

    def __init__(self, bot: "BotState", user: dict[str, Any]) -> None:
        self.bot = bot
        self.user = user
        self.messages: dict[int, StoredMessage] = {}
        self.bot_message_ids: list[int] = []  # ascending, for "first bot message after N"
        self.next_message_id = 1
        self.version = 0
        self.signal = Signal()
        self.blocked = False
        self.started = False  # the user has written to the bot: the bot may now message them
        self.menu_button: dict[str, Any] | None = None

    @property
    def chat_id(self) -> int:
        return self.user["id"]

    def chat_dict(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.user["id"], "type": "private", "first_name": self.user["first_name"]}
        for key in ("last_name", "username"):
            if self.user.get(key):
                chat[key] = self.user[key]
        return chat

    def new_message(self, from_bot: bool, date: int, kind: str) -> StoredMessage:
        msg = StoredMessage(self, self.next_message_id, from_bot, date, kind)
        self.next_message_id += 1
        self.messages[msg.message_id] = msg
        if from_bot:
            self.bot_message_ids.append(msg.message_id)
        return msg

    def changed(self) -> None:
        self.version += 1
        self.signal.fire()

    def first_bot_message_after(self, after: int) -> StoredMessage | None:
        idx = bisect.bisect_right(self.bot_message_ids, after)
        if idx < len(self.bot_message_ids):
            return self.messages[self.bot_message_ids[idx]]
        return None

    def bot_messages_after(self, after: int) -> list[StoredMessage]:
        idx = bisect.bisect_right(self.bot_message_ids, after)
        return [self.messages[i] for i in self.bot_message_ids[idx:]]


class QueuedUpdate:
    __slots__ = ("update", "delivered", "replay", "attempts")

    def __init__(self, update: dict[str, Any], replay: bool = False) -> None:
        self.update = update
        self.delivered = False
        # a re-sent (duplicate or out-of-order) update id: not confirmed by an offset before
        # it has been delivered once, so tests can make Telegram "send an update twice"
        self.replay = replay
        self.attempts = 0

    @property
    def update_id(self) -> int:
        return self.update["update_id"]

    @property
    def kind(self) -> str:
        return next((k for k in self.update if k != "update_id"), "")


class Fault:
    __slots__ = ("error_code", "remaining", "retry_after", "description")

    def __init__(self, error_code: int, remaining: int, retry_after: int | None, description: str | None) -> None:
        self.error_code = error_code
        self.remaining = remaining
        self.retry_after = retry_after
        self.description = description

    def to_error(self) -> ApiError:
        code = self.error_code
        if code == 429:
            retry_after = self.retry_after if self.retry_after is not None else 1
            return ApiError(429, self.description or f"Too Many Requests: retry after {retry_after}", retry_after)
        defaults = {
            400: "Bad Request: injected fault",
            401: "Unauthorized",
            403: "Forbidden: bot was blocked by the user",
            404: "Not Found",
            409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }
        return ApiError(code, self.description or defaults.get(code, "Internal Server Error"), self.retry_after)


class BotState:
    """Everything the emulator knows about one bot token."""

    def __init__(self, emulator: "BotApiEmulator", token: str, bot_id: int, max_calls: int) -> None:
        self.emulator = emulator
        self.token = token
        self.id = bot_id
        self.username = f"sandbox_{bot_id}_bot"
        self.first_name = "Sandbox Bot"
        self.names: dict[str, str] = {}
        self.chats: dict[int, ChatState] = {}
        self.queue: collections.deque[QueuedUpdate] = collections.deque()
        self.next_update_id = 1
        self.updates_signal = Signal()
        self.poll_generation = 0
        self.allowed_updates: list[str] = []
        self.webhook: dict[str, Any] | None = None
        self.webhook_task: asyncio.Task[None] | None = None
        self.webhook_attempts = 0
        self.webhook_delivered = 0
        self.webhook_last_error_date: int | None = None
        self.webhook_last_error_message: str | None = None
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.default_menu_button: dict[str, Any] = {"type": "commands"}
        self.callback_queries: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, collections.deque[Fault]] = {}
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_calls)

    def user_dict(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    def me(self) -> dict[str, Any]:
        return {
            **self.user_dict(),
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def chat_for(self, user: dict[str, Any]) -> ChatState:
        chat = self.chats.get(user["id"])
        if chat is None:
            chat = self.chats[user["id"]] = ChatState(self, user)
        return chat

    def take_fault(self, method: str) -> ApiError | None:
        for key in (method.lower(), "*"):
            queue = self.faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault.to_error()
        return None

    def webhook_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.queue),
        }
        if self.webhook:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            if self.webhook.get("allowed_updates"):
                info["allowed_updates"] = self.webhook["allowed_updates"]
            if self.webhook_last_error_date is not None:
                info["last_error_date"] = self.webhook_last_error_date
                info["last_error_message"] = self.webhook_last_error_message
        return info


class BotApiEmulator:
    """State of the fake Telegram: bots by token, users, chats, messages, updates, files."""

    def __init__(self, *, max_calls: int = 100_000) -> None:
        self.bots: dict[str, BotState] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.clock_offset = 0.0
        self.closing = False
        self.max_calls = max_calls
        self._user_ids = itertools.count(FIRST_USER_ID)
        self._file_counter = itertools.count(1)
        self._callback_counter = itertools.count(1)
        self._callback_prefix = str(secrets.randbelow(9_000_000) + 1_000_000)
        self._http: Any = None  # aiohttp.ClientSession for webhook delivery, created lazily

    # ---- clock -------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_int(self) -> int:
        return int(self.now())

    def advance_clock(self, seconds: float) -> float:
        self.clock_offset += float(seconds)
        return self.clock_offset

    # ---- bots --------------------------------------------------------------------------------

    def get_bot(self, token: str) -> BotState | None:
        """The bot for a token; any well-formed token creates one lazily. None if malformed."""
        bot = self.bots.get(token)
        if bot is None:
            m = TOKEN_RE.match(token)
            if m is None:
                return None
            bot = self.bots[token] = BotState(self, token, int(m.group(1)), self.max_calls)
        return bot

    def require_bot(self, token: str) -> BotState:
        bot = self.get_bot(token)
        if bot is None:
            raise ApiError(401, "Unauthorized")
        return bot

    # ---- users -------------------------------------------------------------------------------

    def create_user(self, first_name: str = "Test", last_name: str | None = None,
                    username: str | None = None, language_code: str | None = "ar",
                    is_premium: bool | None = None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": next(self._user_ids), "is_bot": False, "first_name": first_name or "Test"}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        if is_premium:
            user["is_premium"] = True
        self.users[user["id"]] = user
        return dict(user)

    def get_user(self, user_id: int) -> dict[str, Any]:
        user = self.users.get(int(user_id))
        if user is None:
            raise LookupError("unknown user")
        return user

    def set_blocked(self, bot: BotState, user_id: int, blocked: bool) -> None:
        bot.chat_for(self.get_user(user_id)).blocked = bool(blocked)

    # ---- files -------------------------------------------------------------------------------

    def store_file(self, content: bytes, *, folder: str, extension: str = "", mime_type: str | None = None,
                   file_name: str | None = None, file_size: int | None = None) -> StoredFile:
        n = next(self._file_counter)
        file_id = f"SBX{n}_{secrets.token_urlsafe(18)}"
        unique_id = f"U{n}{secrets.token_hex(4)}"
        path = f"{folder}/file_{n}{extension}"
        stored = StoredFile(file_id, unique_id, bytes(content), file_size if file_size is not None else len(content),
                            path, mime_type, file_name)
        self.files[file_id] = stored
        self.files_by_path[path] = stored
        return stored

    # ---- updates -----------------------------------------------------------------------------

    def enqueue_update(self, bot: BotState, update: dict[str, Any]) -> int:
        """Queue an update (assigning update_id when missing) and wake pollers / the webhook."""
        update_id = update.get("update_id")
        replay = False
        if update_id is None:
            update_id = bot.next_update_id
            update = {"update_id": update_id, **update}
        else:
            update_id = int(update_id)
            replay = update_id < bot.next_update_id
        bot.next_update_id = max(bot.next_update_id, update_id + 1)
        queued = QueuedUpdate(update, replay=replay)
        allowed = bot.webhook.get("allowed_updates") if bot.webhook else bot.allowed_updates
        if allowed and queued.kind not in allowed:
            return update_id  # Telegram never creates updates of types the bot did not ask for
        bot.queue.append(queued)
        bot.updates_signal.fire()
        return update_id

    def inject_update(self, bot: BotState, update: dict[str, Any]) -> int:
        """Queue an arbitrary update as if Telegram sent it.

        A callback query in it becomes answerable (once), since Telegram only delivers query
        ids it issued; a duplicate of an answered query stays answered.
        """
        query = update.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("id"), str):
            chat_id = (query.get("from") or {}).get("id")
            bot.callback_queries.setdefault(query["id"], {"answered": False, "chat_id": chat_id, "answer": None})
        return self.enqueue_update(bot, update)

    def confirm_updates(self, bot: BotState, offset: int) -> None:
        queue = bot.queue
        if offset < 0:
            keep = -offset
            while len(queue) > keep:
                queue.popleft()
            return
        while queue and queue[0].update_id < offset and (queue[0].delivered or not queue[0].replay):
            queue.popleft()

    # ---- what users do (the control API) ------------------------------------------------------

    def user_message(self, bot: BotState, user_id: int, kind: str = "text", **fields: Any) -> tuple[int, StoredMessage]:
        """A user sends something to the bot: store the Message and queue an Update."""
        user = self.get_user(user_id)
        chat = bot.chat_for(user)
        chat.started = True
        msg = chat.new_message(False, self.now_int(), kind)
        if kind == "text":
            text = fields.get("text")
            if not isinstance(text, str) or not text:
                raise ValueError("text is required")
            msg.text = text
            m = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?", text)
            if m:
                msg.entities = [{"type": "bot_command", "offset": 0, "length": len(m.group(0))}]
            if fields.get("entities"):
                msg.entities = fields["entities"]
        elif kind == "sticker":
            msg.media = {"sticker": {
                "file_id": f"SBXSTICKER_{secrets.token_urlsafe(12)}", "file_unique_id": secrets.token_hex(6),
                "type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False,
                "emoji": fields.get("emoji") or "🙂", "set_name": "SandboxStickers",
            }}
        elif kind == "location":
            msg.media = {"location": {"latitude": float(fields.get("latitude", 31.9)),
                                      "longitude": float(fields.get("longitude", 35.2))}}
        elif kind == "contact":
            msg.media = {"contact": {"phone_number": str(fields.get("phone_number") or "+970590000000"),
                                     "first_name": user["first_name"], "user_id": user["id"]}}
        elif kind in ("photo", "document", "voice", "video", "video_note", "audio", "animation"):
            content: bytes = fields.get("content") or b""
            declared = fields.get("file_size")
            if kind == "photo":
                stored = self.store_file(content, folder="photos", extension=".jpg", mime_type="image/jpeg",
                                         file_size=declared)
                thumb = self.store_file(content, folder="photos", extension=".jpg", mime_type="image/jpeg",
                                        file_size=declared)
                width, height = fields.get("width", 1280), fields.get("height", 960)
                msg.media = {"photo": [
                    {**thumb.to_file(False), "width": 90, "height": max(1, 90 * height // max(width, 1))},
                    {**stored.to_file(False), "width": width, "height": height},
                ]}
            elif kind in ("video", "video_note", "audio", "animation"):
                msg.media = self._media_file(kind, fields)
            elif kind == "voice":
                stored = self.store_file(content, folder="voice", extension=".oga", mime_type="audio/ogg",
                                         file_size=declared)
                msg.media = {"voice": {**stored.to_file(False), "duration": int(fields.get("duration", 2)),
                                       "mime_type": "audio/ogg"}}
            else:
                name = fields.get("filename") or "file.bin"
                ext = "." + name.rsplit(".", 1)[1][:10] if "." in name else ""
                mime = fields.get("mime_type") or "application/octet-stream"
                stored = self.store_file(content, folder="documents", extension=ext, mime_type=mime,
                                         file_name=name, file_size=declared)
                msg.media = {"document": {**stored.to_file(False), "file_name": name, "mime_type": mime}}
            if fields.get("caption"):
                msg.caption = fields["caption"]
        else:
            raise ValueError(f"unknown message kind {kind!r}")
        if fields.get("media_group_id"):
            msg.extra["media_group_id"] = str(fields["media_group_id"])
        if fields.get("forward_origin"):
            origin = fields["forward_origin"]
            msg.forward_origin = origin if isinstance(origin, dict) else {
                "type": "hidden_user", "sender_user_name": str(origin), "date": self.now_int() - 60}
        chat.changed()
        update_id = self.enqueue_update(bot, {"message": msg.to_message()})
        return update_id, msg

    # Telegram's own shapes: a video note has no MIME type or name; an animation is also a document.
    _MEDIA_DEFAULTS: dict[str, tuple[str, str, str]] = {
        "video": ("videos", ".mp4", "video/mp4"),
        "video_note": ("video_notes", ".mp4", "video/mp4"),
        "audio": ("music", ".mp3", "audio/mpeg"),
        "animation": ("animations", ".mp4", "video/mp4"),
    }

    def _media_file(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        folder, extension, default_mime = self._MEDIA_DEFAULTS[kind]
        mime = fields.get("mime_type") or default_mime
        name = fields.get("filename")
        stored = self.store_file(fields.get("content") or b"", folder=folder, extension=extension,
                                 mime_type=mime, file_name=name, file_size=fields.get("file_size"))
        duration = int(fields.get("duration", 3))
        if kind == "video_note":
            return {"video_note": {**stored.to_file(False), "length": int(fields.get("width", 240)),
                                   "duration": duration}}
        described = {**stored.to_file(False), "duration": duration, "mime_type": mime}
        if name:
            described["file_name"] = name
        if kind == "audio":
            return {"audio": described}
        described.update(width=int(fields.get("width", 640)), height=int(fields.get("height", 360)))
        if kind == "video":
            return {"video": described}
        document = {**stored.to_file(False), "mime_type": mime, **({"file_name": name} if name else {})}
        return {"animation": described, "document": document}

    def user_media_group(self, bot: BotState, user_id: int, items: list[dict[str, Any]],
                         caption: str | None = None) -> tuple[str, list[tuple[int, StoredMessage]]]:
        """A user sends an album: one message and update per item, all with one new
        ``media_group_id``; ``caption`` goes on the first item, as Telegram clients do."""
        if not 2 <= len(items) <= 10:
            raise ValueError("an album has 2 to 10 items")
        kinds = {str(item.get("kind") or "photo") for item in items}
        if not (kinds <= {"photo", "video"} or kinds == {"document"} or kinds == {"audio"}):
            raise ValueError("an album holds photos and videos, or only documents, or only audio")
        group_id = str(next(self._file_counter) * 1_000_003 + 13_000_000_000_000_000)
        sent = []
        for number, item in enumerate(items):
            fields = {k: v for k, v in item.items() if k != "kind"}
            if number == 0 and caption:
                fields["caption"] = caption
            sent.append(self.user_message(bot, user_id, str(item.get("kind") or "photo"),
                                          media_group_id=group_id, **fields))
        return group_id, sent

    def press_button(self, bot: BotState, user_id: int, message_id: int, data: str) -> tuple[int, str]:
        user = self.get_user(user_id)
        chat = bot.chats.get(user["id"])
        msg = chat.messages.get(int(message_id)) if chat else None
        if msg is None or not msg.from_bot:
            raise LookupError("no such bot message in this chat")
        query_id = f"{self._callback_prefix}{next(self._callback_counter):010d}"
        bot.callback_queries[query_id] = {"answered": False, "chat_id": user["id"], "answer": None}
        query = {
            "id": query_id,
            "from": dict(user),
            "message": msg.to_message(),
            "chat_instance": f"{bot.id % 1_000_000}{user['id']}",
            "data": data,
        }
        update_id = self.enqueue_update(bot, {"callback_query": query})
        return update_id, query_id

    # ---- faults & calls ----------------------------------------------------------------------

    def add_fault(self, bot: BotState, method: str, error_code: int, count: int = 1,
                  retry_after: int | None = None, description: str | None = None) -> None:
        bot.faults.setdefault(method.lower(), collections.deque()).append(
            Fault(int(error_code), max(1, int(count)), retry_after, description))

    def calls(self, bot: BotState, method: str | None = None) -> list[dict[str, Any]]:
        if not method:
            return list(bot.calls)
        wanted = method.lower()
        return [c for c in bot.calls if c["method"].lower() == wanted]

    # ---- waiting -----------------------------------------------------------------------------

    async def wait_chat(self, chat: ChatState, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if self.closing:
                return False
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await chat.signal.wait(remaining):
                return predicate()
        return True

    # ---- Bot API entry point -----------------------------------------------------------------

    async def call(self, token: str, method: str, params: dict[str, Any],
                   files: dict[str, tuple[str, bytes, str | None]] | None = None) -> tuple[int, dict[str, Any]]:
        """Run one Bot API method; returns (http_status, response_json)."""
        from .botapi import dispatch  # local import: botapi imports this module

        return await dispatch(self, token, method, params, files or {})

    # ---- lifecycle ---------------------------------------------------------------------------

    async def http_session(self) -> Any:
        import aiohttp

        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def wake_all(self) -> None:
        for bot in self.bots.values():
            bot.updates_signal.fire()
            for chat in bot.chats.values():
                chat.signal.fire()

    async def close(self) -> None:
        """Stop webhook delivery and release every long-poll so the server can shut down fast."""
        self.closing = True
        tasks = [b.webhook_task for b in self.bots.values() if b.webhook_task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self.wake_all()
        if self._http is not None:
            await self._http.close()
            self._http = None


AsyncHandler = Callable[..., Awaitable[Any]]
