"""End to end: the real bot process (metrics on their own port, scraped over HTTP) and the
console (its /metrics behind the bearer token) after a complaint filed in the chat, a Bot
API 429 on the way, and the case viewed in the console. The expected counters went up, and
nothing of the run (designation, receipt, report id, chat id, what the citizen wrote, the
token) is anywhere in either scrape: every label value is from a fixed list."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import aiohttp
import pytest
import pytest_asyncio
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nazaha.admin.app import console_routes, create_app
from nazaha.bot.settings import Settings
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.console_support import STAFF_PASSWORD, MovableClock, csrf_of, enrol, totp_code
from tests.e2e_support import PASSPHRASE, TOKEN, Chat, run_init
from tests.test_e2e_bot import DESCRIPTION, Deployment
from tests.test_e2e_console import INVITATION_RE, ConsoleBrowser, file_complaint, report_id_of
from tests.test_e2e_webhook import free_port
from tests.test_metrics import assert_labels_fixed

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "https://testserver"
METRICS_TOKEN = "e2e-metrics-token-" + "q" * 32


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-metrics")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        port = free_port()
        d = Deployment(tmp, server, client, NAZAHA_METRICS_PORT=str(port))
        init = await asyncio.to_thread(run_init, d.data_dir, server.url)
        link = INVITATION_RE.search(init.stdout).group(0)
        await d.bot.launch()  # "bot ready" comes after the metrics endpoint listens
        d.metrics_url = f"http://127.0.0.1:{port}/metrics"
        d.settings = Settings(
            _env_file=None,
            data_dir=d.data_dir,
            console_dir=d.data_dir.parent / f"{d.data_dir.name}-console",
            kdf_profile="testing",
            console_metrics_token=METRICS_TOKEN,
        )
        d.clock = MovableClock(dt.datetime.now(dt.timezone.utc))
        d.app = create_app(d.settings, clock=d.clock)
        test_client = TestClient(d.app, base_url=BASE, follow_redirects=False, headers={"Accept-Language": "en"})
        await asyncio.to_thread(test_client.__enter__)
        try:
            d.member = await asyncio.to_thread(enrol, test_client, link, d.clock, team_passphrase=PASSPHRASE)
            d.admin = ConsoleBrowser(test_client)
            yield d
        finally:
            await asyncio.to_thread(test_client.__exit__, None, None, None)
            d.bot.stop()
            await client.close()


async def scrape_bot(d: Deployment) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(d.metrics_url) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/plain")
            return await answer.text()


async def scrape_console(d: Deployment) -> str:
    answer = await d.admin.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    return answer.text


async def bot_metrics_when(d: Deployment, reached, timeout: float = 60.0) -> str:
    """The bot's scrape once ``reached(samples)`` holds (an update is counted after its
    replies left, so just after the chat saw them)."""
    deadline = time.monotonic() + timeout
    while True:
        text = await scrape_bot(d)
        if reached(parse(text)):
            return text
        assert time.monotonic() < deadline, "the bot's counters did not reach the expected values"
        await asyncio.sleep(0.1)


def assert_nothing_of_the_run(text: str, secrets: list[str], numbers: list[int]) -> None:
    for secret in secrets:
        assert secret not in text, secret
    # A number may be a value by chance (bytes of memory): none may be a label or a name.
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_and_labels = line.rsplit(" ", 1)[0]
        for number in numbers:
            assert str(number) not in name_and_labels, line
        assert line.rsplit(" ", 1)[1] not in {str(n) for n in numbers} | {f"{n}.0" for n in numbers}


async def test_metrics_count_a_run_and_carry_nothing_of_it(world: Deployment):
    d = world
    before = parse(await scrape_bot(d))
    console_before = parse(await scrape_console(d))

    # A complaint (4 typed messages, buttons), with one 429 from the Bot API on the way.
    await d.client.add_fault("sendMessage", 429, retry_after=1)
    chat = await Chat.open(d.client, "en")
    receipt = await file_complaint(chat, contact=True)

    def reached(now) -> bool:
        def grew(name: str, by: float, **labels: str) -> bool:
            return value(now, name, **labels) - value(before, name, **labels) >= by

        return (
            grew("nazaha_updates_total", 4, kind="message", outcome="handled")
            and grew("nazaha_updates_total", 8, kind="callback_query", outcome="handled")
            and grew("nazaha_update_duration_seconds_count", 4, kind="message")
            and grew("nazaha_bot_api_errors_total", 1, method="sendMessage", code="429")
            and grew("nazaha_bot_api_requests_total", 2, method="sendMessage")
        )

    bot_text = await bot_metrics_when(d, reached)
    samples = parse(bot_text)
    assert ("nazaha_queue_depth", (("queue", "undelivered_receipts"),)) in samples
    assert ("nazaha_broadcasts", (("status", "sending"),)) in samples
    assert value(samples, "nazaha_updates_total", kind="message", outcome="failed") == value(
        before, "nazaha_updates_total", kind="message", outcome="failed")

    # The console: the inbox, the case page, a failed and a good sign-in of a new browser.
    inbox = await d.admin.inbox()
    ((designation, _),) = inbox.items()
    page = await d.admin.get(f"/cases/{designation}")
    assert page.status_code == 200 and DESCRIPTION in page.text
    other = TestClient(d.app, base_url=BASE, follow_redirects=False)
    form = await asyncio.to_thread(other.get, "/login")
    d.clock.advance(seconds=60)  # a TOTP code of its own, not the enrolment's
    fields = {"csrf": csrf_of(form.text), "username": "admin", "code": totp_code(d.member.totp_secret, d.clock)}
    bad = await asyncio.to_thread(other.post, "/login", data={**fields, "password": "wrong horse"})
    assert bad.status_code == 401
    good = await asyncio.to_thread(other.post, "/login", data={**fields, "password": STAFF_PASSWORD})
    assert good.status_code == 303
    console_text = await scrape_console(d)
    console_after = parse(console_text)

    def console_grew(name: str, **labels: str) -> float:
        return value(console_after, name, **labels) - value(console_before, name, **labels)

    assert console_grew("nazaha_console_requests_total", method="GET", route="/cases/{designation}",
                        status="2xx") == 1
    assert console_grew("nazaha_console_requests_total", method="GET", route="/cases", status="2xx") >= 1
    assert console_grew("nazaha_console_logins_total", result="ok") == 1
    assert console_grew("nazaha_console_logins_total", result="failed") == 1
    assert console_grew("nazaha_console_request_duration_seconds_count", route="/login") == 3

    # Nothing of the run in either scrape.
    report_id = report_id_of(d, designation)
    secrets = [
        designation, receipt, receipt.replace(" ", ""), report_id, DESCRIPTION, DESCRIPTION[:20],
        "Samira", "0599 123 456", TOKEN, TOKEN.split(":", 1)[1], "Bethlehem",
    ]
    numbers = [chat.user_id]  # the chat id too (a private chat's id is the user's)
    for text in (bot_text, console_text):
        assert_nothing_of_the_run(text, secrets, numbers)
    assert_labels_fixed(parse_pairs(bot_text))
    assert_labels_fixed(parse_pairs(console_text), routes={path for _, path in console_routes(d.app)})


def parse_pairs(text: str):
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, s.labels
