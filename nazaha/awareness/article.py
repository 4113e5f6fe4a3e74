"""Library content as the bot will send it, for the console's preview and checks.

An article is shown by the bot as one message made by
:func:`nazaha.awareness.library.article_message` (the title in bold, the body in the
awareness markup, then "Sources:" and one bulleted line per source), with the bot's own words
in the article's language; a message over Telegram's 4,096 characters would be cut. The
console shows exactly that message and refuses to save an article that would need cutting.
A quiz is a Telegram quiz poll: a question of 1-300 characters, 2-10 options of 1-100
characters, and an explanation of at most 200 characters and 2 line breaks; the console
refuses anything the bot would have to cut (:func:`nazaha.awareness.library.quiz_poll`).
"""

from __future__ import annotations

from nazaha.awareness import library as bot_library
from nazaha.awareness.broadcast_message import translator
from nazaha.awareness.markup import TEXT_LIMIT, Formatted, parse_markup, utf16_len

__all__ = [
    "SOURCES_LABEL", "SHORTENED_NOTE", "source_lines", "article_message", "article_length",
    "article_problems", "quiz_problems",
]


def N_(message: str) -> str:  # noqa: N802 - Babel's marker for "extract, translate later"
    return message


# The bot's own words around an article (nazaha/handlers/awareness_screens.py: article_text).
SOURCES_LABEL = N_("Sources:")
SHORTENED_NOTE = N_("This article was shortened to fit in one message.")
_UNCUT = 1 << 30


def source_lines(sources: str) -> list[str]:
    return [line.strip() for line in (sources or "").replace("\r", "\n").split("\n") if line.strip()]


def _item(title: str, body: str, sources: str, language: str) -> bot_library.ItemView:
    return bot_library.ItemView(
        id=0, code="", topic="", kind="article", position=0, language=language, title=title.strip(),
        body=body, options=(), correct=None, sources=tuple(source_lines(sources)),
    )


def article_message(title: str, body: str, sources: str, language: str, *, limit: int = TEXT_LIMIT) -> Formatted:
    """The article as the bot sends it to a reader of ``language`` (text and entities)."""
    words = translator(language)
    return bot_library.article_message(
        _item(title, body, sources, language), sources_label=words.ugettext(SOURCES_LABEL),
        shortened_note=words.ugettext(SHORTENED_NOTE), limit=limit,
    )


def article_length(title: str, body: str, sources: str, language: str) -> int:
    """The whole article's length as Telegram counts it (UTF-16 units), before any cut."""
    return article_message(title, body, sources, language, limit=_UNCUT).length


def article_problems(title: str, body: str, sources: str, language: str) -> list[str]:
    """Why the article cannot be saved: ``title`` (empty), ``body`` (empty), ``too_long``
    (over 4,096 characters as a message: the bot would cut it), ``bad_link`` (a link that
    is not http(s))."""
    problems = []
    if not title.strip():
        problems.append("title")
    if not body.strip():
        problems.append("body")
    if article_length(title, body, sources, language) > TEXT_LIMIT:
        problems.append("too_long")
    if parse_markup(body).bad_links:
        problems.append("bad_link")
    return problems


def quiz_problems(question: str, options: list[str], correct: int | None, explanation: str) -> list[str]:
    """Why the quiz cannot be sent uncut as a Telegram quiz poll: ``question`` (1-300),
    ``options`` (2-10 of 1-100 each), ``correct`` (not one of the options), ``explanation``
    (over 200 characters or 2 line breaks once parsed)."""
    problems = []
    if not question.strip() or utf16_len(" ".join(question.split())) > bot_library.QUESTION_LIMIT:
        problems.append("question")
    if not bot_library.OPTIONS_MIN <= len(options) <= bot_library.OPTIONS_MAX or any(
        not o.strip() or utf16_len(" ".join(o.split())) > bot_library.OPTION_LIMIT for o in options
    ):
        problems.append("options")
    if correct is None or not 0 <= correct < len(options):
        problems.append("correct")
    parsed = parse_markup(explanation)
    if parsed.length > bot_library.EXPLANATION_LIMIT or parsed.text.count("\n") > bot_library.EXPLANATION_LINE_FEEDS:
        problems.append("explanation")
    return problems
