"""A case's evidence in the console: the metadata-free copy by default, PDFs as page images,
the sealed original only on an explicit, audited request.

Every URL is ``/cases/{designation}/evidence/...``:

* ``GET  /cases/{d}/evidence``: the list on a page of its own (the case page includes the
  same ``case_evidence.html`` partial, with :func:`evidence_context`);
* ``GET  …/{id}/view``: the clean copy inline, only when it is an image we re-encoded;
* ``GET  …/{id}/pages/{n}.png``: page ``n`` of a PDF, rendered in a confined subprocess and
  kept in memory for this session a few minutes;
* ``GET  …/{id}/download``: the clean copy as an attachment (audited ``EVIDENCE_DOWNLOAD``);
* ``POST …/{id}/original`` (CSRF): the original as an attachment (audited ``EVIDENCE_ORIGINAL``).

Volunteers and members who may not see the case get 403; a member whose session holds no
team key yet gets 409 ("an administrator must grant you access").
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from sqlalchemy import select

from nazaha.admin.context import CaseStaff, Console, ConsoleDep, CsrfChecked, render
from nazaha.admin.i18n import gettext as _
from nazaha.admin.i18n import isolate
from nazaha.admin.labels import evidence_kind_label
from nazaha.admin.sessions import StaffSession
from nazaha.services import audit
from nazaha.services.evidence_files import (
    CaseFiles,
    EvidenceView,
    PdfPageCache,
    content_disposition,
    download_name,
    inline_image_type,
    is_pdf,
    safe_extension,
)
from nazaha.storage.blobs import BlobNotFound, BlobStore, BlobTampered
from nazaha.storage.cases import CaseService, EvidenceRecord
from nazaha.storage.crypto import CryptoError
from nazaha.storage.database import write_session
from nazaha.storage.models import Report
from nazaha.storage.pdf_pages import PdfRenderError
from nazaha.storage.reports import ReportNotFound, ReportVault, UnlockedCase

log = logging.getLogger(__name__)
router = APIRouter()

DESIGNATION = r"^R-[0-9A-Z]{4,16}$"
EVIDENCE_ID = r"^[0-9a-f]{32}$"
Designation = Annotated[str, Path(pattern=DESIGNATION)]
EvidenceId = Annotated[str, Path(pattern=EVIDENCE_ID)]

_ATTACHMENT_HEADERS = {"X-Content-Type-Options": "nosniff"}


# --------------------------------------------------------------------------- access, keys


async def _may_see(console: Console, staff: StaffSession, report_id: str) -> bool:
    """The case-access rule (nazaha.services.access)."""
    from nazaha.services.access import Viewer, can_see

    async with console.sessionmaker() as session:
        return await can_see(session, Viewer(staff.identity.id, staff.identity.role), report_id)


async def case_vault(console: Console) -> ReportVault:
    """The report vault of this console process (built once, from the stored settings)."""
    vault = console.services.get("vault")
    if vault is None:
        from nazaha.bot.app import kdf_floor

        vault = await ReportVault.from_database(console.sessionmaker, kdf_floor(console.settings))
        console.services["vault"] = vault
    return vault


def blob_store(console: Console) -> BlobStore:
    store = console.services.get("blobs")
    if store is None:
        from nazaha.bot.app import blob_root

        store = console.services["blobs"] = BlobStore(blob_root(console.settings))
    return store


def page_cache(console: Console) -> PdfPageCache:
    cache = console.services.get("pdf_pages")
    if cache is None:
        # On the console's clock (injectable in tests); pages live a few minutes at most.
        cache = console.services["pdf_pages"] = PdfPageCache(clock=lambda: console.clock().timestamp())
        console.sessions.on_close.append(cache.drop_owner)  # a session's pages go with it
    return cache


async def open_case(console: Console, staff: StaffSession, designation: str) -> UnlockedCase:
    """The case for this member, or HTTPException: 403 (may not see it; also for an unknown
    designation unless admin, so a caseworker cannot probe), 404, 409 (no team key yet)."""
    async with console.sessionmaker() as session:
        report_id = await session.scalar(select(Report.id).where(Report.designation == designation))
    if report_id is None:
        raise HTTPException(status_code=404 if staff.identity.role == "admin" else 403)
    if not await _may_see(console, staff, report_id):
        raise HTTPException(status_code=403)
    if staff.team_private is None:
        raise HTTPException(status_code=409, detail="no_team_key")
    try:
        return await (await case_vault(console)).unlock_with_team(designation, staff.team_private)
    except ReportNotFound:
        raise HTTPException(status_code=404) from None
    except CryptoError as exc:
        log.warning("a case could not be unlocked (%s)", type(exc).__name__)
        raise HTTPException(status_code=500) from None


def case_files(console: Console, staff: StaffSession, case: UnlockedCase) -> CaseFiles:
    return CaseFiles(blob_store(console), case, page_cache(console), staff.token)


async def _evidence(console: Console, case: UnlockedCase, evidence_id: str) -> tuple[int, EvidenceRecord]:
    records = await evidence_records(console, case)
    for number, record in enumerate(records, start=1):
        if record.id == evidence_id:
            return number, record
    raise HTTPException(status_code=404)


async def evidence_records(console: Console, case: UnlockedCase) -> list[EvidenceRecord]:
    try:
        return await CaseService(console.sessionmaker).evidence(case)
    except CryptoError as exc:
        log.warning("evidence metadata failed authentication (%s)", type(exc).__name__)
        raise HTTPException(status_code=500) from None


@contextlib.contextmanager
def blob_errors():
    """Blob failures as HTTP answers: missing 404, failed authentication 500 (logged
    without any id)."""
    try:
        yield
    except BlobNotFound:
        raise HTTPException(status_code=404) from None
    except BlobTampered as exc:
        log.warning("an evidence file failed authentication (%s)", type(exc).__name__)
        raise HTTPException(status_code=500) from None


# --------------------------------------------------------------------------- listing


def _size_label(size: int) -> str:
    if size < 1024:
        return _("%(size)s bytes", size=size)
    if size < 1024 * 1024:
        return _("%(size)s KB", size=f"{size / 1024:.0f}")
    return _("%(size)s MB", size=f"{size / (1024 * 1024):.1f}")


def pdf_error_text(reason: str | None) -> str:
    if reason == "encrypted":
        return _("This PDF is protected by a password: it cannot be shown as pages.")
    if reason == "too_complex":
        return _("This PDF is too large or too complex to be shown as pages.")
    if reason == "not_a_pdf":
        return _("This file is not a readable PDF.")
    return _("This PDF is damaged and cannot be shown as pages.")


class EvidenceRow:
    """What ``case_evidence.html`` shows of one file."""

    def __init__(self, designation: str, view: EvidenceView) -> None:
        self.view = view
        self.number = view.number
        self.record = view.record
        self.url = f"/cases/{designation}/evidence/{view.id}"
        self.kind_label = evidence_kind_label(view.record.kind)
        self.size_label = _size_label(view.record.size_bytes)
        self.pdf_error_text = pdf_error_text(view.pdf_error) if view.pdf_error else None


async def evidence_context(console: Console, staff: StaffSession, case: UnlockedCase, *, render: bool = True) -> dict:
    """What ``{% include "case_evidence.html" %}`` needs: ``evidence_rows`` (one
    :class:`EvidenceRow` per file, in order; PDFs rendered or taken from this session's
    cache) and ``evidence_designation``."""
    records = await evidence_records(console, case)
    with blob_errors():
        views = await case_files(console, staff, case).describe(records, render=render)
    return {
        "evidence_rows": [EvidenceRow(case.designation, v) for v in views],
        "evidence_designation": case.designation,
    }


@router.get("/cases/{designation}/evidence")
async def evidence_page(request: Request, console: ConsoleDep, staff: CaseStaff, designation: Designation) -> Response:
    case = await open_case(console, staff, designation)
    context = await evidence_context(console, staff, case)
    return render(request, "case_evidence_page.html", nav="cases", designation=case.designation,
                  designation_isolated=isolate(case.designation), **context)


# --------------------------------------------------------------------------- files


@router.get("/cases/{designation}/evidence/{evidence_id}/view")
async def view(console: ConsoleDep, staff: CaseStaff, designation: Designation, evidence_id: EvidenceId) -> Response:
    case = await open_case(console, staff, designation)
    number, record = await _evidence(console, case, evidence_id)
    if not record.has_clean_copy:
        raise HTTPException(status_code=404)
    with blob_errors():
        data = await case_files(console, staff, case).read(record, "clean")
    media_type = inline_image_type(data)
    if media_type is None:  # a voice-reduced recording, or not ours: nothing inline
        raise HTTPException(status_code=404)
    extension = ".jpg" if media_type == "image/jpeg" else ".png"
    name = download_name(case.designation, number, extension)
    return Response(data, media_type=media_type, headers={
        "Content-Disposition": content_disposition(name, inline=True), **_ATTACHMENT_HEADERS})


@router.get("/cases/{designation}/evidence/{evidence_id}/pages/{page}.png")
async def pdf_page(
    console: ConsoleDep, staff: CaseStaff, designation: Designation, evidence_id: EvidenceId,
    page: Annotated[int, Path(ge=1, le=1000)],
) -> Response:
    case = await open_case(console, staff, designation)
    number, record = await _evidence(console, case, evidence_id)
    if record.has_clean_copy:  # images and recordings: no pages
        raise HTTPException(status_code=404)
    files = case_files(console, staff, case)
    with blob_errors():
        if not is_pdf(await files.head(record, "original")):
            raise HTTPException(status_code=404)
        try:
            pages = await files.pdf_pages(record)
        except PdfRenderError:
            raise HTTPException(status_code=404) from None
    if page > len(pages):
        raise HTTPException(status_code=404)
    name = download_name(case.designation, number, ".png", suffix=f"page-{page}")
    return Response(pages[page - 1], media_type="image/png", headers={
        "Content-Disposition": content_disposition(name, inline=True), **_ATTACHMENT_HEADERS})


async def _audited(console: Console, staff: StaffSession, action: str, case: UnlockedCase, number: int) -> None:
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=action, report_id=case.report_id,
                           detail={"item": number}, now=console.clock())


def _attachment(data: bytes, name: str) -> Response:
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": content_disposition(name), **_ATTACHMENT_HEADERS})


@router.get("/cases/{designation}/evidence/{evidence_id}/download")
async def download(console: ConsoleDep, staff: CaseStaff, designation: Designation, evidence_id: EvidenceId) -> Response:
    case = await open_case(console, staff, designation)
    number, record = await _evidence(console, case, evidence_id)
    if not record.has_clean_copy:  # nothing metadata-free to give: the original is a POST
        raise HTTPException(status_code=404)
    with blob_errors():
        data = await case_files(console, staff, case).read(record, "clean")
    name = download_name(case.designation, number, safe_extension(None, data[:1024]))
    await _audited(console, staff, audit.EVIDENCE_DOWNLOAD, case, number)
    return _attachment(data, name)


@router.post("/cases/{designation}/evidence/{evidence_id}/original", dependencies=[CsrfChecked])
async def original(console: ConsoleDep, staff: CaseStaff, designation: Designation, evidence_id: EvidenceId) -> Response:
    case = await open_case(console, staff, designation)
    number, record = await _evidence(console, case, evidence_id)
    with blob_errors():
        data = await case_files(console, staff, case).read(record, "original")
    extension = safe_extension(record.mime_type, data[:1024], record.kind)
    name = download_name(case.designation, number, extension, suffix="original")
    await _audited(console, staff, audit.EVIDENCE_ORIGINAL, case, number)
    return _attachment(data, name)
