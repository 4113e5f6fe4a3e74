"""Campaign deep links ``t.me/<bot>?start=c_<code>``: what they open, and a count per day.

A campaign's ``target`` is a topic code or ``item:<item code>``. Each open adds one for
``(campaign, UTC day)`` in the bot's memory (:class:`~nazaha.awareness.tally.Tally`, all
campaigns one group); the bot's periodic flush (every minute) adds them to
``campaign_days`` once at least ``min_batch`` are waiting, in one transaction of their own
(never the update's unit of work, which may hold the user's preferences row). Never at the
moment of an open: the batch would then sit right before, in the WAL, the preferences row
of the account that opened the link. The first batch of a day first creates that day's row
for every active campaign (count 0, in the order of their codes), so no row's place says
which campaign was opened first. An aggregate, never who opened a link.

Codes are case-insensitive (:meth:`Campaigns.find`): Telegram hands over a link's start
parameter exactly as typed, so ``c_Gaza`` and ``c_gaza`` both open the campaign ``gaza``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.tally import DEFAULT_MIN_BATCH, Batch, Tally, add_counts, ensure_rows
from nazaha.storage.awareness_models import Campaign, CampaignDay
from nazaha.storage.unit_of_work import active_uow

__all__ = ["PAYLOAD_PREFIX", "CampaignTarget", "Campaigns", "campaign_code_of", "write_campaign_opens"]

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


async def write_campaign_opens(session: AsyncSession, batch: Batch) -> None:
    """A batch of ``((campaign id, day), n)``: for each day in it, the missing rows of every
    active campaign (and of those in the batch), at 0 in the order of their codes; then the
    additions."""
    table, key_names = CampaignDay.__table__, ("campaign_id", "day")
    for day in sorted({day for (_campaign, day), _n in batch}):
        counted = sorted({campaign for (campaign, on), _n in batch if on == day})
        ids = (
            await session.scalars(
                select(Campaign.id)
                .where(or_(Campaign.active.is_(True), Campaign.id.in_(counted)))
                .order_by(Campaign.code)
            )
        ).all()
        await ensure_rows(session, table, key_names, [(campaign_id, day) for campaign_id in ids])
    await add_counts(session, table, key_names, "biased_opens", batch)


class Campaigns:
    """``min_batch``: the opens held in memory before they are written (see the module)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, min_batch: int = DEFAULT_MIN_BATCH
    ) -> None:
        self._sessionmaker = sessionmaker
        self.counts: Tally[tuple[int, dt.date]] = Tally(
            sessionmaker, write_campaign_opens, min_batch=min_batch, flush_on_add=False,
            name="campaign opens",
        )

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        uow = active_uow()
        if uow is not None:
            yield await uow.read()
            return
        async with self._sessionmaker() as session:
            yield session

    async def find(self, code: str) -> CampaignTarget | None:
        """The active campaign ``code``, whatever its case (None: unknown or inactive).

        Codes are stored in lower case; one kept from before that (migration 0012 leaves
        "Gaza" as it was when "gaza" exists too) is found when typed exactly as it is."""
        if not CODE.match(code):
            return None
        async with self._reading() as session:
            rows = (
                await session.execute(
                    select(Campaign.id, Campaign.target, Campaign.code).where(
                        Campaign.code.in_({code, code.lower()}), Campaign.active.is_(True)
                    )
                )
            ).all()
        row = next((r for r in rows if r.code == code), None) or next(iter(rows), None)
        if row is None:
            return None
        target = row.target or ""
        if target.startswith(ITEM_TARGET):
            return CampaignTarget(row.id, None, target[len(ITEM_TARGET):])
        return CampaignTarget(row.id, target or None, None)

    async def count_open(self, campaign_id: int, day: dt.date) -> None:
        """One more open of the campaign on ``day``, in memory: written by a later periodic
        flush, with at least ``min_batch`` others (nothing is written here)."""
        await self.counts.add((campaign_id, day))
