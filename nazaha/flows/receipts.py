"""Reading a receipt as people type it: pure text handling, no keys.

Storage derives keys from the normalised receipt (nazaha.storage.crypto re-exports these);
the conversation flows use the same reading to notice a receipt typed in the wrong place.
"""

from __future__ import annotations

import unicodedata

RECEIPT_DIGITS = 20
_MAX_RECEIPT_INPUT = 200  # characters; longer input is not a receipt

_DASHES = frozenset("\u2212\ufe58\ufe63\uff0d")  # minus sign, small/fullwidth hyphen-minus


def normalize_receipt(text: str) -> str | None:
    """The receipt's 20 ASCII digits, or ``None`` if ``text`` is not a well-formed receipt.

    Accepts ASCII, Arabic-Indic (U+0660-0669) and Extended Arabic-Indic (U+06F0-06F9)
    digits, mixed freely, separated by any whitespace (incl. NBSP), dashes, and invisible
    format characters (RLM/LRM/ALM, bidi embeddings and isolates, zero-width chars, BOM).
    Anything else (letters, other punctuation, other digit scripts) makes it malformed.
    """
    if not isinstance(text, str) or len(text) > _MAX_RECEIPT_INPUT:
        return None
    digits: list[str] = []
    for ch in text:
        if "0" <= ch <= "9":
            digits.append(ch)
        elif "\u0660" <= ch <= "\u0669":
            digits.append(chr(ord(ch) - 0x0660 + 0x30))
        elif "\u06f0" <= ch <= "\u06f9":
            digits.append(chr(ord(ch) - 0x06F0 + 0x30))
        elif ch.isspace() or ch in _DASHES:
            continue
        else:
            category = unicodedata.category(ch)
            if category in ("Zs", "Cf", "Pd"):  # spaces, invisible format chars, dashes
                continue
            return None
    if len(digits) != RECEIPT_DIGITS:
        return None
    return "".join(digits)


__all__ = ["RECEIPT_DIGITS", "normalize_receipt"]
