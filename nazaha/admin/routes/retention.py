"""Retention for admins: the setting, the closed cases to be purged next and when, and the
cases a "legal hold" label keeps (nazaha.services.purge)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nazaha.admin.context import AdminStaff, ConsoleDep, render
from nazaha.services.purge import due_for_purge, legal_holds, purged_count

router = APIRouter()
# The page looks this far ahead, and lists at most this many cases.
LIMIT = 200


@router.get("/retention")
async def retention_page(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    today = console.today()
    retention_days = console.settings.retention_days
    async with console.sessionmaker() as session:
        # Every closed case not on hold, with the day it will go (the soonest first).
        upcoming = await due_for_purge(session, today, retention_days, within_days=retention_days, limit=LIMIT)
        holds = await legal_holds(session)
        purged = await purged_count(session)
    return render(
        request, "retention.html", nav="retention", today=today, retention_days=retention_days,
        horizon_days=retention_days, limit=LIMIT, upcoming=upcoming, holds=holds, purged=purged,
    )
