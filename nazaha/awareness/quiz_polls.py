"""Quiz polls the bot sent, and Telegram's anonymous counts for them.

A quiz goes out as an anonymous quiz poll (``is_anonymous``): Telegram then tells the bot
only the number of votes per option, in ``poll`` updates, never who voted (the bot does not
ask for ``poll_answer`` updates, which anonymous polls do not produce anyway).

Each poll goes to one private chat, so a poll's counts are one person's answer: nothing is
stored per poll. Which poll stands for which item lives only in the bot's memory
(:class:`QuizPolls`: poll id -> item and the counts last seen; at most :data:`MAX_POLLS`
polls, each for :data:`POLL_TTL`). A ``poll`` update adds what changed since the counts last
seen for that poll (never less than zero) to ``(item, option)`` in a
:class:`~nazaha.awareness.tally.Tally` (one group for all quizzes), written to
``quiz_counts`` in batches of at least ``min_batch`` votes. The first batch creates the rows
of every quiz item's options that are missing (count 0, in item and option order).

Votes on polls the bot does not know are ignored: another bot's, one older than a day or
pushed out by newer ones, and every poll sent before the bot restarted.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.tally import DEFAULT_MIN_BATCH, Batch, Tally, add_counts, ensure_rows
from nazaha.storage.awareness_models import AwarenessItem, AwarenessItemText, QuizCount

__all__ = ["MAX_POLLS", "POLL_TTL", "QuizPolls", "write_quiz_counts"]

POLL_TTL = dt.timedelta(hours=24)
MAX_POLLS = 50_000  # polls remembered at once (the oldest go first)
MAX_OPTIONS = 10  # Telegram's limit per poll


async def write_quiz_counts(session: AsyncSession, batch: Batch) -> None:
    """A batch of ``((item id, option), n)``: first the missing rows of every quiz item's
    options (count 0, item then option order), then the additions."""
    options: dict[int, int] = {}
    rows = await session.execute(
        select(AwarenessItemText.item_id, AwarenessItemText.options)
        .join(AwarenessItem, AwarenessItem.id == AwarenessItemText.item_id)
        .where(AwarenessItem.kind == "quiz")
    )
    for item_id, text in rows.all():
        listed = [line for line in (text or "").split("\n") if line.strip()]
        options[item_id] = max(options.get(item_id, 0), min(len(listed), MAX_OPTIONS))
    keys = [(item_id, option) for item_id in sorted(options) for option in range(options[item_id])]
    table, key_names = QuizCount.__table__, ("item_id", "option")
    await ensure_rows(session, table, key_names, keys)
    await add_counts(session, table, key_names, "biased_count", batch)


@dataclass
class _Sent:
    item_id: int
    seen: list[int]
    at: float  # clock() when sent


class QuizPolls:
    """The polls sent since the bot started (memory only) and their counts (batched).

    ``clock``: seconds, monotonic (tests pass their own)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        min_batch: int = DEFAULT_MIN_BATCH,
        ttl: dt.timedelta = POLL_TTL,
        max_polls: int = MAX_POLLS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts: Tally[tuple[int, int]] = Tally(
            sessionmaker, write_quiz_counts, min_batch=min_batch, name="quiz votes"
        )
        self._ttl = ttl.total_seconds()
        self._max = max_polls
        self._clock = clock
        self._sent: OrderedDict[str, _Sent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sent)

    def _expire(self, now: float) -> None:
        while self._sent:
            oldest = next(iter(self._sent.values()))
            if now - oldest.at < self._ttl and len(self._sent) <= self._max:
                break
            self._sent.popitem(last=False)

    def record(self, poll_id: str, item_id: int) -> None:
        """A poll was sent for quiz item ``item_id`` (after Telegram answered with its id).
        A poll id seen before keeps what it had (a retried send)."""
        now = self._clock()
        if poll_id not in self._sent:
            self._sent[poll_id] = _Sent(item_id, [], now)
        self._expire(now)

    async def update_counts(self, poll_id: str, counts: Sequence[int]) -> bool:
        """Telegram's counts per option for a poll: what grew since the counts last seen is
        counted (a batch may be written here). False, and nothing counted, for a poll the
        bot does not know (see the module)."""
        self._expire(self._clock())
        sent = self._sent.get(poll_id)
        if sent is None:
            return False
        new = [max(0, int(c)) for c in counts[:MAX_OPTIONS]]
        seen = sent.seen + [0] * max(0, len(new) - len(sent.seen))
        grown = [(option, value - seen[option]) for option, value in enumerate(new) if value > seen[option]]
        sent.seen = [max(a, b) for a, b in zip(seen, new + [0] * (len(seen) - len(new)))]
        await self.counts.add_many([((sent.item_id, option), n) for option, n in grown])
        return True
