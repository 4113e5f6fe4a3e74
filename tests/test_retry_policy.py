"""The Bot API retry policy, on a fake clock: each class of failure, the bounds, the jitter."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage

from nazaha.bot.retry import BOT_API, RetryPolicy

METHOD = SendMessage(chat_id=1, text="x")


class FakeTime:
    """A clock that moves only when the policy sleeps; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def policy(time: FakeTime, **overrides: Any) -> RetryPolicy:
    return RetryPolicy(sleep=time.sleep, clock=time.clock, **overrides)


class Script:
    """A call that raises the given errors in turn, then returns "sent"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "sent"


def retry_after(seconds: int) -> TelegramRetryAfter:
    return TelegramRetryAfter(method=METHOD, message="Flood control exceeded", retry_after=seconds)


def server_error() -> TelegramServerError:
    return TelegramServerError(method=METHOD, message="Bad Gateway")


async def test_success_is_one_call_and_no_wait():
    time = FakeTime()
    outcome = await policy(time).run(Script())
    assert outcome.ok and outcome.value == "sent" and outcome.attempts == 1
    assert time.waits == []


async def test_429_waits_exactly_retry_after_and_four_in_a_row_are_survived():
    time = FakeTime()
    call = Script(retry_after(1), retry_after(2), retry_after(2), retry_after(1))
    outcome = await policy(time).run(call)
    assert outcome.ok and outcome.unwrap() == "sent" and outcome.attempts == 5
    assert time.waits == [1, 2, 2, 1]


async def test_429_longer_than_the_cap_gives_up_at_once():
    time = FakeTime()
    call = Script(retry_after(31))
    outcome = await policy(time, max_retry_after=30).run(call)
    assert not outcome.ok and outcome.gave_up and not outcome.blocked
    assert isinstance(outcome.error, TelegramRetryAfter)
    assert call.calls == 1 and time.waits == []
    with pytest.raises(TelegramRetryAfter):
        outcome.unwrap()


async def test_429_waits_stop_at_the_total_budget():
    time = FakeTime()
    call = Script(*[retry_after(20) for _ in range(10)])
    outcome = await policy(time, budget=50, max_attempts=100).run(call)
    assert outcome.gave_up
    assert time.waits == [20, 20]  # a third wait would end after the budget
    assert sum(time.waits) <= 50


async def test_five_server_errors_in_a_row_are_survived_with_exponential_full_jitter():
    time = FakeTime()
    call = Script(*[server_error() for _ in range(5)])
    outcome = await policy(time, random=lambda: 1.0).run(call)  # jitter at its top
    assert outcome.ok and outcome.attempts == 6
    assert time.waits == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert BOT_API.max_attempts >= 6 and BOT_API.budget >= sum(time.waits)


async def test_backoff_is_capped_and_attempts_are_bounded():
    time = FakeTime()
    call = Script(*[server_error() for _ in range(50)])
    outcome = await policy(time, random=lambda: 1.0, max_attempts=8, budget=1000).run(call)
    assert outcome.gave_up and call.calls == 8
    assert time.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


async def test_backoff_is_cut_to_the_total_budget():
    time = FakeTime()
    call = Script(*[server_error() for _ in range(50)])
    outcome = await policy(time, random=lambda: 1.0, max_attempts=100, budget=10).run(call)
    assert outcome.gave_up
    assert sum(time.waits) == pytest.approx(10)  # 0.5+1+2+4, then what was left: 2.5
    assert time.now - 1000.0 <= 10


async def test_jitter_stays_within_zero_and_the_exponential_ceiling():
    real = RetryPolicy()
    for failures in range(1, 10):
        ceiling = min(real.backoff_cap, real.backoff_base * 2 ** (failures - 1))
        waits = [real.backoff(failures) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # actually random
    assert RetryPolicy(random=lambda: 0.0).backoff(3) == 0.0
    assert RetryPolicy(random=lambda: 0.5).backoff(3) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "error",
    [
        TelegramNetworkError(method=METHOD, message="ClientConnectorError"),
        asyncio.TimeoutError(),
        aiohttp.ClientConnectionError(),
        aiohttp.ClientResponseError(None, (), status=502),  # type: ignore[arg-type]
        aiohttp.ClientResponseError(None, (), status=429),  # type: ignore[arg-type]
    ],
)
async def test_network_errors_and_download_5xx_are_retried(error):
    time = FakeTime()
    outcome = await policy(time).run(Script(error, error))
    assert outcome.ok and outcome.attempts == 3 and len(time.waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        TelegramBadRequest(method=METHOD, message="Bad Request: message text is empty"),
        TelegramEntityTooLarge(method=METHOD, message="Request Entity Too Large"),
        aiohttp.ClientResponseError(None, (), status=404),  # type: ignore[arg-type]
    ],
)
async def test_refusals_are_not_retried(error):
    time = FakeTime()
    call = Script(error)
    outcome = await policy(time).run(call)
    assert not outcome.ok and not outcome.gave_up and not outcome.blocked
    assert outcome.error is error and call.calls == 1 and time.waits == []


async def test_403_is_reported_not_raised_and_not_retried():
    time = FakeTime()
    call = Script(TelegramForbiddenError(method=METHOD, message="Forbidden: bot was blocked by the user"))
    outcome = await policy(time).run(call)  # does not raise
    assert outcome.blocked and not outcome.ok and not outcome.gave_up
    assert call.calls == 1 and time.waits == []


async def test_bugs_and_cancellation_propagate():
    time = FakeTime()
    with pytest.raises(ValueError):
        await policy(time).run(Script(ValueError("bug")))
    with pytest.raises(asyncio.CancelledError):
        await policy(time).run(Script(asyncio.CancelledError()))


async def test_mixed_failures_share_one_attempt_count():
    time = FakeTime()
    call = Script(retry_after(1), server_error(), retry_after(1), server_error())
    outcome = await policy(time, random=lambda: 1.0, max_attempts=4).run(call)
    assert outcome.gave_up and call.calls == 4
    assert time.waits == [1, 0.5, 1]


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        BOT_API.budget = 1  # type: ignore[misc]


async def test_nothing_of_the_call_is_logged(caplog):
    caplog.set_level("DEBUG")
    time = FakeTime()
    error = TelegramRetryAfter(method=METHOD, message="Flood control exceeded in chat 987654321", retry_after=99)
    await policy(time).run(Script(retry_after(1), error), what="SendMessage")
    assert "987654321" not in caplog.text and "SendMessage" in caplog.text
