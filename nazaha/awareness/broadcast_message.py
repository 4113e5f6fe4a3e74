"""What one broadcast looks like in Telegram, for one language: the text (or the photo's
caption) with its entities, and the buttons under it: a survey's options, if it carries one,
and always "Unsubscribe". The sender sends exactly this; the console's preview shows exactly
this (same text, entities, labels).

A test send ("send a test to me" in the console) carries the same labels with *test* data
(``test=True``): ``aw:tu`` for Unsubscribe, ``aw:ts:<survey code>:<option>`` for a survey's
options. The bot answers them with "this was a test" and changes nothing, so a test counts
no answer and unsubscribes no one. It comes after a message saying it is a test
(:func:`label_for_test`), and, until an administrator approved it, that it is not approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from babel.support import NullTranslations, Translations

from nazaha.awareness.markup import CAPTION_LIMIT, TEXT_LIMIT, Formatted, parse_markup

__all__ = [
    "UNSUBSCRIBE_DATA", "SURVEY_PREFIX", "TEST_UNSUBSCRIBE_DATA", "TEST_SURVEY_PREFIX",
    "BroadcastMessage", "build_message", "survey_data", "survey_data_for_test", "label_for_test",
    "translator",
]

UNSUBSCRIBE_DATA = "aw:unsub"  # callback data of the Unsubscribe button (handled by the bot)
SURVEY_PREFIX = "sv"  # callback data of a survey option: sv:<survey code>:<option index>
TEST_UNSUBSCRIBE_DATA = "aw:tu"  # Unsubscribe under a test send: does nothing
TEST_SURVEY_PREFIX = "aw:ts"  # a survey option under a test send: aw:ts:<code>:<option>, not counted
_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"


def N_(message: str) -> str:  # noqa: N802 - Babel's marker for "extract, translate later"
    return message


UNSUBSCRIBE_LABEL = N_("Unsubscribe")
TEST_LABEL = N_("TEST of a broadcast draft that is not approved — only you received this")
APPROVED_TEST_LABEL = N_("TEST of a broadcast — only you received this")
# Statuses in which a broadcast has not been approved (yet, or any more after a send-back).
NOT_APPROVED = frozenset({"draft", "submitted", "rejected"})


@lru_cache(maxsize=4)
def translator(language: str) -> NullTranslations:
    """The compiled catalog of ``language`` ("ar" or "en"), for labels outside an update."""
    return Translations.load(str(_LOCALES_DIR), [language], domain="nazaha")


def survey_data(code: str, option: int) -> str:
    return f"{SURVEY_PREFIX}:{code}:{option}"


def survey_data_for_test(code: str, option: int) -> str:
    """At most 6 + 16 + 1 + 1 bytes (survey codes have at most 16 characters, options 8)."""
    return f"{TEST_SURVEY_PREFIX}:{code}:{int(option)}"


def label_for_test(language: str, status: str | None) -> str:
    """The message sent before a test send, in ``language`` ("ar" or "en"): "… draft that
    is not approved …" while the broadcast's ``status`` is draft, submitted or rejected (or
    unknown: None), plainly "TEST of a broadcast" once approved (approved, paused, sending,
    done, cancelled)."""
    label = TEST_LABEL if status is None or status in NOT_APPROVED else APPROVED_TEST_LABEL
    return translator(language).ugettext(label)


@dataclass(frozen=True)
class BroadcastMessage:
    """``formatted`` is the text, or the caption when ``has_image``; ``buttons`` rows of
    (label, callback data), top to bottom. ``too_long``: the parsed text exceeds what
    Telegram accepts (4096 for a text, 1024 for a caption): the console refuses to submit it."""

    formatted: Formatted
    has_image: bool
    buttons: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def too_long(self) -> bool:
        return self.formatted.length > (CAPTION_LIMIT if self.has_image else TEXT_LIMIT)

    def reply_markup(self) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text=label, callback_data=data) for label, data in row]
                for row in self.buttons
            ]
        )


def build_message(
    body: str,
    language: str,
    *,
    has_image: bool = False,
    survey_code: str | None = None,
    survey_options: tuple[str, ...] = (),
    test: bool = False,
) -> BroadcastMessage:
    """The message of a broadcast version: ``body`` in the awareness markup, ``language``
    the subscriber's ("ar"/"en"), survey options (labels in that language) one per row.
    ``test``: the same message with test data under its buttons (see the module doc)."""
    rows: list[tuple[tuple[str, str], ...]] = []
    answer = survey_data_for_test if test else survey_data
    if survey_code:
        rows.extend(
            ((label[:64], answer(survey_code, index)),)
            for index, label in enumerate(survey_options)
        )
    unsubscribe = TEST_UNSUBSCRIBE_DATA if test else UNSUBSCRIBE_DATA
    rows.append(((translator(language).ugettext(UNSUBSCRIBE_LABEL), unsubscribe),))
    return BroadcastMessage(parse_markup(body), has_image, tuple(rows))
