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

from .entities import find_entities, with_found_entities
from .formatting import ApiError
from .polls import StoredPoll, user_poll

__all__ = ["BotApiEmulator", "BotState", "ChatState", "StoredMessage", "StoredFile", "Signal", "ApiError"]

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]{20,}$")
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
DELETE_WINDOW_SECONDS = 48 * 3600
# answerCallbackQuery on a query older than this (emulator clock) fails as on Telegram.
CALLBACK_ANSWER_WINDOW_SECONDS = 15.0
# The bot's statuses in a group or channel in which it is (still) a member.
PRESENT_STATUSES = ("creator", "administrator", "member", "restricted")
# Kinds of user messages that carry a file: kind -> (folder, extension, default MIME type).
FILE_KINDS = {
    "video": ("videos", ".mp4", "video/mp4"),
    "video_note": ("video_notes", ".mp4", None),
    "audio": ("music", ".mp3", "audio/mpeg"),
    "animation": ("animations", ".mp4", "video/mp4"),
}
FIRST_USER_ID = 700_000_001
MAX_BATCH_USERS = 200_000  # users one create_started_users call makes
# What a bot gets when it never chose (or chose an empty list of) allowed_updates: everything
# except these, as the Bot API documents for getUpdates and setWebhook.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class Signal:
    """A broadcast wake-up: ``fire()`` wakes every current waiter."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def next_fire(self) -> asyncio.Event:
        """The event the next fire sets, taken now: a waiter created before it starts
        running cannot miss a fire in between."""
        return self._event

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
        "edit_date", "edits", "media", "forward_origin", "reply_to", "extra", "sender", "poll",
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
        self.sender: dict[str, Any] | None = None  # the user who wrote it, in a group chat
        self.poll: StoredPoll | None = None  # a poll or quiz (kind "poll"), shared state with its votes

    def to_message(self, with_reply: bool = True) -> dict[str, Any]:
        """The Bot API ``Message`` object as it is now."""
        chat = self.chat
        msg: dict[str, Any] = {"message_id": self.message_id}
        if self.from_bot:
            msg["from"] = chat.bot.user_dict()
        elif chat.group is not None and chat.group["type"] == "channel":
            msg["sender_chat"] = chat.chat_dict()  # channel posts have no "from"
        else:
            msg["from"] = (self.sender or chat.user).copy()
        msg["chat"] = chat.chat_dict()
        msg["date"] = self.date
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
        if self.poll is not None:
            # a quiz's solution only to the bot that sent it (or once closed), as on Telegram
            msg["poll"] = self.poll.to_poll(with_solution=self.poll.owner is chat.bot)
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
            "caption_entities": self.caption_entities,
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
            "poll": self.poll.view(self.chat.user.get("id")) if self.poll is not None else None,
        }


class ChatState:
    """The private chat between one user and one bot (chat id = user id), or, with
    ``group`` (a Chat dict: id, type group|supergroup|channel, title), a group or channel
    as one bot sees it: its messages and the bot's ``member_status`` there."""

    __slots__ = ("bot", "user", "messages", "bot_message_ids", "next_message_id", "version",
                 "signal", "blocked", "started", "menu_button", "group", "member_status")

    def __init__(self, bot: "BotState", user: dict[str, Any], group: dict[str, Any] | None = None) -> None:
        self.bot = bot
        self.user = user
        self.group = group
        self.member_status = "left"
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
        return self.group["id"] if self.group is not None else self.user["id"]

    def chat_dict(self) -> dict[str, Any]:
        if self.group is not None:
            return dict(self.group)
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


def _member(bot: BotState, status: str) -> dict[str, Any]:
    """A ChatMember object for the bot with ``status`` (the fields aiogram requires)."""
    member: dict[str, Any] = {"user": bot.user_dict(), "status": status}
    if status == "administrator":
        member.update({flag: False for flag in (
            "can_be_edited", "is_anonymous", "can_manage_video_chats", "can_restrict_members",
            "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
            "can_edit_stories", "can_delete_stories", "can_send_welcome_messages")})
        member.update({"can_manage_chat": True, "can_delete_messages": True, "can_post_messages": True})
    elif status == "kicked":
        member["until_date"] = 0
    return member


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


class WebhookDelivery:
    """How the emulator POSTs a bot's updates to its webhook. By default as Telegram does:
    to the URL given to setWebhook, the updates of one chat one after the other (the next
    only once the previous was answered 2xx), those of different chats in parallel up to the
    webhook's ``max_connections``, a POST unanswered after 15 s counting as failed.

    Test-only extensions (set with the control API, ``POST /sandbox/api/webhook/delivery``),
    standing in for a reverse proxy in front of several bot replicas:

    * ``urls``: deliver to these URLs instead of the webhook's own;
    * ``mode``: ``"round_robin"`` (each attempt, retries included, goes to the next URL) or
      ``"all"`` (every update to every URL, each retried until it answers 2xx: the same
      update reaching two replicas);
    * ``concurrency``: at most this many updates in flight at once instead of
      ``max_connections`` (1: strictly one at a time, in order);
    * ``timeout``: seconds before an unanswered POST counts as failed (and is retried).
    """

    MODES = ("round_robin", "all")
    LOG_SIZE = 10_000

    def __init__(self, urls: list[str] | None = None, mode: str = "round_robin", concurrency: int | None = None,
                 timeout: float = 15.0) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}")
        if (concurrency is not None and concurrency < 1) or timeout <= 0:
            raise ValueError("concurrency must be >= 1 and timeout > 0")
        self.urls = list(urls or [])
        self.mode = mode
        self.concurrency = concurrency
        self.timeout = timeout
        self._cursor = 0

    def limit(self, webhook: dict[str, Any]) -> int:
        """How many updates may be in flight at once."""
        if self.concurrency is not None:
            return self.concurrency
        return max(1, int(webhook.get("max_connections") or 40))

    def targets(self, webhook_url: str) -> list[str]:
        """The URLs of one attempt."""
        urls = self.urls or [webhook_url]
        if self.mode == "all":
            return urls
        url = urls[self._cursor % len(urls)]
        self._cursor += 1
        return [url]

    def to_view(self) -> dict[str, Any]:
        return {"urls": self.urls, "mode": self.mode, "concurrency": self.concurrency, "timeout": self.timeout}


def update_chat_key(update: dict[str, Any]) -> int | None:
    """The chat whose updates Telegram delivers one after the other: the chat of a message
    (or of a pressed button's message), else the user it came from; None if neither."""
    for key, payload in update.items():
        if key == "update_id" or not isinstance(payload, dict):
            continue
        chat = payload.get("chat")
        if not isinstance(chat, dict) and isinstance(payload.get("message"), dict):
            chat = payload["message"].get("chat")
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return chat["id"]
        for field in ("from", "user", "voter_chat"):
            who = payload.get(field)
            if isinstance(who, dict) and isinstance(who.get("id"), int):
                return who["id"]
    return None


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
        self.webhook_delivery = WebhookDelivery()
        # Every webhook POST: {update_id, url, status (None: no answer), error}, the oldest
        # dropped past WebhookDelivery.LOG_SIZE.
        self.webhook_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=WebhookDelivery.LOG_SIZE)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.default_menu_button: dict[str, Any] = {"type": "commands"}
        self.callback_queries: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, collections.deque[Fault]] = {}
        # The call log, capped at max_calls (the oldest records go first): calls_dropped
        # counts what was dropped, so a truncated log is never mistaken for a complete one.
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_calls)
        self.calls_dropped = 0
        self.unknown_methods: dict[str, int] = {}  # methods the emulator does not model -> calls
        # timed polls still open: poll id -> (poll, chat), closed when the clock passes close_date
        self.timed_polls: dict[str, tuple[StoredPoll, ChatState]] = {}

    def log_call(self, record: dict[str, Any]) -> None:
        """Append to the call log (O(1)), counting the record the cap pushes out."""
        calls = self.calls
        if calls.maxlen is not None and len(calls) >= calls.maxlen:
            self.calls_dropped += 1
        calls.append(record)

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

    def group_chat(self, group: dict[str, Any]) -> ChatState:
        """This bot's view of a group or channel (``group``: its Chat dict)."""
        chat = self.chats.get(group["id"])
        if chat is None:
            chat = self.chats[group["id"]] = ChatState(self, {}, group)
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
        self.groups: dict[int, dict[str, Any]] = {}  # group and channel Chat dicts by id
        self._group_ids = itertools.count(1)
        self.callback_answer_window = CALLBACK_ANSWER_WINDOW_SECONDS
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.photo_sizes: dict[str, list[dict[str, Any]]] = {}  # any size's file_id -> all sizes
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

    def create_started_users(self, bot: BotState, count: int, language_code: str | None = "ar",
                             first_name: str = "Subscriber") -> list[int]:
        """``count`` users, each with a private chat with ``bot`` that exists as if they had
        pressed /start (the bot may message them), without any update queued; their ids.
        For broadcast tests: O(count), no per-user HTTP call."""
        if not 1 <= count <= MAX_BATCH_USERS:
            raise ValueError(f"count must be from 1 to {MAX_BATCH_USERS}")
        ids = []
        for _ in range(count):
            user = self.create_user(first_name=first_name, language_code=language_code)
            bot.chat_for(self.users[user["id"]]).started = True
            ids.append(user["id"])
        return ids

    def get_user(self, user_id: int) -> dict[str, Any]:
        user = self.users.get(int(user_id))
        if user is None:
            raise LookupError("unknown user")
        return user

    def set_blocked(self, bot: BotState, user_id: int, blocked: bool) -> None:
        bot.chat_for(self.get_user(user_id)).blocked = bool(blocked)

    # ---- groups and channels -----------------------------------------------------------------

    def create_group(self, chat_type: str = "group", title: str = "Sandbox group") -> dict[str, Any]:
        """A group, supergroup or channel (ids as on Telegram: -4... for groups, -100... else)."""
        if chat_type not in ("group", "supergroup", "channel"):
            raise ValueError("type must be group, supergroup or channel")
        n = next(self._group_ids)
        chat_id = -(4_000_000_000 + n) if chat_type == "group" else -(1_002_000_000_000 + n)
        group = {"id": chat_id, "type": chat_type, "title": title or "Sandbox group"}
        self.groups[chat_id] = group
        return dict(group)

    def get_group(self, chat_id: int) -> dict[str, Any]:
        group = self.groups.get(int(chat_id))
        if group is None:
            raise LookupError("unknown group")
        return group

    def set_bot_status(self, bot: BotState, chat_id: int, status: str, by_user_id: int) -> int:
        """Someone (``by_user_id``) adds, promotes, removes or bans the bot in a group or
        channel: the status changes and a ``my_chat_member`` update is queued. Statuses:
        member, administrator, left, kicked."""
        if status not in ("member", "administrator", "left", "kicked"):
            raise ValueError("status must be member, administrator, left or kicked")
        chat = bot.group_chat(self.get_group(chat_id))
        old = chat.member_status
        chat.member_status = status
        chat.changed()
        return self.enqueue_update(bot, {"my_chat_member": self._member_update(
            bot, chat, self.get_user(by_user_id), old, status)})

    def _member_update(self, bot: BotState, chat: ChatState, by: dict[str, Any], old: str,
                       new: str) -> dict[str, Any]:
        return {"chat": chat.chat_dict(), "from": dict(by), "date": self.now_int(),
                "old_chat_member": _member(bot, old), "new_chat_member": _member(bot, new)}

    def bot_left(self, bot: BotState, chat: ChatState) -> None:
        """leaveChat: the bot is gone, and Telegram tells it so (``my_chat_member``)."""
        old, chat.member_status = chat.member_status, "left"
        chat.changed()
        self.enqueue_update(bot, {"my_chat_member": self._member_update(bot, chat, bot.user_dict(), old, "left")})

    def group_message(self, bot: BotState, chat_id: int, user_id: int | None, text: str) -> tuple[int | None, StoredMessage]:
        """A user writes ``text`` in a group (a ``message`` update), or a channel posts it
        (``channel_post``; no user). A bot that is not a member gets no update (None)."""
        if not isinstance(text, str) or not text:
            raise ValueError("text is required")
        chat = bot.group_chat(self.get_group(chat_id))
        msg = chat.new_message(False, self.now_int(), "text")
        msg.text = text
        if chat.group is not None and chat.group["type"] != "channel":
            msg.sender = dict(self.get_user(user_id if user_id is not None else -1))
        msg.entities = find_entities(text) or None  # as the user's Telegram app marks them
        chat.changed()
        if chat.member_status not in PRESENT_STATUSES:
            return None, msg
        kind = "channel_post" if chat.group is not None and chat.group["type"] == "channel" else "message"
        return self.enqueue_update(bot, {kind: msg.to_message()}), msg

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

    def store_photo(self, content: bytes, width: int = 1280, height: int = 960,
                    file_size: int | None = None) -> list[dict[str, Any]]:
        """A photo as Telegram keeps one: its sizes (a 90 px wide thumbnail, then the photo),
        each a PhotoSize dict with its own file_id. Any of those file_ids sends the same sizes
        again (``photo_sizes``)."""
        thumb = self.store_file(content, folder="photos", extension=".jpg", mime_type="image/jpeg",
                                file_size=file_size)
        full = self.store_file(content, folder="photos", extension=".jpg", mime_type="image/jpeg",
                               file_size=file_size)
        sizes = [
            {**thumb.to_file(False), "width": 90, "height": max(1, 90 * height // max(width, 1))},
            {**full.to_file(False), "width": width, "height": height},
        ]
        for size in sizes:
            self.photo_sizes[size["file_id"]] = sizes
        return sizes

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
        if (queued.kind not in allowed) if allowed else (queued.kind in NOT_BY_DEFAULT):
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
            bot.callback_queries.setdefault(
                query["id"], {"answered": False, "chat_id": chat_id, "answer": None, "at": self.now()})
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
            # what the user's Telegram app finds (a command anywhere, links, mentions, ...),
            # added to any entities the test gives
            msg.entities = with_found_entities(text, fields.get("entities") or None)
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
        elif kind == "poll":
            msg.poll = user_poll(str(fields.get("question") or "?"), fields.get("options") or ["Yes", "No"])
        elif kind in FILE_KINDS:
            folder, ext, default_mime = FILE_KINDS[kind]
            name = fields.get("filename")
            if name and "." in name:
                ext = "." + name.rsplit(".", 1)[1][:10]
            mime = fields.get("mime_type") or default_mime
            stored = self.store_file(fields.get("content") or b"", folder=folder, extension=ext,
                                     mime_type=mime, file_name=name, file_size=fields.get("file_size"))
            media: dict[str, Any] = {**stored.to_file(False), "duration": int(fields.get("duration", 3))}
            if kind == "video_note":
                media["length"] = int(fields.get("length", 240))  # a round video: no name, no MIME type
            else:
                if mime:
                    media["mime_type"] = mime
                if name:
                    media["file_name"] = name
            if kind in ("video", "animation"):
                media.update(width=int(fields.get("width", 640)), height=int(fields.get("height", 480)))
            if kind == "audio":
                for key in ("performer", "title"):
                    if fields.get(key):
                        media[key] = str(fields[key])
            msg.media = {kind: media}
            if kind == "animation":  # Telegram sends a GIF as both animation and document
                msg.media["document"] = {k: v for k, v in media.items()
                                         if k not in ("duration", "width", "height")}
            if fields.get("caption") and kind != "video_note":
                msg.caption = fields["caption"]
                msg.caption_entities = find_entities(msg.caption) or None
        elif kind in ("photo", "document", "voice"):
            content: bytes = fields.get("content") or b""
            declared = fields.get("file_size")
            if kind == "photo":
                msg.media = {"photo": self.store_photo(content, int(fields.get("width", 1280)),
                                                       int(fields.get("height", 960)), declared)}
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
                msg.caption_entities = find_entities(msg.caption) or None
        else:
            raise ValueError(f"unknown message kind {kind!r}")
        if fields.get("media_group_id") and msg.media:
            msg.extra["media_group_id"] = str(fields["media_group_id"])  # an album
        if fields.get("forward_origin"):
            origin = fields["forward_origin"]
            msg.forward_origin = origin if isinstance(origin, dict) else {
                "type": "hidden_user", "sender_user_name": str(origin), "date": self.now_int() - 60}
        chat.changed()
        update_id = self.enqueue_update(bot, {"message": msg.to_message()})
        return update_id, msg

    def user_edit(self, bot: BotState, user_id: int, message_id: int, *, text: str | None = None,
                  caption: str | None = None) -> tuple[int, StoredMessage]:
        """The user edits one of their messages (its text, or a file's caption): the message
        changes and an ``edited_message`` update with ``edit_date`` is queued. ValueError for
        an edit Telegram would not allow; LookupError for no such user message."""
        user = self.get_user(user_id)
        chat = bot.chats.get(user["id"])
        msg = chat.messages.get(int(message_id)) if chat else None
        if msg is None or msg.from_bot or msg.deleted:
            raise LookupError("no such user message in this chat")
        if text is not None:
            if msg.kind != "text" or not isinstance(text, str) or not text.strip():
                raise ValueError("only a text message's text can be edited, to non-empty text")
            if text == msg.text:
                raise ValueError("message is not modified")
            msg.text, msg.entities = text, find_entities(text) or None
        elif caption is not None:
            if msg.kind not in ("photo", "document", "voice", "video", "audio", "animation"):
                raise ValueError("this message has no caption to edit")
            msg.caption = caption or None
            msg.caption_entities = find_entities(caption) or None if caption else None
        else:
            raise ValueError("text or caption is required")
        msg.edits.append({"at": self.now_int(), "text": msg.text, "html": None, "caption": msg.caption,
                          "reply_markup": None})
        msg.edit_date = self.now_int()
        chat.changed()
        return self.enqueue_update(bot, {"edited_message": msg.to_message()}), msg

    def press_button(self, bot: BotState, user_id: int, message_id: int, data: str) -> tuple[int, str]:
        user = self.get_user(user_id)
        chat = bot.chats.get(user["id"])
        msg = chat.messages.get(int(message_id)) if chat else None
        if msg is None or not msg.from_bot:
            raise LookupError("no such bot message in this chat")
        query_id = f"{self._callback_prefix}{next(self._callback_counter):010d}"
        bot.callback_queries[query_id] = {"answered": False, "chat_id": user["id"], "answer": None, "at": self.now()}
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

    def calls(self, bot: BotState, method: str | None = None, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """The call log, oldest first, optionally of one method (case-insensitive) and/or
        one ``chat_id``. Each record: ``{method, params, at (emulator clock, s), mono
        (time.monotonic() of the call, s), chat_id, ok, error_code, description?, unknown}``.
        ``bot.calls_dropped`` says how many older records the cap has dropped."""
        records: Any = bot.calls
        if method:
            wanted = method.lower()
            records = (c for c in records if c["method"].lower() == wanted)
        if chat_id is not None:
            records = (c for c in records if str(c.get("chat_id")) == str(chat_id))
        return list(records)

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
