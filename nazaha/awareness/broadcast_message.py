"""What one broadcast looks like in Telegram, for one language: the text (or the photo's
caption) with its entities, and the buttons under it: a survey's options, if it carries one,
and always "Unsubscribe". The sender sends exactly this; the console's preview shows exactly
this (same text, entities, labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from babel.support import NullTranslations, Translations

from nazaha.awareness.markup import CAPTION_LIMIT, TEXT_LIMIT, Formatted, parse_markup

__all__ = [
    "UNSUBSCRIBE_DATA", "SURVEY_PREFIX", "BroadcastMessage", "build_message", "survey_data",
    "translator",
]

UNSUBSCRIBE_DATA = "aw:unsub"  # callback data of the Unsubscribe button (handled by the bot)
SURVEY_PREFIX = "sv"  # callback data of a survey option: sv:<survey code>:<option index>
_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"


def N_(message: str) -> str:  # noqa: N802 - Babel's marker for "extract, translate later"
    return message


UNSUBSCRIBE_LABEL = N_("Unsubscribe")


@lru_cache(maxsize=4)
def translator(language: str) -> NullTranslations:
    """The compiled catalog of ``language`` ("ar" or "en"), for labels outside an update."""
    return Translations.load(str(_LOCALES_DIR), [language], domain="nazaha")


def survey_data(code: str, option: int) -> str:
    return f"{SURVEY_PREFIX}:{code}:{option}"


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
) -> BroadcastMessage:
    """The message of a broadcast version: ``body`` in the awareness markup, ``language``
    the subscriber's ("ar"/"en"), survey options (labels in that language) one per row."""
    rows: list[tuple[tuple[str, str], ...]] = []
    if survey_code:
        rows.extend(
            ((label[:64], survey_data(survey_code, index)),)
            for index, label in enumerate(survey_options)
        )
    rows.append(((translator(language).ugettext(UNSUBSCRIBE_LABEL), UNSUBSCRIBE_DATA),))
    return BroadcastMessage(parse_markup(body), has_image, tuple(rows))
