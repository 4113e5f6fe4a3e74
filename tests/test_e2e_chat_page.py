"""The sandbox chat page in headless Chromium, talking to the real bot process."""

from __future__ import annotations

import shutil

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import TOKEN, run_init
from nazaha.handlers import labels, screens
from tests.test_e2e_bot import Deployment, ar, in_arabic

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest_asyncio.fixture
async def page_and_bot(tmp_path):
    from playwright.async_api import async_playwright

    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            try:
                await page.goto(server.page_url)  # carries this run's control key
                yield page, d
            finally:
                await browser.close()
                d.bot.stop()
                await client.close()


async def test_a_person_talks_to_the_bot_in_arabic_in_the_browser(page_and_bot):
    page, _ = page_and_bot
    await page.fill("#text", "/start")
    await page.press("#text", "Enter")
    welcome = page.locator(".msg.bot > div", has_text=ar("What would you like to do?"))
    await welcome.first.wait_for(timeout=20000)
    # Arabic renders right to left, English left to right, in the same page.
    direction = await welcome.first.evaluate("el => getComputedStyle(el).direction")
    assert direction == "rtl"
    command = page.locator(".msg.user > div", has_text="/start")
    assert await command.first.evaluate("el => getComputedStyle(el).direction") == "ltr"
    # Inline keyboard buttons work.
    await page.locator("button", has_text=ar("🛡 Report corruption")).last.click()
    await page.locator(".msg.bot", has_text=in_arabic(screens.safety_text, None)[:12]).first.wait_for(timeout=20000)
    await page.locator("button", has_text=ar("I understand, continue")).last.click()
    await page.locator(".msg.bot", has_text=ar("What kind of corruption is it? Choose the closest category.")).first.wait_for(timeout=20000)
    # What a user types is shown as text, never as markup.
    await page.fill("#text", "<img src=x onerror=window.pwned=1><b>bold</b>")
    await page.press("#text", "Enter")
    await page.locator(".msg.bot", has_text=ar("Please choose one of the buttons below.")).first.wait_for(timeout=20000)
    assert await page.locator(".msg.user", has_text="<b>bold</b>").count() == 1
    assert await page.evaluate("window.pwned === undefined")
    assert await page.locator(".msg img").count() == 0


async def test_a_discarded_draft_disappears_from_the_page(page_and_bot):
    """The bot deletes what a discarded draft left in the chat: its bubbles leave the page."""
    page, _ = page_and_bot
    await page.fill("#text", "/complaint")
    await page.press("#text", "Enter")
    await page.locator("button", has_text=ar("I understand, continue")).last.click()
    await page.locator("button", has_text=in_arabic(lambda: labels.CHOICE_LABELS["service"]["health"])).last.click()
    await page.locator("button", has_text=in_arabic(lambda: labels.CHOICE_LABELS["governorate"]["bethlehem"])).last.click()
    await page.locator(".msg.bot", has_text=in_arabic(lambda: labels.QUESTIONS["description"])[:15]).first.wait_for(
        timeout=20000)
    secret = "The nurse at the clinic asked me for money before the operation."
    await page.fill("#text", secret)
    await page.press("#text", "Enter")
    await page.locator(".msg.bot button", has_text=ar("✅ Done")).last.wait_for(timeout=20000)
    await page.fill("#text", "/cancel")
    await page.press("#text", "Enter")
    await page.locator("button", has_text=ar("Yes, discard it")).last.click()
    await page.locator(".msg.bot", has_text=ar("Your draft was deleted. Nothing was sent.")).first.wait_for(
        timeout=20000)
    await page.locator(".msg.user", has_text=secret).wait_for(state="detached", timeout=20000)
    assert await page.locator(".msg.user", has_text="/complaint").count() == 0
    assert await page.locator(".msg.bot", has_text=ar("Discard this complaint? Everything you wrote will be deleted.")).count() == 0


async def _digit_boxes(page, selector: str, groups: list[str]) -> list[float]:
    """The left edge of each group of characters as drawn, in the first element matching
    ``selector`` (via DOM ranges over its text)."""
    return await page.locator(selector).first.evaluate(
        """(el, groups) => {
            const text = el.firstChild;
            const lefts = [];
            let from = 0;
            for (const g of groups) {
                const at = text.data.indexOf(g, from);
                const range = document.createRange();
                range.setStart(text, at);
                range.setEnd(text, at + g.length);
                lefts.push(range.getBoundingClientRect().left);
                from = at + g.length;
            }
            return lefts;
        }""",
        groups,
    )


async def test_left_to_right_runs_keep_their_order_inside_arabic(page_and_bot):
    """"0599 123 456" inside Arabic is drawn 0599, 123, 456 from left to right (with the bot's
    isolates); the same text without them is drawn reversed, which the test can tell."""
    page, d = page_and_bot
    await page.locator("#start").click()
    await page.locator(".msg.bot > div", has_text=ar("What would you like to do?")).first.wait_for(timeout=60000)
    user_id = await page.evaluate("JSON.parse(sessionStorage.getItem('nazaha-sandbox:default')).userId")
    refused = in_arabic(screens.notice, "phone_invalid", {"letters": 0, "digits": 4, "minimum": 6, "maximum": 15})
    assert screens.ltr("0599 123 456") in refused
    plain = refused.replace(screens.LRI, "").replace(screens.PDI, "")
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(d.server.url)))
    try:
        await bot.send_message(user_id, refused)
        await bot.send_message(user_id, plain)
    finally:
        await bot.session.close()
    bubbles = page.locator(".msg.bot > div", has_text="0599")
    await bubbles.nth(1).wait_for(timeout=20000)
    groups = ["0599", "123", "456"]
    isolated = await _digit_boxes(page, ".msg.bot >> nth=-2 >> div", groups)
    reordered = await _digit_boxes(page, ".msg.bot >> nth=-1 >> div", groups)
    assert isolated[0] < isolated[1] < isolated[2], isolated
    assert reordered[0] > reordered[1] > reordered[2], reordered  # what the issue saw
    # A file name in a user's document keeps its order too.
    await d.client.send_document(user_id, "إيصال-الدفع.pdf", b"%PDF-1.4 x", "application/pdf")
    media = page.locator(".msg.user .media", has_text="pdf")
    await media.first.wait_for(timeout=20000)
    name_box = await _digit_boxes(page, ".msg.user .media >> nth=-1", ["إيصال", "pdf"])
    assert name_box[0] < name_box[1], name_box  # "إيصال-الدفع.pdf", not "pdf.إيصال-الدفع"


async def test_page_controls_follow_language_and_are_reachable(page_and_bot):
    page, _ = page_and_bot
    start = page.locator("#start")
    await start.wait_for(timeout=20000)
    colours = await start.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert colours[0] != colours[1] and colours[1] != "rgb(255, 255, 255)", colours
    assert await page.evaluate("document.documentElement.dir") == "rtl"
    assert await page.locator("#composer button").inner_text() == "إرسال"
    assert await page.locator("#text").get_attribute("placeholder") == "اكتب رسالة…"
    for selector in ("header button", "header select", "#extras button:visible", "#extras .file", "#composer button"):
        for box in [await el.bounding_box() for el in await page.locator(selector).all()]:
            assert box["height"] >= 44 and box["width"] >= 44, (selector, box)
    await page.select_option("#lang", "en")
    await page.locator("#composer button", has_text="Send").wait_for(timeout=5000)
    assert await page.evaluate("document.documentElement.dir") == "ltr"
    assert await page.locator("#new-chat").inner_text() == "New chat"
    assert await page.locator("link[rel=icon]").count() == 1
    icon = await page.request.get(page.url.split("#")[0].rstrip("/") + "/favicon.ico")
    assert icon.status == 200 and b"<svg" in await icon.body()


class PageOnly:
    """The chat page against the emulator alone, with an aiogram Bot the test drives itself
    (no bot process: for what the page shows of messages the test sends)."""

    def __init__(self, page, server: SandboxServer, client: SandboxClient, bot: Bot) -> None:
        self.page, self.server, self.client, self.bot = page, server, client, bot

    async def user_id(self) -> int:
        await self.page.locator("html[data-sandbox-user]").wait_for(state="attached", timeout=20000)
        return int(await self.page.evaluate("document.documentElement.dataset.sandboxUser"))

    async def started_user(self) -> int:
        """The page's user, after they pressed /start (so that the bot may write to them)."""
        user_id = await self.user_id()
        await self.page.locator("#start").click()
        await self.page.locator(".msg.user", has_text="/start").wait_for(timeout=20000)
        return user_id


@pytest_asyncio.fixture
async def page_only():
    from playwright.async_api import async_playwright

    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await (await browser.new_context()).new_page()  # a context: tests may open tabs
            try:
                await page.goto(server.page_url)
                yield PageOnly(page, server, client, bot)
            finally:
                await browser.close()
                await bot.session.close()
                await client.close()


async def test_polls_and_quizzes_in_the_page(page_only):
    p = page_only
    user_id = await p.started_user()
    quiz = await p.bot.send_poll(user_id, "من يوقّع على المناقصة؟", ["الوزير", "اللجنة"], type="quiz",
                                 correct_option_id=1, is_anonymous=False,
                                 explanation="القانون <b>8</b>", explanation_parse_mode="HTML")
    box = p.page.locator(".msg.bot .poll", has_text="المناقصة")
    await box.wait_for(timeout=20000)
    assert await box.locator("button.option").count() == 2
    assert await box.locator(".explanation").count() == 0  # not before answering
    await box.locator("button.option", has_text="الوزير").click()  # the wrong answer
    await box.locator("button.option.wrong").wait_for(timeout=20000)
    right = await box.locator("button.option.right").inner_text()
    assert "✓" in right and "اللجنة" in right and "0%" in right
    assert "100%" in await box.locator("button.option.wrong").inner_text()
    assert "القانون 8" in await box.locator(".explanation").inner_text()
    assert await box.locator(".explanation b").inner_text() == "8"
    assert await box.locator("button.option:enabled").count() == 0  # a quiz is answered once
    updates = await p.bot.get_updates(timeout=0)
    answer = next(u.poll_answer for u in updates if u.poll_answer)
    assert answer.user.id == user_id and answer.option_ids == [0] and answer.poll_id == quiz.poll.id

    # A poll with several answers: choose, then vote; then retract.
    await p.bot.send_poll(user_id, "Which offices?", ["Tax", "Customs", "Land"], allows_multiple_answers=True)
    poll = p.page.locator(".msg.bot .poll", has_text="Which offices?")
    await poll.wait_for(timeout=20000)
    vote = poll.locator("button.poll-vote")
    assert await vote.is_disabled()
    await poll.locator("button.option", has_text="Tax").click()
    await poll.locator("button.option", has_text="Land").click()
    await vote.click()
    await poll.locator(".percent").first.wait_for(timeout=20000)
    assert [t.strip() for t in await poll.locator(".percent").all_inner_texts()] == ["100%", "0%", "100%"]
    view = next(m for m in await p.client.messages(user_id) if m["poll"] and m["poll"]["question"] == "Which offices?")
    assert view["poll"]["chosen"] == [0, 2]
    await poll.locator("button.poll-retract").click()
    await poll.locator("button.poll-vote").wait_for(timeout=20000)
    assert await poll.locator(".percent").count() == 0


async def test_captions_are_drawn_with_their_entities(page_only):
    p = page_only
    user_id = await p.started_user()
    from aiogram.types import BufferedInputFile

    await p.bot.send_photo(
        user_id, BufferedInputFile(b"\xff\xd8 jpeg", filename="p.jpg"), parse_mode="HTML",
        caption='<b>عاجل</b> &lt;img src=x onerror=window.pwned=1&gt; <a href="https://example.org/r">التقرير</a>'
                ' <a href="javascript:window.pwned=2">x</a>')
    caption = p.page.locator(".msg.bot .caption", has_text="عاجل")
    await caption.wait_for(timeout=20000)
    assert await caption.locator("b").inner_text() == "عاجل"
    link = caption.locator("a")
    assert await link.count() == 1  # the javascript: link is drawn as text only
    assert await link.get_attribute("href") == "https://example.org/r"
    assert await link.get_attribute("rel") == "noopener noreferrer" and await link.get_attribute("target") == "_blank"
    assert "<img src=x" in await caption.inner_text()
    assert await p.page.locator(".msg img").count() == 0 and await p.page.evaluate("window.pwned === undefined")


async def test_links_telegram_finds_open_safely(page_only):
    p = page_only
    user_id = await p.started_user()
    await p.bot.send_message(user_id, "اقرأ https://example.org/guide?x=1 أو nazaha.ps — "
                                      "javascript:window.pwned=1 <script>window.pwned=2</script> @nazaha_news")
    text = p.page.locator(".msg.bot .text", has_text="اقرأ")
    await text.wait_for(timeout=20000)
    links = text.locator("a")
    assert await links.count() == 2
    assert [await links.nth(i).get_attribute("href") for i in range(2)] == [
        "https://example.org/guide?x=1", "http://nazaha.ps/"]
    for i in range(2):
        assert await links.nth(i).get_attribute("rel") == "noopener noreferrer"
        assert await links.nth(i).get_attribute("target") == "_blank"
    assert await text.locator(".entity-mention").inner_text() == "@nazaha_news"
    assert "<script>" in await text.inner_text()
    assert await p.page.locator(".msg script").count() == 0 and await p.page.evaluate("window.pwned === undefined")


async def test_done_button_under_send_more_after_evidence(page_and_bot):
    """The bot's "Send more, or tap Done" after a file carries its Done button, and the page
    shows it under that message (issue: users had to scroll up to the question)."""
    page, _ = page_and_bot
    await page.select_option("#lang", "en")
    await page.locator("#composer button", has_text="Send").wait_for(timeout=5000)
    await page.fill("#text", "/complaint")
    await page.press("#text", "Enter")
    for label in ("I understand, continue", "Health", "Bethlehem"):
        await page.locator(".msg.bot button", has_text=label).last.click()
    await page.locator(".msg.bot", has_text="Describe what happened").first.wait_for(timeout=20000)
    await page.fill("#text", "The clinic asked for money to give my mother her medicine, twice.")
    await page.press("#text", "Enter")
    await page.locator(".msg.bot", has_text="characters so far").first.wait_for(timeout=20000)
    await page.locator(".msg.bot", has_text="characters so far").last.locator("button", has_text="Done").click()
    await page.locator(".msg.bot", has_text="Do you have evidence?").first.wait_for(timeout=20000)
    await page.locator("#extras button[data-kind=photo]").click()
    notice = page.locator(".msg.bot", has_text="You have added 1 file").last
    await notice.wait_for(timeout=20000)
    assert "Send more, or tap Done." in await notice.inner_text()
    done = notice.locator(".keyboard button", has_text="Done")
    assert await done.count() == 1
    await done.click()
    await page.locator(".msg.bot", has_text="How would you like to stay in touch?").first.wait_for(timeout=20000)


async def test_reload_and_new_tabs_continue_the_same_chat(page_only):
    p = page_only
    user_id = await p.started_user()
    await p.page.reload()
    await p.page.locator(".msg.user", has_text="/start").wait_for(timeout=20000)
    assert await p.user_id() == user_id
    other = await p.page.context.new_page()  # the printed address opened again, in a new tab
    try:
        await other.goto(p.server.page_url)
        await other.locator(".msg.user", has_text="/start").wait_for(timeout=20000)
        assert int(await other.evaluate("document.documentElement.dataset.sandboxUser")) == user_id
    finally:
        await other.close()
    # A user saved by another sandbox run (which forgot its users) is not reused.
    await p.page.evaluate("""() => {
        for (const store of [localStorage, sessionStorage]) {
            const saved = JSON.parse(store.getItem('nazaha-sandbox:default'));
            saved.runId = 'an-earlier-run';
            store.setItem('nazaha-sandbox:default', JSON.stringify(saved));
        }
    }""")
    await p.page.reload()
    await p.page.locator("#start").wait_for(timeout=20000)
    assert await p.user_id() != user_id
    # "New chat" starts over on purpose.
    second = await p.user_id()
    await p.page.locator("#new-chat").click()
    await p.page.wait_for_function(f"document.documentElement.dataset.sandboxUser !== '{second}'")


async def test_keyboards_are_mirrored_in_arabic_and_commands_isolated(page_only):
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    p = page_only
    hint = p.page.locator(".empty")
    await hint.wait_for(timeout=20000)
    assert await p.page.evaluate("document.documentElement.dir") == "rtl"
    command = hint.locator("bdi[dir=ltr]")
    assert await command.inner_text() == "/start"
    slash, word = await command.evaluate("""el => {
        const t = el.firstChild, r = document.createRange();
        r.setStart(t, 0); r.setEnd(t, 1); const slash = r.getBoundingClientRect().left;
        r.setStart(t, 1); r.setEnd(t, 6); return [slash, r.getBoundingClientRect().left];
    }""")
    assert slash < word  # "/start", not "start/"

    user_id = await p.started_user()
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="نعم", callback_data="yes"),
                                                      InlineKeyboardButton(text="لا", callback_data="no")]])
    # The message's own direction does not matter (this one starts with an isolated number).
    for text in ("هل تريد المتابعة؟", "\u20662024\u2069 هل تريد المتابعة؟", "Continue?"):
        await p.bot.send_message(user_id, text, reply_markup=keyboard)
    await p.page.locator(".msg.bot").nth(2).wait_for(timeout=20000)
    for i in range(3):
        buttons = p.page.locator(".msg.bot").nth(i).locator(".keyboard button")
        yes, no = [await buttons.nth(k).bounding_box() for k in range(2)]
        assert yes["x"] > no["x"], i  # the first button on the right, as Telegram draws it in Arabic
    await p.page.select_option("#lang", "en")
    user_id = await p.started_user()
    await p.bot.send_message(user_id, "هل تريد المتابعة؟", reply_markup=keyboard)
    buttons = p.page.locator(".msg.bot .keyboard").last.locator("button")
    await buttons.first.wait_for(timeout=20000)
    yes, no = [await buttons.nth(k).bounding_box() for k in range(2)]
    assert yes["x"] < no["x"]  # left to right in English
