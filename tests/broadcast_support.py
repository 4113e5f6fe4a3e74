"""Helpers of the broadcast tests: users in the emulator, subscribers and broadcasts in the
database, and what the emulator saw (sends per chat, per second)."""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness import staff_chats
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.sandbox.emulator import BotApiEmulator
from nazaha.storage.awareness_models import (
    Broadcast,
    BroadcastImage,
    BroadcastTestSend,
    BroadcastVersion,
)
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import write_transaction

SEND_METHODS = ("sendMessage", "sendPhoto")
TODAY = dt.date(2026, 12, 1)
AWARENESS_TABLES = (
    "broadcast_outbox", "broadcast_test_sends", "broadcast_images", "broadcast_versions",
    "broadcasts", "subscriber_topics", "subscribers", "staff_chats", "staff_chat_codes",
    "staff_chat_confirmations",
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def started_users(emulator: BotApiEmulator, token: str, count: int, language: str = "ar") -> list[int]:
    """``count`` new users of the in-process emulator who have opened the bot (so that it
    may write to them), made directly: 2,000 control-API calls would take longer than the
    broadcast under test."""
    bot = emulator.get_bot(token)
    assert bot is not None
    return emulator.create_started_users(bot, count, language_code=language, first_name="Citizen")


async def clear_awareness(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Empty the awareness tables (PostgreSQL's test database is shared by the run)."""
    async with write_transaction(sessionmaker) as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"TRUNCATE {', '.join(AWARENESS_TABLES)} CASCADE"))
        else:
            for table in AWARENESS_TABLES:
                await session.execute(text(f"DELETE FROM {table}"))


async def subscribe(
    store: SubscriberStore, entries: Iterable[tuple[int, str, Iterable[str]]]
) -> int:
    return await store.subscribe_many_now(entries, today=TODAY)


async def add_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession],
    versions: dict[str, str],
    *,
    status: str = "approved",
    topics: str = "",
    languages: str = "",
    send_at: dt.datetime | None = None,
    to_channel: bool = False,
    image: bytes | None = None,
    name: str = "test",
) -> int:
    """A broadcast as the console leaves it (``approved``: an admin approved it)."""
    now = utcnow()
    async with write_transaction(sessionmaker) as session:
        broadcast = Broadcast(
            name=name, status=status, author_id=1, approved_by=2 if status == "approved" else None,
            topics=topics, languages=languages, to_channel=to_channel, send_at=send_at,
            created_at=now, approved_at=now if status == "approved" else None,
        )
        session.add(broadcast)
        await session.flush()
        for language, body in versions.items():
            session.add(BroadcastVersion(broadcast_id=broadcast.id, language=language, body=body))
        if image is not None:
            session.add(BroadcastImage(broadcast_id=broadcast.id, content=image, mime_type="image/jpeg"))
        return broadcast.id


async def set_status(sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int, status: str, **values: Any) -> None:
    """What the console does to approve, pause, resume or cancel."""
    from sqlalchemy import update

    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(status=status, **values)
        )


async def ask_test_send(sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int, link_id: str, language: str) -> int:
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            insert(BroadcastTestSend).values(
                broadcast_id=broadcast_id, link_id=link_id, language=language, state="queued",
                requested_at=utcnow(),
            )
        )
        return int(result.inserted_primary_key[0])


async def linked_staff_chat(
    sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes, chat_id: int,
    *, first_name: str = "Staff",
) -> str:
    """A staff chat linked the way the console and the bot do it: a link code (with a reply
    key), the bot's confirmation code for ``chat_id`` (as on /start l_<code>), typed back in
    the console. Returns the link id."""
    now = utcnow()
    reply_key = staff_chats.new_reply_key()
    code, link_id = await staff_chats.new_link_code(sessionmaker, reply_key=reply_key.public_key(), now=now)
    links = staff_chats.StaffChatLinks(sessionmaker, box, pepper)
    confirmation = await links.start_confirmation(code, chat_id, first_name, now=now)
    assert confirmation is not None
    result = await staff_chats.confirm(sessionmaker, link_id, confirmation, now=now)
    assert result.outcome == "linked"
    assert staff_chats.open_first_name(reply_key, link_id, result.sealed_name) == first_name
    return link_id


async def broadcast_row(sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int) -> Any:
    async with sessionmaker() as session:
        return (await session.execute(select(Broadcast).where(Broadcast.id == broadcast_id))).scalar_one()


# ---- what the emulator saw ----------------------------------------------------------------


def send_calls(emulator: BotApiEmulator, token: str) -> list[dict[str, Any]]:
    bot = emulator.get_bot(token)
    assert bot is not None
    return [c for c in bot.calls if c["method"] in SEND_METHODS]


def delivered_per_chat(emulator: BotApiEmulator, token: str, chat_ids: Iterable[int]) -> Counter[int]:
    """Bot messages in each chat (what the users actually received)."""
    bot = emulator.get_bot(token)
    assert bot is not None
    counts: Counter[int] = Counter()
    for chat_id in chat_ids:
        chat = bot.chats.get(chat_id)
        counts[chat_id] = 0 if chat is None else sum(
            1 for m in chat.messages.values() if m.from_bot and not m.deleted
        )
    return counts


def max_per_window(times: Sequence[float], width: float = 1.0) -> int:
    """The largest number of ``times`` in any window [t, t + width) (sorted or not)."""
    ordered = sorted(times)
    best = 0
    for index, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + width, lo=index) - index)
    return best


def max_per_chat_window(calls: Iterable[dict[str, Any]], width: float = 1.0) -> int:
    """The largest number of send calls to one chat in any window of ``width`` seconds."""
    per_chat: dict[Any, list[float]] = {}
    for call in calls:
        per_chat.setdefault((call.get("params") or {}).get("chat_id"), []).append(call["at"])
    return max((max_per_window(times, width) for times in per_chat.values()), default=0)
