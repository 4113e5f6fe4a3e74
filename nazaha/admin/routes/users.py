"""The team page (admins): invite members, grant them the team key after they enrol, reset
an account (forgotten password, lost phone), remove a member."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin.context import AdminStaff, ConsoleDep, CsrfChecked, redirect, render
from nazaha.services import audit
from nazaha.services.accounts import AccountError
from nazaha.storage.console_db import scrub_console_store
from nazaha.storage.database import write_session

router = APIRouter()


async def _page(request: Request, console, staff, **extra) -> Response:
    async with console.sessionmaker() as session:
        members = await console.accounts.members(session)
    extra.setdefault("removed", request.query_params.get("removed") == "1")
    return render(request, "users.html", nav="users", members=members, **extra)


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
    except AccountError as exc:
        return await _page(request, console, staff, error=exc.code)
    console.audit_export_due = True
    return await _page(request, console, staff, invitation=invitation_url(console, token), invited=username)


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
        return await _page(request, console, staff, error=exc.code)
    console.sessions.grant_live(user_id, staff.team_private)
    console.audit_export_due = True
    return redirect("/users")


@router.post("/users/{user_id}/reset", dependencies=[CsrfChecked])
async def reset(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str) -> Response:
    try:
        async with write_session(console.sessionmaker) as session:
            token = await console.accounts.reset(session, user_id, created_by=staff.identity.id)
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_RESET,
                               detail={"user": user_id}, now=console.clock())
    except AccountError as exc:
        return await _page(request, console, staff, error=exc.code)
    console.sessions.close_user(user_id)
    console.audit_export_due = True
    await scrub_console_store(console.engine)  # the destroyed key leaves no old page behind
    return await _page(request, console, staff, invitation=invitation_url(console, token))


@router.post("/users/{user_id}/remove", dependencies=[CsrfChecked])
async def remove(request: Request, console: ConsoleDep, staff: AdminStaff, user_id: str) -> Response:
    if user_id == staff.identity.id:
        return await _page(request, console, staff, error="remove_self")
    try:
        async with write_session(console.sessionmaker) as session:
            await console.accounts.remove(session, user_id)
            await audit.append(session, actor_id=staff.identity.id, action=audit.USER_REMOVE,
                               detail={"user": user_id}, now=console.clock())
    except AccountError as exc:
        return await _page(request, console, staff, error=exc.code)
    console.sessions.close_user(user_id)
    console.audit_export_due = True
    await scrub_console_store(console.engine)  # the destroyed key leaves no old page behind
    # Their grant is gone from the store, not from backups made while they held it.
    return redirect("/users?removed=1")


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
        return await _page(request, console, staff, error=exc.code)
    console.audit_export_due = True
    return redirect("/users")
