"""Survey answers (a marker and a count, each in a transaction of its own), campaign opens
and quiz poll counts: aggregates only."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import defaultdict

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine

from nazaha.awareness.campaigns import Campaigns, campaign_code_of
from nazaha.awareness.quiz_polls import QuizPolls
from nazaha.awareness.survey_answers import Answer, SurveyAnswers, marker_expiry
from nazaha.storage.awareness_models import (
    AwarenessItem,
    AwarenessTopic,
    Campaign,
    CampaignDay,
    QuizPoll,
    Survey,
    SurveyAnswerMarker,
    SurveyCount,
    SurveyText,
)
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.prefs import Preferences, PreferenceStore
from nazaha.storage.unit_of_work import UnitOfWork
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


async def test_an_answer_is_counted_once_and_never_in_a_transaction_that_knows_who(db):
    survey_id = await add_survey(db)
    surveys = SurveyAnswers(db, PEPPER)
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
    assert await counts(db, survey_id) == {1: 2}
    with_counts = [t for t in seen.finished if "survey_counts" in t]
    assert len(with_counts) == 2
    assert all(t == {"survey_counts"} for t in with_counts), seen.finished
    assert any(t == {"survey_answer_markers"} for t in seen.finished)
    assert any("user_preferences" in t for t in seen.finished)  # the listener sees the uow too

    async with db() as session:
        markers = list((await session.execute(select(SurveyAnswerMarker))).scalars())
    assert len(markers) == 2 and all(m.survey_id == survey_id for m in markers)
    # The marker is a keyed hash: no id, no answer; it expires on the hour.
    assert all(str(USER) not in m.marker and len(m.marker) == 64 for m in markers)
    assert {m.expires_at for m in markers} == {dt.datetime(2026, 12, 31, 14, tzinfo=dt.timezone.utc)}


async def test_closed_unknown_and_out_of_range_answers_count_nothing(db):
    await add_survey(db, "OPEN")
    await add_survey(db, "DONE", status="closed")
    await add_survey(db, "PAST", closes_on=NOW.date() - dt.timedelta(days=1))
    await add_survey(db, "DRAFT", status="draft")
    surveys = SurveyAnswers(db, PEPPER)
    for code, option in (("DONE", 0), ("PAST", 0), ("DRAFT", 0), ("NOPE", 0), ("OPEN", 3), ("bad code!", 0)):
        assert await surveys.answer(code, option, USER, now=NOW) is Answer.CLOSED
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


async def test_campaign_opens_are_counted_per_day(db):
    async with db() as session:
        await session.execute(insert(Campaign).values(code="poster-1", name="Posters", target="forms", created_on=NOW.date()))
        await session.execute(insert(Campaign).values(code="off", name="Old", target="item:bribery", active=False, created_on=NOW.date()))
        await session.commit()
    campaigns = Campaigns(db)
    assert campaign_code_of("c_poster-1") == "poster-1"
    assert campaign_code_of("l_poster-1") is None and campaign_code_of("c_bad code") is None
    found = await campaigns.find("poster-1")
    assert found.topic == "forms" and found.item is None
    assert await campaigns.find("off") is None and await campaigns.find("nope") is None
    for _ in range(2):
        await campaigns.count_open(found.id, NOW.date())
    await campaigns.count_open(found.id, NOW.date() + dt.timedelta(days=1))
    async with db() as session:
        rows = (await session.execute(select(CampaignDay.day, CampaignDay.opens).order_by(CampaignDay.day))).all()
    assert [tuple(r) for r in rows] == [(NOW.date(), 2), (NOW.date() + dt.timedelta(days=1), 1)]


async def test_quiz_poll_counts_are_replaced_and_unknown_polls_ignored(db):
    async with db() as session:
        session.add(AwarenessTopic(code="forms", position=0, origin="file", hidden=False))
        await session.flush()
        item = AwarenessItem(code="q1", topic="forms", kind="quiz", position=0, origin="file", published=True, updated_on=NOW.date())
        session.add(item)
        await session.commit()
    polls = QuizPolls(db)
    await polls.record("5001", item.id, "en", NOW.date())
    await polls.record("5001", item.id, "en", NOW.date())  # a retried send: one row
    assert await polls.update_counts("5001", [1, 0, 0])
    assert await polls.update_counts("5001", [3, 0, 1])
    assert not await polls.update_counts("9999", [1, 1])
    async with db() as session:
        rows = list((await session.execute(select(QuizPoll))).scalars())
    assert [(r.poll_id, r.counts, r.language) for r in rows] == [("5001", "3,0,1", "en")]
    assert not hasattr(QuizPoll, "chat_key") and "chat" not in " ".join(QuizPoll.__table__.columns.keys())
