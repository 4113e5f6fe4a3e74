"""The HTTP session the bot talks to the Bot API with.

Two things aiogram's default session does on every call cost more CPU than the rest of an
update (measured in docs/benchmarks.md), and :class:`BotApiSession` avoids them:

* aiogram parses every answer as ``Response[T]`` (a pydantic generic model). pydantic keeps
  those parametrised classes in a weak cache, so without a strong reference each call built
  the class again from its schema. The session keeps one reference per return type.
* Most answers are thrown away: the outbox sends a message and never looks at the
  ``Message`` Telegram returns. Inside :func:`results_unused` a successful answer is only
  checked for ``"ok": true`` instead of being validated into pydantic objects; errors (429,
  403, 400, 5xx) are parsed and raised exactly as before.

JSON is read and written with orjson.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import orjson
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods.base import Response

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


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class BotApiSession(AiohttpSession):
    """``AiohttpSession`` with orjson, ``Response[T]`` built once, and unread results skipped."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("json_loads", orjson.loads)
        kwargs.setdefault("json_dumps", _dumps)
        super().__init__(**kwargs)
        self._response_types: dict[Any, type] = {}

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
        return super().check_response(bot, method, status_code, content)
