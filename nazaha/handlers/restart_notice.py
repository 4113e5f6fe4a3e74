"""The notice that a restart lost a conversation, without knowing who had one.

Drafts and follow-up sessions live only in memory, so a restart loses them. Older releases
marked each account's preferences row while a report or follow-up was open, to tell exactly
those users; that mark told a seized bot host which accounts had begun a report. Now nothing
is kept per account: the bot records only its own runs (:mod:`nazaha.storage.bot_runs`), and
for a while after a restart that may have cut conversations short (``until``, from
:func:`nazaha.storage.bot_runs.restart_window`) every account's first update of this run is
*eligible* (:meth:`RestartNotice.first_contact`). The menu then shows the notice if that
update is not a command or a menu action, i.e. plain text or a button of an old conversation
(nazaha/handlers/menu.py): what someone cut off mid-report or mid-follow-up sends. Anyone else
who writes such a message first in that window sees the notice once too; it is worded so that
it fits them ("if you were ...").

Which accounts have already written in this run is kept in memory only, keyed by
``pseudonym(pepper, "restart", user id)``, and forgotten as soon as the window closes.
With several replicas the window and the accounts seen in it are shared through Redis
(:class:`nazaha.handlers.redis_memory.RedisRestartNotice`), hence the coroutines.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from nazaha.storage.crypto import pseudonym


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RestartNotice:
    def __init__(
        self, pepper: bytes, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self._pepper = pepper
        self.clock = clock
        self.until: dt.datetime | None = None
        self._seen: set[str] = set()

    async def open_until(self, until: dt.datetime | None) -> None:
        """Set at start-up: until when the notice may be due (None: not at all)."""
        self.until = until
        self._seen.clear()

    async def first_contact(self, user_id: int) -> bool:
        """True for an account's first update of this run while the window is open; call
        it for every update of a user (later ones then return False)."""
        if self.until is None:
            return False
        if self.until <= self.clock():
            self.sweep()
            return False
        key = pseudonym(self._pepper, "restart", int(user_id))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def sweep(self) -> None:
        """Once the window has closed, forget it and every account seen in it."""
        if self.until is not None and self.until <= self.clock():
            self.until = None
            self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)
