"""Who acknowledged the report safety notice lately, in the bot process's memory only.

Before a report the user reads a safety notice and taps "I understand, continue"; they are
not shown it again for a while. That an account acknowledged it means the account began a
report, so it is never written down (not even in the sealed preferences row, which a seized
bot host opens with the bot key, and which an awareness subscriber's known Telegram id
leads to): it is kept here, keyed by ``pseudonym(pepper, "safety", user id)``, for ``ttl``
seconds after the acknowledgement (the bot uses the draft lifetime), swept by the bot's
memory timer and dropped by /wipe. A restart forgets it: the notice is shown again before the
next report.

``clock`` is injectable (seconds, monotonic) so tests need no waiting. With several
replicas the same contract is kept in Redis (:class:`nazaha.handlers.redis_memory.RedisSafetyReads`),
hence the coroutines.
"""

from __future__ import annotations

import time
from typing import Callable

from nazaha.storage.crypto import pseudonym


class SafetyReads:
    def __init__(
        self, pepper: bytes, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pepper = pepper
        self.ttl = ttl
        self.clock = clock
        self._until: dict[str, float] = {}

    def _key(self, user_id: int) -> str:
        return pseudonym(self._pepper, "safety", int(user_id))

    async def seen(self, user_id: int) -> bool:
        """True if this account acknowledged the notice less than ``ttl`` seconds ago."""
        key = self._key(user_id)
        until = self._until.get(key)
        if until is not None and until <= self.clock():
            del self._until[key]
            return False
        return until is not None

    async def acknowledge(self, user_id: int) -> None:
        self._until[self._key(user_id)] = self.clock() + self.ttl

    async def forget(self, user_id: int) -> None:
        """/wipe: the next report shows the notice again."""
        self._until.pop(self._key(user_id), None)

    def sweep(self) -> int:
        """Forget every acknowledgement whose time is up; returns how many."""
        now = self.clock()
        expired = [key for key, until in self._until.items() if until <= now]
        for key in expired:
            del self._until[key]
        return len(expired)

    def clear(self) -> None:
        """Forget everything (the process is stopping)."""
        self._until.clear()

    def __len__(self) -> int:
        return len(self._until)
