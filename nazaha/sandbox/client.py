"""Async helper for the sandbox control API: act as Telegram users from tests and benchmarks."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

import aiohttp

from . import LOCAL_CONTROL_KEYS

__all__ = ["SandboxClient", "SandboxControlError", "CallLogTruncated"]


class CallLogTruncated(Exception):
    """The emulator's call log reached its cap and dropped its oldest records: counts made
    from it would be wrong. Clear the log between phases, or raise ``max_calls``."""

    def __init__(self, dropped: int) -> None:
        super().__init__(f"the sandbox call log dropped its {dropped} oldest records (max_calls reached)")
        self.dropped = dropped


class SandboxControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


# A 1x1 white JPEG, for "send a photo" when the caller does not care about the bytes.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABsSFBcUERsXFhceHBsgKEIrKCUlKFE6PTBCYFVlZF9VXVtqeJmBanGQc1tdhbWGkJ6jq62rZ4C8"
    "ybqmx5moq6T/2wBDARweHigjKE4rK06kbl1upKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKT/wAAR"
    "CAABAAEDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEG"
    "E1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWG"
    "h4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEB"
    "AQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYk"
    "NOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0"
    "tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDpqKKKAP/Z"
)


class SandboxClient:
    """``async with SandboxClient(server.url) as c: user = await c.create_user()``.

    Every method takes an optional ``token=`` to act on a bot other than the server's default.
    ``key`` is the server's per-run control key (``SandboxServer.control_key``); by default
    the key of a server started at ``base_url`` in this process.
    """

    def __init__(self, base_url: str, token: str | None = None, *, key: str | None = None,
                 session: aiohttp.ClientSession | None = None, connection_limit: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.key = key
        self._session = session
        self._own_session = session is None
        self._limit = connection_limit

    async def __aenter__(self) -> "SandboxClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._limit))
            self._own_session = True
        return self._session

    def _token(self, token: str | None) -> dict[str, str]:
        chosen = token or self.token
        return {"token": chosen} if chosen else {}

    async def _request(self, verb: str, path: str, *, token: str | None = None, json: Any = None,
                       params: dict[str, Any] | None = None, timeout: float = 30.0,
                       accept: tuple[int, ...] = ()) -> tuple[int, Any]:
        status, data, _ = await self._request_with_headers(verb, path, token=token, json=json, params=params,
                                                           timeout=timeout, accept=accept)
        return status, data

    async def _request_with_headers(self, verb: str, path: str, *, token: str | None = None, json: Any = None,
                                    params: dict[str, Any] | None = None, timeout: float = 30.0,
                                    accept: tuple[int, ...] = ()) -> tuple[int, Any, Any]:
        query = {**self._token(token), **{k: str(v) for k, v in (params or {}).items() if v is not None}}
        key = self.key or LOCAL_CONTROL_KEYS.get(self.base_url, "")
        async with self._http().request(
            verb, f"{self.base_url}/sandbox/api/{path}", json=json, params=query,
            headers={"X-Sandbox-Key": key},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400 and resp.status not in accept:
                message = data.get("error") if isinstance(data, dict) else str(data)
                raise SandboxControlError(resp.status, str(message))
            return resp.status, data, resp.headers

    async def _post(self, path: str, body: dict[str, Any], token: str | None) -> Any:
        return (await self._request("POST", path, token=token, json=body))[1]

    # ---- users and what they send -------------------------------------------------------------

    async def create_user(self, first_name: str = "Test", language_code: str | None = "ar", *,
                          last_name: str | None = None, username: str | None = None,
                          token: str | None = None) -> dict[str, Any]:
        body = {"first_name": first_name, "language_code": language_code, "last_name": last_name,
                "username": username}
        return await self._post("users", body, token)

    async def create_users(self, n: int, language_code: str | None = "ar", *, first_name: str = "Subscriber",
                           token: str | None = None) -> list[int]:
        """``n`` users, each with a private chat with the bot as if they had pressed /start
        (the bot may message them), without queuing any update; returns their ids."""
        body = {"count": n, "language_code": language_code, "first_name": first_name}
        return (await self._post("users/batch", body, token))["ids"]

    async def send_text(self, user_id: int, text: str, *, token: str | None = None) -> dict[str, Any]:
        """The user sends a text message. Returns {update_id, message_id}."""
        return await self._post("messages", {"user_id": user_id, "text": text}, token)

    async def send_message(self, user_id: int, kind: str, *, token: str | None = None,
                           **fields: Any) -> dict[str, Any]:
        """Any kind the control API knows: text, sticker, photo, location, voice, document, video,
        video_note, audio, animation, contact."""
        content = fields.pop("content", None)
        if content is not None:
            fields["content_b64"] = base64.b64encode(content).decode("ascii")
        return await self._post("messages", {"user_id": user_id, "kind": kind, **fields}, token)

    # The send_* helpers forward extra keyword fields to the control API (e.g. forward_origin);
    # fields that do not apply to the kind (a photo's filename) are ignored by the server.

    async def send_sticker(self, user_id: int, *, emoji: str = "🙂", token: str | None = None,
                           **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "sticker", emoji=emoji, token=token, **extra)

    async def send_photo(self, user_id: int, content: bytes | None = None, *, caption: str | None = None,
                         token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "photo", content=content if content is not None else TINY_JPEG,
                                       caption=caption, token=token, **extra)

    async def send_location(self, user_id: int, latitude: float = 31.9038, longitude: float = 35.2034, *,
                            token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "location", latitude=latitude, longitude=longitude, token=token,
                                       **extra)

    async def send_voice(self, user_id: int, content: bytes | None = None, *, duration: int = 2,
                         token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "voice", content=content if content is not None else b"OggS\0fake",
                                       duration=duration, token=token, **extra)

    async def send_document(self, user_id: int, filename: str, content: bytes,
                            mime: str = "application/octet-stream", *, caption: str | None = None,
                            file_size: int | None = None, token: str | None = None, **extra: Any) -> dict[str, Any]:
        """``file_size`` overrides the size Telegram reports (e.g. to test the 20 MB download limit)."""
        return await self.send_message(user_id, "document", filename=filename, content=content, mime_type=mime,
                                       caption=caption, file_size=file_size, token=token, **extra)

    async def send_contact(self, user_id: int, phone_number: str = "+970590000000", *,
                           token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "contact", phone_number=phone_number, token=token, **extra)

    async def send_video(self, user_id: int, content: bytes = b"\0\0\0\x18ftypmp42", *,
                         caption: str | None = None, token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "video", content=content, caption=caption, token=token, **extra)

    async def send_video_note(self, user_id: int, content: bytes = b"\0\0\0\x18ftypmp42", *,
                              token: str | None = None, **extra: Any) -> dict[str, Any]:
        """A round video message: no caption, no file name, no MIME type (as Telegram sends it)."""
        return await self.send_message(user_id, "video_note", content=content, token=token, **extra)

    async def send_audio(self, user_id: int, content: bytes = b"ID3\x03fake", *, filename: str = "recording.mp3",
                         caption: str | None = None, token: str | None = None, **extra: Any) -> dict[str, Any]:
        return await self.send_message(user_id, "audio", content=content, filename=filename, caption=caption,
                                       token=token, **extra)

    async def send_animation(self, user_id: int, content: bytes = b"\0\0\0\x18ftypmp42", *,
                             caption: str | None = None, token: str | None = None, **extra: Any) -> dict[str, Any]:
        """A GIF: Telegram sends it with both ``animation`` and ``document``."""
        return await self.send_message(user_id, "animation", content=content, filename="animation.gif.mp4",
                                       caption=caption, token=token, **extra)

    async def send_poll(self, user_id: int, question: str = "?", options: tuple[str, ...] = ("Yes", "No"), *,
                        token: str | None = None) -> dict[str, Any]:
        return await self.send_message(user_id, "poll", question=question, options=list(options), token=token)

    async def send_media_group(self, user_id: int, items: list[dict[str, Any]], caption: str | None = None, *,
                               token: str | None = None) -> list[dict[str, Any]]:
        """An album: each item is ``{kind: photo|video|document|audio, content?, filename?, ...}``
        (the fields of :meth:`send_message`), sent as consecutive messages sharing one
        ``media_group_id``; ``caption`` goes on the first, as Telegram clients do. Returns
        each message's {update_id, message_id, message}. ``ValueError`` for an album Telegram
        clients cannot send: fewer than 2 or more than 10 items, or kinds mixed other than
        photos with videos."""
        if not 2 <= len(items) <= 10:
            raise ValueError("an album has 2 to 10 items")
        kinds = {str(item.get("kind") or "photo") for item in items}
        if not (kinds <= {"photo", "video"} or kinds == {"document"} or kinds == {"audio"}):
            raise ValueError("an album holds photos and videos, or only documents, or only audio")
        group_id = str(secrets.randbelow(10**17) + 10**17)
        sent = []
        for index, item in enumerate(items):
            fields = dict(item)
            kind = fields.pop("kind", "photo")
            if kind == "photo" and fields.get("content") is None:
                fields["content"] = TINY_JPEG
            if index == 0 and caption:
                fields["caption"] = caption
            sent.append(await self.send_message(user_id, kind, media_group_id=group_id, token=token, **fields))
        return sent

    async def edit_text(self, user_id: int, message_id: int, text: str, *,
                        token: str | None = None) -> dict[str, Any]:
        """The user edits their text message: an ``edited_message`` update. {update_id, message}."""
        return await self._post(f"messages/{message_id}/edit", {"user_id": user_id, "text": text}, token)

    async def edit_caption(self, user_id: int, message_id: int, caption: str, *,
                           token: str | None = None) -> dict[str, Any]:
        """The user edits the caption of a file they sent ("" removes it)."""
        return await self._post(f"messages/{message_id}/edit", {"user_id": user_id, "caption": caption}, token)

    async def vote_poll(self, user_id: int, message_id: int, option_ids: list[int] | tuple[int, ...], *,
                        chat_id: int | None = None, token: str | None = None) -> dict[str, Any]:
        """The user answers the poll in ``message_id`` (option positions from 0; ``[]``
        retracts a vote where the poll allows it). Returns ``{update_ids, poll}``: the updates
        queued for the bot that sent the poll (``poll_answer`` unless anonymous, then ``poll``;
        none when nothing changed) and the poll as the user sees it. SandboxControlError 409
        for a closed poll or a second answer to a quiz, 400 for a malformed vote."""
        body: dict[str, Any] = {"user_id": user_id, "option_ids": list(option_ids)}
        if chat_id is not None:
            body["chat_id"] = chat_id
        return await self._post(f"messages/{message_id}/poll-answer", body, token)

    async def create_group(self, chat_type: str = "group", title: str = "Sandbox group", *,
                           token: str | None = None) -> dict[str, Any]:
        """A group, supergroup or channel: its Chat dict."""
        return await self._post("groups", {"type": chat_type, "title": title}, token)

    async def set_bot_status(self, chat_id: int, status: str, by_user_id: int, *,
                             token: str | None = None) -> dict[str, Any]:
        """A user adds (member, administrator) or removes (left, kicked) the bot: a
        ``my_chat_member`` update. {update_id}."""
        return await self._post(f"groups/{chat_id}/bot", {"status": status, "user_id": by_user_id}, token)

    async def send_group_text(self, chat_id: int, text: str, user_id: int | None = None, *,
                              token: str | None = None) -> dict[str, Any]:
        """A user writes in a group (a channel posts: no user). {update_id (None if the bot
        is not a member), message_id}."""
        return await self._post(f"groups/{chat_id}/messages", {"text": text, "user_id": user_id}, token)

    async def group(self, chat_id: int, *, token: str | None = None) -> dict[str, Any]:
        """{chat, bot_status, messages} of a group or channel as this bot sees it."""
        return (await self._request("GET", f"groups/{chat_id}", token=token))[1]

    async def press(self, user_id: int, message_id: int, callback_data: str, *,
                    token: str | None = None) -> dict[str, Any]:
        """The user presses an inline button. Returns {update_id, callback_query_id}."""
        return await self._post("callbacks", {"user_id": user_id, "message_id": message_id, "data": callback_data},
                                token)

    async def callback_answer(self, callback_query_id: str, *, token: str | None = None) -> dict[str, Any]:
        """{answered, answer: {text, show_alert, url} | None} for a pressed button."""
        return (await self._request("GET", f"callbacks/{callback_query_id}", token=token))[1]

    async def inject_update(self, update: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
        return await self._post("updates", {"update": update}, token)

    async def set_blocked(self, user_id: int, blocked: bool = True, *, token: str | None = None) -> None:
        await self._post(f"users/{user_id}/blocked", {"blocked": blocked}, token)

    # ---- what the bot did ------------------------------------------------------------------------

    async def messages(self, user_id: int, *, token: str | None = None) -> list[dict[str, Any]]:
        return (await self._request("GET", f"chats/{user_id}/messages", token=token))[1]

    async def wait_for_bot_message(self, user_id: int, after_message_id: int = 0, timeout: float = 10, *,
                                   token: str | None = None) -> dict[str, Any]:
        """The first bot message in the chat with id > after_message_id; TimeoutError if none comes."""
        messages = await self.wait_for_bot_messages(user_id, after_message_id, timeout, token=token)
        return messages[0]

    async def wait_for_bot_messages(self, user_id: int, after_message_id: int = 0, timeout: float = 10, *,
                                    token: str | None = None) -> list[dict[str, Any]]:
        """All bot messages with id > after_message_id, once there is at least one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no bot message after {after_message_id} within {timeout}s")
            status, data = await self._request(
                "GET", f"chats/{user_id}/wait", token=token, params={"after": after_message_id, "timeout": remaining},
                timeout=remaining + 10, accept=(408,))
            if status == 200 and data["messages"]:
                return data["messages"]

    async def wait_for_change(self, user_id: int, version: int, timeout: float = 10, *,
                              token: str | None = None) -> dict[str, Any]:
        """Wait until the chat's version exceeds ``version``: {version, messages}. TimeoutError if not."""
        status, data = await self._request("GET", f"chats/{user_id}/wait", token=token,
                                           params={"version": version, "timeout": timeout},
                                           timeout=timeout + 10, accept=(408,))
        if status == 408:
            raise TimeoutError(f"chat did not change within {timeout}s")
        return data

    async def calls(self, method: str | None = None, *, chat_id: int | None = None, allow_truncated: bool = False,
                    token: str | None = None) -> list[dict[str, Any]]:
        """The Bot API calls the bot made, oldest first (optionally of one method and/or one
        chat): ``{method, params, at, mono, chat_id, ok, error_code, description?, unknown}``;
        ``mono`` is ``time.monotonic()`` at the call (for rates per second), ``unknown`` marks
        a method the emulator does not model (answered 404). CallLogTruncated if the server's
        cap (``max_calls``) dropped older records, unless ``allow_truncated``."""
        _, data, headers = await self._request_with_headers(
            "GET", "calls", token=token, params={"method": method, "chat_id": chat_id})
        dropped = int(headers.get("X-Sandbox-Calls-Dropped", "0") or 0)
        if dropped and not allow_truncated:
            raise CallLogTruncated(dropped)
        return data

    async def clear_calls(self, *, token: str | None = None) -> None:
        await self._request("DELETE", "calls", token=token)

    async def commands(self, language_code: str | None = None, scope: str | None = None, *,
                       token: str | None = None) -> list[dict[str, Any]]:
        params = {"language_code": language_code, "scope": scope}
        return (await self._request("GET", "commands", token=token, params=params))[1]

    async def bot_info(self, *, token: str | None = None) -> dict[str, Any]:
        return (await self._request("GET", "bot", token=token))[1]

    # ---- the environment -------------------------------------------------------------------------

    async def add_fault(self, method: str, error_code: int, count: int = 1, retry_after: int | None = None, *,
                        description: str | None = None, token: str | None = None) -> None:
        body = {"method": method, "error_code": error_code, "count": count, "retry_after": retry_after,
                "description": description}
        await self._post("faults", body, token)

    async def set_webhook_delivery(self, urls: list[str] | None = None, *, mode: str = "round_robin",
                                   concurrency: int | None = None, timeout: float = 15.0,
                                   token: str | None = None) -> dict[str, Any]:
        """Test-only: deliver webhook updates to ``urls`` (default: the webhook's own URL),
        ``mode`` "round_robin" (a reverse proxy) or "all" (every update to every URL), up to
        ``concurrency`` at once (default: the webhook's max_connections; one chat's updates
        are always delivered one after the other), failing after ``timeout`` seconds without
        an answer."""
        body = {"urls": urls or [], "mode": mode, "concurrency": concurrency, "timeout": timeout}
        return await self._post("webhook/delivery", body, token)

    async def webhook_log(self, *, token: str | None = None) -> list[dict[str, Any]]:
        """Every webhook POST, oldest first: {update_id, url, status (None: no answer), error}."""
        return (await self._request("GET", "webhook/log", token=token))[1]

    async def clear_faults(self, *, token: str | None = None) -> None:
        await self._request("DELETE", "faults", token=token)

    async def advance_clock(self, seconds: float) -> dict[str, Any]:
        return await self._post("clock", {"advance_seconds": seconds}, None)
