"""How many "send a test to me" requests the console accepts, counted in its memory only.

A test reaches a real Telegram chat: a member pressing the button over and over (or a script
with their session) must not turn the bot into a way to flood a chat. Limits: at most
``per_broadcast`` requests per broadcast per minute (whoever asks) and ``per_member`` per
member per hour. Only accepted requests count. Nothing is written anywhere: a restart of
the console starts the counts again.
"""

from __future__ import annotations

import datetime as dt
from collections import deque

__all__ = ["SendTestLimits", "BROADCAST_WINDOW", "MEMBER_WINDOW"]

BROADCAST_WINDOW = dt.timedelta(minutes=1)
MEMBER_WINDOW = dt.timedelta(hours=1)


class SendTestLimits:
    """Moving windows over the console's clock (``now``: aware UTC)."""

    def __init__(self, per_broadcast: int = 3, per_member: int = 20) -> None:
        self.per_broadcast = per_broadcast
        self.per_member = per_member
        self._broadcasts: dict[int, deque[dt.datetime]] = {}
        self._members: dict[str, deque[dt.datetime]] = {}

    @staticmethod
    def _recent(table: dict, key, now: dt.datetime, window: dt.timedelta) -> deque[dt.datetime]:
        times = table.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            del table[key]
        return times

    def refusal(self, member: str, broadcast_id: int, now: dt.datetime) -> str | None:
        """Why a new request is refused (``test_rate_broadcast``, ``test_rate_member``: the
        console's error codes), or None."""
        if len(self._recent(self._broadcasts, broadcast_id, now, BROADCAST_WINDOW)) >= self.per_broadcast:
            return "test_rate_broadcast"
        if len(self._recent(self._members, member, now, MEMBER_WINDOW)) >= self.per_member:
            return "test_rate_member"
        return None

    def count(self, member: str, broadcast_id: int, now: dt.datetime) -> None:
        """One accepted request."""
        self._broadcasts.setdefault(broadcast_id, deque()).append(now)
        self._members.setdefault(member, deque()).append(now)
