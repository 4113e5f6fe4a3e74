"""Albums: files a user sends together (Telegram's ``media_group_id``) answered once.

Telegram delivers each file of an album as its own update and never says which is the last.
:class:`AlbumCollector` keeps the messages of one album (per chat and ``media_group_id``)
in process memory until no new one has arrived for a quiet period; the first update of the
album then goes on with all of them (``data["album"]``), and the others end at once.
:class:`AlbumMiddleware` does this outside the per-user lock, so the later files of an album
are not queued behind the first while it waits.

Polling: a later file's update is confirmed to Telegram with the album's first update (its
:class:`~nazaha.bot.confirm.Settlement` follows the first one's), never before: a crash while
the album is gathered loses none of its files. Webhook: Telegram sends a chat's next update
only once the previous one is answered, so every file (the first included) is confirmed as
soon as it is gathered; a crash during the quiet period loses the album (the user saw no
acknowledgement of it, and the draft it belonged to was in the same memory).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject, Update

from nazaha.bot.confirm import Settlement, settlement_of
from nazaha.metrics import mark_outcome

T = TypeVar("T")

DEFAULT_QUIET_SECONDS = 1.5
# Telegram albums hold at most 10 files; a group that keeps growing is cut off after this.
DEFAULT_MAX_WAIT_SECONDS = 15.0


@dataclass
class _Group(Generic[T]):
    items: list[T]
    started: float
    last: float = field(default=0.0)


class AlbumCollector(Generic[T]):
    """Collects items by key until ``quiet_seconds`` pass without a new one.

    ``clock`` (seconds, monotonic) and ``sleep`` are injectable for tests with a fake clock.
    """

    def __init__(
        self,
        quiet_seconds: float = DEFAULT_QUIET_SECONDS,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.quiet_seconds = quiet_seconds
        self.max_wait_seconds = max_wait_seconds
        self.clock = clock
        self.sleep = sleep
        self._groups: dict[Hashable, _Group[T]] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def is_open(self, key: Hashable) -> bool:
        """True while a group ``key`` is gathering: an item added now joins it."""
        return key in self._groups

    async def collect(self, key: Hashable, item: T) -> list[T] | None:
        """Add ``item`` to the group ``key``.

        The first caller of a group waits until the group is quiet (or ``max_wait_seconds``
        after it began) and gets every item, in arrival order; later callers get ``None``
        at once: their item is in the first caller's list.
        """
        now = self.clock()
        group = self._groups.get(key)
        if group is not None:
            group.items.append(item)
            group.last = now
            return None
        group = _Group([item], started=now, last=now)
        self._groups[key] = group
        try:
            while True:
                deadline = min(group.last + self.quiet_seconds, group.started + self.max_wait_seconds)
                wait = deadline - self.clock()
                if wait <= 0:
                    break
                await self.sleep(wait)
        finally:
            # Items arriving after this start a new group (answered on their own).
            if self._groups.get(key) is group:
                del self._groups[key]
        return list(group.items)


def album_key(message: Message) -> tuple[int, str] | None:
    """(chat id, media group id) of a message that belongs to an album, else ``None``."""
    if not message.media_group_id:
        return None
    return message.chat.id, message.media_group_id


class AlbumMiddleware(BaseMiddleware):
    """Outer update middleware: an album's updates reach the handlers once, as the first
    update with ``data["album"]`` (its messages in message-id order)."""

    def __init__(self, collector: AlbumCollector[Message]) -> None:
        self.collector = collector
        self._leaders: dict[Hashable, Settlement] = {}  # album key -> its first update's

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        message = event.message if isinstance(event, Update) else None
        key = album_key(message) if message is not None else None
        if key is None:
            return await handler(event, data)
        settlement = settlement_of(data)
        joining = self.collector.is_open(key)
        if settlement is not None and settlement.holds_chat:
            settlement.confirm()  # or the album's next file never comes
            settlement = None
        if settlement is not None:
            if not joining:
                self._leaders[key] = settlement
            elif (leader := self._leaders.get(key)) is not None:
                settlement.follow(leader)
        try:
            album = await self.collector.collect(key, message)
        finally:
            if not joining and settlement is not None and self._leaders.get(key) is settlement:
                del self._leaders[key]
        if album is None:
            mark_outcome(data, "album_part")
            return None  # answered with the album's first update
        data["album"] = sorted(album, key=lambda m: m.message_id)
        return await handler(event, data)


__all__ = ["AlbumCollector", "AlbumMiddleware", "album_key", "DEFAULT_QUIET_SECONDS"]
