"""The HTTP session the bot talks to the Bot API with.

aiogram parses every answer as ``Response[T]`` (a pydantic generic model). pydantic keeps
those parametrised classes in a weak cache, so without a strong reference each call builds
the class again from its schema: for ``Response[Message]`` that was about 30 % of the bot's
CPU under load (docs/benchmarks.md). :class:`BotApiSession` keeps one reference per return
type it has seen, so each class is built once per process.
"""

from __future__ import annotations

from typing import Any

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods.base import Response


class BotApiSession(AiohttpSession):
    """``AiohttpSession`` whose ``Response[T]`` classes are built once and kept."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._response_types: dict[Any, type] = {}

    def check_response(self, bot: Any, method: Any, status_code: int, content: str) -> Any:
        returning = method.__returning__
        if returning not in self._response_types:
            # Held here, pydantic's weak cache returns this class on every later lookup.
            self._response_types[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
