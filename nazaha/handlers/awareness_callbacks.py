"""Callback data of the awareness screens (Learn, subscriptions, quizzes, surveys).

Formats (ASCII, at most 64 bytes: topic codes are at most 32 characters, item ids and
pages are numbers, survey codes at most 16 characters)::

    aw:home:<page>               the list of topics
    aw:top:<topic>:<page>        a topic: its summary and a page of its articles
    aw:it:<item id>              an article
    aw:quiz:<topic>:<n>          send the topic's n-th quiz question (0-based, wraps)
    aw:subs:<page>               the subscriptions screen
    aw:on:<where>:<page>:<ref>   add a topic; where = s (subscriptions screen, ref = topic),
                                 t (topic screen, ref = topic), i (article, ref = item id):
                                 the screen shown again afterwards
    aw:off:<where>:<page>:<ref>  remove a topic (the button showed it as chosen)
    aw:ok:<where>:<page>:<ref>   add, after "yes, subscribe" on the consent screen
    aw:tg:<where>:<page>:<ref>   a button of an older version, which did not say whether it
                                 adds or removes: treated as out of date
    aw:all                       subscribe to every topic (subscriptions screen)
    aw:none                      unsubscribe from everything (subscriptions screen)
    aw:unsub                     "Unsubscribe" under a broadcast (handled in any state)
    aw:tu                        "Unsubscribe" under a test send (any state): does nothing
    aw:ts:<code>:<option>        a survey answer under a test send (any state): not counted
    aw:svs                       the open surveys
    aw:sv:<code>                 one survey's question and options
    sv:<code>:<option>           an answer (also under broadcasts; handled in any state)

Anything else parses to None ("this button has expired").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nazaha.awareness.broadcast_message import (
    SURVEY_PREFIX,
    TEST_SURVEY_PREFIX,
    TEST_UNSUBSCRIBE_DATA,
    UNSUBSCRIBE_DATA,
)

PREFIX = "aw"
_TOPIC = re.compile(r"^[a-z0-9_]{1,32}$")
_SURVEY = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
MAX_PAGE = 999
WHERE = ("s", "t", "i")
# The toggles' kinds and what each asks for (None: an older button that did not say).
_TOGGLES = {"on": True, "ok": True, "off": False, "tg": None}


@dataclass(frozen=True)
class Home:
    page: int = 0


@dataclass(frozen=True)
class Topic:
    code: str
    page: int = 0


@dataclass(frozen=True)
class Article:
    item_id: int


@dataclass(frozen=True)
class Quiz:
    topic: str
    index: int = 0


@dataclass(frozen=True)
class Subscriptions:
    page: int = 0


@dataclass(frozen=True)
class Toggle:
    """Add (``subscribe`` True) or remove (False) a topic from the screen ``where`` (its
    ``page``); ``ref`` is a topic code (s, t) or an item id (i). ``subscribe`` is None for a
    button of an older version that did not say which (it acts on nothing). ``confirmed``:
    "yes, subscribe" on the consent screen (adds)."""

    where: str
    page: int
    ref: str
    subscribe: bool | None
    confirmed: bool = False


@dataclass(frozen=True)
class SubscribeAll:
    pass


@dataclass(frozen=True)
class UnsubscribeAll:
    pass


@dataclass(frozen=True)
class Unsubscribe:
    """The Unsubscribe button under a broadcast."""


@dataclass(frozen=True)
class TestButton:
    """A button under a test send (a console member's "send a test to me"): answered with
    "this was a test", nothing counted or changed."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class Surveys:
    pass


@dataclass(frozen=True)
class SurveyScreen:
    code: str


@dataclass(frozen=True)
class SurveyAnswer:
    code: str
    option: int


Parsed = (
    Home | Topic | Article | Quiz | Subscriptions | Toggle | SubscribeAll | UnsubscribeAll
    | Unsubscribe | TestButton | Surveys | SurveyScreen | SurveyAnswer
)


def _page(page: int) -> int:
    return min(max(0, page), MAX_PAGE)


def home(page: int = 0) -> str:
    return f"{PREFIX}:home:{_page(page)}"


def topic(code: str, page: int = 0) -> str:
    return f"{PREFIX}:top:{code}:{_page(page)}"


def article(item_id: int) -> str:
    return f"{PREFIX}:it:{int(item_id)}"


def quiz(code: str, index: int = 0) -> str:
    return f"{PREFIX}:quiz:{code}:{_page(index)}"


def subscriptions(page: int = 0) -> str:
    return f"{PREFIX}:subs:{_page(page)}"


def toggle(where: str, page: int, ref: str | int, *, subscribe: bool, confirmed: bool = False) -> str:
    """The button that adds (``subscribe``) or removes a topic: it says which, so that a
    button on an old screen never does the opposite of what it showed."""
    assert where in WHERE and (subscribe or not confirmed)
    kind = "ok" if confirmed else ("on" if subscribe else "off")
    return f"{PREFIX}:{kind}:{where}:{_page(page)}:{ref}"


def subscribe_all() -> str:
    return f"{PREFIX}:all"


def unsubscribe_all() -> str:
    return f"{PREFIX}:none"


def surveys() -> str:
    return f"{PREFIX}:svs"


def survey(code: str) -> str:
    return f"{PREFIX}:sv:{code}"


def survey_answer(code: str, option: int) -> str:
    return f"{SURVEY_PREFIX}:{code}:{int(option)}"


def reduces_subscription(parsed: Parsed | None) -> bool:
    """A button that only ever removes topics (or the whole subscription): it works in any
    state, like /stop."""
    return isinstance(parsed, (Unsubscribe, UnsubscribeAll)) or (
        isinstance(parsed, Toggle) and parsed.subscribe is False
    )


def is_awareness(data: str | None) -> bool:
    """Data of an awareness button (``aw:`` or ``sv:``), valid or not."""
    return bool(data) and (data.startswith(PREFIX + ":") or data.startswith(SURVEY_PREFIX + ":"))


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def parse(data: str | None) -> Parsed | None:
    if not data or len(data.encode("utf-8")) > 64:
        return None
    if data == UNSUBSCRIBE_DATA:
        return Unsubscribe()
    if data == TEST_UNSUBSCRIBE_DATA:
        return TestButton()
    parts = data.split(":")
    if data.startswith(TEST_SURVEY_PREFIX + ":"):
        valid = len(parts) == 4 and _SURVEY.match(parts[2]) and _number(parts[3]) is not None
        return TestButton() if valid else None
    if parts[0] == SURVEY_PREFIX:
        if len(parts) == 3 and _SURVEY.match(parts[1]) and (option := _number(parts[2])) is not None:
            return SurveyAnswer(parts[1], option)
        return None
    if parts[0] != PREFIX or len(parts) < 2:
        return None
    kind, args = parts[1], parts[2:]
    if kind == "home" and len(args) == 1 and (page := _number(args[0])) is not None:
        return Home(page)
    if kind == "top" and len(args) == 2 and _TOPIC.match(args[0]) and (page := _number(args[1])) is not None:
        return Topic(args[0], page)
    if kind == "it" and len(args) == 1 and (item_id := _number(args[0])) is not None:
        return Article(item_id)
    if kind == "quiz" and len(args) == 2 and _TOPIC.match(args[0]) and (index := _number(args[1])) is not None:
        return Quiz(args[0], index)
    if kind == "subs" and len(args) == 1 and (page := _number(args[0])) is not None:
        return Subscriptions(page)
    if kind in _TOGGLES and len(args) == 3 and args[0] in WHERE and (page := _number(args[1])) is not None:
        ref = args[2]
        valid = _number(ref) is not None if args[0] == "i" else bool(_TOPIC.match(ref))
        return Toggle(args[0], page, ref, _TOGGLES[kind], confirmed=kind == "ok") if valid else None
    if kind == "all" and not args:
        return SubscribeAll()
    if kind == "none" and not args:
        return UnsubscribeAll()
    if kind == "svs" and not args:
        return Surveys()
    if kind == "sv" and len(args) == 1 and _SURVEY.match(args[0]):
        return SurveyScreen(args[0])
    return None
