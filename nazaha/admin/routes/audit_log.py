"""The audit log for admins: newest first, by member and action, with whether the chain
verifies now. The log holds codes only, never what a reporter wrote."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from nazaha.admin.context import AdminStaff, ConsoleDep, render
from nazaha.admin.i18n import gettext as _
from nazaha.services import audit
from nazaha.storage.console_models import CaseRef, StaffUser
from nazaha.storage.models import Report

router = APIRouter()
PAGE_SIZE = 100


@router.get("/audit")
async def audit_page(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    action = request.query_params.get("action") or None
    if action not in audit.ACTIONS:
        action = None
    actor = request.query_params.get("actor") or None
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    async with console.sessionmaker() as session:
        records = await audit.entries(session, page=page, page_size=PAGE_SIZE, actor_id=actor, action=action)
        total = await audit.count_entries(session, actor_id=actor, action=action)
        members = {u.id: u.username for u in (await session.scalars(select(StaffUser))).all()}
        # A case reference names a case while it exists (a purged case's mapping is gone).
        refs = {r.case_ref for r in records if r.case_ref}
        designations = dict(
            (await session.execute(
                select(CaseRef.ref, Report.designation).join(Report, Report.id == CaseRef.report_id)
                .where(CaseRef.ref.in_(refs))
            )).all()
        ) if refs else {}
    result = await audit.verify(console.sessionmaker, console.console_secret)
    return render(
        request, "audit.html", nav="audit", records=records, total=total, page=page,
        pages=max(1, -(-total // PAGE_SIZE)), members=members, action=action, actor=actor,
        actions=sorted(audit.ACTIONS, key=lambda a: _(audit.ACTION_LABELS[a])), verified=result.ok,
        problems=len(result.problems), designations=designations,
        action_label=lambda code: _(audit.ACTION_LABELS.get(code, code)),
    )
