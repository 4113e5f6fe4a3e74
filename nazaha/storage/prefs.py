"""Per-account preferences, the one row the bot keeps about an account.

Keyed by a pepper pseudonym and sealed under the bot key, so whatever it holds must be
harmless if read (docs/security.md): the language and the id of the message where the
conversation began (for /wipe). Both are set the same way for every account that talks to the
bot, so the row says nothing about reports, receipts or drafts, nor whether the account ever
began a report or a follow-up: an awareness subscriber's Telegram id is known to the bot host,
and their row must not narrow down which report is theirs. (Whether the safety notice was read
is kept in memory, :mod:`nazaha.handlers.safety_reads`; the restart notice needs nothing per
account, :mod:`nazaha.handlers.restart_notice`.)

The row expires after a period of inactivity (``ttl``, default 30 days); its ``expires_at`` is
rounded down to the hour and moves forward at most once an hour, so the row never records a
finer time than that. /wipe deletes it.

Rows written by older releases may also hold ``safety_seen``, ``conversation_run`` and
``conversation_until``: they are never read, are dropped whenever a row is rewritten, and
:meth:`PreferenceStore.drop_legacy_fields` rewrites every such row once, at the bot's start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import BotKeyBox, TamperedData, pseudonym
from nazaha.storage.database import StatementOp, engine_of, upsert_op, write_transaction
from nazaha.storage.models import SystemSetting, UserPreference
from nazaha.storage.report_writes import hour_of
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

PURPOSE = "prefs"
DEFAULT_TTL = dt.timedelta(days=30)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# Fields older releases sealed into the row: whether the safety notice was read and that a
# report or follow-up was open in a run of the bot. They tell that the account began one.
LEGACY_FIELDS = frozenset({"safety_seen", "conversation_run", "conversation_until"})
# Names the migration pass's marker in system_settings (value: ``FORMAT``).
FORMAT_SETTING = "preferences_format"
FORMAT = b"2"
_HOUR = "%Y-%m-%dT%H"  # how older releases wrote ``conversation_until``


@dataclasses.dataclass(frozen=True)
class Preferences:
    locale: str | None = None
    # Where the conversation began (a Telegram message id), for /wipe.
    wipe_from: int | None = None
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
            wipe_from=raw.get("wipe_from") if isinstance(raw.get("wipe_from"), int) else None,
            stored_until=expires_at,
        )

    def set(self, uow: UnitOfWork, user_id: int, prefs: Preferences) -> Preferences:
        """Queue the write into the update's unit of work; returns what is now stored."""
        key = self.record_key(user_id)
        expires_at = self._next_expiry()
        stored = dataclasses.replace(prefs, stored_until=expires_at)
        values = {"pseudonym": key, "sealed": self._seal(key, stored), "expires_at": expires_at}
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

    async def drop_legacy_fields(self) -> LegacyRows:
        """Once per database (a ``system_settings`` marker): rewrite every live row that
        still holds a field of :data:`LEGACY_FIELDS` without it (same pseudonym, same
        ``expires_at``) and delete expired rows, in one write transaction; then, on
        PostgreSQL, VACUUM the table so that the old versions go (SQLite: ``secure_delete``
        zeroes them, and the caller truncates the WAL next). Call it at the bot's start,
        before any update. Returns what was found (:class:`LegacyRows`)."""
        now = self._clock()
        async with write_transaction(self._sessionmaker) as session:
            done = await session.scalar(
                select(SystemSetting.value).where(SystemSetting.name == FORMAT_SETTING)
            )
            if done is not None:
                return LegacyRows()
            rows = (await session.execute(_ALL_ROWS)).all()
            rewritten, unopened, open_conversation = 0, 0, False
            for key, sealed, expires_at in rows:
                if expires_at <= now:
                    await session.execute(_DELETE, {"key": key})
                    continue
                try:
                    raw = json.loads(self._box.open(PURPOSE, key, sealed))
                except TamperedData:
                    unopened += 1  # not this bot key's: left alone, and the pass runs again
                    continue
                if not LEGACY_FIELDS & set(raw):
                    continue
                until = raw.get("conversation_until")
                if raw.get("conversation_run") and isinstance(until, str) and until > now.strftime(_HOUR):
                    open_conversation = True
                kept = self._open(key, sealed, expires_at)
                await session.execute(_REWRITE, {"key": key, "sealed": self._seal(key, kept)})
                rewritten += 1
            if unopened:
                logging.getLogger(__name__).warning(
                    "%d preference rows do not open with this bot key: left as they are", unopened
                )
            else:
                session.add(SystemSetting(name=FORMAT_SETTING, value=FORMAT))
        if rewritten and self._dialect == "postgresql":
            await _vacuum_table(self._sessionmaker)
        return LegacyRows(rewritten=rewritten, open_conversation=open_conversation)

    def _seal(self, key: str, prefs: Preferences) -> bytes:
        plaintext = json.dumps(prefs.sealed_fields(), separators=(",", ":")).encode("utf-8")
        return self._box.seal(PURPOSE, key, plaintext)

    def _next_expiry(self) -> dt.datetime:
        return hour_of(self._clock()) + self._ttl


@dataclasses.dataclass(frozen=True)
class LegacyRows:
    """What :meth:`PreferenceStore.drop_legacy_fields` found: how many rows it rewrote,
    and whether one marked a conversation still open (an older release ran until lately:
    its users are due the restart notice)."""

    rewritten: int = 0
    open_conversation: bool = False


async def _vacuum_table(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """PostgreSQL: VACUUM ``user_preferences`` (outside a transaction, as it must run); a
    failure (e.g. a role that does not own the table) leaves it to autovacuum."""
    try:
        async with engine_of(sessionmaker).connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(f"VACUUM {UserPreference.__table__.fullname}")
    except DBAPIError as exc:
        logging.getLogger(__name__).warning("VACUUM of preferences failed: %s", type(exc).__name__)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


# One account's row, ``(sealed, expires_at)`` (bind ``key``); also read by update_rows.py.
SELECT_ROW = select(UserPreference.sealed, UserPreference.expires_at).where(
    UserPreference.pseudonym == bindparam("key")
)
_DELETE = delete(UserPreference).where(UserPreference.pseudonym == bindparam("key"))
_ALL_ROWS = select(UserPreference.pseudonym, UserPreference.sealed, UserPreference.expires_at)
_REWRITE = (
    update(UserPreference)
    .where(UserPreference.pseudonym == bindparam("key"))
    .values(sealed=bindparam("sealed"))
)

__all__ = ["DEFAULT_TTL", "LEGACY_FIELDS", "LegacyRows", "PreferenceStore", "Preferences"]
