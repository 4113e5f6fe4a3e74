"""Redis for the tests (issue 12): the machine's Redis on 127.0.0.1:6379, database 15 only
(flushed by the fixture), skipped when it is not running locally (CI runs it); and Redis
servers of a test's own (``/usr/bin/redis-server`` on a free port in a tmp dir) for what must
not touch the shared one: persistence switched on, a server stopped mid-run, TLS and ACLs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from nazaha.storage.crypto import SharedStateKey

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15
REDIS_TEST_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class FixedRing:
    """A stand-in for :class:`RedisRing` in unit tests: one shared key, no Redis traffic."""

    def __init__(self) -> None:
        self.shared = SharedStateKey.generate()
        self.fresh = True


async def shared_redis_or_skip() -> Redis:
    """A client of database 15 of the machine's Redis, flushed; skip if it is not running."""
    redis = Redis.from_url(REDIS_TEST_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        await redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        await redis.aclose()
        pytest.skip(f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {type(exc).__name__}")
    await redis.flushdb()
    return redis


@contextlib.asynccontextmanager
async def shared_redis() -> AsyncIterator[Redis]:
    """Database 15 of the machine's Redis, empty, flushed again afterwards (or a skip)."""
    redis = await shared_redis_or_skip()
    try:
        yield redis
    finally:
        await redis.flushdb()
        await redis.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A ``redis-server`` of the test's own, on a free port, in ``directory``. ``args`` are
    extra server arguments (e.g. ``("--save", "60 1")``); the default is no persistence."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        if not os.path.exists(REDIS_SERVER):
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        has_save = "--save" in self.args
        self.process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), *(() if has_save else ("--save", "")),
                "--appendonly", "no", *self.args,
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("redis-server did not start:\n" + (self.directory / "redis.log").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def client(self, **kwargs) -> Redis:
        return Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2, **kwargs)


async def wait_for(condition, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll ``condition`` (sync or async) until true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
