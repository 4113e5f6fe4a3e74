"""Conversation state in Redis without persistence, for several bot replicas (issue 12).

The same contract as :class:`nazaha.storage.fsm.VolatileFsmStorage` (expiry, tombstones,
the update's overlay applied at its commit: :class:`~nazaha.storage.fsm.OverlayFsmStorage`),
with records in Redis so that any replica can continue any conversation:

* a record is ``<prefix>fsm:<name>`` where ``name`` is an HMAC of aiogram's storage key under
  the replicas' memory-only key (:class:`nazaha.storage.redis_ring.RedisRing`), never a
  Telegram id; its value is the record sealed (AES-256-GCM) under the same key with the name
  as AAD. A copy of Redis opens nothing without a running bot process's memory;
* ``<prefix>fsm:due`` (a sorted set: name → expiry, Unix seconds) lets
  :meth:`RedisFsmStorage.purge_expired` find expired records without scanning Redis; the
  purge replaces a record only if nobody wrote it meanwhile (compare-and-set in a script),
  so several replicas may purge at once;
* each record also carries a Redis lifetime, a backstop should every purge stop: its expiry
  plus, for a told state, the tombstone's 30 days.

Redis errors (unreachable, timeouts) propagate: the update fails and is retried.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from typing import Any, Protocol

from aiogram.fsm.storage.base import StorageKey
from redis.asyncio import Redis

from nazaha.storage.crypto import SharedStateKey, TamperedData
from nazaha.storage.fsm import DEFAULT_TTL, TOMBSTONE_TTL, OverlayFsmStorage, _Entry, _utcnow
from nazaha.storage.redis_ring import DEFAULT_PREFIX

_MGET_CHUNK = 500

# KEYS[1] the record, KEYS[2] the due index; ARGV[1] the value read, ARGV[2] the new value
# ("" deletes), ARGV[3] its lifetime (ms), ARGV[4] its expiry (index score). 1 if replaced.
_REPLACE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
end
return 1
"""


class HasSharedKey(Protocol):
    """What names and seals Redis entries: the ring (or a fixed key in tests)."""

    @property
    def shared(self) -> SharedStateKey: ...


class RedisFsmStorage(OverlayFsmStorage):
    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: dt.timedelta = DEFAULT_TTL,
        clock: Callable[[], dt.datetime] = _utcnow,
        told_states: Collection[str] | None = None,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock, told_states=told_states)
        self.redis = redis
        self.ring = ring
        self.prefix = prefix
        self.due_name = f"{prefix}fsm:due"
        self._replace = redis.register_script(_REPLACE_IF_UNCHANGED)

    def record_key(self, key: StorageKey) -> str:
        name = self.ring.shared.name(
            "fsm", key.bot_id, key.chat_id, key.user_id, key.thread_id, key.destiny
        )
        return f"{self.prefix}fsm:{name}"

    async def close(self) -> None:
        """Nothing: the records are shared with the other replicas (the runtime closes the
        connection pool)."""

    # -- encoding -------------------------------------------------------------------------

    def _seal(self, record_key: str, entry: _Entry) -> bytes:
        body = {
            "s": entry.state,
            "d": entry.data_json,
            "e": entry.expires_at.timestamp() if entry.expires_at is not None else None,
            "x": entry.expired,
            "k": entry.kept,
        }
        plain = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return self.ring.shared.seal(record_key, plain)

    def _open(self, record_key: str, sealed: bytes) -> _Entry:
        """:class:`TamperedData` for a record of another key (or modified)."""
        body = json.loads(self.ring.shared.open(record_key, sealed))
        expires = body.get("e")
        return _Entry(
            state=body.get("s"),
            data_json=body.get("d"),
            expires_at=dt.datetime.fromtimestamp(expires, dt.timezone.utc) if expires is not None else None,
            expired=bool(body.get("x")),
            kept=body.get("k"),
        )

    def _placement(self, entry: _Entry) -> tuple[int, float]:
        """(Redis lifetime in ms, index score) of a record to store."""
        now = self._clock()
        expires_at = entry.expires_at or now + self._ttl
        lifetime = expires_at - now
        if entry.has_draft and self._told(entry.state):
            lifetime += TOMBSTONE_TTL  # room for the tombstone the purge leaves
        return max(1000, int(lifetime.total_seconds() * 1000)), expires_at.timestamp()

    # -- OverlayFsmStorage --------------------------------------------------------------

    async def _load(self, record_key: str) -> _Entry:
        sealed = await self.redis.get(record_key)
        if sealed is None:
            return _Entry()
        try:
            return self._open(record_key, sealed)
        except (TamperedData, ValueError):
            return _Entry()  # a record of an earlier key: nobody can read it any more

    async def _apply(self, record_key: str, entry: _Entry) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if entry.is_blank:
                pipe.delete(record_key).zrem(self.due_name, record_key)
            else:
                lifetime, score = self._placement(entry)
                pipe.set(record_key, self._seal(record_key, entry), px=lifetime)
                pipe.zadd(self.due_name, {record_key: score})
            await pipe.execute()

    async def purge_expired(self) -> int:
        now = self._clock()
        changed = 0
        for raw_name in await self.redis.zrangebyscore(self.due_name, "-inf", now.timestamp()):
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            sealed = await self.redis.get(name)
            if sealed is None:  # its Redis lifetime ended first
                await self.redis.zrem(self.due_name, name)
                continue
            try:
                entry = self._open(name, sealed)
            except (TamperedData, ValueError):  # an earlier key's: unreadable, dropped
                await self._replace(keys=[name, self.due_name], args=[sealed, b"", 0, 0])
                changed += 1
                continue
            if entry.expires_at is not None and entry.expires_at > now:
                continue  # written again meanwhile (its score follows with that write)
            replacement = self._expired_form(entry)
            if replacement.is_blank:
                args: list[Any] = [sealed, b"", 0, 0]
            else:
                lifetime, score = self._placement(replacement)
                args = [sealed, self._seal(name, replacement), lifetime, score]
            if await self._replace(keys=[name, self.due_name], args=args):
                changed += 1
        return changed

    async def all_data(self) -> list[dict[str, Any]]:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in await self.redis.zrange(self.due_name, 0, -1)]
        found: list[dict[str, Any]] = []
        for start in range(0, len(names), _MGET_CHUNK):
            chunk = names[start : start + _MGET_CHUNK]
            for name, sealed in zip(chunk, await self.redis.mget(chunk)):
                if sealed is None:
                    continue
                try:
                    entry = self._open(name, sealed)
                except (TamperedData, ValueError):
                    continue
                if entry.data_json is not None:
                    found.append(json.loads(entry.data_json))
        return found

    async def size(self) -> int:
        return int(await self.redis.zcard(self.due_name))


__all__ = ["HasSharedKey", "RedisFsmStorage"]
