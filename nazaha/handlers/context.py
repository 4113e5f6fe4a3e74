"""``Reply``: everything a handler needs to answer one update, in one object.

Built per update by ``ReplyMiddleware`` and injected as the ``reply`` keyword argument, it
keeps handlers thin: they decide what to show and what to remember; the outbox sends after
the commit and the unit of work stores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, TelegramObject, User
from aiogram.utils.i18n import I18n

from aiogram import Bot
from aiogram.fsm.storage.base import BaseStorage

from nazaha.awareness.services import AwarenessServices
from nazaha.flows.report_flow import EvidenceLimits
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers.evidence import EvidenceIntake
from nazaha.handlers.outbox import Cleared, Outbox
from nazaha.handlers.restart_notice import RestartNotice
from nazaha.handlers.safety_reads import SafetyReads
from nazaha.handlers.screens import Screen
from nazaha.handlers.session_keys import SessionKeys
from nazaha.handlers.undelivered_receipts import UndeliveredReceipts
from nazaha.storage.attempts import AttemptLimiter
from nazaha.storage.cases import CaseService
from nazaha.storage.database import WalScrubber
from nazaha.storage.fsm import OverlayFsmStorage
from nazaha.storage.notifications import NotificationLinks
from nazaha.storage.prefs import Preferences, PreferenceStore
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.reports import ReportVault
from nazaha.storage.unit_of_work import UnitOfWork

if TYPE_CHECKING:  # their Redis counterparts, with NAZAHA_REDIS_URL
    from nazaha.handlers.redis_memory import (
        RedisReceipts,
        RedisRestartNotice,
        RedisSafetyReads,
        RedisSessionKeys,
    )

# How far before the first update of a conversation (the first after a wipe, or ever) it is
# taken to begin, for /wipe: the bot's "erased" notice and a notice or two around it come
# just before that update. Telegram skips ids that do not exist.
AFTER_WIPE_LOOKBACK = 3


def first_anchor(message_id: int) -> int:
    """Where a conversation whose first update carries ``message_id`` begins (>= 1)."""
    return max(1, message_id - AFTER_WIPE_LOOKBACK)


def message_id_of(event: TelegramObject) -> int | None:
    """The id of a message, or of the message under a pressed button; None otherwise."""
    if isinstance(event, Message):
        return event.message_id
    if isinstance(event, CallbackQuery) and event.message is not None:
        return event.message.message_id
    return None


@dataclass(frozen=True)
class ReplyOptions:
    """Operator settings that change what users are told."""

    high_risk_contact: str | None = None
    draft_ttl_hours: int = 24
    session_minutes: int = 15
    limits: EvidenceLimits = EvidenceLimits()


@dataclass(frozen=True)
class Services:
    """The storage services handlers use, built once by the composition root."""

    vault: ReportVault
    prefs: PreferenceStore
    evidence: EvidenceIntake
    cases: CaseService
    links: NotificationLinks
    attempts: AttemptLimiter
    session_keys: SessionKeys | RedisSessionKeys
    writer: ReportWriter
    wal: WalScrubber
    # Conversations: in this process's memory, or (several replicas) sealed in Redis.
    fsm: OverlayFsmStorage
    # Who acknowledged the report safety notice lately (memory only, never in preferences).
    safety: SafetyReads | RedisSafetyReads
    # After a restart that may have cut conversations short: whose first update this is.
    restart: RestartNotice | RedisRestartNotice
    receipts: UndeliveredReceipts | RedisReceipts
    # Learn, subscriptions, quizzes, surveys, campaign links (None: not built, e.g. in a
    # test of the report side alone).
    awareness: AwarenessServices | None = None


@dataclass
class Reply:
    chat_id: int
    user_id: int
    state: FSMContext
    outbox: Outbox
    uow: UnitOfWork
    services: Services
    preferences: Preferences
    options: ReplyOptions
    i18n: I18n
    bot: Bot
    fsm_storage: BaseStorage
    # This is the account's first update since a restart that may have cut a conversation
    # short (handlers/restart_notice.py): the menu tells them if they write as if in one.
    after_restart: bool = False
    _claimed: bool = False

    def show(self, screen: Screen) -> None:
        if screen.entities:
            self.outbox.send_rich(
                self.chat_id, screen.text, screen.entities, screen.keyboard, protect=screen.protect
            )
        else:
            self.outbox.send(self.chat_id, screen.text, screen.keyboard, protect=screen.protect)

    def clear_chat(self, message_ids: tuple[int, ...]) -> Cleared:
        """Delete these messages of this private chat before anything this update sends
        (``flow.ClearChat``: a conversation's answers and the screens that showed them);
        never fails the update (:meth:`Outbox.clear`)."""
        return self.outbox.clear(self.chat_id, message_ids)

    def present(self, screen: Screen, *, edit: int | None = None) -> None:
        """Show ``screen`` in place of the bot message ``edit`` (navigating a menu), or as
        a new message when ``edit`` is None (or the message can no longer be edited)."""
        if edit is None:
            self.outbox.send_rich(self.chat_id, screen.text, screen.entities, screen.keyboard)
        else:
            self.outbox.edit(self.chat_id, edit, screen.text, screen.entities, screen.keyboard)

    def say(self, text: str, *, protect: bool = False) -> None:
        self.outbox.send(self.chat_id, text, protect=protect)

    def send_receipt(self, formatted_receipt: str, *, complaint: bool = False) -> None:
        """The receipt of a report stored in this update, protected from forwarding and
        saving, with a button to delete it from the chat once written down. If Telegram will
        not take it, it is kept in memory for the user to ask for once
        (``services.receipts``)."""
        receipts, user_id = self.services.receipts, self.user_id
        self.outbox.send(
            self.chat_id,
            screens.receipt(formatted_receipt, complaint=complaint),
            screens.receipt_keyboard(),
            protect=True,
            on_undelivered=lambda: receipts.keep(user_id, formatted_receipt),
        )

    async def tell_if_receipt_waiting(self) -> None:
        """At the first contact after an undelivered receipt: say so, with a button."""
        receipts, user_id = self.services.receipts, self.user_id
        if await receipts.first_contact(user_id):
            screen = screens.receipt_waiting()
            self.outbox.send(
                self.chat_id,
                screen.text,
                screen.keyboard,
                on_undelivered=lambda: receipts.tell_again(user_id),
            )

    def remember(self, preferences: Preferences) -> None:
        self.preferences = self.services.prefs.set(self.uow, self.user_id, preferences)

    def tell_if_restarted(self) -> None:
        """On the first update since a restart (:attr:`after_restart`): say, once, that a
        conversation in progress then was lost, and what to do."""
        if self.after_restart:
            self.after_restart = False
            self.say(screens.service_restarted())

    def report_batch(self) -> ReportBatch:
        """Report-side writes of this update, to commit with :meth:`commit_report_side`.
        The first batch of an update claims its update id (a redelivery stores nothing
        twice); later ones in the same update claim nothing."""
        if self._claimed:
            return ReportBatch()
        self._claimed = True
        return ReportBatch(bot_id=self.uow.bot_id, update_id=self.uow.update_id)

    async def commit_report_side(self, batch: ReportBatch) -> None:
        """Store report-side rows in a transaction of their own (never with this account's
        rows) and wait for it: only then may the user be told they are stored."""
        await self.services.writer.commit(batch)

    def switch_language(self, locale: str) -> None:
        self.remember(replace(self.preferences, locale=locale))
        # The rest of this update is rendered in the new language.
        self.i18n.current_locale = locale
        # Awareness messages follow: a subscription (if any) takes the new language.
        if self.services.awareness is not None:
            self.services.awareness.subscribers.queue_language(self.uow, self.chat_id, locale)


class ReplyMiddleware(BaseMiddleware):
    """Builds ``Reply`` for message and callback handlers; answers every callback query."""

    def __init__(self, *, services: Services, options: ReplyOptions) -> None:
        self.services = services
        self.options = options

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        chat = data.get("event_chat")
        state: FSMContext | None = data.get("state")
        if user is None or chat is None or state is None or chat.type != "private":
            return None  # the bot talks only in private chats
        outbox: Outbox = data["outbox"]
        if isinstance(event, CallbackQuery):
            outbox.answer_callback(event.id)
        preferences = data.get("preferences") or await self.services.prefs.get(user.id)
        reply = data["reply"] = Reply(
            chat_id=chat.id,
            user_id=user.id,
            state=state,
            outbox=outbox,
            uow=data["uow"],
            services=self.services,
            preferences=preferences,
            options=self.options,
            i18n=data["i18n"],
            bot=data["bot"],
            fsm_storage=data["fsm_storage"],
            after_restart=await self.services.restart.first_contact(user.id),
        )
        if not (isinstance(event, CallbackQuery) and isinstance(cb.parse(event.data), cb.ShowReceipt)):
            await reply.tell_if_receipt_waiting()
        self._anchor_conversation(reply, message_id_of(event))
        self.services.prefs.touch(reply.uow, reply.user_id, reply.preferences)
        return await handler(event, data)

    def _anchor_conversation(self, reply: Reply, message_id: int | None) -> None:
        """No known start (first contact, or the first update after a wipe, which deletes
        the row): the conversation begins here, so that the next /wipe covers it all."""
        if reply.preferences.wipe_from is None and message_id is not None:
            reply.remember(replace(reply.preferences, wipe_from=first_anchor(message_id)))
