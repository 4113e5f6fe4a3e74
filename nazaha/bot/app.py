"""Composition root: the only place where Bot, Dispatcher, engine and services are built."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseEventIsolation
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import BotCommand, BotCommandScopeDefault
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nazaha.awareness.library import sync_library
from nazaha.awareness.pacing import Pacer
from nazaha.awareness.sender import BroadcastSender
from nazaha.awareness.services import AwarenessServices
from nazaha.bot.confirm import UpdateRunner
from nazaha.bot.error_logging import install_error_logging, install_loop_exception_logging
from nazaha.bot.observability import MetricsServer, UpdateMetrics, refresh_queue_depths
from nazaha.bot.health import bot_probes
from nazaha.bot.polling import ConfirmingPoller
from nazaha.bot.retry import BOT_API
from nazaha.bot.settings import Settings
from nazaha.bot.shared_state import SharedState, guard_persistence, open_shared_state
from nazaha.bot.telegram_session import BotApiSession
from nazaha.bot.undecodable import UndecodableUpdates
from nazaha.bot.webhook import WebhookServer
from nazaha.flows.report_flow import Draft, EvidenceLimits
from nazaha.handlers import get_routers
from nazaha.handlers.chats import ChatGate
from nazaha.handlers.context import ReplyMiddleware, ReplyOptions, Services
from nazaha.handlers.evidence import EvidenceIntake
from nazaha.handlers.albums import AlbumCollector, AlbumMiddleware
from nazaha.handlers.middlewares import (
    LockedStateMiddleware,
    PreferenceI18nMiddleware,
    ThrottleMiddleware,
    UnitOfWorkMiddleware,
    UnitOfWorkScope,
)
from nazaha.handlers.notifier import Notifier
from nazaha.handlers.redis_memory import (
    PseudonymousEventIsolation,
    RedisAttemptCounts,
    RedisReceipts,
    RedisRestartNotice,
    RedisSafetyReads,
    RedisSessionKeys,
    RedisThrottle,
    RedisUpdateMarks,
)
from nazaha.handlers.report import ReportForm
from nazaha.handlers.restart_notice import RestartNotice
from nazaha.handlers.safety_reads import SafetyReads
from nazaha.handlers.session_keys import SessionKeys
from nazaha.handlers.undelivered_receipts import UndeliveredReceipts
from nazaha.storage.attempts import AttemptLimiter
from nazaha.storage import bot_runs
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import CaseService
from nazaha.storage.notifications import Mailbox, NotificationLinks
from nazaha.storage.crypto import KDF_FLOOR, KDF_TESTING, BotKeyBox, KdfParams
from nazaha.storage.database import (
    WalScrubber,
    check_database,
    checkpoint_wal,
    create_engine,
    create_sessionmaker,
    write_lock_for,
)
from nazaha.storage.fsm import OverlayFsmStorage, VolatileFsmStorage
from nazaha.storage.keyfiles import KeyPaths, check_bot_host_data_dir, load_bot_secrets, load_team_public_key
from nazaha.storage.models import Report
from nazaha.storage.prefs import PreferenceStore
from nazaha.storage.redis_fsm import RedisFsmStorage
from nazaha.storage.report_writes import ReportWriter
from nazaha.storage.reports import ReportVault
from nazaha.storage.unit_of_work import purge_processed_updates
from nazaha.storage.update_rows import UpdateRows

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "nazaha"
MAINTENANCE_INTERVAL = 600.0
SWEEP_INTERVAL = 60.0


def kdf_floor(settings: Settings) -> KdfParams:
    return KDF_TESTING if settings.kdf_profile == "testing" else KDF_FLOOR


def build_i18n() -> I18n:
    return I18n(path=LOCALES_DIR, default_locale="ar", domain=DOMAIN)


@dataclass
class BotRuntime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bot: Bot
    dispatcher: Dispatcher
    fsm: OverlayFsmStorage
    i18n: I18n
    services: Services
    notifier: Notifier
    mailbox: Mailbox
    broadcasts: BroadcastSender | None = None
    # NAZAHA_REDIS_URL: the shared Redis and this process's place among the replicas.
    shared: SharedState | None = None
    # Set when the bot must stop on its own (Redis began to persist): why, for the operator.
    stop_reason: str | None = None
    stopped: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def stop(self, reason: str) -> None:
        """Stop serving (polling or webhook) and exit with ``reason``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopped.set()

    async def close(self) -> None:
        """Write what is waiting (awareness counts: only batches big enough, the rest is
        dropped), withdraw the mailbox, forget every conversation and unlocked case,
        truncate the WAL, close sessions and engines."""
        try:
            await self.services.writer.flush()
            if self.services.awareness is not None:
                await self.services.awareness.close_counts()
            await self.services.wal.close()
            await self.mailbox.close()
            undecodable = getattr(self.bot.session, "on_undecodable", None)
            if isinstance(undecodable, UndecodableUpdates):
                await undecodable.close()  # notices still being sent
        finally:
            await self.fsm.close()
            self.services.session_keys.clear()
            self.services.safety.clear()
            await self.bot.session.close()
            try:
                await checkpoint_wal(self.engine)
            finally:
                await self.engine.dispose()
                if self.shared is not None:
                    await self.shared.close()


def build_bot(settings: Settings) -> Bot:
    if settings.bot_token is None:
        raise SystemExit("NAZAHA_BOT_TOKEN is not set (see README: connecting a real bot)")
    session = BotApiSession()
    if settings.telegram_api_url:
        session = BotApiSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=None),
    )


async def build_runtime(settings: Settings, *, events_isolation: BaseEventIsolation | None = None) -> BotRuntime:
    paths = KeyPaths.for_data_dir(settings.data_dir)
    if not settings.demo:  # BotHostRefused: no recovery key, passphrase or console store here
        check_bot_host_data_dir(settings.data_dir)
    bot_key, pepper = load_bot_secrets(
        paths,
        settings.bot_key.get_secret_value() if settings.bot_key else None,
        settings.pepper.get_secret_value() if settings.pepper else None,
    )
    # Several replicas: what one process keeps in memory is shared through Redis, named and
    # sealed under a key only the running processes hold (docs/deployment.md, "Redis").
    shared = await open_shared_state(settings, bot_key) if settings.redis_url else None
    try:
        return await _assemble(settings, paths, bot_key, pepper, shared, events_isolation)
    except BaseException:  # a start-up that fails leaves the ring (and closes the pool)
        if shared is not None:
            await shared.close()
        raise


async def _assemble(
    settings: Settings,
    paths: KeyPaths,
    bot_key: bytes,
    pepper: bytes,
    shared: SharedState | None,
    events_isolation: BaseEventIsolation | None,
) -> BotRuntime:
    engine = create_engine(settings.effective_database_url)
    await check_database(engine)
    sessionmaker = create_sessionmaker(engine)
    box = BotKeyBox(bot_key)
    team_public = load_team_public_key(paths)
    vault = await ReportVault.load(
        sessionmaker, team_public, kdf_floor=kdf_floor(settings),
        signing_pin_path=paths.team_signing_public, public_path=paths.team_public,
        generation_path=paths.team_key_generation,
    )
    # Only a report draft's expiry is announced; an idle follow-up session just ends.
    draft_ttl, told = timedelta(seconds=settings.draft_ttl_seconds), {ReportForm.active.state}
    fsm: OverlayFsmStorage
    if shared is not None:
        fsm = RedisFsmStorage(shared.redis, shared.ring, ttl=draft_ttl, told_states=told)
    else:
        fsm = VolatileFsmStorage(pepper, ttl=draft_ttl, told_states=told)
    prefs = PreferenceStore(
        sessionmaker, box, pepper, ttl=timedelta(days=settings.preferences_ttl_days)
    )
    limits = EvidenceLimits(
        max_files=settings.evidence_max_files,
        max_total_bytes=settings.evidence_max_mb * 1024 * 1024,
    )
    links = NotificationLinks(sessionmaker, box, vault.team_key)
    wal = WalScrubber(engine)
    awareness = AwarenessServices.build(sessionmaker, box, pepper, min_batch=settings.aggregate_min_batch)
    # The awareness files in locales/ are the library's initial set (admins' edits kept).
    # A failure (e.g. two replicas starting at once) leaves the library as it was: reports
    # must not wait for articles.
    try:
        await sync_library(sessionmaker, LOCALES_DIR)
    except Exception as exc:
        log.warning("awareness library not synced (%s): serving it as it is", type(exc).__name__)
    services = Services(
        vault=vault,
        prefs=prefs,
        evidence=EvidenceIntake(BlobStore(blob_root(settings)), limits.max_file_bytes),
        cases=CaseService(sessionmaker),
        links=links,
        attempts=AttemptLimiter(
            pepper,
            per_user_per_hour=settings.receipt_attempts_per_hour,
            global_per_hour=settings.receipt_attempts_global_per_hour,
            slow_per_second=settings.receipt_attempts_slow_per_second,
            shared=RedisAttemptCounts(shared.redis, shared.ring) if shared else None,
        ),
        session_keys=(
            RedisSessionKeys(shared.redis, shared.ring, settings.session_ttl_seconds)
            if shared
            else SessionKeys(settings.session_ttl_seconds)
        ),
        writer=ReportWriter(
            sessionmaker, max_delay=settings.report_write_delay_seconds, after_write=wal.soon
        ),
        wal=wal,
        fsm=fsm,
        safety=(
            RedisSafetyReads(shared.redis, shared.ring, ttl=settings.draft_ttl_seconds)
            if shared
            else SafetyReads(pepper, ttl=settings.draft_ttl_seconds)
        ),
        restart=RedisRestartNotice(shared.redis, shared.ring) if shared else RestartNotice(pepper),
        receipts=RedisReceipts(shared.redis, shared.ring) if shared else UndeliveredReceipts(pepper),
        awareness=awareness,
    )
    i18n = build_i18n()
    bot = build_bot(settings)

    # aiogram's FSM middleware (the per-user lock and the state lookup) is placed by hand
    # (disable_fsm) so that the unit of work exists before it and commits inside it.
    if events_isolation is None:  # a user's updates one at a time, across replicas if shared
        events_isolation = (
            PseudonymousEventIsolation(shared.redis, shared.ring) if shared else SimpleEventIsolation()
        )
    dp = Dispatcher(storage=fsm, events_isolation=events_isolation, disable_fsm=True)
    # Outer middlewares, outermost first: the unit of work (one read session for the whole
    # update), the per-user lock and state, the locale (so failures are answered in the
    # user's language), the commit with its replies, then flood control. Nothing may read
    # before the lock: the read session's snapshot would predate the previous update.
    # Outside everything: counted by type and outcome, and timed (nazaha/metrics.py).
    dp.update.outer_middleware(UpdateMetrics())
    # First of all: updates of groups and channels the operator did not configure are
    # dropped (and the bot leaves them) before anything reads or answers them.
    dp.update.outer_middleware(
        ChatGate([*settings.staff_chat_ids, *settings.publication_chat_ids])
    )
    # Then albums: their files are gathered outside the per-user lock and handled as one.
    dp.update.outer_middleware(AlbumMiddleware(AlbumCollector(settings.album_quiet_seconds)))
    dp.update.outer_middleware(UnitOfWorkScope(sessionmaker, write_lock_for(engine)))
    dp.fsm = LockedStateMiddleware(fsm, dp.fsm.events_isolation, UpdateRows(prefs))
    dp.update.outer_middleware(dp.fsm)
    dp.update.outer_middleware(PreferenceI18nMiddleware(i18n, prefs))
    dp.update.outer_middleware(
        UnitOfWorkMiddleware(shared=RedisUpdateMarks(shared.redis, shared.ring) if shared else None)
    )
    throttle = (
        RedisThrottle(shared.redis, shared.ring, settings.throttle_rate, settings.throttle_burst)
        if shared
        else None
    )
    dp.update.outer_middleware(
        ThrottleMiddleware(pepper, settings.throttle_rate, settings.throttle_burst, shared=throttle)
    )
    reply_middleware = ReplyMiddleware(
        services=services,
        options=ReplyOptions(
            high_risk_contact=settings.high_risk_contact,
            draft_ttl_hours=max(1, round(settings.draft_ttl_seconds / 3600)),
            session_minutes=max(1, round(settings.session_ttl_seconds / 60)),
            limits=limits,
        ),
    )
    dp.message.outer_middleware(reply_middleware)
    dp.callback_query.outer_middleware(reply_middleware)
    dp.edited_message.outer_middleware(reply_middleware)
    dp.include_routers(*get_routers())
    # Handlers of updates without a user (``poll``: a quiz poll's counts) get it by name.
    dp["awareness"] = awareness
    install_error_logging(dp)

    async def stored_locale(user_id: int) -> str | None:
        # Outside any update: a plain read of the (expiring) preferences row.
        return (await prefs.get(user_id)).locale

    bot.session.on_undecodable = UndecodableUpdates(bot, i18n, stored_locale)
    mailbox = Mailbox(sessionmaker, box)
    notifier = Notifier(bot, mailbox, links, i18n)
    broadcasts = BroadcastSender(
        sessionmaker,
        bot,
        awareness.subscribers,
        box,
        Pacer(settings.broadcast_rate, settings.broadcast_chat_rate),
        publication_chat_ids=settings.publication_chat_ids,
        check_seconds=settings.broadcast_check_seconds,
    )
    return BotRuntime(
        settings, engine, sessionmaker, bot, dp, fsm, i18n, services, notifier, mailbox, broadcasts,
        shared=shared,
    )


def blob_root(settings: Settings) -> Path:
    return settings.data_dir / "blobs"


COMMANDS = (
    ("start", __("Main menu")),
    ("report", __("Report corruption")),
    ("complaint", __("Complain about a public service")),
    ("followup", __("Follow up with your receipt")),
    ("learn", __("Learn about corruption")),
    ("subscribe", __("Awareness messages by topic")),
    ("stop", __("Stop awareness messages")),
    ("cancel", __("Stop the current report")),
    ("wipe", __("Erase this conversation")),
    ("forget", __("How to stop notifications")),
    ("safety", __("Safety and privacy")),
    ("language", __("Change the language")),
    ("help", __("Help")),
)


DESCRIPTION = __(
    "Nazaha lets you report corruption or complain about a public service, anonymously. "
    "Your name, username and account number are never stored with your report."
)
SHORT_DESCRIPTION = __("Report corruption anonymously and safely.")


async def register_bot_profile(bot: Bot, i18n: I18n) -> None:
    """Commands and descriptions per language; the defaults (no language_code) are Arabic."""
    for language_code in (None, *i18n.available_locales):
        with i18n.context(), i18n.use_locale(language_code or i18n.default_locale):
            commands = [BotCommand(command=name, description=str(text)) for name, text in COMMANDS]
            description, short_description = str(DESCRIPTION), str(SHORT_DESCRIPTION)
        for call in (
            lambda: bot.set_my_commands(
                commands, scope=BotCommandScopeDefault(), language_code=language_code
            ),
            lambda: bot.set_my_description(description, language_code=language_code),
            lambda: bot.set_my_short_description(short_description, language_code=language_code),
        ):
            (await BOT_API.run(call, what="bot profile")).unwrap()


async def maintenance(runtime: BotRuntime) -> None:
    """Every few minutes: expired preferences, old update ids, stale wrong-receipt counters
    and receipts kept in memory past their time, survey markers and staff link codes past
    their time, blobs of abandoned drafts, file times, and the SQLite WAL truncated."""
    while True:
        try:
            runtime.services.receipts.sweep()
            await runtime.services.prefs.purge_expired()
            if runtime.services.awareness is not None:
                await runtime.services.awareness.surveys.purge_expired_markers(
                    datetime.now(timezone.utc)
                )
                await runtime.services.awareness.staff_chats.purge_expired(datetime.now(timezone.utc))
            await purge_processed_updates(runtime.sessionmaker)
            runtime.services.attempts.sweep()
            await purge_orphan_blobs(runtime)
            runtime.services.evidence.blobs.replenish_pool()
            runtime.services.evidence.blobs.blur_times()
            await checkpoint_wal(runtime.engine)
        except Exception:
            log.exception("maintenance failed")
        await asyncio.sleep(MAINTENANCE_INTERVAL)


async def sweep_memory(runtime: BotRuntime) -> None:
    """Every minute: expired drafts and follow-up sessions, unlocked cases and safety
    notice acknowledgements whose time is up, and the accounts seen since a restart once its
    notice is no longer due, leave memory (a quiet process must not keep them until the next
    user); the SQLite WAL is truncated."""
    while True:
        try:
            await runtime.fsm.purge_expired()
            runtime.services.session_keys.sweep()
            runtime.services.safety.sweep()
            runtime.services.restart.sweep()
            await checkpoint_wal(runtime.engine)
        except Exception:
            log.exception("memory sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL)


async def flush_awareness_counts(runtime: BotRuntime) -> None:
    """Every NAZAHA_AGGREGATE_FLUSH_SECONDS: survey answers, campaign opens and quiz votes
    waiting in memory are written, for each batch of at least NAZAHA_AGGREGATE_MIN_BATCH
    (nazaha/awareness/tally.py). Failures are logged by type and retried."""
    awareness = runtime.services.awareness
    if awareness is None:
        return
    while True:
        await asyncio.sleep(runtime.settings.aggregate_flush_seconds)
        await awareness.flush_counts()


async def follow_team_key(runtime: BotRuntime) -> None:
    """After a team-key rotation, switch to the new team public key (only if the pinned
    team signing key signed it; see nazaha/storage/team_key.py), without a restart."""
    while True:
        await asyncio.sleep(runtime.settings.team_key_check_seconds)
        try:
            await runtime.services.vault.team_key.refresh(runtime.sessionmaker)
        except Exception:
            log.exception("team key check failed")


async def purge_orphan_blobs(runtime: BotRuntime) -> int:
    """Blobs of drafts never submitted (discarded, wiped, expired, or lost to a restart:
    drafts live in memory only) are deleted once no draft in this process could still
    submit them."""
    blobs = runtime.services.evidence.blobs
    live = runtime.services.evidence.recent_drafts(
        runtime.settings.draft_ttl_seconds + MAINTENANCE_INTERVAL
    )
    for data in await runtime.fsm.all_data():  # drafts still open, however long ago their files came
        draft = Draft.from_dict(data.get("draft") or {})
        if draft is not None and draft.context:
            live.add(draft.context.get("report_id", ""))
    candidates = [report_id for report_id in blobs.list_reports() if report_id not in live]
    if not candidates:
        return 0
    async with runtime.sessionmaker() as session:
        stored = set(
            await session.scalars(select(Report.id).where(Report.id.in_(candidates)))
        )
    orphans = [r for r in candidates if r not in stored]
    for report_id in orphans:
        blobs.delete_report(report_id)
    return len(orphans)


def freeze_startup_objects() -> None:
    """Keep what start-up built (modules, SQLAlchemy and pydantic schemas, aiogram types:
    alive as long as the process) out of the garbage collector's full collections. Without
    this each full collection walked them all and stalled every user for 80-180 ms under
    load (docs/benchmarks.md); garbage made later is collected as usual."""
    gc.collect()
    gc.freeze()


async def start_run(runtime: BotRuntime) -> datetime:
    """Before the first update: record this run (:mod:`nazaha.storage.bot_runs`), open the
    restart notice's window from the previous run's record, and once per database rewrite
    preference rows an older release left with fields that told that an account began a
    report (:meth:`PreferenceStore.drop_legacy_fields`). Returns when this run started."""
    now = datetime.now(timezone.utc)
    previous = await bot_runs.record_start(runtime.sessionmaker, now)
    draft_ttl = timedelta(seconds=runtime.settings.draft_ttl_seconds)
    until = bot_runs.restart_window(previous, now, draft_ttl)
    legacy = await runtime.services.prefs.drop_legacy_fields()
    if legacy.open_conversation and until is None:
        until = now + draft_ttl  # an older release marked conversations open: they were lost
    if runtime.shared is not None and not runtime.shared.ring.fresh:
        # Joined running replicas: their conversations (in Redis) were not lost; adopt the
        # window the replica that started them opened, if any.
        until = None
    await runtime.services.restart.open_until(until)
    return now


async def stop_run(runtime: BotRuntime, started: datetime) -> None:
    """A clean stop: record when, so that the next start knows how long ago conversations
    could still have been open."""
    try:
        await bot_runs.record_stop(runtime.sessionmaker, started, datetime.now(timezone.utc))
    except Exception as exc:  # the next start then takes it for an unclean stop
        log.warning("the clean stop was not recorded (%s)", type(exc).__name__)


@contextlib.asynccontextmanager
async def running(runtime: BotRuntime):
    started = await start_run(runtime)
    # A WAL left by a crash holds the last minutes' commits in order (and the start's rewrite
    # of old preference rows, old versions included): truncate it first.
    await checkpoint_wal(runtime.engine)
    runtime.services.evidence.blobs.replenish_pool()
    await register_bot_profile(runtime.bot, runtime.i18n)
    await runtime.mailbox.open()
    freeze_startup_objects()
    metrics_server = await start_metrics(runtime)
    tasks = [
        asyncio.create_task(maintenance(runtime)),
        asyncio.create_task(sweep_memory(runtime)),
        asyncio.create_task(runtime.notifier.run(runtime.settings.notify_interval_seconds)),
        asyncio.create_task(follow_team_key(runtime)),
        asyncio.create_task(flush_awareness_counts(runtime)),
    ]
    if runtime.broadcasts is not None:  # awareness broadcasts and test sends
        tasks.append(asyncio.create_task(runtime.broadcasts.run()))
    if metrics_server is not None:
        tasks.append(asyncio.create_task(refresh_queue_depths(
            runtime.sessionmaker, runtime.services.receipts.count,
            runtime.settings.metrics_refresh_seconds,
        )))
    if runtime.shared is not None:  # Redis's persistence re-checked (the key beats already)
        tasks.append(
            asyncio.create_task(
                guard_persistence(runtime.shared, runtime.settings.redis_check_seconds, runtime.stop)
            )
        )
    try:
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop_run(runtime, started)
        if metrics_server is not None:
            await metrics_server.close()


async def start_metrics(runtime: BotRuntime) -> MetricsServer | None:
    """The metrics endpoint (its own address, docs/deployment.md "Metrics"), if configured."""
    settings = runtime.settings
    if settings.metrics_port is None:
        return None
    return await MetricsServer.start(settings.metrics_host, settings.metrics_port)


def update_runner(runtime: BotRuntime, *, webhook: bool) -> UpdateRunner:
    """Feeds updates to the dispatcher; each is confirmed to Telegram once committed
    (nazaha/bot/confirm.py). A webhook holds each chat's next update until the previous
    one is answered."""
    return UpdateRunner(
        runtime.dispatcher,
        runtime.bot,
        retry_seconds=runtime.settings.update_retry_seconds,
        holds_chat=webhook,
    )


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set ``stop``; returns the function that restores the defaults."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def restore() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return restore


async def run_polling(settings: Settings, *, handle_signals: bool = True) -> None:
    """Long polling that confirms an update only once it is settled (nazaha/bot/polling.py).
    SIGTERM / SIGINT (with ``handle_signals``) stop it gracefully; cancelling it stops at
    once (what is not committed comes again after the restart)."""
    install_loop_exception_logging()
    runtime = await build_runtime(settings)
    stop = runtime.stopped  # a signal, or the bot stopping on its own (runtime.stop)
    restore = stop_on_signals(stop) if handle_signals else None
    try:
        async with running(runtime):
            # getUpdates fails while a webhook is set: polling mode removes it.
            (
                await BOT_API.run(
                    lambda: runtime.bot.delete_webhook(drop_pending_updates=False),
                    what="DeleteWebhook",
                )
            ).unwrap()
            poller = ConfirmingPoller(
                update_runner(runtime, webhook=False),
                allowed_updates=runtime.dispatcher.resolve_used_update_types(),
                undecodable=runtime.bot.session.on_undecodable,
            )
            log.info("bot ready: polling")
            await poller.run(stop, grace_seconds=settings.shutdown_grace_seconds)
            log.info("polling stopped")
    finally:
        if restore is not None:
            restore()
        await runtime.close()
    if runtime.stop_reason is not None:
        raise SystemExit(runtime.stop_reason)


async def run_webhook(settings: Settings) -> None:
    """The webhook server of one replica (nazaha/bot/webhook.py); SIGTERM / SIGINT stop it
    gracefully: new updates get 503, those in progress get NAZAHA_SHUTDOWN_GRACE_SECONDS."""
    if not settings.webhook_url or not settings.webhook_secret:
        raise SystemExit("webhook mode needs NAZAHA_WEBHOOK_URL and NAZAHA_WEBHOOK_SECRET")
    install_loop_exception_logging()
    runtime = await build_runtime(settings)
    secret = settings.webhook_secret.get_secret_value()
    server = WebhookServer(
        update_runner(runtime, webhook=True),
        secret,
        probes=bot_probes(runtime),
        undecodable=runtime.bot.session.on_undecodable,
    )
    stop = runtime.stopped  # a signal, or the bot stopping on its own (runtime.stop)
    restore = stop_on_signals(stop)
    try:
        async with running(runtime):
            await server.start(settings.webhook_host, settings.webhook_port)
            # Every replica sets the same public URL (the reverse proxy's) and secret.
            (
                await BOT_API.run(
                    lambda: runtime.bot.set_webhook(
                        settings.webhook_url,
                        secret_token=secret,
                        allowed_updates=runtime.dispatcher.resolve_used_update_types(),
                    ),
                    what="SetWebhook",
                )
            ).unwrap()
            log.info("bot ready: webhook server listening on %s:%d", settings.webhook_host, settings.webhook_port)
            await stop.wait()
            log.info("stopping: new updates are refused")
            await server.stop(settings.shutdown_grace_seconds)
    finally:
        restore()
        await server.close()
        await runtime.close()
    if runtime.stop_reason is not None:
        raise SystemExit(runtime.stop_reason)
