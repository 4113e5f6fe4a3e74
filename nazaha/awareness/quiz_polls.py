"""Quiz polls the bot sent, and Telegram's anonymous counts for them (``quiz_polls``).

A quiz goes out as an anonymous quiz poll (``is_anonymous``): Telegram then tells the bot
only the number of votes per option, in ``poll`` updates, never who voted (the bot does not
ask for ``poll_answer`` updates, which anonymous polls do not produce anyway). A row holds
the poll id, the item, the language and the day it was sent: which chat it went to is
never stored. Each ``poll`` update replaces the row's counts; updates for polls the bot
does not know (another bot's, or a row gone with its item) are ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import QuizPoll
from nazaha.storage.database import dialect_insert, write_transaction

__all__ = ["QuizPolls", "counts_text"]

COUNTS_MAX = 256  # quiz_polls.counts is a String(256)


def counts_text(counts: Sequence[int]) -> str:
    """``"3,0,1"``: votes per option, in option order."""
    text = ",".join(str(max(0, int(c))) for c in counts)
    return text if len(text) <= COUNTS_MAX else ""


class QuizPolls:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def record(self, poll_id: str, item_id: int, language: str, sent_on: dt.date) -> None:
        """A poll was sent (after Telegram answered with its id): own transaction."""
        async with write_transaction(self._sessionmaker) as session:
            statement = dialect_insert(session)(QuizPoll).values(
                poll_id=poll_id[:64], item_id=item_id, language=language, counts="", sent_on=sent_on
            )
            await session.execute(statement.on_conflict_do_nothing(index_elements=["poll_id"]))

    async def update_counts(self, poll_id: str, counts: Sequence[int]) -> bool:
        """Replace the counts of a known poll; False (nothing written) for an unknown one."""
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(
                update(QuizPoll).where(QuizPoll.poll_id == poll_id).values(counts=counts_text(counts))
            )
        return bool(result.rowcount)
