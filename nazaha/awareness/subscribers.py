"""Who receives awareness broadcasts: chat ids sealed under the bot key, with their language
and topics (tables ``subscribers`` and ``subscriber_topics``).

The bot must read a subscriber's chat id to send to it, so anyone holding the bot host can
list subscribers: docs/security.md and the subscribe screen say so. Nothing here refers to a
report, a receipt, a draft or the report side's pseudonyms (``chat_key`` uses its own HMAC
purpose), and /stop, /wipe and a block of the bot (a 403 to a broadcast) delete the row and
its topics.

Writes from inside an update are queued in the update's unit of work (``queue_*``); the
broadcast sender and tests use the direct ``*_now`` methods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import Subscriber, SubscriberTopic
from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import engine_of, upsert_op, write_transaction
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

__all__ = ["Subscription", "SubscriberStore", "PURPOSE"]

PURPOSE = "subscriber-chat"  # the bot-key box purpose of sealed chat ids


@dataclass(frozen=True)
class Subscription:
    """A subscriber as the bot shows it: ``topics`` are topic codes (empty: none chosen)."""

    id: int
    language: str
    topics: frozenset[str]
    active: bool


class SubscriberStore:
    """Subscriptions of chats. ``chat_id`` is Telegram's chat id (the user's id in a private
    chat); it is never stored in the clear or logged."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes) -> None:
        self._sessionmaker = sessionmaker
        self._dialect = engine_of(sessionmaker).dialect.name
        self._box = box
        self._pepper = pepper

    # ---- keys and sealing -------------------------------------------------------------

    def chat_key(self, chat_id: int) -> str:
        """HMAC-SHA256(pepper, "subscriber", chat id), 64 hex: the lookup key."""
        return pseudonym(self._pepper, "subscriber", int(chat_id))

    def seal_chat(self, chat_key: str, chat_id: int) -> bytes:
        return self._box.seal(PURPOSE, chat_key, str(int(chat_id)).encode("ascii"))

    def open_chat(self, chat_key: str, sealed: bytes) -> int:
        """The chat id of a row; :class:`nazaha.storage.crypto.TamperedData` if the row was
        altered or moved, or sealed under another bot key."""
        return int(self._box.open(PURPOSE, chat_key, sealed).decode("ascii"))

    # ---- reads ------------------------------------------------------------------------

    async def get(self, chat_id: int) -> Subscription | None:
        """This chat's subscription (inside an update: through its read session)."""
        key = self.chat_key(chat_id)
        uow = active_uow()
        if uow is not None:
            return await self._get(await uow.read(), key)
        async with self._sessionmaker() as session:
            return await self._get(session, key)

    @staticmethod
    async def _get(session: AsyncSession, key: str) -> Subscription | None:
        row = (
            await session.execute(
                select(Subscriber.id, Subscriber.language, Subscriber.active).where(
                    Subscriber.chat_key == key
                )
            )
        ).one_or_none()
        if row is None:
            return None
        topics = (
            await session.execute(
                select(SubscriberTopic.topic).where(SubscriberTopic.subscriber_id == row.id)
            )
        ).scalars()
        return Subscription(row.id, row.language, frozenset(topics), bool(row.active))

    # ---- writes -----------------------------------------------------------------------

    def _upsert(self, chat_id: int, language: str, today: dt.date):
        key = self.chat_key(chat_id)
        values = {
            "chat_key": key,
            "sealed_chat": self.seal_chat(key, chat_id),
            "language": language,
            "active": True,
            "joined_on": today,
        }
        return key, upsert_op(self._dialect, Subscriber.__table__, values, ["chat_key"])

    def _subscribe_op(self, chat_id: int, language: str, topics: Iterable[str], today: dt.date):
        key, upsert = self._upsert(chat_id, language, today)
        wanted = sorted(set(topics))

        async def op(session: AsyncSession) -> None:
            await upsert(session)
            subscriber_id = (
                await session.execute(select(Subscriber.id).where(Subscriber.chat_key == key))
            ).scalar_one()
            await session.execute(
                delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == subscriber_id)
            )
            if wanted:
                await session.execute(
                    insert(SubscriberTopic),
                    [{"subscriber_id": subscriber_id, "topic": topic} for topic in wanted],
                )

        return op

    def queue_subscribe(
        self, uow: UnitOfWork, chat_id: int, language: str, topics: Iterable[str], *, today: dt.date
    ) -> None:
        """Subscribe (or change language and topics, and reactivate) in the update's unit of
        work. ``topics`` replaces the chat's topics."""
        uow.add(self._subscribe_op(chat_id, language, topics, today))

    def queue_language(self, uow: UnitOfWork, chat_id: int, language: str) -> None:
        """Set the language of this chat's subscription, if it has one (the user changed
        the bot's language), in the update's unit of work."""
        key = self.chat_key(chat_id)

        async def op(session: AsyncSession) -> None:
            await session.execute(
                update(Subscriber).where(Subscriber.chat_key == key).values(language=language)
            )

        uow.add(op)

    def queue_stop(self, uow: UnitOfWork, chat_id: int) -> None:
        """Delete the subscription and its topics (/stop); its broadcast rows stay, without it."""
        key = self.chat_key(chat_id)

        async def op(session: AsyncSession) -> None:
            await session.execute(delete(Subscriber).where(Subscriber.chat_key == key))

        uow.add(op)

    async def subscribe_now(
        self, chat_id: int, language: str, topics: Iterable[str], *, today: dt.date
    ) -> None:
        """The same as :meth:`queue_subscribe`, in a transaction of its own."""
        await self._write_now(self._subscribe_op(chat_id, language, topics, today))

    async def stop_now(self, chat_id: int) -> None:
        key = self.chat_key(chat_id)

        async def op(session: AsyncSession) -> None:
            await session.execute(delete(Subscriber).where(Subscriber.chat_key == key))

        await self._write_now(op)

    async def subscribe_many_now(
        self, entries: Iterable[tuple[int, str, Iterable[str]]], *, today: dt.date
    ) -> int:
        """Many new subscriptions in one transaction of bulk INSERTs (an import of a list,
        tests, benchmarks): ``entries`` are (chat id, language, topics) of chats not yet
        subscribed (a chat already subscribed fails the whole call). Returns how many."""
        rows, topics_of = [], {}
        for chat_id, language, topics in entries:
            key = self.chat_key(chat_id)
            rows.append({
                "chat_key": key, "sealed_chat": self.seal_chat(key, chat_id),
                "language": language, "active": True, "joined_on": today,
            })
            topics_of[key] = sorted(set(topics))

        async def op(session: AsyncSession) -> None:
            for start in range(0, len(rows), 5000):
                chunk = rows[start:start + 5000]
                await session.execute(insert(Subscriber), chunk)
                keys = [row["chat_key"] for row in chunk]
                ids = dict(
                    (
                        await session.execute(
                            select(Subscriber.chat_key, Subscriber.id).where(Subscriber.chat_key.in_(keys))
                        )
                    ).all()
                )
                links = [
                    {"subscriber_id": ids[key], "topic": topic} for key in keys for topic in topics_of[key]
                ]
                if links:
                    await session.execute(insert(SubscriberTopic), links)

        if rows:
            await self._write_now(op)
        return len(rows)

    async def _write_now(self, op) -> None:
        async with write_transaction(self._sessionmaker) as session:
            await op(session)

    @staticmethod
    async def delete_blocked(session: AsyncSession, subscriber_ids: Iterable[int]) -> None:
        """A 403 to a broadcast ("bot was blocked by the user"): delete these subscribers
        and their topics, as /stop does (the bot keeps no chat id it cannot write to). Their
        outbox rows stay, without them; queued ones become ``left`` when claimed. A chat
        that unblocks the bot subscribes again like a new one (/subscribe)."""
        ids = list(subscriber_ids)
        if ids:
            await session.execute(delete(Subscriber).where(Subscriber.id.in_(ids)))
