"""The awareness library as the console reads and edits it: topics, and their articles and
quiz questions in each language (the bot's side, files and reading: nazaha.awareness.library).

The bot loads the initial content from files (``origin = "file"``); whatever an admin adds or
changes here gets ``origin = "console"`` (items and topics alike, publishing included), so
that the files never overwrite it. Content is checked against what the bot will send
(:mod:`nazaha.awareness.article`: nothing it would have to cut) before it is saved; a
language left empty is not offered in that language.

Functions take the caller's session (a write transaction where they write) and do not commit.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.awareness.article import article_length, article_message, article_problems, quiz_problems
from nazaha.awareness.markup import preview_html
from nazaha.awareness.surveys import split_options
from nazaha.storage.awareness_models import (
    ITEM_KINDS,
    LANGUAGES,
    AwarenessItem,
    AwarenessItemText,
    AwarenessTopic,
    AwarenessTopicText,
)

__all__ = [
    "TOPIC_CODE", "ITEM_CODE", "TOPIC_TITLE_MAX", "ARTICLE_TITLE_MAX", "LibraryError",
    "ItemText", "ItemView", "TopicView", "library", "get_item", "get_topic", "save_item",
    "set_published", "save_topic", "article_preview", "campaign_targets", "checked_texts",
]

TOPIC_CODE = re.compile(r"[a-z0-9_]{1,32}")
ITEM_CODE = re.compile(r"[a-z0-9_-]{1,64}")
# As the content files have them (tests/test_awareness_content.py): titles are button labels.
TOPIC_TITLE_MAX = 40
SUMMARY_MAX = 300
ARTICLE_TITLE_MAX = 64
SOURCES_MAX = 4000


class LibraryError(ValueError):
    """Refused: ``code`` (``not_found``, ``code``, ``code_taken``, ``topic``, ``kind``,
    ``no_language``, ``title``, ``summary``, a problem of :mod:`nazaha.awareness.article`:
    ``body``, ``too_long``, ``bad_link``, ``question``, ``options``, ``correct``,
    ``explanation``, ``sources``) and the ``language`` it concerns, if one."""

    def __init__(self, code: str, language: str | None = None) -> None:
        super().__init__(code if language is None else f"{code}:{language}")
        self.code = code
        self.language = language


@dataclass(frozen=True)
class ItemText:
    """One language of an item. Articles: ``title``, ``body`` (markup), ``sources``.
    Quizzes: ``title`` the question, ``options``, ``correct_option`` (0-based), ``body``
    the explanation."""

    title: str
    body: str = ""
    options: tuple[str, ...] = ()
    correct_option: int | None = None
    sources: str = ""


@dataclass(frozen=True)
class ItemView:
    id: int
    code: str
    topic: str
    kind: str
    position: int
    origin: str
    published: bool
    updated_on: dt.date
    texts: dict[str, ItemText]

    def title(self, language: str) -> str:
        text = self.texts.get(language) or next(iter(self.texts.values()), None)
        return text.title if text is not None else self.code


@dataclass(frozen=True)
class TopicView:
    code: str
    position: int
    origin: str
    hidden: bool
    texts: dict[str, tuple[str, str]]  # language -> (title, summary)
    items: list[ItemView] = field(default_factory=list)

    def title(self, language: str) -> str:
        text = self.texts.get(language) or next(iter(self.texts.values()), None)
        return text[0] if text is not None else self.code


def _ordered(mapping: dict) -> dict:
    return {k: mapping[k] for k in sorted(mapping, key=lambda k: LANGUAGES.index(k) if k in LANGUAGES else 9)}


def _item_view(item: AwarenessItem, texts: list[AwarenessItemText]) -> ItemView:
    by_language = _ordered({
        t.language: ItemText(t.title, t.body or "", tuple(split_options(t.options or "")), t.correct_option, t.sources or "")
        for t in texts
    })
    return ItemView(item.id, item.code, item.topic, item.kind, item.position, item.origin,
                    bool(item.published), item.updated_on, by_language)


async def library(session: AsyncSession) -> list[TopicView]:
    """Every topic (hidden ones too) with its items, in their positions."""
    topics = (await session.scalars(select(AwarenessTopic).order_by(AwarenessTopic.position, AwarenessTopic.code))).all()
    topic_texts: dict[str, dict[str, tuple[str, str]]] = {}
    for text in (await session.scalars(select(AwarenessTopicText))).all():
        topic_texts.setdefault(text.topic, {})[text.language] = (text.title, text.summary or "")
    items = (await session.scalars(select(AwarenessItem).order_by(AwarenessItem.position, AwarenessItem.id))).all()
    item_texts: dict[int, list[AwarenessItemText]] = {}
    for text in (await session.scalars(select(AwarenessItemText))).all():
        item_texts.setdefault(text.item_id, []).append(text)
    by_topic: dict[str, list[ItemView]] = {}
    for item in items:
        by_topic.setdefault(item.topic, []).append(_item_view(item, item_texts.get(item.id, [])))
    return [
        TopicView(t.code, t.position, t.origin, bool(t.hidden), _ordered(topic_texts.get(t.code, {})), by_topic.get(t.code, []))
        for t in topics
    ]


async def get_topic(session: AsyncSession, code: str) -> TopicView:
    topic = await session.get(AwarenessTopic, code)
    if topic is None:
        raise LibraryError("not_found")
    texts = (await session.scalars(select(AwarenessTopicText).where(AwarenessTopicText.topic == code))).all()
    return TopicView(topic.code, topic.position, topic.origin, bool(topic.hidden),
                     _ordered({t.language: (t.title, t.summary or "") for t in texts}))


async def get_item(session: AsyncSession, item_id: int) -> ItemView:
    item = await session.get(AwarenessItem, item_id)
    if item is None:
        raise LibraryError("not_found")
    texts = (await session.scalars(select(AwarenessItemText).where(AwarenessItemText.item_id == item_id))).all()
    return _item_view(item, list(texts))


def checked_texts(kind: str, texts: Mapping[str, ItemText]) -> dict[str, ItemText]:
    """The languages of an item that are filled in, trimmed and checked against Telegram's
    limits (:class:`LibraryError` naming the first problem and its language)."""
    checked: dict[str, ItemText] = {}
    for language in LANGUAGES:
        text = texts.get(language)
        if text is None or not (text.title.strip() or text.body.strip() or text.options or text.sources.strip()):
            continue
        if len(text.sources) > SOURCES_MAX:
            raise LibraryError("sources", language)
        if kind == "article":
            if len(text.title.strip()) > ARTICLE_TITLE_MAX:
                raise LibraryError("title", language)
            problems = article_problems(text.title, text.body, text.sources, language)
            if problems:
                raise LibraryError(problems[0], language)
            checked[language] = ItemText(text.title.strip(), text.body.replace("\r\n", "\n").strip(), (), None, text.sources.strip())
        else:
            options = [o.strip() for o in text.options if o.strip()]
            problems = quiz_problems(text.title, options, text.correct_option, text.body)
            if problems:
                raise LibraryError(problems[0], language)
            checked[language] = ItemText(text.title.strip(), text.body.strip(), tuple(options), text.correct_option, text.sources.strip())
    if not checked:
        raise LibraryError("no_language")
    if kind == "quiz" and len({(len(t.options), t.correct_option) for t in checked.values()}) > 1:
        # Telegram's counts are per option: every language asks the same question.
        raise LibraryError("options")
    return checked


async def save_item(
    session: AsyncSession, *, topic: str, kind: str, texts: Mapping[str, ItemText], published: bool,
    today: dt.date, item_id: int | None = None, code: str = "",
) -> int:
    """Add an item (``item_id`` None; ``code`` given or made) or rewrite one. Either way it
    becomes ``origin = "console"``. Returns its id; :class:`LibraryError` on bad input."""
    if kind not in ITEM_KINDS:
        raise LibraryError("kind")
    if await session.get(AwarenessTopic, topic) is None:
        raise LibraryError("topic")
    checked = checked_texts(kind, texts)
    if item_id is None:
        code = code.strip() or f"{kind}-{secrets.token_hex(4)}"
        if not ITEM_CODE.fullmatch(code):
            raise LibraryError("code")
        if await session.scalar(select(AwarenessItem.id).where(AwarenessItem.code == code)) is not None:
            raise LibraryError("code_taken")
        last = await session.scalar(select(func.max(AwarenessItem.position)).where(AwarenessItem.topic == topic))
        item = AwarenessItem(code=code, topic=topic, kind=kind, position=(last or 0) + 1, origin="console",
                             published=published, updated_on=today)
        session.add(item)
        await session.flush()
    else:
        item = await session.get(AwarenessItem, item_id)
        if item is None:
            raise LibraryError("not_found")
        if item.kind != kind:
            raise LibraryError("kind")
        item.topic, item.origin, item.published, item.updated_on = topic, "console", published, today
        await session.execute(delete(AwarenessItemText).where(AwarenessItemText.item_id == item.id))
    for language, text in checked.items():
        session.add(AwarenessItemText(
            item_id=item.id, language=language, title=text.title, body=text.body,
            options="\n".join(text.options), correct_option=text.correct_option if kind == "quiz" else None,
            sources=text.sources,
        ))
    await session.flush()
    return item.id


async def set_published(session: AsyncSession, item_id: int, published: bool, *, today: dt.date) -> None:
    """Publish or unpublish an item (then ``origin = "console"``: the files keep out)."""
    item = await session.get(AwarenessItem, item_id)
    if item is None:
        raise LibraryError("not_found")
    item.published, item.origin, item.updated_on = bool(published), "console", today
    await session.flush()


async def save_topic(
    session: AsyncSession, *, code: str, texts: Mapping[str, tuple[str, str]], hidden: bool, new: bool,
) -> str:
    """Add a topic (``new``) or rewrite one; ``texts``: language -> (title, summary), a
    language with no title left out. Returns the code."""
    code = code.strip()
    if not TOPIC_CODE.fullmatch(code):
        raise LibraryError("code")
    checked: dict[str, tuple[str, str]] = {}
    for language in LANGUAGES:
        title, summary = texts.get(language, ("", ""))
        title, summary = " ".join(title.split()), summary.strip()
        if not title and not summary:
            continue
        if not title or len(title) > TOPIC_TITLE_MAX:
            raise LibraryError("title", language)
        if len(summary) > SUMMARY_MAX:
            raise LibraryError("summary", language)
        checked[language] = (title, summary)
    if not checked:
        raise LibraryError("no_language")
    topic = await session.get(AwarenessTopic, code)
    if new:
        if topic is not None:
            raise LibraryError("code_taken")
        last = await session.scalar(select(func.max(AwarenessTopic.position)))
        session.add(AwarenessTopic(code=code, position=(last or 0) + 1, origin="console", hidden=hidden))
        await session.flush()
    else:
        if topic is None:
            raise LibraryError("not_found")
        topic.origin, topic.hidden = "console", hidden
        await session.execute(delete(AwarenessTopicText).where(AwarenessTopicText.topic == code))
    for language, (title, summary) in checked.items():
        session.add(AwarenessTopicText(topic=code, language=language, title=title, summary=summary))
    await session.flush()
    return code


def article_preview(text: ItemText, language: str) -> tuple[str, int]:
    """The article's message as the bot sends it, as safe HTML, and the whole article's
    length before any cut (UTF-16 units, as Telegram counts them)."""
    formatted = article_message(text.title, text.body, text.sources, language)
    return preview_html(formatted), article_length(text.title, text.body, text.sources, language)


async def campaign_targets(session: AsyncSession) -> list[tuple[str, str, str]]:
    """What a campaign link may open: ``(target, kind, topic)`` for every topic
    (``target`` its code) and every published article (``item:<code>``), in the order the
    bot lists them. Quiz questions are not targets: the bot opens a campaign's topic or
    article, and a quiz is reached from its topic."""
    targets = [(code, "topic", code) for code in (await session.scalars(select(AwarenessTopic.code).order_by(AwarenessTopic.position, AwarenessTopic.code))).all()]
    rows = await session.execute(
        select(AwarenessItem.code, AwarenessItem.topic)
        .join(AwarenessTopic, AwarenessTopic.code == AwarenessItem.topic)
        .where(AwarenessItem.published.is_(True), AwarenessItem.kind == "article")
        .order_by(AwarenessTopic.position, AwarenessItem.topic, AwarenessItem.position, AwarenessItem.id)
    )
    targets.extend((f"item:{code}", "item", topic) for code, topic in rows.all())
    return targets
