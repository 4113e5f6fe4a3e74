"""Catalogs: complete in Arabic and English, compiled, and in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from nazaha.bot.app import LOCALES_DIR, build_i18n

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("ar", "en")
PLACEHOLDER_NAMES = ("{count}", "{minimum}", "{limit}", "{field}", "{receipt}", "{contact}")


def load_po(locale: str):
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "nazaha.po").open("rb") as f:
        return read_po(f, locale=locale)


def extracted_ids() -> set[str]:
    """Messages in the code, extracted as `make catalogs` does."""
    keywords = {**DEFAULT_KEYWORDS, "__": None, "lazy_gettext": None}
    found = extract_from_dir(
        ROOT / "nazaha", method_map=[("**.py", "python")], keywords=keywords
    )
    return {m if isinstance(m, str) else m[0] for _, _, m, _, _ in found}


def test_every_message_in_the_code_is_in_both_catalogs():
    in_code = extracted_ids()
    assert len(in_code) > 50
    for locale in LOCALES:
        catalog = load_po(locale)
        in_catalog = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
        missing = in_code - in_catalog
        assert not missing, f"{locale}: run `make catalogs` and translate: {sorted(missing)[:5]}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_with_its_placeholders(locale):
    catalog = load_po(locale)
    assert catalog.plural_forms.startswith("nplurals=6" if locale == "ar" else "nplurals=2")
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(s.strip() for s in strings), f"{locale}: untranslated {ids[0]!r}"
        if isinstance(message.id, tuple):
            assert len(strings) == (6 if locale == "ar" else 2), ids[0]
        for name in PLACEHOLDER_NAMES:
            if name in ids[-1]:
                # Arabic writes no numeral with zero, one and two ("ملفًا واحدًا", "ملفين"):
                # those forms (0-2) may drop the one placeholder that holds the count.
                kept = strings[3:] if locale == "ar" and len(strings) == 6 else strings
                assert all(name in s for s in kept), f"{locale}: {name} lost in {ids[0]!r}"
        if locale == "ar" and len(strings) == 6:
            names = [n for n in PLACEHOLDER_NAMES if n in ids[-1]]
            for form in strings[:3]:
                assert sum(n not in form for n in names) <= 1, f"ar: placeholders lost in {ids[0]!r}"
        if locale == "ar" and any(c.isalpha() for c in ids[0]) and not ids[0].startswith("/"):
            # Arabic is really Arabic, not a copy of the English.
            assert any("\u0600" <= c <= "\u06ff" for c in "".join(strings)), ids[0]


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogs_are_not_stale(locale):
    po = load_po(locale)
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "nazaha.mo").open("rb") as f:
        mo = read_mo(f)
    def pairs(catalog):
        return {
            (m.id if isinstance(m.id, str) else m.id[0]): (
                m.string if isinstance(m.string, str) else tuple(m.string)
            )
            for m in catalog
            if m.id
        }

    po_pairs, mo_pairs = pairs(po), pairs(mo)
    assert po_pairs == mo_pairs, f"{locale}: run `make catalogs` (pybabel compile)"


def test_arabic_singular_and_dual_carry_no_numeral():
    """"ملفًا واحدًا", "ملفين": never "1 ملف" or "2 ملفين"; 3-10, 11-99 and 100+ show the number."""
    catalog = load_po("ar")
    plurals = [m for m in catalog if m.id and isinstance(m.id, tuple)]
    assert len(plurals) >= 8
    for message in plurals:
        zero, one, two, few, many, other = message.string
        for form in (one, two):
            assert "{count}" not in form and "{minimum}" not in form, message.id[0]
        if "{count}" not in message.id[1] and "{minimum}" not in message.id[1]:
            continue  # "A file ... / Some files ...": chooses the noun, shows no number
        for form in (few, many, other):
            assert "{count}" in form or "{minimum}" in form, message.id[0]


def test_arabic_plural_forms_are_used_for_counts():
    i18n = build_i18n()
    singular = "You have written {count} character so far."
    plural = "You have written {count} characters so far."
    forms = {n: i18n.gettext(singular, plural, n, locale="ar") for n in (0, 1, 2, 3, 11, 100)}
    assert len(set(forms.values())) >= 4  # Arabic distinguishes more than one/many
    english = {n: i18n.gettext(singular, plural, n, locale="en") for n in (1, 2)}
    assert english[1] == singular and english[2] == plural
