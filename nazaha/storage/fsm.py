"""aiogram FSM storage in SQL: pseudonymous keys, sealed data, drafts that expire.

* The row key is an HMAC pseudonym of aiogram's storage key: no Telegram id is stored.
* ``data`` (the draft answers) is JSON sealed under the bot key; ``state`` is only a step
  name such as ``"ReportForm:description"`` and stays plain.
* Every write pushes ``expires_at`` to now + ttl. A draft read after it expired is wiped and
  leaves a tombstone flag so the bot can say once that the unfinished report was discarded
  (:meth:`SqlFsmStorage.pop_expired_notice`).
* Inside an update (``current_uow`` set) writes are queued into the update's unit of work and
  kept in its overlay, so later reads in the same update see them and nothing is stored if
  the update is not committed. Outside one, each write is its own short transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from sqlalchemy import bindparam, delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import StatementOp, engine_of, upsert_op, write_transaction
from nazaha.storage.models import FsmRecord
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

PURPOSE = "fsm"
DEFAULT_TTL = dt.timedelta(hours=24)
TOMBSTONE_DAYS = 30


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class _Entry:
    state: str | None = None
    data_json: str | None = None  # JSON text of the data dict; None when empty
    expires_at: dt.datetime | None = None
    expired: bool = False

    @property
    def has_draft(self) -> bool:
        return self.state is not None or self.data_json is not None

    @property
    def is_blank(self) -> bool:
        return not self.has_draft and not self.expired


class SqlFsmStorage(BaseStorage):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: BotKeyBox,
        pepper: bytes,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = _utcnow,
        told_states: Collection[str] | None = None,
    ) -> None:
        """``told_states``: the states whose expiry leaves the "your draft was discarded"
        flag (None: every state). Other records expire silently (e.g. a follow-up session,
        whose expiry is not a lost draft)."""
        self._told_states = frozenset(told_states) if told_states is not None else None
        self._sessionmaker = sessionmaker
        self._dialect = engine_of(sessionmaker).dialect.name
        self._box = box
        self._pepper = pepper
        self._ttl = ttl
        self._clock = clock

    def record_key(self, key: StorageKey) -> str:
        return pseudonym(
            self._pepper, "fsm", key.bot_id, key.chat_id, key.user_id, key.thread_id, key.destiny
        )

    # -- aiogram BaseStorage ------------------------------------------------------------

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._current(self.record_key(key))).state

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        entry = await self._current(self.record_key(key))
        return json.loads(entry.data_json) if entry.data_json is not None else {}

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        record_key = self.record_key(key)
        entry = await self._current(record_key)
        name = state.state if isinstance(state, State) else state
        await self._write(
            record_key, dataclasses.replace(entry, state=name, expires_at=self._expiry())
        )

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        record_key = self.record_key(key)
        entry = await self._current(record_key)
        data_json = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":")) if data else None
        await self._write(
            record_key,
            dataclasses.replace(entry, data_json=data_json, expires_at=self._expiry()),
        )

    async def close(self) -> None:
        """Nothing to do: the engine belongs to the composition root."""

    # -- expiry -------------------------------------------------------------------------

    async def pop_expired_notice(self, key: StorageKey) -> bool:
        """True once if this chat's draft expired since the user's last contact."""
        record_key = self.record_key(key)
        entry = await self._current(record_key)
        if not entry.expired:
            return False
        await self._write(record_key, dataclasses.replace(entry, expired=False))
        return True

    async def purge_expired(self) -> int:
        """Periodic job: wipe expired drafts (keeping the tombstone flag) and delete
        tombstones older than 30 days. Returns the number of rows wiped or deleted."""
        now = self._clock()
        async with write_transaction(self._sessionmaker) as session:
            wiped = await session.execute(
                update(FsmRecord)
                .where(
                    FsmRecord.expires_at <= now,
                    or_(FsmRecord.state.is_not(None), FsmRecord.sealed_data.is_not(None)),
                )
                # SET sees the row as it was: the flag is kept only for told states.
                .values(state=None, sealed_data=None, expired=self._told_sql())
            )
            deleted = await session.execute(
                delete(FsmRecord).where(
                    FsmRecord.state.is_(None),
                    FsmRecord.sealed_data.is_(None),
                    or_(
                        FsmRecord.expired.is_(False),  # nothing left to tell
                        FsmRecord.expires_at.is_(None),
                        FsmRecord.expires_at < now - dt.timedelta(days=TOMBSTONE_DAYS),
                    ),
                )
            )
        return int(wiped.rowcount or 0) + int(deleted.rowcount or 0)

    # -- internals ----------------------------------------------------------------------

    def _expiry(self) -> dt.datetime:
        return self._clock() + self._ttl

    def _told(self, state: str | None) -> bool:
        return self._told_states is None or state in self._told_states

    def _told_sql(self) -> Any:
        if self._told_states is None:
            return True
        # A record with data but no state (e.g. the wipe anchor) has a NULL state: not told.
        return func.coalesce(FsmRecord.state.in_(sorted(self._told_states)), false())

    async def _current(self, record_key: str) -> _Entry:
        """The record as this update sees it, with expiry applied (and the wipe stored)."""
        uow = active_uow()
        entry = await self._load(record_key, uow)
        if entry.has_draft and entry.expires_at is not None and entry.expires_at <= self._clock():
            entry = _Entry(expires_at=entry.expires_at, expired=self._told(entry.state))
            await self._write(record_key, entry, uow)
        return entry

    def prime(self, uow: UnitOfWork, record_key: str, row: Any) -> None:
        """Put a row read elsewhere (see storage/update_rows.py) into the update's overlay:
        later reads in this update use it instead of querying. ``row`` is ``(state,
        sealed_data, expires_at, expired)`` or None when there is no record."""
        uow.fsm_overlay.setdefault(record_key, self._entry(record_key, row))

    async def _load(self, record_key: str, uow: UnitOfWork | None) -> _Entry:
        if uow is not None:
            overlay = uow.fsm_overlay
            if record_key not in overlay:
                # Read once per update; later reads and queued writes use the overlay.
                overlay[record_key] = self._entry(record_key, await self._fetch(await uow.read(), record_key))
            return overlay[record_key]
        async with self._sessionmaker() as session:
            return self._entry(record_key, await self._fetch(session, record_key))

    def _entry(self, record_key: str, row: Any) -> _Entry:
        if row is None:
            return _Entry()
        state, sealed_data, expires_at, expired = row
        data_json = None
        if sealed_data is not None:
            data_json = self._box.open(PURPOSE, record_key, sealed_data).decode("utf-8")
        return _Entry(state=state, data_json=data_json, expires_at=expires_at, expired=expired)

    @staticmethod
    async def _fetch(session: AsyncSession, record_key: str) -> Any:
        result = await session.execute(
            select(
                FsmRecord.state, FsmRecord.sealed_data, FsmRecord.expires_at, FsmRecord.expired
            ).where(FsmRecord.key == record_key)
        )
        return result.one_or_none()

    async def _write(self, record_key: str, entry: _Entry, uow: UnitOfWork | None = None) -> None:
        uow = uow or active_uow()
        op = self._write_op(record_key, entry)
        if uow is not None:
            uow.fsm_overlay[record_key] = entry
            uow.add(op)
        else:
            async with write_transaction(self._sessionmaker) as session:
                await op(session)

    def _write_op(self, record_key: str, entry: _Entry) -> StatementOp:
        if entry.is_blank:
            # Nothing left worth keeping (e.g. FSMContext.clear()): drop the row entirely.
            return StatementOp(_DELETE, {"record_key": record_key})
        sealed = None
        if entry.data_json is not None:
            sealed = self._box.seal(PURPOSE, record_key, entry.data_json.encode("utf-8"))
        values = {
            "key": record_key,
            "state": entry.state,
            "sealed_data": sealed,
            "expires_at": entry.expires_at,
            "expired": entry.expired,
        }
        return upsert_op(self._dialect, FsmRecord.__table__, values, ["key"])


_DELETE = delete(FsmRecord).where(FsmRecord.key == bindparam("record_key"))


__all__ = ["SqlFsmStorage", "DEFAULT_TTL"]
