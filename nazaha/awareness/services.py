"""The awareness services the bot's handlers use, built once by the composition root."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.campaigns import Campaigns
from nazaha.awareness.library import Library
from nazaha.awareness.quiz_polls import QuizPolls
from nazaha.awareness.staff_chats import StaffChatLinks
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.awareness.survey_answers import SurveyAnswers
from nazaha.awareness.tally import DEFAULT_MIN_BATCH, Tally
from nazaha.storage.crypto import BotKeyBox

__all__ = ["AwarenessServices"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwarenessServices:
    """``box`` (the bot key) seals staff chat ids when a volunteer links their chat
    (``staff_chats``: the confirmation code, and forgetting a link on /stop).

    Survey answers, campaign opens and quiz votes are counted in memory and written in
    batches (nazaha/awareness/tally.py): the bot calls :meth:`flush_counts` periodically and
    :meth:`close_counts` at a graceful stop."""

    sessionmaker: async_sessionmaker[AsyncSession]
    box: BotKeyBox
    library: Library
    subscribers: SubscriberStore
    surveys: SurveyAnswers
    campaigns: Campaigns
    quiz_polls: QuizPolls
    staff_chats: StaffChatLinks

    @classmethod
    def build(
        cls, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes,
        *, min_batch: int = DEFAULT_MIN_BATCH,
    ) -> "AwarenessServices":
        """``min_batch``: NAZAHA_AGGREGATE_MIN_BATCH (answers, opens or votes per batch)."""
        return cls(
            sessionmaker=sessionmaker,
            box=box,
            library=Library(sessionmaker),
            subscribers=SubscriberStore(sessionmaker, box, pepper),
            surveys=SurveyAnswers(sessionmaker, pepper, min_batch=min_batch),
            campaigns=Campaigns(sessionmaker, min_batch=min_batch),
            quiz_polls=QuizPolls(sessionmaker, min_batch=min_batch),
            staff_chats=StaffChatLinks(sessionmaker, box, pepper),
        )

    @property
    def tallies(self) -> tuple[Tally, ...]:
        return (self.surveys.counts, self.campaigns.counts, self.quiz_polls.counts)

    async def flush_counts(self) -> int:
        """Write every batch that is due (each kind in a transaction of its own); a kind
        that fails is logged by its exception type and kept for the next call. Returns how
        many increments were written."""
        written = 0
        for tally in self.tallies:
            try:
                written += await tally.flush()
            except Exception as exc:
                log.warning("%s not written yet (%s)", tally.name, type(exc).__name__)
        return written

    async def close_counts(self) -> int:
        """At a graceful stop: write the batches that are due, drop the smaller ones
        (tally.py says why). Returns how many increments were dropped."""
        dropped = 0
        for tally in self.tallies:
            dropped += await tally.close()
        if dropped:
            log.info("%d counted answers, opens or votes below the batch size dropped at shutdown", dropped)
        return dropped
