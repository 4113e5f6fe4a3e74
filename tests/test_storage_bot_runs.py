"""The bot's record of its own runs (``system_settings.bot_run``) and the restart notice's
window drawn from it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from nazaha.storage import bot_runs
from nazaha.storage.bot_runs import BotRun, restart_window
from nazaha.storage.models import SystemSetting

T0 = dt.datetime(2025, 3, 1, 12, 34, 56, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(hours=24)


async def stored(sessionmaker) -> bytes | None:
    async with sessionmaker() as session:
        return await session.scalar(select(SystemSetting.value).where(SystemSetting.name == bot_runs.SETTING))


async def test_each_start_replaces_the_record_and_a_clean_stop_completes_it(sessionmaker):
    assert await bot_runs.record_start(sessionmaker, T0) is None  # the first start
    assert BotRun.from_bytes(bytes(await stored(sessionmaker))) == BotRun(T0)
    # Killed: the next start finds a run that never recorded its end.
    second = T0 + dt.timedelta(hours=5)
    assert await bot_runs.record_start(sessionmaker, second) == BotRun(T0, None)
    stop = second + dt.timedelta(minutes=30)
    await bot_runs.record_stop(sessionmaker, second, stop)
    assert await bot_runs.record_start(sessionmaker, stop + dt.timedelta(seconds=3)) == BotRun(second, stop)
    # One row, naming only the bot's own times.
    async with sessionmaker() as session:
        names = (await session.scalars(select(SystemSetting.name))).all()
    assert list(names).count(bot_runs.SETTING) == 1


def test_an_unreadable_record_counts_as_none():
    assert BotRun.from_bytes(b"not json") is None
    assert BotRun.from_bytes(b'{"stopped": null}') is None
    assert BotRun.from_bytes(BotRun(T0, T0 + DAY).to_bytes()) == BotRun(T0, T0 + DAY)


def test_the_window_covers_what_the_previous_run_could_still_hold():
    now = T0 + dt.timedelta(hours=3)
    assert restart_window(None, now, DAY) is None  # no previous run: nobody lost anything
    assert restart_window(BotRun(T0), now, DAY) == now + DAY  # unclean: the end is unknown
    stopped = T0 + dt.timedelta(hours=1)
    assert restart_window(BotRun(T0, stopped), now, DAY) == stopped + DAY  # drafts die by then
    long_after = stopped + DAY + dt.timedelta(seconds=1)
    assert restart_window(BotRun(T0, stopped), long_after, DAY) is None
