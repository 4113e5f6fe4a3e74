"""Login, logout, invitations and enrolment (password, TOTP with a QR code, recovery
codes), the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from nazaha.admin import i18n
from nazaha.admin.context import ConsoleDep, CsrfChecked, CurrentStaff, redirect, render
from nazaha.admin.sessions import ENROL_COOKIE, SESSION_COOKIE
from nazaha.metrics import record_login
from nazaha.services import audit
from nazaha.services.accounts import AccountError, format_recovery_code, otpauth_secret_groups, qr_svg
from nazaha.storage.console_db import scrub_console_store
from nazaha.storage.database import write_session

router = APIRouter()

COOKIE_FLAGS = {"secure": True, "httponly": True, "samesite": "strict", "path": "/"}
_ = i18n.gettext


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _home(role: str) -> str:
    return "/awareness" if role == "volunteer" else "/cases"


@router.get("/")
async def index(request: Request, console: ConsoleDep) -> Response:
    staff = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    return redirect(_home(staff.identity.role) if staff else "/login")


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html")


@router.post("/login", dependencies=[CsrfChecked])
async def login(
    request: Request,
    console: ConsoleDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    code: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    account, address = username.strip().lower()[:64], _client(request)
    # Counted before the check, so that concurrent attempts cannot all slip under the limit.
    allowed = console.throttle.attempt(account, address)
    now = console.clock()

    async def record(session, result) -> None:
        if result is not None:
            await audit.append(session, actor_id=result.identity.id, action=audit.LOGIN, now=now)
            if result.used_recovery_code:
                await audit.append(session, actor_id=result.identity.id, action=audit.RECOVERY_CODE_USED, now=now)
        else:
            # The typed name is never kept: a failed login names nobody.
            action = audit.LOGIN_FAILED if allowed else audit.LOGIN_THROTTLED
            await audit.append(session, actor_id=None, action=action, now=now)

    if allowed:
        result = await console.accounts.login(console.sessionmaker, username, password, code, record)
    else:
        result = None
        async with write_session(console.sessionmaker) as session:
            await record(session, None)
    record_login("ok" if result is not None else "failed" if allowed else "throttled")
    if result is None:
        # One answer for an unknown account, a wrong password or code, and a throttled one.
        return render(request, "login.html", status_code=401, failed=True, username=username)
    console.throttle.succeeded(account)
    staff = console.sessions.open(result.identity, result.staff_private, result.team_private)
    response = redirect(_home(result.identity.role))
    response.set_cookie(SESSION_COOKIE, staff.token, **COOKIE_FLAGS)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request, console: ConsoleDep, staff: CurrentStaff) -> Response:
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.LOGOUT, now=console.clock())
    console.sessions.close(staff.token)
    response = redirect("/login?bye=1")
    response.delete_cookie(SESSION_COOKIE, **COOKIE_FLAGS)
    return response


@router.post("/locale", dependencies=[CsrfChecked])
async def choose_locale(
    request: Request,
    console: ConsoleDep,
    locale: Annotated[str, Form(max_length=8)] = "ar",
    back: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    locale = locale if locale in i18n.LOCALES else i18n.DEFAULT_LOCALE
    staff = getattr(request.state, "staff", None)
    if staff is not None:
        staff.locale = locale
        async with write_session(console.sessionmaker) as session:
            await console.accounts.set_locale(session, staff.identity.id, locale)
    # Back to the page the button was on: a path of ours only (never "//host" or a URL).
    local = back.startswith("/") and not back.startswith("//") and "\\" not in back
    response = redirect(back if local else "/")
    response.set_cookie("__Host-nazaha-lang", locale, **COOKIE_FLAGS)
    return response


# ---------------------------------------------------------------------- enrolment


@router.get("/invite/{token}")
async def invitation_page(request: Request, console: ConsoleDep, token: str) -> Response:
    # Reading the link consumes nothing: a chat app's link preview cannot use it up.
    async with console.sessionmaker() as session:
        identity = await console.accounts.invitation(session, token)
        first_admin = identity is not None and identity.role == "admin" and await console.accounts.needs_team_passphrase(session)
    if identity is None:
        return render(request, "invite_invalid.html", status_code=404)
    return render(request, "invite.html", invitee=identity, token=token, first_admin=first_admin)


@router.post("/invite/{token}", dependencies=[CsrfChecked])
async def invitation_submit(
    request: Request,
    console: ConsoleDep,
    token: str,
    password: Annotated[str, Form(max_length=1024)] = "",
    password_again: Annotated[str, Form(max_length=1024)] = "",
    team_passphrase: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    async with console.sessionmaker() as session:
        identity = await console.accounts.invitation(session, token)
        if identity is None:
            return render(request, "invite_invalid.html", status_code=404)
        first_admin = identity.role == "admin" and await console.accounts.needs_team_passphrase(session)
        error = "mismatch" if password != password_again else None
        if error is None:
            try:
                pending = await console.accounts.start_enrolment(session, token, password, team_passphrase or None)
            except AccountError as exc:
                error = exc.code
    if error is not None:
        return render(
            request, "invite.html", status_code=400, invitee=identity, token=token,
            first_admin=first_admin, error=error,
        )
    key = console.sessions.park_enrolment(pending)
    response = redirect("/enrol")
    response.set_cookie(ENROL_COOKIE, key, **COOKIE_FLAGS)
    return response


@router.get("/enrol")
async def enrol_page(request: Request, console: ConsoleDep) -> Response:
    pending = console.sessions.enrolment(request.cookies.get(ENROL_COOKIE))
    if pending is None:
        return render(request, "invite_invalid.html", status_code=404)
    return render(
        request, "enrol.html", pending=pending,
        secret_groups=otpauth_secret_groups(pending.totp_secret),
        codes=[format_recovery_code(c) for c in pending.recovery_codes],
    )


@router.get("/enrol/qr.svg")
async def enrol_qr(request: Request, console: ConsoleDep) -> Response:
    pending = console.sessions.enrolment(request.cookies.get(ENROL_COOKIE))
    if pending is None:
        return Response(status_code=404)
    return Response(qr_svg(console.accounts.provisioning_uri(pending)), media_type="image/svg+xml")


@router.post("/enrol", dependencies=[CsrfChecked])
async def enrol_submit(
    request: Request, console: ConsoleDep, code: Annotated[str, Form(max_length=32)] = ""
) -> Response:
    key = request.cookies.get(ENROL_COOKIE)
    pending = console.sessions.enrolment(key)
    if pending is None:
        return render(request, "invite_invalid.html", status_code=404)
    try:
        async with write_session(console.sessionmaker) as session:
            result = await console.accounts.finish_enrolment(session, pending, code, i18n.current_locale())
            await audit.append(session, actor_id=result.identity.id, action=audit.USER_ENROL, now=console.clock())
            if result.team_private is not None:
                await audit.append(session, actor_id=result.identity.id, action=audit.KEY_GRANT, now=console.clock())
    except AccountError as exc:
        return render(
            request, "enrol.html", status_code=400, pending=pending, error=exc.code,
            secret_groups=otpauth_secret_groups(pending.totp_secret),
            codes=[format_recovery_code(c) for c in pending.recovery_codes],
        )
    console.sessions.drop_enrolment(key)
    if result.team_private is not None:  # the bootstrap copy of the team key was deleted
        await scrub_console_store(console.engine)
    staff = console.sessions.open(result.identity, result.staff_private, result.team_private)
    response = redirect(_home(result.identity.role))
    response.set_cookie(SESSION_COOKIE, staff.token, **COOKIE_FLAGS)
    response.delete_cookie(ENROL_COOKIE, **COOKIE_FLAGS)
    return response
