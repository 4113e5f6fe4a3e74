"""Broadcast engine benchmark: one broadcast to 100,000 subscribers, paced.

    .venv/bin/python bench/broadcast.py [--subscribers 100000] [--slow-rate 25]
        [--slow-seconds 60] [--fast-rate 1000] [--sink both|emulator|simple] [--json]

The sender (``nazaha.awareness.sender.BroadcastSender`` with its ``Pacer``, the bot's own
aiogram session and a SQLite database in a temporary directory) runs in this process; the
receiving end runs in a child process so that it does not share the sender's CPU:

* ``emulator``: the sandbox Bot API emulator (``SandboxServer``), which parses, validates
  (entities, keyboard) and stores every message as Telegram would;
* ``simple``: a minimal aiohttp server that answers every call with a canned
  ``{"ok": true}`` message, to tell the sender's limit from the emulator's.

Both record when each call arrived (their clock) and to which chat, with their garbage
collector off (a collection pause would stamp the calls waiting meanwhile together). Runs,
each with a new
broadcast to every subscriber (``approved``, so the sender materialises 100,000 outbox rows
first):

1. ``--slow-rate`` (25/s, the default rate) against the emulator for ``--slow-seconds``
   (60), then cancelled (the rest is skipped);
2. ``--fast-rate`` (1,000/s) against the emulator for the whole list;
3. the same against the simple sink (``--sink``: ``both``, the default, runs 2 and 3).

Figures per run: sends received, achieved rate = (sends - 1) / (last - first arrival) and
its ratio to the configured rate (target >= 0.95), the largest count in any one-second
window of arrivals (must never exceed the rate) and per chat (<= 1), duplicates (chats with
more than one message: 0), the sender's CPU time per 1,000 messages (``time.process_time``
of this process, database thread included), the receiver's CPU share, and how long the
materialisation (``started_at`` - approval) and the whole run took. Seeding 100,000
subscribers is one bulk transaction (``SubscriberStore.subscribe_many_now``), timed apart.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
Results and how to read them: docs/benchmarks.md, "Broadcasts".
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "700003:BENCH-broadcast-sender-0000000000"
SEND_METHODS = ("sendMessage", "sendPhoto")
CANNED = (
    b'{"ok":true,"result":{"message_id":1,"date":1700000000,'
    b'"chat":{"id":1,"type":"private"},"text":"x"}}'
)
BODY = (
    "**النزاهة تبدأ بك**: the coalition's weekly note on *public procurement*. "
    "Read more at [AMAN](https://www.aman-palestine.org) & tell a friend."
)


# ---- the receiving ends (child processes) -------------------------------------------------


def window_stats(times: list[float], chats: list[Any]) -> dict[str, Any]:
    """Arrival figures of one run: count, first/last, largest count in a one-second
    window overall and per chat, chats with more than one message."""
    ordered = sorted(times)
    largest = 0
    for index, start in enumerate(ordered):
        largest = max(largest, bisect.bisect_left(ordered, start + 1.0, lo=index) - index)
    per_chat: dict[Any, list[float]] = {}
    for at, chat in zip(times, chats):
        per_chat.setdefault(chat, []).append(at)
    chat_largest = 0
    for stamps in per_chat.values():
        if len(stamps) > 1:
            stamps.sort()
            chat_largest = max(chat_largest, max(
                bisect.bisect_left(stamps, s + 1.0, lo=i) - i for i, s in enumerate(stamps)
            ))
        else:
            chat_largest = max(chat_largest, 1)
    counts = Counter(chats)
    return {
        "count": len(times),
        "first": ordered[0] if ordered else None,
        "last": ordered[-1] if ordered else None,
        "max_per_second": largest,
        "max_per_chat_second": chat_largest,
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "chats": len(counts),
    }


def serve_emulator(port_file: Path, users: int) -> None:
    from aiohttp import web

    from nazaha.sandbox.emulator import BotApiEmulator
    from nazaha.sandbox.server import SandboxServer

    async def main() -> None:
        emulator = BotApiEmulator(max_calls=users * 2 + 10_000)
        bot = emulator.get_bot(TOKEN)
        assert bot is not None
        emulator.create_started_users(bot, users)

        async def stats(request: web.Request) -> web.Response:
            calls = [c for c in bot.calls if c["method"] in SEND_METHODS]
            ok = [c for c in calls if c["ok"]]
            figures = window_stats([c["at"] for c in calls], [(c["params"] or {}).get("chat_id") for c in ok])
            figures["count"], figures["errors"] = len(calls), len(calls) - len(ok)
            figures["delivered"] = len(ok)
            return web.json_response(figures)

        async def reset(request: web.Request) -> web.Response:
            bot.calls.clear()
            for chat in bot.chats.values():
                chat.messages.clear()
            return web.json_response({"ok": True})

        server = SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN, emulator=emulator)
        # A measuring instrument: a collection of its hundreds of thousands of objects would
        # stall it for a tenth of a second, and the calls waiting meanwhile would be stamped
        # together (more arrivals in a second than were sent in it).
        gc.disable()
        server.app.router.add_get("/bench/stats", stats)
        server.app.router.add_post("/bench/reset", reset)
        await server.start()
        port_file.write_text(str(server.port))
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_sink(port_file: Path) -> None:
    import orjson
    from aiohttp import web

    times: list[float] = []
    chats: list[Any] = []

    async def bot_api(request: web.Request) -> web.Response:
        body = await request.read()
        if request.match_info["method"].lower() in ("sendmessage", "sendphoto"):
            times.append(time.time())
            try:
                chats.append(orjson.loads(body).get("chat_id"))
            except ValueError:
                chats.append(None)
        return web.Response(body=CANNED, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        figures = window_stats(times, chats)
        figures["errors"], figures["delivered"] = 0, len(times)
        return web.json_response(figures)

    async def reset(request: web.Request) -> web.Response:
        times.clear()
        chats.clear()
        return web.json_response({"ok": True})

    async def main() -> None:
        gc.disable()  # as for the emulator
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", bot_api)
        app.router.add_get("/bench/stats", stats)
        app.router.add_post("/bench/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_file.write_text(str(site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


# ---- helpers ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def machine_busy_seconds() -> float:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


class Child:
    """A receiving end in a child process; ``url`` once it listens."""

    def __init__(self, kind: str, tmp: Path, users: int) -> None:
        self.port_file = tmp / f"{kind}.port"
        self.process = subprocess.Popen(
            [sys.executable, __file__, f"--serve-{kind}", str(self.port_file), "--subscribers", str(users)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.url = ""

    async def ready(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.port_file.exists() or not self.port_file.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("a receiving end did not start")
            await asyncio.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"
        return self.url

    async def call(self, verb: str, path: str) -> dict[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.request(verb, self.url + path, timeout=aiohttp.ClientTimeout(total=300)) as resp:
                return await resp.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---- one run ------------------------------------------------------------------------------


async def run_case(label: str, child: Child, db: dict[str, Any], rate: int, seconds: float | None,
                   margin: float) -> dict[str, Any]:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.telegram import TelegramAPIServer
    from sqlalchemy import select, update

    from nazaha.awareness.pacing import Pacer
    from nazaha.awareness.sender import BroadcastSender
    from nazaha.bot.telegram_session import BotApiSession
    from nazaha.storage.awareness_models import Broadcast, BroadcastVersion
    from nazaha.storage.database import write_transaction

    sessionmaker = db["sessionmaker"]
    await child.call("POST", "/bench/reset")
    bot = Bot(TOKEN, session=BotApiSession(api=TelegramAPIServer.from_base(child.url)),
              default=DefaultBotProperties(parse_mode=None))
    sender = BroadcastSender(sessionmaker, bot, db["store"], db["box"], Pacer(rate, 1, margin=margin),
                             check_seconds=0.2)
    now = db["now"]()
    async with write_transaction(sessionmaker) as session:
        broadcast = Broadcast(name=label, status="approved", author_id=1, approved_by=2, created_at=now,
                              approved_at=now)
        session.add(broadcast)
        await session.flush()
        broadcast_id = broadcast.id
        session.add(BroadcastVersion(broadcast_id=broadcast_id, language="ar", body=BODY))
        session.add(BroadcastVersion(broadcast_id=broadcast_id, language="en", body=BODY))

    async def row() -> Any:
        async with sessionmaker() as session:
            return (await session.execute(select(Broadcast).where(Broadcast.id == broadcast_id))).scalar_one()

    cpu_child, machine = cpu_seconds(child.process.pid), machine_busy_seconds()
    cpu, wall = time.process_time(), time.monotonic()
    task = asyncio.create_task(sender.run())
    try:
        started = None
        while started is None:
            await asyncio.sleep(0.05)
            started = (await row()).started_at
        materialised = time.monotonic() - wall
        if seconds is not None:
            while sender.counts["sent"] == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(seconds)
            async with write_transaction(sessionmaker) as session:
                await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(status="cancelled"))
            while (await row()).finished_at is None:
                await asyncio.sleep(0.1)
        else:
            while (await row()).status != "done":
                await asyncio.sleep(0.25)
        elapsed = time.monotonic() - wall
        cpu_used = time.process_time() - cpu
        child_cpu = cpu_seconds(child.process.pid) - cpu_child
        machine_used = machine_busy_seconds() - machine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bot.session.close()
    stats = await child.call("GET", "/bench/stats")
    span = (stats["last"] - stats["first"]) if stats["count"] > 1 else float("nan")
    achieved = (stats["count"] - 1) / span if span and span > 0 else float("nan")
    sent = sender.counts["sent"]
    return {
        "run": label, "configured_rate": rate, "paced_rate": sender.pacer.paced_rate,
        "received": stats["count"], "delivered": stats["delivered"], "errors": stats["errors"],
        "sender_sent": sent,
        "achieved_rate": round(achieved, 2), "ratio": round(achieved / rate, 4),
        "max_per_second": stats["max_per_second"], "max_per_chat_second": stats["max_per_chat_second"],
        "duplicates": stats["duplicates"],
        "sender_cpu_ms_per_1000": round(cpu_used / max(1, sent) * 1e6, 1),
        "sender_cpu_share": round(cpu_used / elapsed, 3),
        "receiver_cpu_share": round(child_cpu / elapsed, 3),
        "other_cpu_share": round(max(0.0, machine_used - cpu_used - child_cpu) / elapsed, 3),
        "materialise_s": round(materialised, 2), "wall_s": round(elapsed, 1), "passes": sender.passes, "stale_slots": sender.pacer.stale,
    }


def show(result: dict[str, Any]) -> None:
    ok = result["ratio"] >= 0.95 and result["max_per_second"] <= result["configured_rate"]
    print(
        f"{result['run']:<28} {result['configured_rate']:>5}/s (paced {result['paced_rate']}/s): "
        f"{result['received']} sends in {result['wall_s']} s; achieved {result['achieved_rate']}/s = "
        f"{result['ratio']:.3f} of configured; max {result['max_per_second']} in a second "
        f"(per chat {result['max_per_chat_second']}); duplicates {result['duplicates']}; "
        f"sender CPU {result['sender_cpu_ms_per_1000']} ms / 1,000 msgs "
        f"({result['sender_cpu_share']:.0%} of a core), receiver {result['receiver_cpu_share']:.0%}, "
        f"other programs {result['other_cpu_share']:.0%}; materialised in {result['materialise_s']} s "
        f"[{'ok' if ok else 'BELOW TARGET' if result['ratio'] < 0.95 else 'OVER RATE'}]",
        flush=True,
    )


def warm_up() -> None:
    """Build aiogram's and pydantic's models once (the bot does it at start-up) so that the
    first run's CPU time is the sender's, not the import's."""
    from aiogram.methods import SendMessage, SendPhoto
    from aiogram.types import Message

    from nazaha.awareness.broadcast_message import build_message

    message = build_message(BODY, "ar")
    SendMessage(chat_id=1, **message.formatted.as_text(), reply_markup=message.reply_markup())
    SendPhoto(chat_id=1, photo="x", caption="x")
    Message.model_validate({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x"})


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    import datetime as dt

    from nazaha.awareness.subscribers import SubscriberStore
    from nazaha.sandbox.emulator import FIRST_USER_ID
    from nazaha.storage.crypto import BotKeyBox
    from nazaha.storage.database import create_engine, create_sessionmaker
    from nazaha.storage.migrations import upgrade_database

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        children: list[Child] = []
        try:
            emulator = Child("emulator", tmp, args.subscribers) if args.sink in ("both", "emulator") else None
            sink = Child("sink", tmp, 0) if args.sink in ("both", "simple") else None
            children = [c for c in (emulator, sink) if c is not None]
            url = f"sqlite+aiosqlite:///{tmp / 'nazaha.db'}"
            await upgrade_database(url)
            engine = create_engine(url)
            sessionmaker = create_sessionmaker(engine)
            box = BotKeyBox(os.urandom(32))
            store = SubscriberStore(sessionmaker, box, os.urandom(32))
            topics = [("forms",), ("rights", "budget"), ()]
            started = time.monotonic()
            await store.subscribe_many_now(
                ((FIRST_USER_ID + i, "en" if i % 3 == 0 else "ar", topics[i % 3]) for i in range(args.subscribers)),
                today=dt.date.today(),
            )
            print(f"seeded {args.subscribers} subscribers in {time.monotonic() - started:.1f} s "
                  f"(one bulk transaction)", flush=True)
            db = {"sessionmaker": sessionmaker, "store": store, "box": box,
                  "now": lambda: dt.datetime.now(dt.timezone.utc)}
            for child in children:
                await child.ready()
            warm_up()
            gc.collect()
            gc.freeze()  # as the bot does after start-up (nazaha/bot/app.py)
            results = []
            if emulator is not None:
                if args.slow_seconds > 0:
                    results.append(await run_case(f"emulator, {args.slow_seconds:g} s", emulator, db, args.slow_rate,
                                                  args.slow_seconds, args.margin))
                    show(results[-1])
                results.append(await run_case("emulator, whole list", emulator, db, args.fast_rate, None,
                                              args.margin))
                show(results[-1])
            if sink is not None:
                results.append(await run_case("simple sink, whole list", sink, db, args.fast_rate, None,
                                              args.margin))
                show(results[-1])
            await engine.dispose()
            return results
        finally:
            for child in children:
                child.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--slow-rate", type=int, default=25)
    parser.add_argument("--slow-seconds", type=float, default=60.0)
    parser.add_argument("--fast-rate", type=int, default=1000)
    parser.add_argument("--sink", choices=("both", "emulator", "simple"), default="both")
    parser.add_argument("--margin", type=float, default=0.97, help="the pacer's margin under the rate")
    parser.add_argument("--dir", default=None, help="where the temporary database goes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-emulator", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-sink", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        serve_emulator(args.serve_emulator, args.subscribers)
        return 0
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return 0
    print(f"broadcast benchmark: {args.subscribers} subscribers, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        results = asyncio.run(bench(args))
    except KeyboardInterrupt:
        return 1
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
