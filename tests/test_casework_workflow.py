"""The workflow: transitions, reopening, assignment, labels, priority, sharing, recusal,
links, notes, staff replies and reply templates (SQLite; the inbox tests run a workflow round
on PostgreSQL too)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest
from sqlalchemy import select, update

from nazaha.services.casework import (
    OUTCOMES,
    STATUSES,
    TRANSITIONS,
    CaseAccessDenied,
    InvalidTransition,
    NotAllowed,
    TemplateNotFound,
    add_label,
    add_note,
    assign,
    can_see,
    change_status,
    delete_template,
    ensure_default_templates,
    labels,
    link,
    linked_cases,
    list_templates,
    notes,
    record_staff_reply,
    recuse,
    recused,
    remove_label,
    reopen,
    save_template,
    set_labels,
    set_priority,
    share,
    shared_with,
    unlink,
    unrecuse,
    unshare,
)
from nazaha.services.templates import DEFAULT_TEMPLATES
from nazaha.storage.console_models import CaseEvent, CaseNote, CaseState, PendingNews
from nazaha.storage.crypto import TamperedData, TeamPrivateKey, unwrap_with_team
from nazaha.storage.database import create_sessionmaker, write_session
from nazaha.storage.models import NotificationLink, PendingNotification, Report
from nazaha.storage.reports import UnlockedCase
from tests.casework_support import NOW, add_staff, console_store, make_case

D = dt.date
TODAY = D(2026, 3, 2)


@dataclasses.dataclass
class Env:
    sm: object
    team: TeamPrivateKey
    admin: object
    alice: object
    bob: object
    vera: object

    async def case(self, **kwargs) -> str:
        report_id, _key = await make_case(self.sm, self.team.public_key(), **kwargs)
        return report_id

    async def unlocked(self, report_id: str) -> UnlockedCase:
        async with self.sm() as session:
            report = await session.get(Report, report_id)
        return UnlockedCase(
            report_id=report.id,
            designation=report.designation,
            kind=report.kind,
            status=report.status,
            outcome=report.outcome,
            created_on=report.created_on,
            data_key=unwrap_with_team(report.wrapped_key_team, self.team, report.id),
        )


@pytest.fixture
async def env(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        sm = create_sessionmaker(engine)
        yield Env(
            sm,
            TeamPrivateKey.generate(),
            await add_staff(sm, "admin", "admin"),
            await add_staff(sm, "alice", "caseworker"),
            await add_staff(sm, "bob", "caseworker"),
            await add_staff(sm, "vera", "volunteer"),
        )


async def status_of(env: Env, report_id: str) -> tuple[str, str | None, CaseState | None]:
    async with env.sm() as session:
        report = await session.get(Report, report_id)
        state = await session.get(CaseState, report_id)
        return report.status, report.outcome, state


async def events_of(env: Env, report_id: str) -> list[tuple[str, str | None, str | None]]:
    async with env.sm() as session:
        rows = await session.scalars(select(CaseEvent).where(CaseEvent.report_id == report_id).order_by(CaseEvent.id))
        return [(e.kind, e.old, e.new) for e in rows]


def arguments_for(new: str) -> dict:
    if new == "closed":
        return {"outcome": "substantiated"}
    if new == "referred":
        return {"referred_to": "Anti-Corruption Commission"}
    return {}


@pytest.mark.parametrize(("old", "new"), [(o, n) for o in STATUSES for n in STATUSES])
async def test_transitions_valid_and_invalid(env, old, new):
    report_id = await env.case(status=old)
    async with write_session(env.sm) as session:
        if new in TRANSITIONS[old]:
            change = await change_status(
                session, env.alice, report_id, new, notify=False, today=TODAY, **arguments_for(new)
            )
            assert (change.old, change.new) == (old, new)
        else:
            with pytest.raises(InvalidTransition):
                await change_status(session, env.alice, report_id, new, notify=False, today=TODAY, **arguments_for(new))
    status, _outcome, _state = await status_of(env, report_id)
    assert status == (new if new in TRANSITIONS[old] else old)


async def test_the_path_through_a_case_sets_dates_events_and_the_bots_status(env):
    report_id = await env.case(created_on=D(2026, 2, 20))
    async with write_session(env.sm) as session:
        await change_status(session, env.alice, report_id, "acknowledged", notify=False, today=D(2026, 2, 22))
        await change_status(session, env.alice, report_id, "in_review", notify=False, today=D(2026, 2, 23))
        await change_status(session, env.alice, report_id, "referred", referred_to="  Ministry of\nHealth  ",
                            notify=False, today=D(2026, 2, 24))
        await change_status(session, env.alice, report_id, "action_taken", notify=False, today=D(2026, 2, 25))
    status, outcome, state = await status_of(env, report_id)
    assert (status, outcome) == ("action_taken", None)
    assert (state.acknowledged_on, state.feedback_on, state.closed_on) == (D(2026, 2, 22), None, None)
    assert state.referred_to == "Ministry of Health"
    async with write_session(env.sm) as session:
        await change_status(session, env.alice, report_id, "closed", outcome="insufficient_information",
                            notify=False, today=D(2026, 3, 1))
    status, outcome, state = await status_of(env, report_id)
    assert (status, outcome) == ("closed", "insufficient_information")
    assert (state.feedback_on, state.closed_on) == (D(2026, 3, 1), D(2026, 3, 1))
    async with write_session(env.sm) as session:
        change = await reopen(session, env.bob, report_id, today=D(2026, 3, 2))
    assert (change.old, change.new) == ("closed", "in_review")
    status, outcome, state = await status_of(env, report_id)
    assert (status, outcome, state.closed_on) == ("in_review", None, None)
    assert (state.acknowledged_on, state.feedback_on) == (D(2026, 2, 22), D(2026, 3, 1))  # kept
    assert await events_of(env, report_id) == [
        ("status", "received", "acknowledged"),
        ("status", "acknowledged", "in_review"),
        ("status", "in_review", "referred"),
        ("status", "referred", "action_taken"),
        ("status", "action_taken", "closed"),
        ("outcome", None, "insufficient_information"),
        ("reopen", "closed", "in_review"),
    ]


async def test_status_arguments_are_checked(env):
    report_id = await env.case(status="in_review")
    closed = await env.case(status="closed")
    async with write_session(env.sm) as session:
        for bad in (
            {"new_status": "closed"},  # no outcome
            {"new_status": "closed", "outcome": "referred"},  # an old outcome code
            {"new_status": "referred"},  # no authority
            {"new_status": "referred", "referred_to": "   "},
            {"new_status": "referred", "referred_to": "x" * 201},
            {"new_status": "action_taken", "outcome": "substantiated"},
            {"new_status": "action_taken", "referred_to": "someone"},
            {"new_status": "no_such_status"},
        ):
            with pytest.raises(ValueError):
                await change_status(session, env.alice, report_id, notify=False, today=TODAY, **bad)
        with pytest.raises(InvalidTransition):  # a closed case goes back only through reopen
            await change_status(session, env.alice, closed, "in_review",
                                notify=False, today=TODAY)
        with pytest.raises(InvalidTransition):
            await reopen(session, env.alice, report_id, today=TODAY)
    assert set(OUTCOMES) == {"substantiated", "not_substantiated", "out_of_scope", "insufficient_information"}


async def test_notify_keeps_news_only_for_an_opted_in_open_case(env):
    silent = await env.case()
    opted_in = await env.case()
    async with write_session(env.sm) as session:
        session.add(NotificationLink(id="a" * 32, report_id=opted_in, sealed_link=b"sealed", created_on=TODAY))
    async with write_session(env.sm) as session:
        assert not (await change_status(session, env.alice, silent, "acknowledged", notify=True, today=TODAY)).notified
        assert (await change_status(session, env.alice, opted_in, "acknowledged", notify=True, today=TODAY)).notified
        assert not (await change_status(session, env.alice, opted_in, "in_review", notify=False, today=TODAY)).notified
    async with env.sm() as session:
        # Kept in the console's own store, never in the bot's pending list.
        assert list(await session.scalars(select(PendingNews.report_id))) == [opted_in]
        assert list(await session.scalars(select(PendingNotification.id))) == []
    # Closing deletes the links and whatever news was not sent yet (as CaseService.set_status).
    async with write_session(env.sm) as session:
        session.add(PendingNotification(report_id=opted_in))
    async with write_session(env.sm) as session:
        change = await change_status(session, env.alice, opted_in, "closed", outcome="not_substantiated",
                                     notify=True, today=TODAY)
    assert not change.notified
    async with env.sm() as session:
        assert list(await session.scalars(select(PendingNews.report_id))) == []
        assert list(await session.scalars(select(PendingNotification.id))) == []
        assert list(await session.scalars(select(NotificationLink.id))) == []


async def test_functions_do_not_commit(env):
    report_id = await env.case()
    async with env.sm() as session:
        await change_status(session, env.alice, report_id, "acknowledged", notify=False, today=TODAY)
        await set_priority(session, env.alice, report_id, "high")
        await session.rollback()
    status, _outcome, state = await status_of(env, report_id)
    assert status == "received" and state is None


async def test_assign(env):
    a, b, c = await env.case(), await env.case(), await env.case()
    async with write_session(env.sm) as session:
        assert await assign(session, env.admin, [a, b], env.bob.user_id) == 2
        assert await assign(session, env.admin, [a, b], env.bob.user_id) == 0  # no change
    async with env.sm() as session:
        assert not await can_see(session, env.alice, a)
    async with write_session(env.sm) as session:
        with pytest.raises(CaseAccessDenied):  # not visible to her any more
            await assign(session, env.alice, [a], env.alice.user_id)
        with pytest.raises(NotAllowed):  # a caseworker takes cases only for herself
            await assign(session, env.alice, [c], env.bob.user_id)
        with pytest.raises(ValueError):  # a volunteer cannot be an assignee
            await assign(session, env.admin, [c], env.vera.user_id)
        with pytest.raises(ValueError):
            await assign(session, env.admin, [c], "f" * 32)
    async with write_session(env.sm) as session:
        assert await assign(session, env.alice, [c], env.alice.user_id) == 1
        # Moving a departing colleague's cases: the admin reassigns in bulk.
        assert await assign(session, env.admin, [a, b, c], env.alice.user_id) == 2  # c was hers
    async with write_session(env.sm) as session:
        with pytest.raises(NotAllowed):  # a caseworker cannot release or hand over
            await assign(session, env.alice, [c], None)
        assert await assign(session, env.admin, [c], None) == 1
    assert ("assign", env.bob.user_id, env.alice.user_id) in await events_of(env, a)


async def test_labels_and_priority(env):
    a, b = await env.case(), await env.case()
    async with write_session(env.sm) as session:
        assert await add_label(session, env.alice, [a, b], "  Needs  Legal ") == 2
        assert await add_label(session, env.alice, [a, b], "needs legal") == 0
        assert await add_label(session, env.alice, [a], "عاجل") == 1
        assert await labels(session, env.alice, a) == ["needs legal", "عاجل"]
        assert await remove_label(session, env.alice, [a, b], "NEEDS LEGAL") == 2
        assert await set_labels(session, env.alice, [a, b], ["media", "x-1"]) == 2
        assert await labels(session, env.alice, b) == ["media", "x-1"]
        for bad in ("", "   ", "a" * 33, "two,labels", "<b>", "-dash", "zero\u200bwidth", "nul\x00"):
            with pytest.raises(ValueError):
                await add_label(session, env.alice, [a], bad)
        with pytest.raises(ValueError):
            await set_labels(session, env.alice, [a], [f"l{i}" for i in range(21)])
        assert await set_priority(session, env.alice, a, "urgent")
        assert not await set_priority(session, env.alice, a, "urgent")
        with pytest.raises(ValueError):
            await set_priority(session, env.alice, a, "critical")
        with pytest.raises(CaseAccessDenied):
            await add_label(session, env.vera, [a], "media")
    async with env.sm() as session:
        assert (await session.get(CaseState, a)).priority == "urgent"
    assert ("label_add", None, "عاجل") in await events_of(env, a)


async def test_share_and_recusal(env):
    report_id = await env.case()
    async with write_session(env.sm) as session:
        await assign(session, env.admin, [report_id], env.bob.user_id)
    async with env.sm() as session:
        assert not await can_see(session, env.alice, report_id)
    async with write_session(env.sm) as session:
        with pytest.raises(CaseAccessDenied):
            await share(session, env.alice, report_id, env.alice.user_id)
        assert await share(session, env.bob, report_id, env.alice.user_id)  # the assignee shares
        assert not await share(session, env.bob, report_id, env.alice.user_id)
        with pytest.raises(ValueError):
            await share(session, env.bob, report_id, env.vera.user_id)
        with pytest.raises(ValueError):  # nor with themself
            await share(session, env.bob, report_id, env.bob.user_id)
        assert await shared_with(session, env.bob, report_id) == [env.alice.user_id]
    async with env.sm() as session:
        assert await can_see(session, env.alice, report_id)
    async with write_session(env.sm) as session:
        with pytest.raises(NotAllowed):  # she sees it, but sharing is the assignee's
            await share(session, env.alice, report_id, env.alice.user_id)
        assert await unshare(session, env.alice, report_id, env.alice.user_id)  # she can leave
    async with env.sm() as session:
        assert not await can_see(session, env.alice, report_id)

    # Recusal: admins only; it beats assignment and sharing.
    async with write_session(env.sm) as session:
        await share(session, env.admin, report_id, env.alice.user_id)
        with pytest.raises(NotAllowed):
            await recuse(session, env.bob, report_id, env.alice.user_id)
        with pytest.raises(ValueError):
            await recuse(session, env.admin, report_id, env.admin.user_id)
        assert await recuse(session, env.admin, report_id, env.bob.user_id)
        assert await recuse(session, env.admin, report_id, env.alice.user_id)
        assert await recused(session, env.admin, report_id) == sorted([env.alice.user_id, env.bob.user_id])
    async with env.sm() as session:
        assert not await can_see(session, env.alice, report_id)
        assert not await can_see(session, env.bob, report_id)
        state = await session.get(CaseState, report_id)
        assert state.assignee_id is None  # the recused assignee let go of it
        assert await shared_with(session, env.admin, report_id) == []
    async with write_session(env.sm) as session:
        with pytest.raises(ValueError):  # a recused caseworker cannot be assigned
            await assign(session, env.admin, [report_id], env.bob.user_id)
        with pytest.raises(ValueError):
            await share(session, env.admin, report_id, env.bob.user_id)
        assert await unrecuse(session, env.admin, report_id, env.alice.user_id)
        assert not await unrecuse(session, env.admin, report_id, env.alice.user_id)
    async with env.sm() as session:
        assert await can_see(session, env.alice, report_id)  # unassigned again
        assert not await can_see(session, env.bob, report_id)


async def test_links(env):
    a, b = await env.case(), await env.case()
    hidden = await env.case()
    async with write_session(env.sm) as session:
        await assign(session, env.admin, [hidden], env.bob.user_id)
        assert await link(session, env.alice, b, a)
        assert not await link(session, env.alice, a, b)
        with pytest.raises(ValueError):
            await link(session, env.alice, a, a)
        with pytest.raises(CaseAccessDenied):
            await link(session, env.alice, a, hidden)
        assert await link(session, env.admin, a, hidden)
        assert [c.report_id for c in await linked_cases(session, env.alice, a)] == [b]  # hidden stays hidden
        assert {c.report_id for c in await linked_cases(session, env.admin, a)} == {b, hidden}
        assert await unlink(session, env.alice, a, b)
        assert not await unlink(session, env.alice, b, a)
        assert await linked_cases(session, env.alice, b) == []


async def test_notes_are_sealed_and_listed(env):
    report_id = await env.case()
    case = await env.unlocked(report_id)
    body = "الشاهد يخشى الانتقام — call back after 5pm"
    async with write_session(env.sm) as session:
        first = await add_note(session, env.alice, case, body, now=NOW)
        second = await add_note(session, env.bob, case, "second", now=NOW + dt.timedelta(minutes=1))
        for bad in ("", "  \n", "x" * 20_001):
            with pytest.raises(ValueError):
                await add_note(session, env.alice, case, bad)
        with pytest.raises(CaseAccessDenied):
            await add_note(session, env.vera, case, "no")
    async with env.sm() as session:
        listed = await notes(session, env.admin, case)
        raw = list(await session.scalars(select(CaseNote.sealed)))
    assert [(n.seq, n.body, n.author_name) for n in listed] == [(1, body, "alice"), (2, "second", "bob")]
    assert (first.id, second.seq) == (listed[0].id, 2)
    assert all(body.encode() not in blob and b"second" not in blob for blob in raw)
    # A note moved to another case does not open there.
    other = await env.case()
    async with write_session(env.sm) as session:
        await session.execute(update(CaseNote).where(CaseNote.id == first.id).values(report_id=other))
    other_case = await env.unlocked(other)
    async with env.sm() as session:
        with pytest.raises(TamperedData):
            await notes(session, env.admin, dataclasses.replace(other_case, data_key=case.data_key))


async def test_a_staff_reply_after_the_acknowledgement_is_the_feedback(env):
    report_id = await env.case()
    async with write_session(env.sm) as session:
        assert not await record_staff_reply(session, env.alice, report_id, D(2026, 2, 1))
        await change_status(session, env.alice, report_id, "acknowledged", notify=False, today=D(2026, 2, 2))
        assert await record_staff_reply(session, env.alice, report_id, D(2026, 2, 10))
        assert not await record_staff_reply(session, env.alice, report_id, D(2026, 2, 11))
    _status, _outcome, state = await status_of(env, report_id)
    assert (state.acknowledged_on, state.feedback_on) == (D(2026, 2, 2), D(2026, 2, 10))


async def test_reply_templates(env):
    async with write_session(env.sm) as session:
        assert await ensure_default_templates(session, now=NOW) == 6
        assert await ensure_default_templates(session, now=NOW) == 0
    async with env.sm() as session:
        arabic = await list_templates(session, "ar")
        everything = await list_templates(session)
    assert [t.purpose for t in arabic] == ["acknowledgement", "more_information", "closure"]
    assert len(everything) == 6
    assert arabic[0].title == DEFAULT_TEMPLATES["ar"]["acknowledgement"][0]
    for template in arabic:
        assert ":" not in template.body  # no English-style colons in Arabic
        assert sum("\u0600" <= ch <= "\u06ff" for ch in template.body) > 100
    async with write_session(env.sm) as session:
        saved = await save_template(session, env.alice, locale="en", purpose="other", title=" Thanks ",
                                    body="Thank you.", now=NOW)
        edited = await save_template(session, env.alice, template_id=saved.id, locale="en", purpose="closure",
                                     title="Thanks", body="Thank you again.", now=NOW)
        assert (edited.title, edited.purpose, edited.body) == ("Thanks", "closure", "Thank you again.")
        with pytest.raises(TemplateNotFound):
            await save_template(session, env.alice, template_id="0" * 32, locale="en", purpose="other",
                                title="t", body="b")
        for bad in ({"locale": "fr"}, {"purpose": "spam"}, {"title": " "}, {"body": "x" * 4001}):
            values = {"locale": "en", "purpose": "other", "title": "t", "body": "b"} | bad
            with pytest.raises(ValueError):
                await save_template(session, env.alice, **values)
        with pytest.raises(NotAllowed):
            await save_template(session, env.vera, locale="en", purpose="other", title="t", body="b")
        with pytest.raises(NotAllowed):
            await delete_template(session, env.vera, saved.id)
        assert await delete_template(session, env.bob, saved.id)
        assert not await delete_template(session, env.bob, saved.id)
    # A language the team has edited is not seeded again (even with one template deleted).
    async with write_session(env.sm) as session:
        await delete_template(session, env.admin, arabic[0].id)
        assert await ensure_default_templates(session) == 0


def test_transition_table_is_the_issues_workflow():
    pairs = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert pairs == {
        ("received", "acknowledged"), ("received", "in_review"), ("received", "closed"),
        ("acknowledged", "in_review"), ("acknowledged", "referred"), ("acknowledged", "action_taken"),
        ("acknowledged", "closed"),
        ("in_review", "referred"), ("in_review", "action_taken"), ("in_review", "closed"),
        ("referred", "action_taken"), ("referred", "in_review"), ("referred", "closed"),
        ("action_taken", "closed"), ("action_taken", "in_review"),
    }
    assert not any(old == new for old, new in itertools.product(STATUSES, STATUSES) if (old, new) in pairs)
