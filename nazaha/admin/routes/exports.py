"""Export of the filtered inbox as CSV or XLSX (``POST /cases/export.csv``,
``POST /cases/export.xlsx``, with the form token).

Triage metadata only (nazaha.services.case_export: never what the reporter wrote, nor
notes), every case matching the inbox's filter (all pages, newest first), in the member's
language. The filter comes in the form field ``filter``, the inbox's query string; its
content search (``q``) is not applied: that reads decrypted text, which an export of
metadata does not need. Admins may export; a caseworker only if an admin gave them the right
(team page), and then only the cases they may see; anyone else gets 403. Each export is
audited ``EXPORT`` with ``{"what": "inbox", "format": ..., "rows": n}`` once the file is built.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from nazaha.admin import i18n
from nazaha.admin.context import CaseStaff, Console, ConsoleDep, CsrfChecked
from nazaha.admin.labels import choice_label, kind_label, outcome_label, priority_label, status_label
from nazaha.admin.routes.cases import flag_label, rules_of, viewer_of
from nazaha.admin.sessions import StaffSession
from nazaha.services import audit
from nazaha.services.case_export import (
    ExportTooLarge,
    Wording,
    build_export,
    export_file_name,
    export_tmpdir,
    may_export,
)
from nazaha.services.evidence_files import content_disposition
from nazaha.services.inbox import InboxFilter
from nazaha.storage.database import write_session

router = APIRouter()
_ = i18n.gettext

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def wording() -> Wording:
    """The column headers and code labels in the current request's language."""
    headers = {
        "designation": _("Designation"),
        "kind": _("Kind"),
        "category_code": _("Category or service (code)"),
        "category": _("Category or service"),
        "sector_code": _("Institution (code)"),
        "sector": _("Institution"),
        "governorate_code": _("Governorate (code)"),
        "governorate": _("Governorate"),
        "status": _("Status"),
        "outcome": _("Outcome"),
        "priority": _("Priority"),
        "labels": _("Labels"),
        "assignee": _("Assignee"),
        "received_on": _("Received"),  # the inbox's column: the day received
        "acknowledged_on": _("Acknowledged on"),
        "closed_on": _("Closed on"),
        "deadline_flags": _("Deadline flags"),
    }
    return Wording(headers=headers, kind=kind_label, choice=choice_label, status=status_label,
                   outcome=outcome_label, priority=priority_label, flag=flag_label)


async def _build(console: Console, staff: StaffSession, f: InboxFilter, fmt: str) -> tuple[bytes, int]:
    """The file's bytes and its number of rows; ``HTTPException(403)`` if the member may not
    export. One read transaction: the rows are one consistent view of the inbox."""
    viewer = viewer_of(staff)
    async with console.sessionmaker() as session, session.begin():
        if not await may_export(session, viewer):
            raise HTTPException(status_code=403)
        tmpdir = export_tmpdir(console.settings.effective_console_dir) if fmt == "xlsx" else None
        return await build_export(session, viewer, f, fmt, console.today(), rules_of(console), wording(),
                                  tmpdir=tmpdir, right_to_left=i18n.current_locale() in i18n.RTL)


async def _export(request: Request, console: Console, staff: StaffSession, fmt: str) -> Response:
    form = await request.form()
    raw = form.get("filter")
    f = InboxFilter.from_query(QueryParams(raw if isinstance(raw, str) else ""))
    try:
        content, rows = await _build(console, staff, f, fmt)
    except ExportTooLarge:
        raise HTTPException(status_code=413) from None
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.EXPORT,
                           detail={"what": "inbox", "format": fmt, "rows": rows}, now=console.clock())
    name = export_file_name(console.today(), fmt)
    return Response(content, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": content_disposition(name)})


@router.post("/cases/export.csv", dependencies=[CsrfChecked])
async def export_csv(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    return await _export(request, console, staff, "csv")


@router.post("/cases/export.xlsx", dependencies=[CsrfChecked])
async def export_xlsx(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    return await _export(request, console, staff, "xlsx")
