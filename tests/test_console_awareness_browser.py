"""Awareness in headless Chromium (Playwright): a volunteer composes and schedules a broadcast
and sees its preview as Telegram will show it, an administrator approves it, and the
volunteer watches its delivery progress while the test plays the sender (outbox rows written
into the database: the page follows by itself, with no inline script); the volunteer cannot
open a case. Screenshots of the preview (Arabic, right to left), of the review card with the
links' addresses, and of the progress page go to ``$NAZAHA_TEST_ARTIFACTS`` (default
``test-artifacts/console/``)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.setup import initialise
from nazaha.storage.awareness_models import (
    AwarenessTopic,
    AwarenessTopicText,
    Broadcast,
    BroadcastOutbox,
    Subscriber,
)
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.console_support import PASSPHRASE, STAFF_PASSWORD, MovableClock, console_settings
from tests.test_console_browser import (  # noqa: F401 - the module's browser fixture
    ARTIFACTS,
    CHROMIUM,
    VIEWPORT,
    WAIT_MS,
    LiveConsole,
    Member,
    PageWatch,
    browser,
    enrol_first_admin,
    navigating,
    path_of,
    serving,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]

BOT = "nazaha_demo_bot"


@pytest_asyncio.fixture(loop_scope="module")
async def console(tmp_path) -> AsyncIterator[LiveConsole]:
    settings = console_settings(tmp_path / "var", bot_username=BOT)
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    sessionmaker = app.state.console.sessionmaker
    async with sessionmaker.begin() as session:  # `nazaha init` has loaded the content files
        if await session.get(AwarenessTopic, "rights") is None:
            session.add(AwarenessTopic(code="rights", position=1, origin="file"))
            await session.flush()
            session.add(AwarenessTopicText(topic="rights", language="en", title="Your rights", summary=""))
            session.add(AwarenessTopicText(topic="rights", language="ar", title="حقوقك", summary=""))
    async with serving(app) as base:
        yield LiveConsole(
            base=base, invitation=base + "/" + link.split("://", 1)[1].split("/", 1)[1], clock=clock,
            sessionmaker=sessionmaker, team_public=load_team_public_key(KeyPaths.for_data_dir(settings.data_dir)),
        )


async def new_tab(browser, console: LiveConsole):
    context = await browser.new_context(locale="en-US", viewport=VIEWPORT, base_url=console.base)
    context.set_default_timeout(WAIT_MS)
    tab = await context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the "are you sure?" of data-confirm buttons
    return context, tab


async def invite_volunteer(admin, volunteer, console: LiveConsole, username: str) -> Member:
    """The admin invites ``username`` as a volunteer on the Team page; the volunteer follows
    the link in their own browser, chooses a password and enrols the authenticator."""
    await admin.goto("/users")
    await admin.fill("form[action='/users/invite'] input[name=username]", username)
    await admin.select_option("form[action='/users/invite'] select[name=role]", "volunteer")
    await navigating(admin, lambda: admin.click("form[action='/users/invite'] button.primary"))
    link = (await admin.inner_text("#invitation-link")).strip()
    await volunteer.goto(console.base + "/" + link.split("://", 1)[1].split("/", 1)[1])
    await volunteer.fill("input[name=password]", STAFF_PASSWORD)
    await volunteer.fill("input[name=password_again]", STAFF_PASSWORD)
    await navigating(volunteer, lambda: volunteer.click("main form button.primary"))
    assert path_of(volunteer) == "/enrol"
    secret = (await volunteer.inner_text("#totp-secret")).replace(" ", "")
    enrolled = Member(username, secret)
    console.clock.advance(seconds=60)
    await volunteer.fill("input[name=code]", enrolled.code(console.clock))
    await navigating(volunteer, lambda: volunteer.click("main form button.primary"))
    return enrolled


async def set_outbox(console: LiveConsole, broadcast_id: int, states: list[str]) -> None:
    """Play the sender: one outbox row per recipient in ``states`` (rows made as needed).
    A write transaction (BEGIN IMMEDIATE, the engine's writer lock) waits for the console's
    writers instead of failing with "database is locked" when a deferred one upgrades."""
    from nazaha.storage.database import write_transaction

    async with write_transaction(console.sessionmaker) as session:
        rows = (await session.scalars(select(BroadcastOutbox).where(BroadcastOutbox.broadcast_id == broadcast_id)
                                      .order_by(BroadcastOutbox.id))).all()
        for index, state in enumerate(states):
            if index < len(rows):
                rows[index].state = state
                continue
            subscriber = Subscriber(chat_key=f"{broadcast_id:08x}{index:056x}", sealed_chat=b"x", language="ar",
                                    active=True, joined_on=dt.date(2026, 11, 1))
            session.add(subscriber)
            await session.flush()
            session.add(BroadcastOutbox(broadcast_id=broadcast_id, subscriber_id=subscriber.id, state=state))


async def count_on_page(page, state: str) -> str:
    return (await page.inner_text(f"#count-{state} strong")).strip()


async def test_a_volunteer_composes_an_admin_approves_and_the_volunteer_watches_delivery(browser, console):
    admin_context, admin = await new_tab(browser, console)
    volunteer_context, volunteer = await new_tab(browser, console)
    watch = PageWatch(volunteer)
    try:
        await enrol_first_admin(admin, console)
        await invite_volunteer(admin, volunteer, console, "vera")
        # A volunteer lands on Awareness; the menu has nothing else. She works in Arabic.
        assert path_of(volunteer) == "/awareness"
        await navigating(volunteer, lambda: volunteer.click(".topbar-end button[name=locale][value=ar]"))
        assert await volunteer.get_attribute("html", "dir") == "rtl"
        assert await volunteer.locator(".mainnav a").evaluate_all("links => links.map(a => a.getAttribute('href'))") == ["/awareness"]

        # Compose and schedule.
        await navigating(volunteer, lambda: volunteer.click("#hub-broadcasts"))
        await navigating(volunteer, lambda: volunteer.click("#compose-link"))
        await volunteer.fill("input[name=name]", "Rights week")
        await volunteer.fill("#body-ar", "**اعرف حقوقك**: يحق لك *الوصول إلى المعلومات*. [أمان](https://www.aman-palestine.org)")
        await volunteer.fill("#body-en", "**Know your rights**: you may *ask for information*. [AMAN](https://www.aman-palestine.org)")
        await volunteer.check("input[name=topic][value=rights]")
        await volunteer.fill("input[name=send_date]", "2026-12-03")
        await volunteer.fill("input[name=send_time]", "19:00")
        await navigating(volunteer, lambda: volunteer.click("#save-preview"))
        broadcast_id = int(re.fullmatch(r"/awareness/broadcasts/(\d+)", path_of(volunteer)).group(1))

        # The preview: the Arabic bubble right to left with its formatting, the button under it.
        arabic = volunteer.locator("#preview-ar .tg-chat")
        assert await arabic.get_attribute("dir") == "rtl"
        assert await arabic.evaluate("el => getComputedStyle(el.querySelector('.tg-text')).direction") == "rtl"
        assert (await volunteer.inner_text("#preview-ar .tg-text b")).strip() == "اعرف حقوقك"
        assert await volunteer.locator("#preview-en .tg-text a[href='https://www.aman-palestine.org']").inner_text() == "AMAN"
        assert await volunteer.locator("#preview-en .tg-button").all_inner_texts() == ["Unsubscribe"]
        assert await volunteer.locator("#preview-en .tg-length.over").count() == 0
        # Under the preview, where its link leads: the whole address, left to right inside Arabic.
        address = volunteer.locator("#links-ar .address")
        assert (await address.inner_text()).strip() == "https://www.aman-palestine.org"
        assert await address.evaluate("el => getComputedStyle(el).direction") == "ltr"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await volunteer.screenshot(path=str(ARTIFACTS / "awareness-preview-ar.png"), full_page=True)
        async with console.sessionmaker() as session:
            row = await session.get(Broadcast, broadcast_id)
        assert row.send_at == dt.datetime(2026, 12, 3, 17, 0, tzinfo=dt.timezone.utc)  # 19:00 Palestine time

        await navigating(volunteer, lambda: volunteer.click("#submit-button"))
        assert await volunteer.locator("#action-done").count() == 1
        async with console.sessionmaker() as session:
            assert (await session.get(Broadcast, broadcast_id)).status == "submitted"
        assert await volunteer.locator("#approve-button").count() == 0

        # The administrator approves it.
        await admin.goto("/awareness")
        assert await admin.locator("#hub-broadcasts .flag").count() == 1  # one waits for approval
        await navigating(admin, lambda: admin.click("#hub-broadcasts"))
        await navigating(admin, lambda: admin.click(f"#broadcast-{broadcast_id} a"))
        assert await admin.locator("#preview-ar .tg-text b").count() == 1
        # The review card lists every link of each version with its address, the host in bold.
        for language in ("ar", "en"):
            assert await admin.locator(f"#review-links-{language} .address").all_inner_texts() == ["https://www.aman-palestine.org"]
        host = admin.locator("#review-links-en .host")
        assert (await host.inner_text()).strip() == "www.aman-palestine.org"
        assert int(await host.evaluate("el => getComputedStyle(el).fontWeight")) >= 600
        await admin.locator("#review").screenshot(path=str(ARTIFACTS / "awareness-review-links.png"))
        await navigating(admin, lambda: admin.click("#approve-button"))
        async with console.sessionmaker() as session:
            assert (await session.get(Broadcast, broadcast_id)).status == "approved"

        # The volunteer sees the decision and follows the delivery.
        await volunteer.reload()
        status = (await volunteer.inner_text("#broadcast-status")).strip()
        await navigating(volunteer, lambda: volunteer.click("#progress-link"))
        assert status and (await volunteer.inner_text("#progress-status")).strip() == status
        assert await count_on_page(volunteer, "sent") == "0"

        # The sender starts: the page follows without being touched.
        async with console.sessionmaker.begin() as session:
            await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(status="sending", started_at=console.clock()))
        await set_outbox(console, broadcast_id, ["sent"] * 3 + ["queued"] * 5)
        await volunteer.wait_for_function("() => document.querySelector('#count-sent strong').textContent.trim() === '3'", timeout=20_000)
        assert await count_on_page(volunteer, "queued") == "5"
        assert await count_on_page(volunteer, "total") == "8"
        await set_outbox(console, broadcast_id, ["sent"] * 6 + ["blocked", "failed"])
        await volunteer.wait_for_function("() => document.querySelector('#count-sent strong').textContent.trim() === '6'", timeout=20_000)
        assert (await count_on_page(volunteer, "blocked"), await count_on_page(volunteer, "failed"), await count_on_page(volunteer, "queued")) == ("1", "1", "0")
        async with console.sessionmaker.begin() as session:
            await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(status="done", finished_at=console.clock()))
        await volunteer.wait_for_function("() => !document.querySelector('meta[http-equiv=refresh]')", timeout=20_000)
        await volunteer.screenshot(path=str(ARTIFACTS / "awareness-progress-ar.png"), full_page=True)

        # No case for a volunteer, whatever the address.
        for path in ("/cases", "/cases/R-ABC234", "/statistics", "/templates"):
            answer = await volunteer.goto(path)
            assert answer.status == 403, path
        assert watch.errors == []
        assert [m for m in watch.console if "content security policy" in m.lower()] == []
    finally:
        await admin_context.close()
        await volunteer_context.close()
