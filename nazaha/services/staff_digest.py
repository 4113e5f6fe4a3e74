"""The optional staff alert: a periodic, content-free digest to the configured staff chats
(NAZAHA_STAFF_CHAT_IDS), sent by the console. Counts only: no designation, no category, and
never one message per report, since a message at submission time would mark the moment of
a report."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.admin import i18n
from nazaha.services.access import Viewer
from nazaha.services.deadlines import DeadlineRules
from nazaha.services.inbox import dashboard_counts
from nazaha.storage.models import Report

log = logging.getLogger(__name__)
# A viewer that sees every case, for team-wide counts (it is never shown anything).
_TEAM = Viewer("digest", "admin")


async def digest_counts(session: AsyncSession, today: dt.date, since: dt.date, rules: DeadlineRules) -> dict[str, int]:
    """``received`` since ``since`` (inclusive), plus the team-wide dashboard counts."""
    counts = dict(await dashboard_counts(session, _TEAM, today, rules))
    counts["received"] = int(
        await session.scalar(select(func.count()).select_from(Report).where(Report.created_on >= since)) or 0
    )
    return counts


def digest_text(counts: dict[str, int], locale: str) -> str:
    """The message, in the staff chat's language (the Arabic catalog isolates the numbers)."""
    i18n.set_locale(locale)
    lines = [
        i18n.gettext("Nazaha: the day's summary"),
        i18n.ngettext("%(num)d new report received", "%(num)d new reports received", counts["received"]),
        i18n.ngettext("%(num)d open case without an assignee", "%(num)d open cases without an assignee", counts["unassigned"]),
        i18n.ngettext("%(num)d acknowledgement overdue", "%(num)d acknowledgements overdue", counts["ack_overdue"]),
        i18n.ngettext("%(num)d feedback overdue", "%(num)d feedbacks overdue", counts["feedback_overdue"]),
        i18n.gettext("Details are in the review console."),
    ]
    return "\n".join(lines)


async def send_digest(bot, chat_ids: list[int], text: str) -> int:
    """Send ``text`` to each staff chat through the bot's retry policy; how many arrived."""
    from nazaha.bot.retry import BOT_API

    sent = 0
    for chat_id in chat_ids:
        outcome = await BOT_API.run(lambda c=chat_id: bot.send_message(c, text), what="SendMessage")
        if outcome.error is None:
            sent += 1
        else:
            log.warning("staff digest not delivered to one chat (%s)", type(outcome.error).__name__)
    return sent
