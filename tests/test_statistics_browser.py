"""The statistics page in headless Chromium, in Arabic: every chart loads as an image under
the console's CSP (no console errors, no request leaves the console), its table is beside
it, the print view shows the published figures; a screenshot is kept as
``test-artifacts/console/statistics-ar.png`` (and the print view as a PDF next to it)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_console_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    CHROMIUM,
    PageWatch,
    browser,
    console,
    enrol_first_admin,
    page,
    path_of,
    switch_language,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]

SEEDS = (
    [("corruption", "bribery", None, "ministry", "nablus")] * 14
    + [("corruption", "nepotism", None, "local_council", "hebron")] * 7
    + [("corruption", "procurement", None, "security", "gaza")] * 3
    + [("complaint", None, "health", None, "jenin")] * 9
    + [("complaint", None, "education", None, "ramallah")] * 2
)


async def test_the_statistics_page_in_arabic(page, console):
    today = console.clock().date()
    for i, (kind, category, service, sector, governorate) in enumerate(SEEDS):
        await console.case(designation=f"R-ST{i:03d}X", kind=kind, category=category, service=service, sector=sector,
                           governorate=governorate, created_on=today - dt.timedelta(days=2 + 9 * i))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watch = PageWatch(page)
    await enrol_first_admin(page, console)
    await page.goto("/statistics")
    assert path_of(page) == "/statistics"
    await switch_language(page, "ar", "/statistics")
    assert await page.get_attribute("html", "lang") == "ar" and await page.get_attribute("html", "dir") == "rtl"
    await page.wait_for_function(
        "() => Array.from(document.querySelectorAll('img.chart')).every(i => i.complete && i.naturalWidth > 0)"
    )
    charts = page.locator("img.chart")
    assert await charts.count() == 8
    governorates = page.locator("#stats-governorate table tbody tr")
    assert await governorates.count() == 5
    assert "نابلس" in await page.inner_text("#stats-governorate table")
    # Small counts are marked on screen with the exact number.
    assert await page.locator("#stats-governorate .small-cell").count() == 2  # gaza 3, ramallah 2
    await page.screenshot(path=str(ARTIFACTS / "statistics-ar.png"), full_page=True)

    # The print view: no menu, no form, the published figures instead of the exact small ones.
    await page.emulate_media(media="print")
    assert not await page.locator("#stats-range").is_visible()
    assert not await page.locator(".mainnav").is_visible()
    printed = await page.inner_text("#stats-governorate table")
    assert "<5" in printed
    await page.emulate_media(media="screen")
    await page.pdf(path=str(ARTIFACTS / "statistics-ar.pdf"))

    base = console.base
    assert all(url.startswith(base) for url in watch.requests), [u for u in watch.requests if not u.startswith(base)]
    assert watch.failed == [] and watch.errors == []
    assert not [m for m in watch.console if m.startswith("error")], watch.console
