"""Console members as the awareness tables know them (console side only).

The bot's tables name a broadcast's or a survey's author, and a broadcast's approver, by an
integer (``broadcasts.author_id``, ``approved_by``, ``surveys.author_id``); console member ids
are random hex strings. The console's store maps one to the other
(:class:`~nazaha.storage.console_models.AwarenessMember`): a number is given at a member's
first broadcast or survey and never reused, and nothing in the bot's database says whose it
is. A member's own linked Telegram chat (for "send a test to me") is likewise known by its
random ``link_id`` only, kept on the member's row here (``staff_users.chat_link_id``), with
the chat's first name sealed under the console secret (``staff_users.chat_name``).

Functions take the caller's session (a write transaction where they write) and do not commit.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.storage.console_models import AwarenessMember, StaffUser
from nazaha.storage.crypto import ConsoleSecretBox, CryptoError

__all__ = [
    "number_of", "existing_number", "names_by_number", "chat_link_id", "set_chat_link_id",
    "chat_name", "set_chat_name", "other_admins",
]

_NAME_PURPOSE = "telegram-name"  # the console-secret box purpose of the linked chat's first name


async def existing_number(session: AsyncSession, user_id: str) -> int | None:
    """The member's number, or None if they never composed anything."""
    return await session.scalar(select(AwarenessMember.number).where(AwarenessMember.user_id == user_id))


async def number_of(session: AsyncSession, user_id: str) -> int:
    """The member's number, given now if they have none (call in a write transaction)."""
    number = await existing_number(session, user_id)
    if number is None:
        row = AwarenessMember(user_id=user_id)
        session.add(row)
        await session.flush()
        number = row.number
    return number


async def names_by_number(session: AsyncSession, numbers: Iterable[int | None]) -> dict[int, str]:
    """User names for the given numbers (unknown numbers are left out)."""
    wanted = {n for n in numbers if n is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(AwarenessMember.number, StaffUser.username)
        .join(StaffUser, StaffUser.id == AwarenessMember.user_id)
        .where(AwarenessMember.number.in_(wanted))
    )
    return {number: name for number, name in rows.all()}


async def other_admins(session: AsyncSession, user_id: str) -> int:
    """How many active administrators other than ``user_id`` there are: who could approve
    that member's broadcast (an author never approves their own)."""
    return int(await session.scalar(
        select(func.count()).select_from(StaffUser)
        .where(StaffUser.role == "admin", StaffUser.state == "active", StaffUser.id != user_id)
    ) or 0)


async def chat_link_id(session: AsyncSession, user_id: str) -> str | None:
    """The link id of the member's own Telegram chat (linked or waiting for the bot)."""
    return await session.scalar(select(StaffUser.chat_link_id).where(StaffUser.id == user_id))


async def set_chat_link_id(session: AsyncSession, user_id: str, link_id: str | None) -> None:
    await session.execute(update(StaffUser).where(StaffUser.id == user_id).values(chat_link_id=link_id))


async def chat_name(session: AsyncSession, box: ConsoleSecretBox, user_id: str) -> str | None:
    """The first name of the member's linked chat (None: not known, or the row was altered)."""
    row = (await session.execute(
        select(StaffUser.chat_name, StaffUser.chat_link_id).where(StaffUser.id == user_id)
    )).one_or_none()
    if row is None or not row.chat_name:
        return None
    try:
        sealed = base64.urlsafe_b64decode(row.chat_name.encode("ascii"))
        return box.open(_NAME_PURPOSE, f"{user_id}:{row.chat_link_id}", sealed).decode("utf-8")
    except (CryptoError, ValueError):
        return None


async def set_chat_name(session: AsyncSession, box: ConsoleSecretBox, user_id: str, name: str | None) -> None:
    """Keep (sealed, bound to the member and their current link id) or forget the name."""
    value = None
    if name:
        link_id = await chat_link_id(session, user_id)
        sealed = box.seal(_NAME_PURPOSE, f"{user_id}:{link_id}", name.encode("utf-8"))
        value = base64.urlsafe_b64encode(sealed).decode("ascii")
    await session.execute(update(StaffUser).where(StaffUser.id == user_id).values(chat_name=value))
