"""What the awareness trial found, in headless Chromium (Playwright): the campaign,
broadcast and library lists on a 375 px phone screen scroll inside their box instead of
widening the page (nor does the main menu), in English and in Arabic, and say so while they
are wider than the screen; no awareness page is wider than the phone (the compose page's
survey menu holding a long question was); the broadcast page's facts put each label above
its value, a date on one line and no word broken; and the bot's list of chosen topics reads in the library's
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
from sqlalchemy import select

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.awareness.library import TopicView
from nazaha.awareness.subscribers import Subscription
from nazaha.bot.app import build_i18n
from nazaha.bot.setup import initialise
from nazaha.handlers import awareness_screens as views
from nazaha.awareness import surveys
from nazaha.storage.awareness_models import AwarenessItem, AwarenessTopic, AwarenessTopicText, Broadcast, Campaign
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.console_support import PASSPHRASE, MovableClock, console_settings
from tests.test_console_browser import (  # noqa: F401 - the module's browser fixture
    ARTIFACTS,
    CHROMIUM,
    WAIT_MS,
    LiveConsole,
    browser,
    enrol_first_admin,
    navigating,
    path_of,
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


LONG_QUESTION = {
    "en": "Were you asked, in the last twelve months, for a payment, a gift or a favour to obtain a public service "
          "that was yours by right, such as a permit, a certificate or a hospital appointment?",
    "ar": "هل طُلبت منك خلال الأشهر الاثني عشر الماضية رشوة أو هدية أو خدمة للحصول على خدمة عامة هي حقك أصلًا، "
          "مثل رخصة أو شهادة أو موعد في مستشفى؟",
}

WIDE = """() => document.documentElement.scrollWidth - innerWidth"""

# The broadcast page's facts (<dl id="broadcast-facts">): each label above its value, every
# date or number (bdi dir=ltr) on one line, no word split over two lines.
FACTS = """() => {
    const dl = document.getElementById('broadcast-facts'), out = {stacked: [], split: [], dates: [], tagTops: []};
    for (const dt of dl.querySelectorAll('dt')) {
        const dd = dt.nextElementSibling, a = dt.getBoundingClientRect(), b = dd.getBoundingClientRect();
        out.stacked.push(b.top >= a.bottom - 1 && b.width >= dl.getBoundingClientRect().width * 0.9);
    }
    const lines = range => new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top))).size;
    const walker = document.createTreeWalker(dl, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const m of node.data.matchAll(/\S+/g)) {
            const range = document.createRange();
            range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
            if (lines(range) > 1) out.split.push(m[0]);
        }
    }
    for (const bdi of dl.querySelectorAll('bdi[dir=ltr]')) {
        const range = document.createRange(); range.selectNodeContents(bdi);
        out.dates.push([bdi.textContent, lines(range)]);
    }
    out.tagTops = [...dl.querySelectorAll('.tag')].map(t => Math.round(t.getBoundingClientRect().top));
    return out;
}"""


async def seed_survey(console: LiveConsole) -> int:
    async with console.sessionmaker.begin() as session:
        survey_id = await surveys.save_survey(
            session, surveys.SurveyInput({lang: (q, "Yes\nNo") for lang, q in LONG_QUESTION.items()}, None),
            author=1, today=console.clock().date(), admin=True)
        await surveys.open_survey(session, survey_id, author=1, admin=True, today=console.clock().date())
    return survey_id


async def test_the_compose_and_broadcast_pages_fit_a_375_px_phone_and_read_well(browser, console):
    """The trial's phone: the compose page was 427 px wide (the survey menu holding a long
    question); the broadcast page squeezed its values into a column a word wide (dates over
    four lines, words broken, topic tags one per line); the lists gave no sign of the columns
    off screen."""
    context = await browser.new_context(locale="en-US", viewport=PHONE, base_url=console.base)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await enrol_first_admin(page, console)
        survey_id = await seed_survey(console)
        await seed_lists(console)
        for locale in ("en", "ar"):
            if await page.get_attribute("html", "lang") != locale:
                await switch_language(page, locale, "/awareness/broadcasts/new")
            await page.goto("/awareness/broadcasts/new")
            await page.select_option("select[name=survey]", str(survey_id))
            await page.evaluate("document.fonts.ready")
            assert await page.evaluate(WIDE) <= 0, locale
            box = await page.locator("select[name=survey]").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (locale, box)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"compose-375-{locale}.png"), full_page=True)

            await page.fill("input[name=name]", f"Rights week, the campaign of the coalition in {locale}")
            await page.fill("#body-ar", "اعرف حقوقك.")
            await page.fill("#body-en", "Know your rights.")
            topics = page.locator("input[name=topic]")
            await topics.nth(0).check()
            await topics.nth(1).check()
            await page.fill("input[name=send_date]", "2026-12-03")
            await page.fill("input[name=send_time]", "19:00")
            await navigating(page, lambda: page.click("#save-preview"))
            broadcast_id = int(path_of(page).rsplit("/", 1)[1])
            async with console.sessionmaker.begin() as session:  # as an approved, finished one shows
                row = await session.get(Broadcast, broadcast_id)
                row.status, row.approved_by, row.approved_at = "done", 1, console.clock()
                row.started_at = row.finished_at = console.clock()
            await page.reload()
            await page.evaluate("document.fonts.ready")
            assert await page.evaluate(WIDE) <= 0, locale
            facts = await page.evaluate(FACTS)
            assert all(facts["stacked"]) and len(facts["stacked"]) >= 6, (locale, facts)
            assert facts["split"] == [], (locale, facts)
            assert len(facts["dates"]) >= 2 and all(n == 1 for _, n in facts["dates"]), (locale, facts)
            assert len(facts["tagTops"]) == 2 and len(set(facts["tagTops"])) == 1, (locale, facts)  # side by side
            await page.screenshot(path=str(ARTIFACTS / f"broadcast-375-{locale}.png"), full_page=True)

            # The lists: a hint while the table is wider than the screen, and a shadow on its edge.
            for path, table in (("/awareness/broadcasts", "broadcasts"), ("/awareness/campaigns", "campaigns")):
                await page.goto(path)
                await page.evaluate("document.fonts.ready")
                box = page.locator(f"#{table}").locator("xpath=..")
                wide = await box.evaluate("box => box.scrollWidth > box.clientWidth + 1")
                assert wide or table == "broadcasts", (locale, path)  # a campaign's link never fits
                await page.wait_for_function(
                    "([id, wide]) => document.getElementById(id).hidden === !wide", arg=[f"{table}-scroll-hint", wide])
                assert await page.is_visible(f"#{table}-scroll-hint") == wide
                shadows = await box.evaluate("box => getComputedStyle(box).backgroundImage")
                assert shadows.count("radial-gradient") == 2, shadows
        # A screen the lists fit: no hint.
        await page.set_viewport_size({"width": 1600, "height": 900})
        await page.goto("/awareness/broadcasts")
        await page.wait_for_function("() => document.getElementById('broadcasts-scroll-hint').hidden")
    finally:
        await context.close()


async def test_no_awareness_page_is_wider_than_a_375_px_phone(browser, console):
    """Every page of the awareness area, in English and in Arabic, with long names and a
    survey whose question is long."""
    context = await browser.new_context(locale="en-US", viewport=PHONE, base_url=console.base)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    try:
        await enrol_first_admin(page, console)
        survey_id = await seed_survey(console)
        await seed_lists(console)
        async with console.sessionmaker() as session:
            item = await session.scalar(select(AwarenessItem).where(AwarenessItem.kind == "article").limit(1))
            quiz = await session.scalar(select(AwarenessItem).where(AwarenessItem.kind == "quiz").limit(1))
            campaign_id = await session.scalar(select(Campaign.id).limit(1))
        await page.goto("/awareness/broadcasts/new")
        await page.fill("input[name=name]", "Weekly digest of the coalition's findings, with a long name")
        await page.fill("#body-ar", "اعرف حقوقك.")
        await page.fill("#body-en", "Know your rights.")
        await page.select_option("select[name=survey]", str(survey_id))
        await navigating(page, lambda: page.click("#save-preview"))
        broadcast_id = int(path_of(page).rsplit("/", 1)[1])
        paths = ["/awareness", "/awareness/broadcasts", "/awareness/broadcasts/new", f"/awareness/broadcasts/{broadcast_id}",
                 f"/awareness/broadcasts/{broadcast_id}/edit", f"/awareness/broadcasts/{broadcast_id}/progress",
                 "/awareness/library", f"/awareness/library/items/{item.id}", f"/awareness/library/items/{item.id}/edit",
                 f"/awareness/library/items/{quiz.id}", f"/awareness/library/items/{quiz.id}/edit",
                 f"/awareness/library/topics/{item.topic}/edit", "/awareness/library/topics/new",
                 "/awareness/library/items/new?topic=trial_phone&kind=quiz", "/awareness/surveys", "/awareness/surveys/new",
                 f"/awareness/surveys/{survey_id}", "/awareness/campaigns", f"/awareness/campaigns/{campaign_id}"]
        wide = []
        for locale in ("en", "ar"):
            if await page.get_attribute("html", "lang") != locale:
                await switch_language(page, locale, "/awareness")
            for path in paths:
                answer = await page.goto(path)
                assert answer.status == 200, (locale, path)
                await page.evaluate("document.fonts.ready")
                if await page.evaluate(WIDE) > 0:
                    wide.append((locale, path, await page.evaluate(WIDE)))
                    await page.screenshot(path=str(ARTIFACTS / f"wide-{locale}-{len(wide)}.png"), full_page=True)
        assert wide == []
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
