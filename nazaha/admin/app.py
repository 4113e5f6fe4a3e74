"""The caseworkers' and volunteers' console (FastAPI, server-rendered, no CDN).

``create_app(settings, clock=...)`` builds everything the console needs once: the engine on
the bot's database with the console's own store attached (nazaha.storage.console_db), the
console secret, account services, in-memory sessions and the templates. Every response gets
the security headers (nazaha.admin.security); every anonymous visitor gets a pre-session
cookie so that even the login and invitation forms carry a CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import Scope

from nazaha.admin import i18n
from nazaha.admin.body_limit import BodyLimit, upload_routes
from nazaha.admin.context import Console, LoginRequired, build_templates, redirect, render, session_of
from nazaha.admin.metrics import RequestMetrics
from nazaha.admin.metrics import router as metrics_router
from nazaha.admin.routes import auth
from nazaha.admin.security import LoginThrottle, SecurityHeaders
from nazaha.admin.sessions import PRE_SESSION_COOKIE, SESSION_COOKIE, SessionStore
from nazaha.services.accounts import Accounts
from nazaha.storage.console_db import (
    create_console_engine,
    ensure_console_secret,
    prepare_console_store,
    scrub_console_store,
)
from nazaha.storage.database import create_sessionmaker

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)


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
        from nazaha.storage.database import check_database

        await check_database(console.engine)  # migrated (`nazaha init`), pragmas in effect
        await prepare_console_store(console.engine)
        await _load_case_services(console)
        await _seed_reply_templates(console)
        tasks = [asyncio.create_task(_housekeeping(console))]
        if settings.staff_digest_hours > 0 and settings.staff_chat_ids and settings.bot_token:
            tasks.append(asyncio.create_task(_staff_digests(console)))
        try:
            yield
        finally:
            rotation = console.rotation_task
            if rotation is not None and not rotation.done() and rotation.get_loop() is asyncio.get_running_loop():
                tasks.append(rotation)  # cut short: the rows say what is left, a resume finishes it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            console.sessions.close_all()
            await console.engine.dispose()

    app = FastAPI(title="Nazaha console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.console = console
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(auth.router)
    for module in _area_routers():
        app.include_router(module.router)
    app.include_router(metrics_router)  # 404 unless NAZAHA_CONSOLE_METRICS_TOKEN is set

    def signed_in(scope: Scope) -> bool:
        return console.sessions.is_live(HTTPConnection(scope).cookies.get(SESSION_COOKIE))

    def too_large(scope: Scope) -> Response:
        return render(Request(scope), "error.html", status_code=413, code=413)

    # Body limits (nazaha/admin/body_limit.py): inside the security headers and the locale
    # (its 413 page carries both), outside everything that reads a body.
    app.add_middleware(BodyLimit, default_bytes=settings.console_max_body_bytes,
                       upload_bytes=settings.console_max_upload_body_bytes,
                       uploads=upload_routes(app.routes), signed_in=signed_in, refusal=too_large)

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

    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics)  # outermost: counts every request, refused ones too
    return app


async def _load_case_services(console: Console) -> None:
    """The vault (reports opened with a member's team key) and the notification
    dispatcher. The team public key comes from the database, as recorded by `nazaha init`."""
    from nazaha.bot.app import kdf_floor
    from nazaha.storage.notifications import NotificationDispatcher
    from nazaha.storage.reports import ReportVault, SystemNotInitialised

    try:
        console.services["vault"] = await ReportVault.from_database(
            console.sessionmaker, kdf_floor(console.settings)
        )
    except SystemNotInitialised:
        raise SystemExit("the database is not initialised: run `nazaha init` first") from None
    console.services["dispatcher"] = NotificationDispatcher(console.sessionmaker)


AUDIT_EXPORT_EVERY = dt.timedelta(hours=1)


async def _seed_reply_templates(console: Console) -> None:
    """The default reply templates (both languages), on the first start only."""
    from nazaha.services import templates as reply_templates
    from nazaha.storage.database import write_session

    async with write_session(console.sessionmaker) as session:
        await reply_templates.ensure_default_templates(session, now=console.clock())


async def _housekeeping(console: Console, interval: float | None = None) -> None:
    """Every few seconds: end idle sessions (their keys leave memory), resume a team-key
    rotation a restart cut short (with a signed-in holder of the old key), send news kept while
    no bot was running (with the key of any signed-in member who holds it), and export the
    audit log's authenticated head every hour and soon after an admin change; once a day
    (and at start-up) purge the closed cases whose retention period is over and close the
    surveys whose last day is over."""
    from nazaha.admin.routes.keys import resume_if_interrupted
    from nazaha.services.news import send_kept_news
    from nazaha.storage.database import write_session

    interval = interval or console.settings.notify_interval_seconds
    last_export: dt.datetime | None = None
    last_purge: dt.date | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            console.sessions.sweep()
            await resume_if_interrupted(console)  # a rotation cut short by a restart
            team_private = console.sessions.team_key_holder()
            if team_private is not None:
                async with write_session(console.sessionmaker) as session:
                    await send_kept_news(session, console.services["dispatcher"], team_private)
            now = console.clock()
            if last_purge != now.date():
                last_purge = now.date()
                await purge_expired_cases(console)
                await close_due_surveys(console)
            await scrub_console_store(console.engine)  # old row versions leave the WAL files
            if console.audit_export_due or last_export is None or now - last_export >= AUDIT_EXPORT_EVERY:
                console.audit_export_due = False
                last_export = now
                await export_audit_head(console)
        except Exception as exc:  # keep the loop alive; never log content
            log.warning("console housekeeping failed: %s", type(exc).__name__)


async def purge_expired_cases(console: Console) -> int:
    """The daily retention pass (nazaha.services.purge.purge_due); returns how many closed
    cases were purged. Logs the count only."""
    from nazaha.admin.routes.evidence import blob_store
    from nazaha.services.purge import purge_due

    purged = await purge_due(
        console.sessionmaker, blob_store(console), console.console_secret, console.today(),
        console.settings.retention_days,
    )
    if purged:
        log.info("retention: %d closed case(s) purged", purged)
        console.audit_export_due = True
    return purged


async def close_due_surveys(console: Console) -> int:
    """Close the surveys whose last day is over (their "already answered" markers go)."""
    from nazaha.awareness.surveys import close_due_surveys as close_due
    from nazaha.storage.database import write_session

    async with write_session(console.sessionmaker) as session:
        return await close_due(session, console.today())


async def export_audit_head(console: Console) -> None:
    """Write the audit log's authenticated head to ``<console dir>/audit-heads`` (to be
    copied off the host); a broken chain is reported, never authenticated."""
    from nazaha.services import audit

    directory = console.settings.effective_console_dir / audit.HEADS_DIR
    try:
        await audit.export_head(console.sessionmaker, console.console_secret, directory)
    except audit.AuditChainBroken:
        log.error("the audit log does not verify: its head was not exported (run `nazaha audit verify`)")


async def _staff_digests(console: Console) -> None:
    """Every ``staff_digest_hours``: the content-free digest to the staff chats."""
    from nazaha.admin.routes.cases import rules_of
    from nazaha.bot.app import build_bot
    from nazaha.services.staff_digest import digest_counts, digest_text, send_digest

    settings = console.settings
    period = dt.timedelta(hours=settings.staff_digest_hours)
    bot = build_bot(settings)
    try:
        while True:
            await asyncio.sleep(period.total_seconds())
            try:
                now = console.clock()
                async with console.sessionmaker() as session:
                    counts = await digest_counts(session, now.date(), (now - period).date(), rules_of(console))
                await send_digest(bot, settings.staff_chat_ids, digest_text(counts, settings.staff_digest_locale))
            except Exception as exc:  # never stop the console for a digest; no content logged
                log.warning("staff digest failed: %s", type(exc).__name__)
    finally:
        await bot.session.close()


def _area_routers():
    """The routers of the areas beyond sign-in, in menu order."""
    from nazaha.admin.routes import (
        audit_log,
        awareness,
        broadcasts,
        campaigns,
        cases,
        evidence,
        exports,
        keys,
        library,
        referral,
        reply_templates,
        retention,
        statistics,
        surveys,
        users,
    )

    return (cases, exports, evidence, referral, reply_templates, statistics, users, keys, audit_log, retention,
            awareness, broadcasts, library, surveys, campaigns)


def console_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path)`` the console answers (routers included), e.g. for checking
    that each case URL refuses volunteers."""
    found: list[tuple[str, str]] = []

    def walk(routes) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            elif getattr(route, "methods", None):
                found.extend((m, route.path) for m in sorted(route.methods) if m != "HEAD")

    walk(app.routes)
    return found


__all__ = ["console_routes", "create_app", "build_console", "HTTPException"]
