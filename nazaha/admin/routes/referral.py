"""Export of one case for referral (``/cases/{designation}/export``).

``GET`` shows the form: what to include (answers, thread and metadata-free files on;
contact details and originals off) and every text that would go into the document in a
box the caseworker can edit (remove names...). ``POST`` (CSRF) returns the ZIP of
nazaha.services.referral_export, audited ``EXPORT`` with ``{contact, originals}``. A form
made before the case changed (a new message or file) is shown again instead of exported.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin import i18n
from nazaha.admin.context import CaseStaff, Console, ConsoleDep, CsrfChecked, render
from nazaha.admin.i18n import gettext as _
from nazaha.admin.labels import answer_text, evidence_kind_label, field_label
from nazaha.admin.routes.evidence import (
    Designation,
    blob_errors,
    evidence_records,
    case_files,
    case_vault,
    open_case,
    pdf_error_text,
)
from nazaha.admin.sessions import StaffSession
from nazaha.services import audit
from nazaha.services.evidence_files import content_disposition
from nazaha.services.referral_export import (
    Answer,
    ExportChoices,
    ExportTooLarge,
    Redactions,
    ReferralDocument,
    build_referral_zip,
    content_version,
    order_fields,
    plan_document,
)
from nazaha.storage.cases import CaseService
from nazaha.storage.crypto import CryptoError
from nazaha.storage.database import write_session
from nazaha.storage.reports import UnlockedCase

log = logging.getLogger(__name__)
router = APIRouter()

MAX_TEXT = 100_000  # characters in one edited text


class _Content:
    """A case's decrypted content, as the form and the document need it."""

    def __init__(self, report, thread, evidence) -> None:
        self.report = report
        self.thread = thread
        self.evidence = evidence
        values = {k: v for k, v in report.triage.items() if v} | dict(report.fields)
        self.answers = [Answer(f, field_label(f), answer_text(f, values[f])) for f in order_fields(values)]
        self.version = content_version(
            (a.field for a in self.answers), (m.id for m in thread), (r.id for r in evidence)
        )


async def _content(console: Console, staff: StaffSession, case: UnlockedCase) -> _Content:
    vault = await case_vault(console)
    try:
        report = await vault.open_with_team(case.designation, staff.team_private)
        thread = await CaseService(console.sessionmaker).thread(case)
    except CryptoError as exc:
        log.warning("a case failed authentication (%s)", type(exc).__name__)
        raise HTTPException(status_code=500) from None
    return _Content(report, thread, await evidence_records(console, case))


def direction_label(direction: str) -> str:
    return _("Reporter") if direction == "reporter" else _("Caseworkers")


def kind_label(kind: str) -> str:
    return _("Complaint about a public service") if kind == "complaint" else _("Corruption report")


def _form(request: Request, case: UnlockedCase, content: _Content, *, choices: ExportChoices,
          texts: dict[str, str] | None = None, status_code: int = 200, error: str | None = None) -> Response:
    texts = texts or {}
    answers = [(a, texts.get(f"a:{a.field}", a.text)) for a in content.answers]
    messages = [(m, direction_label(m.direction), texts.get(f"m:{m.id}", m.body)) for m in content.thread]
    files = [
        (number, r, evidence_kind_label(r.kind), texts.get(f"n:{r.id}", r.file_name or ""),
         texts.get(f"c:{r.id}", r.caption or ""))
        for number, r in enumerate(content.evidence, start=1)
    ]
    return render(request, "case_export.html", status_code=status_code, nav="cases",
                  designation=case.designation, designation_isolated=i18n.isolate(case.designation),
                  choices=choices, answers=answers, messages=messages, files=files,
                  version=content.version, error=error)


@router.get("/cases/{designation}/export")
async def export_form(request: Request, console: ConsoleDep, staff: CaseStaff, designation: Designation) -> Response:
    case = await open_case(console, staff, designation)
    return _form(request, case, await _content(console, staff, case), choices=ExportChoices())


@router.post("/cases/{designation}/export", dependencies=[CsrfChecked])
async def export(request: Request, console: ConsoleDep, staff: CaseStaff, designation: Designation) -> Response:
    case = await open_case(console, staff, designation)
    form = await request.form()
    choices = ExportChoices(**{name: form.get(name) == "1" for name in
                               ("answers", "thread", "evidence", "contact", "originals")})
    texts = {}
    for key, value in form.multi_items():
        if key[:2] in ("a:", "m:", "n:", "c:") and isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise HTTPException(status_code=400)
            texts[key] = value
    content = await _content(console, staff, case)
    if form.get("version") != content.version:
        return _form(request, case, content, choices=choices, texts=texts, status_code=409, error="changed")
    redactions = Redactions(
        answers={k[2:]: v for k, v in texts.items() if k.startswith("a:")},
        messages={k[2:]: v for k, v in texts.items() if k.startswith("m:")},
        file_names={k[2:]: v for k, v in texts.items() if k.startswith("n:")},
        captions={k[2:]: v for k, v in texts.items() if k.startswith("c:")},
    )
    document = plan_document(
        designation=case.designation, kind=case.kind, created_on=case.created_on,
        exported_at=console.clock(), answers=content.answers, thread=content.thread,
        evidence=content.evidence, choices=choices, redactions=redactions,
    )
    try:
        with blob_errors():
            archive = await build_referral_zip(
                document, content.evidence, case_files(console, staff, case),
                lambda doc: _render_document(console, doc),
            )
    except ExportTooLarge:
        return _form(request, case, content, choices=choices, texts=texts, status_code=413, error="too_large")
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.EXPORT, report_id=case.report_id,
                           detail={"contact": choices.contact, "originals": choices.originals},
                           now=console.clock())
    name = f"{case.designation}-referral.zip"
    return Response(archive, media_type="application/zip", headers={
        "Content-Disposition": content_disposition(name), "X-Content-Type-Options": "nosniff"})


def _render_document(console: Console, document: ReferralDocument) -> str:
    locale = i18n.current_locale()
    template = console.templates.env.get_template("referral_case.html")
    return template.render(
        doc=document, designation_isolated=i18n.isolate(document.designation), locale=locale, dir="rtl" if locale in i18n.RTL else "ltr",
        kind_label=kind_label(document.kind), direction_label=direction_label,
        evidence_kind_label=evidence_kind_label, pdf_error_text=pdf_error_text,
    )
