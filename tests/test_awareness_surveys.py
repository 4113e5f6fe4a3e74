"""Survey answers (a marker at once, counts in batches), campaign opens and quiz votes:
aggregates only, written so that neither the database file nor its WAL pairs an answer
with the account that gave it (the seizure drill's attacks (A)-(E), docs/security.md)."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import struct
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import Engine

from nazaha.awareness import surveys as console_surveys
from nazaha.awareness.campaigns import Campaigns, campaign_code_of
from nazaha.awareness.quiz_polls import QuizPolls
from nazaha.awareness.survey_answers import Answer, SurveyAnswers, marker_expiry
from nazaha.storage.awareness_models import (
    COUNT_BIAS,
    AwarenessItem,
    AwarenessItemText,
    AwarenessTopic,
    Campaign,
    CampaignDay,
    QuizCount,
    Survey,
    SurveyAnswerMarker,
    SurveyCount,
    SurveyText,
)
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.database import checkpoint_wal, write_session
from nazaha.storage.prefs import Preferences, PreferenceStore
from nazaha.storage.unit_of_work import UnitOfWork
from tests import forensics
from tests.awareness_support import clean_awareness

NOW = dt.datetime(2026, 12, 1, 14, 37, 12, tzinfo=dt.timezone.utc)
PEPPER = os.urandom(32)
USER = 700_000_123


@pytest.fixture
async def db(engine, sessionmaker):
    await clean_awareness(engine)
    return sessionmaker


async def add_survey(sessionmaker, code="S1", *, status="open", closes_on=None, options=("Yes", "No", "Not sure")):
    async with sessionmaker() as session:
        survey = Survey(code=code, status=status, author_id=1, created_on=NOW.date(), closes_on=closes_on)
        session.add(survey)
        await session.flush()
        session.add(SurveyText(survey_id=survey.id, language="en", question="Would you report?", options="\n".join(options)))
        await session.commit()
        return survey.id


async def counts(sessionmaker, survey_id):
    async with sessionmaker() as session:
        rows = await session.execute(
            select(SurveyCount.option, SurveyCount.count).where(SurveyCount.survey_id == survey_id)
        )
        return dict(rows.all())


class Transactions:
    """The tables each database transaction touched, on every engine of this process (the
    async engine and SQLite's hot-path lanes alike)."""

    TABLES = ("survey_counts", "survey_answer_markers", "user_preferences", "subscribers")

    def __init__(self) -> None:
        self.open: dict[int, set[str]] = defaultdict(set)
        self.finished: list[set[str]] = []

    def _touch(self, conn, cursor, statement, *args) -> None:
        words = set(re.findall(r"[a-z_]+", statement.lower()))
        self.open[id(conn)] |= {t for t in self.TABLES if t in words}

    def _end(self, conn) -> None:
        touched = self.open.pop(id(conn), set())
        if touched:
            self.finished.append(touched)

    def __enter__(self) -> "Transactions":
        event.listen(Engine, "before_cursor_execute", self._touch)
        event.listen(Engine, "commit", self._end)
        event.listen(Engine, "rollback", self._end)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(Engine, "before_cursor_execute", self._touch)
        event.remove(Engine, "commit", self._end)
        event.remove(Engine, "rollback", self._end)




async def opened_survey(sessionmaker, options=("Yes", "No", "Not sure", "Rather not say")) -> tuple[int, str]:
    """A survey written and opened as the console does it (count rows made at opening)."""
    async with write_session(sessionmaker) as session:
        survey_id = await console_surveys.save_survey(
            session, console_surveys.SurveyInput({"en": ("Would you report?", "a\nb")}, None), author=1, today=NOW.date()
        )
        # Options edited before opening: the rows follow the texts as they are at opening.
        await console_surveys.save_survey(
            session, console_surveys.SurveyInput({"en": ("Would you report?", "\n".join(options))}, None),
            author=1, today=NOW.date(), survey_id=survey_id,
        )
        await console_surveys.open_survey(session, survey_id, author=1, admin=False, today=NOW.date())
        code = (await session.get(Survey, survey_id)).code
    return survey_id, code


def sqlite_file(engine) -> Path:
    if engine.dialect.name != "sqlite":
        pytest.skip("rowids, cells and the WAL are SQLite's")
    return Path(engine.url.database)


def cell_offsets(db_file: Path, table: str) -> list[int]:
    """Where each row's cell sits in the table's (single, leaf) root page, in key order: a
    row rewritten at another size moves (nearer the page's start), one rewritten in place
    does not (the attacker's cells.py)."""
    raw = db_file.read_bytes()
    page_size = struct.unpack(">H", raw[16:18])[0]
    with sqlite3.connect(f"file:{db_file}?immutable=1", uri=True) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    page = raw[(root - 1) * page_size: root * page_size]
    assert page[0] == 13  # a leaf page: the whole table in one page
    cells = struct.unpack(">H", page[3:5])[0]
    return [struct.unpack(">H", page[8 + 2 * i: 10 + 2 * i])[0] for i in range(cells)]


async def test_answers_are_counted_in_batches_never_in_a_transaction_that_knows_who(db):
    survey_id = await add_survey(db)  # made without the console: the first batch makes the rows
    surveys = SurveyAnswers(db, PEPPER, min_batch=3)
    prefs = PreferenceStore(db, BotKeyBox(os.urandom(32)), PEPPER)
    with Transactions() as seen:
        # As in the bot: the update's unit of work holds the user's preferences row while
        # the answer is recorded; it commits after.
        uow = UnitOfWork(db)
        prefs.set(uow, USER, Preferences(locale="en"))
        assert await surveys.answer("S1", 1, USER, now=NOW) is Answer.COUNTED
        await uow.commit()
        assert await surveys.answer("S1", 2, USER, now=NOW) is Answer.ALREADY
        assert await surveys.answer("S1", 1, USER + 1, now=NOW) is Answer.COUNTED
        assert await counts(db, survey_id) == {}  # two answers: nothing written, no row made
        assert surveys.counts.pending == 2
        assert await surveys.answer("S1", 2, USER + 2, now=NOW) is Answer.COUNTED
    assert await counts(db, survey_id) == {0: 0, 1: 2, 2: 1}
    with_counts = [t for t in seen.finished if "survey_counts" in t]
    # The check above (a read) and one batch: each alone.
    assert with_counts == [{"survey_counts"}] * 2, seen.finished
    assert sum(t == {"survey_answer_markers"} for t in seen.finished) >= 3
    assert any("user_preferences" in t for t in seen.finished)  # the listener sees the uow too

    async with db() as session:
        markers = list((await session.execute(select(SurveyAnswerMarker))).scalars())
    assert len(markers) == 3 and all(m.survey_id == survey_id for m in markers)
    # The marker is a keyed hash: no id, no answer; it expires on the hour.
    assert all(str(USER) not in m.marker and len(m.marker) == 64 for m in markers)
    assert {m.expires_at for m in markers} == {dt.datetime(2026, 12, 31, 14, tzinfo=dt.timezone.utc)}


async def test_closed_unknown_and_out_of_range_answers_count_nothing(db):
    await add_survey(db, "OPEN")
    await add_survey(db, "DONE", status="closed")
    await add_survey(db, "PAST", closes_on=NOW.date() - dt.timedelta(days=1))
    await add_survey(db, "DRAFT", status="draft")
    surveys = SurveyAnswers(db, PEPPER, min_batch=1)
    for code, option in (("DONE", 0), ("PAST", 0), ("DRAFT", 0), ("NOPE", 0), ("OPEN", 3), ("bad code!", 0)):
        assert await surveys.answer(code, option, USER, now=NOW) is Answer.CLOSED
    assert surveys.counts.pending == 0
    async with db() as session:
        assert list((await session.execute(select(SurveyCount))).scalars()) == []
        assert list((await session.execute(select(SurveyAnswerMarker))).scalars()) == []
    assert [s.code for s in await surveys.open_surveys("ar", NOW.date())] == ["OPEN"]
    shown = await surveys.survey("OPEN", "ar", NOW.date())
    assert shown.language == "en" and shown.options == ("Yes", "No", "Not sure")
    assert await surveys.survey("DONE", "en", NOW.date()) is None


async def test_markers_expire_and_are_purged(db):
    closes = NOW.date() + dt.timedelta(days=3)
    assert marker_expiry(closes, NOW) == dt.datetime(2026, 12, 5, tzinfo=dt.timezone.utc)
    assert marker_expiry(None, NOW) == dt.datetime(2026, 12, 31, 14, tzinfo=dt.timezone.utc)
    await add_survey(db, "A")
    closed_id = await add_survey(db, "B")
    surveys = SurveyAnswers(db, PEPPER)
    assert await surveys.answer("A", 0, USER, now=NOW) is Answer.COUNTED
    assert await surveys.answer("B", 0, USER, now=NOW) is Answer.COUNTED
    async with db() as session:
        await session.execute(Survey.__table__.update().where(Survey.id == closed_id).values(status="closed"))
        await session.commit()
    assert await surveys.purge_expired_markers(NOW) == 1  # the closed survey's
    later = NOW + dt.timedelta(days=31)
    assert await surveys.purge_expired_markers(later) == 1
    # After expiry the same account may answer again (a new marker replaces an old one).
    await add_survey(db, "C")
    assert await surveys.answer("C", 0, USER, now=NOW) is Answer.COUNTED
    assert await surveys.answer("C", 0, USER, now=later) is Answer.COUNTED


async def test_wipe_forgets_the_accounts_markers_of_every_survey(db):
    await add_survey(db, "A")
    await add_survey(db, "B")
    await add_survey(db, "C", status="closed")
    surveys = SurveyAnswers(db, PEPPER, min_batch=100)
    for code in ("A", "B"):
        for user in (USER, USER + 1):
            assert await surveys.answer(code, 0, user, now=NOW) is Answer.COUNTED
    with Transactions() as seen:
        assert await surveys.forget_account(USER) == 2
    assert seen.finished == [{"survey_answer_markers"}]  # a transaction of its own
    async with db() as session:
        left = set((await session.scalars(select(SurveyAnswerMarker.marker))).all())
    assert left == {surveys.marker(survey_id, USER + 1) for survey_id in (await ids(db, "A", "B"))}
    assert await surveys.forget_account(USER) == 0
    assert await surveys.answer("A", 1, USER, now=NOW) is Answer.COUNTED  # forgotten: may answer again
    assert surveys.counts.pending == 5  # the answers themselves were never per account


async def ids(sessionmaker, *codes: str) -> list[int]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Survey.id).where(Survey.code.in_(codes)))).all())


async def test_the_database_file_keeps_no_order_of_answers(engine, db):
    """Attack (A): markers in answer order, and count rows made by each option's first
    answer (rowid order = first-answer order), with cells moved by each rewrite, told the
    answers. Now rows exist before any answer (made in option order at opening, or by the
    first batch), and a batch rewrites them in place."""
    db_file = sqlite_file(engine)
    opened_id, opened_code = await opened_survey(db)
    plain_id = await add_survey(db, "PLAIN", options=("a", "b", "c", "d"))
    await checkpoint_wal(engine)
    cells_at_opening = cell_offsets(db_file, "survey_counts")
    assert len(cells_at_opening) == 4
    surveys = SurveyAnswers(db, PEPPER, min_batch=4)
    # First answers come in the order 3, 1, 0, 2: not the options' order.
    answers = [3, 3, 1, 0, 3, 2, 1, 1, 3, 0, 3, 3]
    with Transactions() as seen:
        for n, option in enumerate(answers):
            for code in (opened_code, "PLAIN"):
                assert await surveys.answer(code, option, USER + n, now=NOW) is Answer.COUNTED
    assert surveys.counts.pending == 0  # 12 answers per survey: three batches of four
    async with engine.connect() as conn:
        for survey_id in (opened_id, plain_id):
            rows = (await conn.execute(
                text("SELECT option, biased_count FROM survey_counts WHERE survey_id = :s ORDER BY rowid"),
                {"s": survey_id},
            )).all()
            assert [option for option, _ in rows] == [0, 1, 2, 3]  # the options' order
            assert [stored - COUNT_BIAS for _, stored in rows] == [2, 3, 1, 6]
            assert all(stored.bit_length() == 49 for _, stored in rows)  # 8 bytes in SQLite, whatever the count
    # No transaction both writes a marker and changes a count.
    assert all(not ({"survey_counts"} & t and {"survey_answer_markers", "user_preferences"} & t) for t in seen.finished)
    assert sum("survey_counts" in t for t in seen.finished) == 6
    # Counts that grew from 0 to 6 were rewritten in place: no cell of the opened survey moved.
    await checkpoint_wal(engine)
    assert cell_offsets(db_file, "survey_counts")[:4] == cells_at_opening


async def test_the_wal_holds_no_count_until_a_batch_and_then_one_commit_of_counts_alone(engine, db):
    """Attacks (B) and the WAL: each answer was a marker commit followed by a count commit.
    Below the batch size nothing of the answers is in the WAL; then one commit holds the
    batch's counts and nothing else."""
    db_file = sqlite_file(engine)
    _survey_id, code = await opened_survey(db)
    surveys = SurveyAnswers(db, PEPPER, min_batch=3)
    await checkpoint_wal(engine)
    for n, option in enumerate((2, 0)):
        assert await surveys.answer(code, option, USER + n, now=NOW) is Answer.COUNTED
    changes = [c.tables for c in forensics.commit_table_changes(db_file)]
    assert changes == [frozenset({"survey_answer_markers"})] * 2
    assert all(
        {r[2] for r in s.tables["survey_counts"].rows} == {COUNT_BIAS}
        for s in forensics.sqlite_versions(db_file)
    )
    assert await surveys.answer(code, 2, USER + 2, now=NOW) is Answer.COUNTED
    changes = [c.tables for c in forensics.commit_table_changes(db_file)]
    assert changes == [frozenset({"survey_answer_markers"})] * 3 + [frozenset({"survey_counts"})]


async def test_campaign_opens_are_counted_in_batches_per_day_on_rows_made_for_every_campaign(db):
    async with db() as session:
        await session.execute(insert(Campaign).values(code="poster-1", name="Posters", target="forms", created_on=NOW.date()))
        await session.execute(insert(Campaign).values(code="off", name="Old", target="item:bribery", active=False, created_on=NOW.date()))
        await session.execute(insert(Campaign).values(code="a-radio", name="Radio", target="forms", created_on=NOW.date()))
        await session.commit()
    campaigns = Campaigns(db, min_batch=3)
    assert campaign_code_of("c_poster-1") == "poster-1"
    assert campaign_code_of("l_poster-1") is None and campaign_code_of("c_bad code") is None
    found = await campaigns.find("poster-1")
    assert found.topic == "forms" and found.item is None
    assert await campaigns.find("off") is None and await campaigns.find("nope") is None
    tomorrow = NOW.date() + dt.timedelta(days=1)
    for day in (NOW.date(), NOW.date(), tomorrow):
        await campaigns.count_open(found.id, day)
    assert await rows_of(db, CampaignDay) == []  # never at the moment of an open
    assert await campaigns.counts.flush() == 3  # the periodic flush
    async with db() as session:
        rows = (await session.execute(
            select(Campaign.code, CampaignDay.day, CampaignDay.opens)
            .join(Campaign, Campaign.id == CampaignDay.campaign_id).order_by(CampaignDay.day, Campaign.code)
        )).all()
    assert [tuple(r) for r in rows] == [
        ("a-radio", NOW.date(), 0), ("poster-1", NOW.date(), 2), ("a-radio", tomorrow, 0), ("poster-1", tomorrow, 1)]
    if db.kw["bind"].dialect.name == "sqlite":  # made in the order of the codes, not of the opens
        async with db() as session:
            made = (await session.execute(text(
                "SELECT c.code FROM campaign_days d JOIN campaigns c ON c.id = d.campaign_id "
                "WHERE d.day = :day ORDER BY d.rowid"), {"day": NOW.date().isoformat()})).scalars().all()
        assert made == ["a-radio", "poster-1"]
    await campaigns.count_open(found.id, NOW.date())
    assert await campaigns.counts.close() == 1  # a graceful stop drops a batch too small


async def rows_of(sessionmaker, model) -> list:
    async with sessionmaker() as session:
        return list((await session.execute(select(model))).scalars())


async def test_quiz_votes_are_counted_by_what_grew_and_unknown_polls_are_ignored(db):
    async with db() as session:
        session.add(AwarenessTopic(code="forms", position=0, origin="file", hidden=False))
        await session.flush()
        items = {}
        for code, options in (("q2", "A\nB"), ("q1", "A\nB\nC"), ("article", "")):
            item = AwarenessItem(code=code, topic="forms", kind="article" if code == "article" else "quiz",
                                 position=0, origin="file", published=True, updated_on=NOW.date())
            session.add(item)
            await session.flush()
            session.add(AwarenessItemText(item_id=item.id, language="en", title=code, options=options, correct_option=0))
            items[code] = item.id
        await session.commit()
    now = [0.0]
    polls = QuizPolls(db, min_batch=3, clock=lambda: now[0], max_polls=2)
    polls.record("5001", items["q1"])
    assert await polls.update_counts("5001", [1, 0, 0])
    polls.record("5001", items["q1"])  # a retried send changes nothing
    assert await polls.update_counts("5001", [1, 0, 0])  # the same counts again: nothing new
    assert polls.counts.pending == 1
    assert not await polls.update_counts("9999", [1, 1])  # not ours
    assert await polls.update_counts("5001", [0, 0, 2])  # never less than before; +2 on C
    assert polls.counts.pending == 0  # three votes: one batch
    async with db() as session:
        stored = {(r.item_id, r.option): r.count for r in (await session.execute(select(QuizCount))).scalars()}
    # Rows for every quiz item's options (made by the first batch), none for the article.
    assert stored == {(items["q1"], 0): 1, (items["q1"], 1): 0, (items["q1"], 2): 2, (items["q2"], 0): 0, (items["q2"], 1): 0}
    assert await polls.update_counts("5001", [2, 0, 2])  # +1 on A (the last seen was 1)
    assert polls.counts.pending == 1
    # Forgotten after a day, or when newer polls push it out: their votes are ignored.
    now[0] = 25 * 3600.0
    assert not await polls.update_counts("5001", [3, 0, 2])
    for poll_id in ("6001", "6002", "6003"):
        polls.record(poll_id, items["q2"])
    assert len(polls) == 2 and not await polls.update_counts("6001", [1, 0])
    assert await polls.update_counts("6003", [0, 1])
    assert sorted(QuizCount.__table__.columns.keys()) == ["biased_count", "item_id", "option"]  # no poll, chat or day
