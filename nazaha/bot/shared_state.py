"""The bot's Redis at start-up and while it runs (``NAZAHA_REDIS_URL``, issue 12).

At start (:func:`open_shared_state`): connect (TLS and credentials from the settings), refuse
with a clear message if Redis is unreachable or writes to disk (unless accepted), then join
the replicas' ring (the memory-only key). While running (:func:`guard_persistence`): check
the persistence again every ``NAZAHA_REDIS_CHECK_SECONDS``; if Redis now writes to disk, log
it and stop the bot (``on_refused``), so that nothing more is kept there and the shared key
leaves memory with the last process (what a snapshot holds then opens for no one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from nazaha.bot.settings import Settings
from nazaha.storage.redis_link import (
    RedisPersists,
    RedisUnavailable,
    check_persistence,
    connect,
    eviction_policy,
    ping,
    redacted,
)
from nazaha.storage.redis_ring import RedisRing, RingUnavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SharedState:
    """The client, this process's ring membership (beating from the moment it joined, so
    that a slow start-up does not let the key's record lapse) and where Redis is (no
    credentials)."""

    redis: Redis
    ring: RedisRing
    where: str
    accept_persistence: bool
    beating: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop beating, leave the ring (the last process deletes the key's record), close
        the pool."""
        if self.beating is not None:
            self.beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.beating
        try:
            await self.ring.leave()
        finally:
            await self.redis.aclose()


async def open_shared_state(settings: Settings, bot_key: bytes) -> SharedState:
    """Connect, check and join; ``SystemExit`` with the reason when Redis is unreachable,
    persists (not accepted) or no running replica hands over the shared key."""
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    try:
        where = redacted(url)
        redis = connect(
            url,
            ca_file=settings.redis_ca_file,
            cert_file=settings.redis_cert_file,
            key_file=settings.redis_key_file,
        )
    except ValueError as exc:
        raise SystemExit(f"NAZAHA_REDIS_URL: {exc}") from None
    try:
        await ping(redis, where)
        persistence = await check_persistence(redis, accept=settings.redis_accept_persistence)
        if persistence.persists is not False:
            log.warning(
                "Redis at %s: %s; accepted (NAZAHA_REDIS_ACCEPT_PERSISTENCE)", where, persistence.describe()
            )
        policy = await eviction_policy(redis)
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis at %s evicts keys when full (maxmemory-policy %s): conversations could "
                "be lost without a word; set maxmemory-policy noeviction", where, policy,
            )
        ring = RedisRing(redis, bot_key)
        await ring.join()
    except (RedisUnavailable, RedisPersists, RingUnavailable) as exc:
        await redis.aclose()
        raise SystemExit(str(exc)) from None
    except (RedisError, OSError) as exc:
        await redis.aclose()
        raise SystemExit(f"Redis at {where} is unavailable ({type(exc).__name__})") from None
    log.info("shared state in Redis at %s", where)
    shared = SharedState(redis, ring, where, settings.redis_accept_persistence)
    shared.beating = asyncio.create_task(ring.run())
    return shared


async def guard_persistence(
    shared: SharedState, interval: float, on_refused: Callable[[str], None]
) -> None:
    """Every ``interval`` seconds: if Redis now writes to disk (and that is not accepted),
    log why and call ``on_refused(message)`` once, then return. An unreachable Redis is
    logged (by error type) and checked again next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            await check_persistence(shared.redis, accept=shared.accept_persistence)
        except RedisPersists as exc:
            log.error("%s. Stopping the bot.", exc)
            on_refused(str(exc))
            return
        except (RedisError, OSError) as exc:
            log.warning("Redis persistence check failed (%s)", type(exc).__name__)


__all__ = ["SharedState", "guard_persistence", "open_shared_state"]
