"""End to end (issue 12): `nazaha bot` with NAZAHA_REDIS_URL against the sandbox.

A report and a follow-up with Redis holding the conversation (and no id or text in it);
a second process continuing a conversation after the first was killed; the refusal of a
Redis that writes to disk, at start and while running. The machine's Redis (database 15)
or a `redis-server` of the test's own; skipped when Redis is not running locally."""

from __future__ import annotations

import secrets

import pytest

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import RECEIPT_RE, TOKEN, BotProcess, find_plaintext, run_init
from tests.redis_support import REDIS_TEST_URL, OwnRedis, free_port, shared_redis_or_skip, wait_for
from tests.test_e2e_bot import DESCRIPTION, Deployment
from tests.test_e2e_followup import designations, open_chat, send_photo
from tests.test_redis_state import all_entries, assert_no_ids_or_text

pytestmark = [pytest.mark.e2e]

BOT_ID = TOKEN.split(":")[0]
CANARY = "CANARY-" + "rd5x" + " رشوة في مكتب الترخيص"


async def to_description(chat) -> None:
    await chat.send("/complaint")
    await chat.press("I understand, continue")
    await chat.press("Health")
    await chat.press("Bethlehem")
    await chat.expect("Describe what happened")


async def review_and_send(chat) -> str:
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    review = await chat.expect("Please check your complaint")
    assert CANARY in review["text"]  # the draft survived wherever it was kept
    await chat.press("Send the complaint")
    return RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)


def names(entries: dict[bytes, bytes], kind: str) -> list[bytes]:
    return [n for n in entries if n.startswith(f"nazaha:{kind}:".encode())]


async def test_a_report_and_a_follow_up_keep_no_id_or_text_in_redis(tmp_path):
    redis = await shared_redis_or_skip()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client, NAZAHA_REDIS_URL=REDIS_TEST_URL)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            chat = await open_chat(d)
            await to_description(chat)
            await chat.send(f"{DESCRIPTION} {CANARY}")
            await chat.expect("Received")
            await send_photo_after_done(chat)
            during = await all_entries(redis)
            # The draft is in Redis (one record, named by HMAC), the safety notice's read
            # mark, the handled updates' marks; sealed, and no id in any name or value.
            assert len(names(during, "fsm")) == 2  # the record and the due index
            assert names(during, "safety") and names(during, "update")
            assert_no_ids_or_text(during, chat.user_id, BOT_ID, CANARY[:12], "رشوة", DESCRIPTION[:20], "health")
            receipt = await review_and_send_from_evidence(chat)

            other = await open_chat(d)  # a follow-up from another account
            await other.send("/followup")
            await other.expect("Please type your receipt number")
            await other.send(receipt)
            await other.expect("Your complaint")
            [designation] = designations(d)
            after = await all_entries(redis)
            assert names(after, "session")  # the unlocked case, sealed
            assert_no_ids_or_text(
                after, chat.user_id, other.user_id, BOT_ID, CANARY[:12], receipt, receipt.replace(" ", ""),
                designation,
            )
            assert all(len(n.rsplit(b":", 1)[1]) == 64 for n in after if not n.startswith(b"nazaha:ring:")
                       and not n.endswith(b":due"))
            # Nothing of it reached the disk or the logs either.
            assert find_plaintext(CANARY[:12], [d.data_dir, d.bot.log_path]) == []
            assert receipt not in d.bot.log_path.read_text(errors="replace")
            d.bot.assert_alive()
        finally:
            d.bot.stop()
            await client.close()
            await redis.flushdb()
            await redis.aclose()


async def send_photo_after_done(chat) -> None:
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await send_photo(chat)


async def review_and_send_from_evidence(chat) -> str:
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    review = await chat.expect("Please check your complaint")
    assert CANARY in review["text"] and "1 file" in review["text"]
    await chat.press("Send the complaint")
    return RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)


async def test_a_second_process_continues_the_conversation_after_the_first_is_killed(tmp_path):
    redis = await shared_redis_or_skip()
    port = free_port()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client, NAZAHA_REDIS_URL=REDIS_TEST_URL)
        run_init(d.data_dir, server.url)
        second = BotProcess(
            d.data_dir, server.url, tmp_path / "second.log",
            {
                "NAZAHA_REDIS_URL": REDIS_TEST_URL,
                "NAZAHA_WEBHOOK_URL": f"http://127.0.0.1:{port}/webhook",
                "NAZAHA_WEBHOOK_SECRET": secrets.token_urlsafe(24),
                "NAZAHA_WEBHOOK_PORT": str(port),
            },
            args=("--webhook",),
        )
        await d.bot.launch()
        try:
            chat = await open_chat(d)
            await to_description(chat)
            await chat.send(f"{DESCRIPTION} {CANARY}")
            await chat.expect("Received")
            # A second process joins (it receives the shared key from the first) and takes
            # the updates over (its webhook); then the first dies without a word.
            await second.launch()
            await wait_for(lambda: "received from a running replica" in second.log_path.read_text(errors="replace"))

            async def webhook_set() -> bool:
                return bool((await client.bot_info())["webhook"]["url"])

            await wait_for(webhook_set, timeout=60)
            d.bot.kill()
            receipt = await review_and_send(chat)  # the draft, from Redis, on the second
            opened = await d.open_with_receipt(receipt)
            assert opened is not None and opened.designation == designations(d)[0]
            assert (await client.bot_info())["webhook_delivered"] >= 5
            second.assert_alive()
        finally:
            second.stop()
            d.bot.stop()
            await client.close()
            await redis.flushdb()
            await redis.aclose()


async def test_a_persisting_redis_is_refused_at_start_and_stops_a_running_bot(tmp_path):
    saving = OwnRedis(tmp_path / "saving", "--save", "60 1")
    quiet = OwnRedis(tmp_path / "quiet")
    saving.start()
    quiet.start()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client, NAZAHA_REDIS_URL=saving.url)
        run_init(d.data_dir, server.url)
        running = BotProcess(
            d.data_dir, server.url, tmp_path / "running.log",
            {"NAZAHA_REDIS_URL": quiet.url, "NAZAHA_REDIS_CHECK_SECONDS": "0.5"},
        )
        admin = quiet.client()
        try:
            d.bot.start()
            assert d.bot.process.wait(timeout=240) != 0
            log = d.bot.log_path.read_text(errors="replace")
            assert "Redis persists to disk: RDB snapshots (save 60 1)" in log
            assert "NAZAHA_REDIS_ACCEPT_PERSISTENCE=1" in log and "bot ready" not in log

            closed = free_port()  # and an unreachable one: a clear refusal, no password shown
            password = secrets.token_hex(12)
            d.bot.extra_env["NAZAHA_REDIS_URL"] = f"redis://nazaha:{password}@127.0.0.1:{closed}/4"
            d.bot.start()
            assert d.bot.process.wait(timeout=240) != 0
            log = d.bot.log_path.read_text(errors="replace")
            assert f"Redis at redis://127.0.0.1:{closed}/4 is unavailable (ConnectionError)" in log
            assert password not in log

            await running.launch()
            await admin.config_set("appendonly", "yes")

            def exited() -> bool:
                return running.process.poll() is not None

            await wait_for(exited, timeout=60)
            assert running.process.returncode != 0
            log = running.log_path.read_text(errors="replace")
            assert "Redis persists to disk: AOF (appendonly yes)" in log and "Stopping the bot" in log
        finally:
            d.bot.stop()
            running.stop()
            await admin.aclose()
            await client.close()
            saving.stop()
            quiet.stop()


async def test_while_redis_is_down_updates_fail_and_the_bot_recovers_without_a_restart(tmp_path):
    """With Redis stopped an update fails with a clear line (no reply, no apology, not
    counted as handled); once Redis is back (empty: it keeps nothing on disk) the same
    process serves again."""
    own = OwnRedis(tmp_path / "redis")
    own.start()
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client, NAZAHA_REDIS_URL=own.url)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            chat = await open_chat(d)
            await chat.send("/help")
            await chat.expect("/report")
            answered = len(await chat.bot_messages_since(0))
            own.stop()
            await chat.send("/help")
            line = "shared state (Redis) unavailable (ConnectionError) in a message update"
            await wait_for(lambda: line in d.bot.log_path.read_text(errors="replace"), timeout=60)
            assert len(await chat.bot_messages_since(0)) == answered  # no reply, no apology
            own.start()  # the same port, empty
            await wait_for(
                lambda: "the shared key's record was missing" in d.bot.log_path.read_text(errors="replace"),
                timeout=60,
            )
            await chat.send("/start")
            await chat.expect("What would you like to do?")
            d.bot.assert_alive()
        finally:
            d.bot.stop()
            await client.close()
            own.stop()
