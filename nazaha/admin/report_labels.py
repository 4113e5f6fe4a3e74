"""The bot's labels for a report's codes (fields, choices, evidence kinds), in the console's
current language.

They are the bot's own strings (nazaha.handlers.labels, aiogram lazy gettext) from the same
catalogs, translated here through an aiogram ``I18n`` of our own set to the console's locale,
so that a caseworker reads exactly the words the reporter was shown.
"""

from __future__ import annotations

from functools import cache

from nazaha.admin import i18n

__all__ = ["answer_text", "evidence_kind_label", "field_label"]


@cache
def _bot_i18n():
    from nazaha.bot.app import build_i18n

    return build_i18n()


def _text(lazy) -> str:
    translator = _bot_i18n()
    with translator.context(), translator.use_locale(i18n.current_locale()):
        return str(lazy)


def field_label(field: str) -> str:
    """What the reporter's form called ``field`` ("description" -> "Description")."""
    from nazaha.handlers.labels import FIELD_LABELS

    lazy = FIELD_LABELS.get(field)
    return _text(lazy) if lazy is not None else field


def answer_text(field: str, value: str) -> str:
    """A choice code as the label the reporter chose; free text unchanged."""
    from nazaha.handlers.labels import CHOICE_LABELS

    lazy = CHOICE_LABELS.get(field, {}).get(value)
    return _text(lazy) if lazy is not None else value


def evidence_kind_label(kind: str) -> str:
    from nazaha.handlers.labels import EVIDENCE_KIND_LABELS

    lazy = EVIDENCE_KIND_LABELS.get(kind)
    return _text(lazy) if lazy is not None else kind
