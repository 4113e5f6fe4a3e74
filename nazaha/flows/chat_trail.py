"""Which messages of a private chat a conversation left behind, to delete them when it ends.

Telegram keeps a bot's private chat on its servers, and whoever holds the bot token can
copy any message of it that still exists into another chat (``copyMessage``; content
protection stops forwarding, not a bot's copies) and read the bot's own messages back by
editing them. So once a report is sent or discarded, or a follow-up session ends, the bot
deletes what the conversation left there: the user's answers and files, and the bot's
screens that showed them back (the review, the description so far, the case thread).

In a private chat, message ids count up across both sides, so a conversation is a span of
ids: from the first message the user sent in it (a typed ``/report``, or their first answer;
never earlier, so a receipt of an earlier report, above it, is never included) to the
newest id it saw, plus :data:`LATE` ids for the bot's replies after that (Telegram skips
ids that do not exist, and the deletion is sent before anything else of the update, so
nothing newer is touched). The questions asked before the user's first message remain:
they show nothing the user wrote. Pure functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# The bot's replies to one update: a review with a long description split over several
# messages, captions, the summary and a notice fit well within this.
LATE = 20
# At most this many ids are asked for (10 deleteMessages calls): the newest of the span.
MAX_IDS = 1000


@dataclass(frozen=True)
class ClearChat:
    """Effect: delete these message ids of the user's private chat (increasing order)."""

    message_ids: tuple[int, ...]


def widen(first: int, last: int, message_ids: Iterable[int], *, typed: bool) -> tuple[int, int]:
    """The span ``(first, last)`` after an update about ``message_ids`` (0: unknown). Only
    messages the user ``typed`` (sent) can move ``first``: a pressed button may sit under an
    older message of another conversation."""
    ids = [i for i in message_ids if i > 0]
    if not ids:
        return first, last
    if typed:
        low = min(ids)
        first = low if first <= 0 else min(first, low)
    return first, max(last, *ids)


def span_ids(
    first: int, last: int, extra: Iterable[int] = (), *, below: int | None = None
) -> tuple[int, ...]:
    """The ids to delete: ``first`` .. ``last + LATE`` (only if ``first`` is known), with the
    ``extra`` ids, all under ``below`` if given; increasing, at most :data:`MAX_IDS` (the
    newest kept)."""
    wanted = {i for i in extra if i > 0}
    if first > 0:
        wanted.update(range(first, max(first, last) + LATE + 1))
    if below is not None:
        wanted = {i for i in wanted if i < below}
    return tuple(sorted(wanted)[-MAX_IDS:])

