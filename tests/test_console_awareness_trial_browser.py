"""What the awareness trial found, in headless Chromium (Playwright): the campaign,
broadcast and library lists on a 375 px phone screen scroll inside their box instead of
widening the page (nor does the main menu), in English and in Arabic; and the bot's list of chosen topics reads in the library's
order whatever script the titles are in (laid out by Chromium's bidi as a Telegram client
lays out the message: the paragraph's direction from its first strong letter).
Screenshots go to ``$NAZAHA_TEST_ARTIFACTS`` (default ``test-artifacts/console/``)."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.awareness.library import TopicView
from nazaha.awareness.subscribers import Subscription
from nazaha.bot.app import build_i18n
from nazaha.bot.setup import initialise
from nazaha.handlers import awareness_screens as views
from nazaha.storage.awareness_models import AwarenessTopic, AwarenessTopicText, Broadcast, Campaign
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.console_support import PASSPHRASE, MovableClock, console_settings
from tests.test_console_browser import (  # noqa: F401 - the module's browser fixture
    ARTIFACTS,
    CHROMIUM,
    WAIT_MS,
    LiveConsole,
    browser,
    enrol_first_admin,
    serving,
    switch_language,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]

PHONE = {"width": 375, "height": 800}
BOT = "nazaha_demo_bot"


@pytest_asyncio.fixture(loop_scope="module")
async def console(tmp_path) -> AsyncIterator[LiveConsole]:
    settings = console_settings(tmp_path / "var", bot_username=BOT)
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    sessionmaker = app.state.console.sessionmaker
    async with serving(app) as base:
        yield LiveConsole(
            base=base, invitation=base + "/" + link.split("://", 1)[1].split("/", 1)[1], clock=clock,
            sessionmaker=sessionmaker, team_public=load_team_public_key(KeyPaths.for_data_dir(settings.data_dir)),
        )


async def seed_lists(console: LiveConsole) -> None:
    """Campaigns and broadcasts as the team leaves them: long codes, names and dates."""
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    async with console.sessionmaker.begin() as session:
        if await session.get(AwarenessTopic, "trial_phone") is None:
            session.add(AwarenessTopic(code="trial_phone", position=99, origin="console"))
            await session.flush()
            session.add(AwarenessTopicText(topic="trial_phone", language="en", title="Procurement and public tenders", summary=""))
            session.add(AwarenessTopicText(topic="trial_phone", language="ar", title="المشتريات والعطاءات العامة", summary=""))
        for n in range(3):
            session.add(Campaign(code=f"birzeit-university-posters-{n}", name=f"Birzeit University spring posters {n}",
                                 target="trial_phone", active=bool(n % 2), created_on=now.date(), created_by=1))
            session.add(Broadcast(name=f"Weekly digest of the coalition's findings {n}", status="approved", author_id=1,
                                  send_at=now + dt.timedelta(days=n), created_at=now))


MEASURE = """(selector) => {
    const table = document.querySelector(selector), box = table.parentElement;
    return {page: document.documentElement.scrollWidth - innerWidth,
            boxRight: box.getBoundingClientRect().right - innerWidth,
            boxLeft: box.getBoundingClientRect().left,
            inside: box.scrollWidth >= table.getBoundingClientRect().width - 0.5,
            scrolls: getComputedStyle(box).overflowX};
}"""


async def test_campaign_and_broadcast_lists_fit_a_375_px_phone(browser, console):
    context = await browser.new_context(locale="en-US", viewport=PHONE, base_url=console.base)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await enrol_first_admin(page, console)
        await seed_lists(console)
        for locale in ("en", "ar"):
            if await page.get_attribute("html", "lang") != locale:
                await switch_language(page, locale, "/awareness/campaigns")
            for path, table, rows in (("/awareness/campaigns", "#campaigns", 3), ("/awareness/broadcasts", "#broadcasts", 3),
                                      ("/awareness/library", "section.card table.grid", None)):
                await page.goto(path)
                await page.evaluate("document.fonts.ready")
                if rows is not None:
                    assert await page.locator(f"{table} tbody tr").count() == rows
                layout = await page.evaluate(MEASURE, table)
                # The page never scrolls sideways; the table does, within its box on screen.
                assert layout["page"] <= 0, (locale, path, layout)
                assert layout["boxRight"] <= 0.5 and layout["boxLeft"] >= -0.5, (locale, path, layout)
                assert layout["scrolls"] == "auto" and layout["inside"], (locale, path, layout)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / f"{path.rsplit('/', 1)[1]}-375-{locale}.png"), full_page=True)
    finally:
        await context.close()


I18N = build_i18n()


def subscriptions_text(locale: str, topics: list[TopicView], chosen: set[str]) -> str:
    with I18N.context(), I18N.use_locale(locale):
        return views.subscriptions_screen(topics, Subscription(1, locale, frozenset(chosen), True), locale, 0).text


@pytest.mark.parametrize(("locale", "titles"), [
    ("ar", ["Bribery 101", "Public money", "حقوقك"]),  # Latin titles (an English-only topic) in Arabic
    ("en", ["أشكال الفساد", "حقوقك", "Your rights"]),  # Arabic-only topics in English
])
async def test_the_chosen_topics_read_in_the_library_order_in_either_direction(browser, locale, titles):
    topics = [TopicView(f"t{n}", title, "", locale) for n, title in enumerate([*titles, "Not chosen"])]
    text = subscriptions_text(locale, topics, {"t0", "t1", "t2"})
    line = next(line for line in text.split("\n") if titles[0] in line)
    context = await browser.new_context(viewport={"width": 1000, "height": 300})
    page = await context.new_page()
    try:
        # As Telegram shows a message: the direction of each line from its first strong letter.
        await page.set_content(f'<p id="line" dir="auto" style="font-size:20px;white-space:pre">{html.escape(line)}</p>')
        positions = await page.evaluate("""(titles) => {
            const node = document.getElementById('line').firstChild, text = node.data;
            return titles.map(title => {
                const range = document.createRange(), start = text.indexOf(title);
                range.setStart(node, start); range.setEnd(node, start + title.length);
                const box = range.getBoundingClientRect();
                return (box.left + box.right) / 2;
            });
        }""", titles)
        # Reading order: right to left in Arabic, left to right in English.
        expected = sorted(positions, reverse=(locale == "ar"))
        assert positions == expected, (locale, json.dumps(line), positions)
    finally:
        await context.close()
