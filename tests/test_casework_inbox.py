"""The inbox: access rules, every filter, every sort key both ways, paging, the unseen mark
and the dashboard — on SQLite and PostgreSQL, against an oracle computed in Python."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from nazaha.services.casework import (
    SORT_KEYS,
    STATUSES,
    CaseAccessDenied,
    DeadlineRules,
    InboxFilter,
    Viewer,
    assign,
    can_see,
    case_deadlines,
    change_status,
    dashboard_counts,
    inbox_page,
    mark_seen,
    set_priority,
)
from nazaha.storage.console_models import PRIORITIES, CaseLabel, CaseRecusal, CaseShare, CaseState
from nazaha.storage.crypto import TeamPrivateKey
from nazaha.storage.database import create_sessionmaker, write_session
from tests.casework_support import NOW, add_staff, console_store, make_case

TODAY = dt.date(2026, 3, 2)
RULES = DeadlineRules()
D = dt.date


@dataclasses.dataclass
class Spec:
    """What the test put into one case (the oracle's view of it)."""

    id: str
    designation: str
    kind: str
    category: str | None
    service: str | None
    sector: str | None
    governorate: str | None
    status: str
    created_on: dt.date
    priority: str = "normal"
    assignee: str | None = None  # username
    labels: tuple[str, ...] = ()
    acknowledged_on: dt.date | None = None
    feedback_on: dt.date | None = None
    has_state: bool = False
    shared_with: tuple[str, ...] = ()
    recused: tuple[str, ...] = ()


@dataclasses.dataclass
class World:
    sm: object
    team: TeamPrivateKey
    staff: dict[str, Viewer]
    specs: list[Spec]

    def user_id(self, name: str | None) -> str | None:
        return None if name is None else self.staff[name].user_id


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request, tmp_path):
    async with console_store(request.param, tmp_path) as engine:
        sm = create_sessionmaker(engine)
        staff = {
            "admin": await add_staff(sm, "admin", "admin"),
            "alice": await add_staff(sm, "alice", "caseworker"),
            "bob": await add_staff(sm, "bob", "caseworker"),
            "carol": await add_staff(sm, "carol", "caseworker"),
            "vera": await add_staff(sm, "vera", "volunteer"),
        }
        team = TeamPrivateKey.generate()
        world = World(sm, team, staff, [])
        await seed(world)
        yield world


# Dates around month ends, so that the deadline sort meets the clamped month arithmetic.
DATES = [
    D(2025, 10, 24), D(2025, 10, 31), D(2025, 11, 23), D(2025, 11, 24), D(2025, 11, 30),
    D(2025, 12, 1), D(2025, 12, 31), D(2026, 1, 31), D(2026, 2, 20), D(2026, 2, 23),
    D(2026, 2, 26), D(2026, 2, 28), D(2026, 3, 1), D(2026, 3, 2),
]


async def seed(world: World, n: int = 36) -> None:
    rng = random.Random(2019_1937)
    for i in range(n):
        kind = rng.choice(["corruption", "complaint"])
        spec = Spec(
            id="",
            designation=f"R-{'ABCDEFGHJK'[i % 10]}{i:02d}X{'Q' if i % 3 else 'Z'}",
            kind=kind,
            category=rng.choice(["bribery", "nepotism", "procurement"]) if kind == "corruption" else None,
            service=rng.choice(["health", "education", "municipal"]) if kind == "complaint" else None,
            sector=rng.choice(["ministry", "security", None]),
            governorate=rng.choice(["nablus", "hebron", "gaza", None]),
            status=rng.choice(STATUSES),
            created_on=rng.choice(DATES),
        )
        if rng.random() < 0.7:
            spec.has_state = True
            spec.priority = rng.choice(PRIORITIES)
            spec.assignee = rng.choice(["alice", "bob", "admin", None, None])
            spec.labels = tuple(sorted(rng.sample(["urgent-check", "media", "عاجل", "legal"], rng.randint(0, 2))))
            if spec.status != "received":
                spec.acknowledged_on = min(spec.created_on + dt.timedelta(days=rng.randint(0, 9)), TODAY)
                if rng.random() < 0.4:
                    spec.feedback_on = spec.acknowledged_on + dt.timedelta(days=3)
            if rng.random() < 0.2:
                spec.shared_with = ("bob",)
            if rng.random() < 0.15:
                spec.recused = ("alice",)
        spec.id, _key = await make_case(
            world.sm,
            world.team.public_key(),
            created_on=spec.created_on,
            kind=spec.kind,
            category=spec.category,
            service=spec.service,
            sector=spec.sector,
            governorate=spec.governorate,
            status=spec.status,
            outcome="substantiated" if spec.status == "closed" else None,
            designation=spec.designation,
        )
        if spec.has_state:
            async with write_session(world.sm) as session:
                session.add(
                    CaseState(
                        report_id=spec.id,
                        priority=spec.priority,
                        assignee_id=world.user_id(spec.assignee),
                        acknowledged_on=spec.acknowledged_on,
                        feedback_on=spec.feedback_on,
                        updated_at=NOW,
                    )
                )
                session.add_all(CaseLabel(report_id=spec.id, label=label) for label in spec.labels)
                session.add_all(CaseShare(report_id=spec.id, user_id=world.user_id(u)) for u in spec.shared_with)
                session.add_all(CaseRecusal(report_id=spec.id, user_id=world.user_id(u)) for u in spec.recused)
        world.specs.append(spec)


# -- the oracle ---------------------------------------------------------------------------


def visible(spec: Spec, viewer_name: str, world: World) -> bool:
    role = world.staff[viewer_name].role
    if role == "admin":
        return True
    if role != "caseworker" or viewer_name in spec.recused:
        return False
    return spec.assignee in (None, viewer_name) or viewer_name in spec.shared_with


def deadlines_of(spec: Spec):
    return case_deadlines(spec.created_on, spec.acknowledged_on, spec.feedback_on, spec.status == "closed", TODAY, RULES)


SORT_ORACLE = {
    "designation": lambda s: s.designation,
    "kind": lambda s: s.kind,
    "category": lambda s: s.category or s.service,
    "sector": lambda s: s.sector,
    "governorate": lambda s: s.governorate,
    "status": lambda s: STATUSES.index(s.status),
    "priority": lambda s: PRIORITIES.index(s.priority),
    "assignee": lambda s: s.assignee,
    "received": lambda s: s.created_on,
    "age": lambda s: -s.created_on.toordinal(),
    # The next deadline, then the day it counts from (received, or acknowledged).
    "deadline": lambda s: (
        None if deadlines_of(s).next_due is None
        else (deadlines_of(s).next_due, s.acknowledged_on or s.created_on)
    ),
    "labels": lambda s: min(s.labels) if s.labels else None,
}


def expected_order(specs: list[Spec], sort: str, descending: bool) -> list[str]:
    key = SORT_ORACLE[sort]
    present = sorted((s for s in specs if key(s) is not None), key=lambda s: (key(s), s.id), reverse=descending)
    if sort == "age":  # the tie-break follows the received date's direction
        present = sorted(present, key=lambda s: (s.created_on, s.id), reverse=not descending)
    missing = sorted((s for s in specs if key(s) is None), key=lambda s: s.id, reverse=descending)
    return [s.id for s in present + missing]


async def page_of(world: World, viewer_name: str, f: InboxFilter):
    async with world.sm() as session:
        return await inbox_page(session, world.staff[viewer_name], f, TODAY, RULES)


async def ids_of(world: World, viewer_name: str, **filters) -> set[str]:
    page = await page_of(world, viewer_name, InboxFilter(page_size=200, **filters))
    assert page.total == len(page.rows)
    return {row.report_id for row in page.rows}


def oracle_ids(world: World, viewer_name: str, predicate) -> set[str]:
    return {s.id for s in world.specs if visible(s, viewer_name, world) and predicate(s)}


# -- tests --------------------------------------------------------------------------------


async def test_access_rules(world):
    everything = {s.id for s in world.specs}
    assert await ids_of(world, "admin") == everything
    assert await ids_of(world, "vera") == set()
    for name in ("alice", "bob", "carol"):
        assert await ids_of(world, name) == oracle_ids(world, name, lambda s: True)
    # The data covers each rule: someone else's case, a shared one, a recusal.
    assert any(s.assignee == "bob" and "alice" not in s.recused for s in world.specs)
    assert any(s.shared_with for s in world.specs)
    assert any(s.recused and s.assignee is None for s in world.specs)
    hidden = next(s for s in world.specs if s.assignee == "bob" and not s.shared_with)
    recused = next(s for s in world.specs if s.recused and s.assignee is None)
    unassigned = next(s for s in world.specs if s.assignee is None and not s.recused)
    async with world.sm() as session:
        assert not await can_see(session, world.staff["alice"], hidden.id)
        assert await can_see(session, world.staff["bob"], hidden.id)
        assert not await can_see(session, world.staff["alice"], recused.id)
        assert await can_see(session, world.staff["carol"], recused.id)
        assert await can_see(session, world.staff["alice"], unassigned.id)
        assert not await can_see(session, world.staff["vera"], unassigned.id)
        assert await can_see(session, world.staff["admin"], recused.id)
        assert not await can_see(session, world.staff["admin"], "0" * 32)
    async with write_session(world.sm) as session:
        with pytest.raises(CaseAccessDenied):
            await set_priority(session, world.staff["alice"], hidden.id, "high")
        with pytest.raises(CaseAccessDenied):
            await mark_seen(session, world.staff["vera"], unassigned.id, NOW)


FILTER_CASES = [
    ({"designation": "a0"}, lambda s: "A0" in s.designation),
    ({"designation": "xz"}, lambda s: "XZ" in s.designation),
    ({"kind": "complaint"}, lambda s: s.kind == "complaint"),
    ({"category": "bribery"}, lambda s: s.category == "bribery"),
    ({"service": "health"}, lambda s: s.service == "health"),
    ({"sector": "security"}, lambda s: s.sector == "security"),
    ({"governorate": "gaza"}, lambda s: s.governorate == "gaza"),
    ({"statuses": ("in_review", "referred")}, lambda s: s.status in ("in_review", "referred")),
    ({"statuses": ("closed",)}, lambda s: s.status == "closed"),
    ({"priority": "normal"}, lambda s: s.priority == "normal"),
    ({"priority": "urgent"}, lambda s: s.priority == "urgent"),
    ({"label": "عاجل"}, lambda s: "عاجل" in s.labels),
    ({"label": "MEDIA"}, lambda s: "media" in s.labels),
    ({"assignee": "none"}, lambda s: s.assignee is None),
    ({"received_from": D(2025, 12, 1)}, lambda s: s.created_on >= D(2025, 12, 1)),
    ({"received_to": D(2025, 11, 30)}, lambda s: s.created_on <= D(2025, 11, 30)),
    (
        {"received_from": D(2025, 11, 24), "received_to": D(2026, 1, 31)},
        lambda s: D(2025, 11, 24) <= s.created_on <= D(2026, 1, 31),
    ),
    ({"flag": "ack_overdue"}, lambda s: "ack_overdue" in deadlines_of(s).flags),
    ({"flag": "feedback_overdue"}, lambda s: "feedback_overdue" in deadlines_of(s).flags),
    ({"flag": "due_soon"}, lambda s: "due_soon" in deadlines_of(s).flags),
    (
        {"kind": "corruption", "statuses": ("received", "acknowledged"), "governorate": "nablus"},
        lambda s: s.kind == "corruption" and s.status in ("received", "acknowledged") and s.governorate == "nablus",
    ),
]


async def test_every_filter(world):
    matched_something = 0
    for filters, predicate in FILTER_CASES:
        for viewer in ("admin", "alice"):
            expected = oracle_ids(world, viewer, predicate)
            assert await ids_of(world, viewer, **filters) == expected, (filters, viewer)
            matched_something += bool(expected)
    assert matched_something >= len(FILTER_CASES)  # the data exercises (nearly) every filter
    # Assignee filters are relative to the viewer.
    for viewer in ("admin", "alice", "bob"):
        assert await ids_of(world, viewer, assignee="me") == oracle_ids(world, viewer, lambda s: s.assignee == viewer)
    bob = world.staff["bob"].user_id
    assert await ids_of(world, "admin", assignee=bob) == oracle_ids(world, "admin", lambda s: s.assignee == "bob")


async def test_rows_carry_the_case_and_its_deadlines(world):
    page = await page_of(world, "admin", InboxFilter(page_size=200))
    by_id = {s.id: s for s in world.specs}
    for row in page.rows:
        spec = by_id[row.report_id]
        deadlines = deadlines_of(spec)
        assert (row.designation, row.kind, row.category, row.service, row.sector, row.governorate) == (
            spec.designation, spec.kind, spec.category, spec.service, spec.sector, spec.governorate
        )
        assert (row.status, row.priority, row.labels, row.received_on) == (
            spec.status, spec.priority, spec.labels, spec.created_on
        )
        assert row.assignee_id == world.user_id(spec.assignee)
        assert row.assignee_name == spec.assignee
        assert row.age_days == (TODAY - spec.created_on).days
        assert (row.ack_due, row.feedback_due, row.flags) == (deadlines.ack_due, deadlines.feedback_due, deadlines.flags)
        assert row.outcome == ("substantiated" if spec.status == "closed" else None)
        assert row.unseen  # nobody opened anything yet


@pytest.mark.parametrize("sort", SORT_KEYS)
async def test_every_sort_key_both_ways(world, sort):
    for descending in (False, True):
        for viewer in ("admin", "alice"):
            specs = [s for s in world.specs if visible(s, viewer, world)]
            page = await page_of(world, viewer, InboxFilter(sort=sort, descending=descending, page_size=200))
            assert [r.report_id for r in page.rows] == expected_order(specs, sort, descending), (sort, descending, viewer)


@pytest.mark.parametrize(("sort", "descending"), [("deadline", False), ("deadline", True), ("priority", True), ("received", False)])
async def test_paging(world, sort, descending):
    full = expected_order(world.specs, sort, descending)
    seen: list[str] = []
    for number in range(1, 5):
        page = await page_of(world, "admin", InboxFilter(sort=sort, descending=descending, page=number, page_size=10))
        assert (page.total, page.pages, page.page, page.page_size) == (36, 4, number, 10)
        assert len(page.rows) == (10 if number < 4 else 6)
        seen += [row.report_id for row in page.rows]
    assert seen == full
    beyond = await page_of(world, "admin", InboxFilter(sort=sort, descending=descending, page=99, page_size=10))
    assert beyond.page == 4 and [r.report_id for r in beyond.rows] == full[30:]
    for viewer in ("alice", "bob"):  # a caseworker's pages of 3, each group cut at page x 3
        specs = [s for s in world.specs if visible(s, viewer, world)]
        expected = expected_order(specs, sort, descending)
        pages = -(-len(expected) // 3)
        got = []
        for number in range(1, pages + 1):
            page = await page_of(world, viewer, InboxFilter(sort=sort, descending=descending, page=number, page_size=3))
            got += [row.report_id for row in page.rows]
        assert got == expected, viewer
    empty = await page_of(world, "vera", InboxFilter())
    assert (empty.rows, empty.total, empty.page, empty.pages) == ([], 0, 1, 1)


async def test_unseen_mark(world):
    alice, bob = world.staff["alice"], world.staff["bob"]
    spec = next(s for s in world.specs if not s.has_state)  # unassigned, priority "normal"
    later = NOW + dt.timedelta(hours=1)

    async def unseen_for(viewer) -> set[str]:
        return await ids_of(world, viewer, unseen_only=True)

    assert spec.id in await unseen_for("alice")
    async with write_session(world.sm) as session:
        await mark_seen(session, alice, spec.id, later)
    assert spec.id not in await unseen_for("alice")
    assert spec.id in await unseen_for("bob")
    row = next(r for r in (await page_of(world, "alice", InboxFilter(page_size=200))).rows if r.report_id == spec.id)
    assert row.unseen is False
    # Alice's own change leaves it seen for her...
    async with write_session(world.sm) as session:
        assert await set_priority(session, alice, spec.id, "urgent", now=later + dt.timedelta(minutes=1))
    assert spec.id not in await unseen_for("alice")
    # ...Bob's change makes it "updated" for her (and not for him: he was up to date).
    async with write_session(world.sm) as session:
        await mark_seen(session, bob, spec.id, later + dt.timedelta(seconds=90))
        assert await set_priority(session, bob, spec.id, "high", now=later + dt.timedelta(minutes=2))
    assert spec.id in await unseen_for("alice")
    assert spec.id not in await unseen_for("bob")
    # Someone who was not up to date stays "unseen" after their own change.
    async with write_session(world.sm) as session:
        assert await set_priority(session, alice, spec.id, "low", now=later + dt.timedelta(minutes=3))
    assert spec.id in await unseen_for("alice")
    async with write_session(world.sm) as session:
        await mark_seen(session, alice, spec.id, later + dt.timedelta(minutes=4))
    assert spec.id not in await unseen_for("alice")


async def test_a_message_from_the_reporter_marks_the_case_unseen(world):
    alice = world.staff["alice"]
    report_id, _key = await make_case(
        world.sm, world.team.public_key(), messages=[("reporter", "more details", False)]
    )
    async with write_session(world.sm) as session:
        await mark_seen(session, alice, report_id, NOW)
    assert report_id in await ids_of(world, "alice", unseen_only=True)
    read_id, _key = await make_case(world.sm, world.team.public_key(), messages=[("reporter", "read", True)])
    async with write_session(world.sm) as session:
        await mark_seen(session, alice, read_id, NOW)
    assert read_id not in await ids_of(world, "alice", unseen_only=True)


async def test_dashboard_counts(world):
    for name in ("admin", "alice", "bob", "vera"):
        specs = [s for s in world.specs if visible(s, name, world)]
        open_specs = [s for s in specs if s.status != "closed"]
        async with world.sm() as session:
            counts = await dashboard_counts(session, world.staff[name], TODAY, RULES)
        assert counts == {
            "new": sum(s.status == "received" for s in specs),
            "unassigned": sum(s.assignee is None for s in open_specs),
            "mine": sum(s.assignee == name for s in open_specs),
            "ack_overdue": sum("ack_overdue" in deadlines_of(s).flags for s in specs),
            "feedback_overdue": sum("feedback_overdue" in deadlines_of(s).flags for s in specs),
            "due_soon": sum("due_soon" in deadlines_of(s).flags for s in specs),
            "open": len(open_specs),
        }, name
    assert counts == dict.fromkeys(counts, 0)  # the volunteer's


async def test_a_workflow_round_on_this_backend(world):
    """One workflow pass per backend: take a case, acknowledge, close; the inbox follows."""
    alice = world.staff["alice"]
    report_id, _key = await make_case(world.sm, world.team.public_key(), created_on=D(2026, 2, 20))
    async with write_session(world.sm) as session:
        assert await assign(session, alice, [report_id], alice.user_id) == 1
        await change_status(session, alice, report_id, "acknowledged", notify=True, today=D(2026, 2, 25))
    page = await page_of(world, "alice", InboxFilter(assignee="me", page_size=200))
    row = next(r for r in page.rows if r.report_id == report_id)
    assert (row.status, row.ack_due, row.feedback_due) == ("acknowledged", None, D(2026, 5, 25))
    async with write_session(world.sm) as session:
        await change_status(session, alice, report_id, "closed", outcome="out_of_scope", notify=False, today=TODAY)
    assert report_id in await ids_of(world, "alice", statuses=("closed",))
    assert report_id not in await ids_of(world, "alice", statuses=("acknowledged",))


async def test_sqlite_reads_the_inbox_indexes(tmp_path):
    """The plans the benchmark depends on (docs/benchmarks.md): a count or a sort on other
    columns scans the triage index in report id order, the newest-first page walks the index
    by day received, the "new" mark reads the partial index of unread messages."""
    from sqlalchemy import text

    from nazaha.services import inbox

    async with console_store("sqlite", tmp_path) as engine:
        worker = Viewer("a" * 32, "caseworker")

        async def plan(statement) -> str:
            sql = str(statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
            async with engine.connect() as conn:
                return "\n".join(row[-1] for row in await conn.execute(text("EXPLAIN QUERY PLAN " + sql)))

        unseen = InboxFilter(unseen_only=True, statuses=("received",))
        count = await plan(inbox.count_statement(worker, unseen, TODAY, RULES))
        assert "COVERING INDEX ix_reports_inbox" in count and "ix_case_messages_unread_by_staff" in count
        by_priority = InboxFilter(sort="priority", governorate="gaza")
        ids = await plan(inbox.page_ids_statement(worker, by_priority, TODAY, RULES, "sqlite", 1))
        assert "SCAN reports USING COVERING INDEX ix_reports_inbox" in ids
        newest = await plan(inbox.page_ids_statement(worker, InboxFilter(), TODAY, RULES, "sqlite", 1))
        assert "SCAN reports USING COVERING INDEX ix_reports_received" in newest
        assert "TEMP B-TREE" not in newest  # no sort: the walk stops after the page


async def test_a_page_inside_a_transaction_sees_its_own_writes(world):
    """A session that has begun (here: a write not committed yet) counts in that same
    transaction; a fresh one counts on a connection of its own, concurrently."""
    spec = next(s for s in world.specs if not s.has_state)
    admin = world.staff["admin"]
    urgent = oracle_ids(world, "admin", lambda s: s.priority == "urgent")
    async with world.sm() as session:
        await set_priority(session, admin, spec.id, "urgent")
        page = await inbox_page(session, admin, InboxFilter(priority="urgent", page_size=200), TODAY, RULES)
        assert page.total == len(urgent) + 1 == len(page.rows)
        assert spec.id in {row.report_id for row in page.rows}
        await session.rollback()
    fresh = await page_of(world, "admin", InboxFilter(priority="urgent", page_size=200, page=7))
    assert (fresh.total, fresh.page) == (len(urgent), 1)  # past the last page: the last one
    assert {row.report_id for row in fresh.rows} == urgent
