"""Short-lived marks the awareness handlers keep in this process's memory only.

Two uses: that a chat is browsing Learn (so that text typed there gets a hint to choose a
topic rather than the main menu), and that a quiz poll's "Next question" was already used
(so that tapping it again does not send the question again). Nothing here is written to
disk or logged, and a restart forgets it all, which costs only a hint.

Marks are keyed by a keyed hash (BLAKE2b, a random key made at start-up and never stored)
of the chat id and a message id, not by the ids themselves; each lives ``ttl`` seconds and
at most ``size`` are kept (the oldest go first).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


class RecentMarks:
    """A bounded set of marks that expire. Not thread-safe (one event loop)."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._marks: OrderedDict[bytes, float] = OrderedDict()  # mark -> expiry (clock)

    def _digest(self, parts: tuple[int, ...]) -> bytes:
        data = b":".join(str(int(part)).encode() for part in parts)
        return hashlib.blake2b(data, key=self._key, digest_size=16).digest()

    def _sweep(self, now: float) -> None:
        while self._marks:
            oldest, expiry = next(iter(self._marks.items()))
            if expiry > now and len(self._marks) <= self.size:
                break
            del self._marks[oldest]

    def mark(self, *parts: int) -> None:
        """Set (or renew) the mark of ``parts``."""
        now = self._clock()
        digest = self._digest(parts)
        self._marks.pop(digest, None)
        self._marks[digest] = now + self.ttl
        self._sweep(now)

    def has(self, *parts: int) -> bool:
        now = self._clock()
        self._sweep(now)
        expiry = self._marks.get(self._digest(parts))
        return expiry is not None and expiry > now

    def claim(self, *parts: int) -> bool:
        """True the first time (then the mark is set); False while the mark lives."""
        if self.has(*parts):
            return False
        self.mark(*parts)
        return True

    def drop(self, *parts: int) -> None:
        self._marks.pop(self._digest(parts), None)

    def __len__(self) -> int:
        return len(self._marks)


# A chat that was shown a Learn screen in the last half hour.
BROWSING_LEARN = RecentMarks(ttl=30 * 60)
# Quiz polls (chat, message id) whose "Next question" was used in the last day.
NEXT_QUESTION_USED = RecentMarks(ttl=24 * 3600)
