"""Opt-in, content-free "there is an update on your report" notifications.

A link ties a report to the chat that asked to be told. The chat id is sealed under the bot
key (``BotKeyBox`` purpose ``"notify"``, context = the link id, so a sealed chat id copied to
another row fails to open) and found by ``pseudonym(pepper, "notify-chat", chat_id)``. With
the database alone nobody learns which chat follows which report; the bot host can (it holds
the bot key), which is why links are opt-in, deleted when the case closes, when the chat
opts out (:meth:`NotificationLinks.forget_chat`) and when Telegram says the user blocked the
bot (:meth:`NotificationLinks.drop_link`).

``pending_notifications`` is the outbox: a caseworker's reply adds a row in its own
transaction (:meth:`nazaha.storage.cases.CaseService.add_staff_reply`); the bot's notifier
takes them with :meth:`NotificationLinks.due`, sends the same fixed text to every target and
calls :meth:`NotificationLinks.done`. Several pending rows of one report are coalesced into
one delivery: a reporter gets one message per batch of replies, not one per reply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import BotKeyBox, TamperedData, pseudonym
from nazaha.storage.database import dialect_insert, write_transaction
from nazaha.storage.models import NotificationLink, PendingNotification
from nazaha.storage.unit_of_work import UnitOfWork

PURPOSE = "notify"
PSEUDONYM_PURPOSE = "notify-chat"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """Pending notifications of one report, up to and including ``notification_id``.

    ``targets`` are ``(link_id, chat_id)`` pairs; it may be empty (no links, or all were
    dropped): the caller still calls :meth:`NotificationLinks.done`.
    """

    notification_id: int
    report_id: str
    targets: list[tuple[str, int]]

    def __repr__(self) -> str:  # chat ids stay out of logs
        return (
            f"Delivery(notification_id={self.notification_id}, targets={len(self.targets)})"
        )


class NotificationLinks:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._pepper = pepper

    def _chat_key(self, chat_id: int) -> str:
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            raise TypeError("a chat id is an int")
        return pseudonym(self._pepper, PSEUDONYM_PURPOSE, chat_id)

    def add(self, uow: UnitOfWork, report_id: str, chat_id: int) -> None:
        """Queue a link (no-op if this chat already follows this report)."""
        link_id = secrets.token_hex(16)
        values = {
            "id": link_id,
            "report_id": report_id,
            "chat_pseudonym": self._chat_key(chat_id),
            "sealed_chat": self._box.seal(PURPOSE, link_id, str(chat_id).encode("ascii")),
            "created_on": dt.datetime.now(dt.timezone.utc).date(),
        }

        async def store(session: AsyncSession) -> None:
            insert = dialect_insert(session)
            await session.execute(
                insert(NotificationLink.__table__)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["report_id", "chat_pseudonym"])
            )

        uow.add(store)

    async def forget_chat(self, chat_id: int) -> int:
        """Delete every link of this chat now; returns how many there were."""
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(self._forget_statement(chat_id))
        return int(result.rowcount or 0)

    def forget_chat_queued(self, uow: UnitOfWork, chat_id: int) -> None:
        """Delete every link of this chat in the update's write transaction."""
        statement = self._forget_statement(chat_id)

        async def forget(session: AsyncSession) -> None:
            await session.execute(statement)

        uow.add(forget)

    def _forget_statement(self, chat_id: int):
        return delete(NotificationLink).where(
            NotificationLink.chat_pseudonym == self._chat_key(chat_id)
        )

    async def has_links(self, chat_id: int) -> bool:
        key = self._chat_key(chat_id)
        async with self._sessionmaker() as session:
            found = await session.scalar(
                select(exists().where(NotificationLink.chat_pseudonym == key))
            )
        return bool(found)

    async def due(self, limit: int = 50) -> list[Delivery]:
        """Up to ``limit`` reports with pending notifications, oldest first, each with its
        decrypted targets. A link that fails to open (modified row, or another bot key) is
        skipped, never fatal: one bad row must not stall everyone's notifications."""
        async with self._sessionmaker() as session:
            pending = (
                await session.execute(
                    select(
                        PendingNotification.report_id,
                        func.max(PendingNotification.id).label("last_id"),
                        func.min(PendingNotification.id).label("first_id"),
                    )
                    .group_by(PendingNotification.report_id)
                    .order_by(func.min(PendingNotification.id))
                    .limit(limit)
                )
            ).all()
            report_ids = [row.report_id for row in pending]
            links = (
                await session.execute(
                    select(
                        NotificationLink.id,
                        NotificationLink.report_id,
                        NotificationLink.sealed_chat,
                    )
                    .where(NotificationLink.report_id.in_(report_ids))
                    .order_by(NotificationLink.id)
                )
            ).all() if report_ids else []
        targets: dict[str, list[tuple[str, int]]] = {rid: [] for rid in report_ids}
        for link in links:
            try:
                chat_id = int(self._box.open(PURPOSE, link.id, link.sealed_chat).decode("ascii"))
            except (TamperedData, ValueError):
                log.warning("a notification link failed to open and was skipped")
                continue
            targets[link.report_id].append((link.id, chat_id))
        return [
            Delivery(notification_id=row.last_id, report_id=row.report_id, targets=targets[row.report_id])
            for row in pending
        ]

    async def done(self, notification_id: int) -> None:
        """Mark a delivery handled: deletes its report's pending rows up to this id (rows
        added since :meth:`due` stay for the next pass)."""
        async with write_transaction(self._sessionmaker) as session:
            report_id = await session.scalar(
                select(PendingNotification.report_id).where(
                    PendingNotification.id == notification_id
                )
            )
            if report_id is None:
                return
            await session.execute(
                delete(PendingNotification).where(
                    PendingNotification.report_id == report_id,
                    PendingNotification.id <= notification_id,
                )
            )

    async def drop_link(self, link_id: str) -> None:
        """Forget one link (Telegram answered 403: the user blocked the bot)."""
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(delete(NotificationLink).where(NotificationLink.id == link_id))


__all__ = ["Delivery", "NotificationLinks"]
