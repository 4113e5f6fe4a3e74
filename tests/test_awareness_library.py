"""The awareness library: content files, their sync into the database (console edits kept,
removed items unpublished), the reads the bot makes, and what Telegram is sent."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from nazaha.awareness.library import (
    ItemView,
    Library,
    article_message,
    clip_formatted,
    load_content,
    quiz_poll,
    sync_library,
)
from nazaha.awareness.markup import TEXT_LIMIT, parse_markup, utf16_len
from nazaha.storage.awareness_models import (
    AwarenessItem,
    AwarenessItemText,
    AwarenessTopic,
    AwarenessTopicText,
)
from tests.awareness_support import FORMS_AR, FORMS_EN, RIGHTS_EN, clean_awareness, write_content

TODAY = dt.date(2026, 12, 1)


@pytest.fixture
async def library_db(engine, sessionmaker):
    await clean_awareness(engine)
    return sessionmaker


def test_files_are_read_per_language_and_bad_items_reported(tmp_path):
    bad = FORMS_EN + '''
[[item]]
code = "Bad Code"
kind = "article"
title = "x"
body = "y"

[[item]]
code = "broken_quiz"
kind = "quiz"
title = "Q?"
options = ["only one"]
correct = 0
'''
    root = write_content(tmp_path, {"en/forms.toml": bad, "ar/forms.toml": FORMS_AR, "en/broken.toml": "not [toml"})
    content = load_content(root)
    assert set(content.topics) == {"forms"}
    assert content.topics["forms"].texts["ar"][0] == "أشكال الفساد"
    assert set(content.items) == {"bribery", "nepotism", "forms_quiz_1"}
    quiz = content.items["forms_quiz_1"].texts["en"]
    assert quiz["options"].split("\n")[0] == "A gift to sway a decision" and quiz["correct_option"] == 0
    reasons = {(p.where.split(" ")[0], p.reason.split(" ")[0]) for p in content.problems}
    assert ("en/awareness/broken.toml", "unreadable:") in reasons
    assert any("Bad Code" in p.where for p in content.problems)
    assert any("broken_quiz" in p.where for p in content.problems)


async def _rows(sessionmaker, model):
    async with sessionmaker() as session:
        return list((await session.execute(select(model))).scalars())


async def test_sync_creates_then_changes_nothing_the_second_time(library_db, tmp_path):
    root = write_content(tmp_path, {"en/forms.toml": FORMS_EN, "ar/forms.toml": FORMS_AR, "en/rights.toml": RIGHTS_EN})
    first = await sync_library(library_db, root, today=TODAY)
    assert first.topics_written == 2 and first.items_written == 4
    again = await sync_library(library_db, root, today=TODAY + dt.timedelta(days=1))
    assert not again.changed
    items = {i.code: i for i in await _rows(library_db, AwarenessItem)}
    assert all(i.origin == "file" and i.published and i.updated_on == TODAY for i in items.values())
    texts = await _rows(library_db, AwarenessItemText)
    assert {(t.item_id, t.language) for t in texts} >= {(items["bribery"].id, "ar"), (items["bribery"].id, "en")}


async def test_console_edits_are_never_overwritten_and_removed_items_are_unpublished(library_db, tmp_path):
    root = write_content(tmp_path, {"en/forms.toml": FORMS_EN, "en/rights.toml": RIGHTS_EN})
    await sync_library(library_db, root, today=TODAY)
    async with library_db() as session:
        bribery = (await session.execute(select(AwarenessItem).where(AwarenessItem.code == "bribery"))).scalar_one()
        # An admin edits the article in the console: the console marks it as its own.
        await session.execute(update(AwarenessItem).where(AwarenessItem.id == bribery.id).values(origin="console"))
        await session.execute(
            update(AwarenessItemText)
            .where(AwarenessItemText.item_id == bribery.id)
            .values(title="Bribery (edited)", body="Edited by an admin.")
        )
        await session.execute(update(AwarenessTopic).where(AwarenessTopic.code == "rights").values(origin="console"))
        await session.execute(
            update(AwarenessTopicText).where(AwarenessTopicText.topic == "rights").values(title="Rights (edited)")
        )
        await session.commit()

    changed_file = FORMS_EN.replace('title = "Bribery"', 'title = "Bribery, new file title"')
    # nepotism leaves the files; the rights file is changed but its topic is the console's.
    changed_file = changed_file.replace('code = "nepotism"', 'code = "nepotism_gone"').replace(
        'title = "Nepotism and wasta"', 'title = "Other"')
    (root / "en" / "awareness" / "forms.toml").write_text(changed_file, encoding="utf-8")
    (root / "en" / "awareness" / "rights.toml").write_text(RIGHTS_EN.replace("Your rights", "Rights from file"))
    result = await sync_library(library_db, root, today=TODAY + dt.timedelta(days=2))
    assert result.unpublished == 1 and result.skipped_console == 2

    items = {i.code: i for i in await _rows(library_db, AwarenessItem)}
    assert items["nepotism"].published is False and items["nepotism"].updated_on == TODAY + dt.timedelta(days=2)
    assert items["nepotism_gone"].published is True
    texts = {t.item_id: t for t in await _rows(library_db, AwarenessItemText)}
    assert texts[items["bribery"].id].title == "Bribery (edited)"
    assert texts[items["bribery"].id].body == "Edited by an admin."
    topic_texts = {t.topic: t.title for t in await _rows(library_db, AwarenessTopicText)}
    assert topic_texts["rights"] == "Rights (edited)"

    # Unpublished: the bot no longer shows it, in any language; back in the files: shown again.
    library = Library(library_db)
    assert await library.item(items["nepotism"].id, "en") is None
    (root / "en" / "awareness" / "forms.toml").write_text(FORMS_EN, encoding="utf-8")
    await sync_library(library_db, root, today=TODAY + dt.timedelta(days=3))
    assert (await library.item(items["nepotism"].id, "en")).title == "Nepotism and wasta"


async def test_a_topic_removed_from_the_files_is_hidden(library_db, tmp_path):
    root = write_content(tmp_path, {"en/forms.toml": FORMS_EN, "en/rights.toml": RIGHTS_EN})
    await sync_library(library_db, root, today=TODAY)
    (root / "en" / "awareness" / "rights.toml").unlink()
    result = await sync_library(library_db, root, today=TODAY)
    assert result.hidden == 1 and result.unpublished == 1
    assert [t.code for t in await Library(library_db).topics("en")] == ["forms"]


async def test_reads_order_paginate_and_fall_back_to_the_other_language(library_db, tmp_path):
    root = write_content(tmp_path, {"en/forms.toml": FORMS_EN, "ar/forms.toml": FORMS_AR, "en/rights.toml": RIGHTS_EN})
    await sync_library(library_db, root, today=TODAY)
    library = Library(library_db)
    topics = await library.topics("ar")
    assert [(t.code, t.language) for t in topics] == [("forms", "ar"), ("rights", "en")]
    assert topics[0].title == "أشكال الفساد"
    page = await library.articles("forms", "en", 0, 1)
    assert page.count == 2 and page.has_next and [a.title for a in page.entries] == ["Bribery"]
    last = await library.articles("forms", "en", 7, 1)  # past the end: the last page
    assert last.number == 1 and [a.title for a in last.entries] == ["Nepotism and wasta"]
    # "nepotism" has no Arabic text: shown in English to an Arabic reader.
    nepotism_id = last.entries[0].id
    shown = await library.item(nepotism_id, "ar")
    assert shown.language == "en" and shown.title == "Nepotism and wasta"
    assert await library.has_quizzes("forms") and not await library.has_quizzes("rights")
    quiz = await library.item((await library.quiz_ids("forms"))[0], "ar")
    assert quiz.kind == "quiz" and quiz.options[0] == "هدية للتأثير في قرار" and quiz.correct == 0
    assert (await library.item_by_code("bribery", "en")).sources == ("UNCAC, article 15",)
    assert await library.item(999_999, "en") is None


def _item(**changes) -> ItemView:
    values = dict(
        id=1, code="x", topic="forms", kind="article", position=0, language="en", title="Title",
        body="Body", options=(), correct=None, sources=("Source one", "Source two"),
    )
    values.update(changes)
    return ItemView(**values)


def _entities_fit(formatted) -> None:
    size = utf16_len(formatted.text)
    for entity in formatted.entities:
        assert entity.length > 0 and 0 <= entity.offset and entity.offset + entity.length <= size


def test_an_article_is_title_body_and_sources_in_one_message():
    message = article_message(_item(body="**Bold** text"), sources_label="Sources:", shortened_note="(cut)")
    assert message.text == "Title\n\nBold text\n\nSources:\n• Source one\n• Source two"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 5), ("bold", 7, 4)]


@pytest.mark.parametrize("unit", ["a", "😀", "ب ", "**x** "])
def test_an_article_too_long_is_cut_with_a_note_and_never_exceeds_the_limit(unit):
    body = unit * 6000
    message = article_message(_item(body=body), sources_label="Sources:", shortened_note="(cut)")
    assert utf16_len(message.text) <= TEXT_LIMIT
    assert message.text.endswith("(cut)") and "Sources:" in message.text
    assert "\ud83d" not in message.text  # no half of a surrogate pair (Python keeps them whole)
    _entities_fit(message)
    huge_sources = article_message(
        _item(body="short", sources=("s" * 5000,)), sources_label="Sources:", shortened_note="(cut)"
    )
    assert utf16_len(huge_sources.text) <= TEXT_LIMIT and "short" in huge_sources.text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=400))
def test_clipping_keeps_entities_inside_the_text(source, limit):
    clipped = clip_formatted(parse_markup(source), limit)
    assert utf16_len(clipped.text) <= max(limit, utf16_len("…"))
    _entities_fit(clipped)


def test_a_quiz_is_cut_to_the_poll_limits():
    long = _item(
        kind="quiz", title="Q" * 400, options=("o" * 150, "b", "c"), correct=2,
        body="**Why** " + "word " * 80 + "\n\n\n\nend\nmore",
    )
    spec = quiz_poll(long)
    assert utf16_len(spec.question) <= 300 and spec.question.endswith("…")
    assert len(spec.options[0]) <= 100 and spec.options[1:] == ("b", "c") and spec.correct == 2
    assert utf16_len(spec.explanation.text) <= 200 and spec.explanation.text.count("\n") <= 2
    _entities_fit(spec.explanation)
    assert quiz_poll(_item(kind="quiz", options=("one",), correct=0)) is None
    assert quiz_poll(_item(kind="quiz", options=("a", "b"), correct=5)) is None
    assert quiz_poll(_item(kind="quiz", options=("a", "b"), correct=None)) is None
    assert quiz_poll(_item(kind="quiz", options=tuple("abcdefghijkl"), correct=3)).options == tuple("abcdefghij")
    assert quiz_poll(_item(kind="quiz", options=("a", "b"), correct=1, body="")).explanation is None


def test_the_shipped_library_loads_and_fits_telegram_without_cutting():
    from nazaha.bot.app import LOCALES_DIR

    content = load_content(LOCALES_DIR)
    assert content.problems == []
    assert content.topics and all(set(t.texts) == {"ar", "en"} for t in content.topics.values())
    for item in content.items.values():
        assert set(item.texts) == {"ar", "en"}, item.code
        for language, text in item.texts.items():
            view = _item(
                code=item.code, topic=item.topic, kind=item.kind, language=language,
                title=text["title"], body=text["body"],
                options=tuple(text["options"].split("\n")) if text["options"] else (),
                correct=text["correct_option"], sources=tuple(text["sources"].split("\n")),
            )
            if item.kind == "article":
                message = article_message(view, sources_label="المصادر", shortened_note="(cut)")
                assert not message.text.endswith("(cut)"), (item.code, language)
                _entities_fit(message)
            else:
                spec = quiz_poll(view)
                assert spec is not None and spec.question == text["title"], (item.code, language)
                assert spec.options == view.options and not spec.explanation.text.endswith("…")
