"""Broadcast schedules: the console shows and takes times in Palestine time (Asia/Hebron,
with its summer time) and the database keeps them in UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = ["PALESTINE", "ScheduleError", "parse_send_at", "palestine_time", "palestine_parts"]

PALESTINE = ZoneInfo("Asia/Hebron")


class ScheduleError(ValueError):
    """A date without a time (or the reverse), or not a date or time at all."""


def parse_send_at(date_text: str, time_text: str) -> dt.datetime | None:
    """``YYYY-MM-DD`` and ``HH:MM`` in Palestine time -> aware UTC; both empty -> None
    (send as soon as approved). :class:`ScheduleError` otherwise."""
    date_text, time_text = (date_text or "").strip(), (time_text or "").strip()
    if not date_text and not time_text:
        return None
    if not date_text or not time_text:
        raise ScheduleError("a date and a time are both needed")
    try:
        day = dt.date.fromisoformat(date_text)
        at = dt.time.fromisoformat(time_text)
    except ValueError:
        raise ScheduleError("not a date or a time") from None
    local = dt.datetime.combine(day, at.replace(second=0, microsecond=0, tzinfo=None), tzinfo=PALESTINE)
    return local.astimezone(dt.timezone.utc)


def palestine_parts(moment: dt.datetime | None) -> tuple[str, str]:
    """``(YYYY-MM-DD, HH:MM)`` of a UTC moment in Palestine time (the form's fields)."""
    if moment is None:
        return "", ""
    local = moment.astimezone(PALESTINE)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M")


def palestine_time(moment: dt.datetime | None) -> str:
    """A UTC moment as ``YYYY-MM-DD HH:MM`` in Palestine time ("" for None)."""
    if moment is None:
        return ""
    return moment.astimezone(PALESTINE).strftime("%Y-%m-%d %H:%M")
