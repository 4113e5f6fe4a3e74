"""The bot's per-user memory in Redis, shared by several replicas (issue 12).

With ``NAZAHA_REDIS_URL`` set, what a single process keeps in its memory only lives in
Redis instead, with the same contracts as the in-process classes, so that a user's next
update may land on any replica:

========================== ============================================ ==================
in-process class           Redis class                                  entry
========================== ============================================ ==================
``SessionKeys``            :class:`RedisSessionKeys` (unlocked cases)   ``session:<name>``
``SafetyReads``            :class:`RedisSafetyReads`                    ``safety:<name>``
``UndeliveredReceipts``    :class:`RedisReceipts`                       ``receipt:<name>``
``RestartNotice``          :class:`RedisRestartNotice`                  ``restart:<name>``
``ThrottleMiddleware``     :class:`RedisThrottle` (token buckets)       ``throttle:<name>``
``AttemptLimiter`` counts  :class:`RedisAttemptCounts`                  ``attempts:<name>``
``RecentUpdates``          :class:`RedisUpdateMarks` (pre-check)        ``update:<name>``
aiogram's per-user lock    :class:`PseudonymousEventIsolation`          ``lock:<name>``
========================== ============================================ ==================

Every ``<name>`` is an HMAC under the replicas' memory-only key
(:class:`nazaha.storage.redis_ring.RedisRing`) of the purpose and the Telegram id (or the
random reference, or the update id): never an id. Every value that says anything is sealed
under the same key with its name as AAD. Each entry carries a Redis lifetime equal to the
in-process one, so Redis forgets it on time on its own (``sweep`` is a no-op here); the
expiry is also checked on read, on the injectable ``clock`` (Unix seconds: shared by
processes, unlike a monotonic clock). Redis errors propagate: the update fails, and is
retried (nazaha/handlers/middlewares.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, Literal, TypeVar

from aiogram.fsm.storage.base import KeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from nazaha.handlers.undelivered_receipts import RECEIPT_TTL_SECONDS, Kept
from nazaha.storage.crypto import TamperedData, TeamPrivateKey
from nazaha.storage.redis_fsm import HasSharedKey
from nazaha.storage.redis_ring import DEFAULT_PREFIX
from nazaha.storage.reports import UnlockedCase

log = logging.getLogger(__name__)

T = TypeVar("T")
HOUR = 3600.0


def _ms(seconds: float) -> int:
    """A Redis lifetime (ms, at least 1) for ``seconds``."""
    return max(1, int(seconds * 1000))


class _Sealed:
    """Names and sealed JSON values under the ring's key, for the classes below."""

    def __init__(self, redis: Redis, ring: HasSharedKey, purpose: str, prefix: str) -> None:
        self.redis = redis
        self.ring = ring
        self.purpose = purpose
        self.prefix = prefix

    def name(self, *parts: object) -> str:
        return f"{self.prefix}{self.purpose}:{self.ring.shared.name(self.purpose, *parts)}"

    def seal(self, name: str, value: dict[str, Any]) -> bytes:
        return self.ring.shared.seal(name, json.dumps(value, separators=(",", ":")).encode())

    def open(self, name: str, sealed: bytes | None) -> dict[str, Any] | None:
        """The value, or None if absent or not readable (an earlier key's, or modified)."""
        if sealed is None:
            return None
        try:
            value = json.loads(self.ring.shared.open(name, sealed))
        except (TamperedData, ValueError):
            return None
        return value if isinstance(value, dict) else None


# -- follow-up sessions ----------------------------------------------------------------


def case_to_bytes(case: UnlockedCase) -> bytes:
    """An unlocked case as JSON bytes (keys base64), to be sealed before it leaves memory."""
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return json.dumps(
        {
            "report_id": case.report_id,
            "designation": case.designation,
            "kind": case.kind,
            "status": case.status,
            "outcome": case.outcome,
            "created_on": case.created_on.isoformat(),
            "data_key": b64(case.data_key),
            "reporter_public_key": b64(case.reporter_public_key),
            "reporter_public_key_missing": case.reporter_public_key_missing,
            "epoch_keys": [b64(k) for k in case.epoch_keys],
            "reporter_private": b64(case.reporter_private.to_bytes()) if case.reporter_private else None,
        },
        separators=(",", ":"),
    ).encode()


def case_from_bytes(raw: bytes) -> UnlockedCase:
    d = json.loads(raw)
    unb64 = base64.b64decode
    private = d.get("reporter_private")
    return UnlockedCase(
        report_id=d["report_id"],
        designation=d["designation"],
        kind=d["kind"],
        status=d["status"],
        outcome=d["outcome"],
        created_on=dt.date.fromisoformat(d["created_on"]),
        data_key=unb64(d["data_key"]),
        reporter_public_key=unb64(d["reporter_public_key"]),
        reporter_public_key_missing=bool(d["reporter_public_key_missing"]),
        epoch_keys=tuple(unb64(k) for k in d["epoch_keys"]),
        reporter_private=TeamPrivateKey.from_bytes(unb64(private)) if private else None,
    )


class RedisSessionKeys(Generic[T]):
    """:class:`nazaha.handlers.session_keys.SessionKeys` in Redis: values behind random
    references, sealed, for ``ttl`` seconds of silence (renewed by :meth:`get`)."""

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        ttl_seconds: float,
        *,
        encode: Callable[[T], bytes] = case_to_bytes,  # type: ignore[assignment]
        decode: Callable[[bytes], T] = case_from_bytes,  # type: ignore[assignment]
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self._encode, self._decode = encode, decode
        self._store = _Sealed(redis, ring, "session", prefix)

    def _value(self, value: T, until: float) -> dict[str, Any]:
        return {"v": base64.b64encode(self._encode(value)).decode(), "u": until}

    async def put(self, value: T) -> str:
        ref = secrets.token_hex(16)
        name = self._store.name(ref)
        until = self.clock() + self.ttl
        await self._store.redis.set(name, self._store.seal(name, self._value(value, until)), px=_ms(self.ttl))
        return ref

    async def get(self, ref: str) -> T | None:
        """The value, with its lifetime renewed; None once expired or forgotten."""
        name = self._store.name(ref)
        stored = self._store.open(name, await self._store.redis.get(name))
        if stored is None or float(stored["u"]) <= self.clock():
            await self._store.redis.delete(name)
            return None
        stored["u"] = self.clock() + self.ttl
        await self._store.redis.set(name, self._store.seal(name, stored), px=_ms(self.ttl))
        return self._decode(base64.b64decode(stored["v"]))

    async def replace(self, ref: str, value: T) -> None:
        """Swap the value behind a live ``ref`` (its lifetime unchanged); nothing if gone."""
        name = self._store.name(ref)
        stored = self._store.open(name, await self._store.redis.get(name))
        if stored is None or float(stored["u"]) <= self.clock():
            return
        sealed = self._store.seal(name, self._value(value, float(stored["u"])))
        await self._store.redis.set(name, sealed, xx=True, keepttl=True)

    async def drop(self, ref: str) -> None:
        await self._store.redis.delete(self._store.name(ref))

    def sweep(self) -> int:
        """Nothing to do: Redis forgets each entry at the end of its lifetime."""
        return 0

    def clear(self) -> None:
        """Nothing: the sessions are the other replicas' too."""


# -- safety notice ---------------------------------------------------------------------


class RedisSafetyReads:
    """:class:`nazaha.handlers.safety_reads.SafetyReads` in Redis."""

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._store = _Sealed(redis, ring, "safety", prefix)

    async def seen(self, user_id: int) -> bool:
        name = self._store.name(int(user_id))
        stored = self._store.open(name, await self._store.redis.get(name))
        return stored is not None and float(stored["u"]) > self.clock()

    async def acknowledge(self, user_id: int) -> None:
        name = self._store.name(int(user_id))
        value = self._store.seal(name, {"u": self.clock() + self.ttl})
        await self._store.redis.set(name, value, px=_ms(self.ttl))

    async def forget(self, user_id: int) -> None:
        await self._store.redis.delete(self._store.name(int(user_id)))

    def sweep(self) -> int:
        return 0

    def clear(self) -> None:
        """Nothing: the acknowledgements are the other replicas' too."""


# -- undelivered receipts --------------------------------------------------------------


class RedisReceipts:
    """:class:`nazaha.handlers.undelivered_receipts.UndeliveredReceipts` in Redis; the
    receipt is handed out at most once across replicas (``GETDEL``)."""

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        ttl: float = RECEIPT_TTL_SECONDS,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._store = _Sealed(redis, ring, "receipt", prefix)

    async def _live(self, name: str) -> dict[str, Any] | None:
        stored = self._store.open(name, await self._store.redis.get(name))
        if stored is None or float(stored["u"]) <= self.clock():
            return None
        return stored

    async def keep(self, user_id: int, receipt: str, *, expires_at: float | None = None) -> None:
        deadline = self.clock() + self.ttl if expires_at is None else expires_at
        remaining = deadline - self.clock()
        if remaining <= 0:
            return
        name = self._store.name(int(user_id))
        value = self._store.seal(name, {"r": receipt, "u": deadline, "t": False})
        await self._store.redis.set(name, value, px=_ms(remaining))

    async def has(self, user_id: int) -> bool:
        return await self._live(self._store.name(int(user_id))) is not None

    async def take(self, user_id: int) -> Kept | None:
        name = self._store.name(int(user_id))
        stored = self._store.open(name, await self._store.redis.getdel(name))
        if stored is None or float(stored["u"]) <= self.clock():
            return None
        return Kept(str(stored["r"]), float(stored["u"]))

    async def first_contact(self, user_id: int) -> bool:
        name = self._store.name(int(user_id))
        stored = await self._live(name)
        if stored is None or stored.get("t"):
            return False
        stored["t"] = True
        await self._store.redis.set(name, self._store.seal(name, stored), xx=True, keepttl=True)
        return True

    async def tell_again(self, user_id: int) -> None:
        name = self._store.name(int(user_id))
        stored = await self._live(name)
        if stored is not None and stored.get("t"):
            stored["t"] = False
            await self._store.redis.set(name, self._store.seal(name, stored), xx=True, keepttl=True)

    def sweep(self) -> int:
        return 0

    async def count(self) -> int:
        """Receipts held for every replica (a SCAN of this store's key names; a few
        thousand at most, since each expires with its TTL)."""
        found = 0
        async for _name in self._store.redis.scan_iter(match=f"{self._store.prefix}{self._store.purpose}:*", count=500):
            found += 1
        return found


# -- restart notice --------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RedisRestartNotice:
    """:class:`nazaha.handlers.restart_notice.RestartNotice` shared by the replicas: the
    window (until when the notice may be due) is published by the process that made the
    shared key (:attr:`RedisRing.fresh`: only then were conversations lost) and read by
    the others, looked for again every ``recheck`` seconds while none is known; an
    account's first update in the window is claimed once across replicas (``SET NX``)."""

    WINDOW = "restart-window"

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        prefix: str = DEFAULT_PREFIX,
        recheck: float = 10.0,
    ) -> None:
        self.clock = clock
        self.until: dt.datetime | None = None
        self.recheck = recheck
        self._looked: float | None = None
        self._store = _Sealed(redis, ring, "restart", prefix)

    @property
    def window_name(self) -> str:
        return self._store.name(self.WINDOW)

    async def open_until(self, until: dt.datetime | None) -> None:
        """Set at start-up: a window to publish, or None to adopt the published one."""
        self.until = until
        name = self.window_name
        if until is not None:
            remaining = (until - self.clock()).total_seconds()
            if remaining > 0:
                value = self._store.seal(name, {"u": until.timestamp()})
                await self._store.redis.set(name, value, px=_ms(remaining))
            return
        await self._adopt()

    async def _adopt(self) -> None:
        self._looked = time.monotonic()
        name = self.window_name
        stored = self._store.open(name, await self._store.redis.get(name))
        if stored is not None:
            self.until = dt.datetime.fromtimestamp(float(stored["u"]), dt.timezone.utc)

    async def first_contact(self, user_id: int) -> bool:
        if self.until is None and (self._looked is None or time.monotonic() - self._looked >= self.recheck):
            await self._adopt()
        if self.until is None:
            return False
        remaining = (self.until - self.clock()).total_seconds()
        if remaining <= 0:
            self.until = None
            return False
        name = self._store.name(int(user_id))
        return bool(await self._store.redis.set(name, b"", nx=True, px=_ms(remaining)))

    def sweep(self) -> None:
        if self.until is not None and self.until <= self.clock():
            self.until = None


# -- flood control ---------------------------------------------------------------------

# KEYS[1] the bucket; ARGV: now (s), rate (tokens/s), burst, lifetime (ms).
# Returns {allowed, warn} as ThrottleMiddleware.allow.
_TOKEN_BUCKET = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 't', 'l', 'w')
local tokens = tonumber(stored[1]) or burst
local last = tonumber(stored[2]) or now
local warned = stored[3] == '1'
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed, warn = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
  warned = false
else
  if not warned then warn = 1 end
  warned = true
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'l', string.format('%.6f', now), 'w', warned and '1' or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, warn}
"""


class RedisThrottle:
    """Per-user token buckets shared by the replicas (one script call per update)."""

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._store = _Sealed(redis, ring, "throttle", prefix)
        self._script = redis.register_script(_TOKEN_BUCKET)
        # A bucket is forgotten once it would be full again (at most an hour).
        refill = burst / rate if rate > 0 else HOUR
        self._lifetime = _ms(min(HOUR, refill + 1.0))

    async def allow(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn), as :meth:`ThrottleMiddleware.allow`."""
        name = self._store.name(int(user_id))
        allowed, warn = await self._script(
            keys=[name], args=[f"{self.clock():.6f}", self.rate, self.burst, self._lifetime]
        )
        return bool(int(allowed)), bool(int(warn))


# -- wrong receipts --------------------------------------------------------------------

# KEYS[1] the hour's window (hash: s = start, n = failures); ARGV: now, lifetime (ms).
_COUNT_IN_WINDOW = """
local now = tonumber(ARGV[1])
local start = tonumber(redis.call('HGET', KEYS[1], 's'))
if not start or now - start >= 3600 then
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'n', 1)
else
  redis.call('HINCRBY', KEYS[1], 'n', 1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisAttemptCounts:
    """The wrong-receipt counts of :class:`nazaha.storage.attempts.AttemptLimiter`, shared
    by the replicas: per account the times of the last hour's failures (a sorted set), and
    the global hour's window (a hash). The turn and its queue stay per process."""

    def __init__(
        self,
        redis: Redis,
        ring: HasSharedKey,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self._store = _Sealed(redis, ring, "attempts", prefix)
        self._count_in_window = redis.register_script(_COUNT_IN_WINDOW)

    @property
    def window_name(self) -> str:
        return self._store.name("global-window")

    async def failures(self, user_id: int) -> int:
        """This account's wrong receipts in the last hour."""
        name, now = self._store.name(int(user_id)), self.clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(name, "-inf", now - HOUR).zcard(name)
            _, count = await pipe.execute()
        return int(count)

    async def add_failure(self, user_id: int) -> None:
        name, now = self._store.name(int(user_id)), self.clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(name, {secrets.token_hex(8): now}).pexpire(name, _ms(HOUR))
            await pipe.execute()
        await self._count_in_window(keys=[self.window_name], args=[f"{now:.6f}", _ms(HOUR)])

    async def slowed(self, global_per_hour: int) -> bool:
        """True while the hour's wrong receipts (all replicas) reached ``global_per_hour``."""
        start, count = await self.redis.hmget(self.window_name, ["s", "n"])
        if start is None or self.clock() - float(start) >= HOUR:
            return False
        return int(count or 0) >= global_per_hour


# -- duplicate updates -----------------------------------------------------------------


class RedisUpdateMarks:
    """The fast duplicate pre-check across replicas: an update id is marked done once its
    effects are committed, for ``ttl`` seconds (Telegram retries a webhook for minutes).
    Nothing is marked before: a replica that dies mid-update leaves no mark, so the update
    is handled again elsewhere (a user's updates are serialised by the per-user lock, so a
    redelivery waits for the first delivery and then finds its mark). The authoritative
    claim stays in the database, in the transaction of the report-side effects."""

    def __init__(
        self, redis: Redis, ring: HasSharedKey, *, ttl: float = 2 * HOUR, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.ttl = ttl
        self._store = _Sealed(redis, ring, "update", prefix)

    async def seen(self, bot_id: int, update_id: int) -> bool:
        return bool(await self._store.redis.exists(self._store.name(int(bot_id), int(update_id))))

    async def done(self, bot_id: int, update_id: int) -> None:
        await self._store.redis.set(self._store.name(int(bot_id), int(update_id)), b"", px=_ms(self.ttl))


# -- the per-user lock -----------------------------------------------------------------


class PseudonymKeyBuilder(KeyBuilder):
    """aiogram key names without ids: ``<prefix><part>:<HMAC of the storage key>``."""

    def __init__(self, ring: HasSharedKey, prefix: str = DEFAULT_PREFIX) -> None:
        self.ring = ring
        self.prefix = prefix

    def build(self, key: StorageKey, part: Literal["data", "state", "lock"] | None = None) -> str:
        part = part or "key"
        name = self.ring.shared.name(
            f"aiogram-{part}", key.bot_id, key.business_connection_id, key.chat_id,
            key.user_id, key.thread_id, key.destiny,
        )
        return f"{self.prefix}{part}:{name}"


class PseudonymousEventIsolation(RedisEventIsolation):
    """aiogram's :class:`RedisEventIsolation` (a user's updates one at a time, across
    replicas) with pseudonymous lock names, and a lease: the lock lives ``lease`` seconds
    and is renewed every third of that while its update runs, so a replica killed while
    holding it frees the user within ``lease`` seconds."""

    def __init__(
        self, redis: Redis, ring: HasSharedKey, *, prefix: str = DEFAULT_PREFIX, lease: float = 15.0
    ) -> None:
        super().__init__(
            redis,
            key_builder=PseudonymKeyBuilder(ring, prefix),
            lock_kwargs={"timeout": lease, "sleep": 0.02},
        )
        self.lease = lease

    @contextlib.asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        async with self.redis.lock(name=name, **self.lock_kwargs, lock_class=Lock) as held:
            renewal = asyncio.create_task(self._renew(held))
            try:
                yield None
            finally:
                renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewal

    async def _renew(self, held: Lock) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await held.reacquire()
            except (RedisError, LockError, OSError) as exc:
                log.warning("per-user lock not renewed (%s)", type(exc).__name__)


__all__ = [
    "PseudonymKeyBuilder",
    "PseudonymousEventIsolation",
    "RedisAttemptCounts",
    "RedisReceipts",
    "RedisRestartNotice",
    "RedisSafetyReads",
    "RedisSessionKeys",
    "RedisThrottle",
    "RedisUpdateMarks",
    "case_from_bytes",
    "case_to_bytes",
]
