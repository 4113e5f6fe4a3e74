"""The awareness services the bot's handlers use, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.campaigns import Campaigns
from nazaha.awareness.library import Library
from nazaha.awareness.quiz_polls import QuizPolls
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.awareness.survey_answers import SurveyAnswers
from nazaha.storage.crypto import BotKeyBox

__all__ = ["AwarenessServices"]


@dataclass(frozen=True)
class AwarenessServices:
    """``box`` (the bot key) seals staff chat ids when a volunteer links their chat."""

    sessionmaker: async_sessionmaker[AsyncSession]
    box: BotKeyBox
    library: Library
    subscribers: SubscriberStore
    surveys: SurveyAnswers
    campaigns: Campaigns
    quiz_polls: QuizPolls

    @classmethod
    def build(
        cls, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes
    ) -> "AwarenessServices":
        return cls(
            sessionmaker=sessionmaker,
            box=box,
            library=Library(sessionmaker),
            subscribers=SubscriberStore(sessionmaker, box, pepper),
            surveys=SurveyAnswers(sessionmaker, pepper),
            campaigns=Campaigns(sessionmaker),
            quiz_polls=QuizPolls(sessionmaker),
        )
