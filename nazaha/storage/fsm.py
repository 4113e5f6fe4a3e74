"""aiogram FSM storage in the bot process's memory: drafts never touch the disk.

A draft's free text, contact details, choices and the data key of its evidence are what a
seized bot host must never yield (docs/security.md), and anything written under a key the
bot host keeps at rest would yield them, old row versions included. So conversation state
lives here only, keyed by an HMAC pseudonym of aiogram's storage key, and is lost when the
process stops. Nothing persists per account that says a conversation was ever open (the
preferences row, :mod:`nazaha.storage.prefs`, holds the language and a message id); after a
restart users are told plainly what may have happened (:mod:`nazaha.handlers.restart_notice`).

* Every write pushes the record's expiry to now + ttl; an expired record of a *told* state
  (a report draft) leaves a tombstone so that the bot can say once that the unfinished report
  was discarded (:meth:`OverlayFsmStorage.pop_expired`); other states (a follow-up
  session) expire silently. The tombstone keeps what the record's data held under
  :data:`TRAIL` (the span of message ids the draft left in the chat, to delete then), nothing
  else.
* Inside an update (``current_uow`` set) writes are kept in the update's overlay and applied
  when its unit of work commits, so later reads in the same update see them and nothing
  changes if the update fails or was a duplicate. Outside one, writes apply at once.
* At scale (several replicas) the same contract holds in Redis without persistence
  (:class:`nazaha.storage.redis_fsm.RedisFsmStorage`, ``NAZAHA_REDIS_URL``): the logic
  below is shared (:class:`OverlayFsmStorage`), only where records live differs. Never SQL.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

from nazaha.storage.crypto import pseudonym
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

DEFAULT_TTL = dt.timedelta(hours=24)
TOMBSTONE_TTL = dt.timedelta(days=30)
# The key of a record's data that its tombstone keeps (a small JSON value: message ids).
TRAIL = "trail"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class _Entry:
    state: str | None = None
    data_json: str | None = None  # JSON text of the data dict; None when empty
    expires_at: dt.datetime | None = None
    expired: bool = False  # a tombstone: "your unfinished report was discarded"
    kept: str | None = None  # a tombstone's JSON of the expired data's TRAIL value

    @property
    def has_draft(self) -> bool:
        return self.state is not None or self.data_json is not None

    @property
    def is_blank(self) -> bool:
        return not self.has_draft and not self.expired


class OverlayFsmStorage(BaseStorage, abc.ABC):
    """The contract of the bot's conversation storage, whatever holds the records:
    expiry with tombstones for told states, and the update's overlay (module docstring).

    Subclasses say where records live: :meth:`record_key`, :meth:`_load`, :meth:`_apply`,
    :meth:`purge_expired`, :meth:`all_data`, :meth:`size`. Every method that may touch
    the records is a coroutine (a shared store is reached over the network)."""

    def __init__(
        self,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = _utcnow,
        told_states: Collection[str] | None = None,
    ) -> None:
        """``told_states``: the states whose expiry leaves the "your draft was discarded"
        tombstone (None: every state)."""
        self._told_states = frozenset(told_states) if told_states is not None else None
        self._ttl = ttl
        self._clock = clock

    @abc.abstractmethod
    def record_key(self, key: StorageKey) -> str:
        """The pseudonymous name of ``key``'s record (never a Telegram id)."""

    @abc.abstractmethod
    async def _load(self, record_key: str) -> _Entry:
        """The stored record (``_Entry()`` if none), expiry not applied."""

    @abc.abstractmethod
    async def _apply(self, record_key: str, entry: _Entry) -> None:
        """Store ``entry`` (a blank one deletes the record)."""

    @abc.abstractmethod
    async def purge_expired(self) -> int:
        """Periodic job: drop expired records (keeping a tombstone for told states) and old
        tombstones. Returns how many records were dropped or turned into tombstones."""

    @abc.abstractmethod
    async def all_data(self) -> list[dict[str, Any]]:
        """The data of every live record (e.g. to find the blobs live drafts still need)."""

    @abc.abstractmethod
    async def size(self) -> int:
        """How many records (drafts, sessions, tombstones) are stored."""

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
        await self._write(record_key, dataclasses.replace(entry, state=name, expires_at=self._expiry()))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DataNotDictLikeError(
                f"Data must be a dict or dict-like object, got {type(data).__name__}"
            )
        record_key = self.record_key(key)
        entry = await self._current(record_key)
        data_json = json.dumps(data, ensure_ascii=False, separators=(",", ":")) if data else None
        await self._write(
            record_key, dataclasses.replace(entry, data_json=data_json, expires_at=self._expiry())
        )

    # -- expiry and wiping --------------------------------------------------------------

    async def has_record(self, key: StorageKey) -> bool:
        """True if this storage key has a live record (a conversation in progress)."""
        return (await self._current(self.record_key(key))).has_draft

    async def pop_expired_notice(self, key: StorageKey) -> bool:
        """True once if this chat's draft expired since the user's last contact."""
        return await self.pop_expired(key) is not None

    async def pop_expired(self, key: StorageKey) -> dict[str, Any] | None:
        """Once, if this chat's draft expired since the user's last contact: ``{}``, or
        ``{TRAIL: value}`` if its data held one; ``None`` otherwise."""
        record_key = self.record_key(key)
        entry = await self._current(record_key)
        if not entry.expired:
            return None
        await self._write(record_key, dataclasses.replace(entry, expired=False, kept=None))
        return {TRAIL: json.loads(entry.kept)} if entry.kept is not None else {}

    async def forget(self, key: StorageKey) -> None:
        """Drop the record and any tombstone of this key (/wipe), in this update's commit."""
        await self._write(self.record_key(key), _Entry())

    # -- internals ----------------------------------------------------------------------

    def _expiry(self) -> dt.datetime:
        return self._clock() + self._ttl

    def _told(self, state: str | None) -> bool:
        return self._told_states is None or state in self._told_states

    def _expired_form(self, entry: _Entry) -> _Entry:
        """What an expired record becomes: a tombstone for a told state (keeping its data's
        :data:`TRAIL` value), else nothing."""
        if entry.has_draft and self._told(entry.state):
            return _Entry(
                expires_at=self._clock() + TOMBSTONE_TTL, expired=True, kept=_trail_of(entry)
            )
        return _Entry()

    async def _current(self, record_key: str) -> _Entry:
        """The record as this update sees it, with expiry applied. Inside an update a
        record is loaded once (later reads see the update's own writes, or that load)."""
        uow = active_uow()
        entry = uow.fsm_overlay.get(record_key) if uow is not None else None
        if entry is None:
            loaded = uow.overlay("fsm-loaded") if uow is not None else None
            entry = loaded.get(record_key) if loaded is not None else None
            if entry is None:
                entry = await self._load(record_key)
                if loaded is not None:
                    loaded[record_key] = entry
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            entry = self._expired_form(entry)
            await self._write(record_key, entry, uow)
        return entry

    async def _write(self, record_key: str, entry: _Entry, uow: UnitOfWork | None = None) -> None:
        uow = uow or active_uow()
        if uow is None:
            await self._apply(record_key, entry)
            return
        overlay = uow.fsm_overlay
        first = record_key not in overlay
        overlay[record_key] = entry
        if first:  # applied once, with whatever the overlay holds at commit time
            uow.on_commit(lambda: self._apply(record_key, overlay[record_key]))


def _trail_of(entry: _Entry) -> str | None:
    """The JSON of the entry's data's :data:`TRAIL` value, if it has one."""
    if entry.data_json is None:
        return None
    try:
        data = json.loads(entry.data_json)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get(TRAIL) is None:
        return None
    return json.dumps(data[TRAIL], separators=(",", ":"))


class VolatileFsmStorage(OverlayFsmStorage):
    """Records in this process's memory, keyed by ``pseudonym(pepper, "fsm", ...)``."""

    def __init__(
        self,
        pepper: bytes,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = _utcnow,
        told_states: Collection[str] | None = None,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock, told_states=told_states)
        self._pepper = pepper
        self._records: dict[str, _Entry] = {}

    def record_key(self, key: StorageKey) -> str:
        return pseudonym(
            self._pepper, "fsm", key.bot_id, key.chat_id, key.user_id, key.thread_id, key.destiny
        )

    async def close(self) -> None:
        """Forget everything (the process is stopping)."""
        self._records.clear()

    async def purge_expired(self) -> int:
        now = self._clock()
        changed = 0
        for record_key, entry in list(self._records.items()):
            if entry.expires_at is None or entry.expires_at > now:
                continue
            changed += 1
            replacement = self._expired_form(entry)
            if replacement.is_blank:
                del self._records[record_key]
            else:
                self._records[record_key] = replacement
        return changed

    async def all_data(self) -> list[dict[str, Any]]:
        return [json.loads(e.data_json) for e in self._records.values() if e.data_json is not None]

    async def size(self) -> int:
        return len(self._records)

    def __len__(self) -> int:
        return len(self._records)

    async def _load(self, record_key: str) -> _Entry:
        return self._records.get(record_key, _Entry())

    async def _apply(self, record_key: str, entry: _Entry) -> None:
        if entry.is_blank:
            self._records.pop(record_key, None)
        else:
            self._records[record_key] = entry


__all__ = ["DEFAULT_TTL", "TOMBSTONE_TTL", "TRAIL", "OverlayFsmStorage", "VolatileFsmStorage"]
