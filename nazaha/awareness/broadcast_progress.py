"""How far a broadcast has got, for the console: outbox rows per state, and the audience a
broadcast not yet started would have.

``await progress(session, broadcast_id)`` ->
``{"queued": n, "sending": n, "sent": n, "failed": n, "blocked": n, "in_doubt": n,
"skipped": n, "left": n, "total": n, "remaining": n}``: every state of
:data:`~nazaha.storage.awareness_models.OUTBOX_STATES` (0 when none), ``total`` = all rows
(the recipients when the broadcast started: a row outlives its subscriber, so the figures
never shrink when subscribers leave), ``remaining`` = ``queued`` + ``sending`` (still to be
sent or confirmed). One grouped count on the index (broadcast_id, state). The channel
post's state is ``broadcasts.channel_state``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.awareness.sender import audience_filter
from nazaha.storage.awareness_models import OUTBOX_STATES, BroadcastOutbox, Subscriber

__all__ = ["progress", "audience_size"]


async def progress(session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    counts = {state: 0 for state in OUTBOX_STATES}
    rows = await session.execute(
        select(BroadcastOutbox.state, func.count())
        .where(BroadcastOutbox.broadcast_id == broadcast_id)
        .group_by(BroadcastOutbox.state)
    )
    for state, count in rows.all():
        counts[state] = counts.get(state, 0) + int(count)
    counts["total"] = sum(counts.values())
    counts["remaining"] = counts["queued"] + counts["sending"]
    return counts


async def audience_size(session: AsyncSession, topics: str, languages: str) -> int:
    """How many subscribers a broadcast of ``topics`` and ``languages`` (comma lists, as
    stored) would be sent to if it started now: the sender's own audience rule."""
    found = await session.execute(
        select(func.count()).select_from(Subscriber).where(*audience_filter(topics, languages))
    )
    return int(found.scalar_one())
