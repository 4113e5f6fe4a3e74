"""Campaign deep links ``t.me/<bot>?start=c_<code>``: what they open, and a count per day.

A campaign's ``target`` is a topic code or ``item:<item code>``. Each open adds one to
``campaign_days(campaign, day)`` (UTC day) in a transaction of its own: an aggregate, never
who opened it (the update's unit of work, which may hold the user's preferences row, is
not used).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import Campaign, CampaignDay
from nazaha.storage.database import dialect_insert, write_transaction
from nazaha.storage.unit_of_work import active_uow

__all__ = ["PAYLOAD_PREFIX", "CampaignTarget", "Campaigns", "campaign_code_of"]

PAYLOAD_PREFIX = "c_"
CODE = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
ITEM_TARGET = "item:"


def campaign_code_of(payload: str) -> str | None:
    """The code of a ``/start`` payload ``c_<code>``; None for anything else."""
    if not payload.startswith(PAYLOAD_PREFIX):
        return None
    code = payload[len(PAYLOAD_PREFIX):]
    return code if CODE.match(code) else None


@dataclass(frozen=True)
class CampaignTarget:
    """An active campaign: ``topic`` (a topic code) or ``item`` (an item code)."""

    id: int
    topic: str | None
    item: str | None


class Campaigns:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        uow = active_uow()
        if uow is not None:
            yield await uow.read()
            return
        async with self._sessionmaker() as session:
            yield session

    async def find(self, code: str) -> CampaignTarget | None:
        """The active campaign ``code`` (None: unknown or inactive)."""
        if not CODE.match(code):
            return None
        async with self._reading() as session:
            row = (
                await session.execute(
                    select(Campaign.id, Campaign.target).where(
                        Campaign.code == code, Campaign.active.is_(True)
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        target = row.target or ""
        if target.startswith(ITEM_TARGET):
            return CampaignTarget(row.id, None, target[len(ITEM_TARGET):])
        return CampaignTarget(row.id, target or None, None)

    async def count_open(self, campaign_id: int, day: dt.date) -> None:
        """Add one to the campaign's opens of ``day``, in a transaction of its own."""
        async with write_transaction(self._sessionmaker) as session:
            statement = dialect_insert(session)(CampaignDay).values(
                campaign_id=campaign_id, day=day, opens=1
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["campaign_id", "day"], set_={"opens": CampaignDay.opens + 1}
                )
            )
