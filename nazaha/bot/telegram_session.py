"""The HTTP session the bot talks to the Bot API with.

Several things aiogram's default session does on every call cost more CPU than the rest of
an update (measured in docs/benchmarks.md); :class:`BotApiSession` avoids them:

* aiogram parses every answer as ``Response[T]`` (a pydantic generic model). pydantic keeps
  those parametrised classes in a weak cache, so without a strong reference each call built
  the class again from its schema. The session keeps one reference per return type.
* An update for a button press carries the whole message the button was on, keyboard
  included; validating that keyboard into pydantic objects cost about seven times the rest
  of the update (a 19-button keyboard: 250 µs against 34 µs). No handler reads it, so the
  session drops ``callback_query.message.reply_markup`` while decoding updates, both from
  getUpdates and from webhook requests (aiogram decodes those with the session's
  ``json_loads`` too).
* Most answers are thrown away: the outbox sends a message and never looks at the
  ``Message`` Telegram returns. Inside :func:`results_unused` a successful answer is only
  checked for ``"ok": true`` instead of being validated into pydantic objects; errors (429,
  403, 400, 5xx) are parsed and raised exactly as before.
* Requests without files are sent as a JSON body (which the Bot API accepts) instead of
  aiohttp's form encoding, which built a multipart writer and a random boundary for every
  call before URL-encoding each field. Requests with files keep aiogram's multipart path.

And one robustness rule: an update aiogram's models reject (Telegram sends shapes they do
not know) must not fail the whole getUpdates answer, which would stop polling at that offset
forever. Only when a getUpdates answer fails to validate, the session validates its updates
one by one, hands each undecodable raw update to ``on_undecodable`` (see
nazaha/bot/undecodable.py), returns the rest, and moves the next getUpdates ``offset`` past
the skipped ones so that Telegram drops them.

The bot's own poller (nazaha/bot/polling.py) asks getUpdates from the lowest update not yet
settled, so its answers repeat updates already taken: :meth:`BotApiSession.get_updates_raw`
returns them as JSON values and the poller decodes only the new ones (and skips undecodable
ones itself).

JSON is read and written with orjson.

Every request (:meth:`BotApiSession.make_request`, :meth:`BotApiSession.post_json`) is
counted by Bot API method, and every failure by method and error code (nazaha/metrics.py):
names and codes from fixed lists, nothing of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import ClientError
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import (
    ClientDecodeError,
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
from aiogram.methods import GetUpdates
from aiogram.methods.base import Response

from nazaha import metrics
from nazaha.bot.undecodable import split_decodable, update_id_of

log = logging.getLogger(__name__)

_results_unused: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nazaha_results_unused", default=False
)


class _Discarded:
    """Stands in for a parsed response whose result nobody reads."""

    result = None


@contextlib.contextmanager
def results_unused() -> Iterator[None]:
    """Calls made inside return None instead of the parsed result (errors still raise)."""
    token = _results_unused.set(True)
    try:
        yield
    finally:
        _results_unused.reset(token)


# aiogram's exception for each Bot API error code, most specific first (TelegramEntityTooLarge
# is a TelegramNetworkError; a 429 or a migration may come with any status).
_ERROR_CODES: tuple[tuple[type[Exception], int | str], ...] = (
    (TelegramRetryAfter, 429),
    (TelegramMigrateToChat, 400),
    (TelegramEntityTooLarge, 413),
    (TelegramBadRequest, 400),
    (TelegramUnauthorizedError, 401),
    (TelegramForbiddenError, 403),
    (TelegramNotFound, 404),
    (TelegramConflictError, 409),
    (TelegramServerError, 500),
    (TelegramNetworkError, "network"),
)


def error_code_of(exc: TelegramAPIError) -> int | str:
    """The Bot API error code an aiogram exception stands for (``"network"``: no answer;
    ``"other"``: an error code aiogram has no class for)."""
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return metrics.OTHER


@contextlib.contextmanager
def _counted(method: Any) -> Iterator[None]:
    """Count one request of ``method`` and, if it raises a Bot API error, the error."""
    name = getattr(method, "__api_method__", None)
    metrics.record_api_request(name)
    try:
        yield
    except TelegramAPIError as exc:
        metrics.record_api_error(name, error_code_of(exc))
        raise


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def _drop_unread_fields(update: Any) -> None:
    if not isinstance(update, dict):
        return
    query = update.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("message"), dict):
        query["message"].pop("reply_markup", None)


def loads_lean_updates(content: str | bytes) -> Any:
    """``orjson.loads``, then drop what no handler reads from updates in the value: a single
    update (webhook) or the updates in a getUpdates answer."""
    value = orjson.loads(content)
    if isinstance(value, dict):
        if "update_id" in value:
            _drop_unread_fields(value)
        elif isinstance(value.get("result"), list):
            for item in value["result"]:
                if isinstance(item, dict) and "update_id" in item:
                    _drop_unread_fields(item)
    return value


class BotApiSession(AiohttpSession):
    """``AiohttpSession`` with orjson, ``Response[T]`` built once, unread keyboards in
    updates dropped, unread results skipped and undecodable updates skipped.

    ``on_undecodable(raw_update)`` is called (synchronously, from decoding) with each update
    of a getUpdates answer that does not validate; unset, such updates are only logged."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("json_loads", loads_lean_updates)
        kwargs.setdefault("json_dumps", _dumps)
        super().__init__(**kwargs)
        self._response_types: dict[Any, type] = {}
        self.on_undecodable: Callable[[Any], None] | None = None
        # The highest update id skipped as undecodable: the next getUpdates confirms it.
        self._skip_through: int | None = None

    def json_fields(self, bot: Any, method: Any) -> dict[str, Any] | None:
        """The request's JSON fields, or None if it uploads files (multipart needed)."""
        files: dict[str, Any] = {}
        payload = {}
        for key, value in method.model_dump(warnings=False, exclude_none=True).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                payload[key] = prepared
        return None if files else payload

    def json_body(self, bot: Any, method: Any) -> bytes | None:
        """The request as a JSON body, or None if it uploads files (multipart needed)."""
        fields = self.json_fields(bot, method)
        return None if fields is None else orjson.dumps(fields)

    async def make_request(self, bot: Any, method: Any, timeout: int | None = None) -> Any:
        if isinstance(method, GetUpdates) and self._skip_through is not None:
            # aiogram sets the offset from the last update it was given; a skipped update
            # after it would come back. Every update of the previous answer has been
            # handed out by now, so confirming through the skipped one loses nothing.
            if (method.offset or 0) <= self._skip_through:
                method.offset = self._skip_through + 1
        body = self.json_body(bot, method)
        with _counted(method):
            if body is None:
                return await super().make_request(bot, method, timeout)
            return await self._post_json(bot, method, body, timeout)

    async def post_json(self, bot: Any, method: Any, body: bytes, timeout: int | None = None) -> Any:
        """Send ``body`` (JSON fields of a request like ``method``, already serialised) as
        ``method`` would be sent; the result and errors are those of ``bot(method)``. For
        the same message to many chats: its fields are serialised once per chat
        (:meth:`json_fields`, then orjson) without building a model for each."""
        with _counted(method):
            return await self._post_json(bot, method, body, timeout)

    async def _post_json(self, bot: Any, method: Any, body: bytes, timeout: int | None = None) -> Any:
        status, raw_result = await self._post_body(bot, method, body, timeout)
        response = self.check_response(bot=bot, method=method, status_code=status, content=raw_result)
        return response.result

    async def get_updates_raw(self, bot: Any, method: GetUpdates, timeout: int | None = None) -> list[Any]:
        """getUpdates, its answer left as JSON values (dicts, keyboards of button presses
        dropped as usual) for the caller to validate only the updates it has not seen
        (nazaha/bot/polling.py). Errors are raised as ``bot(method)`` raises them."""
        body = self.json_body(bot, method)
        assert body is not None  # getUpdates has no files
        with _counted(method):
            status, raw_result = await self._post_body(bot, method, body, timeout)
            if HTTPStatus.OK <= status <= HTTPStatus.IM_USED:
                try:
                    answer = self.json_loads(raw_result)
                except ValueError:
                    answer = None
                if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("result"), list):
                    return answer["result"]
            # An error (or a malformed answer): raised exactly as aiogram raises it.
            self.check_response(bot=bot, method=method, status_code=status, content=raw_result)
            raise ClientDecodeError("getUpdates answer without a list of updates", ValueError(), raw_result)

    async def _post_body(self, bot: Any, method: Any, body: bytes, timeout: int | None) -> tuple[int, str]:
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout if timeout is None else timeout,
            ) as resp:
                return resp.status, await resp.text()
        except asyncio.TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e

    def check_response(self, bot: Any, method: Any, status_code: int, content: str) -> Any:
        if _results_unused.get() and HTTPStatus.OK <= status_code <= HTTPStatus.IM_USED:
            try:
                answer = self.json_loads(content)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("ok") is True:
                return _Discarded()
        returning = method.__returning__
        if returning not in self._response_types:
            # Held here, pydantic's weak cache returns this class on every later lookup.
            self._response_types[returning] = Response[returning]  # type: ignore[valid-type]
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError:
            if not isinstance(method, GetUpdates):
                raise
            answer = self._without_undecodable(bot, content)
            if answer is None:
                raise
        return super().check_response(bot, method, status_code, answer)

    def _without_undecodable(self, bot: Any, content: str) -> str | None:
        """The getUpdates answer without its undecodable updates (each handed to
        ``on_undecodable``), or None if the failure lies elsewhere."""
        try:
            answer = self.json_loads(content)
        except ValueError:
            return None
        if not isinstance(answer, dict) or not isinstance(answer.get("result"), list):
            return None
        good, bad = split_decodable(answer["result"], bot)
        if not bad:
            return None
        for raw in bad:
            update_id = update_id_of(raw)
            if update_id is not None:
                self._skip_through = max(update_id, self._skip_through or update_id)
            if self.on_undecodable is not None:
                self.on_undecodable(raw)
            else:
                log.warning("an update that could not be decoded was skipped")
        return _dumps({**answer, "result": good})
