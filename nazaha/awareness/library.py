"""The awareness library: topics, articles and quiz questions, from files and the console.

Files: ``nazaha/locales/<lang>/awareness/<topic>.toml``, one per topic and language, the same
codes in every language::

    [topic]
    code = "forms"            # [a-z0-9_], at most 32
    position = 10
    title = "Forms of corruption"   # at most 64 characters (also a button label)
    summary = "..."

    [[item]]
    code = "bribery"          # [a-z0-9_-], at most 64, unique across topics
    kind = "article"
    position = 10
    title = "Bribery"
    body = \"\"\"markup (nazaha.awareness.markup)\"\"\"
    sources = ["where each fact comes from", "..."]

    [[item]]
    code = "forms_quiz_1"
    kind = "quiz"
    position = 90
    title = "The question?"
    options = ["a", "b", "c"]   # 2-10
    correct = 1                  # 0-based
    explanation = "shown for the right answer"
    sources = ["..."]

:func:`sync_library` copies the files into the tables ``awareness_topics``,
``awareness_topic_texts``, ``awareness_items`` and ``awareness_item_texts`` (at bot start
and from ``nazaha init``/``nazaha demo``; idempotent: a second run writes nothing). Rows whose
``origin`` is ``"console"`` (written or edited by an admin in the console, which must set
that origin on any change) are never overwritten; a file item that left the files is
unpublished (never deleted: quiz counts refer to it), a file topic that left them is hidden.

:class:`Library` answers the bot's questions (topics of a language, a topic's articles by
page, an item in a language with the other language as a fallback); :func:`article_message`
and :func:`quiz_poll` turn an item into what Telegram accepts, whatever an admin wrote: an
article within 4096 UTF-16 units (cut with a note), a quiz within the poll limits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import tomllib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram.types import MessageEntity
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.markup import TEXT_LIMIT, Formatted, parse_markup, utf16_len
from nazaha.storage.awareness_models import (
    LANGUAGES,
    AwarenessItem,
    AwarenessItemText,
    AwarenessTopic,
    AwarenessTopicText,
)
from nazaha.storage.database import write_transaction
from nazaha.storage.unit_of_work import active_uow

__all__ = [
    "CONTENT_DIRNAME", "ContentProblem", "ContentSet", "FileItem", "FileTopic", "Library",
    "ItemView", "TopicView", "ArticleRef", "Page", "SyncResult", "QuizPollSpec",
    "load_content", "sync_library", "article_message", "quiz_poll", "clip_formatted",
]

log = logging.getLogger(__name__)

CONTENT_DIRNAME = "awareness"
TOPIC_CODE = re.compile(r"^[a-z0-9_]{1,32}$")
ITEM_CODE = re.compile(r"^[a-z0-9_-]{1,64}$")
TOPIC_TITLE_MAX = 64
ITEM_TITLE_MAX = 300
# Telegram's quiz poll limits (sendPoll): a question of 1-300 characters, 2-10 options of
# 1-100 characters (newer servers take 12; 10 is what every server takes), an explanation
# of 0-200 characters with at most 2 line feeds.
QUESTION_LIMIT = 300
OPTION_LIMIT = 100
OPTIONS_MIN, OPTIONS_MAX = 2, 10
EXPLANATION_LIMIT = 200
EXPLANATION_LINE_FEEDS = 2
ELLIPSIS = "…"


# ---- the files --------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentProblem:
    """Something in a content file that was skipped: ``where`` is the file (relative to the
    locales dir) and the item code if any; ``reason`` says what is wrong."""

    where: str
    reason: str


@dataclass
class FileItem:
    code: str
    topic: str
    kind: str
    position: int
    # language -> the item_texts columns (title, body, options, correct_option, sources)
    texts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class FileTopic:
    code: str
    position: int
    texts: dict[str, tuple[str, str]] = field(default_factory=dict)  # language -> (title, summary)


@dataclass
class ContentSet:
    """Everything the files hold, merged over languages (the first language that names a
    topic or item decides its position and kind)."""

    topics: dict[str, FileTopic] = field(default_factory=dict)
    items: dict[str, FileItem] = field(default_factory=dict)
    problems: list[ContentProblem] = field(default_factory=list)


def _text(value: Any, limit: int | None = None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if limit is not None and len(value) > limit:
        return None
    return value


def _sources(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return None
    return "\n".join(s.strip() for s in value if s.strip())


def _item_texts(raw: dict[str, Any], kind: str) -> dict[str, Any] | str:
    """The item_texts columns of one item in one file, or the reason it is refused."""
    title = _text(raw.get("title"), ITEM_TITLE_MAX)
    if title is None:
        return f"title missing or longer than {ITEM_TITLE_MAX} characters"
    sources = _sources(raw.get("sources"))
    if sources is None:
        return "sources must be a list of strings"
    if kind == "article":
        body = _text(raw.get("body"))
        if body is None:
            return "an article needs a body"
        return {"title": title, "body": body, "options": "", "correct_option": None, "sources": sources}
    options = raw.get("options")
    if (
        not isinstance(options, list)
        or not OPTIONS_MIN <= len(options) <= OPTIONS_MAX
        or not all(_text(o, OPTION_LIMIT) for o in options)
        or any("\n" in o for o in options)
    ):
        return f"a quiz needs {OPTIONS_MIN}-{OPTIONS_MAX} options of one line, at most {OPTION_LIMIT} characters"
    correct = raw.get("correct")
    if not isinstance(correct, int) or isinstance(correct, bool) or not 0 <= correct < len(options):
        return "correct must be the 0-based index of an option"
    explanation = raw.get("explanation", "")
    if not isinstance(explanation, str):
        return "explanation must be a string"
    return {
        "title": title,
        "body": explanation.strip(),
        "options": "\n".join(o.strip() for o in options),
        "correct_option": correct,
        "sources": sources,
    }


def load_content(locales_dir: Path, languages: Sequence[str] = LANGUAGES) -> ContentSet:
    """Read every ``<locales_dir>/<lang>/awareness/*.toml``. Never raises for bad content:
    a file or item that cannot be used is left out and listed in ``problems``."""
    content = ContentSet()
    for language in languages:
        folder = locales_dir / language / CONTENT_DIRNAME
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else ():
            where = f"{language}/{CONTENT_DIRNAME}/{path.name}"
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                content.problems.append(ContentProblem(where, f"unreadable: {type(exc).__name__}"))
                continue
            _merge_file(content, language, where, data)
    return content


def _merge_file(content: ContentSet, language: str, where: str, data: dict[str, Any]) -> None:
    topic_raw = data.get("topic")
    if not isinstance(topic_raw, dict):
        content.problems.append(ContentProblem(where, "no [topic] table"))
        return
    code = topic_raw.get("code")
    title = _text(topic_raw.get("title"), TOPIC_TITLE_MAX)
    position = topic_raw.get("position", 0)
    if not isinstance(code, str) or not TOPIC_CODE.match(code):
        content.problems.append(ContentProblem(where, "topic code must match [a-z0-9_]{1,32}"))
        return
    if title is None or not isinstance(position, int):
        content.problems.append(
            ContentProblem(where, f"topic needs a title of at most {TOPIC_TITLE_MAX} characters and an integer position")
        )
        return
    summary = topic_raw.get("summary", "")
    topic = content.topics.setdefault(code, FileTopic(code, position))
    topic.texts[language] = (title, summary.strip() if isinstance(summary, str) else "")
    for raw in data.get("item", []) or []:
        if not isinstance(raw, dict):
            content.problems.append(ContentProblem(where, "an [[item]] is not a table"))
            continue
        item_code = raw.get("code")
        item_where = f"{where} {item_code!r}"
        if not isinstance(item_code, str) or not ITEM_CODE.match(item_code):
            content.problems.append(ContentProblem(item_where, "item code must match [a-z0-9_-]{1,64}"))
            continue
        kind = raw.get("kind", "article")
        item_position = raw.get("position", 0)
        if kind not in ("article", "quiz") or not isinstance(item_position, int):
            content.problems.append(ContentProblem(item_where, "kind must be article or quiz, position an integer"))
            continue
        texts = _item_texts(raw, kind)
        if isinstance(texts, str):
            content.problems.append(ContentProblem(item_where, texts))
            continue
        item = content.items.get(item_code)
        if item is None:
            item = content.items[item_code] = FileItem(item_code, code, kind, item_position)
        elif item.topic != code or item.kind != kind:
            content.problems.append(
                ContentProblem(item_where, "the same code is another topic's or kind's in another file")
            )
            continue
        item.texts[language] = texts


# ---- copying the files into the database ------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_library` changed (counts of rows), and the problems of the files."""

    topics_written: int = 0
    items_written: int = 0
    unpublished: int = 0
    hidden: int = 0
    skipped_console: int = 0
    problems: tuple[ContentProblem, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.topics_written or self.items_written or self.unpublished or self.hidden)


async def sync_library(
    sessionmaker: async_sessionmaker[AsyncSession],
    locales_dir: Path,
    *,
    today: dt.date | None = None,
    content: ContentSet | None = None,
) -> SyncResult:
    """Bring the library tables in line with the files (see the module's docstring), in one
    write transaction. Rows of origin "console" are left as they are. Returns what changed;
    problems of the files are logged (file and reason: content, never user data)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    content = content if content is not None else load_content(locales_dir)
    for problem in content.problems:
        log.warning("awareness content skipped: %s: %s", problem.where, problem.reason)
    async with write_transaction(sessionmaker) as session:
        result = await _sync(session, content, today)
    if result.changed:
        log.info(
            "awareness library synced: %d topics and %d items written, %d unpublished, %d hidden",
            result.topics_written, result.items_written, result.unpublished, result.hidden,
        )
    return result


async def _sync(session: AsyncSession, content: ContentSet, today: dt.date) -> SyncResult:
    topics = {t.code: t for t in (await session.execute(select(AwarenessTopic))).scalars()}
    topic_texts = {
        (t.topic, t.language): t for t in (await session.execute(select(AwarenessTopicText))).scalars()
    }
    items = {i.code: i for i in (await session.execute(select(AwarenessItem))).scalars()}
    item_texts = {
        (t.item_id, t.language): t for t in (await session.execute(select(AwarenessItemText))).scalars()
    }
    topics_written = items_written = unpublished = hidden = skipped = 0

    for code, file_topic in content.topics.items():
        row = topics.get(code)
        if row is not None and row.origin != "file":
            skipped += 1
            continue
        changed = False
        if row is None:
            row = topics[code] = AwarenessTopic(code=code, position=file_topic.position, origin="file", hidden=False)
            session.add(row)
            changed = True
        elif row.position != file_topic.position or row.hidden:
            row.position, row.hidden = file_topic.position, False
            changed = True
        for language, (title, summary) in file_topic.texts.items():
            text = topic_texts.get((code, language))
            if text is None:
                session.add(AwarenessTopicText(topic=code, language=language, title=title, summary=summary))
                changed = True
            elif (text.title, text.summary) != (title, summary):
                text.title, text.summary = title, summary
                changed = True
        topics_written += changed
    await session.flush()

    for code, row in topics.items():
        if row.origin == "file" and code not in content.topics and not row.hidden:
            row.hidden = True
            hidden += 1

    for code, file_item in content.items.items():
        row = items.get(code)
        if row is not None and row.origin != "file":
            skipped += 1
            continue
        if file_item.topic not in topics:
            continue  # its topic's file was refused (already a problem)
        changed = False
        if row is None:
            row = items[code] = AwarenessItem(
                code=code, topic=file_item.topic, kind=file_item.kind, position=file_item.position,
                origin="file", published=True, updated_on=today,
            )
            session.add(row)
            await session.flush()  # its id, for the texts
            changed = True
        elif (row.topic, row.kind, row.position, row.published) != (
            file_item.topic, file_item.kind, file_item.position, True
        ):
            row.topic, row.kind, row.position, row.published = (
                file_item.topic, file_item.kind, file_item.position, True
            )
            changed = True
        for language, values in file_item.texts.items():
            text = item_texts.get((row.id, language))
            if text is None:
                session.add(AwarenessItemText(item_id=row.id, language=language, **values))
                changed = True
            elif any(getattr(text, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(text, name, value)
                changed = True
        if changed:
            row.updated_on = today
            items_written += 1

    for code, row in items.items():
        if row.origin == "file" and code not in content.items and row.published:
            row.published = False
            row.updated_on = today
            unpublished += 1
    await session.flush()
    return SyncResult(
        topics_written, items_written, unpublished, hidden, skipped, tuple(content.problems)
    )


# ---- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicView:
    code: str
    title: str
    summary: str
    language: str  # the language shown (the other one when this one has no text)


@dataclass(frozen=True)
class ArticleRef:
    id: int
    title: str


@dataclass(frozen=True)
class Page:
    """One page of a list: ``entries`` on page ``number`` (0-based) of ``count`` pages."""

    entries: tuple[Any, ...]
    number: int
    count: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.number > 0

    @property
    def has_next(self) -> bool:
        return self.number + 1 < self.count


def paginate(entries: Sequence[Any], page: int, per_page: int) -> Page:
    """``page`` clamped to the pages that exist (an old button may point past the end)."""
    count = max(1, -(-len(entries) // per_page))
    number = min(max(0, page), count - 1)
    start = number * per_page
    return Page(tuple(entries[start:start + per_page]), number, count, len(entries))


@dataclass(frozen=True)
class ItemView:
    """An item in one language. Quizzes: ``title`` is the question, ``body`` the
    explanation, ``options`` the answers, ``correct`` the right one's index."""

    id: int
    code: str
    topic: str
    kind: str
    position: int
    language: str
    title: str
    body: str
    options: tuple[str, ...]
    correct: int | None
    sources: tuple[str, ...]


def _preferred(texts: dict[str, Any], language: str) -> tuple[str, Any] | None:
    """The text in ``language``, else in the first other language that has one."""
    for candidate in (language, *(code for code in LANGUAGES if code != language), *sorted(texts)):
        if candidate in texts:
            return candidate, texts[candidate]
    return None


class Library:
    """Reads of the library (published items, visible topics). Inside an update the reads
    go through the update's read session."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        uow = active_uow()
        if uow is not None:
            yield await uow.read()
            return
        async with self._sessionmaker() as session:
            yield session

    async def topics(self, language: str) -> list[TopicView]:
        """Visible topics with at least one published item, by position then code."""
        async with self._session() as session:
            with_items = (
                select(AwarenessItem.topic)
                .where(AwarenessItem.published.is_(True))
                .group_by(AwarenessItem.topic)
            )
            codes = list(
                (
                    await session.execute(
                        select(AwarenessTopic.code)
                        .where(AwarenessTopic.hidden.is_(False), AwarenessTopic.code.in_(with_items))
                        .order_by(AwarenessTopic.position, AwarenessTopic.code)
                    )
                ).scalars()
            )
            texts = await self._topic_texts(session, codes)
        return [view for code in codes if (view := _topic_view(code, texts.get(code, {}), language))]

    async def topic(self, code: str, language: str) -> TopicView | None:
        async with self._session() as session:
            hidden = (
                await session.execute(select(AwarenessTopic.hidden).where(AwarenessTopic.code == code))
            ).scalar_one_or_none()
            if hidden is None or hidden:
                return None
            texts = await self._topic_texts(session, [code])
        return _topic_view(code, texts.get(code, {}), language)

    @staticmethod
    async def _topic_texts(session: AsyncSession, codes: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
        if not codes:
            return {}
        rows = await session.execute(
            select(AwarenessTopicText.topic, AwarenessTopicText.language, AwarenessTopicText.title,
                   AwarenessTopicText.summary).where(AwarenessTopicText.topic.in_(codes))
        )
        texts: dict[str, dict[str, tuple[str, str]]] = {}
        for topic, language, title, summary in rows:
            texts.setdefault(topic, {})[language] = (title, summary)
        return texts

    async def _item_ids(self, session: AsyncSession, topic: str, kind: str) -> list[int]:
        return list(
            (
                await session.execute(
                    select(AwarenessItem.id)
                    .where(
                        AwarenessItem.topic == topic,
                        AwarenessItem.kind == kind,
                        AwarenessItem.published.is_(True),
                    )
                    .order_by(AwarenessItem.position, AwarenessItem.code)
                )
            ).scalars()
        )

    async def articles(self, topic: str, language: str, page: int, per_page: int) -> Page:
        """A page of the topic's published articles (:class:`ArticleRef`, by position)."""
        async with self._session() as session:
            ids = await self._item_ids(session, topic, "article")
            shown = paginate(ids, page, per_page)
            titles = await self._titles(session, list(shown.entries), language)
        refs = tuple(ArticleRef(i, titles[i]) for i in shown.entries if i in titles)
        return Page(refs, shown.number, shown.count, shown.total)

    async def article_ids(self, topic: str) -> list[int]:
        """The topic's published articles in order (for "next" and "back to its page")."""
        async with self._session() as session:
            return await self._item_ids(session, topic, "article")

    async def quiz_ids(self, topic: str) -> list[int]:
        """The topic's published quiz questions in order."""
        async with self._session() as session:
            return await self._item_ids(session, topic, "quiz")

    async def has_quizzes(self, topic: str) -> bool:
        async with self._session() as session:
            found = await session.execute(
                select(func.count()).select_from(AwarenessItem).where(
                    AwarenessItem.topic == topic,
                    AwarenessItem.kind == "quiz",
                    AwarenessItem.published.is_(True),
                )
            )
            return bool(found.scalar())

    @staticmethod
    async def _titles(session: AsyncSession, ids: list[int], language: str) -> dict[int, str]:
        if not ids:
            return {}
        rows = await session.execute(
            select(AwarenessItemText.item_id, AwarenessItemText.language, AwarenessItemText.title)
            .where(AwarenessItemText.item_id.in_(ids))
        )
        by_item: dict[int, dict[str, str]] = {}
        for item_id, lang, title in rows:
            by_item.setdefault(item_id, {})[lang] = title
        titles = {}
        for item_id, texts in by_item.items():
            chosen = _preferred(texts, language)
            if chosen is not None:
                titles[item_id] = chosen[1]
        return titles

    async def item(self, item_id: int, language: str) -> ItemView | None:
        """A published item in ``language`` (or the other language); None if unknown,
        unpublished, or its topic is hidden."""
        return await self._item(AwarenessItem.id == item_id, language)

    async def item_by_code(self, code: str, language: str) -> ItemView | None:
        return await self._item(AwarenessItem.code == code, language)

    async def _item(self, where: Any, language: str) -> ItemView | None:
        async with self._session() as session:
            row = (
                await session.execute(
                    select(AwarenessItem)
                    .join(AwarenessTopic, AwarenessTopic.code == AwarenessItem.topic)
                    .where(where, AwarenessItem.published.is_(True), AwarenessTopic.hidden.is_(False))
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            texts = {
                t.language: t
                for t in (
                    await session.execute(select(AwarenessItemText).where(AwarenessItemText.item_id == row.id))
                ).scalars()
            }
        chosen = _preferred(texts, language)
        if chosen is None:
            return None
        shown, text = chosen
        return ItemView(
            id=row.id,
            code=row.code,
            topic=row.topic,
            kind=row.kind,
            position=row.position,
            language=shown,
            title=text.title,
            body=text.body or "",
            options=tuple(o for o in (text.options or "").split("\n") if o.strip()),
            correct=text.correct_option,
            sources=tuple(s for s in (text.sources or "").split("\n") if s.strip()),
        )


def _topic_view(code: str, texts: dict[str, tuple[str, str]], language: str) -> TopicView | None:
    chosen = _preferred(texts, language)
    if chosen is None:
        return None
    shown, (title, summary) = chosen
    return TopicView(code, title, summary, shown)


# ---- what Telegram is sent --------------------------------------------------------------


def _cut_index(text: str, units: int) -> int:
    """The longest prefix of ``text`` of at most ``units`` UTF-16 code units (never half
    of a surrogate pair), as a str index."""
    count = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if count + width > units:
            return index
        count += width
    return len(text)


def _clip_entities(entities: Iterable[MessageEntity], end: int) -> list[MessageEntity]:
    """Entities cut to the first ``end`` UTF-16 units (empty ones dropped)."""
    clipped = []
    for entity in entities:
        if entity.offset >= end:
            continue
        length = min(entity.length, end - entity.offset)
        if length > 0:
            clipped.append(entity if length == entity.length else entity.model_copy(update={"length": length}))
    return clipped


def _shift(entities: Iterable[MessageEntity], by: int) -> list[MessageEntity]:
    return [e.model_copy(update={"offset": e.offset + by}) for e in entities]


def clip_formatted(formatted: Formatted, limit: int, ellipsis: str = ELLIPSIS) -> Formatted:
    """``formatted`` within ``limit`` UTF-16 units: unchanged if it fits, else cut (at a
    space near the end when there is one), with ``ellipsis`` after it and the entities cut
    to what is left."""
    if formatted.length <= limit:
        return formatted
    room = max(0, limit - utf16_len(ellipsis))
    index = _cut_index(formatted.text, room)
    space = formatted.text.rfind(" ", 0, index)
    if space > index * 0.8:
        index = space
    kept = formatted.text[:index].rstrip()
    end = utf16_len(kept)
    return Formatted(kept + ellipsis, tuple(_clip_entities(formatted.entities, end)), formatted.bad_links)


def article_message(
    item: ItemView, *, sources_label: str, shortened_note: str, limit: int = TEXT_LIMIT
) -> Formatted:
    """An article as one message: the title in bold, the body (markup), and the sources
    under ``sources_label``. Never longer than ``limit`` UTF-16 units: a body too long (an
    admin's edit) is cut and ``shortened_note`` added; very long sources are dropped first
    if even a short body would not fit."""
    title = item.title.strip()[:ITEM_TITLE_MAX]
    header = title + "\n\n"
    title_entity = MessageEntity(type="bold", offset=0, length=utf16_len(title))
    body = parse_markup(item.body)
    footer = ""
    if item.sources:
        footer = "\n\n" + sources_label + "\n" + "\n".join(f"• {source}" for source in item.sources)
    total = utf16_len(header) + body.length + utf16_len(footer)
    note = ""
    if total > limit:
        note = "\n\n" + shortened_note
        fixed = utf16_len(header) + utf16_len(note)
        if fixed + utf16_len(footer) + 200 > limit:
            footer = ""  # sources longer than the message itself: keep the text
        body = clip_formatted(body, limit - fixed - utf16_len(footer))
    text = header + body.text + footer + note
    entities = [title_entity, *_shift(body.entities, utf16_len(header))]
    if note:
        entities.append(
            MessageEntity(type="italic", offset=utf16_len(text) - utf16_len(shortened_note),
                          length=utf16_len(shortened_note))
        )
    if utf16_len(text) > limit:  # a pathological title and note: cut the whole message
        clipped = clip_formatted(Formatted(text, tuple(entities)), limit)
        return clipped
    return Formatted(text, tuple(entities), body.bad_links)


@dataclass(frozen=True)
class QuizPollSpec:
    """What ``sendPoll`` is given for a quiz, within Telegram's limits."""

    question: str
    options: tuple[str, ...]
    correct: int
    explanation: Formatted | None


def _clip_plain(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line
    if utf16_len(text) <= limit:
        return text
    return text[: _cut_index(text, limit - utf16_len(ELLIPSIS))].rstrip() + ELLIPSIS


def quiz_poll(item: ItemView) -> QuizPollSpec | None:
    """The quiz poll of a quiz item, cut to Telegram's limits (question 300, options 100,
    explanation 200 with at most two line feeds); None when it cannot be a quiz at all
    (fewer than 2 options, no valid right answer)."""
    if item.kind != "quiz" or item.correct is None:
        return None
    options = tuple(_clip_plain(o, OPTION_LIMIT) for o in item.options if o.strip())
    if len(options) != len(item.options):
        return None
    if len(options) > OPTIONS_MAX:
        if item.correct >= OPTIONS_MAX:
            return None
        options = options[:OPTIONS_MAX]
    if len(options) < OPTIONS_MIN or not 0 <= item.correct < len(options):
        return None
    question = _clip_plain(item.title, QUESTION_LIMIT)
    if not question:
        return None
    explanation = None
    if item.body.strip():
        parsed = parse_markup(item.body)
        # Line feeds past the second become spaces (same length: entities stay in place).
        text, feeds = [], 0
        for char in parsed.text:
            if char == "\n":
                feeds += 1
                if feeds > EXPLANATION_LINE_FEEDS:
                    char = " "
            text.append(char)
        explanation = clip_formatted(Formatted("".join(text), parsed.entities), EXPLANATION_LIMIT)
    return QuizPollSpec(question, options, item.correct, explanation)
