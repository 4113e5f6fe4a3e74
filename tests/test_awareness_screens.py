"""The Learn, subscription and survey screens: pagination, buttons, callback data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nazaha.awareness.broadcast_message import TEST_UNSUBSCRIBE_DATA, build_message, survey_data_for_test
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


PER_PAGE = views.TOPICS_PER_PAGE
MANY = 2 * PER_PAGE + 2  # three pages


def test_topics_are_paginated_with_previous_and_next():
    first = render("en", views.learn_home, topics(MANY), 0, has_surveys=True)
    data = all_data(first)
    assert [d for d in data if d.startswith("aw:top:")] == [aw.topic(f"topic_{i:02d}") for i in range(PER_PAGE)]
    assert aw.home(1) in data and aw.home(0) not in data  # Next only
    assert aw.surveys() in data and aw.subscriptions() in data and cb.menu("menu") in data
    assert "Page 1 of 3" in first.text
    middle = render("en", views.learn_home, topics(MANY), 1, has_surveys=False)
    assert aw.home(0) in all_data(middle) and aw.home(2) in all_data(middle)
    assert aw.surveys() not in all_data(middle)
    last = render("en", views.learn_home, topics(MANY), 99, has_surveys=False)  # an old button
    assert "Page 3 of 3" in last.text and aw.home(3) not in all_data(last)
    few = render("en", views.learn_home, topics(3), 0, has_surveys=False)
    assert "Page" not in few.text and not any(d.startswith("aw:home:") for d in all_data(few))
    assert few.entities[0].type == "bold" and few.entities[0].offset == 0


def test_previous_and_next_arrows_follow_the_reading_direction():
    ar = [label for label, _ in buttons(render("ar", views.learn_home, topics(MANY), 1, has_surveys=False))]
    en = [label for label, _ in buttons(render("en", views.learn_home, topics(MANY), 1, has_surveys=False))]
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
    assert ("🔔 Subscribe to this topic", aw.toggle("t", 1, LONGEST_TOPIC, subscribe=True)) in buttons(screen)
    ticked = render("en", views.topic_screen, topic, shown, has_quizzes=False, subscribed=True)
    assert ("✅ Subscribed to this topic", aw.toggle("t", 1, LONGEST_TOPIC, subscribe=False)) in buttons(ticked)
    assert aw.quiz(LONGEST_TOPIC) not in all_data(ticked)
    assert screen.text.startswith("Forms\n\nBribery and more.")


def test_article_screen_buttons():
    screen = render("en", views.article_screen, _item(), topic_page=2, next_id=99, has_quizzes=True, subscribed=True)
    assert buttons(screen) == [
        ("❓ Quiz me", aw.quiz(LONGEST_TOPIC)),
        ("Next article ➡️", aw.article(99)),
        ("✅ Subscribed to this topic", aw.toggle("i", 0, 123456, subscribe=False)),
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
    assert ("✅ Topic 1", aw.toggle("s", 0, "topic_01", subscribe=False)) in buttons(after)
    assert ("Topic 0", aw.toggle("s", 0, "topic_00", subscribe=True)) in buttons(after)
    assert "You are subscribed to: \u201c\u2068Topic 1\u2069\u201d." in after.text and "English" in after.text
    assert aw.unsubscribe_all() in all_data(after)
    everything = render(
        "en", views.subscriptions_screen, listed,
        Subscription(1, "en", frozenset(t.code for t in listed), True), "en", 0,
    )
    assert aw.subscribe_all() not in all_data(everything)
    assert "You are subscribed to every topic." in everything.text and "Topic 0" not in everything.text.split("\n\n")[-1]
    # Subscribed to all: the language line too, as after any other subscription (trial).
    assert "Messages come in English, the language you chose for the bot" in everything.text


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
        aw.subscriptions(page), aw.toggle("s", page, LONGEST_TOPIC, subscribe=True),
        aw.toggle("s", page, LONGEST_TOPIC, subscribe=False), aw.toggle("t", page, LONGEST_TOPIC, subscribe=False),
        aw.toggle("i", page, 2**31 - 1, subscribe=False),
        aw.toggle("t", page, LONGEST_TOPIC, subscribe=True, confirmed=True),
        aw.subscribe_all(), aw.unsubscribe_all(), aw.surveys(), aw.survey("x" * 16),
        aw.survey_answer("x" * 16, 7), aw.UNSUBSCRIBE_DATA,
        survey_data_for_test("x" * 16, 7), TEST_UNSUBSCRIBE_DATA,
    ]
    for data in samples:
        assert len(data.encode()) <= 64, data
        assert aw.parse(data) is not None, data
        assert aw.is_awareness(data)
        assert cb.parse(data) is None  # never mistaken for a report button
    assert aw.parse(aw.toggle("t", 3, "forms", subscribe=True, confirmed=True)) == aw.Toggle(
        "t", 3, "forms", True, confirmed=True
    )
    assert aw.parse(aw.toggle("s", 0, "forms", subscribe=False)) == aw.Toggle("s", 0, "forms", False)
    assert aw.parse(aw.toggle("i", 0, 7, subscribe=True)) == aw.Toggle("i", 0, "7", True)
    assert aw.parse("aw:unsub") == aw.Unsubscribe()


def test_the_buttons_of_a_test_send_parse_apart_from_the_real_ones():
    """A test's survey answer and Unsubscribe must never be taken for the real ones."""
    test = build_message("Hi", "en", survey_code="AbC_12-xyz", survey_options=("Yes", "No"), test=True)
    real = build_message("Hi", "en", survey_code="AbC_12-xyz", survey_options=("Yes", "No"))
    assert [label for row in test.buttons for label, _ in row] == [label for row in real.buttons for label, _ in row]
    data = [d for row in test.buttons for _, d in row]
    assert data == ["aw:ts:AbC_12-xyz:0", "aw:ts:AbC_12-xyz:1", TEST_UNSUBSCRIBE_DATA]
    assert all(aw.parse(d) == aw.TestButton() for d in data)
    assert aw.parse("aw:ts:AbC_12-xyz") is None and aw.parse("aw:ts:a b:0") is None and aw.parse("aw:tu:1") is None


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


# ---- what the tester found (issue 11) ----------------------------------------------------


def test_a_toggle_says_what_it_does_and_an_older_one_does_nothing():
    assert aw.parse("aw:on:s:0:forms") == aw.Toggle("s", 0, "forms", True)
    assert aw.parse("aw:off:t:2:forms") == aw.Toggle("t", 2, "forms", False)
    assert aw.parse("aw:ok:i:0:12") == aw.Toggle("i", 0, "12", True, confirmed=True)
    old = aw.parse("aw:tg:s:0:forms")  # before buttons said which: acts on nothing
    assert old == aw.Toggle("s", 0, "forms", None)
    removing = [aw.Unsubscribe(), aw.UnsubscribeAll(), aw.parse("aw:off:s:0:forms")]
    adding = [aw.SubscribeAll(), aw.parse("aw:on:s:0:forms"), aw.parse("aw:ok:t:0:forms"), old,
              aw.Topic("forms"), aw.Quiz("forms", 1), None]
    assert all(aw.reduces_subscription(p) for p in removing)
    assert not any(aw.reduces_subscription(p) for p in adding)


@pytest.mark.parametrize("count", [1, 10, views.TOPICS_PER_PAGE])
def test_ten_topics_fit_one_page_in_learn_and_in_subscriptions(count):
    assert views.TOPICS_PER_PAGE >= 10
    listed = topics(count)
    for screen in (
        render("en", views.learn_home, listed, 0, has_surveys=False),
        render("en", views.subscriptions_screen, listed, None, "en", 0),
    ):
        data = all_data(screen)
        assert all(any(d.endswith(t.code) or d.endswith(f"{t.code}:0") for d in data) for t in listed)
        assert "Page" not in screen.text
        assert aw.home(1) not in data and aw.subscriptions(1) not in data  # no second page


def test_subscribed_topics_are_quoted_or_every_topic():
    listed = topics(3)
    two = Subscription(1, "en", frozenset({"topic_00", "topic_02"}), True)
    en = render("en", views.subscriptions_screen, listed, two, "en", 0)
    assert "You are subscribed to: \u201c\u2068Topic 0\u2069\u201d, \u201c\u2068Topic 2\u2069\u201d." in en.text
    ar = render("ar", views.subscriptions_screen, listed, two, "ar", 0)
    assert "«\u2068Topic 0\u2069»، «\u2068Topic 2\u2069»" in ar.text
    everything = Subscription(1, "en", frozenset(t.code for t in listed), True)
    assert "every topic" in render("en", views.subscriptions_screen, listed, everything, "en", 0).text


def test_the_subscribe_screen_says_who_writes_the_messages_without_promising_a_rate():
    text = render("en", views.subscription_disclosure)
    assert "volunteers prepare and the coalition approves" in text
    assert "a month" not in text and "a day" not in text


@pytest.mark.parametrize("locale", ["ar", "en"])
def test_notices_fit_a_callback_answer(locale):
    title = "T" * 64  # the longest topic title
    for text in (
        render(locale, views.subscribed_to, title), render(locale, views.unsubscribed_from, title),
        render(locale, views.subscribed_to_all), render(locale, views.unsubscribed_from_all),
        render(locale, views.screen_out_of_date), render(locale, views.next_question_already_sent),
    ):
        assert 0 < len(text) <= 200, text
    assert render("en", views.subscribed_to, "Forms") == "Subscribed to \u201cForms\u201d"
    assert render("en", views.unsubscribed_from, "Forms") == "Unsubscribed from \u201cForms\u201d"


def test_a_quiz_says_when_it_is_over():
    under_poll = render("en", views.quiz_keyboard, LONGEST_TOPIC, 1)
    assert [b.callback_data for row in under_poll.inline_keyboard for b in row] == [
        aw.quiz(LONGEST_TOPIC, 1), aw.topic(LONGEST_TOPIC)
    ]
    finished = render("en", views.quiz_finished, LONGEST_TOPIC)
    assert "last question of this topic" in finished.text and "anonymous" in finished.text
    assert all_data(finished) == [aw.topic(LONGEST_TOPIC), aw.home()]


def test_help_in_arabic_starts_each_line_right_to_left():
    from nazaha.handlers import screens

    ar = render("ar", screens.help_text).text.split("\n")
    commands = [line for line in ar if "\u2066/" in line]
    assert len(commands) == len(screens.HELP_COMMANDS)
    for line, (command, _description) in zip(commands, screens.HELP_COMMANDS):
        assert line.endswith(f" — \u2066{command}\u2069"), line
        assert not line.startswith(("\u2066", "/")) and ":" not in line
    en = render("en", screens.help_text).text
    assert "/start – main menu" in en and "/learn – learn about corruption" in en
    assert "learn about corruption and your rights" in en
    assert "/learn" in render("en", screens.welcome).text


def test_privacy_texts_name_the_subscription():
    from nazaha.handlers import screens

    safety = render("en", screens.safety_text, None)
    assert "awareness messages" in safety and "/stop" in safety and "apart from any report" in safety
    confirm = render("en", screens.wipe_confirm, files=None, session=False).text
    assert "subscription ends too" in confirm
    assert "subscription to awareness messages" in render("en", screens.wiped).text


def test_help_in_a_confirmation_names_no_back_button():
    from nazaha.flows import report_flow as flow
    from nazaha.handlers import screens

    at_cancel = flow.Draft(kind=flow.Kind.CORRUPTION, step=flow.Step.CONFIRM_CANCEL, paused=flow.Step.SECTOR)
    transition = flow.step(at_cancel, flow.Help())
    codes = [e.code for e in transition.effects if isinstance(e, flow.Notice)]
    assert codes == ["help_buttons"] and transition.draft == at_cancel
    text = render("en", screens.notice, "help_buttons", {})
    assert "middle of a report" in text and "Back" not in text
    at_sector = flow.Draft(kind=flow.Kind.CORRUPTION, step=flow.Step.SECTOR)
    assert [e.code for e in flow.step(at_sector, flow.Help()).effects if isinstance(e, flow.Notice)] == ["help"]
    for step in flow.WITHOUT_BACK:  # really no Back button on those screens
        draft = flow.Draft(kind=flow.Kind.CORRUPTION, step=step, paused=flow.Step.SECTOR)
        for screen in render("en", screens.question, draft):
            labels = [b.text for row in screen.keyboard.inline_keyboard for b in row]
            assert not any("Back" in label for label in labels), (step, labels)


def test_the_callback_notice_goes_in_the_queued_answer():
    from aiogram.methods import AnswerCallbackQuery

    from nazaha.handlers.outbox import Outbox

    outbox = Outbox(bot=None)  # nothing is sent here
    assert outbox.callback_notice("no button") is False
    outbox.answer_callback("42")
    outbox.send(1, "a message")
    assert outbox.callback_notice("Subscribed") is True
    answers = [m for m, _ in outbox._methods if isinstance(m, AnswerCallbackQuery)]
    assert [a.text for a in answers] == ["Subscribed"]
    outbox.callback_notice("x" * 300)
    assert len(answers[0].text) == 200


def test_recent_marks_expire_stay_bounded_and_hold_no_ids():
    from nazaha.handlers.awareness_memory import RecentMarks

    now = [1000.0]
    marks = RecentMarks(ttl=60, size=3, clock=lambda: now[0])
    assert marks.claim(123456789, 7) and not marks.claim(123456789, 7)
    assert marks.has(123456789, 7) and not marks.has(123456789, 8)
    assert all(b"123456789" not in key for key in marks._marks)
    now[0] += 61
    assert not marks.has(123456789, 7) and marks.claim(123456789, 7)
    for n in range(10):
        marks.mark(n)
    assert len(marks) == 3 and marks.has(9) and not marks.has(0)
    marks.drop(9)
    assert not marks.has(9)


# ---- what the volunteers' trial found (issue 11) ------------------------------------------


@pytest.mark.parametrize("locale", ["ar", "en"])
def test_subscribed_to_all_says_the_language_like_every_other_subscription_reply(locale):
    listed = topics(3)
    language_line = render(locale, lambda: views._(
        "Messages come in {language}, the language you chose for the bot (/language changes it)."
    ))
    some = render(locale, views.subscriptions_screen, listed, Subscription(1, locale, frozenset({"topic_01"}), True), locale, 0)
    every = render(locale, views.subscriptions_screen, listed,
                   Subscription(1, locale, frozenset(t.code for t in listed), True), locale, 0)
    name = {"ar": "العربية", "en": "English"}[locale]
    for screen in (some, every):
        assert language_line.format(language=name) in screen.text, screen.text


@pytest.mark.parametrize("locale", ["ar", "en"])
def test_chosen_topics_are_listed_in_the_library_order_each_title_isolated(locale):
    """Titles in the other script (an English-only topic in Arabic, an Arabic-only one in
    English) once ran together into one run of the other direction, so the list read in
    reverse: each title is now isolated (FSI … PDI) and they follow the library's order
    (the rendering itself is checked in Chromium: tests/test_console_awareness_trial_browser.py)."""
    listed = [TopicView("t_a", "Alpha 1", "", "en"), TopicView("t_b", "حقوقك", "", "ar"),
              TopicView("t_c", "Gamma", "", "en"), TopicView("t_d", "Delta", "", "en")]
    chosen = Subscription(1, locale, frozenset({"t_c", "t_a", "t_b"}), True)
    text = render(locale, views.subscriptions_screen, listed, chosen, locale, 0).text
    line = next(line for line in text.split("\n") if "Alpha 1" in line)
    isolated = ["\u2068Alpha 1\u2069", "\u2068حقوقك\u2069", "\u2068Gamma\u2069"]
    assert [line.index(title) for title in isolated] == sorted(line.index(title) for title in isolated)
    assert "Delta" not in line
    assert ("، " if locale == "ar" else ", ") in line
