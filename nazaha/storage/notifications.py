"""Opt-in, content-free "there is an update on your report" notifications, designed so that
neither the bot host nor the coalition alone can tell which Telegram chat follows which case.

* **Link** (written at submission, report side): the chat id and language are sealed under the
  bot's link key (:class:`~nazaha.storage.crypto.BotKeyBox` purpose ``"notify-link"``, the link
  id as context), and that sealed value is sealed again to the team public key (HPKE, the link
  id and report id bound in). The bot host cannot remove the outer layer (no team key); the
  console cannot open the inner one (no link key).
* **Mailbox**: each running bot makes a key pair that exists only in its memory and publishes
  the public half (``bot_mailboxes``). Once the process stops, nobody can open what was
  addressed to it.
* **Dispatch** (console side, :class:`NotificationDispatcher`): for each report with pending
  news it removes the outer layer of each link and seals the inner layer, with the link id, to
  the mailbox: a one-time instruction that carries no report id.
* **Delivery** (bot side, :class:`Mailbox`): the bot opens the instruction with its memory-only
  key, the inner layer with its link key, sends the fixed text and deletes the instruction.

Stopping notifications goes through the receipt (follow-up, :meth:`NotificationLinks.stop`): no
bot-side key can find a chat's links. Closing a case deletes its links.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import random
import secrets

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import (
    BotKeyBox,
    CryptoError,
    TeamKeyRing,
    TeamPrivateKey,
    TeamPublicKey,
    open_from_key,
    seal_to_key,
)
from nazaha.storage.database import write_transaction
from nazaha.storage.team_key import PublishedTeamKey
from nazaha.storage.models import (
    BotMailbox,
    NotificationInstruction,
    NotificationLink,
    PendingNotification,
)

LINK_PURPOSE = "notify-link"
LINK_LABEL = "nazaha/notify-link/v1"
INSTRUCTION_LABEL = "nazaha/notify-instruction/v1"

log = logging.getLogger(__name__)


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


class NotificationLinks:
    """Links of reports to the chats that asked to be told (report side)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: BotKeyBox,
        team_public: TeamPublicKey | PublishedTeamKey,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        # The vault's published key when the bot runs: links follow a team-key rotation.
        self._team_key = team_public if isinstance(team_public, PublishedTeamKey) else PublishedTeamKey(team_public)

    def add(self, batch, report_id: str, chat_id: int, locale: str) -> None:
        """Queue a link into ``batch`` (a :class:`~nazaha.storage.report_writes.ReportBatch`)."""
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            raise TypeError("a chat id is an int")
        link_id = secrets.token_hex(16)
        inner = self._box.seal(
            LINK_PURPOSE,
            link_id,
            json.dumps({"chat": chat_id, "locale": locale}, separators=(",", ":")).encode(),
        )
        values = {"id": link_id, "report_id": report_id, "created_on": _today()}

        async def store(session: AsyncSession) -> None:
            # Sealed in the write transaction, to the key published then (a rotation's
            # last sweep must not miss a link sealed to the key it retires).
            team_public = await self._team_key.check_in(session)
            values["sealed_link"] = seal_to_key(team_public, LINK_LABEL, (link_id, report_id), inner)
            await session.execute(NotificationLink.__table__.insert(), [values])

        batch.add(store)

    def stop(self, batch, report_id: str) -> None:
        """Queue the removal of every link (and pending notification) of a report: the
        reporter stopped notifications from follow-up."""

        async def remove(session: AsyncSession) -> None:
            await session.execute(delete(NotificationLink).where(NotificationLink.report_id == report_id))
            await session.execute(
                delete(PendingNotification).where(PendingNotification.report_id == report_id)
            )

        batch.add(remove)

    async def count(self, report_id: str) -> int:
        """How many chats follow this report."""
        async with self._sessionmaker() as session:
            found = await session.scalar(
                select(func.count()).select_from(NotificationLink).where(NotificationLink.report_id == report_id)
            )
        return int(found or 0)

    async def drop_link(self, link_id: str) -> None:
        """Forget one link (Telegram answered 403: the user blocked the bot)."""
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(delete(NotificationLink).where(NotificationLink.id == link_id))


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One notification to send: never logged (the chat id is in it)."""

    id: str
    link_id: str
    chat_id: int
    locale: str

    def __repr__(self) -> str:
        return "Instruction(<redacted>)"


class Mailbox:
    """The running bot's side: a key pair in memory only, and the instructions sealed to it."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._key = TeamPrivateKey.generate()  # the same hybrid KEM as the team key
        self.id = secrets.token_hex(16)

    async def open(self) -> None:
        """Publish the public half, replacing mailboxes of earlier runs (whose instructions
        nobody can open any more)."""
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(delete(BotMailbox))
            session.add(
                BotMailbox(id=self.id, public_key=self._key.public_key().to_bytes(), opened_on=_today())
            )

    async def close(self) -> None:
        """Withdraw the mailbox (its pending instructions go with it)."""
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(delete(BotMailbox).where(BotMailbox.id == self.id))

    async def due(self, limit: int = 100) -> list[Instruction]:
        """Up to ``limit`` instructions, opened. One that fails to open (modified, or not
        for this run) is deleted and skipped, never fatal."""
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    select(NotificationInstruction.id, NotificationInstruction.sealed)
                    .where(NotificationInstruction.mailbox_id == self.id)
                    .limit(limit)
                )
            ).all()
        opened: list[Instruction] = []
        for row in rows:
            try:
                payload = json.loads(
                    open_from_key(self._key, INSTRUCTION_LABEL, (row.id, self.id), row.sealed)
                )
                link_id = str(payload["link"])
                inner = json.loads(
                    self._box.open(LINK_PURPOSE, link_id, base64.b64decode(payload["inner"]))
                )
                opened.append(Instruction(row.id, link_id, int(inner["chat"]), str(inner["locale"])))
            except (CryptoError, ValueError, KeyError, TypeError):
                log.warning("a notification instruction failed to open and was dropped")
                await self.done(row.id)
        return opened

    async def done(self, instruction_id: str) -> None:
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(
                delete(NotificationInstruction).where(NotificationInstruction.id == instruction_id)
            )

    def __repr__(self) -> str:
        return "Mailbox(<redacted>)"

    def __reduce__(self):
        raise TypeError("Mailbox must not be pickled")


class NotificationDispatcher:
    """The console's side: turns pending notifications into instructions for the running
    bot. Needs the team private key (the console holds it while a staff member is logged in;
    ``nazaha notify`` takes the recovery file)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], rng: random.Random | None = None) -> None:
        self._sessionmaker = sessionmaker
        self._rng = rng or random.SystemRandom()

    async def dispatch(self, team_private: TeamPrivateKey) -> int:
        """Issue instructions for every report in the bot database's pending list (the
        ``nazaha notify`` command); returns how many. The console does not use this list: it
        notifies at the moment of a change (:meth:`notify_reports`), from its own store.

        With no running bot (no mailbox) nothing is issued and the news stays pending."""
        async with write_transaction(self._sessionmaker) as session:
            pending = (
                await session.execute(
                    select(PendingNotification.report_id, func.max(PendingNotification.id))
                    .group_by(PendingNotification.report_id)
                )
            ).all()
            issued = await self.notify_reports(session, team_private, [r for r, _ in pending])
            if issued is None:
                return 0
            for report_id, last_id in pending:
                await session.execute(
                    delete(PendingNotification).where(
                        PendingNotification.report_id == report_id,
                        PendingNotification.id <= last_id,
                    )
                )
        return issued

    async def notify_reports(
        self, session: AsyncSession, team_private: TeamPrivateKey | TeamKeyRing, report_ids: list[str]
    ) -> int | None:
        """In the caller's transaction: one instruction per notification link of each
        report, sealed to the running bot's mailbox; the number issued, or ``None`` when no
        bot is running (no mailbox: the caller keeps the news for later). A link that fails
        to open (tampered, or sealed to another team key) is skipped and logged without
        detail."""
        mailbox = (await session.execute(select(BotMailbox.id, BotMailbox.public_key).limit(1))).first()
        if mailbox is None:
            return None
        public = TeamPublicKey.from_bytes(mailbox.public_key)
        instructions = []
        for report_id in dict.fromkeys(report_ids):
            links = (
                await session.execute(
                    select(NotificationLink.id, NotificationLink.sealed_link).where(
                        NotificationLink.report_id == report_id
                    )
                )
            ).all()
            for link in links:
                try:
                    inner = open_from_key(team_private, LINK_LABEL, (link.id, report_id), link.sealed_link)
                except CryptoError:
                    log.warning("a notification link failed to open and was skipped")
                    continue
                instruction_id = secrets.token_hex(16)
                payload = json.dumps(
                    {"link": link.id, "inner": base64.b64encode(inner).decode()},
                    separators=(",", ":"),
                ).encode()
                instructions.append(
                    {
                        "id": instruction_id,
                        "mailbox_id": mailbox.id,
                        "sealed": seal_to_key(public, INSTRUCTION_LABEL, (instruction_id, mailbox.id), payload),
                    }
                )
        self._rng.shuffle(instructions)  # no order that follows the reports
        if instructions:
            await session.execute(NotificationInstruction.__table__.insert(), instructions)
        return len(instructions)

    async def has_pending(self) -> bool:
        async with self._sessionmaker() as session:
            return bool(await session.scalar(select(exists().where(PendingNotification.id.is_not(None)))))


__all__ = ["Instruction", "Mailbox", "NotificationDispatcher", "NotificationLinks"]
