"""How much is waiting in the database's queues: counts only, for the metrics
(nazaha/metrics.py). One read transaction of a few ``COUNT`` queries over indexed or small
sets: the broadcast outbox is counted only for the broadcasts now sending or paused (every
queued message belongs to one of those: a finished broadcast has none left, a cancelled one
has them skipped)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import (
    BROADCAST_STATUSES,
    OUTBOX_STATES,
    Broadcast,
    BroadcastOutbox,
    BroadcastTestSend,
)
from nazaha.storage.models import NotificationInstruction, PendingNotification

ACTIVE_BROADCAST_STATUSES = ("sending", "paused")


@dataclass(frozen=True)
class QueueDepths:
    """Counts at one moment. ``broadcasts``: status -> broadcasts (every status of
    BROADCAST_STATUSES, zeros included); ``outbox``: state -> messages of the broadcasts
    now sending or paused (every state of OUTBOX_STATES)."""

    notification_instructions: int = 0
    notification_pending: int = 0
    broadcast_test_sends: int = 0
    broadcasts: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)

    @property
    def broadcast_outbox(self) -> int:
        """Broadcast messages queued (not yet handed to Telegram)."""
        return self.outbox.get("queued", 0)


async def _grouped(session: AsyncSession, query, known: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(known, 0)
    for key, count in (await session.execute(query)).all():
        if key in counts:  # a value outside the fixed list is not published
            counts[key] = int(count)
    return counts


async def count_queues(sessionmaker: async_sessionmaker[AsyncSession]) -> QueueDepths:
    """Count every queue in one read transaction."""
    async with sessionmaker() as session:
        instructions = await session.scalar(select(func.count()).select_from(NotificationInstruction))
        pending = await session.scalar(select(func.count()).select_from(PendingNotification))
        tests = await session.scalar(
            select(func.count()).select_from(BroadcastTestSend).where(BroadcastTestSend.state == "queued")
        )
        broadcasts = await _grouped(
            session,
            select(Broadcast.status, func.count()).group_by(Broadcast.status),
            BROADCAST_STATUSES,
        )
        outbox = await _grouped(
            session,
            select(BroadcastOutbox.state, func.count())
            .join(Broadcast, Broadcast.id == BroadcastOutbox.broadcast_id)
            .where(Broadcast.status.in_(ACTIVE_BROADCAST_STATUSES))
            .group_by(BroadcastOutbox.state),
            OUTBOX_STATES,
        )
    return QueueDepths(
        notification_instructions=int(instructions or 0),
        notification_pending=int(pending or 0),
        broadcast_test_sends=int(tests or 0),
        broadcasts=broadcasts,
        outbox=outbox,
    )


__all__ = ["QueueDepths", "count_queues"]
