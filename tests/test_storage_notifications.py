"""Notification links (sealed chat ids) and the outbox of pending notifications."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import func, select, update

from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import write_transaction
from nazaha.storage.models import NotificationLink, PendingNotification, Report
from nazaha.storage.notifications import Delivery, NotificationLinks
from nazaha.storage.unit_of_work import DuplicateUpdate, UnitOfWork

PEPPER = b"pepper-for-tests-only-0123456789"
CHAT_A = 5_123_456_789  # private chat ids are user ids; they exceed 32 bits
CHAT_B = 987_654_321
CHAT_C = -1_001_234_567_890  # group/channel ids are negative


@pytest.fixture
def box() -> BotKeyBox:
    return BotKeyBox(secrets.token_bytes(32))


@pytest.fixture
def links(sessionmaker, box) -> NotificationLinks:
    return NotificationLinks(sessionmaker, box, PEPPER)


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


async def link(sessionmaker, links, report_id, chat_id, update_id=None) -> None:
    uow = UnitOfWork(sessionmaker, bot_id=1 if update_id else None, update_id=update_id)
    links.add(uow, report_id, chat_id)
    await uow.commit()


async def notify(sessionmaker, report_id) -> None:
    async with write_transaction(sessionmaker) as session:
        session.add(PendingNotification(report_id=report_id, created_at=dt.datetime.now(dt.timezone.utc)))


async def link_rows(sessionmaker) -> list[NotificationLink]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(NotificationLink))).all())


async def test_a_link_stores_no_chat_id_in_the_clear(sessionmaker, links):
    report_id = await new_report(sessionmaker)
    for chat_id in (CHAT_A, CHAT_C):
        await link(sessionmaker, links, report_id, chat_id)
    rows = await link_rows(sessionmaker)
    assert len(rows) == 2
    for row in rows:
        cells = [v for v in vars(row).values() if isinstance(v, (str, bytes))]
        for cell in cells:
            raw = cell if isinstance(cell, bytes) else cell.encode()
            for chat_id in (CHAT_A, CHAT_C):
                assert str(abs(chat_id)).encode() not in raw
                assert abs(chat_id).to_bytes(8, "big").lstrip(b"\0") not in raw
                assert abs(chat_id).to_bytes(8, "little").rstrip(b"\0") not in raw
        assert row.chat_pseudonym in {
            pseudonym(PEPPER, "notify-chat", CHAT_A),
            pseudonym(PEPPER, "notify-chat", CHAT_C),
        }
        assert len(row.id) == 32
    # The same chat under another pepper has another pseudonym: not derivable without it.
    assert pseudonym(b"another-pepper-0123456789abcdef", "notify-chat", CHAT_A) not in {
        r.chat_pseudonym for r in rows
    }


async def test_at_most_one_link_per_report_and_chat(sessionmaker, links):
    one, two = await new_report(sessionmaker), await new_report(sessionmaker)
    await link(sessionmaker, links, one, CHAT_A)
    await link(sessionmaker, links, one, CHAT_A)  # asked twice
    uow = UnitOfWork(sessionmaker)
    links.add(uow, one, CHAT_A)  # twice in one update
    links.add(uow, one, CHAT_A)
    await uow.commit()
    await link(sessionmaker, links, two, CHAT_A)
    await link(sessionmaker, links, one, CHAT_B)
    rows = await link_rows(sessionmaker)
    assert sorted((r.report_id, r.chat_pseudonym) for r in rows) == sorted(
        [
            (one, pseudonym(PEPPER, "notify-chat", CHAT_A)),
            (two, pseudonym(PEPPER, "notify-chat", CHAT_A)),
            (one, pseudonym(PEPPER, "notify-chat", CHAT_B)),
        ]
    )


async def test_a_link_is_added_only_with_its_update(sessionmaker, links):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A, update_id=40)
    uow = UnitOfWork(sessionmaker, bot_id=1, update_id=40)
    links.add(uow, report_id, CHAT_B)
    with pytest.raises(DuplicateUpdate):
        await uow.commit()
    assert await links.has_links(CHAT_A) and not await links.has_links(CHAT_B)


async def test_forget_chat_removes_only_that_chats_links(sessionmaker, links):
    one, two = await new_report(sessionmaker), await new_report(sessionmaker)
    for report_id in (one, two):
        await link(sessionmaker, links, report_id, CHAT_A)
    await link(sessionmaker, links, one, CHAT_B)
    assert await links.has_links(CHAT_A) and await links.has_links(CHAT_B)
    assert not await links.has_links(CHAT_C)

    assert await links.forget_chat(CHAT_A) == 2
    assert await links.forget_chat(CHAT_A) == 0
    assert not await links.has_links(CHAT_A)
    assert await links.has_links(CHAT_B)

    uow = UnitOfWork(sessionmaker)
    links.forget_chat_queued(uow, CHAT_B)
    assert await links.has_links(CHAT_B)  # queued, not yet written
    await uow.commit()
    assert await link_rows(sessionmaker) == []


async def test_due_decrypts_targets_and_done_clears(sessionmaker, links):
    followed, quiet, unchanged = [await new_report(sessionmaker) for _ in range(3)]
    await link(sessionmaker, links, unchanged, CHAT_B)  # linked, but nothing to tell
    await link(sessionmaker, links, followed, CHAT_A)
    await link(sessionmaker, links, followed, CHAT_C)
    await notify(sessionmaker, followed)
    await notify(sessionmaker, quiet)  # nobody asked to be told
    await notify(sessionmaker, followed)  # a second reply before the notifier ran

    deliveries = await links.due()
    assert [d.report_id for d in deliveries] == [followed, quiet]
    by_report = {d.report_id: d for d in deliveries}
    assert sorted(chat for _, chat in by_report[followed].targets) == sorted([CHAT_A, CHAT_C])
    assert all(len(link_id) == 32 for link_id, _ in by_report[followed].targets)
    assert by_report[quiet].targets == []
    assert str(CHAT_A) not in repr(by_report[followed])

    await notify(sessionmaker, followed)  # arrives while the notifier is sending
    await links.done(by_report[followed].notification_id)
    await links.done(by_report[quiet].notification_id)
    await links.done(by_report[quiet].notification_id)  # idempotent
    again = await links.due()
    assert [d.report_id for d in again] == [followed]  # only the reply that came later
    await links.done(again[0].notification_id)
    assert await links.due() == []
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(PendingNotification)) == 0


async def test_due_respects_the_limit_oldest_first(sessionmaker, links):
    reports = [await new_report(sessionmaker) for _ in range(4)]
    for report_id in reports:
        await notify(sessionmaker, report_id)
    first = await links.due(limit=3)
    assert [d.report_id for d in first] == reports[:3]
    for delivery in first:
        await links.done(delivery.notification_id)
    assert [d.report_id for d in await links.due(limit=3)] == reports[3:]


async def test_drop_link_after_the_user_blocked_the_bot(sessionmaker, links):
    report_id = await new_report(sessionmaker)
    await link(sessionmaker, links, report_id, CHAT_A)
    await link(sessionmaker, links, report_id, CHAT_B)
    await notify(sessionmaker, report_id)
    (delivery,) = await links.due()
    blocked = next(link_id for link_id, chat in delivery.targets if chat == CHAT_B)
    await links.drop_link(blocked)
    (delivery,) = await links.due()
    assert [chat for _, chat in delivery.targets] == [CHAT_A]
    assert not await links.has_links(CHAT_B)


async def test_a_sealed_chat_id_moved_to_another_link_is_skipped(sessionmaker, links, box):
    one, two = await new_report(sessionmaker), await new_report(sessionmaker)
    await link(sessionmaker, links, one, CHAT_A)
    await link(sessionmaker, links, two, CHAT_B)
    rows = {r.report_id: r for r in await link_rows(sessionmaker)}
    # Someone with the database tries to redirect report two's notifications to chat A.
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(NotificationLink)
            .where(NotificationLink.id == rows[two].id)
            .values(sealed_chat=rows[one].sealed_chat)
        )
    await notify(sessionmaker, two)
    await notify(sessionmaker, one)
    deliveries = {d.report_id: d.targets for d in await links.due()}
    assert deliveries == {two: [], one: [(rows[one].id, CHAT_A)]}

    # Another bot key opens nothing either.
    other = NotificationLinks(sessionmaker, BotKeyBox(secrets.token_bytes(32)), PEPPER)
    assert {d.report_id: d.targets for d in await other.due()} == {two: [], one: []}


def test_delivery_is_a_plain_value():
    d = Delivery(notification_id=3, report_id="a" * 32, targets=[("b" * 32, CHAT_A)])
    assert d.targets == [("b" * 32, CHAT_A)]
    assert str(CHAT_A) not in repr(d)
