"""The team page (admins): invite members, grant them the team key after they enrol, reset
an account (forgotten password, lost phone), remove a member.

Every action answers with a redirect to ``/users`` (a refresh re-sends nothing): what it did
is named in the query string (``done``, ``member``: a user id, never a secret; ``error``: a
code), and a one-time invitation link, a secret, waits in the admin's session memory for
the next page of ``/users`` only (``StaffSession.team_page_link``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin.context import AdminStaff, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.awareness import forget_chat_of
from nazaha.services import audit
from nazaha.services.access import Viewer
from nazaha.services.accounts import AccountError
from nazaha.services.inbox import removed_assignees
from nazaha.storage.console_db import scrub_console_store
from nazaha.storage.database import write_session

router = APIRouter()

# What an action did, named on the page with the member's user name.
DONE = ("granted", "export_allowed", "export_stopped", "removed")
_ERROR_CODE = re.compile(r"[a-z_]{1,32}")


async def _page(request: Request, console, staff, *, invite_form: dict | None = None, refused: str | None = None,
                status_code: int = 200) -> Response:
    """The team page; ``invite_form``/``refused``: an invitation refused just now, its
    inputs kept in the form and the reason (an ``AccountError`` code) above it."""
    query = request.query_params
    done, member, assigned = query.get("done"), None, 0
    async with console.sessionmaker() as session:
        members = await console.accounts.members(session)
        if done in DONE:
            member = next((m for m in members if m["id"] == query.get("member")), None)
        if member is not None and done == "removed" and member["state"] == "removed":
            viewer = Viewer(staff.identity.id, staff.identity.role)
            assigned = next((r.cases for r in await removed_assignees(session, viewer) if r.user_id == member["id"]), 0)
    error = refused or query.get("error") or ""
    # Shown once: a refresh, or the next visit, no longer shows the link.
    link, staff.team_page_link = staff.team_page_link, None
    return render(
        request, "users.html", status_code=status_code, nav="users", members=members,
        invite_form=invite_form or {}, invite_refused=refused,
        done=done if member is not None else None, member=member, assigned=assigned,
        error=error if _ERROR_CODE.fullmatch(error) else None,
        invitation=link["url"] if link else None, link_for=link,
    )


def _done(kind: str, user_id: str) -> Response:
    return redirect(f"/users?done={kind}&member={user_id}")


def _refused(exc: AccountError) -> Response:
    return redirect(f"/users?error={exc.code}")


def invitation_url(console, token: str) -> str:
    return f"{console.settings.effective_console_url}/invite/{token}"


@router.get("/users")
async def users(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    return await _page(request, console, staff)


@router.post("/users/invite", dependencies=[CsrfChecked])
async def invite(
    request: Request,
    console: ConsoleDep,
    staff: AdminStaff,
    username: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "caseworker",
) -> Response:
    try:
        async with write_session(console.sessionmaker) as session:
            user_id, token = await console.accounts.invite(
                session, username=username, role=role, created_by=staff.identity.id
            )
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_INVITE,
                               detail={"role": role, "user": user_id}, now=console.clock())
            name = (await console.accounts.username_of(session, user_id)) or ""
    except AccountError as exc:
        # Answered on the page (not by a redirect): the form keeps what was typed and chosen.
        return await _page(request, console, staff, invite_form={"username": username.strip(), "role": role},
                           refused=exc.code, status_code=400)
    console.audit_export_due = True
    staff.team_page_link = {"url": invitation_url(console, token), "username": name, "kind": "invited"}
    return redirect("/users")


@router.post("/users/{user_id}/grant", dependencies=[CsrfChecked])
async def grant(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str) -> Response:
    if staff.team_private is None:
        raise HTTPException(status_code=403)
    try:
        async with write_session(console.sessionmaker) as session:
            await console.accounts.grant(session, user_id, staff.team_private, granted_by=staff.identity.id)
            await audit.append(session, actor_id=staff.identity.id, action=audit.KEY_GRANT,
                               detail={"user": user_id}, now=console.clock())
    except AccountError as exc:
        return _refused(exc)
    console.sessions.grant_live(user_id, staff.team_private)
    console.audit_export_due = True
    return _done("granted", user_id)


@router.post("/users/{user_id}/reset", dependencies=[CsrfChecked])
async def reset(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str) -> Response:
    try:
        async with write_session(console.sessionmaker) as session:
            token = await console.accounts.reset(session, user_id, created_by=staff.identity.id)
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_RESET,
                               detail={"user": user_id}, now=console.clock())
            name = (await console.accounts.username_of(session, user_id)) or ""
    except AccountError as exc:
        return _refused(exc)
    console.sessions.close_user(user_id)
    console.audit_export_due = True
    await forget_chat_of(console, user_id)  # a reset account's Telegram chat gets no tests
    await scrub_console_store(console.engine)  # the destroyed key leaves no old page behind
    staff.team_page_link = {"url": invitation_url(console, token), "username": name, "kind": "reset"}
    return redirect("/users")


@router.post("/users/{user_id}/remove", dependencies=[CsrfChecked])
async def remove(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str) -> Response:
    if user_id == staff.identity.id:
        return redirect("/users?error=remove_self")
    try:
        async with write_session(console.sessionmaker) as session:
            await console.accounts.remove(session, user_id)
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_REMOVE,
                               detail={"user": user_id}, now=console.clock())
    except AccountError as exc:
        return _refused(exc)
    console.sessions.close_user(user_id)
    console.audit_export_due = True
    await forget_chat_of(console, user_id)
    await scrub_console_store(console.engine)  # the destroyed key leaves no old page behind
    # Their grant is gone from the store, not from backups made while they held it.
    return _done("removed", user_id)


@router.post("/users/{user_id}/export", dependencies=[CsrfChecked])
async def export_right(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str,
                       export: Annotated[str, Form(max_length=8)] = "") -> Response:
    """Give a caseworker the right to export the inbox (``export=1``) or take it back
    (anything else). Audited ``USER_ROLE`` with ``{"user": id, "export": true/false}``."""
    allowed = export == "1"
    try:
        async with write_session(console.sessionmaker) as session:
            await console.accounts.set_export_right(session, user_id, allowed)
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_ROLE,
                               detail={"user": user_id, "export": allowed}, now=console.clock())
    except AccountError as exc:
        return _refused(exc)
    console.audit_export_due = True
    return _done("export_allowed" if allowed else "export_stopped", user_id)
