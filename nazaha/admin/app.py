"""The caseworkers' and volunteers' console (FastAPI, server-rendered, no CDN).

``create_app(settings, clock=...)`` builds everything the console needs once: the engine on
the bot's database with the console's own store attached (nazaha.storage.console_db), the
console secret, account services, in-memory sessions and the templates. Every response gets
the security headers (nazaha.admin.security); every anonymous visitor gets a pre-session
cookie so that even the login and invitation forms carry a CSRF token.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from nazaha.admin import i18n
from nazaha.admin.context import Console, LoginRequired, build_templates, redirect, render, session_of
from nazaha.admin.routes import auth
from nazaha.admin.security import LoginThrottle, SecurityHeaders
from nazaha.admin.sessions import PRE_SESSION_COOKIE, SessionStore
from nazaha.services.accounts import Accounts
from nazaha.storage.console_db import create_console_engine, ensure_console_secret, prepare_console_store
from nazaha.storage.database import create_sessionmaker

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_console(settings, clock: Callable[[], dt.datetime] = _utc_now) -> Console:
    from nazaha.bot.app import kdf_floor
    from nazaha.bot.setup import kdf_params

    console_dir = settings.effective_console_dir
    engine = create_console_engine(settings.effective_database_url, console_dir)
    secret = ensure_console_secret(console_dir)
    return Console(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        accounts=Accounts(secret, kdf_params(settings), kdf_floor(settings), clock=clock),
        sessions=SessionStore(clock, dt.timedelta(minutes=settings.console_idle_minutes)),
        throttle=LoginThrottle(),
        csrf_key=secrets.token_bytes(32),
        console_secret=secret,
        templates=build_templates(),
        clock=clock,
    )


def create_app(settings, *, clock: Callable[[], dt.datetime] = _utc_now) -> FastAPI:
    console = build_console(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await prepare_console_store(console.engine)
        try:
            yield
        finally:
            for token in list(console.sessions._sessions):
                console.sessions.close(token)
            await console.engine.dispose()

    app = FastAPI(title="Nazaha console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.console = console

    @app.middleware("http")
    async def locale_and_pre_session(request: Request, call_next):
        pre = request.cookies.get(PRE_SESSION_COOKIE)
        new_pre = None
        if not pre:
            new_pre = secrets.token_urlsafe(32)
            request.state.pre_session = new_pre
        i18n.set_locale(i18n.pick_locale(request.cookies.get("__Host-nazaha-lang"), request.headers.get("accept-language")))
        session_of(request)  # sets request.state.staff and the member's language
        response = await call_next(request)
        if new_pre:
            response.set_cookie(PRE_SESSION_COOKIE, new_pre, secure=True, httponly=True, samesite="strict", path="/")
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return redirect("/login")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render(request, "error.html", status_code=exc.status_code, code=exc.status_code)

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(auth.router)
    for module in _area_routers():
        app.include_router(module.router)
    app.add_middleware(SecurityHeaders)
    return app


def _area_routers():
    """The routers of the areas beyond sign-in (cases, admin, ...), in menu order."""
    import importlib

    names = (
        "nazaha.admin.routes.users",
        "nazaha.admin.routes.cases",
        "nazaha.admin.routes.evidence",
        "nazaha.admin.routes.referral",
        "nazaha.admin.routes.audit_log",
    )
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


__all__ = ["create_app", "build_console", "HTTPException"]
