"""The bot's Redis (issue 12, ``NAZAHA_REDIS_URL``): connecting, and refusing one that
writes what it holds to disk.

Redis holds what the bot otherwise keeps in process memory only (drafts, follow-up
sessions, counters: docs/security.md). Everything there is named and sealed under a key
that only the running bot processes hold (:mod:`nazaha.storage.redis_ring`), but what never
reaches a disk cannot be carved from one: the bot refuses a Redis that snapshots (RDB) or
logs (AOF) to disk, or that copies its data to replicas, unless the operator accepts it
(``NAZAHA_REDIS_ACCEPT_PERSISTENCE``), and checks again every minute while it runs.

How persistence is read: ``CONFIG GET save`` / ``CONFIG GET appendonly`` when the Redis user
may (grant ``+config|get``); in any case ``INFO persistence`` and ``INFO replication`` for
evidence that data reached a disk or a replica since Redis started (a snapshot made, one in
progress, AOF on, data loaded from a file at start, a connected replica). When CONFIG is
refused and INFO shows nothing, persistence cannot be ruled out: that is refused too.

Errors and log lines name the host and port only, never the URL's user or password.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# How long a command may take before the update fails (seconds).
DEFAULT_TIMEOUT = 5.0

# Redis could not be reached while handling an update: it must not be answered or counted as
# handled; it fails with the error, so that Telegram delivers it again (webhook: no 200).
SHARED_STATE_ERRORS = (RedisConnectionError, RedisTimeoutError, LockError)


class RedisUnavailable(Exception):
    """Redis cannot be reached (or refuses the credentials); the message is safe to show."""


class RedisPersists(Exception):
    """Redis writes to disk (or may) and the operator did not accept it; safe to show."""


def redacted(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL: no user name, no password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{db}"


def connect(
    url: str,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Redis:
    """A client (connection pool) for ``url``: ``redis://[user:password@]host:port/db`` or
    ``rediss://`` for TLS, verified against ``ca_file`` (else the system's CAs), with an
    optional client certificate (``cert_file``/``key_file``). Values are bytes.
    ``ValueError`` for TLS files with a plain ``redis://`` URL. Nothing is sent yet."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise ValueError("NAZAHA_REDIS_URL must start with redis:// or rediss://")
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
    }
    tls_files = {"ssl_ca_certs": ca_file, "ssl_certfile": cert_file, "ssl_keyfile": key_file}
    if any(tls_files.values()):
        if scheme != "rediss":
            raise ValueError("Redis TLS files need a rediss:// URL")
        options.update({k: v for k, v in tls_files.items() if v})
    return Redis.from_url(url, **options)


async def ping(redis: Redis, where: str) -> None:
    """:class:`RedisUnavailable` (with the error's type and ``where``) unless Redis answers."""
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(
            f"Redis at {where} is unavailable ({type(exc).__name__}): the bot needs it "
            "when NAZAHA_REDIS_URL is set (check the address, TLS files and credentials)"
        ) from None


@dataclasses.dataclass(frozen=True)
class Persistence:
    """What is known of a Redis's persistence.

    ``save``: the RDB save points ("" for none; None if CONFIG could not be read);
    ``appendonly``: AOF on (None: unknown); ``evidence``: what INFO shows of data written
    to disk or sent to replicas since Redis started (human-readable, no secrets)."""

    save: str | None = None
    appendonly: bool | None = None
    evidence: tuple[str, ...] = ()

    @property
    def config_known(self) -> bool:
        return self.save is not None and self.appendonly is not None

    @property
    def persists(self) -> bool | None:
        """True: it writes to disk (or a replica); False: it does not; None: cannot tell."""
        if self.evidence or self.save or self.appendonly:
            return True
        return False if self.config_known else None

    def describe(self) -> str:
        """What was found, for the operator (e.g. "RDB snapshots (save 3600 1)")."""
        found = []
        if self.save:
            found.append(f"RDB snapshots (save {self.save})")
        if self.appendonly:
            found.append("AOF (appendonly yes)")
        found.extend(e for e in self.evidence if not (self.appendonly and e.startswith("AOF")))
        if not found and not self.config_known:
            found.append("CONFIG GET is not allowed for this Redis user and INFO shows nothing")
        return "; ".join(found) or "no persistence"


def from_config(save: str, appendonly: str) -> Persistence:
    """From ``CONFIG GET save`` and ``CONFIG GET appendonly``."""
    return Persistence(save=" ".join(save.split()), appendonly=appendonly.strip().lower() == "yes")


def _int(info: Mapping[str, Any], field: str) -> int:
    try:
        return int(info.get(field, 0))
    except (TypeError, ValueError):
        return 0


def evidence_from_info(info: Mapping[str, Any]) -> tuple[str, ...]:
    """Evidence of persistence in ``INFO persistence`` + ``INFO replication`` fields:
    AOF on, a snapshot since start (``rdb_saves``, Redis 7+; ``rdb_last_bgsave_time_sec``
    otherwise), one in progress, keys loaded from a file at start, connected replicas."""
    found = []
    if _int(info, "aof_enabled"):
        found.append("AOF (aof_enabled:1)")
    if _int(info, "rdb_bgsave_in_progress"):
        found.append("an RDB snapshot in progress")
    bgsave_seconds = _int(info, "rdb_last_bgsave_time_sec") if "rdb_last_bgsave_time_sec" in info else -1
    if _int(info, "rdb_saves") > 0 or bgsave_seconds >= 0:
        found.append("an RDB snapshot was written since Redis started")
    if _int(info, "aof_rewrite_in_progress"):
        found.append("an AOF rewrite in progress")
    if _int(info, "rdb_last_load_keys_loaded") > 0:
        found.append("Redis loaded its data from a file at start")
    if _int(info, "connected_slaves") > 0:
        found.append(f"{_int(info, 'connected_slaves')} connected replica(s), whose persistence is not checked")
    if info.get("role") not in (None, "master"):
        found.append("this Redis is a replica (its master's persistence is not checked)")
    return tuple(found)


async def read_persistence(redis: Redis) -> Persistence:
    """CONFIG when allowed, and INFO evidence in any case. Raises ``RedisError`` /
    ``OSError`` when Redis cannot be reached."""
    save: str | None = None
    appendonly: bool | None = None
    try:
        config = await redis.config_get("save")
        config.update(await redis.config_get("appendonly"))
        known = from_config(_text(config.get("save", "")), _text(config.get("appendonly", "no")))
        save, appendonly = known.save, known.appendonly
    except (NoPermissionError, ResponseError):
        pass  # CONFIG denied by an ACL, or renamed away: INFO alone
    info: dict[str, Any] = {}
    for section in ("persistence", "replication"):
        try:
            info.update(await redis.info(section))
        except (NoPermissionError, ResponseError):
            pass
    return Persistence(save=save, appendonly=appendonly, evidence=evidence_from_info(info))


def refusal(persistence: Persistence, *, accept: bool) -> str | None:
    """The message to refuse with, or None when this Redis may be used."""
    if accept or persistence.persists is False:
        return None
    what = "persists to disk" if persistence.persists else "may persist to disk"
    return (
        f"Redis {what}: {persistence.describe()}. Drafts and follow-up sessions must never "
        "reach a disk: turn persistence off (save \"\", appendonly no, no replicas), allow "
        "the bot's Redis user CONFIG GET (+config|get) if it is refused, or accept the risk "
        "with NAZAHA_REDIS_ACCEPT_PERSISTENCE=1 (docs/deployment.md, \"Redis\")"
    )


async def check_persistence(redis: Redis, *, accept: bool) -> Persistence:
    """Read the persistence; :class:`RedisPersists` with :func:`refusal`'s message if it
    must be refused. ``RedisError``/``OSError`` pass through (unreachable)."""
    persistence = await read_persistence(redis)
    message = refusal(persistence, accept=accept)
    if message is not None:
        raise RedisPersists(message)
    return persistence


async def eviction_policy(redis: Redis) -> str | None:
    """``maxmemory-policy`` (None if CONFIG GET is refused). Anything but ``noeviction``
    lets a full Redis drop conversations, locks or the replicas' key record silently."""
    try:
        config = await redis.config_get("maxmemory-policy")
    except (NoPermissionError, ResponseError):
        return None
    value = config.get("maxmemory-policy")
    return _text(value) if value is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "SHARED_STATE_ERRORS",
    "Persistence",
    "RedisPersists",
    "RedisUnavailable",
    "check_persistence",
    "connect",
    "eviction_policy",
    "evidence_from_info",
    "from_config",
    "ping",
    "read_persistence",
    "redacted",
    "refusal",
]
