"""Per-account preferences, the one row the bot keeps about an account.

Keyed by a pepper pseudonym and sealed under the bot key, so whatever it holds must be
harmless if read (docs/security.md): the language, whether the safety notice was read, the id
of the message where the conversation began (for /wipe) and a marker that a conversation was
open in a given run of the bot (for the restart notice). Nothing about reports, receipts or
drafts. The row expires after a period of inactivity (``ttl``, default 30 days); its
``expires_at`` is rounded down to the hour and moves forward at most once an hour, so the row
never records a finer time than that. /wipe deletes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import StatementOp, engine_of, upsert_op, write_transaction
from nazaha.storage.models import UserPreference
from nazaha.storage.report_writes import hour_of
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

PURPOSE = "prefs"
DEFAULT_TTL = dt.timedelta(days=30)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Preferences:
    locale: str | None = None
    safety_seen: bool = False
    # Where the conversation began (a Telegram message id), for /wipe.
    wipe_from: int | None = None
    # The run of the bot (a random id per process) in which a conversation was open, and
    # until when that matters (ISO hour): after a restart the user is told what happened.
    conversation_run: str | None = None
    conversation_until: str | None = None
    # When the stored row expires (not sealed; None: no row).
    stored_until: dt.datetime | None = dataclasses.field(default=None, compare=False)

    def sealed_fields(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        del fields["stored_until"]
        return fields


class PreferenceStore:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: BotKeyBox,
        pepper: bytes,
        *,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._dialect = engine_of(sessionmaker).dialect.name
        self._box = box
        self._pepper = pepper
        self._ttl = ttl
        self._clock = clock

    def record_key(self, user_id: int) -> str:
        return pseudonym(self._pepper, "prefs", user_id)

    def prime(self, uow: UnitOfWork, key: str, sealed: bytes | None, expires_at: dt.datetime | None) -> None:
        """Put a row read elsewhere (see storage/update_rows.py) into the update's overlay."""
        uow.overlay(PURPOSE).setdefault(key, self._open(key, sealed, expires_at))

    async def get(self, user_id: int) -> Preferences:
        key = self.record_key(user_id)
        uow = active_uow()
        if uow is not None:
            overlay = uow.overlay(PURPOSE)
            if key in overlay:
                return overlay[key]
            session = await uow.read()
            row = (await session.execute(SELECT_ROW, {"key": key})).one_or_none()
        else:
            async with self._sessionmaker() as session:
                row = (await session.execute(SELECT_ROW, {"key": key})).one_or_none()
        prefs = self._open(key, *(row or (None, None)))
        if uow is not None:
            uow.overlay(PURPOSE)[key] = prefs
        return prefs

    def _open(self, key: str, sealed: bytes | None, expires_at: dt.datetime | None) -> Preferences:
        if sealed is None or expires_at is None or expires_at <= self._clock():
            return Preferences()
        raw = json.loads(self._box.open(PURPOSE, key, sealed))
        return Preferences(
            locale=_str_or_none(raw.get("locale")),
            safety_seen=bool(raw.get("safety_seen", False)),
            wipe_from=raw.get("wipe_from") if isinstance(raw.get("wipe_from"), int) else None,
            conversation_run=_str_or_none(raw.get("conversation_run")),
            conversation_until=_str_or_none(raw.get("conversation_until")),
            stored_until=expires_at,
        )

    def set(self, uow: UnitOfWork, user_id: int, prefs: Preferences) -> Preferences:
        """Queue the write into the update's unit of work; returns what is now stored."""
        key = self.record_key(user_id)
        expires_at = self._next_expiry()
        stored = dataclasses.replace(prefs, stored_until=expires_at)
        plaintext = json.dumps(stored.sealed_fields(), separators=(",", ":")).encode("utf-8")
        values = {
            "pseudonym": key,
            "sealed": self._box.seal(PURPOSE, key, plaintext),
            "expires_at": expires_at,
        }
        uow.overlay(PURPOSE)[key] = stored
        uow.add(upsert_op(self._dialect, UserPreference.__table__, values, ["pseudonym"]))
        return stored

    def touch(self, uow: UnitOfWork, user_id: int, prefs: Preferences) -> None:
        """Keep an active account's row from expiring: rewritten at most once an hour."""
        if prefs.stored_until is not None and prefs.stored_until < self._next_expiry():
            self.set(uow, user_id, prefs)

    def forget(self, uow: UnitOfWork, user_id: int) -> None:
        """Queue the deletion of this account's row (/wipe)."""
        key = self.record_key(user_id)
        uow.overlay(PURPOSE)[key] = Preferences()
        uow.add(StatementOp(_DELETE, {"key": key}))

    async def purge_expired(self) -> int:
        """Delete rows whose time is up; returns how many."""
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(
                delete(UserPreference).where(UserPreference.expires_at <= self._clock())
            )
        return int(result.rowcount or 0)

    def _next_expiry(self) -> dt.datetime:
        return hour_of(self._clock()) + self._ttl


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


# One account's row, ``(sealed, expires_at)`` (bind ``key``); also read by update_rows.py.
SELECT_ROW = select(UserPreference.sealed, UserPreference.expires_at).where(
    UserPreference.pseudonym == bindparam("key")
)
_DELETE = delete(UserPreference).where(UserPreference.pseudonym == bindparam("key"))

__all__ = ["DEFAULT_TTL", "PreferenceStore", "Preferences"]
