"""What a library article and a quiz look like in Telegram, and Telegram's limits on them.

An article is one message: its title in bold, a blank line, the body (the awareness markup),
and, when it has sources, a blank line, the word "Sources" in italics and one source per
line after a bullet (the content files' format, tests/test_awareness_content.py). Title and sources are text, never markup (their ``*``, ``_`` and brackets are kept
as typed). The whole must fit Telegram's 4,096 characters once parsed. A quiz is a Telegram
quiz poll: a question of 1-300 characters, 2-10 options of 1-100 characters each, and an
explanation of at most 200 characters and 2 line breaks.

The console checks content with these functions; the bot shows articles with
:func:`article_message`, so the check and the message are the same thing.
"""

from __future__ import annotations

import re

from nazaha.awareness.broadcast_message import translator
from nazaha.awareness.markup import TEXT_LIMIT, Formatted, parse_markup, utf16_len

__all__ = [
    "SOURCES_LABEL", "QUESTION_LIMIT", "OPTION_LIMIT", "MIN_QUIZ_OPTIONS", "MAX_QUIZ_OPTIONS",
    "EXPLANATION_LIMIT", "EXPLANATION_MAX_LINE_FEEDS", "escape_markup", "article_markup",
    "article_message", "article_problems", "quiz_problems", "source_lines",
]


def N_(message: str) -> str:  # noqa: N802 - Babel's marker for "extract, translate later"
    return message


SOURCES_LABEL = N_("Sources")
QUESTION_LIMIT = 300
OPTION_LIMIT = 100
MIN_QUIZ_OPTIONS, MAX_QUIZ_OPTIONS = 2, 10
EXPLANATION_LIMIT = 200
EXPLANATION_MAX_LINE_FEEDS = 2
_MARKUP_PUNCTUATION = re.compile(r"([\\`*_\[\]()<>!])")


def escape_markup(text: str) -> str:
    """``text`` as markup that shows it exactly as typed (no bold, italic or link)."""
    return _MARKUP_PUNCTUATION.sub(r"\\\1", text)


def source_lines(sources: str) -> list[str]:
    return [line.strip() for line in (sources or "").replace("\r", "\n").split("\n") if line.strip()]


def article_markup(title: str, body: str, sources: str, language: str) -> str:
    """The article's whole message in the awareness markup."""
    parts = [f"**{escape_markup(' '.join(title.split()))}**", body.replace("\r\n", "\n").strip()]
    lines = source_lines(sources)
    if lines:
        label = translator(language).ugettext(SOURCES_LABEL)
        parts.append("\n".join([f"_{escape_markup(label)}_", *(f"• {escape_markup(line)}" for line in lines)]))
    return "\n\n".join(part for part in parts if part)


def article_message(title: str, body: str, sources: str, language: str) -> Formatted:
    """The article as Telegram shows it: text and entities."""
    return parse_markup(article_markup(title, body, sources, language))


def article_problems(title: str, body: str, sources: str, language: str) -> list[str]:
    """Why the article cannot be shown: ``title`` (empty), ``body`` (empty), ``too_long``
    (over 4,096 characters as a message), ``bad_link`` (a link that is not http(s))."""
    problems = []
    if not title.strip():
        problems.append("title")
    if not body.strip():
        problems.append("body")
    formatted = article_message(title, body, sources, language)
    if formatted.length > TEXT_LIMIT:
        problems.append("too_long")
    if parse_markup(body).bad_links:
        problems.append("bad_link")
    return problems


def quiz_problems(question: str, options: list[str], correct: int | None, explanation: str) -> list[str]:
    """Why the quiz cannot be sent as a Telegram quiz poll: ``question`` (1-300), ``options``
    (2-10 of 1-100 each), ``correct`` (not one of the options), ``explanation`` (over 200
    characters or 2 line breaks)."""
    problems = []
    if not question.strip() or utf16_len(question.strip()) > QUESTION_LIMIT:
        problems.append("question")
    if not MIN_QUIZ_OPTIONS <= len(options) <= MAX_QUIZ_OPTIONS or any(
        not o.strip() or utf16_len(o.strip()) > OPTION_LIMIT for o in options
    ):
        problems.append("options")
    if correct is None or not 0 <= correct < len(options):
        problems.append("correct")
    text = explanation.strip()
    if utf16_len(text) > EXPLANATION_LIMIT or text.count("\n") > EXPLANATION_MAX_LINE_FEEDS:
        problems.append("explanation")
    return problems
