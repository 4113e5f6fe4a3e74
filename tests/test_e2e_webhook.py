"""End to end: `nazaha bot --webhook` (Telegram pushes updates to the bot over HTTP)."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import TOKEN, Chat, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment, complete_corruption_report_in_arabic

pytestmark = [pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_report_completed_over_webhook(tmp_path):
    port = free_port()
    secret = secrets.token_urlsafe(24)
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        deployment = Deployment(
            tmp_path,
            server,
            client,
            NAZAHA_WEBHOOK_URL=f"http://127.0.0.1:{port}/webhook",
            NAZAHA_WEBHOOK_SECRET=secret,
            NAZAHA_WEBHOOK_HOST="127.0.0.1",
            NAZAHA_WEBHOOK_PORT=str(port),
        )
        deployment.bot.args = ("--webhook",)
        run_init(deployment.data_dir, server.url)
        await deployment.bot.launch()
        try:
            # Wait until the bot is ready (its webhook is set) before the first message.
            for _ in range(1200):
                if (await client.bot_info())["webhook"]["url"]:
                    break
                await asyncio.sleep(0.1)
            chat = await Chat.open(client, "ar")
            receipt = await complete_corruption_report_in_arabic(chat, DESCRIPTION)
            info = await client.bot_info()
            assert info["webhook"]["url"] == f"http://127.0.0.1:{port}/webhook"
            # Every update of the conversation (a dozen, button presses included, whose
            # keyboards the bot drops while decoding) came through the webhook.
            assert info["webhook_delivered"] >= 12
            assert await client.calls("getUpdates") == []
            [(designation,)] = deployment.db_rows("SELECT designation FROM reports")
            opened = await deployment.open_with_receipt(receipt)
            assert opened is not None and opened.designation == designation
            deployment.bot.assert_alive()
            log = deployment.bot.log_path.read_text(errors="replace")
            assert secret not in log and receipt not in log
        finally:
            deployment.bot.stop()
            await client.close()
