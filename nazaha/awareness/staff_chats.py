"""Staff members' own Telegram chats, linked from the console for "send a test to me".

A chat is linked only once the member proved, in the console, that they control it:

1. **Link code.** "Link my Telegram" makes a one-time code (:func:`new_link_code`, 22
   URL-safe characters, kept as a SHA-256 hash, :data:`CODE_TTL`) shown as
   ``t.me/<bot>?start=l_<code>``, and a one-time *reply key*: an HPKE key pair
   (:func:`new_reply_key`) whose public half goes with the code and whose private half stays
   in the member's console session memory.
2. **Confirmation code.** Whoever opens the link (the member, or anyone the link reached)
   gets from the bot a 6-digit code (:meth:`StaffChatLinks.start_confirmation`); the link
   code is used up. The bot keeps, under the link id, the chat id sealed under the bot key,
   the chat's first name (as Telegram gave it in the update) padded to
   :data:`NAME_PADDED` bytes (its size tells nothing of its length) and sealed to the reply
   key, which the bot host cannot open, and the code as a hash, for :data:`CONFIRM_TTL`
   (docs/security.md, "Awareness", says why a host holder may find the code from it). **Nothing
   is linked yet.**
3. **Typed back.** The member types the code on the console page (:func:`confirm`): at most
   :data:`MAX_ATTEMPTS` tries, then the confirmation is deleted (a new link is needed).
   The right code moves the sealed chat id to ``staff_chats``; the console opens the first
   name with the session's private key (:func:`open_first_name`) and keeps it on its side.

The bot's tables never say whose chat it is: only the console's store maps a member to a
``link_id``. A link ends when the member unlinks it in the console, when their account is
reset or removed, and when the person in the chat says "stop messaging me": /stop, /wipe,
Unsubscribe (:meth:`StaffChatLinks.queue_forget`), or blocks the bot (the sender).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.awareness_models import StaffChat, StaffChatCode, StaffChatConfirmation
from nazaha.storage.crypto import (
    BotKeyBox,
    CryptoError,
    TeamPrivateKey,
    TeamPublicKey,
    open_from_key,
    pseudonym,
    seal_to_key,
)
from nazaha.storage.database import engine_of, upsert_op, write_transaction
from nazaha.storage.unit_of_work import UnitOfWork, active_uow
from nazaha.typed_codes import normalise_code  # re-exported: the one reading of a typed code

__all__ = [
    "CODE_TTL", "CONFIRM_TTL", "MAX_ATTEMPTS", "PURPOSE", "CODE_PREFIX", "CONFIRM_DIGITS", "Confirmed",
    "PendingLink",
    "StaffChatLinks", "new_link_code", "new_reply_key", "confirmation_waiting", "confirm",
    "open_first_name", "open_staff_chat", "unlink", "is_linked", "normalise_code",
]

CODE_TTL = dt.timedelta(minutes=30)  # the l_<code> link
CONFIRM_TTL = dt.timedelta(minutes=10)  # the code the bot sends to the chat that opened it
MAX_ATTEMPTS = 5  # wrong codes typed in the console before the confirmation is deleted
CONFIRM_DIGITS = 6
NAME_MAX = 64  # characters of the first name kept
NAME_PADDED = 4 * NAME_MAX + 1  # bytes sealed for every name: its UTF-8, 0x80, zeros
PURPOSE = "staff-chat"  # the bot-key box purpose of sealed staff chat ids
CODE_PREFIX = "l_"  # the /start payload: l_<code>
_NAME_LABEL = "nazaha/staff-chat-name/v1"  # what the first name is sealed for (HPKE info)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii", "replace")).hexdigest()


def _confirm_hash(link_id: str, code: str) -> str:
    return hashlib.sha256(f"nazaha/staff-chat-confirm/v1\x00{link_id}\x00{code}".encode("ascii", "replace")).hexdigest()


def _pad_name(name: str) -> bytes:
    """The first name (cut to :data:`NAME_MAX` characters) as :data:`NAME_PADDED` bytes:
    its UTF-8 (4 bytes a character at most), one 0x80 byte, then zeros (ISO/IEC 7816-4
    padding), so that the sealed name's size does not tell the name's length."""
    data = name[:NAME_MAX].encode("utf-8")
    return data + b"\x80" + bytes(NAME_PADDED - len(data) - 1)


def _unpad_name(padded: bytes) -> str:
    """The name :func:`_pad_name` padded; ValueError unless it is exactly such a block
    (UnicodeDecodeError, a ValueError, if the bytes before the padding are not UTF-8)."""
    body = padded.rstrip(b"\x00")
    if len(padded) != NAME_PADDED or not body.endswith(b"\x80"):
        raise ValueError("not a padded name")
    return body[:-1].decode("utf-8")


async def _write(sessionmaker: async_sessionmaker[AsyncSession], op) -> object:
    async with write_transaction(sessionmaker) as session:
        return await op(session)


# ---- the console's side -----------------------------------------------------------------


def new_reply_key() -> TeamPrivateKey:
    """A one-time key pair for :func:`new_link_code` (keep it in the session's memory)."""
    return TeamPrivateKey.generate()


@dataclass(eq=False)
class PendingLink:
    """A "Link my Telegram" in progress, in the member's console session (memory only):
    the link ``code`` (shown until ``expires_at``) and the private half of its one-time
    ``reply_key``. The code typed back is accepted until ``ends_at`` (a chat may open the
    link at its last minute and then has :data:`CONFIRM_TTL`)."""

    code: str
    expires_at: dt.datetime
    reply_key: TeamPrivateKey

    @property
    def ends_at(self) -> dt.datetime:
        return self.expires_at + CONFIRM_TTL

    def __repr__(self) -> str:  # never show the code or the key
        return "PendingLink(<redacted>)"


async def new_link_code(
    sessionmaker: async_sessionmaker[AsyncSession], *, link_id: str | None = None,
    reply_key: TeamPublicKey | None = None, now: dt.datetime,
) -> tuple[str, str]:
    """Make a one-time link code. Returns ``(code, link_id)``: the code (22 URL-safe
    characters, for the deep link; show it, never store it) and the link id to keep with the
    member (a new random one unless ``link_id`` re-links an existing member's chat). A
    confirmation still waiting for this link id is dropped: the member starts again."""
    code = secrets.token_urlsafe(16)
    link_id = link_id or secrets.token_hex(16)

    async def op(session: AsyncSession) -> None:
        await session.execute(delete(StaffChatCode).where(StaffChatCode.expires_at <= now))
        await session.execute(delete(StaffChatConfirmation).where(StaffChatConfirmation.expires_at <= now))
        await session.execute(delete(StaffChatConfirmation).where(StaffChatConfirmation.link_id == link_id))
        session.add(StaffChatCode(
            code_hash=_hash(code), link_id=link_id, expires_at=now + CODE_TTL,
            reply_key=reply_key.to_bytes() if reply_key is not None else None,
        ))

    await _write(sessionmaker, op)
    return code, link_id


async def confirmation_waiting(
    sessionmaker: async_sessionmaker[AsyncSession], link_id: str, *, now: dt.datetime
) -> bool:
    """A chat opened the member's link and its code waits to be typed (not expired)."""
    async with sessionmaker() as session:
        expires = await session.scalar(
            select(StaffChatConfirmation.expires_at).where(StaffChatConfirmation.link_id == link_id)
        )
    return expires is not None and expires > now


@dataclass(frozen=True)
class Confirmed:
    """What typing a code did. ``outcome``: ``linked`` (the chat is linked now), ``wrong``
    (``attempts_left`` more tries), ``locked`` (too many wrong codes: the confirmation is
    deleted), ``expired`` (deleted: the link must be made again), ``none`` (no chat opened
    the link yet) or ``malformed`` (not a code of 6 digits); the last two count no attempt. ``sealed_name``: for :func:`open_first_name`, when linked."""

    outcome: str
    attempts_left: int = 0
    sealed_name: bytes | None = None


async def confirm(
    sessionmaker: async_sessionmaker[AsyncSession], link_id: str, typed: str, *, now: dt.datetime
) -> Confirmed:
    """Check the code the member typed for their link id (:class:`Confirmed`). Every wrong
    code counts, in the same transaction as the check; the right one links the chat."""
    code = normalise_code(typed)
    if len(code) != CONFIRM_DIGITS:
        return Confirmed("malformed", MAX_ATTEMPTS)
    dialect = engine_of(sessionmaker).dialect.name
    c = StaffChatConfirmation

    async def op(session: AsyncSession) -> Confirmed:
        row = (
            await session.execute(
                select(c.chat_key, c.sealed_chat, c.sealed_name, c.code_hash, c.attempts, c.expires_at)
                .where(c.link_id == link_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            return Confirmed("none", MAX_ATTEMPTS)
        if row.expires_at <= now or row.attempts >= MAX_ATTEMPTS:
            await session.execute(delete(c).where(c.link_id == link_id))
            return Confirmed("expired")
        if not hmac.compare_digest(row.code_hash, _confirm_hash(link_id, code)):
            attempts = row.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                await session.execute(delete(c).where(c.link_id == link_id))
                return Confirmed("locked")
            await session.execute(update(c).where(c.link_id == link_id).values(attempts=attempts))
            return Confirmed("wrong", MAX_ATTEMPTS - attempts)
        values = {"link_id": link_id, "chat_key": row.chat_key, "sealed_chat": row.sealed_chat,
                  "linked_on": now.date()}
        await upsert_op(dialect, StaffChat.__table__, values, ["link_id"])(session)
        await session.execute(delete(c).where(c.link_id == link_id))
        await session.execute(delete(StaffChatCode).where(StaffChatCode.link_id == link_id))
        return Confirmed("linked", sealed_name=row.sealed_name)

    result = await _write(sessionmaker, op)
    assert isinstance(result, Confirmed)
    return result


def open_first_name(reply_key: TeamPrivateKey | None, link_id: str, sealed: bytes | None) -> str | None:
    """The first name the bot sealed to the session's reply key; None if there is none or
    it does not open (another session's key, altered, or not padded: a name sealed before
    padding, by a confirmation that lived at most :data:`CONFIRM_TTL` across an upgrade)."""
    if reply_key is None or not sealed:
        return None
    try:
        return _unpad_name(open_from_key(reply_key, _NAME_LABEL, (link_id,), sealed))[:NAME_MAX]
    except (CryptoError, ValueError):
        return None


def open_staff_chat(box: BotKeyBox, link_id: str, sealed: bytes) -> int:
    """The chat id of a ``staff_chats`` row (:class:`~nazaha.storage.crypto.TamperedData`
    if altered or moved)."""
    return int(box.open(PURPOSE, link_id, sealed).decode("ascii"))


async def is_linked(sessionmaker: async_sessionmaker[AsyncSession], link_id: str) -> bool:
    async with sessionmaker() as session:
        found = await session.execute(select(StaffChat.link_id).where(StaffChat.link_id == link_id))
        return found.first() is not None


async def unlink(sessionmaker: async_sessionmaker[AsyncSession], link_id: str) -> None:
    """Forget a member's chat, its codes and a confirmation waiting (the member unlinked
    it, was reset or removed, or the chat blocked the bot)."""

    async def op(session: AsyncSession) -> None:
        await session.execute(delete(StaffChat).where(StaffChat.link_id == link_id))
        await session.execute(delete(StaffChatCode).where(StaffChatCode.link_id == link_id))
        await session.execute(delete(StaffChatConfirmation).where(StaffChatConfirmation.link_id == link_id))

    await _write(sessionmaker, op)


# ---- the bot's side ---------------------------------------------------------------------


class StaffChatLinks:
    """What the bot does with staff chats: the confirmation code for a chat that opened a
    link, and forgetting a chat's link when the person in it says stop. ``chat_id`` is
    Telegram's; it is never stored in the clear or logged."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._pepper = pepper
        self._dialect = engine_of(sessionmaker).dialect.name

    def chat_key(self, chat_id: int) -> str:
        """HMAC-SHA256(pepper, "staff-chat", chat id), 64 hex."""
        return pseudonym(self._pepper, "staff-chat", int(chat_id))

    async def start_confirmation(
        self, code: str, chat_id: int, first_name: str | None, *, now: dt.datetime
    ) -> str | None:
        """Use up the link ``code`` (the part after ``l_``) and return the confirmation code
        (6 ASCII digits) to send to ``chat_id``; None if the link is unknown, expired or
        already used. Links nothing: the member must type the code in the console."""
        if not code or len(code) > 64:
            return None
        confirmation = "".join(secrets.choice("0123456789") for _ in range(CONFIRM_DIGITS))
        chat_key = self.chat_key(chat_id)

        async def op(session: AsyncSession) -> bool:
            row = (
                await session.execute(
                    select(StaffChatCode.link_id, StaffChatCode.expires_at, StaffChatCode.reply_key)
                    .where(StaffChatCode.code_hash == _hash(code))
                )
            ).one_or_none()
            await session.execute(delete(StaffChatCode).where(StaffChatCode.code_hash == _hash(code)))
            if row is None or row.expires_at <= now:
                return False
            sealed_name = None
            if row.reply_key and first_name:
                try:
                    public = TeamPublicKey.from_bytes(row.reply_key)
                    sealed_name = seal_to_key(public, _NAME_LABEL, (row.link_id,), _pad_name(first_name))
                except (CryptoError, ValueError):
                    sealed_name = None  # a damaged key: linked without a name
            values = {
                "link_id": row.link_id,
                "chat_key": chat_key,
                "sealed_chat": self._box.seal(PURPOSE, row.link_id, str(int(chat_id)).encode("ascii")),
                "sealed_name": sealed_name,
                "code_hash": _confirm_hash(row.link_id, confirmation),
                "attempts": 0,
                "expires_at": now + CONFIRM_TTL,
            }
            await upsert_op(self._dialect, StaffChatConfirmation.__table__, values, ["link_id"])(session)
            return True

        return confirmation if await _write(self._sessionmaker, op) else None

    async def has_link(self, chat_id: int) -> bool:
        """This chat is linked to a member, or waits for its code to be typed (inside an
        update: through its read session)."""
        key = self.chat_key(chat_id)

        async def read(session: AsyncSession) -> bool:
            for model in (StaffChat, StaffChatConfirmation):
                found = await session.execute(select(model.link_id).where(model.chat_key == key).limit(1))
                if found.first() is not None:
                    return True
            return False

        uow = active_uow()
        if uow is not None:
            return await read(await uow.read())
        async with self._sessionmaker() as session:
            return await read(session)

    async def purge_expired(self, now: dt.datetime) -> int:
        """Delete link codes and confirmations past their time (the bot's maintenance
        pass); returns how many. Writes only if there is something to delete."""
        expired = ((StaffChatCode, StaffChatCode.expires_at <= now),
                   (StaffChatConfirmation, StaffChatConfirmation.expires_at <= now))
        async with self._sessionmaker() as session:
            found = [
                (await session.execute(select(model.link_id).where(condition).limit(1))).first()
                for model, condition in expired
            ]
        if not any(found):
            return 0

        async def op(session: AsyncSession) -> int:
            deleted = 0
            for model, condition in expired:
                deleted += int((await session.execute(delete(model).where(condition))).rowcount or 0)
            return deleted

        return int(await _write(self._sessionmaker, op))  # type: ignore[arg-type]

    def queue_forget(self, uow: UnitOfWork, chat_id: int) -> None:
        """Delete every link of this chat, and a confirmation waiting for it, in the
        update's unit of work (the person in the chat said /stop, /wipe or Unsubscribe).
        The test sends queued for it go with the link (ON DELETE CASCADE)."""
        key = self.chat_key(chat_id)

        async def op(session: AsyncSession) -> None:
            await session.execute(delete(StaffChat).where(StaffChat.chat_key == key))
            await session.execute(delete(StaffChatConfirmation).where(StaffChatConfirmation.chat_key == key))

        uow.add(op)
