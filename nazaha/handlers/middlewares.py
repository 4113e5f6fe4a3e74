"""Outer middlewares: locale, the per-update unit of work and outbox, flood control."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Protocol

from aiogram import BaseMiddleware, Bot
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import BaseEventIsolation
from aiogram.types import TelegramObject, Update, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from nazaha.bot.confirm import Settlement, settlement_of
from nazaha.handlers import screens
from nazaha.handlers.outbox import Outbox
from nazaha.metrics import mark_outcome
from nazaha.storage.crypto import pseudonym
from nazaha.storage.fsm import OverlayFsmStorage
from nazaha.storage.prefs import PreferenceStore
from nazaha.storage.redis_link import SHARED_STATE_ERRORS
from nazaha.storage.unit_of_work import DuplicateUpdate, UnitOfWork, current_uow
from nazaha.storage.update_rows import UpdateRows

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _chat_id(update: Update) -> int | None:
    """The private chat to tell something about this update (a failure, flood control);
    None for groups, supergroups and channels: the bot never posts there on its own."""
    chat = None
    if update.message:
        chat = update.message.chat
    elif update.edited_message:
        chat = update.edited_message.chat
    elif update.callback_query and update.callback_query.message:
        chat = update.callback_query.message.chat
    return chat.id if chat is not None and chat.type == "private" else None


class PreferenceI18nMiddleware(I18nMiddleware):
    """Locale: the user's stored choice, else Telegram's language_code, else Arabic."""

    def __init__(self, i18n: I18n, prefs: PreferenceStore) -> None:
        super().__init__(i18n)
        self.prefs = prefs

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        preferences = await self.prefs.get(user.id)
        data["preferences"] = preferences
        if preferences.locale in self.i18n.available_locales:
            return preferences.locale
        code = (user.language_code or "").lower()
        if code.startswith("en"):
            return "en"
        return self.i18n.default_locale


class UnitOfWorkScope(BaseMiddleware):
    """Opens the update's unit of work before anything reads the database.

    Registered outermost, so the locale, the FSM state and the dedup check all read
    through one session; ``UnitOfWorkMiddleware`` (inside the per-user lock) commits it.
    """

    def __init__(self, sessionmaker: Any, write_lock: Any) -> None:
        self.sessionmaker = sessionmaker
        self.write_lock = write_lock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        bot: Bot = data["bot"]
        uow = UnitOfWork(
            self.sessionmaker,
            bot_id=bot.id,
            update_id=event.update_id,
            write_lock=self.write_lock,
        )
        token = current_uow.set(uow)
        data["uow"] = uow
        try:
            return await handler(event, data)
        finally:
            current_uow.reset(token)
            await uow.close()


class LockedStateMiddleware(FSMContextMiddleware):
    """aiogram's FSM middleware (the per-user lock, then the state lookup) that first reads
    the rows the update needs in one statement (:class:`UpdateRows`), inside the lock."""

    def __init__(self, storage: OverlayFsmStorage, events_isolation: BaseEventIsolation, rows: UpdateRows) -> None:
        super().__init__(storage=storage, events_isolation=events_isolation)
        self.rows = rows

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        context = self.resolve_event_context(data["bot"], data)
        data["fsm_storage"] = self.storage
        if context is None:
            return await handler(event, data)
        async with self.events_isolation.lock(key=context.key):
            await self.rows.load(data["uow"], context.key)
            data.update({"state": context, "raw_state": await context.get_state()})
            return await handler(event, data)


class RecentUpdates:
    """Update ids handled or in progress in this process, the most recent ``size`` of them.

    Redelivered updates (a webhook retry, a getUpdates answer repeated after a network
    error) are recognised here, in memory: an ordinary step writes nothing to the database,
    so it has nothing to deduplicate there. Report-side writes also claim their update id in
    their own transaction (storage/report_writes.py), which covers several replicas.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def claim(self, bot_id: int, update_id: int) -> bool:
        """True the first time an update id is seen (then it counts as taken)."""
        key = (bot_id, update_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def release(self, bot_id: int, update_id: int) -> None:
        """The update failed before anything was kept: let a redelivery try again."""
        self._seen.pop((bot_id, update_id), None)


class SharedUpdateMarks(Protocol):
    """Update ids done by any replica (Redis): the fast pre-check before the database."""

    async def seen(self, bot_id: int, update_id: int) -> bool: ...

    async def done(self, bot_id: int, update_id: int) -> None: ...


class UnitOfWorkMiddleware(BaseMiddleware):
    """Runs the update and commits its unit of work; replies leave only after commit.

    Registered inside aiogram's FSM middleware, so the commit and the replies happen while
    the user's lock is held: two quick taps are handled, stored and answered in order.

    Duplicates: this process's recent update ids first, then (several replicas) ``shared``,
    the update ids any replica finished (marked once the effects are committed, before the
    replies); the authoritative claim stays in the database with report-side effects.
    When Redis cannot be reached the update fails with the error (after its claim here is
    released), instead of an apology, so that it is delivered again.

    With a settlement (``data["settlement"]``, nazaha/bot/confirm.py) the update is confirmed
    to Telegram right after the commit, before its replies are sent; a failure before the
    commit hands it back to Telegram in silence (a redelivery comes) until its retry window
    is over; only then is the user told that something went wrong. Without one (tests
    feeding the dispatcher directly) a failure is told at once.
    """

    def __init__(self, recent: RecentUpdates | None = None, shared: SharedUpdateMarks | None = None) -> None:
        self.recent = recent or RecentUpdates()
        self.shared = shared

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        bot: Bot = data["bot"]
        uow: UnitOfWork = data["uow"]
        settlement = settlement_of(data)
        if not self.recent.claim(bot.id, event.update_id):
            log.info("duplicate update skipped")
            mark_outcome(data, "duplicate")
            return None
        try:
            return await self._handle(handler, event, data, bot, uow, settlement)
        except SHARED_STATE_ERRORS:
            self.recent.release(bot.id, event.update_id)  # (logged by the errors handler)
            raise

    async def _handle(
        self, handler: Handler, event: Update, data: dict[str, Any], bot: Bot, uow: UnitOfWork,
        settlement: Settlement | None,
    ) -> Any:
        if self.shared is not None and await self.shared.seen(bot.id, event.update_id):
            log.info("duplicate update skipped (another replica handled it)")
            mark_outcome(data, "duplicate")
            return None
        outbox = Outbox(bot)
        data["outbox"] = outbox
        try:
            result = await handler(event, data)
        except DuplicateUpdate:
            log.info("duplicate update discarded")
            mark_outcome(data, "duplicate")
            await self._mark_done(bot, event)
            return None
        except SHARED_STATE_ERRORS:
            raise
        except Exception:
            mark_outcome(data, "failed")
            await self._failed(bot, event, "update handling failed", settlement)
            return None
        try:
            await uow.commit()
        except SHARED_STATE_ERRORS:
            raise
        except Exception:
            mark_outcome(data, "failed")
            await self._failed(bot, event, "update commit failed", settlement)
            return None
        await self._mark_done(bot, event)
        if settlement is not None:
            settlement.confirm()
        await outbox.flush()
        return result

    async def _mark_done(self, bot: Bot, event: Update) -> None:
        if self.shared is not None:
            await self.shared.done(bot.id, event.update_id)

    async def _failed(self, bot: Bot, event: Update, what: str, settlement: Settlement | None) -> None:
        """Nothing of the update was kept: let a redelivery try again; say so unless one
        is coming."""
        self.recent.release(bot.id, event.update_id)
        log.exception(what)
        if settlement is not None and settlement.failed():
            return  # handed back to Telegram: the user hears from the redelivery
        chat_id = _chat_id(event)
        if chat_id is not None:
            failure = Outbox(bot)
            failure.send(chat_id, screens.something_went_wrong())
            await failure.flush()


class SharedBuckets(Protocol):
    """Token buckets kept outside the process (Redis), by Telegram user id."""

    async def allow(self, user_id: int) -> tuple[bool, bool]: ...


class ThrottleMiddleware(BaseMiddleware):
    """Token bucket per pseudonymous user, in process memory (or in Redis: ``shared``).

    Keys are HMAC pseudonyms, never Telegram ids; the table is bounded (least recently
    seen users are forgotten first).
    """

    MAX_TRACKED = 100_000

    def __init__(
        self,
        pepper: bytes,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBuckets | None = None,
    ) -> None:
        """``shared``: buckets in Redis shared by the replicas (then none are kept here)."""
        self.shared = shared
        self.pepper = pepper
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float, bool]] = OrderedDict()

    def allow(self, key: str) -> tuple[bool, bool]:
        """(allowed, warn): warn is True the first time a user is throttled in a burst."""
        now = self.clock()
        tokens, last, warned = self._buckets.pop(key, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now, False)
            allowed, warn = True, False
        else:
            self._buckets[key] = (tokens, now, True)
            allowed, warn = False, not warned
        while len(self._buckets) > self.MAX_TRACKED:
            self._buckets.popitem(last=False)
        return allowed, warn

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None:
            return await handler(event, data)
        if self.shared is not None:
            allowed, warn = await self.shared.allow(user.id)
        else:
            allowed, warn = self.allow(pseudonym(self.pepper, "throttle", user.id))
        if allowed:
            return await handler(event, data)
        mark_outcome(data, "throttled")
        assert isinstance(event, Update)
        outbox: Outbox = data["outbox"]
        if event.callback_query:
            outbox.answer_callback(event.callback_query.id)
        chat_id = _chat_id(event)
        if warn and chat_id is not None:
            outbox.send(chat_id, screens.slow_down())
        return None
