"""When the bot last started and whether it stopped cleanly: one ``system_settings`` row.

A restart loses every draft and follow-up session (they live in memory only,
:mod:`nazaha.storage.fsm`). To tell users so without keeping anything per account, the bot
records its own runs, never who talked to it: at start it reads the previous run's record and
writes its own (``started``, ``stopped`` empty); a clean stop fills in ``stopped``. From the
previous record :func:`restart_window` says until when a user may still be missing a
conversation (:mod:`nazaha.handlers.restart_notice`).

Row ``bot_run`` holds JSON ``{"started": ISO time, "stopped": ISO time or null}`` (UTC, to
the second). These are the bot's own times: they name no account and no report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.database import write_transaction
from nazaha.storage.models import SystemSetting

SETTING = "bot_run"


@dataclasses.dataclass(frozen=True)
class BotRun:
    """One run of the bot: when it started and, if it stopped cleanly, when."""

    started: dt.datetime
    stopped: dt.datetime | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "started": self.started.isoformat(timespec="seconds"),
                "stopped": self.stopped.isoformat(timespec="seconds") if self.stopped else None,
            }
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, value: bytes) -> BotRun | None:
        """The record, or None if it cannot be read (then treated as no previous run)."""
        try:
            raw = json.loads(value)
            started = dt.datetime.fromisoformat(raw["started"])
            stopped = dt.datetime.fromisoformat(raw["stopped"]) if raw.get("stopped") else None
        except (ValueError, TypeError, KeyError):
            return None
        return cls(started, stopped)


async def record_start(
    sessionmaker: async_sessionmaker[AsyncSession], now: dt.datetime
) -> BotRun | None:
    """Replace the previous run's record with this run's (started ``now``, not stopped);
    returns the previous one (None: the first start of a release that keeps it)."""
    async with write_transaction(sessionmaker) as session:
        value = await session.scalar(select(SystemSetting.value).where(SystemSetting.name == SETTING))
        current = BotRun(now).to_bytes()
        if value is None:
            session.add(SystemSetting(name=SETTING, value=current))
            return None
        await session.execute(
            update(SystemSetting).where(SystemSetting.name == SETTING).values(value=current)
        )
    return BotRun.from_bytes(bytes(value))


async def record_stop(
    sessionmaker: async_sessionmaker[AsyncSession], started: dt.datetime, now: dt.datetime
) -> None:
    """This run (started at ``started``) stopped cleanly at ``now``."""
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(SystemSetting)
            .where(SystemSetting.name == SETTING)
            .values(value=BotRun(started, now).to_bytes())
        )


def restart_window(
    previous: BotRun | None, now: dt.datetime, draft_ttl: dt.timedelta
) -> dt.datetime | None:
    """Until when, after a start at ``now``, a user may be missing a conversation the
    previous run held (None: nobody can be). A draft lives ``draft_ttl`` after its last
    step, so: after a clean stop, until ``stopped + draft_ttl`` (None once that has passed);
    after an unclean one (the end is unknown: a crash, SIGKILL, a power cut), until
    ``now + draft_ttl``; with no previous run, None."""
    if previous is None:
        return None
    if previous.stopped is None:
        return now + draft_ttl
    until = previous.stopped + draft_ttl
    return until if until > now else None


__all__ = ["BotRun", "SETTING", "record_start", "record_stop", "restart_window"]
