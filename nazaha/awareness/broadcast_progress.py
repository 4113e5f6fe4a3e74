"""How far a broadcast has got, for the console: outbox rows per state.

``await progress(session, broadcast_id)`` ->
``{"queued": n, "sending": n, "sent": n, "failed": n, "blocked": n, "in_doubt": n,
"skipped": n, "total": n, "remaining": n}``: every state of
:data:`~nazaha.storage.awareness_models.OUTBOX_STATES` (0 when none), ``total`` = all rows
(the recipients when the broadcast started, less those who left with /stop), ``remaining``
= ``queued`` + ``sending`` (still to be sent or confirmed). One grouped count on the index
(broadcast_id, state). The channel post's state is ``broadcasts.channel_state``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.storage.awareness_models import OUTBOX_STATES, BroadcastOutbox

__all__ = ["progress"]


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
