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
                           governorate=governorate, created_on=today - dt.timedelta(days=2 + 3 * i))
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
    # A chart for each table with a bar to draw; services (health 9, withheld as the
    # complement of education 2) have none, and no case is closed (outcomes: one line).
    charts = page.locator("img.chart")
    assert await charts.count() == 7  # six charts and the governorates' tile map
    tile_map = page.locator("#stats-governorate img.map")
    assert await tile_map.evaluate("img => img.naturalWidth") > 600
    # The map and the chart above it, the table beside both.
    boxes = [await page.locator(f"#stats-governorate {s}").bounding_box() for s in ("img.chart:not(.map)", "img.map", "table")]
    right = [box["x"] + box["width"] for box in boxes]
    assert boxes[0]["y"] < boxes[1]["y"] and abs(right[0] - right[1]) < 2  # one column, from the right
    assert boxes[2]["x"] + boxes[2]["width"] <= boxes[1]["x"] + 1  # right to left: the table on the left
    assert await page.locator("#stats-service img, #stats-outcome img").count() == 0
    assert await page.locator("#stats-service .stats-pair.stats-single table").count() == 1
    assert await page.locator("#stats-outcome.stats-empty .stats-none").count() == 1
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
    assert await page.locator("#stats-governorate img.map").evaluate("img => getComputedStyle(img).breakBefore") == "page"
    await page.pdf(path=str(ARTIFACTS / "statistics-ar.pdf"), format="A4")
    await page.emulate_media(media="screen")

    base = console.base
    assert all(url.startswith(base) for url in watch.requests), [u for u in watch.requests if not u.startswith(base)]
    assert watch.failed == [] and watch.errors == []
    assert not [m for m in watch.console if m.startswith("error")], watch.console


async def test_the_statistics_page_prints_cleanly_with_few_or_no_cases(page, console):
    """Printed (A4): a range without cases gives one or two pages of one-line sections, not a
    page of empty axes per chart; a chart with nothing to draw leaves no half-width box (its
    line and table take the section's width); medians of fewer than 5 cases print as "x",
    never the exact number, and the key explains "x"."""
    import io

    import pypdfium2
    from sqlalchemy import select

    from nazaha.services import workflow
    from nazaha.services.access import Viewer
    from nazaha.storage.console_models import StaffUser
    from nazaha.storage.database import write_session
    from nazaha.storage.models import Report

    today = console.clock().date()
    ids = []
    for i in range(3):
        ids.append(await console.case(designation=f"R-FW{i:03d}X", kind="corruption", category="bribery",
                                      sector="ministry", governorate="nablus", created_on=today - dt.timedelta(days=5)))
    await enrol_first_admin(page, console)
    async with console.sessionmaker() as session:
        admin_id = (await session.scalars(select(StaffUser.id).where(StaffUser.role == "admin"))).one()
        report_ids = (await session.scalars(select(Report.id).where(Report.designation.in_(ids)))).all()
    now = console.clock()
    for n, rid in enumerate(report_ids):  # acknowledged after 1, 2 and 3 days
        async with write_session(console.sessionmaker) as session:
            await workflow.change_status(session, Viewer(admin_id, "admin"), rid, "acknowledged", notify=False,
                                         today=today - dt.timedelta(days=4 - n), now=now)
    await switch_language(page, "ar", "/statistics")
    watch = PageWatch(page)
    layout = """() => Array.from(document.querySelectorAll('section.stats-section')).slice(1).map(s => {
        const style = getComputedStyle(s), wide = s.getBoundingClientRect().width;
        const line = s.querySelector('.stats-none'), table = s.querySelector('table');
        return {id: s.id, empty: s.classList.contains('stats-empty'), breaks: style.breakBefore,
                img: !!s.querySelector('img'),
                line: line ? line.getBoundingClientRect().width / wide : null,
                table: table ? table.getBoundingClientRect().width / wide : null};
    })"""

    # No case in the range: every section is one line, no image, and no page of its own.
    await page.goto("/statistics?from=2001-01-01&to=2001-12-31")
    await page.emulate_media(media="print")
    sections = await page.evaluate(layout)
    assert len(sections) == 8 and all(s["empty"] and not s["img"] and s["table"] is None for s in sections), sections
    assert all(s["breaks"] == "auto" and s["line"] > 0.95 for s in sections), sections
    pdf = await page.pdf(format="A4")
    await page.emulate_media(media="screen")
    (ARTIFACTS / "statistics-empty-ar.pdf").write_bytes(pdf)
    assert len(pypdfium2.PdfDocument(io.BytesIO(pdf))) <= 2

    # Three cases: every count is small, so no chart has a bar; each section's line and table
    # take its full width, on screen and in print.
    await page.goto("/statistics")
    for media in ("screen", "print"):
        await page.emulate_media(media=media)
        sections = {s["id"]: s for s in await page.evaluate(layout)}
        for name in ("stats-kind", "stats-category", "stats-sector", "stats-governorate", "stats-month",
                     "stats-status"):
            s = sections[name]
            assert not s["empty"] and not s["img"] and s["line"] > 0.95 and s["table"] > 0.95, (media, s)
            assert media == "screen" or s["breaks"] == "auto", s  # a small table: no page of its own
        assert sections["stats-service"]["empty"] and sections["stats-outcome"]["empty"]
    # Printed: the median of three cases is "x", the key says why.
    await page.emulate_media(media="print")
    summary = await page.inner_text("#stats-summary")
    rows = dict(line.split("\t") for line in summary.splitlines() if "\t" in line)
    medians = [value for label, value in rows.items() if "الوسيط" in label or "90" in label]
    assert len(medians) == 4 and medians[:2] == ["x", "x"], rows
    assert "x" in await page.inner_text(".stats-key") and await page.locator(".stats-key").is_visible()
    pdf = await page.pdf(format="A4")
    (ARTIFACTS / "statistics-few-ar.pdf").write_bytes(pdf)
    assert len(pypdfium2.PdfDocument(io.BytesIO(pdf))) <= 3
    await page.emulate_media(media="screen")
    screen = await page.inner_text("#stats-summary")
    assert dict(line.split("\t") for line in screen.splitlines() if "\t" in line) != rows  # exact on screen
    assert watch.failed == [] and watch.errors == []


async def test_arabic_charts_and_map_read_right_in_the_browser(page, console):
    """Each image opened in Chromium and measured as drawn, in Arabic: the bar chart's rows
    run top to bottom in the table's order, its suppressed rows (gaza 3, ramallah 2) are not
    drawn and the line saying so fits inside the image; in the map, "<5" reads "<" then "5"
    (in its tile and in the key), and the key starts at the right, under the map's edge."""
    today = console.clock().date()
    for i, (kind, category, service, sector, governorate) in enumerate(SEEDS):
        await console.case(designation=f"R-SA{i:03d}X", kind=kind, category=category, service=service, sector=sector,
                           governorate=governorate, created_on=today - dt.timedelta(days=2 + 3 * i))
    await enrol_first_admin(page, console)
    await switch_language(page, "ar", "/statistics")
    rows = await page.locator("#stats-governorate table tbody th").all_inner_texts()
    query = (await page.get_attribute("#stats-governorate img.map", "src")).split("?", 1)[1]

    await page.goto(f"/statistics/chart/governorate.svg?{query}")
    drawn = await page.evaluate("""() => {
        const svg = document.documentElement, [,, width, height] = svg.getAttribute('viewBox').split(' ').map(Number);
        const strip = t => t.textContent.replace(/[\\u2066-\\u2069]/g, '');
        const labels = Array.from(svg.querySelectorAll('text')).filter(t => t.getAttribute('x') === '-5')
            .map(t => ({text: strip(t), y: t.getBBox().y}));
        const caption = svg.querySelector('text.left-out'), box = caption.getBBox();
        return {width, height, labels, caption: [box.x, box.y, box.x + box.width, box.y + box.height],
                bars: svg.querySelectorAll('rect.rect').length};
    }""")
    labels = [label["text"] for label in sorted(drawn["labels"], key=lambda label: label["y"])]
    assert labels == [row for row in rows if row in labels] == rows[:3], (labels, rows)  # نابلس، جنين، الخليل
    assert drawn["bars"] == 3
    left, top, right, bottom = drawn["caption"]
    assert 0 <= left < right <= drawn["width"] and bottom <= drawn["height"], drawn

    await page.goto(f"/statistics/chart/map.svg?{query}")
    marks = await page.evaluate("""() => {
        const svg = document.documentElement, width = Number(svg.getAttribute('width'));
        const out = [];
        for (const t of svg.querySelectorAll('text')) {
            const i = t.textContent.indexOf('<5');
            if (i < 0) continue;
            out.push({lt: t.getStartPositionOfChar(i).x, five: t.getStartPositionOfChar(i + 1).x,
                      inTile: !!t.closest('g[data-code]')});
        }
        const key = Array.from(svg.querySelectorAll(':scope > rect[width="22"]')).map(r => r.getBBox());
        const words = Array.from(svg.querySelectorAll(':scope > text')).slice(-3).map(t => t.getBBox());
        const withheld = Array.from(svg.querySelectorAll(':scope > text')).find(t => t.textContent.includes('<5'));
        const swatch = key[key.length - 1], said = withheld.getBBox();
        return {width, out, keyRight: Math.max(...key.map(b => b.x + b.width)),
                wordsRight: Math.max(...words.map(b => b.x + b.width)), wordsLeft: Math.min(...words.map(b => b.x)),
                withheld: [said.x + said.width, swatch.x, Math.abs(said.y + said.height / 2 - swatch.y - swatch.height / 2)]};
    }""")
    assert {m["inTile"] for m in marks["out"]} == {True, False}  # gaza's and ramallah's tiles, and the key
    assert all(m["lt"] < m["five"] for m in marks["out"]), marks
    # The key ends at the map's right edge; its words are to the left of their swatch, inside.
    assert marks["keyRight"] == marks["width"] - 16 and marks["wordsRight"] <= marks["keyRight"], marks
    words_end, swatch_start, offset = marks["withheld"]
    assert words_end < swatch_start and offset < 8 and marks["wordsLeft"] > 0, marks
