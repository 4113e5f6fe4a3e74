"""The Learn, subscription and survey screens: pagination, buttons, callback data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nazaha.awareness.library import ArticleRef, ItemView, Page, TopicView, paginate
from nazaha.awareness.markup import utf16_len
from nazaha.awareness.subscribers import Subscription
from nazaha.awareness.survey_answers import OpenSurvey
from nazaha.bot.app import build_i18n
from nazaha.handlers import awareness_callbacks as aw
from nazaha.handlers import awareness_screens as views
from nazaha.handlers import callbacks as cb

I18N = build_i18n()
LONGEST_TOPIC = "t" * 32


def render(locale, function, *args, **kwargs):
    with I18N.context(), I18N.use_locale(locale):
        return function(*args, **kwargs)


def buttons(screen):
    return [(b.text, b.callback_data) for row in screen.keyboard.inline_keyboard for b in row]


def all_data(screen):
    return [data for _label, data in buttons(screen)]


def topics(count: int) -> list[TopicView]:
    return [TopicView(f"topic_{i:02d}", f"Topic {i}", f"Summary {i}", "en") for i in range(count)]


def test_topics_are_paginated_with_previous_and_next():
    first = render("en", views.learn_home, topics(14), 0, has_surveys=True)
    data = all_data(first)
    assert [d for d in data if d.startswith("aw:top:")] == [aw.topic(f"topic_{i:02d}") for i in range(6)]
    assert aw.home(1) in data and aw.home(0) not in data  # Next only
    assert aw.surveys() in data and aw.subscriptions() in data and cb.menu("menu") in data
    assert "Page 1 of 3" in first.text
    middle = render("en", views.learn_home, topics(14), 1, has_surveys=False)
    assert aw.home(0) in all_data(middle) and aw.home(2) in all_data(middle)
    assert aw.surveys() not in all_data(middle)
    last = render("en", views.learn_home, topics(14), 99, has_surveys=False)  # an old button
    assert "Page 3 of 3" in last.text and aw.home(3) not in all_data(last)
    few = render("en", views.learn_home, topics(3), 0, has_surveys=False)
    assert "Page" not in few.text and not any(d.startswith("aw:home:") for d in all_data(few))
    assert few.entities[0].type == "bold" and few.entities[0].offset == 0


def test_previous_and_next_arrows_follow_the_reading_direction():
    ar = [label for label, _ in buttons(render("ar", views.learn_home, topics(14), 1, has_surveys=False))]
    en = [label for label, _ in buttons(render("en", views.learn_home, topics(14), 1, has_surveys=False))]
    assert any(label.startswith("⬅️") for label in en) and any(label.endswith("➡️") for label in en)
    assert any(label.startswith("➡️") for label in ar) and any(label.endswith("⬅️") for label in ar)


def _item(**changes) -> ItemView:
    values = dict(
        id=123456, code="bribery", topic=LONGEST_TOPIC, kind="article", position=0, language="en",
        title="Bribery", body="**Bribery** is...", options=(), correct=None, sources=("UNCAC",),
    )
    values.update(changes)
    return ItemView(**values)


def test_topic_screen_lists_a_page_of_articles_quiz_and_subscribe():
    topic = TopicView(LONGEST_TOPIC, "Forms", "Bribery and more.", "en")
    refs = [ArticleRef(i, f"Article {i}") for i in range(10)]
    shown = paginate(refs, 1, views.ARTICLES_PER_PAGE)
    screen = render("en", views.topic_screen, topic, shown, has_quizzes=True, subscribed=False)
    data = all_data(screen)
    assert [d for d in data if d.startswith("aw:it:")] == [aw.article(i) for i in range(6, 10)]
    assert aw.topic(LONGEST_TOPIC, 0) in data and aw.topic(LONGEST_TOPIC, 2) not in data
    assert aw.quiz(LONGEST_TOPIC) in data
    assert ("🔔 Subscribe to this topic", aw.toggle("t", 1, LONGEST_TOPIC)) in buttons(screen)
    ticked = render("en", views.topic_screen, topic, shown, has_quizzes=False, subscribed=True)
    assert "✅ Subscribed to this topic" in [label for label, _ in buttons(ticked)]
    assert aw.quiz(LONGEST_TOPIC) not in all_data(ticked)
    assert screen.text.startswith("Forms\n\nBribery and more.")


def test_article_screen_buttons():
    screen = render("en", views.article_screen, _item(), topic_page=2, next_id=99, has_quizzes=True, subscribed=True)
    assert buttons(screen) == [
        ("❓ Quiz me", aw.quiz(LONGEST_TOPIC)),
        ("Next article ➡️", aw.article(99)),
        ("✅ Subscribed to this topic", aw.toggle("i", 0, 123456)),
        ("⬅️ Back to the topic", aw.topic(LONGEST_TOPIC, 2)),
        ("📚 Topics", aw.home()),
        ("🏠 Menu", cb.menu("menu")),
    ]
    assert screen.text.startswith("Bribery\n\nBribery is...") and "Sources:\n• UNCAC" in screen.text
    assert [(e.type, e.offset) for e in screen.entities] == [("bold", 0), ("bold", 9)]


def test_subscriptions_screen_says_what_is_kept_and_ticks_topics():
    listed = topics(3)
    before = render("en", views.subscriptions_screen, listed, None, "en", 0)
    assert "Telegram id" in before.text and "/stop" in before.text and "apart from any report" in before.text
    assert "not subscribed" in before.text
    assert aw.unsubscribe_all() not in all_data(before) and aw.subscribe_all() in all_data(before)
    after = render(
        "en", views.subscriptions_screen, listed, Subscription(1, "en", frozenset({"topic_01"}), True), "en", 0
    )
    assert ("✅ Topic 1", aw.toggle("s", 0, "topic_01")) in buttons(after)
    assert ("Topic 0", aw.toggle("s", 0, "topic_00")) in buttons(after)
    assert "You are subscribed to: Topic 1." in after.text and "English" in after.text
    assert aw.unsubscribe_all() in all_data(after)
    everything = render(
        "en", views.subscriptions_screen, listed,
        Subscription(1, "en", frozenset(t.code for t in listed), True), "en", 0,
    )
    assert aw.subscribe_all() not in all_data(everything)


def test_survey_screens_carry_sv_data():
    survey = OpenSurvey(1, "AbC_12-xyz", "Would you report corruption you witnessed?", ("Yes", "No", "Not sure"), "en")
    screen = render("en", views.survey_screen, survey)
    assert all_data(screen)[:3] == ["sv:AbC_12-xyz:0", "sv:AbC_12-xyz:1", "sv:AbC_12-xyz:2"]
    assert aw.parse("sv:AbC_12-xyz:2") == aw.SurveyAnswer("AbC_12-xyz", 2)
    listing = render("en", views.surveys_screen, [survey])
    assert aw.survey("AbC_12-xyz") in all_data(listing)
    assert "never the answer" in listing.text


def test_every_callback_is_within_64_bytes_and_parses_back():
    page = 999
    samples = [
        aw.home(page), aw.topic(LONGEST_TOPIC, page), aw.article(2**31 - 1), aw.quiz(LONGEST_TOPIC, page),
        aw.subscriptions(page), aw.toggle("s", page, LONGEST_TOPIC), aw.toggle("t", page, LONGEST_TOPIC),
        aw.toggle("i", page, 2**31 - 1), aw.toggle("t", page, LONGEST_TOPIC, confirmed=True),
        aw.subscribe_all(), aw.unsubscribe_all(), aw.surveys(), aw.survey("x" * 16),
        aw.survey_answer("x" * 16, 7), aw.UNSUBSCRIBE_DATA,
    ]
    for data in samples:
        assert len(data.encode()) <= 64, data
        assert aw.parse(data) is not None, data
        assert aw.is_awareness(data)
        assert cb.parse(data) is None  # never mistaken for a report button
    assert aw.parse(aw.toggle("t", 3, "forms", confirmed=True)) == aw.Toggle("t", 3, "forms", confirmed=True)
    assert aw.parse("aw:unsub") == aw.Unsubscribe()


@given(st.text(max_size=80))
def test_forged_data_parses_to_nothing_or_something_valid(data):
    parsed = aw.parse(data)
    if parsed is not None:
        assert data.startswith(("aw:", "sv:")) and len(data.encode()) <= 64


@pytest.mark.parametrize(
    "forged",
    ["aw:top:Forms:0", "aw:it:abc", "aw:tg:x:0:forms", "aw:tg:i:0:forms", "aw:home", "sv:a b:0",
     "sv:code:-1", "aw:quiz:" + "t" * 33 + ":0", "aw:sv:" + "x" * 17, "aw:all:1"],
)
def test_forged_examples_are_refused(forged):
    assert aw.parse(forged) is None


def test_screens_fit_telegram_with_the_longest_titles():
    long_topics = [TopicView(f"t{i}", "T" * 64, "S" * 2000, "en") for i in range(8)]
    home = render("en", views.learn_home, long_topics, 0, has_surveys=True)
    assert all(len(label) <= views.BUTTON_LABEL_MAX + 2 for label, _ in buttons(home))
    topic = render("en", views.topic_screen, long_topics[0], Page((), 0, 1, 0), has_quizzes=False, subscribed=False)
    assert utf16_len(topic.text) <= 4096
