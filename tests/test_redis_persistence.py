"""Issue 12: the bot refuses a Redis that writes to disk, at start and while it runs; TLS and
ACL users; a clear error when Redis cannot be reached. Every server here is the test's own
``redis-server`` (never the machine's shared one is reconfigured)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from nazaha.bot.settings import Settings
from nazaha.bot.shared_state import guard_persistence, open_shared_state
from nazaha.storage.redis_link import (
    Persistence,
    RedisPersists,
    check_persistence,
    evidence_from_info,
    from_config,
    read_persistence,
    redacted,
    refusal,
)
from tests.redis_support import OwnRedis, free_port, wait_for

PASSWORD = "s3cret-" + secrets.token_hex(8)
BOT_ACL = "~nazaha:* resetchannels +@all -@dangerous +info +config|get"


@pytest.fixture
def own_redis(tmp_path):
    servers: list[OwnRedis] = []

    def start(*args: str) -> OwnRedis:
        server = OwnRedis(tmp_path / f"redis-{len(servers)}", *args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


async def config_calls(redis) -> int:
    """How many CONFIG commands the server has run (the guard's checks)."""
    return int((await redis.info("commandstats")).get("cmdstat_config|get", {}).get("calls", 0))


def settings_for(url: str, **extra) -> Settings:
    return Settings(_env_file=None, redis_url=SecretStr(url), **extra)


# -- reading persistence (pure) --------------------------------------------------------------


def test_config_and_info_are_read_conservatively():
    assert from_config("", "no").persists is False
    assert from_config("3600 1 300 100", "no").persists is True
    assert from_config("", "yes").persists is True
    assert "RDB snapshots (save 3600 1 300 100)" in from_config("3600  1 300 100", "no").describe()
    quiet = {"aof_enabled": 0, "rdb_bgsave_in_progress": 0, "rdb_saves": 0, "rdb_last_bgsave_time_sec": -1,
             "rdb_last_load_keys_loaded": 0, "role": "master", "connected_slaves": 0}
    assert evidence_from_info(quiet) == ()
    for field, value in (("aof_enabled", 1), ("rdb_bgsave_in_progress", 1), ("rdb_saves", 2),
                         ("rdb_last_bgsave_time_sec", 0), ("rdb_last_load_keys_loaded", 5),
                         ("connected_slaves", 1), ("role", "slave"), ("aof_rewrite_in_progress", 1)):
        assert evidence_from_info({**quiet, field: value}), field
    # CONFIG refused and nothing in INFO: it cannot be ruled out, so it is refused.
    unknown = Persistence(evidence=())
    assert unknown.persists is None
    assert "CONFIG GET" in refusal(unknown, accept=False)
    assert refusal(unknown, accept=True) is None
    assert refusal(Persistence(save="", appendonly=False), accept=False) is None
    message = refusal(Persistence(save="60 1", appendonly=True), accept=False)
    assert "persists to disk" in message and "NAZAHA_REDIS_ACCEPT_PERSISTENCE=1" in message


def test_the_address_is_shown_without_credentials():
    assert redacted(f"rediss://nazaha:{PASSWORD}@redis.internal:6380/2") == "rediss://redis.internal:6380/2"
    assert redacted("redis://127.0.0.1") == "redis://127.0.0.1:6379/0"


# -- real servers -------------------------------------------------------------------------------


async def test_a_server_with_snapshots_or_aof_is_refused(own_redis):
    for args, found in ((("--save", "60 1"),), "RDB snapshots (save 60 1)"), ((("--appendonly", "yes"),), "AOF"):
        server = own_redis(*args[0])
        redis = server.client()
        try:
            with pytest.raises(RedisPersists) as refused:
                await check_persistence(redis, accept=False)
            assert found in str(refused.value)
            assert (await check_persistence(redis, accept=True)).persists is True
        finally:
            await redis.aclose()


async def test_a_quiet_server_passes_until_a_snapshot_is_made(own_redis):
    server = own_redis()
    redis = server.client()

    async def snapshot_done() -> bool:
        return int((await redis.info("persistence"))["rdb_bgsave_in_progress"]) == 0

    try:
        assert (await check_persistence(redis, accept=False)).persists is False
        await redis.set("x", "1")
        await redis.bgsave()  # someone wrote a dump by hand: it reached the disk
        await wait_for(snapshot_done)
        with pytest.raises(RedisPersists, match="snapshot"):
            await check_persistence(redis, accept=False)
    finally:
        await redis.aclose()


async def test_a_user_without_config_is_judged_by_info(own_redis):
    server = own_redis()
    admin = server.client()
    await admin.execute_command("ACL", "SETUSER", "nazaha", "on", f">{PASSWORD}", "~*", "&*", "+@all", "-config")
    bot = server.client(username="nazaha", password=PASSWORD)
    try:
        persistence = await read_persistence(bot)
        assert persistence.save is None and persistence.persists is None
        with pytest.raises(RedisPersists, match=r"\+config\|get"):
            await check_persistence(bot, accept=False)
        await admin.execute_command("ACL", "SETUSER", "nazaha", "+config|get")
        assert (await check_persistence(bot, accept=False)).persists is False
        await admin.execute_command("ACL", "SETUSER", "nazaha", "-config")
        await admin.config_set("appendonly", "yes")  # INFO alone shows AOF
        with pytest.raises(RedisPersists, match="aof_enabled"):
            await check_persistence(bot, accept=False)
    finally:
        await bot.aclose()
        await admin.aclose()


async def test_persistence_switched_on_while_running_stops_the_bot(own_redis):
    server = own_redis()
    shared = await open_shared_state(settings_for(server.url), secrets.token_bytes(32))
    refused: list[str] = []
    guard = asyncio.create_task(guard_persistence(shared, 0.05, refused.append))
    admin = server.client()
    try:
        before = await config_calls(admin)

        async def checked_a_few_times() -> bool:
            return await config_calls(admin) >= before + 6

        await wait_for(checked_a_few_times)
        assert not guard.done() and refused == []  # checked, nothing to refuse
        await admin.config_set("save", "60 1")
        await wait_for(lambda: guard.done())
        assert len(refused) == 1 and "RDB snapshots (save 60 1)" in refused[0]
    finally:
        guard.cancel()
        await admin.aclose()
        await shared.close()


async def test_accepted_persistence_keeps_running(own_redis):
    server = own_redis("--appendonly", "yes")
    with pytest.raises(SystemExit, match="persists to disk: AOF"):
        await open_shared_state(settings_for(server.url), secrets.token_bytes(32))
    shared = await open_shared_state(
        settings_for(server.url, redis_accept_persistence=True), secrets.token_bytes(32)
    )
    refused: list[str] = []
    guard = asyncio.create_task(guard_persistence(shared, 0.01, refused.append))
    try:
        async def checked_a_few_times() -> bool:
            return await config_calls(shared.redis) >= 10

        await wait_for(checked_a_few_times)
        assert not guard.done() and refused == []
    finally:
        guard.cancel()
        await shared.close()


async def test_unreachable_redis_is_a_clear_refusal_without_the_password(own_redis):
    port = free_port()  # nothing listens there
    with pytest.raises(SystemExit) as refused:
        await open_shared_state(settings_for(f"redis://nazaha:{PASSWORD}@127.0.0.1:{port}/3"), secrets.token_bytes(32))
    message = str(refused.value)
    assert f"Redis at redis://127.0.0.1:{port}/3 is unavailable" in message and PASSWORD not in message
    server = own_redis("--requirepass", PASSWORD)
    with pytest.raises(SystemExit) as refused:  # wrong credentials
        await open_shared_state(settings_for(f"redis://default:wrong@127.0.0.1:{server.port}/0"), secrets.token_bytes(32))
    assert "unavailable" in str(refused.value) and "wrong" not in str(refused.value)
    with pytest.raises(SystemExit, match="rediss://"):
        await open_shared_state(settings_for(server.url, redis_ca_file="/etc/ssl/ca.pem"), secrets.token_bytes(32))


async def test_the_update_fails_while_redis_is_down_and_works_when_it_is_back(own_redis):
    """At run time an unreachable Redis raises (the update fails and is delivered again)
    instead of being answered as handled; the ring's beat restores the key's record."""
    from aiogram.fsm.storage.base import StorageKey

    from nazaha.storage.redis_fsm import RedisFsmStorage
    from nazaha.storage.redis_link import SHARED_STATE_ERRORS

    server = own_redis()
    shared = await open_shared_state(settings_for(server.url), secrets.token_bytes(32))
    storage = RedisFsmStorage(shared.redis, shared.ring)
    key = StorageKey(bot_id=1, chat_id=2, user_id=2)
    try:
        await storage.set_data(key, {"d": 1})
        server.stop()
        with pytest.raises(SHARED_STATE_ERRORS):
            await storage.get_data(key)
        server.start()  # the same port; without persistence it comes back empty
        assert await storage.get_data(key) == {}
        await shared.ring.beat()
        assert await shared.redis.get("nazaha:ring:epoch") == shared.ring.shared.epoch.encode()
    finally:
        await shared.close()


# -- TLS and an ACL user in the URL ------------------------------------------------------------


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nazaha test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


async def test_tls_with_a_ca_file_and_an_acl_user_in_the_url(own_redis, tmp_path):
    ca, cert, key = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = own_redis(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        # The ACL docs/deployment.md recommends: its keys only, nothing dangerous but the
        # two reads the persistence check needs.
        "--user", "nazaha", "on", f">{PASSWORD}", *BOT_ACL.split(),
        "--user", "default", "off",
    )
    url = f"rediss://nazaha:{PASSWORD}@127.0.0.1:{tls_port}/0"
    shared = await open_shared_state(settings_for(url, redis_ca_file=str(ca)), secrets.token_bytes(32))
    try:
        assert shared.ring.fresh and shared.where == f"rediss://127.0.0.1:{tls_port}/0"
        assert await shared.redis.get("nazaha:ring:epoch") == shared.ring.shared.epoch.encode()
        # Everything the bot does works under that ACL: a conversation, its lock, the purge.
        from aiogram.fsm.storage.base import StorageKey

        from nazaha.handlers.redis_memory import PseudonymousEventIsolation, RedisThrottle
        from nazaha.storage.redis_fsm import RedisFsmStorage

        key = StorageKey(bot_id=1, chat_id=2, user_id=2)
        storage = RedisFsmStorage(shared.redis, shared.ring)
        async with PseudonymousEventIsolation(shared.redis, shared.ring).lock(key):
            await storage.set_data(key, {"d": 1})
        assert await storage.get_data(key) == {"d": 1} and await storage.purge_expired() == 0
        assert await RedisThrottle(shared.redis, shared.ring, 1.0, 2).allow(2) == (True, False)
        assert await shared.ring.leave() is True  # the last one: the key's record goes
    finally:
        await shared.close()
    other_ca, _, _ = make_tls_files(tmp_path / "other")
    with pytest.raises(SystemExit, match="unavailable"):  # a server the CA did not sign
        await open_shared_state(settings_for(url, redis_ca_file=str(other_ca)), secrets.token_bytes(32))
    with pytest.raises(SystemExit, match="unavailable"):  # the plain port refuses the default user
        await open_shared_state(settings_for(f"redis://127.0.0.1:{server.port}/0"), secrets.token_bytes(32))
