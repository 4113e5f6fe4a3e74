"""The inbox and the case page: triage, workflow, replies, notes, sharing, links.

Every route here is for admins and caseworkers (volunteers get 403), checks that the member
may see the case (nazaha.services.access) and records what it did in the audit log in the
same transaction. Opening a case needs the team key in the member's session.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select

from nazaha.admin import i18n
from nazaha.admin.labels import choice_label
from nazaha.admin.routes.evidence import evidence_context
from nazaha.admin.context import CaseStaff, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.sessions import StaffSession
from nazaha.flows import choices
from nazaha.services import audit, notes as notes_service, workflow
from nazaha.services.access import CaseAccessDenied, Viewer, can_see
from nazaha.services.case_export import may_export
from nazaha.services.deadlines import DeadlineRules, case_deadlines
from nazaha.services.inbox import (
    InboxFilter,
    RemovedAssignee,
    dashboard_counts,
    inbox_page,
    mark_seen,
    removed_assignees,
)
from nazaha.services.search import search as search_cases
from nazaha.storage.cases import CaseService
from nazaha.storage.console_models import PRIORITIES, CaseState, StaffUser
from nazaha.storage.database import write_session
from nazaha.storage.models import NotificationLink, Report
from nazaha.storage.reports import ReportNotFound

router = APIRouter()
_ = i18n.gettext
SEARCH_LIMIT = 1000

# What the reporter answered, in the order the case page shows it (contact details last).
ANSWER_ORDER = ("when", "description", "contact_name", "contact_phone")
TRIAGE_FIELDS = (("category", "category"), ("sector", "sector"), ("service", "service"), ("governorate", "governorate"))


def viewer_of(staff: StaffSession) -> Viewer:
    return Viewer(staff.identity.id, staff.identity.role)


def rules_of(console) -> DeadlineRules:
    s = console.settings
    return DeadlineRules(acknowledge_days=s.acknowledge_days, feedback_months=s.feedback_months, due_soon_days=s.due_soon_days)


async def _members(session, *, with_removed: bool = False) -> list[StaffUser]:
    """Staff accounts by user name; removed ones only if asked (to name them where they
    still appear: an assignee, a note's author, a share)."""
    statement = select(StaffUser).order_by(StaffUser.username)
    if not with_removed:
        statement = statement.where(StaffUser.state != "removed")
    return list((await session.scalars(statement)).all())


def _query_for(f: InboxFilter, q: str | None):
    def build(**changes) -> str:
        params = dataclasses.replace(f, **changes).to_query()
        if q:
            params.append(("q", q))
        return urllib.parse.urlencode(params)

    return build


@router.get("/cases")
async def inbox(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    viewer = viewer_of(staff)
    f = InboxFilter.from_query(request.query_params)
    q = (request.query_params.get("q") or "").strip()[:200]
    rules, today = rules_of(console), console.today()
    only_ids, capped = None, False
    async with console.sessionmaker() as session:
        if q and staff.team_private is not None:
            only_ids = await search_cases(session, viewer, f, q, staff.team_private, limit_cases=SEARCH_LIMIT,
                                          today=today, deadlines=rules)
            async with write_session(console.sessionmaker) as audit_session:  # the words are never logged
                await audit.append(audit_session, actor_id=viewer.user_id, action=audit.CASE_SEARCH, now=console.clock())
            capped = (await inbox_page(session, viewer, dataclasses.replace(f, page_size=1), today, rules)).total > SEARCH_LIMIT
        page = await inbox_page(session, viewer, f, today, rules, report_ids=only_ids)
        counts = await dashboard_counts(session, viewer, today, rules)
        members = await _members(session)
        removed = await removed_assignees(session, viewer)
        if f.assignee not in (None, "me", "none") and f.assignee not in {m.user_id for m in removed}:
            # Filtered on a removed member whose cases were all reassigned: still named.
            user = await session.get(StaffUser, f.assignee)
            if user is not None and user.state == "removed":
                removed.append(RemovedAssignee(user.id, user.username, 0))
        exportable = await may_export(session, viewer)
    return render(
        request, "cases.html", nav="cases", f=f, q=q, page=page, counts=counts,
        members=[m for m in members if m.role != "volunteer"],
        removed_assignees=removed,
        member_names={m.id: m.username for m in members},
        choices={"category": choices.CATEGORIES, "service": choices.SERVICES, "sector": choices.SECTORS,
                 "governorate": choices.GOVERNORATES},
        statuses=workflow.STATUSES, priorities=PRIORITIES, query_for=_query_for(f, q),
        search_capped=capped, search_limit=SEARCH_LIMIT,
        can_export=exportable, export_filter=urllib.parse.urlencode(f.to_query()),
        notice=_bulk_notice(request),
    )


def _bulk_notice(request: Request) -> str | None:
    if not request.query_params.get("done"):
        return None
    try:
        skipped = int(request.query_params.get("skipped", "0"))
    except ValueError:
        skipped = 0
    if skipped <= 0:
        return _("Done.")
    return i18n.ngettext(
        "Done, except for %(num)d case that could not be changed that way.",
        "Done, except for %(num)d cases that could not be changed that way.",
        skipped,
    )


@router.post("/cases/bulk", dependencies=[CsrfChecked])
async def bulk(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    """Assign, label, unlabel or change the status of the selected cases. Each case is
    changed on its own (a savepoint): one the member may not change, or whose status cannot
    move that way, is skipped and counted, the others are changed."""
    form = await request.form()
    designations = [d for d in form.getlist("case") if isinstance(d, str)][:500]
    action = str(form.get("action") or "")
    back = form.get("back") if isinstance(form.get("back"), str) else ""
    viewer, now, today = viewer_of(staff), console.clock(), console.today()
    changes = {
        "assign": (lambda s, rid: workflow.assign(s, viewer, [rid], str(form.get("assignee") or "") or None, now=now), audit.ASSIGN),
        "label": (lambda s, rid: workflow.add_label(s, viewer, [rid], str(form.get("label") or ""), now=now), audit.LABEL),
        "unlabel": (lambda s, rid: workflow.remove_label(s, viewer, [rid], str(form.get("label") or ""), now=now), audit.LABEL),
        "status": (lambda s, rid: workflow.change_status(s, viewer, rid, str(form.get("status") or ""), notify=False, today=today, now=now), audit.STATUS_CHANGE),
    }
    if action not in changes:
        return redirect(f"/cases?{back}")
    change, audit_action = changes[action]
    skipped = 0
    async with write_session(console.sessionmaker) as session:
        for report_id in await _ids_of(session, designations):
            try:
                async with session.begin_nested():
                    await change(session, report_id)
                    detail = {
                        "status": {"status": str(form.get("status"))},
                        "assign": {"user": str(form.get("assignee") or "") or None},
                    }.get(action)
                    await audit.append(session, actor_id=viewer.user_id, action=audit_action,
                                       report_id=report_id, detail=detail, now=now)
            except (workflow.InvalidTransition, CaseAccessDenied, ValueError):
                skipped += 1
    separator = "&" if back else ""
    return redirect(f"/cases?{back}{separator}done=1&skipped={skipped}")


async def _ids_of(session, designations: list[str]) -> list[str]:
    if not designations:
        return []
    rows = await session.execute(select(Report.id).where(Report.designation.in_(designations)))
    return [r.id for r in rows]


async def _report_id(session, viewer: Viewer, designation: str) -> str:
    report_id = await session.scalar(select(Report.id).where(Report.designation == designation))
    if report_id is None or not await can_see(session, viewer, report_id):
        raise HTTPException(status_code=404 if report_id is None and viewer.role == "admin" else 403)
    return report_id


def _need_key(staff: StaffSession):
    if staff.team_private is None:
        raise HTTPException(status_code=409)
    return staff.team_private


async def _unlock(console, staff: StaffSession, designation: str):
    """The case opened with the member's team key, after checking they may see it (so that
    a hidden and a missing case answer alike, and nothing is decrypted for either)."""
    async with console.sessionmaker() as session:
        await _report_id(session, viewer_of(staff), designation)
    team_private = _need_key(staff)
    try:
        return await console.services["vault"].unlock_with_team(designation, team_private)
    except ReportNotFound:
        raise HTTPException(status_code=404) from None


@router.get("/cases/{designation}")
async def case_page(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str) -> Response:
    viewer = viewer_of(staff)
    async with console.sessionmaker() as session:
        report_id = await _report_id(session, viewer, designation)
    case = await _unlock(console, staff, designation)
    vault, cases = console.services["vault"], CaseService(console.sessionmaker)
    opened = await vault.open_with_team(designation, staff.team_private)
    thread = await cases.thread(case)
    evidence = await evidence_context(console, staff, case, render=False)
    withdrawals = await _withdrawals(cases, report_id)
    now = console.clock()
    async with write_session(console.sessionmaker) as session:
        state = await session.get(CaseState, report_id) or CaseState(report_id=report_id, priority="normal")
        notes = await notes_service.notes(session, viewer, case)
        labels = await workflow.labels(session, viewer, report_id)
        shares = await workflow.shared_with(session, viewer, report_id)
        recusals = await workflow.recused(session, viewer, report_id) if viewer.role == "admin" else []
        links = await workflow.linked_cases(session, viewer, report_id)
        members = await _members(session, with_removed=True)
        notifying = bool(await session.scalar(select(NotificationLink.id).where(NotificationLink.report_id == report_id).limit(1)))
        templates = await _templates(session)
        await mark_seen(session, viewer, report_id, now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.CASE_VIEW, report_id=report_id, now=now)
    if any(m.direction == "reporter" and not m.read_by_staff for m in thread):
        await cases.mark_read(case, "staff")
    deadlines = case_deadlines(case.created_on, state.acknowledged_on, state.feedback_on, case.status == "closed",
                               console.today(), rules_of(console))
    answers = [(n, opened.fields[n]) for n in ANSWER_ORDER if opened.fields.get(n)]
    answers += [(n, v) for n, v in sorted(opened.fields.items()) if n not in ANSWER_ORDER and n != "language" and v]
    triage = [(field, choice_label(group, opened.triage.get(field))) for field, group in TRIAGE_FIELDS if opened.triage.get(field)]
    return render(
        request, "case.html", nav="cases", case=case, state=state, thread=thread, **evidence,
        notes=notes, labels=labels, shares=shares, recusals=recusals, links=links,
        member_names={m.id: m.username for m in members},
        removed_members={m.id for m in members if m.state == "removed"},
        caseworkers=[m for m in members if m.role in ("admin", "caseworker") and m.state == "active"],
        # Whom the member may share the case with, or recuse: active caseworkers, never
        # the member themself (the services refuse it too), nobody already on the list.
        may_share=viewer.role == "admin" or state.assignee_id == viewer.user_id,
        share_choices=[m for m in members if m.role == "caseworker" and m.state == "active"
                       and m.id != viewer.user_id and m.id not in shares and m.id not in recusals],
        recuse_choices=[m for m in members if m.role == "caseworker" and m.state == "active"
                        and m.id != viewer.user_id and m.id not in recusals],
        notifying=notifying,
        # The reporter's language first: that is the one to reply in.
        templates=sorted(templates, key=lambda t: t.locale != opened.fields.get("language")), deadlines=deadlines, answers=answers, triage=triage,
        next_statuses=workflow.TRANSITIONS.get(case.status, ()), outcomes=workflow.OUTCOMES, priorities=PRIORITIES,
        reporter_language=_language_name(opened.fields.get("language")),
        withdrawn_on=withdrawals[1], contact_withdrawn_on=withdrawals[0],
        back_query="", flag_label=flag_label,
        notice=request.query_params.get("done") and _("Saved."),
        error=_ERRORS.get(request.query_params.get("error") or ""),
    )


_ERRORS = {
    "transition": i18n.lazy_gettext("That status change is not possible from the current status."),
    "invalid": i18n.lazy_gettext("That did not work: check the form and try again."),
    "empty": i18n.lazy_gettext("Write something first."),
    "outcome": i18n.lazy_gettext("Closing a case needs an outcome: choose one."),
    "authority": i18n.lazy_gettext("Referring a case needs the name of the authority it is referred to."),
}


def flag_label(flag: str) -> str:
    return {
        "ack_overdue": _("acknowledgement overdue"),
        "feedback_overdue": _("feedback overdue"),
        "due_soon": _("due soon"),
    }.get(flag, flag)


def _language_name(code: str | None) -> str | None:
    return {"ar": _("Arabic"), "en": _("English")}.get(code or "")


async def _withdrawals(cases: CaseService, report_id: str):
    getter = getattr(cases, "withdrawals", None)
    if getter is None:
        return (None, None)
    return await getter(report_id)


async def _templates(session):
    from nazaha.services import templates as reply_templates

    return await reply_templates.list_templates(session, None)


# ---------------------------------------------------------------------- case actions


async def _case_action(request: Request, console, staff: StaffSession, designation: str, act) -> Response:
    """Run ``act(session, viewer, report_id, now)`` in one transaction with its audit entry;
    refusals become a message on the case page."""
    viewer, now = viewer_of(staff), console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            report_id = await _report_id(session, viewer, designation)
            await act(session, viewer, report_id, now)
    except workflow.InvalidTransition:
        return redirect(f"/cases/{designation}?error=transition")
    except CaseAccessDenied:
        raise HTTPException(status_code=403) from None
    except ValueError:
        return redirect(f"/cases/{designation}?error=invalid")
    return redirect(f"/cases/{designation}?done=1")


async def _notify(console, staff: StaffSession, session, report_id: str) -> None:
    """Content-free news for the reporter, now, from the console's own action: the link's
    outer layer is removed with this member's team key and the instruction sealed to the
    running bot (nazaha.storage.notifications). No bot running: kept for later."""
    issued = await console.services["dispatcher"].notify_reports(session, staff.team_private, [report_id])
    if issued is None:
        from nazaha.services.news import keep_for_later

        await keep_for_later(session, report_id)


Text = Annotated[str, Form(max_length=4000)]
Short = Annotated[str, Form(max_length=200)]


@router.post("/cases/{designation}/reply", dependencies=[CsrfChecked])
async def reply(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str,
                body: Text = "", notify: Short = "") -> Response:
    if not body.strip():
        return redirect(f"/cases/{designation}?error=empty")
    case = await _unlock(console, staff, designation)

    async def act(session, viewer, report_id, now):
        await CaseService(console.sessionmaker).stage_staff_reply(session, case, body.strip())
        await workflow.record_staff_reply(session, viewer, report_id, console.today(), now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.REPLY, report_id=report_id, now=now)
        if notify:
            await _notify(console, staff, session, report_id)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/note", dependencies=[CsrfChecked])
async def note(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, body: Text = "") -> Response:
    if not body.strip():
        return redirect(f"/cases/{designation}?error=empty")
    case = await _unlock(console, staff, designation)

    async def act(session, viewer, report_id, now):
        await notes_service.add_note(session, viewer, case, body.strip(), now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.NOTE, report_id=report_id, now=now)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/status", dependencies=[CsrfChecked])
async def status(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str,
                 status: Short = "", outcome: Short = "", referred_to: Short = "", notify: Short = "") -> Response:
    if notify:
        _need_key(staff)  # notifying opens the reporter's link with the team key

    # The form sends every field; each status takes only its own (an authority when
    # referring, an outcome when closing), with a message naming what is missing.
    if status == "closed" and not outcome:
        return redirect(f"/cases/{designation}?error=outcome")
    if status == "referred" and not referred_to.strip():
        return redirect(f"/cases/{designation}?error=authority")

    async def act(session, viewer, report_id, now):
        await workflow.change_status(session, viewer, report_id, status,
                                     outcome=outcome if status == "closed" else None,
                                     referred_to=referred_to if status == "referred" else None,
                                     notify=False, today=console.today(), now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.STATUS_CHANGE, report_id=report_id,
                           detail={"status": status, "outcome": outcome or None}, now=now)
        if notify and status != "closed":
            await _notify(console, staff, session, report_id)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/reopen", dependencies=[CsrfChecked])
async def reopen(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, notify: Short = "") -> Response:
    async def act(session, viewer, report_id, now):
        await workflow.reopen(session, viewer, report_id, notify=False, today=console.today(), now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.REOPEN, report_id=report_id, now=now)
        if notify and staff.team_private is not None:
            await _notify(console, staff, session, report_id)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/assign", dependencies=[CsrfChecked])
async def assign(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, assignee: Short = "") -> Response:
    async def act(session, viewer, report_id, now):
        current = await session.scalar(select(CaseState.assignee_id).where(CaseState.report_id == report_id))
        if (assignee or None) == current:
            return  # the form preselects the current assignee (even a removed one): no change
        await workflow.assign(session, viewer, [report_id], assignee or None, now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.ASSIGN, report_id=report_id,
                           detail={"user": assignee or None}, now=now)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/priority", dependencies=[CsrfChecked])
async def priority(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, priority: Short = "") -> Response:
    async def act(session, viewer, report_id, now):
        await workflow.set_priority(session, viewer, report_id, priority, now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.PRIORITY, report_id=report_id,
                           detail={"priority": priority}, now=now)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/labels/{change}", dependencies=[CsrfChecked])
async def change_label(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, change: str,
                       label: Short = "") -> Response:
    if change not in ("add", "remove"):
        raise HTTPException(status_code=404)

    async def act(session, viewer, report_id, now):
        apply = workflow.add_label if change == "add" else workflow.remove_label
        await apply(session, viewer, [report_id], label, now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.LABEL, report_id=report_id, now=now)

    return await _case_action(request, console, staff, designation, act)


def _member_action(name: str, function, action: str):
    async def endpoint(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, user: Short = "") -> Response:
        async def act(session, viewer, report_id, now):
            await function(session, viewer, report_id, user, now=now)
            await audit.append(session, actor_id=viewer.user_id, action=action, report_id=report_id,
                               detail={"user": user}, now=now)

        return await _case_action(request, console, staff, designation, act)

    endpoint.__name__ = name
    router.add_api_route(f"/cases/{{designation}}/{name}", endpoint, methods=["POST"], dependencies=[CsrfChecked])


_member_action("share", workflow.share, audit.SHARE)
_member_action("unshare", workflow.unshare, audit.UNSHARE)
_member_action("recuse", workflow.recuse, audit.RECUSE)
_member_action("unrecuse", workflow.unrecuse, audit.UNRECUSE)


async def _change_link(request: Request, console, staff: StaffSession, designation: str, other: str, link: bool) -> Response:
    async def act(session, viewer, report_id, now):
        other_id = await _report_id(session, viewer, other.strip().upper())
        await (workflow.link if link else workflow.unlink)(session, viewer, report_id, other_id, now=now)
        await audit.append(session, actor_id=viewer.user_id, action=audit.LINK if link else audit.UNLINK,
                           report_id=report_id, now=now)

    return await _case_action(request, console, staff, designation, act)


@router.post("/cases/{designation}/link", dependencies=[CsrfChecked])
async def link(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, other: Short = "") -> Response:
    return await _change_link(request, console, staff, designation, other, True)


@router.post("/cases/{designation}/unlink", dependencies=[CsrfChecked])
async def unlink(request: Request, console: ConsoleDep, staff: CaseStaff, designation: str, other: Short = "") -> Response:
    return await _change_link(request, console, staff, designation, other, False)
