"""Staff members' own Telegram chats, linked from the console for "send a test to me".

The console makes a one-time code (:func:`new_link_code`) and shows it as
``t.me/<bot>?start=l_<code>``; the bot, on that /start, stores the chat id sealed under the
bot key under the code's random ``link_id`` (:func:`link_chat`). The bot's tables never say
whose chat it is: only the console's store maps a member to a ``link_id``. Codes are kept as
SHA-256 hashes, expire after :data:`CODE_TTL` and work once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import StaffChat, StaffChatCode
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import engine_of, upsert_op, write_transaction

__all__ = ["CODE_TTL", "PURPOSE", "new_link_code", "link_chat", "open_staff_chat", "unlink", "is_linked"]

CODE_TTL = dt.timedelta(minutes=30)
PURPOSE = "staff-chat"  # the bot-key box purpose of sealed staff chat ids
CODE_PREFIX = "l_"  # the /start payload: l_<code>


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii", "replace")).hexdigest()


async def _write(sessionmaker: async_sessionmaker[AsyncSession], op) -> object:
    async with write_transaction(sessionmaker) as session:
        return await op(session)


async def new_link_code(
    sessionmaker: async_sessionmaker[AsyncSession], *, link_id: str | None = None, now: dt.datetime
) -> tuple[str, str]:
    """Make a one-time code. Returns ``(code, link_id)``: the code (22 URL-safe characters,
    for the deep link; show it once, never store it) and the link id to keep with the
    member (a new random one unless ``link_id`` re-links an existing member's chat)."""
    code = secrets.token_urlsafe(16)
    link_id = link_id or secrets.token_hex(16)

    async def op(session: AsyncSession) -> None:
        await session.execute(delete(StaffChatCode).where(StaffChatCode.expires_at <= now))
        session.add(StaffChatCode(code_hash=_hash(code), link_id=link_id, expires_at=now + CODE_TTL))

    await _write(sessionmaker, op)
    return code, link_id


async def link_chat(
    sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, code: str, chat_id: int,
    *, now: dt.datetime,
) -> bool:
    """Consume ``code`` (the part after ``l_``) and link ``chat_id`` to its link id. False:
    unknown, expired or already used."""
    dialect = engine_of(sessionmaker).dialect.name

    async def op(session: AsyncSession) -> bool:
        row = (
            await session.execute(
                select(StaffChatCode.link_id, StaffChatCode.expires_at).where(
                    StaffChatCode.code_hash == _hash(code)
                )
            )
        ).one_or_none()
        await session.execute(delete(StaffChatCode).where(StaffChatCode.code_hash == _hash(code)))
        if row is None or row.expires_at <= now:
            return False
        values = {
            "link_id": row.link_id,
            "sealed_chat": box.seal(PURPOSE, row.link_id, str(int(chat_id)).encode("ascii")),
            "linked_on": now.date(),
        }
        await upsert_op(dialect, StaffChat.__table__, values, ["link_id"])(session)
        return True

    return bool(await _write(sessionmaker, op))


def open_staff_chat(box: BotKeyBox, link_id: str, sealed: bytes) -> int:
    """The chat id of a ``staff_chats`` row (:class:`~nazaha.storage.crypto.TamperedData`
    if altered or moved)."""
    return int(box.open(PURPOSE, link_id, sealed).decode("ascii"))


async def is_linked(sessionmaker: async_sessionmaker[AsyncSession], link_id: str) -> bool:
    async with sessionmaker() as session:
        found = await session.execute(select(StaffChat.link_id).where(StaffChat.link_id == link_id))
        return found.first() is not None


async def unlink(sessionmaker: async_sessionmaker[AsyncSession], link_id: str) -> None:
    """Forget a member's chat (the member unlinked it, or was removed)."""

    async def op(session: AsyncSession) -> None:
        await session.execute(delete(StaffChat).where(StaffChat.link_id == link_id))
        await session.execute(delete(StaffChatCode).where(StaffChatCode.link_id == link_id))

    await _write(sessionmaker, op)
