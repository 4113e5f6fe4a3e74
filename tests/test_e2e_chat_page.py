"""The sandbox chat page in headless Chromium, talking to the real bot process."""

from __future__ import annotations

import shutil

import pytest
import pytest_asyncio

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from tests.e2e_support import TOKEN, run_init
from nazaha.handlers import screens
from tests.test_e2e_bot import Deployment, ar, in_arabic

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]


@pytest_asyncio.fixture
async def page_and_bot(tmp_path):
    from playwright.async_api import async_playwright

    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp_path, server, client)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            page = await browser.new_page()
            try:
                await page.goto(server.url + "/")
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
