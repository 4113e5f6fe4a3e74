"""The console's awareness services on both databases (SQLite and PostgreSQL): a broadcast
from draft to approval and its progress, survey results with small cells hidden, library
items and campaigns. (The pages over HTTP: tests/test_console_awareness.py.)"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import select, text, update

from nazaha.awareness import broadcasts, surveys
from nazaha.awareness import campaign_editor as campaigns
from nazaha.awareness import library_editor as library
from nazaha.storage.awareness_models import (
    AwarenessTopic,
    BroadcastOutbox,
    Subscriber,
    SurveyCount,
    biased,
)
from nazaha.storage.database import write_session

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
# PostgreSQL's test database lives for the whole run: leave its awareness tables empty, as
# the other tests expect them.
AWARENESS_TABLES = ("subscribers", "broadcasts", "surveys", "campaigns", "awareness_topics")


@pytest.fixture(autouse=True)
async def empty_afterwards(engine):
    yield
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(AWARENESS_TABLES)} CASCADE"))


async def topic(sessionmaker) -> str:
    code = "t" + secrets.token_hex(6)
    async with write_session(sessionmaker) as session:
        await library.save_topic(session, code=code, texts={"en": ("Rights", "")}, hidden=False, new=True)
    return code


async def test_a_broadcast_from_draft_to_approval_and_its_progress(sessionmaker):
    code = await topic(sessionmaker)
    composition = broadcasts.Composition(
        name="Weekly", bodies={"en": "**Hello** [x](https://e.org)", "ar": "مرحبا"}, topics=(code,),
        languages=("en", "ar"), send_at=NOW + dt.timedelta(days=1),
    )
    async with write_session(sessionmaker) as session:
        broadcast_id = await broadcasts.save_broadcast(session, composition, author=7, now=NOW, channel_available=False)
    async with sessionmaker() as session:
        view = await broadcasts.get_broadcast(session, broadcast_id, viewer=7, admin=False)
        assert (view.languages, view.topics, view.status) == (("ar", "en"), (code,), "draft")
        previews = {p.language: p for p in await broadcasts.previews(session, view)}
        assert previews["en"].html.startswith("<b>Hello</b>") and previews["en"].problems == ()
        with pytest.raises(broadcasts.BroadcastError):
            await broadcasts.get_broadcast(session, broadcast_id, viewer=8, admin=False)
        mine = await broadcasts.list_broadcasts(session, author=7)
        assert broadcast_id in [b.id for b in mine]
    async with write_session(sessionmaker) as session:
        await broadcasts.submit(session, broadcast_id, author=7)
    with pytest.raises(broadcasts.BroadcastError) as refused:
        async with write_session(sessionmaker) as session:
            await broadcasts.approve(session, broadcast_id, reviewer=7, now=NOW)
    assert refused.value.code == "own_broadcast"
    async with write_session(sessionmaker) as session:
        await broadcasts.approve(session, broadcast_id, reviewer=9, now=NOW)
        for index, state in enumerate(["sent", "sent", "queued", "blocked"]):
            subscriber = Subscriber(chat_key=secrets.token_hex(32), sealed_chat=b"x", language="en", joined_on=NOW.date())
            session.add(subscriber)
            await session.flush()
            session.add(BroadcastOutbox(broadcast_id=broadcast_id, subscriber_id=subscriber.id, state=state))
    async with sessionmaker() as session:
        assert (await broadcasts.get_broadcast(session, broadcast_id, viewer=None, admin=True)).approved_by == 9
        progress = await broadcasts.progress(session, broadcast_id)
        assert (progress["sent"], progress["queued"], progress["blocked"], progress["failed"]) == (2, 1, 1, 0)
        assert list((await broadcasts.list_broadcasts(session, author=None, limit=5)))
    async with write_session(sessionmaker) as session:
        await broadcasts.cancel(session, broadcast_id, actor=9, admin=True)
    async with sessionmaker() as session:
        states = (await session.scalars(select(BroadcastOutbox.state).where(BroadcastOutbox.broadcast_id == broadcast_id))).all()
    assert sorted(states) == ["blocked", "queued", "sent", "sent"]  # the sender skips the queued one
    async with sessionmaker() as session:
        assert (await broadcasts.get_broadcast(session, broadcast_id, viewer=7, admin=False)).status == "cancelled"


async def test_survey_results_and_campaigns(sessionmaker):
    code = await topic(sessionmaker)
    async with write_session(sessionmaker) as session:
        survey_id = await surveys.save_survey(
            session, surveys.SurveyInput({"en": ("Would you report?", "Yes\nNo")}, None), author=3, today=NOW.date())
        # Edited before opening: the count rows follow the options as they are when it opens.
        await surveys.save_survey(
            session, surveys.SurveyInput({"en": ("Would you report?", "Yes\nNo\nNot sure")}, None), author=3,
            today=NOW.date(), survey_id=survey_id)
        await surveys.open_survey(session, survey_id, author=3, admin=False, today=NOW.date())
    async with sessionmaker() as session:
        made = (await session.execute(select(SurveyCount.option, SurveyCount.count)
                                      .where(SurveyCount.survey_id == survey_id).order_by(SurveyCount.option))).all()
        assert [tuple(r) for r in made] == [(0, 0), (1, 0), (2, 0)]
        assert (await surveys.survey_results(session, survey_id, "en")).total is None
    async with write_session(sessionmaker) as session:
        for option, count in enumerate((3, 0, 9)):  # as the bot's batches leave them
            await session.execute(update(SurveyCount).where(SurveyCount.survey_id == survey_id, SurveyCount.option == option)
                                  .values(biased_count=biased(count)))
    async with sessionmaker() as session:
        results = await surveys.survey_results(session, survey_id, "en")
        assert results.total == 12 and [r.shown for r in results.rows] == ["<5", 0, "x"]
        assert survey_id in [s.id for s in await surveys.list_surveys(session, status="open")]
    async with write_session(sessionmaker) as session:
        campaign_id = await campaigns.create_campaign(session, name="Posters", code="", target=code, today=NOW.date(),
                                                      author=3)
        await campaigns.set_active(session, campaign_id, False, member=3, admin=False)  # its author
    async with sessionmaker() as session:
        campaign = await campaigns.get_campaign(session, campaign_id)
        assert campaign.active is False and campaign.total == 0
        assert (campaign.created_by, campaign.paused_by) == (3, 3)
    async with write_session(sessionmaker) as session:
        item_id = await library.save_item(
            session, topic=code, kind="quiz", published=True, today=NOW.date(),
            texts={"en": library.ItemText("Which?", "Because.", ("A", "B"), 1)},
        )
        await library.set_published(session, item_id, False, today=NOW.date())
    async with sessionmaker() as session:
        item = await library.get_item(session, item_id)
        assert (item.origin, item.published, item.texts["en"].options) == ("console", False, ("A", "B"))
        assert any(t.code == code for t in await library.library(session))
        assert await session.get(AwarenessTopic, code) is not None


async def test_a_campaign_opens_a_topic_or_an_article_never_a_quiz_question(sessionmaker):
    """A tester's campaign to a quiz question opened the welcome: quiz questions are no
    longer offered as targets, and one given anyway is refused."""
    from nazaha.storage.awareness_models import AwarenessItem

    code = await topic(sessionmaker)
    quiz_code, article_code = "q" + secrets.token_hex(6), "a" + secrets.token_hex(6)
    async with write_session(sessionmaker) as session:
        for item_code, kind in ((quiz_code, "quiz"), (article_code, "article")):
            session.add(AwarenessItem(code=item_code, topic=code, kind=kind, position=1, origin="console",
                                      published=True, updated_on=NOW.date()))
    async with sessionmaker() as session:
        targets = [target for target, _kind, _topic in await library.campaign_targets(session)]
    assert f"item:{article_code}" in targets and code in targets
    assert f"item:{quiz_code}" not in targets
    with pytest.raises(campaigns.CampaignError):
        async with write_session(sessionmaker) as session:
            await campaigns.create_campaign(session, name="Quiz", code="", target=f"item:{quiz_code}", today=NOW.date())
    async with write_session(sessionmaker) as session:
        await session.execute(text("DELETE FROM awareness_items WHERE code IN (:a, :b)"), {"a": quiz_code, "b": article_code})
