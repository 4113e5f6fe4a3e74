"""Codes as people type them: one reading for every code typed in the console (the
authenticator's 6 digits at enrolment and sign-in, a recovery code, the code the bot sends
to link a member's own Telegram chat).

A phone set to Arabic types Arabic-Indic digits (٠-٩, U+0660-0669), one set to Persian or
Urdu Extended Arabic-Indic digits (۰-۹, U+06F0-06F9); people put spaces or dashes in a code
("579 941"), and a pasted one may carry direction marks or isolates. :func:`normalise_code`
reads all of these as the ASCII code they stand for, so that a right code typed in any of
these ways is never refused (nor counted as a failed attempt).
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_TYPED", "normalise_code"]

MAX_TYPED = 64  # characters; anything longer is not a code


def _skipped(char: str) -> bool:
    """Spaces, dashes, a minus sign and invisible format characters (direction marks,
    isolates, zero-width characters): separators, not part of the code."""
    return char.isspace() or char == "\u2212" or unicodedata.category(char) in ("Pd", "Cf", "Zs")


def normalise_code(typed: str | None, *, letters: bool = False) -> str:
    """The code in ``typed``, in ASCII: a decimal digit of any script (ASCII, Arabic-Indic,
    Extended Arabic-Indic, full-width…) as its ASCII digit, separators (:func:`_skipped`)
    dropped; with ``letters``, Latin letters too, in upper case (a recovery code). ``""``
    if anything else was typed, or more than :data:`MAX_TYPED` characters."""
    text = typed or ""
    if len(text) > MAX_TYPED:
        return ""
    out: list[str] = []
    for char in text:
        if _skipped(char):
            continue
        value = unicodedata.decimal(char, None)
        if value is not None:
            out.append(str(value))
        elif letters and char.isascii() and char.isalpha():
            out.append(char.upper())
        else:
            return ""
    return "".join(out)
