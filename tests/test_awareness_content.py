"""The awareness content library (nazaha/locales/<lang>/awareness/<topic>.toml): every file
parses, Arabic and English match item for item, codes are well formed and unique, every text
fits Telegram's limits, every item names its sources, Arabic isolates its left-to-right runs,
and the article markup (**bold**, *italic*, [text](https://...)) is well formed.

Lengths are counted as Telegram counts them: UTF-16 code units.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

LOCALES = Path(__file__).resolve().parent.parent / "nazaha" / "locales"
LANGUAGES = ("ar", "en")
LRI, PDI = "\u2066", "\u2069"
ISOLATE_OPENERS = "\u2066\u2067\u2068"  # LRI, RLI, FSI: each closed by a PDI

TOPIC_CODE = re.compile(r"[a-z0-9_]{1,32}")
ITEM_CODE = re.compile(r"[a-z0-9_-]{1,64}")
TOPIC_KEYS = {"code", "position", "title", "summary"}
ARTICLE_KEYS = {"code", "kind", "position", "title", "body", "sources"}
QUIZ_KEYS = {"code", "kind", "position", "title", "options", "correct", "explanation", "sources"}

TELEGRAM_MESSAGE = 4096
TOPIC_TITLE, TOPIC_SUMMARY = 40, 300
ARTICLE_TITLE = 64
QUIZ_QUESTION, QUIZ_OPTION, QUIZ_EXPLANATION = 300, 100, 200
# Short and readable on a cheap phone (the aim is 900-2000); the hard limit is the message.
BODY_MIN, BODY_MAX = 600, 2400
SOURCE_MAX = 400
# How the bot shows the sources under an article, at its longest: a label, one line each.
SOURCES_LABEL = {"ar": "المصادر:", "en": "Sources:"}
SOURCE_BULLET = "\n• "

LINK = re.compile(r"\[([^\[\]\n]+)\]\(([^()\s]+)\)")
# Block syntax a Markdown parser would turn into lists, headings or quotes.
BLOCK_START = re.compile(r"^(?:#|>|[-+*]\s|\d+[.)]\s)", re.MULTILINE)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _files(language: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((LOCALES / language / "awareness").glob("*.toml"))}


def _load(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


LIBRARY = {language: {stem: _load(p) for stem, p in _files(language).items()} for language in LANGUAGES}
ALL_FILES = [p for language in LANGUAGES for p in _files(language).values()]


def _items(language: str):
    for stem, doc in LIBRARY[language].items():
        for item in doc.get("item", []):
            yield stem, item


def _texts(doc: dict):
    """(where, text, is_body) for every user-visible string of a topic file."""
    topic = doc["topic"]
    yield "topic.title", topic["title"], False
    yield "topic.summary", topic["summary"], False
    for item in doc.get("item", []):
        code = item["code"]
        yield f"{code}.title", item["title"], False
        if item["kind"] == "article":
            yield f"{code}.body", item["body"], True
        else:
            for n, option in enumerate(item["options"]):
                yield f"{code}.options[{n}]", option, False
            yield f"{code}.explanation", item["explanation"], False
        for n, source in enumerate(item["sources"]):
            yield f"{code}.sources[{n}]", source, False


# ---- files and structure --------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_file_parses_with_a_topic_and_items(path):
    doc = _load(path)
    assert set(doc) == {"topic", "item"}, sorted(doc)
    assert set(doc["topic"]) == TOPIC_KEYS, sorted(doc["topic"])
    assert isinstance(doc["item"], list) and doc["item"]


def test_both_languages_have_the_same_topic_files():
    ar, en = set(LIBRARY["ar"]), set(LIBRARY["en"])
    assert ar == en, (ar ^ en)
    assert len(en) >= 9


@pytest.mark.parametrize("language", LANGUAGES)
def test_topics_are_well_formed(language):
    positions = []
    for stem, doc in LIBRARY[language].items():
        topic = doc["topic"]
        assert topic["code"] == stem
        assert TOPIC_CODE.fullmatch(topic["code"]), stem
        assert type(topic["position"]) is int, stem
        positions.append(topic["position"])
        assert topic["title"] == topic["title"].strip() and topic["title"], stem
        assert utf16(topic["title"]) <= TOPIC_TITLE, (stem, topic["title"])
        assert topic["summary"].strip() and utf16(topic["summary"]) <= TOPIC_SUMMARY, stem
        kinds = [item["kind"] for item in doc["item"]]
        assert kinds.count("article") >= 2, stem
        assert kinds.count("quiz") >= 1, stem
    assert len(positions) == len(set(positions)), positions


def test_topic_positions_match_across_languages():
    for stem in LIBRARY["en"]:
        assert LIBRARY["ar"][stem]["topic"]["position"] == LIBRARY["en"][stem]["topic"]["position"]


def _shape(item: dict) -> tuple:
    if item["kind"] == "quiz":
        return item["code"], "quiz", item["position"], len(item["options"]), item["correct"]
    return item["code"], item["kind"], item["position"]


def test_items_match_across_languages():
    for stem in LIBRARY["en"]:
        en = [_shape(i) for i in LIBRARY["en"][stem]["item"]]
        ar = [_shape(i) for i in LIBRARY["ar"][stem]["item"]]
        assert ar == en, stem


@pytest.mark.parametrize("language", LANGUAGES)
def test_item_codes_are_well_formed_and_unique_across_topics(language):
    codes = [item["code"] for _, item in _items(language)]
    for code in codes:
        assert ITEM_CODE.fullmatch(code), code
    duplicates = {c for c in codes if codes.count(c) > 1}
    assert not duplicates, duplicates
    for stem, doc in LIBRARY[language].items():
        positions = [item["position"] for item in doc["item"]]
        assert all(type(p) is int for p in positions), stem
        assert len(positions) == len(set(positions)), stem


# ---- items and limits -----------------------------------------------------------------------


def article_message(language: str, item: dict) -> str:
    """The article as one Telegram message, at its longest: title, body, sources."""
    sources = SOURCES_LABEL[language] + "".join(SOURCE_BULLET + s for s in item["sources"])
    return f"{item['title']}\n\n{item['body'].strip()}\n\n{sources}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_articles_fit_one_message_and_stay_short(language):
    for stem, item in _items(language):
        if item["kind"] != "article":
            continue
        code = item["code"]
        assert set(item) == ARTICLE_KEYS, (code, sorted(item))
        assert item["title"] == item["title"].strip() and item["title"], code
        assert utf16(item["title"]) <= ARTICLE_TITLE, (code, item["title"])
        body = utf16(item["body"].strip())
        assert BODY_MIN <= body <= BODY_MAX, (code, body)
        assert utf16(article_message(language, item)) <= TELEGRAM_MESSAGE, code


@pytest.mark.parametrize("language", LANGUAGES)
def test_quizzes_fit_telegram_polls(language):
    for stem, item in _items(language):
        if item["kind"] != "quiz":
            continue
        code = item["code"]
        assert set(item) == QUIZ_KEYS, (code, sorted(item))
        assert item["title"].strip() and utf16(item["title"]) <= QUIZ_QUESTION, code
        options = item["options"]
        assert isinstance(options, list) and 2 <= len(options) <= 10, code
        for option in options:
            assert isinstance(option, str) and 1 <= utf16(option) <= QUIZ_OPTION, (code, option)
            assert option == option.strip(), (code, option)
        assert len(set(options)) == len(options), code
        assert type(item["correct"]) is int and 0 <= item["correct"] < len(options), code
        explanation = item["explanation"]
        assert explanation.strip() and utf16(explanation) <= QUIZ_EXPLANATION, (code, utf16(explanation))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_item_names_its_sources(language):
    for stem, item in _items(language):
        sources = item["sources"]
        assert isinstance(sources, list) and sources, item["code"]
        for source in sources:
            assert isinstance(source, str) and source.strip() == source and source, item["code"]
            assert utf16(source) <= SOURCE_MAX, (item["code"], source)


def test_every_kind_is_known():
    for language in LANGUAGES:
        for stem, item in _items(language):
            assert item["kind"] in ("article", "quiz"), item["code"]


# ---- Arabic: left-to-right runs isolated ---------------------------------------------------


def _outside_isolates(text: str) -> str:
    """The text with every isolate (LRI/RLI/FSI ... PDI) removed; fails on unbalanced ones."""
    out, depth = [], 0
    for ch in text:
        if ch in ISOLATE_OPENERS:
            depth += 1
        elif ch == PDI:
            assert depth > 0, f"PDI without an opener: {text!r}"
            depth -= 1
        elif depth == 0:
            out.append(ch)
    assert depth == 0, f"isolate left open: {text!r}"
    return "".join(out)


def _without_link_targets(text: str) -> str:
    # A link's target is not shown (it becomes an entity), and must stay a plain URL.
    return LINK.sub(lambda m: f"[{m.group(1)}]", text)


def test_isolates_are_balanced_in_every_text():
    for language in LANGUAGES:
        for stem, doc in LIBRARY[language].items():
            for where, text, _ in _texts(doc):
                _outside_isolates(text)  # asserts balance
                for match in LINK.finditer(text):
                    assert not set(match.group(2)) & set(ISOLATE_OPENERS + PDI), (stem, where)


def test_arabic_digits_and_latin_runs_are_isolated():
    """Every ASCII digit (and Latin letter: names, URLs, commands) in Arabic text, titles and
    sources included, sits inside an LRI ... PDI span."""
    for stem, doc in LIBRARY["ar"].items():
        for where, text, _ in _texts(doc):
            rest = _outside_isolates(_without_link_targets(text))
            stray = re.findall(r"[0-9A-Za-z/][0-9A-Za-z./:-]*", rest)
            assert not stray, (stem, where, stray, text)


def test_arabic_texts_are_arabic():
    arabic = re.compile(r"[\u0600-\u06FF]")
    for stem, doc in LIBRARY["ar"].items():
        for where, text, _ in _texts(doc):
            if ".options[" in where:
                continue  # an option may be a bare number such as "16.5"
            assert arabic.search(text), (stem, where)


def test_isolate_rule_is_precise():
    assert _outside_isolates(f"الغاية {LRI}16.5{PDI} مهمة") == "الغاية  مهمة"
    assert re.findall(r"[0-9]", _outside_isolates(f"{LRI}2014{PDI} و 2015")) == list("2015")
    with pytest.raises(AssertionError):
        _outside_isolates(f"{LRI}16.5")
    with pytest.raises(AssertionError):
        _outside_isolates(f"16.5{PDI}")


# ---- markup ---------------------------------------------------------------------------------


def markup_problems(body: str) -> list[str]:
    """What is wrong with an article body's markup: **bold**, *italic*, [text](https://...),
    blank line = paragraph. Each paragraph must close what it opens."""
    problems = []
    for match in LINK.finditer(body):
        if not match.group(2).startswith("https://"):
            problems.append(f"link not https: {match.group(2)}")
    rest = LINK.sub(lambda m: m.group(1), body)
    if any(c in rest for c in "[]"):
        problems.append("bracket outside a link")
    if BLOCK_START.search(body):
        problems.append("line starts like a Markdown list, heading or quote")
    for c in "_`<>\\":
        if c in body:
            problems.append(f"character the markup would read: {c!r}")
    if "***" in body:
        problems.append("*** is ambiguous")
    for paragraph in re.split(r"\n\s*\n", body):
        if paragraph.count("**") % 2:
            problems.append(f"unbalanced **: {paragraph[:60]!r}")
        if paragraph.replace("**", "").count("*") % 2:
            problems.append(f"unbalanced *: {paragraph[:60]!r}")
        for span in re.findall(r"\*\*(.*?)\*\*", paragraph, re.DOTALL):
            if not span.strip() or span != span.strip():
                problems.append(f"bold span with outer spaces: {span!r}")
    return problems


def test_markup_checker_catches_mistakes():
    assert markup_problems("Plain **bold** and *italic* and [link](https://example.org).") == []
    assert markup_problems("**open") and markup_problems("*open") and markup_problems("***x***")
    assert markup_problems("[insecure](http://example.org)")
    assert markup_problems("a [stray bracket")
    assert markup_problems("- a list item") and markup_problems("1. first")
    assert markup_problems("**across\n\nparagraphs**")


@pytest.mark.parametrize("language", LANGUAGES)
def test_article_markup_is_well_formed(language):
    for stem, item in _items(language):
        if item["kind"] == "article":
            assert markup_problems(item["body"]) == [], (item["code"], markup_problems(item["body"]))


@pytest.mark.parametrize("language", LANGUAGES)
def test_plain_text_fields_carry_no_markup(language):
    for stem, doc in LIBRARY[language].items():
        for where, text, is_body in _texts(doc):
            if is_body:
                continue
            assert not any(c in text for c in "*[]`<>\\"), (stem, where, text)
            assert "\n" not in text, (stem, where)
