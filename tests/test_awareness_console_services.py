"""The console's awareness services on both databases (SQLite and PostgreSQL): a broadcast
from draft to approval and its progress, survey results with small cells hidden, library
items and campaigns. (The pages over HTTP: tests/test_console_awareness.py.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import secrets

import pytest
from sqlalchemy import select, text, update

from nazaha.awareness import broadcasts, surveys
from nazaha.awareness import campaign_editor as campaigns
from nazaha.awareness import library_editor as library
from nazaha.awareness.broadcast_revision import RevisionSurvey, changed, encode_parts, parts, revision
from nazaha.awareness.pacing import Pacer
from nazaha.awareness.sender import BroadcastSender
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.storage.awareness_models import (
    AwarenessTopic,
    Broadcast,
    BroadcastOutbox,
    Subscriber,
    SurveyCount,
    biased,
)
from nazaha.storage.crypto import BotKeyBox
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
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    async with sessionmaker() as session:
        revision = await broadcasts.current_revision(session, broadcast_id)
    with pytest.raises(broadcasts.BroadcastError) as refused:
        async with write_session(sessionmaker) as session:
            await broadcasts.approve(session, broadcast_id, reviewer=7, now=NOW, revision=revision)
    assert refused.value.code == "own_broadcast"
    async with write_session(sessionmaker) as session:
        await broadcasts.approve(session, broadcast_id, reviewer=9, now=NOW, revision=revision)
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


async def refusal(sessionmaker, change) -> str:
    """The code ``change(session)`` is refused with (its transaction rolled back)."""
    with pytest.raises(broadcasts.BroadcastError) as refused:
        async with write_session(sessionmaker) as session:
            await change(session)
    return refused.value.code


async def revision_now(sessionmaker, broadcast_id: int) -> str:
    async with sessionmaker() as session:
        return await broadcasts.current_revision(session, broadcast_id)


async def row_of(sessionmaker, broadcast_id: int) -> Broadcast:
    async with sessionmaker() as session:
        return await session.get(Broadcast, broadcast_id)


def test_the_revision_covers_everything_that_is_sent_and_nothing_else():
    survey = RevisionSurvey(3, {"en": ("Would you report?", ("Yes", "No")), "ar": ("هل تبلغ؟", ("نعم", "لا"))})
    base = dict(bodies={"ar": "نص", "en": "Text"}, image=b"\xff\xd8 a jpeg", survey=survey, topics=("rights", "forms"),
                languages=("ar", "en"), to_channel=False, send_at=NOW)
    first = revision(**base)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    # The same content, however it is given, is the same revision.
    assert revision(**base) == first
    assert revision(**{**base, "topics": ("forms", "rights", "forms")}) == first  # a set
    assert revision(**{**base, "bodies": {"en": "Text", "ar": "نص"}}) == first
    assert revision(**{**base, "send_at": NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))}) == first  # same moment
    assert revision(**{**base, "send_at": NOW.replace(tzinfo=None)}) == first  # SQLite's naive UTC
    # Anything that is sent changes it.
    changes = {
        "a text": {"bodies": {"ar": "نص", "en": "Text."}},
        "a version less": {"bodies": {"ar": "نص"}},
        "the image": {"image": b"\xff\xd8 another jpeg"},
        "no image": {"image": None},
        "another survey": {"survey": RevisionSurvey(4, survey.texts)},
        "a survey question": {"survey": RevisionSurvey(3, {**survey.texts, "en": ("Would you tell?", ("Yes", "No"))})},
        "a survey option": {"survey": RevisionSurvey(3, {**survey.texts, "en": ("Would you report?", ("Yes", "Never"))})},
        "no survey": {"survey": None},
        "the topics": {"topics": ("rights",)},
        "every topic": {"topics": ()},
        "the languages": {"languages": ("ar",)},
        "their order (the channel's language)": {"languages": ("en", "ar")},
        "the channel": {"to_channel": True},
        "the time": {"send_at": NOW + dt.timedelta(minutes=1)},
        "no time": {"send_at": None},
    }
    seen = {first: "the base"}
    for what, change in changes.items():
        other = revision(**{**base, **change})
        assert other not in seen, (what, seen.get(other))
        seen[other] = what


def test_the_parts_say_what_changed_and_a_link_s_address_is_a_change_of_its_own():
    """The trial: only a link's address changed (to https://evil.example.com/login)."""
    survey = RevisionSurvey(3, {"en": ("Would you report?", ("Yes", "No"))})
    base = dict(bodies={"ar": "نص [هنا](https://aman.org)", "en": "See [the site](https://aman.org)."}, image=b"jpeg",
                survey=survey, topics=("rights",), languages=("ar", "en"), to_channel=False, send_at=NOW)
    shown = encode_parts(parts(**base))
    assert re.fullmatch(r"([a-z_]+:[0-9a-f]{16}\.){7}[a-z_]+:[0-9a-f]{16}", shown) and len(shown) <= 400
    cases = [
        (["links_en"], {"bodies": {**base["bodies"], "en": "See [the site](https://evil.example.com/login)."}}),
        (["text_en"], {"bodies": {**base["bodies"], "en": "See **[the site](https://aman.org)**!"}}),
        (["text_ar", "links_ar"], {"bodies": {**base["bodies"], "ar": "نص [هناك](https://aman.org)"}}),  # a link's words
        (["image"], {"image": b"another"}),
        (["survey"], {"survey": RevisionSurvey(3, {"en": ("Would you report?", ("Yes", "Never"))})}),
        (["audience"], {"to_channel": True}),
        (["audience"], {"topics": ()}),
        (["time"], {"send_at": None}),
    ]
    for expected, change in cases:
        assert changed(shown, parts(**{**base, **change})) == expected
        # Whatever the parts say, the revision decides: every change is a new revision.
        assert revision(**{**base, **change}) != revision(**base)
    # A language dropped: its text and links, and the audience; listed Arabic first, text before links.
    assert changed(shown, parts(**{**base, "bodies": {"en": base["bodies"]["en"]}, "languages": ("en",)})) == [
        "text_ar", "links_ar", "audience"]
    # The same content: nothing; a form without parts, or forged ones: nothing known.
    assert changed(shown, parts(**base)) == []
    assert changed("", parts(**base)) == [] and changed("<script>:1.x", parts(**base)) == []
    # A part missing from the form differs.
    assert changed("image:" + "0" * 16, parts(**base)) == [
        "text_ar", "links_ar", "text_en", "links_en", "image", "survey", "audience", "time"]


async def test_approval_and_rejection_apply_only_to_the_revision_the_reviewer_read(sessionmaker):
    """The trial: the author took a broadcast back, changed it and submitted it again while
    an administrator's page was open, and the administrator's Approve approved a text they
    never saw."""
    code = await topic(sessionmaker)
    composition = broadcasts.Composition(name="Meeting", bodies={"en": "Meet us on Monday."}, topics=(code,),
                                         languages=("en",), send_at=NOW + dt.timedelta(days=1))
    async with write_session(sessionmaker) as session:
        broadcast_id = await broadcasts.save_broadcast(session, composition, author=7, now=NOW, channel_available=False)
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    read = await revision_now(sessionmaker, broadcast_id)  # the administrator opens the page
    async with write_session(sessionmaker) as session:  # meanwhile the author changes it
        await broadcasts.withdraw(session, broadcast_id, author=7)
        changed = dataclasses.replace(composition, bodies={"en": "Meet us on Tuesday."})
        await broadcasts.save_broadcast(session, changed, author=7, now=NOW, channel_available=False, broadcast_id=broadcast_id)
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    current = await revision_now(sessionmaker, broadcast_id)
    assert current != read
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=9, now=NOW, revision=read)) == "changed"
    assert await refusal(sessionmaker, lambda s: broadcasts.reject(s, broadcast_id, reviewer=9, note="No", revision=read)) == "changed"
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=9, now=NOW, revision="")) == "changed"
    row = await row_of(sessionmaker, broadcast_id)
    assert (row.status, row.approved_by, row.review_note) == ("submitted", None, "")
    # Taken back and submitted again unchanged: the same revision, still the one read.
    async with write_session(sessionmaker) as session:
        await broadcasts.withdraw(session, broadcast_id, author=7)
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    assert await revision_now(sessionmaker, broadcast_id) == current
    # The author cannot send their own broadcast back (they take it back), nor approve it.
    assert await refusal(sessionmaker, lambda s: broadcasts.reject(s, broadcast_id, reviewer=7, note="x", revision=current)) == "own_rejection"
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=7, now=NOW, revision=current)) == "own_broadcast"
    # Taken back while the reviewer decides: the refusal says so (it said "transition").
    async with write_session(sessionmaker) as session:
        await broadcasts.withdraw(session, broadcast_id, author=7)
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=9, now=NOW, revision=current)) == "taken_back"
    assert await refusal(sessionmaker, lambda s: broadcasts.reject(s, broadcast_id, reviewer=9, note="x", revision=current)) == "taken_back"
    async with write_session(sessionmaker) as session:
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    async with write_session(sessionmaker) as session:
        await broadcasts.approve(session, broadcast_id, reviewer=9, now=NOW, revision=current)
    row = await row_of(sessionmaker, broadcast_id)
    assert (row.status, row.approved_by) == ("approved", 9)
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=8, now=NOW, revision=current)) == "already_approved"
    async with write_session(sessionmaker) as session:
        await broadcasts.cancel(session, broadcast_id, actor=7, admin=False)
    assert await refusal(sessionmaker, lambda s: broadcasts.reject(s, broadcast_id, reviewer=8, note="x", revision=current)) == "already_cancelled"


async def test_approving_after_the_time_set_needs_send_now_or_a_new_time(sessionmaker):
    composition = broadcasts.Composition(name="Morning", bodies={"en": "Good morning."}, topics=(), languages=("en",),
                                         send_at=NOW + dt.timedelta(hours=1))
    ids = []
    async with write_session(sessionmaker) as session:
        for _ in range(3):
            broadcast_id = await broadcasts.save_broadcast(session, composition, author=7, now=NOW, channel_available=False)
            ids.append(broadcast_id)
        for broadcast_id in ids[:2]:
            await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
    later = NOW + dt.timedelta(hours=2)  # the review comes after the time set
    # A draft whose time has passed is not submitted: its author chooses a new time first.
    assert await refusal(sessionmaker, lambda s: broadcasts.submit(s, ids[2], author=7, now=later)) == "send_at_past"
    rescheduled, sent_now = ids[:2]
    read = await revision_now(sessionmaker, rescheduled)
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, rescheduled, reviewer=9, now=later, revision=read)) == "send_at_passed"
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(
        s, rescheduled, reviewer=9, now=later, revision=read, send_at=later - dt.timedelta(minutes=1))) == "new_time"
    assert (await row_of(sessionmaker, rescheduled)).status == "submitted"
    tomorrow = NOW + dt.timedelta(days=1)
    async with write_session(sessionmaker) as session:
        await broadcasts.approve(session, rescheduled, reviewer=9, now=later, revision=read, send_at=tomorrow)
        await broadcasts.approve(session, sent_now, reviewer=9, now=later, send_now=True,
                                 revision=await broadcasts.current_revision(session, sent_now))
    row = await row_of(sessionmaker, rescheduled)
    assert (row.status, row.send_at) == ("approved", tomorrow)
    row = await row_of(sessionmaker, sent_now)
    assert (row.status, row.send_at) == ("approved", NOW + dt.timedelta(hours=1))  # past: the sender starts it at once


async def test_a_broadcast_whose_survey_closed_meanwhile_is_not_approved(sessionmaker):
    """Its answer buttons would not go out (the sender leaves a closed survey's out)."""
    async with write_session(sessionmaker) as session:
        survey_id = await surveys.save_survey(
            session, surveys.SurveyInput({"en": ("Would you report?", "Yes\nNo")}, None), author=7, today=NOW.date())
        await surveys.open_survey(session, survey_id, author=7, admin=False, today=NOW.date())
        composition = broadcasts.Composition(name="Ask", bodies={"en": "Would you report? Answer below."}, topics=(),
                                             languages=("en",), survey_id=survey_id)
        broadcast_id = await broadcasts.save_broadcast(session, composition, author=7, now=NOW, channel_available=False)
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
        await surveys.close_survey(session, survey_id, author=7, admin=False)
    read = await revision_now(sessionmaker, broadcast_id)
    assert await refusal(sessionmaker, lambda s: broadcasts.approve(s, broadcast_id, reviewer=9, now=NOW, revision=read)) == "survey"
    assert (await row_of(sessionmaker, broadcast_id)).status == "submitted"


async def test_an_approved_broadcast_paused_before_its_time_is_not_started_until_resumed(sessionmaker):
    composition = broadcasts.Composition(name="Evening", bodies={"en": "Good evening."}, topics=(), languages=("en",),
                                         send_at=NOW + dt.timedelta(hours=1))
    async with write_session(sessionmaker) as session:
        broadcast_id = await broadcasts.save_broadcast(session, composition, author=7, now=NOW, channel_available=False)
        await broadcasts.submit(session, broadcast_id, author=7, now=NOW)
        await broadcasts.approve(session, broadcast_id, reviewer=9, now=NOW,
                                 revision=await broadcasts.current_revision(session, broadcast_id))
        await broadcasts.pause(session, broadcast_id, actor=7, admin=False)
    assert await refusal(sessionmaker, lambda s: broadcasts.pause(s, broadcast_id, actor=7, admin=False)) == "transition"
    assert await refusal(sessionmaker, lambda s: broadcasts.resume(s, broadcast_id, actor=8, admin=False)) == "not_allowed"
    box = BotKeyBox(os.urandom(32))
    clock = [NOW + dt.timedelta(hours=2)]  # its time has passed while it is paused
    sender = BroadcastSender(sessionmaker, None, SubscriberStore(sessionmaker, box, os.urandom(32)), box, Pacer(100, 1),
                             now=lambda: clock[0])
    await sender.pass_once()
    row = await row_of(sessionmaker, broadcast_id)
    assert (row.status, row.started_at) == ("paused", None)
    async with write_session(sessionmaker) as session:
        assert await broadcasts.resume(session, broadcast_id, actor=9, admin=True) == "approved"  # it never started
    assert (await row_of(sessionmaker, broadcast_id)).status == "approved"
    await sender.pass_once()
    row = await row_of(sessionmaker, broadcast_id)
    assert row.started_at == clock[0] and row.status in ("sending", "done")


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


def test_campaign_opens_are_shown_with_small_counts_hidden_and_earlier_days_counted():
    """campaign_editor.shown_opens, the rule of nazaha.services.disclosure: nothing under 5
    in all; the days beyond the 60 listed are one more part of the total ("Earlier days"),
    so a hidden day cannot be worked out from it either."""
    from nazaha.services.disclosure import breakdown

    assert breakdown([1, 2], 5) == (None, []) and breakdown([0], 5) == (None, [])
    assert breakdown([3, 0, 9], 5) == (12, ["<5", 0, "x"]) and breakdown([1], 1) == (1, [1])
    day = NOW.date()

    def view(total, *counts):
        return campaigns.CampaignView(1, "c", "C", "rights", True, day, total,
                                      [(day - dt.timedelta(days=n), c) for n, c in enumerate(counts)])

    assert campaigns.shown_opens(view(4, 4)) == campaigns.ShownOpens(5, None)
    assert campaigns.shown_opens(view(0)) == campaigns.ShownOpens(5, None)
    shown = campaigns.shown_opens(view(20, 12, 3))  # 5 opens on days no longer listed
    assert shown.total == 20 and [n for _, n in shown.days] == [12, "<5"] and shown.earlier == "x"
    assert campaigns.shown_opens(view(17, 12, 5)).earlier is None
    assert campaigns.shown_opens(view(30, 12, 6), min_cell=10).days[1] == (day - dt.timedelta(days=1), "<10")
    assert campaigns.shown_opens(view(30, 12, 6), min_cell=1).min_cell == 5  # never fewer than 5
