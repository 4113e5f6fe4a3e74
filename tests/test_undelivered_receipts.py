"""Receipts kept in memory after a failed delivery, and the outbox telling who failed."""

from __future__ import annotations

import secrets

from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import SendMessage

from nazaha.bot.retry import RetryPolicy
from nazaha.handlers.outbox import Outbox
from nazaha.handlers.undelivered_receipts import UndeliveredReceipts
from nazaha.storage.crypto import pseudonym

PEPPER = secrets.token_bytes(32)
RECEIPT = "1234 5678 9012 3456 7890"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def store() -> tuple[UndeliveredReceipts, FakeClock]:
    clock = FakeClock()
    return UndeliveredReceipts(PEPPER, ttl=900, clock=clock), clock


async def test_a_receipt_is_handed_out_once_then_forgotten():
    receipts, _ = store()
    await receipts.keep(7, RECEIPT)
    assert await receipts.has(7) and not await receipts.has(8)
    kept = await receipts.take(7)
    assert kept is not None and kept.receipt == RECEIPT
    assert await receipts.take(7) is None and not await receipts.has(7) and len(receipts) == 0


async def test_keyed_by_the_pseudonym_never_the_user_id():
    receipts, _ = store()
    await receipts.keep(424242, RECEIPT)
    assert list(receipts._kept) == [pseudonym(PEPPER, "receipt", 424242)]
    assert "424242" not in repr(receipts._kept)


async def test_expired_on_read_and_on_sweep():
    receipts, clock = store()
    await receipts.keep(1, RECEIPT)
    await receipts.keep(2, RECEIPT)
    clock.now += 899.0
    assert await receipts.has(1)
    clock.now += 1.0  # 15 minutes
    assert await receipts.take(1) is None  # expired on read
    assert len(receipts) == 1
    assert receipts.sweep() == 1 and len(receipts) == 0


async def test_the_user_is_told_once_and_again_if_the_telling_failed():
    receipts, clock = store()
    assert not await receipts.first_contact(5)
    await receipts.keep(5, RECEIPT)
    assert await receipts.first_contact(5)
    assert not await receipts.first_contact(5)
    await receipts.tell_again(5)
    assert await receipts.first_contact(5)
    clock.now += 901
    await receipts.tell_again(5)
    assert not await receipts.first_contact(5)  # nothing left to tell about


async def test_put_back_keeps_the_first_deadline():
    receipts, clock = store()
    await receipts.keep(3, RECEIPT)
    clock.now += 600
    kept = await receipts.take(3)
    assert kept is not None
    await receipts.keep(3, kept.receipt, expires_at=kept.expires_at)  # its delivery failed again
    assert await receipts.first_contact(3)
    clock.now += 300
    assert not await receipts.has(3)
    await receipts.keep(3, RECEIPT, expires_at=clock.now - 1)  # already expired: not kept
    assert len(receipts) == 0


class FakeBot:
    """Fails sendMessage calls whose text starts with a given prefix; records the rest."""

    def __init__(self, failing: str, error: Exception) -> None:
        self.failing = failing
        self.error = error
        self.sent: list[str] = []

    async def __call__(self, method):
        if isinstance(method, SendMessage) and method.text.startswith(self.failing):
            raise self.error
        self.sent.append(getattr(method, "text", type(method).__name__))


async def no_sleep(_: float) -> None:
    return None


async def test_outbox_calls_on_undelivered_once_and_sends_the_rest():
    retry_after = TelegramRetryAfter(method=SendMessage(chat_id=1, text="x"), message="flood", retry_after=1)
    bot = FakeBot("receipt", retry_after)
    outbox = Outbox(bot, RetryPolicy(sleep=no_sleep, max_attempts=3))  # type: ignore[arg-type]
    failed: list[str] = []
    outbox.send(1, "before", on_undelivered=lambda: failed.append("before"))
    outbox.send(1, "receipt " + "x" * 5000, protect=True, on_undelivered=lambda: failed.append("receipt"))
    outbox.send(1, "after")
    await outbox.flush()
    assert failed == ["receipt"]  # two pieces failed, one call
    assert bot.sent == ["before", "after"]


async def test_outbox_refusal_counts_as_undelivered_and_a_broken_callback_is_contained():
    bad = TelegramBadRequest(method=SendMessage(chat_id=1, text="x"), message="Bad Request")
    bot = FakeBot("receipt", bad)
    outbox = Outbox(bot, RetryPolicy(sleep=no_sleep))  # type: ignore[arg-type]

    def broken() -> None:
        raise RuntimeError("callback bug")

    outbox.send(1, "receipt", on_undelivered=broken)
    outbox.send(1, "after")
    await outbox.flush()
    assert bot.sent == ["after"]


async def test_show_receipt_callback_data_round_trips():
    from nazaha.handlers import callbacks as cb

    assert cb.parse(cb.show_receipt()) == cb.ShowReceipt()
    assert cb.parse("s:other") is None
