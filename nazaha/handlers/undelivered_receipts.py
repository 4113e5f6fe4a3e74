"""Receipts Telegram would not take, held so that their reporter can ask for them once.

When the receipt message of a stored report cannot be delivered (the retry policy gave up),
the formatted receipt is kept here, in this process's memory only (never on disk, never
logged), keyed by the user's HMAC pseudonym, for ``ttl`` seconds (15 minutes). It is handed
out at most once: :meth:`UndeliveredReceipts.take` forgets it. Expired entries go on every
read and on :meth:`sweep` (the bot's maintenance loop). A restart loses them, by design.

``clock`` is injectable (seconds, monotonic) so tests need no waiting. With several
replicas the same contract is kept in Redis (:class:`nazaha.handlers.redis_memory.RedisReceipts`,
where ``take`` is atomic across replicas), hence the coroutines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from nazaha.storage.crypto import pseudonym

RECEIPT_TTL_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class Kept:
    """One receipt: the formatted text (e.g. "1234 5678 ...") and when it expires (clock s)."""

    receipt: str
    expires_at: float


class UndeliveredReceipts:
    """user id -> (receipt, expiry, told?) held under ``pseudonym(pepper, "receipt", id)``."""

    def __init__(
        self,
        pepper: bytes,
        ttl: float = RECEIPT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pepper = pepper
        self.ttl = ttl
        self.clock = clock
        self._kept: dict[str, Kept] = {}
        self._told: set[str] = set()

    def _key(self, user_id: int) -> str:
        return pseudonym(self._pepper, "receipt", int(user_id))

    def __len__(self) -> int:
        return len(self._kept)

    async def count(self) -> int:
        """How many receipts this process holds (the shared store's twin counts Redis's)."""
        return len(self)

    async def keep(self, user_id: int, receipt: str, *, expires_at: float | None = None) -> None:
        """Hold ``receipt`` for ``ttl`` seconds from now (or until ``expires_at``, to put
        back one that :meth:`take` handed out and that could not be delivered either).
        The user has not been told yet; a newer receipt replaces an older one."""
        key = self._key(user_id)
        deadline = self.clock() + self.ttl if expires_at is None else expires_at
        if deadline <= self.clock():
            return
        self._kept[key] = Kept(receipt, deadline)
        self._told.discard(key)

    def _live(self, key: str) -> Kept | None:
        kept = self._kept.get(key)
        if kept is not None and kept.expires_at <= self.clock():
            self._forget(key)
            return None
        return kept

    def _forget(self, key: str) -> None:
        self._kept.pop(key, None)
        self._told.discard(key)

    async def has(self, user_id: int) -> bool:
        return self._live(self._key(user_id)) is not None

    async def take(self, user_id: int) -> Kept | None:
        """The kept receipt, forgotten as it is handed out; None if none or expired."""
        key = self._key(user_id)
        kept = self._live(key)
        if kept is not None:
            self._forget(key)
        return kept

    async def first_contact(self, user_id: int) -> bool:
        """True once per kept receipt: the user should now be told it is waiting."""
        key = self._key(user_id)
        if self._live(key) is None or key in self._told:
            return False
        self._told.add(key)
        return True

    async def tell_again(self, user_id: int) -> None:
        """The telling did not reach the user: :meth:`first_contact` is True once more."""
        self._told.discard(self._key(user_id))

    def sweep(self) -> int:
        """Forget every expired receipt; returns how many."""
        now = self.clock()
        expired = [key for key, kept in self._kept.items() if kept.expires_at <= now]
        for key in expired:
            self._forget(key)
        return len(expired)
