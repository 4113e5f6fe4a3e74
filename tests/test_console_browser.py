"""The caseworkers' console in headless Chromium (Playwright), served by uvicorn in the
test's own event loop on 127.0.0.1 with a clock the test moves (TOTP codes without sleeps).

One browser for the module; each test gets a fresh console on a fresh data dir and a fresh
browser context (its own cookies). Screenshots of the inbox and a case page, in Arabic and
in English, are written to ``$NAZAHA_TEST_ARTIFACTS`` (default ``test-artifacts/console/``
at the repository root) and kept as test artefacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
import pytest_asyncio

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.setup import initialise
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.casework_support import make_case
from tests.console_support import PASSPHRASE, STAFF_PASSWORD, MovableClock, console_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("NAZAHA_TEST_ARTIFACTS") or REPO / "test-artifacts" / "console")
VIEWPORT = {"width": 1366, "height": 900}
WAIT_MS = 15_000


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` on the event loop until it holds; TimeoutError after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(app) -> AsyncIterator[str]:
    """``app`` served by uvicorn on an ephemeral port of 127.0.0.1; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done())
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the console stopped before it started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)
        sock.close()


@dataclass
class LiveConsole:
    base: str
    invitation: str  # the first admin's link, on this server
    clock: MovableClock
    sessionmaker: object
    team_public: object

    async def case(self, **values) -> str:
        await make_case(self.sessionmaker, self.team_public, **values)
        return values["designation"]


@dataclass
class Member:
    username: str
    totp_secret: str

    def code(self, clock: MovableClock) -> str:
        return pyotp.TOTP(self.totp_secret).at(clock())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def console(tmp_path) -> AsyncIterator[LiveConsole]:
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    public = load_team_public_key(KeyPaths.for_data_dir(settings.data_dir))
    async with serving(app) as base:
        yield LiveConsole(
            base=base,
            invitation=base + "/" + link.split("://", 1)[1].split("/", 1)[1],
            clock=clock,
            sessionmaker=app.state.console.sessionmaker,
            team_public=public,
        )


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser, console):
    # An English-speaking browser: pages before sign-in are English, the member's own
    # language (Arabic for new members) takes over after.
    context = await browser.new_context(locale="en-US", viewport=VIEWPORT, base_url=console.base)
    context.set_default_timeout(WAIT_MS)
    tab = await context.new_page()
    try:
        yield tab
    finally:
        await context.close()


async def navigating(page, action: Callable[[], Awaitable[object]]) -> None:
    """Run ``action`` (a click that submits a form) and wait until the page it leads to,
    after any redirects, has loaded."""
    async with page.expect_navigation(wait_until="load"):
        await action()


def path_of(page) -> str:
    return urllib.parse.urlsplit(page.url).path


async def enrol_first_admin(page, console: LiveConsole, *, check_qr: bool = False) -> Member:
    """Follow the first admin's invitation: password and team passphrase, then the TOTP
    enrolment page (secret read from ``#totp-secret``), then the code: lands in the inbox."""
    await page.goto(console.invitation)
    await page.fill("input[name=password]", STAFF_PASSWORD)
    await page.fill("input[name=password_again]", STAFF_PASSWORD)
    await page.fill("input[name=team_passphrase]", PASSPHRASE)
    await navigating(page, lambda: page.click("main form button.primary"))
    assert path_of(page) == "/enrol"
    if check_qr:
        qr = page.locator(".qr img")
        await page.wait_for_function("() => document.querySelector('.qr img').complete")
        assert await qr.evaluate("img => img.naturalWidth") > 0
        assert await qr.evaluate("img => img.naturalHeight") > 0
    secret = (await page.inner_text("#totp-secret")).replace(" ", "")
    assert len(secret) >= 16
    member = Member("admin", secret)
    await page.fill("input[name=code]", member.code(console.clock))
    await navigating(page, lambda: page.click("main form button.primary"))
    return member


async def log_in(page, console: LiveConsole, member: Member) -> None:
    console.clock.advance(seconds=60)  # a new TOTP time step: each code works once
    await page.goto("/login")
    await page.fill("input[name=username]", member.username)
    await page.fill("input[name=password]", STAFF_PASSWORD)
    await page.fill("input[name=code]", member.code(console.clock))
    await navigating(page, lambda: page.click("main form button.primary"))


async def log_out(page) -> None:
    await navigating(page, lambda: page.click("form[action='/logout'] button"))


async def switch_language(page, locale: str, then: str) -> None:
    """The language button in the top bar (it returns to the page it was pressed on), then
    ``then``."""
    await navigating(page, lambda: page.click(f".topbar-end button[name=locale][value={locale}]"))
    if path_of(page) != then:
        await page.goto(then)
    assert await page.get_attribute("html", "lang") == locale


async def inbox_designations(page) -> list[str]:
    return [text.strip() for text in await page.locator("#inbox tbody td.designation bdi").all_inner_texts()]


async def apply_filters(page) -> None:
    await navigating(page, lambda: page.click("form[role=search] button.primary"))


# ------------------------------------------------------------------------------ the flow


async def test_invitation_to_logout_in_a_real_browser(page, console):
    await console.case(designation="R-ABC234", fields={"description": "a bribe was asked for a building permit"})
    await console.case(designation="R-CMP567", kind="complaint", category=None, service="health", sector=None,
                       fields={"description": "the clinic in Jenin is closed on weekdays"})
    await console.case(designation="R-WTR789", kind="complaint", category=None, service="water_electricity",
                       sector=None, fields={"description": "the water office never answers the phone"})

    # Invitation → password and team passphrase → TOTP enrolment (the QR image loads) →
    # the first code → the inbox.
    admin = await enrol_first_admin(page, console, check_qr=True)
    assert path_of(page) == "/cases"
    assert sorted(await inbox_designations(page)) == ["R-ABC234", "R-CMP567", "R-WTR789"]

    # Log out, log in again with a new code.
    await log_out(page)
    assert path_of(page) == "/login"
    await log_in(page, console, admin)
    assert path_of(page) == "/cases"

    # Filter with the form: complaints only.
    await page.select_option("form[role=search] select[name=kind]", "complaint")
    await apply_filters(page)
    assert "kind=complaint" in page.url
    assert sorted(await inbox_designations(page)) == ["R-CMP567", "R-WTR789"]
    # Search the decrypted content, within the filter (the kind stays selected).
    await page.fill("form[role=search] input[name=q]", "clinic")
    await apply_filters(page)
    assert await inbox_designations(page) == ["R-CMP567"]
    await page.fill("form[role=search] input[name=q]", "bribe")
    await apply_filters(page)
    assert await inbox_designations(page) == []
    await page.select_option("form[role=search] select[name=kind]", "")
    await apply_filters(page)
    assert await inbox_designations(page) == ["R-ABC234"]

    # Open the case, reply, change status.
    await navigating(page, lambda: page.click("#inbox a[href='/cases/R-ABC234']"))
    assert path_of(page) == "/cases/R-ABC234"
    assert "a bribe was asked for a building permit" in await page.inner_text("dl.fields")
    reply = "Thank you. We are looking into it and will write again within two weeks."
    await page.fill("#reply-body", reply)
    await navigating(page, lambda: page.click("#reply-form button.primary"))
    assert path_of(page) == "/cases/R-ABC234"
    staff_messages = await page.locator("#thread li.staff").all_inner_texts()
    assert len(staff_messages) == 1 and reply in staff_messages[0]

    before = (await page.inner_text(".case-summary .status")).strip()
    await page.select_option("#status-select", "acknowledged")
    wanted = (await page.locator("#status-select option[value=acknowledged]").inner_text()).strip()
    assert wanted and wanted != before
    await navigating(page, lambda: page.click("#status-form button.primary"))
    assert await page.locator(".notice.error").count() == 0
    assert (await page.inner_text(".case-summary .status")).strip() == wanted
    assert await page.locator("#status-select option[value=acknowledged]").count() == 0  # no longer a next step

    # Log out: the cases are behind the login page again, also when going back.
    await log_out(page)
    assert path_of(page) == "/login"
    await page.go_back(wait_until="load")
    assert path_of(page) == "/login"
    await page.goto("/cases")
    assert path_of(page) == "/login"
    await page.goto("/cases/R-ABC234")
    assert path_of(page) == "/login"
    assert await page.locator("#thread").count() == 0


# ------------------------------------------------------------------------------ injection

SCRIPT = "<script>window.__pwned=1</script>"
IMAGE = '<img src=x onerror="window.__pwned=1">'
LINK = '<a href="javascript:window.__pwned=1">click</a>'
URL = "javascript:window.__pwned=1"
BREAKOUT = '"><script>window.__pwned=1</script>'
PAYLOADS = (SCRIPT, IMAGE, LINK, URL, BREAKOUT)


class PageWatch:
    """What a page says on its console, its uncaught errors and the requests it makes."""

    def __init__(self, page) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text} @{message.location}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("response", lambda response: response.status >= 400 and self.failed.append(f"{response.status} {response.url}"))


async def assert_inert(page, base: str) -> None:
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    scripts = await page.evaluate("Array.from(document.querySelectorAll('script'), s => s.src || '(inline)')")
    assert scripts == [base + "/static/console.js"], scripts
    assert await page.locator("img[src='x']").count() == 0
    assert await page.locator("[onerror], [onload], [onclick]").count() == 0
    assert await page.locator("a[href^='javascript:' i]").count() == 0


async def test_a_hostile_report_renders_as_inert_text(page, console):
    watch = PageWatch(page)
    await console.case(
        designation="R-XSS234",
        fields={"description": "\n".join(PAYLOADS), "contact_name": IMAGE, "contact_phone": URL},
        messages=[("reporter", f"{SCRIPT} and {LINK} and {IMAGE}", False), ("reporter", URL, False)],
    )
    await console.case(designation="R-PLN345", fields={"description": "a quiet report about a permit"})
    await enrol_first_admin(page, console)
    await assert_inert(page, console.base)

    # The search echoes the query into its field: still text.
    for query in (SCRIPT, BREAKOUT):
        await page.fill("form[role=search] input[name=q]", query)
        await apply_filters(page)
        assert await inbox_designations(page) == ["R-XSS234"]
        assert await page.input_value("form[role=search] input[name=q]") == query
        await assert_inert(page, console.base)

    await navigating(page, lambda: page.click("#inbox a[href='/cases/R-XSS234']"))
    assert path_of(page) == "/cases/R-XSS234"
    # Staff text goes through the same pages: a reply and a note carrying the payloads.
    await page.fill("#reply-body", f"reply {SCRIPT} {IMAGE}")
    await navigating(page, lambda: page.click("#reply-form button.primary"))
    await page.fill("form[action$='/note'] textarea[name=body]", f"note {LINK} {BREAKOUT}")
    await navigating(page, lambda: page.click("form[action$='/note'] button"))
    await assert_inert(page, console.base)

    answers = await page.inner_text("dl.fields")
    thread = await page.inner_text("#thread")
    notes = await page.inner_text("#notes")
    for payload in PAYLOADS:
        assert payload in answers, payload
    for payload in (SCRIPT, LINK, IMAGE, URL):
        assert payload in thread, payload
    assert f"reply {SCRIPT} {IMAGE}" in thread
    assert f"note {LINK} {BREAKOUT}" in notes
    # The link text shows as text; nothing can be clicked to run it.
    assert await page.locator("main a", has_text="click").count() == 0

    # Nothing from the payload reached the console: no errors, no CSP reports (which would
    # mean a payload became inline markup), no request for the image "x".
    assert watch.errors == []
    suspicious = ("pwned", "content security policy", "inline", "javascript:", "onerror", "refused")
    assert [m for m in watch.console if any(word in m.lower() for word in suspicious)] == []
    assert [m for m in watch.console if m.startswith("error")] == [], watch.failed
    assert [url for url in watch.requests if url.rstrip("/").endswith("/x")] == []


# ------------------------------------------------------------------------------ Arabic

ARABIC_WITH_LATIN = "طلب موظف في مكتب Ramallah Permits Office مبلغا مقابل تسريع المعاملة"
THREAD_WITH_FILE = "أرسلت لكم الملف scan_2026-10-28.pdf أمس مع صورة الإيصال"


async def _left(page, selector: str, text: str) -> float:
    """The left edge of ``text`` as drawn inside the first element matching ``selector``."""
    return await page.locator(selector).first.evaluate(
        """(el, text) => {
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const at = node.data.indexOf(text);
                if (at >= 0) {
                    const range = document.createRange();
                    range.setStart(node, at);
                    range.setEnd(node, at + text.length);
                    return range.getBoundingClientRect().left;
                }
            }
            throw new Error("text not found: " + text);
        }""",
        text,
    )


async def _direction(locator) -> str:
    return await locator.evaluate("el => getComputedStyle(el).direction")


async def _html_dir_lang(page) -> tuple[str | None, str | None]:
    return await page.get_attribute("html", "dir"), await page.get_attribute("html", "lang")


async def _check_ltr_run(locator, text: str) -> None:
    """A left-to-right run in its ``<bdi dir="ltr">``: its direction and its exact text."""
    assert await locator.get_attribute("dir") == "ltr"
    assert await _direction(locator) == "ltr"
    assert (await locator.inner_text()) == text


async def test_arabic_pages_are_right_to_left_and_mixed_runs_read_correctly(page, console):
    await console.case(designation="R-ABC234", governorate="ramallah", created_on=dt.date(2026, 11, 1),
                       fields={"description": ARABIC_WITH_LATIN, "language": "ar"},
                       messages=[("reporter", THREAD_WITH_FILE, False)])
    await console.case(designation="R-CMP567", kind="complaint", category=None, service="health", sector=None,
                       created_on=dt.date(2026, 11, 20), fields={"description": "العيادة مغلقة"})
    await enrol_first_admin(page, console)  # enrolled in the browser's language (English here)
    if await page.get_attribute("html", "lang") != "ar":
        await switch_language(page, "ar", "/cases")

    # The inbox, right to left.
    assert path_of(page) == "/cases"
    assert await _html_dir_lang(page) == ("rtl", "ar")
    table = page.locator("#inbox")
    assert await _direction(table) == "rtl"
    # The first column (the check boxes) is the rightmost one.
    first, second = page.locator("#inbox thead th").nth(0), page.locator("#inbox thead th").nth(1)
    assert (await first.bounding_box())["x"] > (await second.bounding_box())["x"]
    row = page.locator("#inbox tbody tr", has=page.locator("a[href='/cases/R-ABC234']"))
    await _check_ltr_run(row.locator("td.designation bdi"), "R-ABC234")
    received = row.locator("bdi", has_text="2026-11-01")
    await _check_ltr_run(received, "2026-11-01")
    # Drawn left to right: the year to the left of the day, "R" to the left of "234".
    assert await _left(page, "#inbox a[href='/cases/R-ABC234'] bdi", "R-") < await _left(page, "#inbox a[href='/cases/R-ABC234'] bdi", "234")

    # The case page, right to left.
    await navigating(page, lambda: page.click("#inbox a[href='/cases/R-ABC234']"))
    assert await _html_dir_lang(page) == ("rtl", "ar")
    assert await _direction(page.locator("main")) == "rtl"
    await _check_ltr_run(page.locator("h1 bdi"), "R-ABC234")
    await _check_ltr_run(page.locator(".case-summary bdi"), "2026-11-01")
    # Two dates in one Arabic sentence: the first (acknowledgement due) is to the right.
    dates = page.locator(".deadlines bdi")
    assert await dates.count() == 2
    ack, feedback = (await dates.nth(0).inner_text()), (await dates.nth(1).inner_text())
    assert ack == "2026-11-08" and feedback.startswith("2027-")
    assert (await dates.nth(0).bounding_box())["x"] > (await dates.nth(1).bounding_box())["x"]
    for i in range(2):
        assert await _direction(dates.nth(i)) == "ltr"

    # The Latin name inside the Arabic answer keeps its order, between the Arabic words.
    answer = page.locator("dl.fields dd", has_text="Ramallah")
    assert await _direction(answer) == "rtl"  # dir=auto: the first strong letter is Arabic
    assert ARABIC_WITH_LATIN in await answer.inner_text()
    dd = "dl.fields dd:has-text('Ramallah')"
    ramallah, office = await _left(page, dd, "Ramallah"), await _left(page, dd, "Office")
    before, after = await _left(page, dd, "مكتب"), await _left(page, dd, "مبلغا")
    assert after < ramallah < office < before
    # A file name inside an Arabic message of the thread: drawn left to right as written.
    message = "#thread li.reporter"
    assert THREAD_WITH_FILE in await page.inner_text(message)
    assert await _left(page, message, "scan_") < await _left(page, message, "2026-10-28") < await _left(page, message, ".pdf")
    assert await _left(page, message, "أمس") < await _left(page, message, "scan_")

    # English: left to right, the same runs read the same.
    await switch_language(page, "en", "/cases/R-ABC234")
    assert await _html_dir_lang(page) == ("ltr", "en")
    assert await _direction(page.locator("main")) == "ltr"
    dates = page.locator(".deadlines bdi")
    assert (await dates.nth(0).bounding_box())["x"] < (await dates.nth(1).bounding_box())["x"]
    await page.goto("/cases")
    assert await _html_dir_lang(page) == ("ltr", "en")
    assert await _direction(page.locator("#inbox")) == "ltr"
    # And back to Arabic with the button: the choice sticks to the member.
    await switch_language(page, "ar", "/cases")
    assert await _html_dir_lang(page) == ("rtl", "ar")
    assert await _direction(page.locator("#inbox")) == "rtl"


# ------------------------------------------------------------------------------ screenshots


async def test_screenshots_of_inbox_and_case_in_both_languages(page, console):
    await console.case(designation="R-ABC234", governorate="ramallah", created_on=dt.date(2026, 11, 1),
                       fields={"when": "last_month", "description": ARABIC_WITH_LATIN + "\n" + "وقال إن الملف لن يتحرك قبل الدفع.",
                               "contact_name": "سمير", "language": "ar"},
                       messages=[("reporter", THREAD_WITH_FILE, True),
                                 ("staff", "شكرا لكم، وصلنا البلاغ وسنتابعه.", True),
                                 ("reporter", "هل من جديد؟", False)])
    await console.case(designation="R-CMP567", kind="complaint", category=None, service="health", sector=None,
                       governorate="jenin", created_on=dt.date(2026, 11, 20),
                       fields={"description": "the clinic in Jenin is closed on weekdays"})
    await console.case(designation="R-PRC345", category="procurement", sector="local_council", governorate="hebron",
                       status="acknowledged", created_on=dt.date(2026, 9, 2),
                       fields={"description": "a tender was awarded to the mayor's cousin"})
    await console.case(designation="R-NPT678", category="nepotism", sector="public_enterprise", governorate="gaza",
                       status="closed", outcome="substantiated", created_on=dt.date(2026, 6, 15),
                       fields={"description": "تعيينات بلا مسابقة"})
    await console.case(designation="R-KHY923", category="abuse_of_office", sector="security", governorate="khan_yunis",
                       created_on=dt.date(2026, 11, 27), fields={"description": "مصادرة بضائع بلا إيصال"})
    await enrol_first_admin(page, console)

    # A case with some history: a note, a label, an assignment, a priority.
    await page.goto("/cases/R-ABC234")
    await page.fill("form[action$='/note'] textarea[name=body]", "اتصلنا بالوزارة — ننتظر الرد")
    await navigating(page, lambda: page.click("form[action$='/note'] button"))
    await page.fill("form[action$='/labels/add'] input[name=label]", "permits")
    await navigating(page, lambda: page.click("form[action$='/labels/add'] button"))
    await page.select_option("form[action$='/priority'] select[name=priority]", "high")
    await navigating(page, lambda: page.click("form[action$='/priority'] button"))
    assigned = page.locator("form[action$='/assign'] select[name=assignee] option", has_text="admin")
    await page.select_option("form[action$='/assign'] select[name=assignee]", await assigned.get_attribute("value"))
    await navigating(page, lambda: page.click("form[action$='/assign'] button"))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = []
    for locale in ("ar", "en"):
        if await page.get_attribute("html", "lang") != locale:
            await switch_language(page, locale, "/cases")
        for name, path in (("inbox", "/cases"), ("case", "/cases/R-ABC234")):
            await page.goto(path)
            assert await page.get_attribute("html", "lang") == locale
            await page.evaluate("document.fonts.ready")
            target = ARTIFACTS / f"{name}-{locale}.png"
            target.unlink(missing_ok=True)
            await page.screenshot(path=str(target), full_page=True)
            shots.append(target)
            # Nothing wider than the window: no horizontal scrolling on a laptop screen.
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, locale)
    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 20_000, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------ the inbox's width


async def _seed_a_full_inbox(console: LiveConsole) -> None:
    """Cases whose rows are as wide as the inbox gets: every deadline flag, a closed case
    with the longest outcome, three labels (one of 32 characters), an assignee, a case
    received today and one received yesterday."""
    from sqlalchemy import select

    from nazaha.services import workflow
    from nazaha.services.access import Viewer
    from nazaha.storage.console_models import StaffUser
    from nazaha.storage.database import write_session
    from nazaha.storage.models import Report

    today = console.clock().date()
    for spec in (
        dict(designation="R-TDY234", created_on=today),
        dict(designation="R-ONE234", created_on=today - dt.timedelta(days=1), category="abuse_of_office",
             sector="public_enterprise", governorate="deir_al_balah"),
        dict(designation="R-ACK234", created_on=today - dt.timedelta(days=12), category="nepotism",
             sector="local_council", governorate="ramallah"),
        dict(designation="R-FBK234", created_on=today - dt.timedelta(days=130), status="acknowledged",
             category="procurement", governorate="khan_yunis"),
        dict(designation="R-SVC234", kind="complaint", category=None, service="health", sector=None,
             governorate="jericho", created_on=today - dt.timedelta(days=5)),
        dict(designation="R-CLS234", status="closed", outcome="insufficient_information",
             created_on=today - dt.timedelta(days=400), governorate="north_gaza"),
    ):
        await console.case(**spec)
    async with console.sessionmaker() as session:
        admin_id = (await session.scalars(select(StaffUser.id).where(StaffUser.role == "admin"))).one()
        ids = dict((await session.execute(select(Report.designation, Report.id))).all())
    admin, now = Viewer(admin_id, "admin"), console.clock()
    async with write_session(console.sessionmaker) as session:
        await workflow.assign(session, admin, list(ids.values()), admin_id, now=now)
        for label in ("legal hold", "needs-translation", "procurementministryofhealth2026x"):
            await workflow.add_label(session, admin, [ids["R-ACK234"], ids["R-FBK234"]], label, now=now)
        await workflow.set_priority(session, admin, ids["R-ACK234"], "urgent", now=now)


async def test_the_inbox_fits_a_1200_px_window_in_both_languages(page, console):
    """At 1200 px the inbox's thirteen columns fit without scrolling, in English and in
    Arabic: no cell reaches past the table's card, no header is cut ("Deadlin"), every date
    is whole on one line ("2026-12" then "07" below is not), nothing is hidden. The age of a
    case received today reads "less than a day" in both languages (not "0 days" in one)."""
    from nazaha.admin import i18n

    await enrol_first_admin(page, console)
    await _seed_a_full_inbox(console)
    await page.set_viewport_size({"width": 1200, "height": 900})
    measure = """() => {
        const table = document.querySelector('#inbox'), card = table.parentElement, box = card.getBoundingClientRect();
        const cells = Array.from(table.querySelectorAll('th, td')).map(c => c.getBoundingClientRect());
        const cut = Array.from(table.querySelectorAll('thead th')).filter(th => th.scrollWidth > th.clientWidth)
            .map(th => th.innerText);
        const dates = Array.from(table.querySelectorAll('.date')).map(d => [d.innerText, d.getClientRects().length,
            d.getBoundingClientRect().right <= box.right && d.getBoundingClientRect().left >= box.left]);
        return {scroll: card.scrollWidth - card.clientWidth, page: document.documentElement.scrollWidth - innerWidth,
                outside: cells.filter(r => r.right > box.right + 0.5 || r.left < box.left - 0.5).length,
                cut, dates, columns: table.querySelectorAll('thead th').length,
                hidden: cells.filter(r => r.width === 0).length};
    }"""
    for locale in ("en", "ar"):
        if await page.get_attribute("html", "lang") != locale:
            await switch_language(page, locale, "/cases")
        await page.goto("/cases")
        await page.evaluate("document.fonts.ready")
        layout = await page.evaluate(measure)
        assert layout["scroll"] <= 0 and layout["page"] <= 0, (locale, layout)
        assert layout["outside"] == 0 and layout["cut"] == [] and layout["hidden"] == 0, (locale, layout)
        assert layout["columns"] == 13
        assert len(layout["dates"]) >= 6 + 4  # received: six; due: the four open cases
        for text, lines, inside in layout["dates"]:
            assert len(text) == 10 and text[4] == text[7] == "-" and lines == 1 and inside, (locale, text, lines)
        deadline = page.locator("#inbox tbody tr", has=page.locator("a[href='/cases/R-FBK234']")).locator("td").last
        assert "2026-" in await deadline.inner_text() or "2027-" in await deadline.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"inbox-1200-{locale}.png"), full_page=True)

        i18n.set_locale(locale)
        try:
            today, yesterday = i18n.gettext("less than a day"), i18n.ngettext("%(num)d day", "%(num)d days", 1)
        finally:
            i18n.set_locale("ar")
        ages = {}
        for designation in ("R-TDY234", "R-ONE234"):
            row = page.locator("#inbox tbody tr", has=page.locator(f"a[href='/cases/{designation}']"))
            ages[designation] = (await row.locator("td.age").inner_text()).strip()
        assert ages == {"R-TDY234": today, "R-ONE234": yesterday}, (locale, ages)
        assert "0" not in ages["R-TDY234"]
    assert ages["R-ONE234"] == "يوم واحد"
