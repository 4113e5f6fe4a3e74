"""Statistics (issue 10): figures from a scripted data set whose answers are worked out by
hand (cases in and out of the range, an empty range, open, reopened and reassigned cases,
purged cases' aggregates), on SQLite and PostgreSQL; what a caseworker sees; that a purge
changes nothing; small-cell suppression; and the page, charts and CSV over HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import xml.etree.ElementTree as ET

import pytest
from markupsafe import escape as markupsafe_escape
from sqlalchemy import delete, select

from nazaha.services import workflow
from nazaha.services.deadlines import DeadlineRules
from nazaha.services.disclosure import suppress, suppress_one
from nazaha.services.statistics import Durations, Statistics, nearest_rank, statistics, whole_months
from nazaha.storage.console_models import AuditEntry, CaseState, PurgedCaseAggregate
from nazaha.storage.crypto import TeamPrivateKey
from nazaha.storage.database import create_sessionmaker, write_session
from nazaha.storage.models import Report, ReportField
from tests.casework_support import add_staff, console_store, make_case

D = dt.date
RULES = DeadlineRules()
TODAY = D(2026, 7, 15)
FROM, TO = D(2026, 1, 1), D(2026, 6, 30)


# ------------------------------------------------------------------------- pure functions


def test_nearest_rank_percentiles():
    assert nearest_rank({}, 50) is None
    assert nearest_rank({7: 1}, 50) == 7 and nearest_rank({7: 1}, 90) == 7
    # 1..10: median rank ceil(5) = 5 -> 5; p90 rank 9 -> 9; p0 -> rank 1.
    ten = {v: 1 for v in range(1, 11)}
    assert (nearest_rank(ten, 50), nearest_rank(ten, 90), nearest_rank(ten, 0), nearest_rank(ten, 100)) == (5, 9, 1, 10)
    # Weighted: [1, 1, 2, 3, 3, 3, 10].
    assert nearest_rank({1: 2, 2: 1, 3: 3, 10: 1}, 50) == 3
    assert nearest_rank({1: 2, 2: 1, 3: 3, 10: 1}, 90) == 10
    with pytest.raises(ValueError):
        nearest_rank(ten, 101)


def test_whole_months_of_a_range():
    assert whole_months(D(2026, 1, 1), D(2026, 6, 30)) == ("2026-01", "2026-06")
    assert whole_months(D(2026, 2, 15), D(2026, 6, 30)) == ("2026-03", "2026-06")
    assert whole_months(D(2026, 1, 1), D(2026, 6, 29)) == ("2026-01", "2026-05")
    assert whole_months(D(2026, 2, 1), D(2026, 2, 28)) == ("2026-02", "2026-02")
    assert whole_months(D(2026, 2, 2), D(2026, 2, 28)) is None


def _pinned(counts, shown, k):
    """Brute force: could any hidden cell take only one value, given what is shown and the
    total, knowing that "<k" is 1..k-1 and "x" is >= k?"""
    import itertools

    hidden = [i for i, s in enumerate(shown) if not isinstance(s, int)]
    if not hidden:
        return False
    total = sum(counts)
    rest = total - sum(s for s in shown if isinstance(s, int))
    ranges = [range(1, k) if shown[i] == f"<{k}" else range(k, rest + 1) for i in hidden]
    solutions = [combo for combo in itertools.product(*ranges) if sum(combo) == rest]
    assert solutions, "the true values must be a solution"
    return any(len({combo[j] for combo in solutions}) == 1 for j in range(len(hidden)))


@pytest.mark.parametrize(
    "counts",
    [[40, 3], [40, 30, 3], [40, 30, 1, 1], [40, 30, 4, 4], [9, 2, 0, 50], [3], [2, 3], [6, 1], [0, 0, 0], [5, 5, 5], [1, 5, 100]],
)
def test_small_cells_are_suppressed_and_cannot_be_worked_out(counts):
    shown = suppress(counts, 5)
    for n, s in zip(counts, shown, strict=True):
        if 0 < n < 5:
            assert s == "<5"
        elif isinstance(s, int):
            assert s == n
        else:
            assert s == "x" and n >= 5
    if [n for n in counts if n > 0] and len(shown) > 1 and any(isinstance(s, str) for s in shown):
        assert not _pinned(counts, shown, 5), (counts, shown)
    assert suppress(counts, 1) == counts
    assert suppress_one(3, 5) == "<5" and suppress_one(0, 5) == 0 and suppress_one(5, 5) == 5


# ------------------------------------------------------------------------- the data set


@dataclasses.dataclass
class World:
    sm: object
    admin: object
    alice: object
    bob: object
    carol: object
    ids: dict[str, str]


async def _step(sm, admin, rid, day, action, *args):
    now = dt.datetime.combine(day, dt.time(10), tzinfo=dt.timezone.utc)
    async with write_session(sm) as session:
        if action == "status":
            status, *rest = args
            await workflow.change_status(session, admin, rid, status, outcome=rest[0] if rest else None,
                                         notify=False, today=day, now=now)
        elif action == "reopen":
            await workflow.reopen(session, admin, rid, today=day, now=now)
        elif action == "assign":
            await workflow.assign(session, admin, [rid], args[0].user_id, now=now)


async def seed(sm) -> World:
    team = TeamPrivateKey.generate()
    public = team.public_key()
    admin = await add_staff(sm, "admin", "admin")
    alice = await add_staff(sm, "alice", "caseworker")
    bob = await add_staff(sm, "bob", "caseworker")
    carol = await add_staff(sm, "carol", "caseworker")
    ids: dict[str, str] = {}

    async def case(name, received, kind="corruption", category="bribery", service=None, sector="ministry",
                   governorate="nablus"):
        if kind == "complaint":
            category, sector = None, None
        ids[name], _ = await make_case(sm, public, created_on=received, kind=kind, category=category,
                                       service=service, sector=sector, governorate=governorate)
        return ids[name]

    async def steps(rid, *script):
        for day, action, *args in script:
            await _step(sm, admin, rid, day, action, *args)

    c1 = await case("c1", D(2026, 1, 10))
    await steps(c1, (D(2026, 1, 10), "assign", alice), (D(2026, 1, 12), "status", "acknowledged"),
                (D(2026, 2, 9), "status", "closed", "substantiated"))
    c2 = await case("c2", D(2026, 1, 20), governorate="hebron")  # reopened, closed again, reassigned
    await steps(c2, (D(2026, 1, 20), "assign", alice), (D(2026, 1, 21), "status", "acknowledged"),
                (D(2026, 1, 30), "status", "closed", "not_substantiated"), (D(2026, 2, 5), "reopen"),
                (D(2026, 2, 6), "assign", bob), (D(2026, 3, 21), "status", "closed", "substantiated"))
    c3 = await case("c3", D(2026, 2, 1), kind="complaint", service="health", governorate="gaza")
    await steps(c3, (D(2026, 2, 1), "assign", alice), (D(2026, 2, 11), "status", "acknowledged"),
                (D(2026, 2, 12), "status", "in_review"))
    await case("c4", D(2026, 3, 1), category="nepotism", sector="security")  # never acknowledged
    c5 = await case("c5", D(2026, 6, 30), kind="complaint", service="education", governorate="ramallah")
    await steps(c5, (D(2026, 6, 30), "assign", alice))
    c6 = await case("c6", D(2026, 5, 5))  # closed, reopened, open now
    await steps(c6, (D(2026, 5, 5), "assign", bob), (D(2026, 5, 6), "status", "acknowledged"),
                (D(2026, 5, 15), "status", "closed", "out_of_scope"), (D(2026, 5, 20), "reopen"))
    c7 = await case("c7", D(2025, 12, 31))  # out of range
    await steps(c7, (D(2026, 1, 2), "assign", alice), (D(2026, 1, 3), "status", "closed", "substantiated"))
    c8 = await case("c8", D(2026, 7, 1), kind="complaint", service="health")  # out of range
    await steps(c8, (D(2026, 7, 1), "assign", alice))
    c9 = await case("c9", D(2026, 4, 10), kind="complaint", service="health")  # closed unacknowledged
    await steps(c9, (D(2026, 4, 12), "status", "closed", "insufficient_information"))
    async with write_session(sm) as session:
        session.add_all([
            PurgedCaseAggregate(received_month="2026-02", closed_month="2026-03", kind="corruption",
                                category="bribery", sector="ministry", governorate="jenin", outcome="substantiated",
                                ack_days=3, close_days=40, count=3),
            PurgedCaseAggregate(received_month="2025-12", closed_month="2026-01", kind="corruption",
                                category="bribery", sector="ministry", governorate="jenin", outcome="substantiated",
                                ack_days=1, close_days=9, count=2),
            PurgedCaseAggregate(received_month="2026-06", closed_month="2026-06", kind="complaint", service="health",
                                outcome="not_substantiated", ack_days=None, close_days=5, count=1),
        ])
    return World(sm, admin, alice, bob, carol, ids)


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request, tmp_path):
    async with console_store(request.param, tmp_path) as engine:
        sm = create_sessionmaker(engine)
        yield await seed(sm)


async def figures(w: World, viewer, date_from=FROM, date_to=TO, today=TODAY):
    async with w.sm() as session:
        return await statistics(session, viewer, date_from, date_to, today, RULES)


async def test_admin_figures_have_the_known_answers(world):
    s = await figures(world, world.admin)
    assert s.total == 11 and s.purged == 4
    assert s.by_kind == {"corruption": 7, "complaint": 4}
    assert s.by_category == {"bribery": 6, "nepotism": 1}
    assert s.by_service == {"health": 3, "education": 1}
    # Institutions are asked of corruption reports only: the 4 complaints are not "not given".
    assert s.by_sector == {"ministry": 6, "security": 1}
    assert s.by_governorate == {"nablus": 4, "jenin": 3, None: 1, "gaza": 1, "hebron": 1, "ramallah": 1}
    assert s.by_month == {"2026-01": 2, "2026-02": 4, "2026-03": 1, "2026-04": 1, "2026-05": 1, "2026-06": 2}
    assert s.by_status == {"received": 2, "in_review": 2, "closed": 7}
    # c6 was closed "out of scope" and reopened: it has no outcome now.
    assert s.outcomes == {"substantiated": 5, "insufficient_information": 1, "not_substantiated": 1}
    # Acknowledged: [1 (c2), 1 (c6), 2 (c1), 3, 3, 3 (purged), 10 (c3)].
    assert s.days_to_acknowledge == Durations(7, 3, 10)
    # Closed now: [2 (c9), 5 (purged), 30 (c1), 40 ×3 (purged), 60 (c2, its latest closing)].
    assert s.days_to_close == Durations(7, 40, 60)
    assert (s.ack_overdue, s.feedback_overdue) == (2, 2)  # c4 and c5; c3 and c4


async def test_each_one_kind_breakdown_counts_only_its_kind(world):
    """Category and institution are asked of corruption reports, service of complaints: each
    of those tables adds up to its kind's count, and "not given" there is a case of that kind
    without an answer (here a corruption report stored without an institution, and a
    complaint without a service), never a case of the other kind."""
    async with write_session(world.sm) as session:
        session.add(PurgedCaseAggregate(received_month="2026-03", closed_month="2026-04", kind="complaint",
                                        service="water_electricity", sector="ministry", outcome="substantiated",
                                        ack_days=1, close_days=9, count=2))  # a stray institution: not counted
    public = TeamPrivateKey.generate().public_key()
    await make_case(world.sm, public, created_on=D(2026, 4, 1), kind="corruption", category="bribery", sector=None)
    await make_case(world.sm, public, created_on=D(2026, 4, 2), kind="complaint", category=None, service=None,
                    sector=None)
    s = await figures(world, world.admin)
    assert s.by_kind == {"corruption": 8, "complaint": 7}
    assert s.by_sector == {"ministry": 6, "security": 1, None: 1}
    assert s.by_category == {"bribery": 7, "nepotism": 1}
    assert s.by_service == {"health": 3, "water_electricity": 2, "education": 1, None: 1}
    for name, kind in (("sector", "corruption"), ("category", "corruption"), ("service", "complaint")):
        assert sum(getattr(s, f"by_{name}").values()) == s.by_kind[kind], name
    alice = await figures(world, world.alice)  # c1 (corruption), c3 and c5 (complaints)
    assert alice.by_sector == {"ministry": 1} and alice.by_category == {"bribery": 1}
    assert alice.by_service == {"health": 1, "education": 1}


async def test_a_caseworker_counts_only_the_cases_assigned_to_them(world):
    alice = await figures(world, world.alice)  # c1, c3, c5 (c2 went to bob, c7 c8 out of range)
    assert alice.total == 3 and alice.purged == 0
    assert alice.by_kind == {"complaint": 2, "corruption": 1}
    assert alice.by_status == {"received": 1, "in_review": 1, "closed": 1}
    assert alice.days_to_acknowledge == Durations(2, 2, 10)
    assert alice.days_to_close == Durations(1, 30, 30)
    assert (alice.ack_overdue, alice.feedback_overdue) == (1, 1)
    bob = await figures(world, world.bob)  # c2 (reassigned to him), c6
    assert bob.total == 2 and bob.by_status == {"in_review": 1, "closed": 1}
    assert bob.outcomes == {"substantiated": 1} and bob.days_to_close == Durations(1, 60, 60)
    carol = await figures(world, world.carol)
    assert carol.total == 0 and carol.by_kind == {}
    vera = await add_staff(world.sm, "vera", "volunteer")
    assert (await figures(world, vera)).total == 0


async def test_the_same_figures_on_one_connection_as_on_two(world):
    # A fresh session runs the report-only counts on a second connection; one already in a
    # transaction runs everything on its own connection. Both give the same figures.
    from sqlalchemy import text

    for viewer in (world.admin, world.alice, world.bob):
        apart = await figures(world, viewer)
        async with world.sm() as session:
            await session.execute(text("SELECT 1"))
            assert session.in_transaction()
            together = await statistics(session, viewer, FROM, TO, TODAY, RULES)
        assert together == apart and together.total > 0


async def test_empty_and_partial_ranges(world):
    empty = await figures(world, world.admin, D(2027, 1, 1), D(2027, 1, 31))
    assert empty.total == 0 and empty.purged == 0 and empty.by_month == {"2027-01": 0}
    assert empty.days_to_acknowledge == Durations(0, None, None) == empty.days_to_close
    assert empty.by_status == {} and empty.outcomes == {} and (empty.ack_overdue, empty.feedback_overdue) == (0, 0)
    # From 15 February: c4, c6, c9, c5 and the purged case of June (February is cut).
    part = await figures(world, world.admin, D(2026, 2, 15), TO)
    assert (part.total, part.purged) == (5, 1)
    assert part.by_month == {"2026-02": 0, "2026-03": 1, "2026-04": 1, "2026-05": 1, "2026-06": 2}
    one_day = await figures(world, world.admin, D(2026, 6, 30), D(2026, 6, 30))
    assert one_day.total == 1 and one_day.by_service == {"education": 1}
    with pytest.raises(ValueError):
        await figures(world, world.admin, TO, FROM)


async def test_a_purge_leaves_the_published_figures_unchanged(world):
    before = await figures(world, world.admin)
    rid = world.ids["c1"]  # received 10 Jan, acknowledged after 2 days, closed after 30
    async with write_session(world.sm) as session:
        await session.execute(delete(ReportField).where(ReportField.report_id == rid))
        await session.execute(delete(CaseState).where(CaseState.report_id == rid))
        await session.execute(delete(Report).where(Report.id == rid))
        session.add(PurgedCaseAggregate(received_month="2026-01", closed_month="2026-02", kind="corruption",
                                        category="bribery", sector="ministry", governorate="nablus",
                                        outcome="substantiated", ack_days=2, close_days=30, count=1))
    after = await figures(world, world.admin)
    assert dataclasses.replace(after, purged=before.purged) == before and after.purged == before.purged + 1
    # Alice no longer counts it: a purged case has no assignee.
    assert (await figures(world, world.alice)).total == 2


# ------------------------------------------------------------------------- over HTTP

from tests.test_console_cases import BASE, invite  # noqa: E402  (fixtures of the console tests)
from tests.test_console_cases import world as console_world  # noqa: E402,F401


async def _seed_console(w) -> dict[str, str]:
    sm = w.console.sessionmaker
    today = w.console.today()
    ids = {}
    for i, (kind, governorate) in enumerate(
        [("corruption", "nablus")] * 12 + [("corruption", "hebron")] * 3 + [("complaint", "gaza")] * 6
    ):
        ids[i], _ = await make_case(sm, w.public, created_on=today - dt.timedelta(days=3 + i), kind=kind,
                                    category="bribery" if kind == "corruption" else None,
                                    service="health" if kind == "complaint" else None,
                                    sector="ministry" if kind == "corruption" else None, governorate=governorate)
    return ids


async def test_the_statistics_page_charts_and_csv(console_world):
    w = console_world
    await _seed_console(w)
    b = w.admin_browser
    page = b.get("/statistics")
    assert page.status_code == 200
    assert 'href="/statistics"' in page.text  # the menu
    # Governorates: nablus 12, gaza 6, hebron 3 (small: marked on screen, "<5" in print).
    table = re.search(r'id="stats-governorate".*?</section>', page.text, re.S).group(0)
    assert re.search(r'class="screen-only small-cell"[^>]*><bdi dir="ltr">3</bdi></span><span class="print-only"><bdi dir="ltr">&lt;5', table)
    # Gaza (6) is withheld as the complement of hebron: the same mark, its own reason.
    from nazaha.admin import i18n

    i18n.set_locale("ar")
    withheld = i18n.gettext("Withheld (shown as %(shown)s) when printed or exported, so that a small count cannot be "
                            "worked out from the total", shown="x")
    assert (f'<span class="screen-only small-cell" title="{markupsafe_escape(withheld)}"><bdi dir="ltr">6</bdi></span>'
            '<span class="print-only"><bdi dir="ltr">x</bdi></span>') in table
    assert "<style" not in page.text and " style=" not in page.text  # the page's CSP holds
    query = re.search(r'src="/statistics/chart/governorate\.svg\?([^"]+)"', page.text).group(1).replace("&amp;", "&")
    for name in ("kind", "category", "service", "sector", "governorate", "month", "status"):
        assert f'src="/statistics/chart/{name}.svg?' in page.text
    # No case is closed: the outcomes are one line, without an empty chart or table.
    outcome = re.search(r'<section class="stats-section stats-empty" id="stats-outcome">.*?</section>', page.text, re.S)
    assert outcome and "<img" not in outcome.group(0) and "<table" not in outcome.group(0)
    assert 'class="stats-section stats-empty"' not in page.text.replace(outcome.group(0), "")
    for name in ("kind", "category", "service", "sector", "governorate", "month", "status", "outcome"):
        svg = b.get(f"/statistics/chart/{name}.svg?{query}")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert "script-src" not in svg.headers["content-security-policy"]
        assert svg.headers["content-security-policy"].startswith("default-src 'none'")
        root = ET.fromstring(svg.content)  # well-formed
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        text = svg.content.decode()
        assert "<script" not in text.lower() and "javascript" not in text.lower()
        assert not re.search(r"https?://", text.replace('xmlns="http://www.w3.org/2000/svg"', "")), name
        assert "href" not in text
    svg = b.get(f"/statistics/chart/governorate.svg?{query}").content.decode()
    labels = [t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text") if t.text]
    assert any("نابلس" in (t or "") for t in labels)  # Arabic as text, the member's language
    # Gaza (withheld) and hebron (small) are left out of the chart, which says so; the
    # image's description too.
    assert not any("غزة" in t or "الخليل" in t for t in labels)
    left_out = i18n.ngettext("%(num)d row is not drawn: its count is below %(k)s or withheld (see the table).",
                             "%(num)d rows are not drawn: their counts are below %(k)s or withheld (see the table).",
                             2, k=5)
    assert f"\u2067{left_out}\u2069" in labels
    alt = i18n.gettext("Chart: %(title)s, without the rows whose counts are small or withheld (the numbers are in "
                       "the table)", title=i18n.gettext("Cases by governorate"))
    assert f'alt="{markupsafe_escape(alt)}"' in page.text
    assert b.get("/statistics/chart/nothing.svg").status_code == 404
    # The governorates' schematic map: its own image beside the same table, same policy,
    # the table's published figures (gaza withheld, hebron small), the table beside it.
    governorate = re.search(r'id="stats-governorate".*?</section>', page.text, re.S).group(0)
    assert '<div class="stats-pair stats-with-map">' in governorate
    assert f'<img class="chart map" src="/statistics/chart/map.svg?{query.replace("&", "&amp;")}"' in governorate
    assert page.text.count("/statistics/chart/map.svg") == 1
    tile_map = b.get(f"/statistics/chart/map.svg?{query}")
    assert tile_map.status_code == 200 and tile_map.headers["content-type"].startswith("image/svg+xml")
    assert tile_map.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    text = tile_map.content.decode()
    assert "<script" not in text.lower() and "href" not in text and "<style" not in text
    assert not re.search(r"https?://", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    tiles = _tiles(tile_map.content)
    assert len(tiles) == 16
    assert [t["texts"][1] for t in (tiles["nablus"], tiles["gaza"], tiles["hebron"], tiles["jenin"])] == [
        "\u206612\u2069", "\u2066x\u2069", "\u2066<5\u2069", "\u20660\u2069"]

    async with w.console.sessionmaker() as session:
        exports_before = len((await session.scalars(select(AuditEntry).where(AuditEntry.action == "export"))).all())
    csv = b.get(f"/statistics/data/governorate.csv?{query}")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith(b"\xef\xbb\xbf")
    rows = [line.split(",") for line in csv.content.decode("utf-8-sig").strip().split("\r\n")]
    counts = {row[0]: row[2] for row in rows[1:]}
    # hebron (3) is small: "<5"; with it alone hidden, gaza (6) is withheld too.
    assert counts == {"nablus": "12", "gaza": "x", "hebron": "<5", "": "21"}
    kinds = {row[0]: row[2] for row in (line.split(",") for line in b.get(f"/statistics/data/kind.csv?{query}").content.decode("utf-8-sig").strip().split("\r\n")[1:])}
    assert kinds == {"corruption": "15", "complaint": "6", "": "21"}
    assert b.get(f"/statistics/data/timeliness.csv?{query}").content.startswith(b"\xef\xbb\xbf")
    async with w.console.sessionmaker() as session:
        exports = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "export"))).all()
    assert len(exports) == exports_before + 3 and all(e.detail == '{"what":"statistics"}' for e in exports[-3:])

    # A bad range falls back to the default with a message.
    assert "role=\"alert\"" in b.get("/statistics?from=2026-13-01").text

    # A caseworker sees their own cases only (none yet); a volunteer is refused.
    alice = await invite(w, "alice", "caseworker")
    mine = alice.get("/statistics")
    assert mine.status_code == 200 and re.search(r'id="stats-summary".*?<tbody>\s*<tr><th scope="row">[^<]*</th><td class="num"><bdi dir="ltr">0<', mine.text, re.S)
    vera = await invite(w, "vera", "volunteer")
    assert vera.get("/statistics").status_code == 403
    assert vera.get(f"/statistics/data/kind.csv?{query}").status_code == 403
    assert vera.get(f"/statistics/chart/kind.svg?{query}").status_code == 403
    assert vera.get(f"/statistics/chart/map.svg?{query}").status_code == 403
    # The caseworker's map counts their own cases only (none).
    assert all(t["texts"][1] == "\u20660\u2069" for t in _tiles(alice.get(f"/statistics/chart/map.svg?{query}").content).values())


def test_published_tables_give_back_no_withheld_count():
    """The admin trial's case: 5 reports and 3 complaints, 3 closed. The kind table withholds
    both kinds, so the tables that split one kind publish nothing and the outcome total
    (the number closed, small) is withheld; tables of every case keep the total received."""
    from nazaha.admin.statistics_view import chart_table
    from nazaha.services.statistics import Statistics

    none = Durations(0, None, None)
    stats = Statistics(
        date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 12, 31), total=8,
        by_kind={"corruption": 5, "complaint": 3},
        by_category={"bribery": 3, "procurement": 1, "nepotism": 1},
        by_service={"health": 2, "education": 1},
        by_sector={"ministry": 5, None: 3},
        by_governorate={"nablus": 8},
        by_month={"2026-11": 8},
        by_status={"received": 5, "closed": 3},
        outcomes={"substantiated": 1, "not_substantiated": 1, "out_of_scope": 1},
        days_to_acknowledge=none, days_to_close=none, ack_overdue=0, feedback_overdue=0, purged=0,
    )
    kind = chart_table(stats, "kind", 5)
    assert [c.published for c in kind.cells] == ["x", "<5"] and kind.published_total == 8
    for name in ("category", "service", "sector"):
        table = chart_table(stats, name, 5)
        assert all(c.published == "x" for c in table.cells) and table.published_total == "x", name
    outcome = chart_table(stats, "outcome", 5)
    assert outcome.published_total == "x"
    assert chart_table(stats, "governorate", 5).published_total == 8


def _stats(**values) -> Statistics:
    none = Durations(0, None, None)
    figures = dict(date_from=D(2026, 1, 1), date_to=D(2026, 12, 31), total=0, by_kind={}, by_category={},
                   by_service={}, by_sector={}, by_governorate={}, by_month={}, by_status={}, outcomes={},
                   days_to_acknowledge=none, days_to_close=none, ack_overdue=0, feedback_overdue=0, purged=0)
    return Statistics(**{**figures, **values})


SVG = "{http://www.w3.org/2000/svg}"


def _drawn(svg: bytes) -> dict:
    """What a pygal chart shows: its bars, the printed values and axis labels (each in the
    order drawn: top to bottom, or left to right for ``across``), and the line under it."""
    root = ET.fromstring(svg)
    texts = list(root.iter(f"{SVG}text"))
    bars = [r for r in root.iter(f"{SVG}rect") if "rect" in (r.get("class") or "").split()]
    values = [t for t in texts if "value" in (t.get("class") or "").split()]
    caption = [t for t in texts if t.get("class") == "left-out"]
    return {"bars": bars, "values": values, "texts": texts, "caption": caption,
            "words": [t.text or "" for t in texts]}


def _in_order(elements, axis: str = "y") -> list[str]:
    return [e.text for e in sorted(elements, key=lambda e: float(e.get(axis)))]


def test_a_chart_draws_only_the_published_rows_in_the_tables_order():
    """A suppressed row ("<5", "x") is left out of the chart, never drawn as an empty bar (it
    would read as zero); a line under the chart says how many rows are left out and that the
    table has them. A bar chart's rows run top to bottom in the table's order, a month chart's
    left to right."""
    from nazaha.admin import i18n
    from nazaha.admin.statistics_view import chart_svg, chart_table

    stats = _stats(total=35, by_kind={"corruption": 24, "complaint": 11},
                   by_governorate={"nablus": 14, "jenin": 9, "hebron": 7, "gaza": 3, "ramallah": 2},
                   by_month={"2026-07": 0, "2026-08": 4, "2026-09": 10, "2026-10": 11, "2026-11": 10})
    i18n.set_locale("en")
    try:
        governorates = chart_table(stats, "governorate", 5)
        assert [c.published for c in governorates.cells] == [14, 9, 7, "<5", "<5"]
        assert [c.label for c in governorates.drawn] == ["Nablus", "Jenin", "Hebron"] and governorates.left_out == 2
        chart = _drawn(chart_svg(governorates, "en"))
        assert len(chart["bars"]) == 3
        labels = [t for t in chart["texts"] if t.text in ("Nablus", "Jenin", "Hebron", "Gaza", "Ramallah and Al-Bireh")]
        assert _in_order(labels) == ["Nablus", "Jenin", "Hebron"]  # the table's order, from the top
        assert _in_order(chart["values"]) == ["14", "9", "7"]  # nothing of gaza's 3 or ramallah's 2
        [caption] = chart["caption"]
        assert caption.text == "2 rows are not drawn: their counts are below 5 or withheld (see the table)."
        assert caption.get("text-anchor") == "start" and caption.get("x") == "12"
        assert float(caption.get("y")) > max(float(bar.get("y")) + float(bar.get("height")) for bar in chart["bars"])

        months = chart_table(stats, "month", 5)
        assert [c.published for c in months.cells] == [0, "<5", "x", 11, 10]
        chart = _drawn(chart_svg(months, "en"))
        shown = [t for t in chart["texts"] if re.fullmatch(r"\d{4}-\d{2}", t.text or "")]
        assert [t.text for t in shown] == ["2026-07", "2026-10", "2026-11"]  # left to right
        assert "2026-08" not in chart["words"] and "2026-09" not in chart["words"]
        assert chart["caption"][0].text.startswith("2 rows are not drawn")

        # Nothing left out: no line; the first row on top.
        kinds = _drawn(chart_svg(chart_table(stats, "kind", 5), "en"))
        assert kinds["caption"] == [] and _in_order(kinds["values"]) == ["24", "11"]
    finally:
        i18n.set_locale("ar")
    # In Arabic the line starts at the right, isolated right to left.
    [caption] = _drawn(chart_svg(governorates, "ar"))["caption"]
    assert caption.get("text-anchor") == "end" and caption.get("x") == "708"
    assert caption.text.startswith("\u2067") and caption.text.endswith("\u2069")


def test_a_table_without_a_chart_says_why():
    """The trial's case, 10 cases (8 corruption reports, 2 complaints): the kind chart is not
    "too few cases": a count is small and the other is withheld as its complement. Each
    situation has its own line."""
    from nazaha.admin import i18n
    from nazaha.admin.statistics_view import (
        COMPLEMENT, KIND_WITHHELD, NO_CASES, SMALL_COUNT, chart_svg, chart_table,
    )

    stats = _stats(total=10, by_kind={"corruption": 8, "complaint": 2}, by_category={"bribery": 8},
                   by_sector={"ministry": 6, "security": 2}, by_service={"health": 2},
                   by_governorate={"nablus": 10}, by_month={"2026-11": 10}, by_status={"received": 10})
    i18n.set_locale("en")
    try:
        tables = {name: chart_table(stats, name, 5) for name in
                  ("kind", "category", "sector", "service", "governorate", "outcome")}
        assert [c.published for c in tables["kind"].cells] == ["x", "<5"]
        assert {name: t.no_chart_reason for name, t in tables.items()} == {
            "kind": COMPLEMENT, "category": KIND_WITHHELD, "sector": COMPLEMENT, "service": SMALL_COUNT,
            "governorate": None, "outcome": NO_CASES}
        assert tables["kind"].no_chart_text == (
            "No chart: one count here is below 5, and the others are withheld so that it cannot be worked out from "
            "the total. The figures are in the table.")
        assert tables["category"].no_chart_text == (
            "No chart: these counts are withheld, because together they give the number of corruption reports, "
            "which is withheld (see “Cases by kind”). The figures are in the table.")
        # The institutions would have had no chart with their own counts either: that is said.
        assert tables["sector"].no_chart_text == tables["kind"].no_chart_text
        assert tables["service"].no_chart_text == "No chart: every count here is below 5. The figures are in the table."
        assert tables["governorate"].no_chart_text is None and tables["governorate"].drawable
        assert tables["outcome"].no_chart_text == "No case received in this range is closed."
        # The chart resource, asked anyway: no bar, no count, a line saying why.
        chart = _drawn(chart_svg(tables["kind"], "en"))
        assert chart["bars"] == [] and not {"8", "2"} & set(chart["words"])
        assert "Not drawn: the counts are small or withheld (see the table)" in chart["words"]

        # Two counts below 5 and their complement.
        several = chart_table(_stats(total=11, by_kind={"corruption": 11}, by_governorate={"gaza": 9, "jenin": 1,
                                                                                            "rafah": 1}),
                              "governorate", 5)
        assert [c.published for c in several.cells] == ["x", "<5", "<5"]
        assert several.no_chart_text.startswith("No chart: 2 counts here are below 5, and the others are withheld")
        # The complaints' services withheld with the complaints' count.
        services = chart_table(_stats(total=11, by_kind={"complaint": 9, "corruption": 2}, by_service={"health": 9}),
                               "service", 5)
        assert services.no_chart_reason == KIND_WITHHELD and "number of service complaints" in services.no_chart_text
        # Cases in the range, none of the table's kind; no case at all.
        complaints = _stats(total=6, by_kind={"complaint": 6}, by_service={"health": 6}, by_governorate={"gaza": 6})
        for name in ("category", "sector"):
            assert chart_table(complaints, name, 5).no_chart_text == "No corruption reports in this range."
        assert chart_table(_stats(total=6, by_kind={"corruption": 6}), "service", 5).no_chart_text == (
            "No service complaints in this range.")
        for name in ("kind", "category", "service", "sector", "governorate", "month", "status", "outcome"):
            assert chart_table(_stats(), name, 5).no_chart_text == "No cases in this range.", name
    finally:
        i18n.set_locale("ar")


async def test_ten_cases_eight_and_two_say_why_there_is_no_kind_chart(console_world):
    """Over HTTP, in the member's language: the kind section has no chart and says that a
    count is small and the other withheld; the categories say they are withheld with it."""
    from nazaha.admin import i18n

    w = console_world
    today = w.console.today()
    for i, kind in enumerate(["corruption"] * 8 + ["complaint"] * 2):
        await make_case(w.console.sessionmaker, w.public, created_on=today - dt.timedelta(days=3 + i), kind=kind,
                        category="bribery" if kind == "corruption" else None,
                        service="health" if kind == "complaint" else None,
                        sector="ministry" if kind == "corruption" else None, governorate="nablus")
    page = w.admin_browser.get("/statistics").text
    sections = {name: (flag, body) for flag, name, body in re.findall(
        r'<section class="stats-section( stats-empty| stats-no-chart)?" id="stats-(\w+)">(.*?)</section>', page, re.S)}
    i18n.set_locale("ar")
    complement = i18n.ngettext(
        "No chart: one count here is below %(k)s, and the others are withheld so that it cannot be worked out from "
        "the total. The figures are in the table.",
        "No chart: %(num)d counts here are below %(k)s, and the others are withheld so that they cannot be worked "
        "out from the total. The figures are in the table.", 1, k=5)
    by_kind = i18n.gettext(
        "No chart: these counts are withheld, because together they give the number of corruption reports, which "
        "is withheld (see “Cases by kind”). The figures are in the table.")
    flag, body = sections["kind"]
    assert flag == " stats-no-chart" and "<img" not in body
    assert f'<p class="stats-none muted">{markupsafe_escape(complement)}</p>' in body
    assert f'<p class="stats-none muted">{markupsafe_escape(by_kind)}</p>' in sections["category"][1]
    old = "Too few cases"
    assert old not in page and i18n.gettext("Too few cases to draw a chart: the figures are in the table.") not in page
    assert "<img" in sections["governorate"][1]  # nablus 10: drawn


def _csv_rows(content: bytes) -> list[list[str]]:
    import csv
    import io

    assert content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def _overview_row(page: str, label: str) -> str:
    summary = re.search(r'id="stats-summary".*?</section>', page, re.S).group(0)
    row = re.search(rf'<tr><th scope="row">{re.escape(label)}</th><td class="num">(.*?)</td></tr>', summary, re.S)
    assert row, label
    return row.group(1)


async def test_figures_from_few_cases_are_withheld_like_small_counts(console_world):
    """A median or 90th percentile of fewer than 5 cases, like a count below 5, is marked on
    screen (the same dotted mark, a tooltip saying why), withheld in print and in the CSV
    ("x"), and the key above the tables says so; the number of cases received, and the
    purged cases among them, are published the same way when there are fewer than 5."""
    from nazaha.admin import i18n
    from nazaha.services.access import Viewer
    from nazaha.storage.console_models import StaffUser

    w = console_world
    sm, today = w.console.sessionmaker, w.console.today()
    async with sm() as session:
        admin_id = (await session.scalars(select(StaffUser.id).where(StaffUser.role == "admin"))).one()
    admin = Viewer(admin_id, "admin")
    ids = await _seed_console(w)  # 21 cases, received 3 to 23 days ago
    for i, days in ((0, 1), (1, 2), (2, 4)):  # three acknowledged: after 1, 2 and 4 days
        await _step(sm, admin, ids[i], today - dt.timedelta(days=3 + i) + dt.timedelta(days=days), "status",
                    "acknowledged")
    b = w.admin_browser
    page = b.get("/statistics").text
    i18n.set_locale("ar")  # the admin's language: the page's words from the same catalog
    few = i18n.gettext("Computed from fewer than %(k)s cases: withheld (shown as %(shown)s) when printed or exported",
                       k=5, shown="x")
    small = i18n.gettext("A small count: shown as %(shown)s when printed or exported", shown="<5")
    key = i18n.gettext(
        "Counts below %(k)s are marked on screen; when this page is printed, and in every CSV file and chart, they show "
        "as “%(small)s”. A figure is withheld (“x”) where a small count could otherwise be worked out from the total, "
        "and so is a median or 90th percentile computed from fewer than %(k)s cases.", k=5, small="<5")
    labels = {name: i18n.gettext(name) for name in (
        "Cases received", "Cases acknowledged", "Days to acknowledge, median", "Days to acknowledge, 90th percentile",
        "Cases closed", "Days to close, median")}
    assert str(markupsafe_escape(key)) in page
    assert _overview_row(page, labels["Cases received"]) == '<bdi dir="ltr">21</bdi>'
    assert _overview_row(page, labels["Cases acknowledged"]) == (
        f'<span class="screen-only small-cell" title="{markupsafe_escape(small)}"><bdi dir="ltr">3</bdi></span>'
        '<span class="print-only"><bdi dir="ltr">&lt;5</bdi></span>')
    # Nearest rank over [1, 2, 4]: median 2, 90th percentile 4; both from 3 cases.
    for label, exact in (("Days to acknowledge, median", 2), ("Days to acknowledge, 90th percentile", 4)):
        assert _overview_row(page, labels[label]) == (
            f'<span class="screen-only small-cell" title="{markupsafe_escape(few)}"><bdi dir="ltr">{exact}</bdi></span>'
            '<span class="print-only"><bdi dir="ltr">x</bdi></span>'), label
    assert _overview_row(page, labels["Cases closed"]) == '<bdi dir="ltr">0</bdi>'
    assert _overview_row(page, labels["Days to close, median"]) == '<bdi dir="ltr">—</bdi>'
    query = re.search(r'href="/statistics/data/timeliness\.csv\?([^"]+)"', page).group(1).replace("&amp;", "&")
    rows = dict(_csv_rows(b.get(f"/statistics/data/timeliness.csv?{query}").content)[1:])
    assert rows[labels["Cases received"]] == "21" and rows[labels["Cases acknowledged"]] == "<5"
    assert rows[labels["Days to acknowledge, median"]] == "x" and rows[labels["Days to acknowledge, 90th percentile"]] == "x"
    assert rows[labels["Cases closed"]] == "0" and rows[labels["Days to close, median"]] == ""

    # Five acknowledged: the median and percentile are published.
    for i in (3, 4):
        await _step(sm, admin, ids[i], today - dt.timedelta(days=3 + i) + dt.timedelta(days=3), "status", "acknowledged")
    rows = dict(_csv_rows(b.get(f"/statistics/data/timeliness.csv?{query}").content)[1:])
    assert (rows[labels["Days to acknowledge, median"]], rows[labels["Days to acknowledge, 90th percentile"]]) == ("3", "4")
    assert _overview_row(b.get("/statistics").text, labels["Days to acknowledge, median"]) == '<bdi dir="ltr">3</bdi>'

    # A range of two cases and two purged ones: the number received is a small count too, and
    # the sentence on purged cases is not printed.
    async with write_session(sm) as session:
        session.add(PurgedCaseAggregate(received_month="2020-03", closed_month="2020-04", kind="corruption",
                                        category="bribery", sector="ministry", governorate="nablus",
                                        outcome="substantiated", ack_days=1, close_days=9, count=2))
    page = b.get("/statistics?from=2020-03-01&to=2020-03-31").text
    assert _overview_row(page, labels["Cases received"]) == (
        f'<span class="screen-only small-cell" title="{markupsafe_escape(small)}"><bdi dir="ltr">2</bdi></span>'
        '<span class="print-only"><bdi dir="ltr">&lt;5</bdi></span>')
    purged = i18n.ngettext("The figures include %(num)d purged case (kept as a content-free count).",
                           "The figures include %(num)d purged cases (kept as content-free counts).", 2)
    assert f'<span class="screen-only">{markupsafe_escape(purged)}</span>' in page
    rows = dict(_csv_rows(b.get("/statistics/data/timeliness.csv?from=2020-03-01&to=2020-03-31").content)[1:])
    assert rows[labels["Cases received"]] == "<5" and rows[labels["Days to close, median"]] == "x"


async def test_a_chart_with_nothing_to_draw_leaves_no_empty_box(console_world):
    """A table without a case in the range is one line (no chart, no empty table); a table
    whose every count is suppressed has no chart either, a line saying why, and its table
    alone (full width: class stats-single)."""
    from nazaha.admin import i18n

    w = console_world
    async with write_session(w.console.sessionmaker) as session:
        session.add(PurgedCaseAggregate(received_month="2020-03", closed_month="2020-04", kind="corruption",
                                        category="bribery", sector="ministry", governorate="nablus",
                                        outcome="substantiated", ack_days=1, close_days=9, count=2))
    b = w.admin_browser
    i18n.set_locale("ar")
    none = i18n.gettext("No cases in this range.")
    too_few = i18n.gettext("No chart: every count here is below %(k)s. The figures are in the table.", k=5)
    empty = b.get("/statistics?from=2021-01-01&to=2021-12-31").text
    assert "<img" not in empty
    sections = re.findall(r'<section class="stats-section( stats-empty)?" id="stats-(\w+)">(.*?)</section>', empty, re.S)[1:]
    assert [name for _, name, _ in sections] == ["kind", "category", "service", "sector", "governorate", "month",
                                                 "status", "outcome"]
    for flag, name, body in sections:
        assert flag and "<table" not in body and f'<p class="stats-none muted">{markupsafe_escape(none)}</p>' in body, name

    few = b.get("/statistics?from=2020-03-01&to=2020-03-31").text
    sections = {name: (flag, body) for flag, name, body in
                re.findall(r'<section class="stats-section( stats-empty| stats-no-chart)?" id="stats-(\w+)">(.*?)</section>', few, re.S)}
    for name in ("kind", "category", "sector", "governorate", "month", "status", "outcome"):  # 2 cases: all "<5"
        flag, body = sections[name]
        assert flag == " stats-no-chart" and '<div class="stats-pair stats-single">' in body and "<img" not in body, name
        assert f'<p class="stats-none muted">{markupsafe_escape(too_few)}</p>' in body and "<table" in body, name
    # No complaint among the range's two cases: said so, not "no cases".
    assert sections["service"][0] == " stats-empty"
    no_complaint = i18n.gettext("No service complaints in this range.")
    assert f'<p class="stats-none muted">{markupsafe_escape(no_complaint)}</p>' in sections["service"][1]


def test_arabic_csv_headers_are_the_catalogs(monkeypatch):
    """The statistics CSV files' headers and row labels come from gettext and, in Arabic, are
    the catalog's translations: the label column is «الوسم», as the catalog has it."""
    from pathlib import Path

    from babel.messages.pofile import read_po

    from nazaha.admin import i18n
    from nazaha.admin.statistics_view import chart_csv, chart_table, timeliness, timeliness_csv

    with (Path(__file__).resolve().parent.parent / "nazaha/locales/ar/LC_MESSAGES/nazaha.po").open("rb") as f:
        catalog = read_po(f, locale="ar")
    none = Durations(0, None, None)
    stats = Statistics(
        date_from=D(2026, 1, 1), date_to=D(2026, 1, 31), total=9, by_kind={"corruption": 9},
        by_category={"bribery": 9}, by_service={}, by_sector={"ministry": 9}, by_governorate={"nablus": 9},
        by_month={"2026-01": 9}, by_status={"received": 9}, outcomes={}, days_to_acknowledge=none,
        days_to_close=none, ack_overdue=0, feedback_overdue=0, purged=0,
    )

    def files() -> list[list[list[str]]]:
        import csv
        import io

        bodies = [chart_csv(chart_table(stats, "governorate", 5)), timeliness_csv(timeliness(stats, 5))]
        return [list(csv.reader(io.StringIO(body.decode("utf-8-sig")))) for body in bodies]

    with monkeypatch.context() as patch:
        patch.setattr(i18n, "gettext", lambda message, **_kw: message)
        patch.setattr(i18n, "pgettext", lambda context, message, **_kw: f"{context}|{message}")
        (chart_msgids, figure_msgids) = files()
    i18n.set_locale("ar")
    chart, figures = files()

    def arabic(msgid: str) -> str:
        context, _, text = msgid.rpartition("|")
        message = catalog.get(text, context=context or None)
        assert message is not None and message.string and message.string != text, msgid
        return message.string

    assert chart_msgids[0] == ["Code", "statistics column|Name", "Cases"] and figure_msgids[0] == ["Figure", "Value"]
    # The value's name (e.g. a governorate), never «الوسم» (a case label).
    assert chart[0] == [arabic(m) for m in chart_msgids[0]] and chart[0][1] == "الاسم"
    assert figures[0] == [arabic(m) for m in figure_msgids[0]]
    assert chart[-1][1] == arabic("Total")
    assert [row[0] for row in figures[1:]] == [arabic(row[0]) for row in figure_msgids[1:]]


# ------------------------------------------------------------------------- the tile map


def _tiles(svg: bytes) -> dict[str, dict]:
    """The map's tiles: code -> fill, dashed, x, y, and the texts (name, value)."""
    ns = "{http://www.w3.org/2000/svg}"
    tiles = {}
    for group in ET.fromstring(svg).iter(f"{ns}g"):
        rect = group.find(f"{ns}rect")
        texts = [t.text for t in group.iter(f"{ns}text")]
        tiles[group.get("data-code")] = {"fill": rect.get("fill"), "dashed": rect.get("stroke-dasharray") is not None,
                                         "x": float(rect.get("x")), "y": float(rect.get("y")), "texts": texts}
    return tiles


def test_the_tile_map_places_the_sixteen_governorates_north_to_south_with_published_counts():
    from nazaha.admin import i18n
    from nazaha.admin.statistics_map import GAZA_STRIP, SHADES, TILES, WEST_BANK, WITHHELD_FILL, ZERO_FILL, map_svg
    from nazaha.admin.statistics_view import chart_table
    from nazaha.flows.choices import GOVERNORATES

    # The bot's codes: 11 West Bank governorates, 5 in Gaza, "prefer not to say" (no tile).
    assert set(TILES) == set(WEST_BANK) | set(GAZA_STRIP) == set(GOVERNORATES) - {"undisclosed"}
    assert (len(WEST_BANK), len(GAZA_STRIP)) == (11, 5)
    none = Durations(0, None, None)
    by_governorate = {"nablus": 40, "gaza": 25, "ramallah": 18, "jenin": 12, "rafah": 7, "undisclosed": 6,
                      "hebron": 3, None: 2}
    stats = Statistics(
        date_from=D(2026, 1, 1), date_to=D(2026, 12, 31), total=113, by_kind={"corruption": 113},
        by_category={}, by_service={}, by_sector={}, by_governorate=by_governorate, by_month={}, by_status={},
        outcomes={}, days_to_acknowledge=none, days_to_close=none, ack_overdue=0, feedback_overdue=0, purged=0,
    )
    table = chart_table(stats, "governorate", 5)
    published = {c.code: c.published for c in table.cells}
    assert published["hebron"] == "<5" and published[""] == "<5" and published["undisclosed"] == 6
    i18n.set_locale("en")
    try:
        svg = map_svg(table, "en")
    finally:
        i18n.set_locale("ar")
    tiles = _tiles(svg)
    assert set(tiles) == set(TILES)
    # Roughly north to south; Gaza to the west of the West Bank.
    y = {code: tile["y"] for code, tile in tiles.items()}
    assert y["jenin"] < y["nablus"] < y["ramallah"] < y["jerusalem"] < y["bethlehem"] < y["hebron"]
    assert y["north_gaza"] < y["gaza"] < y["deir_al_balah"] < y["khan_yunis"] < y["rafah"]
    assert max(tiles[c]["x"] for c in GAZA_STRIP) < min(tiles[c]["x"] for c in WEST_BANK)
    assert tiles["tulkarm"]["x"] < tiles["nablus"]["x"] < tiles["tubas"]["x"]
    assert tiles["jericho"]["x"] > tiles["ramallah"]["x"]
    # The published figures: shaded by value, darker for more; a suppressed one grey, dashed
    # and showing its published form, never its value; no case: white, 0.
    assert tiles["nablus"]["texts"] == ["Nablus", "40"] and tiles["nablus"]["fill"] == SHADES[-1]
    shade = {code: SHADES.index(tiles[code]["fill"]) for code in ("rafah", "jenin", "ramallah", "gaza", "nablus")}
    assert shade["rafah"] <= shade["jenin"] < shade["ramallah"] < shade["gaza"] < shade["nablus"], shade
    assert tiles["hebron"] == {**tiles["hebron"], "fill": WITHHELD_FILL, "dashed": True, "texts": ["Hebron", "<5"]}
    assert tiles["tubas"]["fill"] == ZERO_FILL and tiles["tubas"]["texts"][1] == "0"
    text = svg.decode()
    assert "Schematic, not to scale" in text and ">3<" not in text  # hebron's count is nowhere
    assert "<script" not in text and "href" not in text and "<style" not in text and "style=" not in text
    assert not re.search(r"https?://", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    # In Arabic: the names as text, each isolated right to left; the numbers left to right.
    arabic = _tiles(map_svg(table, "ar"))
    assert arabic["nablus"]["texts"] == ["\u2067نابلس\u2069", "\u206640\u2069"]
    assert arabic["hebron"]["texts"][1] == "\u2066<5\u2069"
    # The key starts where the reading does: the left in English, the right in Arabic, each
    # swatch before its words (zero first, then the ranges from the least), under the map.
    from nazaha.admin.statistics_map import WIDTH

    for locale, svg_text in (("en", svg), ("ar", map_svg(table, "ar"))):
        root = ET.fromstring(svg_text)
        swatches = [r for r in root.findall(f"{SVG}rect") if r.get("width") == "22"]
        key = [t for t in root.findall(f"{SVG}text") if float(t.get("y")) > max(tile["y"] for tile in tiles.values())]
        assert [r.get("fill") for r in swatches] == [ZERO_FILL, *SHADES, WITHHELD_FILL]
        lefts = [float(r.get("x")) for r in swatches]
        line = lefts[:-1]  # zero and the ranges; the withheld swatch starts the next line
        if locale == "en":
            assert {t.get("text-anchor") for t in key} == {"start"}
            assert line == sorted(line) and lefts[0] == lefts[-1] == 16  # from the left edge, rightwards
        else:
            assert {t.get("text-anchor") for t in key} == {"end"}
            assert line == sorted(line, reverse=True) and lefts[0] + 22 == lefts[-1] + 22 == WIDTH - 16  # leftwards
            for rect, text in zip(swatches, key):  # each swatch at the right of its words
                assert float(text.get("x")) < float(rect.get("x")), text.text
    with pytest.raises(ValueError):
        map_svg(chart_table(stats, "kind", 5), "en")
