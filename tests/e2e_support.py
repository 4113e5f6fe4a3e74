"""End-to-end harness: the real `nazaha` processes against the sandbox emulator over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nazaha.sandbox.client import SandboxClient

TOKEN = "424242:E2E-nazaha-test-token-abcdefghijklmnop"
PASSPHRASE = "olive lantern mends a copper kite at dusk"
READY_LINE = b"bot ready"
RECEIPT_RE = re.compile(r"\b(\d{4} \d{4} \d{4} \d{4} \d{4})\b")


def nazaha_env(data_dir: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")}
    env.update(
        NAZAHA_DATA_DIR=str(data_dir),
        NAZAHA_BOT_TOKEN=TOKEN,
        NAZAHA_TELEGRAM_API_URL=api_url,
        NAZAHA_KDF_PROFILE="testing",
        NAZAHA_LOG_LEVEL="DEBUG",
        PYTHONUNBUFFERED="1",
        # The simulated users tap faster than any person; flood control has its own test.
        NAZAHA_THROTTLE_RATE="1000",
        NAZAHA_THROTTLE_BURST="1000",
    )
    env.update(extra)
    return env


def nazaha_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nazaha.bot", *args]


def recovery_file(data_dir: Path) -> Path:
    """Where `run_init` writes the team recovery key: beside the data dir, never in it."""
    return data_dir.parent / "team-recovery.key"


def run_init(data_dir: Path, api_url: str) -> subprocess.CompletedProcess[str]:
    passphrase_file = data_dir.parent / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE)
    return subprocess.run(
        nazaha_command(
            "init", "--passphrase-file", str(passphrase_file), "--recovery-file", str(recovery_file(data_dir))
        ),
        env=nazaha_env(data_dir, api_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@dataclass
class BotProcess:
    """`nazaha bot` as a child process; its output goes to a log file we can search."""

    data_dir: Path
    api_url: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # e.g. ("--webhook",)

    def start(self) -> None:
        """Start the bot process (see :meth:`launch` to also wait until it serves)."""
        log = self.log_path.open("ab")
        self._ready_lines = self.log_path.read_bytes().count(READY_LINE)
        self.process = subprocess.Popen(
            nazaha_command("bot", *self.args),
            env=nazaha_env(self.data_dir, self.api_url, **self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def launch(self, *, ready_timeout: float = 240.0) -> None:
        """Start the bot and return once it serves (it logs "bot ready" when it polls or
        its webhook is set): on a busy 2-core machine start-up alone can take a minute, and
        a test's first message must not race it. Waits without blocking the event loop (the
        emulator may run in it)."""
        self.start()
        deadline = time.monotonic() + ready_timeout
        while self.log_path.read_bytes().count(READY_LINE) <= self._ready_lines:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    "the bot exited during start-up:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError("the bot did not become ready in time")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash or a seized machine."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]


class Chat:
    """One simulated Telegram user talking to the bot."""

    def __init__(self, client: SandboxClient, user: dict[str, Any]) -> None:
        self.client = client
        self.user = user
        self.user_id = user["id"]
        self.last_seen = 0  # message id after which bot messages count as new

    @classmethod
    async def open(cls, client: SandboxClient, language_code: str | None) -> "Chat":
        user = await client.create_user(first_name="Citizen", language_code=language_code)
        return cls(client, user)

    async def messages(self) -> list[dict[str, Any]]:
        return await self.client.messages(self.user_id)

    async def bot_messages_since(self, after: int) -> list[dict[str, Any]]:
        return [
            m
            for m in await self.messages()
            if m["from_bot"] and m["message_id"] > after and not m["deleted"]
        ]

    async def send(self, text: str) -> int:
        sent = await self.client.send_text(self.user_id, text)
        self.last_seen = sent["message_id"]
        return sent["message_id"]

    async def send_kind(self, kind: str, **kwargs: Any) -> int:
        sender: Callable[..., Any] = getattr(self.client, f"send_{kind}")
        sent = await sender(self.user_id, **kwargs)
        self.last_seen = sent["message_id"]
        return sent["message_id"]

    async def expect(self, needle: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for a bot message (after our last action) whose text contains ``needle``."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = await self.messages()
            for message in snapshot:
                if (
                    message["from_bot"]
                    and message["message_id"] > self.last_seen
                    and not message["deleted"]
                    and needle in (message.get("text") or "")
                ):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                texts = [m.get("text", "")[:120] for m in await self.bot_messages_since(self.last_seen)]
                raise AssertionError(f"no bot message containing {needle!r}; got {texts}")
            newest = max((m["message_id"] for m in snapshot), default=0)
            try:
                await self.client.wait_for_bot_message(
                    self.user_id, after_message_id=newest, timeout=min(remaining, 5.0)
                )
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def latest_keyboard_message(self) -> dict[str, Any]:
        for message in reversed(await self.messages()):
            if message["from_bot"] and message.get("reply_markup") and not message["deleted"]:
                return message
        raise AssertionError("no bot message with a keyboard")

    async def press(self, label: str, *, in_message: dict[str, Any] | None = None, timeout: float = 20.0) -> None:
        """Tap the first button whose label contains ``label`` in the latest keyboard.

        Waits first for the bot to have answered our previous action.
        """
        if in_message is None:
            await self.expect("", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            message = in_message or await self.latest_keyboard_message()
            for row in message["reply_markup"]["inline_keyboard"]:
                for button in row:
                    if label in button["text"]:
                        await self.press_data(message["message_id"], button["callback_data"])
                        return
            if in_message is not None or time.monotonic() > deadline:
                labels = [b["text"] for row in message["reply_markup"]["inline_keyboard"] for b in row]
                raise AssertionError(f"no button {label!r} in {labels}")
            await asyncio.sleep(0.05)

    async def press_data(self, message_id: int, data: str) -> None:
        messages = await self.messages()
        self.last_seen = max(m["message_id"] for m in messages)
        await self.client.press(self.user_id, message_id, data)


def find_plaintext(needle: str, paths: list[Path]) -> list[str]:
    """Files under ``paths`` that contain ``needle`` as UTF-8 or UTF-16 bytes."""
    patterns = [needle.encode("utf-8"), needle.encode("utf-16-le")]
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            if any(p in data for p in patterns):
                hits.append(str(path))
    return hits


async def press_callback(chat: "Chat", data: str) -> None:
    """Tap the button carrying ``data`` in the newest message that has it."""
    await chat.expect("")
    for message in reversed(await chat.messages()):
        if not message["from_bot"] or not message.get("reply_markup") or message["deleted"]:
            continue
        for row in message["reply_markup"]["inline_keyboard"]:
            if any(b.get("callback_data") == data for b in row):
                await chat.press_data(message["message_id"], data)
                return
    raise AssertionError(f"no button with callback data {data!r}")


async def assert_no_unknown_calls(client: SandboxClient) -> None:
    """Fail if the bot called a Bot API method the sandbox does not model: the sandbox
    answered 404 where Telegram has the method, so the tests did not see what Telegram
    would do. Counted apart from the (capped) call log, since the bot was first seen."""
    info = await client.bot_info()
    unknown = info.get("unknown_methods") or {}
    assert not unknown, f"the bot called Bot API methods the sandbox does not model: {sorted(unknown)}"
