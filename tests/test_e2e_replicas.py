"""End to end: two `nazaha bot --webhook` replicas behind the sandbox (issue 12).

The sandbox stands in for Telegram and for the reverse proxy in front of the replicas: it
delivers round robin to both (``set_webhook_delivery``), a retry going to the next one. The
replicas share one data dir (SQLite in WAL mode) and, when redis-server is installed, the
test's own Redis: drafts, follow-up sessions and the duplicate pre-check are shared through
it (the report across both replicas needs it and is skipped without it).

Covered: the secret token; ``/healthz`` and ``/readyz`` (the database file gone, Redis
stopped); the 200 only after the commit and before the replies (a replica killed between the
two: the update is not delivered again, its effect stays, its reply is lost); SIGTERM during
a burst (what was in progress finishes, what was not yet taken is answered 503 and goes to
the other replica; every user answered exactly once).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import TOKEN, BotProcess, Chat, run_init

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MENU = "What would you like to do?"
NEEDS_SHARED_DRAFTS = "redis-server is not installed: the replicas cannot share drafts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server of this test's own (never the machine's), without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        from redis.asyncio import Redis

        for _ in range(500):
            client = Redis.from_url(self.url, socket_connect_timeout=0.2)
            try:
                if await client.ping():
                    return
            except Exception:
                await asyncio.sleep(0.02)
            finally:
                await client.aclose()
        raise AssertionError("the test's redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Replica:
    def __init__(self, name: str, tmp: Path, server: SandboxServer, public_url: str, secret: str,
                 port: int, **env: str) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self.base = f"http://127.0.0.1:{self.port}"
        self.bot = BotProcess(
            tmp / "var", server.url, tmp / f"bot-{name}.log",
            {
                "NAZAHA_WEBHOOK_URL": public_url,
                "NAZAHA_WEBHOOK_SECRET": secret,
                "NAZAHA_WEBHOOK_HOST": "127.0.0.1",
                "NAZAHA_WEBHOOK_PORT": str(self.port),
                **env,
            },
        )
        self.bot.args = ("--webhook",)

    def log(self) -> str:
        return self.bot.log_path.read_text(errors="replace")


class Cluster:
    def __init__(self, tmp: Path, server: SandboxServer, client: SandboxClient, redis: OwnRedis | None) -> None:
        self.tmp = tmp
        self.server = server
        self.client = client
        self.redis = redis
        self.secret = secrets.token_urlsafe(24)
        env = {"NAZAHA_REDIS_URL": redis.url} if redis is not None else {}
        port_a = free_port()
        # Both replicas give setWebhook the same public URL, as behind a reverse proxy (the
        # sandbox's delivery settings stand in for the proxy).
        public = f"http://127.0.0.1:{port_a}/webhook"
        self.a = Replica("a", tmp, server, public, self.secret, port_a, **env)
        self.b = Replica("b", tmp, server, public, self.secret, free_port(), **env)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "var"

    async def deliver_to(self, *replicas: Replica, mode: str = "round_robin", concurrency: int = 1) -> None:
        await self.client.set_webhook_delivery([r.url for r in replicas], mode=mode, concurrency=concurrency)

    async def drained(self, timeout: float = 60.0) -> None:
        """Wait until the sandbox has no update left to deliver."""
        for _ in range(int(timeout * 20)):
            if (await self.client.bot_info())["pending_updates"] == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("updates still pending")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    redis = OwnRedis(tmp / "redis") if shutil.which("redis-server") else None
    if redis is not None:
        await redis.start()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        c = Cluster(tmp, server, client, redis)
        run_init(c.data_dir, server.url)
        try:
            await c.a.bot.launch()
            await c.b.bot.launch()
            # Each replica serves once before the tests start (its first update can be
            # slow on a busy machine).
            for replica in (c.a, c.b):
                await c.deliver_to(replica)
                warm = await Chat.open(client, "en")
                await warm.send("/start")
                await warm.expect(MENU, timeout=90)
            await c.deliver_to(c.a, c.b)
            yield c
        finally:
            c.a.bot.stop()
            c.b.bot.stop()
            await client.close()
            if redis is not None:
                redis.stop()


async def get_json(url: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, **kwargs) as response:
            return response.status, await response.json()


async def post(url: str, body: dict, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as response:
            await response.read()
            return response.status


async def test_a_conversation_without_drafts_goes_round_robin_across_replicas(cluster: Cluster):
    chat = await Chat.open(cluster.client, "en")
    for text in ("/start", "/help", "/safety", "/start"):
        await chat.send(text)
        await chat.expect("")
    await cluster.drained()
    posts = [e for e in await cluster.client.webhook_log() if e["status"] == 200]
    assert {e["url"] for e in posts[-4:]} == {cluster.a.url, cluster.b.url}
    assert len([m for m in await chat.messages() if m["from_bot"] and MENU in (m["text"] or "")]) == 2


async def test_an_album_over_a_webhook_is_answered_once(cluster: Cluster):
    """Telegram sends a chat's next update only once the previous one is answered: each file
    of an album is confirmed as soon as it is gathered, so the album's files all arrive
    within its quiet period and are answered together (here: the menu, once). (One replica:
    the files of an album that land on two replicas are gathered by each apart; see
    docs/deployment.md.)"""
    await cluster.deliver_to(cluster.a)
    chat = await Chat.open(cluster.client, "en")
    await chat.send("/start")
    await chat.expect(MENU)
    sent = await cluster.client.send_media_group(chat.user_id, [{"kind": "photo"}] * 3)
    chat.last_seen = max(item["message_id"] for item in sent)
    await chat.expect(MENU)
    await cluster.drained()
    assert len(await chat.bot_messages_since(chat.last_seen)) == 1
    await cluster.deliver_to(cluster.a, cluster.b)


async def test_a_wrong_secret_is_refused_and_nothing_is_read(cluster: Cluster):
    chat = await Chat.open(cluster.client, "en")
    forged = {"update_id": 990_001, "message": {
        "message_id": 1, "date": 0, "text": "/start", "chat": {"id": chat.user_id, "type": "private"},
        "from": {"id": chat.user_id, "is_bot": False, "first_name": "X"}}}
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"},
                    {"X-Telegram-Bot-Api-Secret-Token": cluster.secret[:-1]}):
        assert await post(cluster.a.url, forged, headers) == 401
    assert await cluster.client.calls("sendMessage", chat_id=chat.user_id) == []
    assert cluster.secret not in cluster.a.log() and cluster.secret not in cluster.b.log()


async def test_health_and_readiness_report_the_database_and_redis(cluster: Cluster):
    for replica in (cluster.a, cluster.b):
        assert await get_json(f"{replica.base}/healthz") == (200, {"status": "ok"})
        status, body = await get_json(f"{replica.base}/readyz")
        assert status == 200 and body["checks"]["database"] == "ok", body
    database = cluster.data_dir / "nazaha.db"
    away = cluster.data_dir / "nazaha.db.away"
    database.rename(away)
    try:
        status, body = await get_json(f"{cluster.a.base}/readyz")
        assert status == 503 and body["checks"]["database"].startswith("failed"), body
        assert not database.exists()  # the probe never creates an empty database
    finally:
        away.rename(database)
    assert (await get_json(f"{cluster.a.base}/readyz"))[0] == 200
    if cluster.redis is None:
        pytest.skip("redis-server is not installed: the Redis probe is not exercised")
    status, body = await get_json(f"{cluster.b.base}/readyz")
    assert body["checks"]["redis"] == "ok"
    cluster.redis.stop()
    try:
        status, body = await get_json(f"{cluster.b.base}/readyz")
        assert status == 503 and body["checks"]["redis"].startswith("failed"), body
    finally:
        await cluster.redis.start()  # the same port again
    assert (await get_json(f"{cluster.b.base}/readyz"))[0] == 200


async def test_a_report_across_two_replicas(cluster: Cluster):
    """A report whose consecutive updates land on both replicas completes, description and
    evidence included; a replica killed mid-conversation loses nothing (the user continues
    on the other); an update delivered to both replicas is processed once. Needs the drafts
    and the dedup pre-check shared through Redis (the fixture gives both replicas the test's
    own redis-server when it is installed)."""
    if cluster.redis is None:
        pytest.skip(NEEDS_SHARED_DRAFTS)
    from tests.test_e2e_bot import DESCRIPTION
    from tests.test_e2e_resilience import walk_to_description

    await cluster.deliver_to(cluster.a, cluster.b)
    chat = await Chat.open(cluster.client, "en")
    await walk_to_description(chat)
    await chat.send(DESCRIPTION)
    await chat.expect("characters so far")
    cluster.b.bot.kill()  # mid-conversation: what comes next goes to A
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.send_kind("photo", content=b"\x89PNG evidence")
    await chat.expect("")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your report")
    await cluster.b.bot.launch()
    # The "Send" press reaches both replicas: one report, one receipt.
    await cluster.deliver_to(cluster.a, cluster.b, mode="all")
    await chat.press("Send the report")
    await chat.expect("Your receipt number:")
    await cluster.drained()
    receipts = [m for m in await chat.messages() if m["from_bot"] and "Your receipt number:" in (m["text"] or "")]
    assert len(receipts) == 1
    with sqlite3.connect(cluster.data_dir / "nazaha.db") as db:
        assert db.execute("SELECT count(*) FROM reports").fetchone() == (1,)
    other = await Chat.open(cluster.client, "en")
    await other.send("/start")
    await other.expect(MENU)
    await cluster.drained()
    menus = [m for m in await other.messages() if m["from_bot"] and MENU in (m["text"] or "")]
    assert len(menus) == 1  # an ordinary step reached both replicas and was answered once
    await cluster.deliver_to(cluster.a, cluster.b)


async def test_the_200_comes_after_the_commit_and_a_kill_before_the_reply_loses_only_the_reply(
        cluster: Cluster):
    """Replica B commits a language choice and answers 200, then waits out a 429 to reply:
    killed then, its update is not delivered again (Telegram has forgotten it), the choice
    stays, and the reply in flight is lost (the user sees no confirmation)."""
    chat = await Chat.open(cluster.client, "ar")
    await cluster.deliver_to(cluster.b)
    await chat.send("/language")
    picker = await chat.expect("")  # "Choose your language:", in Arabic
    await cluster.client.add_fault("answerCallbackQuery", 429, count=5, retry_after=25)
    pressed = await cluster.client.press(chat.user_id, picker["message_id"], "l:en")
    update_id = pressed["update_id"]
    for _ in range(1200):
        log = [e for e in await cluster.client.webhook_log() if e["update_id"] == update_id]
        refused = [c for c in await cluster.client.calls("answerCallbackQuery") if c["error_code"] == 429]
        if log and refused:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("replica b never answered the press")
    # Answered 200 (committed) while the first reply still waits out its 429.
    assert [(e["url"], e["status"]) for e in log] == [(cluster.b.url, 200)]
    assert await chat.bot_messages_since(picker["message_id"]) == []
    cluster.b.bot.kill()
    await cluster.client.clear_faults()
    await cluster.deliver_to(cluster.a)
    await cluster.drained()
    await chat.send("/start")
    await chat.expect(MENU)  # in English: the choice was committed before the 200
    log = [e for e in await cluster.client.webhook_log() if e["update_id"] == update_id]
    assert len(log) == 1  # never delivered again
    texts = [m["text"] for m in await chat.bot_messages_since(picker["message_id"])]
    assert not any("Language set to English." in (t or "") for t in texts)  # the lost reply
    await cluster.b.bot.launch()
    await cluster.deliver_to(cluster.a, cluster.b)


async def test_sigterm_during_a_burst_finishes_or_hands_back_every_update(cluster: Cluster):
    """Replica A is stopped with SIGTERM while replies of its updates wait out 429s and more
    updates keep coming: it takes no new update (503: the sandbox sends those to B), lets
    those in progress finish, and exits cleanly. Every user is answered exactly once."""
    cluster.a.bot.extra_env["NAZAHA_SHUTDOWN_GRACE_SECONDS"] = "60"
    await cluster.deliver_to(cluster.a, cluster.b, concurrency=6)
    chats = [await Chat.open(cluster.client, "en") for _ in range(12)]
    await cluster.client.add_fault("sendMessage", 429, count=6, retry_after=2)
    sent = await asyncio.gather(*(cluster.client.send_text(chat.user_id, "/start") for chat in chats))
    owner = {s["update_id"]: chat for s, chat in zip(sent, chats)}
    # Wait until a reply to an update that A took is waiting out a 429.
    for _ in range(1200):
        to_a = {e["update_id"] for e in await cluster.client.webhook_log()
                if e["url"] == cluster.a.url and e["status"] == 200 and e["update_id"] in owner}
        waiting = {c["chat_id"] for c in await cluster.client.calls("sendMessage") if c["error_code"] == 429}
        in_flight = [u for u in to_a if owner[u].user_id in waiting]
        if in_flight:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no reply of replica a waited out a 429")
    process = cluster.a.bot.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 90) == 0
    await cluster.drained()
    for chat in chats:
        await chat.expect(MENU)
    for chat in chats:
        menus = [m for m in await chat.messages() if m["from_bot"] and MENU in (m["text"] or "")]
        assert len(menus) == 1
    # The update in flight at the signal finished on A; whatever A refused went to B.
    log = await cluster.client.webhook_log()
    for update_id in owner:
        answered = [e for e in log if e["update_id"] == update_id and e["status"] == 200]
        assert len(answered) == 1
        refused = [e for e in log if e["update_id"] == update_id and e["status"] in (500, 503)]
        assert all(e["url"] == cluster.a.url for e in refused)
    assert "stopping: new updates are refused" in cluster.a.log()
