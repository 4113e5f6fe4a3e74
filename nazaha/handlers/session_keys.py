"""Unlocked cases of open follow-up sessions, in process memory only.

An unlocked case's data key is what the receipt protects, and which report a chat is
following up is itself identifying. Keeping both only here, never in the database (not
even sealed with the bot key), means a seized database or disk reveals neither. The
session's FSM record carries only a random reference; a restarted bot has forgotten every
case, so the reporter simply types the receipt again.

With several replicas (``NAZAHA_REDIS_URL``) the same contract is kept in Redis, sealed
under the replicas' memory-only key (:class:`nazaha.handlers.redis_memory.RedisSessionKeys`);
so the handlers' methods are coroutines here too. ``sweep`` and ``clear`` stay plain calls
(the timer's and the process's, not an update's).
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class SessionKeys(Generic[T]):
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self._keys: dict[str, tuple[T, float]] = {}

    async def put(self, value: T) -> str:
        self._expire()
        ref = secrets.token_hex(16)
        self._keys[ref] = (value, self.clock() + self.ttl)
        return ref

    async def get(self, ref: str) -> T | None:
        """The value, with its lifetime renewed; None once expired or forgotten."""
        entry = self._keys.get(ref)
        if entry is None or entry[1] <= self.clock():
            self._keys.pop(ref, None)
            return None
        self._keys[ref] = (entry[0], self.clock() + self.ttl)
        return entry[0]

    async def replace(self, ref: str, value: T) -> None:
        """Swap the value behind a live ``ref`` (its lifetime unchanged); nothing if gone."""
        entry = self._keys.get(ref)
        if entry is not None:
            self._keys[ref] = (value, entry[1])

    async def drop(self, ref: str) -> None:
        self._keys.pop(ref, None)

    def sweep(self) -> int:
        """Forget every expired value now (a timer calls this: a quiet process must not
        keep unlocked cases until the next ``put``). Returns how many were forgotten."""
        before = len(self._keys)
        self._expire()
        return before - len(self._keys)

    def clear(self) -> None:
        """Forget everything (the process is stopping)."""
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def _expire(self) -> None:
        now = self.clock()
        for ref in [r for r, (_, until) in self._keys.items() if until <= now]:
            del self._keys[ref]
