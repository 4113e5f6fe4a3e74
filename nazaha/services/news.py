"""News for reporters that could not be notified at once (no bot running): kept in the
console's store and sent when a bot is running and a member who holds the team key is
signed in (nazaha.admin.app runs :func:`send_kept_news` periodically)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.storage.console_models import PendingNews
from nazaha.storage.crypto import TeamPrivateKey
from nazaha.storage.notifications import NotificationDispatcher


async def keep_for_later(session: AsyncSession, report_id: str) -> None:
    if await session.get(PendingNews, report_id) is None:
        session.add(PendingNews(report_id=report_id))


async def send_kept_news(
    session: AsyncSession, dispatcher: NotificationDispatcher, team_private: TeamPrivateKey
) -> int:
    """In the caller's write transaction: notify every kept report if a bot is running;
    returns how many instructions were issued."""
    report_ids = list((await session.scalars(select(PendingNews.report_id))).all())
    if not report_ids:
        return 0
    issued = await dispatcher.notify_reports(session, team_private, report_ids)
    if issued is None:
        return 0
    await session.execute(delete(PendingNews).where(PendingNews.report_id.in_(report_ids)))
    return issued
