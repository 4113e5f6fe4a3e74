"""Notification links sealed twice, the bot's memory-only mailbox, and the dispatch between."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import func, select, update

from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import write_transaction
from nazaha.storage.models import (
    BotMailbox,
    NotificationInstruction,
    NotificationLink,
    PendingNotification,
    Report,
)
from nazaha.storage.notifications import Mailbox, NotificationDispatcher, NotificationLinks
from nazaha.storage.report_writes import ReportBatch, ReportWriter

CHAT_A = 5_123_456_789  # private chat ids are user ids; they exceed 32 bits
CHAT_B = 987_654_321


@pytest.fixture
def box() -> BotKeyBox:
    return BotKeyBox(secrets.token_bytes(32))


@pytest.fixture
def links(sessionmaker, box, team_key) -> NotificationLinks:
    return NotificationLinks(sessionmaker, box, team_key.public_key())


async def new_report(sessionmaker) -> str:
    report_id = secrets.token_hex(16)
    async with write_transaction(sessionmaker) as session:
        session.add(
            Report(
                id=report_id,
                designation="R-" + secrets.token_hex(3).upper(),
                kind="complaint",
                status="received",
                created_on=dt.date(2026, 1, 2),
                team_key_id="k",
                wrapped_key_team=b"t",
                wrapped_key_reporter=b"r",
                receipt_lookup=secrets.token_bytes(32),
            )
        )
    return report_id


async def link(sessionmaker, links, report_id, chat_id, locale="ar") -> None:
    batch = ReportBatch()
    links.add(batch, report_id, chat_id, locale)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)


async def notify(sessionmaker, report_id) -> None:
    async with write_transaction(sessionmaker) as session:
        session.add(PendingNotification(report_id=report_id))


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


async def test_a_link_opens_neither_with_the_bot_key_nor_with_the_team_key_alone(
    sessionmaker, links, box, team_key
):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    async with sessionmaker() as session:
        row = (await session.scalars(select(NotificationLink))).one()
    assert str(CHAT_A).encode() not in row.sealed_link
    # The bot key does not open the outer layer...
    from nazaha.storage.crypto import CryptoError, open_from_key

    with pytest.raises(CryptoError):
        box.open("notify-link", row.id, row.sealed_link)
    # ...and the team key opens only the inner layer, itself sealed under the link key.
    inner = open_from_key(team_key, "nazaha/notify-link/v1", (row.id, report_id), row.sealed_link)
    assert str(CHAT_A).encode() not in inner
    assert b'"chat"' in box.open("notify-link", row.id, inner)
    # Moved to another report, the link fails to open.
    with pytest.raises(CryptoError):
        open_from_key(team_key, "nazaha/notify-link/v1", (row.id, secrets.token_hex(16)), row.sealed_link)


async def test_dispatch_reaches_the_running_bot_and_nobody_else(sessionmaker, links, box, team_key):
    report_id = await new_report(sessionmaker)
    other = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A, "en")
    await link(sessionmaker, links, report_id, CHAT_B, "ar")
    await link(sessionmaker, links, other, CHAT_B)
    dispatcher = NotificationDispatcher(sessionmaker)
    await notify(sessionmaker, report_id)
    # No bot running: nothing issued, the news stays pending.
    assert await dispatcher.dispatch(team_key) == 0
    assert await dispatcher.has_pending()

    mailbox = Mailbox(sessionmaker, box)
    await mailbox.open()
    assert await dispatcher.dispatch(team_key) == 2
    assert not await dispatcher.has_pending()
    async with sessionmaker() as session:
        sealed = list(await session.scalars(select(NotificationInstruction.sealed)))
    for value in sealed:  # no report id, no chat id in an instruction
        assert report_id.encode() not in value and str(CHAT_A).encode() not in value
    due = await mailbox.due()
    assert sorted((i.chat_id, i.locale) for i in due) == sorted([(CHAT_A, "en"), (CHAT_B, "ar")])
    assert "5123456789" not in repr(due)
    for instruction in due:
        await mailbox.done(instruction.id)
    assert await count(sessionmaker, NotificationInstruction) == 0
    # Another run of the bot (a new mailbox) cannot open what was sealed to the old one.
    await notify(sessionmaker, report_id)
    await dispatcher.dispatch(team_key)
    stranger = Mailbox(sessionmaker, box)
    assert await stranger.due() == []


async def test_an_instruction_for_a_previous_run_is_gone_with_its_mailbox(sessionmaker, links, box, team_key):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    first = Mailbox(sessionmaker, box)
    await first.open()
    await notify(sessionmaker, report_id)
    assert await NotificationDispatcher(sessionmaker).dispatch(team_key) == 1
    second = Mailbox(sessionmaker, box)
    await second.open()  # a restart: the old mailbox and its instructions go
    assert await count(sessionmaker, BotMailbox) == 1
    assert await count(sessionmaker, NotificationInstruction) == 0
    await second.close()
    assert await count(sessionmaker, BotMailbox) == 0


async def test_a_tampered_instruction_is_dropped_not_fatal(sessionmaker, links, box, team_key):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    await link(sessionmaker, links, report_id, CHAT_B)
    mailbox = Mailbox(sessionmaker, box)
    await mailbox.open()
    await notify(sessionmaker, report_id)
    await NotificationDispatcher(sessionmaker).dispatch(team_key)
    async with write_transaction(sessionmaker) as session:
        first = (await session.scalars(select(NotificationInstruction).limit(1))).one()
        flipped = bytearray(first.sealed)
        flipped[-1] ^= 1
        await session.execute(
            update(NotificationInstruction).where(NotificationInstruction.id == first.id).values(sealed=bytes(flipped))
        )
    due = await mailbox.due()
    assert len(due) == 1
    assert await count(sessionmaker, NotificationInstruction) == 1


async def test_stop_removes_the_reports_links_and_pending_news(sessionmaker, links, team_key):
    report_id = await new_report(sessionmaker)
    other = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    await link(sessionmaker, links, other, CHAT_A)
    await notify(sessionmaker, report_id)
    assert await links.count(report_id) == 1
    batch = ReportBatch()
    links.stop(batch, report_id)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    assert await links.count(report_id) == 0
    assert await links.count(other) == 1
    assert await count(sessionmaker, PendingNotification) == 0


async def test_drop_link_after_the_user_blocked_the_bot(sessionmaker, links):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    async with sessionmaker() as session:
        link_id = await session.scalar(select(NotificationLink.id))
    await links.drop_link(link_id)
    assert await links.count(report_id) == 0


def test_a_mailbox_never_shows_or_pickles_its_key(sessionmaker, box):
    import pickle

    mailbox = Mailbox(sessionmaker, box)
    assert "redacted" in repr(mailbox)
    with pytest.raises(TypeError):
        pickle.dumps(mailbox)
