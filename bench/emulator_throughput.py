"""How many sendMessage calls per second the sandbox emulator accepts.

The emulator runs in a child process (as under `nazaha sandbox`), with many users made by
the control API's batch endpoint; this process sends ``--messages`` sendMessage calls (JSON,
a short Arabic text with an inline keyboard, as a broadcast would) from one aiohttp session
with ``--concurrency`` requests in flight, spread over the users, after a warm-up. It prints
the rate and the latency percentiles, then checks the call log counted every send.

    .venv/bin/python bench/emulator_throughput.py                      # 20000 messages, 50 in flight
    .venv/bin/python bench/emulator_throughput.py --messages 5000 --json

The client and the emulator share the machine: on 2 cores the figure is a floor for the
emulator alone. Exit status 0 whatever the figure (1 if the run could not be made).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "1000000002:bench-emulator-throughput-token"
TEXT = "نشرة التوعية الأسبوعية: كيف تحمي نفسك عند الإبلاغ؟ اقرأ المزيد على nazaha.ps"
KEYBOARD = {"inline_keyboard": [[{"text": "إلغاء الاشتراك", "callback_data": "unsub"},
                                 {"text": "المزيد", "url": "https://example.org/more"}]]}


async def serve(port: int) -> None:
    from nazaha.sandbox.emulator import BotApiEmulator
    from nazaha.sandbox.server import SandboxServer

    async with SandboxServer(host="127.0.0.1", port=port, default_token=TOKEN,
                             emulator=BotApiEmulator(max_calls=1_000_000)) as server:
        print(f"READY {server.url} {server.control_key}", flush=True)
        await asyncio.Event().wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, key: str, messages: int, concurrency: int, users: int, warmup: int,
                  server_pid: int) -> dict:
    import aiohttp

    from nazaha.sandbox.client import SandboxClient

    async with SandboxClient(url, token=TOKEN, key=key) as control:
        started = time.perf_counter()
        ids = await control.create_users(users, language_code="ar")
        made = time.perf_counter() - started
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            endpoint = f"{url}/bot{TOKEN}/sendMessage"
            latencies: list[float] = []
            failures = 0

            async def worker(queue: list[int], record: bool) -> None:
                nonlocal failures
                while queue:
                    n = queue.pop()
                    body = {"chat_id": ids[n % len(ids)], "text": TEXT, "reply_markup": KEYBOARD}
                    t0 = time.perf_counter()
                    async with http.post(endpoint, json=body) as resp:
                        await resp.read()
                        if resp.status != 200:
                            failures += 1
                    if record:
                        latencies.append(time.perf_counter() - t0)

            async def run(count: int, record: bool) -> float:
                queue = list(range(count))
                t0 = time.perf_counter()
                await asyncio.gather(*(worker(queue, record) for _ in range(concurrency)))
                return time.perf_counter() - t0

            await run(warmup, False)
            await control.clear_calls()
            cpu_before = cpu_seconds(server_pid)
            elapsed = await run(messages, True)
            server_cpu = cpu_seconds(server_pid) - cpu_before
        logged = len(await control.calls("sendMessage"))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "messages": messages, "concurrency": concurrency, "users": users, "seconds": round(elapsed, 3),
        "messages_per_second": round(messages / elapsed, 1), "p50_ms": round(pct(0.50), 2),
        "p95_ms": round(pct(0.95), 2), "p99_ms": round(pct(0.99), 2), "failures": failures,
        "logged_sends": logged, "users_created_per_second": round(users / made, 1),
        # what one core spent in the emulator per message: its rate if it had a core of its own
        "server_cpu_seconds": round(server_cpu, 3),
        "messages_per_server_cpu_second": round(messages / server_cpu, 1) if server_cpu else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, __file__, "--serve", "0"], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            print("the emulator did not start", file=sys.stderr)
            return 1
        result = asyncio.run(measure(line[1], line[2], args.messages, args.concurrency, args.users, args.warmup,
                                     child.pid))
    finally:
        child.terminate()
        child.wait(timeout=10)
    print(f"sendMessage: {result['messages_per_second']:.0f}/s ({result['messages']} messages in "
          f"{result['seconds']:.2f} s, {result['concurrency']} in flight, {result['users']} users); latency "
          f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
          f"failures {result['failures']}; call log {result['logged_sends']} sends; "
          f"users created {result['users_created_per_second']:.0f}/s")
    if result["messages_per_server_cpu_second"]:
        print(f"emulator CPU: {result['server_cpu_seconds']:.2f} s, i.e. "
              f"{result['messages_per_server_cpu_second']:.0f} messages per CPU second "
              f"(its rate on a core of its own, without the client)")
    if result["logged_sends"] != result["messages"]:
        print("WARNING: the call log did not count every send", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
