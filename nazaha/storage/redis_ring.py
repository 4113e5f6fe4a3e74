"""The replicas' shared key: made by the first bot process, handed to the others through
Redis, held only in memory (issue 12).

Everything the bot keeps in Redis is named and sealed under one key
(:class:`nazaha.storage.crypto.SharedStateKey`) so that a copy of Redis opens nothing,
even with the bot host's disk (docs/security.md). Each process joins at start:

* If Redis has no current key (``<prefix>ring:epoch`` absent), it makes one and claims the
  epoch (``SET NX``): it is *fresh*, whatever Redis held before can no longer be read (the
  conversations were lost, as after a restart of a single process), and is deleted.
* Otherwise it asks for it: it publishes a public key (a hybrid KEM key pair made for this
  run, the private half in memory only) with an HMAC under a key derived from the bot key
  (``<prefix>ring:want:<member>``, listed in ``<prefix>ring:wants``), and waits until a
  running process answers with the key sealed to it (``<prefix>ring:grant:<member>``,
  HMAC'd the same way). A request or grant that fails authentication is ignored.

Every process then beats every second (:meth:`RedisRing.run`): it keeps the epoch record
alive (``ttl``) and its own entry in ``<prefix>ring:members`` (member id → until when, Unix
seconds), answers requests, and notices when another key became current (Redis was emptied
and another process made a new key): it then joins again. A process that stops cleanly
leaves (:meth:`RedisRing.leave`), and the last one deletes the epoch record, so the next
start is fresh at once; after a crash of the last one the record expires after ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from nazaha.storage.crypto import (
    SharedStateKey,
    TamperedData,
    TeamPrivateKey,
    open_ring_grant,
    open_ring_request,
    ring_auth_key,
    ring_request,
    seal_ring_grant,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "nazaha:"

# KEYS[1] the epoch record; ARGV[1] this process's epoch, ARGV[2] its lifetime (ms).
# 1: it was missing and is ours again; 0: ours, renewed; -1: another key is current.
_KEEP_EPOCH = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
return -1
"""

# KEYS[1] the epoch record, KEYS[2] the members; ARGV[1] this process's epoch and member id
# ARGV[2], now ARGV[3]. This process leaves; the last one to leave deletes the epoch record.
_LEAVE = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RingUnavailable(Exception):
    """No running process handed over the shared key in time (message safe to show)."""


class RedisRing:
    """This process's place among the bot processes sharing one Redis.

    ``ttl``: seconds the epoch record and a request live without being renewed (a stopped
    set of replicas is forgotten after it); ``beat``: seconds between beats; ``poll``:
    seconds between looks for a grant while joining."""

    def __init__(
        self,
        redis: Redis,
        bot_key: bytes,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 15.0,
        beat: float = 1.0,
        poll: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)
        self.beat_seconds = beat
        self.poll = poll
        self.member_id = secrets.token_hex(16)
        self._auth = ring_auth_key(bot_key)
        self._private = TeamPrivateKey.generate()
        self._shared: SharedStateKey | None = None
        self.fresh = False
        self._keep_epoch = redis.register_script(_KEEP_EPOCH)
        self._leave = redis.register_script(_LEAVE)

    # -- names ----------------------------------------------------------------------------

    @property
    def epoch_name(self) -> str:
        return f"{self.prefix}ring:epoch"

    @property
    def members_name(self) -> str:
        return f"{self.prefix}ring:members"

    @property
    def wants_name(self) -> str:
        return f"{self.prefix}ring:wants"

    def want_name(self, member_id: str) -> str:
        return f"{self.prefix}ring:want:{member_id}"

    def grant_name(self, member_id: str) -> str:
        return f"{self.prefix}ring:grant:{member_id}"

    # -- the key ------------------------------------------------------------------------

    @property
    def shared(self) -> SharedStateKey:
        """The current shared key; ``RuntimeError`` before :meth:`join`."""
        if self._shared is None:
            raise RuntimeError("the process has not joined the Redis ring")
        return self._shared

    async def join(self, timeout: float = 60.0) -> bool:
        """Take the current shared key, or make one if there is none. Returns True when
        this process made it (:attr:`fresh`). :class:`RingUnavailable` after ``timeout``
        seconds without a grant while some process keeps the epoch record alive."""
        deadline = time.monotonic() + timeout
        while True:
            made = SharedStateKey.generate()
            if await self.redis.set(self.epoch_name, made.epoch, nx=True, px=self.ttl_ms):
                self._shared, self.fresh = made, True
                await self._present()
                await self._delete_unreadable()
                log.info("shared state key made (no running replica had one)")
                return True
            granted = await self._ask(deadline)
            if granted is not None:
                self._shared, self.fresh = granted, False
                await self._present()
                log.info("shared state key received from a running replica")
                return False
            # The epoch record expired while waiting: nobody holds the key any more.

    async def _delete_unreadable(self) -> int:
        """Delete every entry of an earlier key (all but the ring's own); returns how many."""
        ring = f"{self.prefix}ring:".encode()
        batch: list[bytes] = []
        deleted = 0
        async for name in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            raw = name if isinstance(name, bytes) else str(name).encode()
            if not raw.startswith(ring):
                batch.append(raw)
            if len(batch) >= 500:
                deleted += int(await self.redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await self.redis.unlink(*batch))
        if deleted:
            log.info("%d entries of an earlier shared key deleted from Redis", deleted)
        return deleted

    async def _ask(self, deadline: float) -> SharedStateKey | None:
        """Publish this process's request and wait for a grant; None once the epoch record
        is gone (then the caller makes a key)."""
        request = ring_request(self._auth, self.member_id, self._private.public_key())
        want, grant = self.want_name(self.member_id), self.grant_name(self.member_id)
        renewed = 0.0
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise RingUnavailable(
                        "no running bot process handed over the shared Redis key in time "
                        "(is another replica stuck, or was it started with another bot key?)"
                    )
                if now - renewed > self.ttl_ms / 3000:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        pipe.set(want, request, px=self.ttl_ms).sadd(self.wants_name, self.member_id)
                        await pipe.execute()
                    renewed = now
                sealed = await self.redis.get(grant)
                if sealed is not None:
                    await self.redis.delete(grant)
                    try:
                        return open_ring_grant(self._auth, self._private, self.member_id, sealed)
                    except TamperedData:
                        log.warning("a shared key grant failed authentication and was ignored")
                if not await self.redis.exists(self.epoch_name):
                    return None
                await asyncio.sleep(self.poll)
        finally:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(want, grant).srem(self.wants_name, self.member_id)
                await pipe.execute()

    # -- beating --------------------------------------------------------------------------

    async def _present(self) -> None:
        """Renew this process's entry among the members (and forget expired ones)."""
        now = self.clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.members_name, {self.member_id: now + self.ttl_ms / 1000})
            pipe.zremrangebyscore(self.members_name, "-inf", now)
            pipe.pexpire(self.members_name, self.ttl_ms)
            await pipe.execute()

    async def leave(self) -> bool:
        """A clean stop: leave the members; the last one deletes the epoch record (the
        key then exists nowhere: the next process to start makes a new one). True if this
        was the last one. Redis errors are logged, not raised."""
        if self._shared is None:
            return False
        try:
            last = await self._leave(
                keys=[self.epoch_name, self.members_name],
                args=[self._shared.epoch, self.member_id, self.clock()],
            )
        except (RedisError, OSError) as exc:
            log.warning("leaving the Redis ring failed (%s)", type(exc).__name__)
            return False
        return bool(int(last))

    async def beat(self) -> None:
        """Keep the epoch record alive, answer requests, rejoin if another key is current."""
        shared = self.shared
        kept = await self._keep_epoch(keys=[self.epoch_name], args=[shared.epoch, self.ttl_ms])
        if int(kept) == -1:
            log.warning(
                "another shared Redis key is current (Redis was emptied, or replicas "
                "started apart): joining it; conversations kept under this one are lost"
            )
            await self.join()
            return
        if int(kept) == 1:
            log.warning("the shared key's record was missing from Redis (restarted or emptied?)")
        await self._present()
        for raw in await self.redis.smembers(self.wants_name):
            member_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            await self._grant(member_id)

    async def _grant(self, member_id: str) -> None:
        request = await self.redis.get(self.want_name(member_id))
        if request is None or member_id == self.member_id:
            await self.redis.srem(self.wants_name, member_id)
            return
        try:
            public = open_ring_request(self._auth, member_id, request)
        except TamperedData:
            log.warning("a request for the shared Redis key failed authentication and was ignored")
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.want_name(member_id)).srem(self.wants_name, member_id)
                await pipe.execute()
            return
        sealed = seal_ring_grant(self._auth, self.shared, member_id, public)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.grant_name(member_id), sealed, px=self.ttl_ms)
            pipe.srem(self.wants_name, member_id)
            await pipe.execute()

    async def run(self) -> None:
        """Beat every ``beat`` seconds until cancelled; failures are logged by type."""
        while True:
            await asyncio.sleep(self.beat_seconds)
            try:
                await self.beat()
            except Exception as exc:  # the beat must go on: the type only, never a value
                log.warning("Redis ring beat failed (%s)", type(exc).__name__)

    def __repr__(self) -> str:
        return "RedisRing(<redacted>)"

    def __reduce__(self):
        raise TypeError("RedisRing must not be pickled")


__all__ = ["DEFAULT_PREFIX", "RedisRing", "RingUnavailable"]
