"""The console's languages: the project's gettext catalogs (Arabic first, English), chosen
per request and read by the templates through Jinja2's i18n extension (new-style gettext:
``{{ _("Hello %(name)s", name=n) }}``, autoescaped)."""

from __future__ import annotations

import contextvars
from functools import cache
from pathlib import Path

from babel.support import NullTranslations, Translations

LOCALES = ("ar", "en")
DEFAULT_LOCALE = "ar"
RTL = frozenset({"ar"})
_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"

_current: contextvars.ContextVar[str] = contextvars.ContextVar("console_locale", default=DEFAULT_LOCALE)


@cache
def translations(locale: str) -> NullTranslations:
    return Translations.load(str(_LOCALES_DIR), [locale], domain="nazaha")


def set_locale(locale: str) -> None:
    _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)


def current_locale() -> str:
    return _current.get()


def gettext(message: str, **variables: object) -> str:
    text = translations(_current.get()).ugettext(message)
    return text % variables if variables else text


def pgettext(context: str, message: str, **variables: object) -> str:
    """``gettext`` for a msgid that needs its own words in one place (``msgctxt``), e.g. the
    status "Received" and the column "Received"."""
    text = translations(_current.get()).upgettext(context, message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = translations(_current.get()).ungettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def pick_locale(requested: str | None, accept_language: str | None) -> str:
    """An explicit choice, else the browser's first supported language, else Arabic."""
    if requested in LOCALES:
        return requested
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LOCALES:
            return tag
    return DEFAULT_LOCALE


def isolate(text: object) -> str:
    """Wrap a left-to-right run (a designation, a date, a number, a file name) in
    FIRST STRONG ISOLATE … POP DIRECTIONAL ISOLATE so it reads correctly inside Arabic."""
    return f"\u2068{text}\u2069"


class lazy_gettext(str):  # noqa: N801 - reads like the gettext function it defers
    """A msgid translated when rendered (``str()`` or in a template), in the locale of the
    request being answered."""

    def __str__(self) -> str:
        return gettext(str.__str__(self))

    def __html__(self) -> str:
        from markupsafe import escape

        return str(escape(str(self)))
