"""The console's objects for one process (built once by ``create_app``) and the request
dependencies the routers use: the current member, role checks, CSRF, templates."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nazaha.admin import i18n
from nazaha.admin.security import LoginThrottle, csrf_ok, csrf_token
from nazaha.admin.sessions import PRE_SESSION_COOKIE, SESSION_COOKIE, SessionStore, StaffSession
from nazaha.services.accounts import Accounts

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclasses.dataclass
class Console:
    settings: Any
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    accounts: Accounts
    sessions: SessionStore
    throttle: LoginThrottle
    csrf_key: bytes
    console_secret: bytes
    templates: Jinja2Templates
    clock: Callable[[], dt.datetime]
    services: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Set after an admin change (users, keys): the next housekeeping pass exports the
    # audit log's head.
    audit_export_due: bool = False
    # The team-key rotation this console is running (routes/keys.py), held here so that it
    # is not garbage-collected; one at a time.
    rotation_task: asyncio.Task[None] | None = None
    # Why the last rotation run stopped (a key_rotation.RotationError), shown on the Keys
    # page; an automatic resume waits for an admin while it is set.
    rotation_problem: Exception | None = None

    def today(self) -> dt.date:
        return self.clock().date()


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True, pgettext=i18n.pgettext)
    env.globals["current_locale"] = i18n.current_locale
    env.globals["RTL"] = i18n.RTL
    env.globals["role_name"] = role_name
    env.globals["role_label"] = role_label
    env.globals["state_label"] = state_label
    from nazaha.admin.labels import TEMPLATE_GLOBALS

    env.globals.update(TEMPLATE_GLOBALS)
    from nazaha.awareness.schedule import palestine_time

    env.globals["palestine_time"] = palestine_time
    return templates


def role_label(role: str) -> str:
    names = {
        "admin": i18n.pgettext("role", "Administrator"),
        "caseworker": i18n.pgettext("role", "Caseworker"),
        "volunteer": i18n.pgettext("role", "Volunteer"),
    }
    return names.get(role, role)


def state_label(state: str) -> str:
    names = {
        "invited": i18n.gettext("invited"),
        "active": i18n.gettext("active"),
        "reset": i18n.gettext("reset, invited again"),
        "removed": i18n.gettext("removed"),
    }
    return names.get(state, state)


def role_name(role: str) -> str:
    names = {
        "admin": i18n.gettext("an administrator"),
        "caseworker": i18n.gettext("a caseworker"),
        "volunteer": i18n.gettext("a volunteer"),
    }
    return names.get(role, role)


def console_of(request: Request) -> Console:
    return request.app.state.console


ConsoleDep = Annotated[Console, Depends(console_of)]


def session_of(request: Request) -> StaffSession | None:
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    request.state.staff = session
    if session is not None:
        i18n.set_locale(session.locale)
    return session


class LoginRequired(Exception):
    """Raised by dependencies; the app turns it into a redirect to the login page."""


def current_staff(request: Request) -> StaffSession:
    session = getattr(request.state, "staff", None) or session_of(request)
    if session is None:
        raise LoginRequired()
    return session


CurrentStaff = Annotated[StaffSession, Depends(current_staff)]


async def follow_grants(console: Console, staff: StaffSession) -> None:
    """Keep the session's team keys equal to the member's grants: after a team-key
    rotation starts, the session opens the new grant too (with the member's own key, held
    in the session); once it finishes, the old key leaves the session's memory."""
    if staff.staff_private is None:
        return
    async with console.sessionmaker() as session:
        granted = await console.accounts.grant_key_ids(session, staff.identity.id)
        if granted == (staff.team_private.key_ids if staff.team_private is not None else frozenset()):
            return
        staff.team_private = (
            await console.accounts.open_grants(session, staff.identity.id, staff.staff_private) if granted else None
        )


def require_roles(*roles: str) -> Callable[..., Awaitable[StaffSession]]:
    async def dependency(request: Request, staff: CurrentStaff) -> StaffSession:
        if staff.identity.role not in roles:
            raise HTTPException(status_code=403)
        await follow_grants(console_of(request), staff)
        return staff

    return dependency


CaseStaff = Annotated[StaffSession, Depends(require_roles("admin", "caseworker"))]
AdminStaff = Annotated[StaffSession, Depends(require_roles("admin"))]
# Awareness (broadcasts, library, surveys, campaigns): every role; volunteers see only this.
AwarenessStaff = Annotated[StaffSession, Depends(require_roles("admin", "caseworker", "volunteer"))]


def csrf_binding(request: Request) -> str | None:
    """What the form token is bound to: the session cookie, else the pre-session cookie."""
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRE_SESSION_COOKIE)


async def check_csrf(request: Request) -> None:
    """Every state-changing request carries the form token of its cookie; others get 403."""
    form = await request.form()
    token = form.get("csrf")
    if not csrf_ok(console_of(request).csrf_key, csrf_binding(request), token if isinstance(token, str) else None):
        raise HTTPException(status_code=403, detail="csrf")


CsrfChecked = Depends(check_csrf)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    binding = csrf_binding(request) or getattr(request.state, "pre_session", None)
    staff = getattr(request.state, "staff", None)
    context.update(
        request=request,
        staff=staff,
        csrf=csrf_token(console.csrf_key, binding) if binding else "",
        locale=i18n.current_locale(),
        dir="rtl" if i18n.current_locale() in i18n.RTL else "ltr",
    )
    return console.templates.TemplateResponse(request, template, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
