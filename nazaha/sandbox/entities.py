"""The entities Telegram finds in message text by itself: url, email, mention, hashtag,
cashtag and bot_command, with offsets and lengths in UTF-16 code units.

Telegram (TDLib's ``find_entities``) adds these to every message, the bot's included, and
merges them with the entities the sender gave: a found entity is dropped where it would
cross an entity that cannot contain it (a link, code, a mention, ...), while bold, italic,
underline, strikethrough, spoiler and block quotes may contain it. The rules here follow
TDLib's ``match_mentions``, ``match_bot_commands``, ``match_hashtags``, ``match_cashtags``,
``match_urls`` and ``is_email_address``, simplified where noted:

* mention: ``@`` + 4..32 of ``[A-Za-z0-9_]`` (TDLib also finds the 3-letter ``@gif``,
  ``@vid``, ``@pic``), not after or before a word character;
* bot_command: ``/`` + 1..64 of ``[A-Za-z0-9_]``, optionally ``@`` + 3..32 of them, not after a
  word character or ``/<>``, not before one;
* hashtag: ``#`` + up to 256 letters, digits, ``_`` (at least one letter), not after one and
  not followed by another ``#``; cashtag: ``$`` + 1..8 capital letters (or ``1INCH``);
* url: an optional ``http``/``https``/``ftp`` scheme, a domain, an optional port and path;
  without a scheme the top-level domain must be a common one (here: any two ASCII letters,
  or a list of generic ones; TDLib has a longer list); trailing ``.:;,('?!``` are not part
  of it;
* email: TDLib's address pattern (``name@domain.tld``, a 2..8-letter top-level domain).

Phone numbers, bank card numbers and media timestamps are not found: the Bot API does not
report the latter two, and Telegram's servers, not TDLib, decide on phone numbers.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import Any

__all__ = ["find_entities", "merge_entities", "with_found_entities", "to_utf16_offsets"]

# Entities that may contain a found entity (TDLib: splittable entities and block quotes).
CONTAINERS = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler", "blockquote",
                        "expandable_blockquote"})
_GENERIC_TLDS = frozenset("""
com org net edu gov mil int info biz name pro app dev xyz online site tech store news blog shop club top
live life world today media space website digital email cloud link click global network center agency
foundation ngo ong museum aero coop jobs mobi travel tel asia cat post law legal gallery press
""".split())
_MENTION_RE = re.compile(r"@([A-Za-z0-9_]{2,32})")
_COMMAND_RE = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]+))?")
_CASHTAG_RE = re.compile(r"\$(1INCH|[A-Z]{1,8})")
_EMAIL_RE = re.compile(
    r"(?:[A-Za-z0-9_-]{0,26}[.+]){0,10}[A-Za-z0-9_-]{1,35}"
    r"@(?:(?:[A-Za-z0-9][A-Za-z0-9_-]{0,28})?[A-Za-z0-9]\.){1,6}[A-Za-z]{2,8}"
)
_URL_RE = re.compile(  # the look-behinds keep the scan linear: a match starts only at a word's start
    r"(?:(?<![A-Za-z0-9+-])(?P<scheme>[A-Za-z][A-Za-z0-9+-]*)://)?"
    r"(?<![\w~-])(?P<domain>[\w~-]+(?:\.[\w~-]+)+)"
    r"(?::(?P<port>\d{1,5})(?!\d))?"
    r"(?P<path>[/?#][^\s<>\"«»\u2000-\u200b\u200e\u200f\u2016-\u206f]*)?"
)
_BAD_PATH_END = ".:;,('?!`"
_DOT_RE = re.compile(r"\.[^\s.]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010FFFF]")


def _is_word(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LN"


def _is_hashtag_letter(ch: str) -> bool:
    code = ord(ch)
    if ch == "_" or code in (0x200C, 0xB7) or 0xD80 <= code <= 0xDFF:
        return True
    category = unicodedata.category(ch)
    return category == "Nd" or category[0] == "L"


def _before(text: str, i: int) -> str:
    return text[i - 1] if i > 0 else ""


def _after(text: str, i: int) -> str:
    return text[i] if i < len(text) else ""


def _mentions(text: str) -> list[tuple[int, int, str]]:
    found = []
    for m in _MENTION_RE.finditer(text):
        start, end = m.span()
        prev, nxt = _before(text, start), _after(text, end)
        if (prev and _is_word(prev)) or (nxt and _is_word(nxt)):
            continue
        name = m.group(1)
        if len(name) >= 4 or name.lower() in ("gif", "vid", "pic"):
            found.append((start, end, "mention"))
    return found


def _commands(text: str) -> list[tuple[int, int, str]]:
    found = []
    for m in _COMMAND_RE.finditer(text):
        start, end = m.span()
        prev = _before(text, start)
        if prev and (_is_word(prev) or prev in "/<>"):
            continue
        if m.group(2) is not None and not 3 <= len(m.group(2)) <= 32:
            continue
        nxt = _after(text, end)
        if nxt and (_is_word(nxt) or nxt in "/<>"):
            continue
        found.append((start, end, "bot_command"))
    return found


def _hashtags(text: str) -> list[tuple[int, int, str]]:
    found = []
    i = text.find("#")
    while i >= 0:
        if i > 0 and _is_hashtag_letter(text[i - 1]):
            i = text.find("#", i + 1)
            continue
        j = i + 1
        while j < len(text) and _is_hashtag_letter(text[j]):
            j += 1
        end = min(j, i + 1 + 256)
        body = text[i + 1:end]
        if body and _after(text, j) != "#" and any(unicodedata.category(c)[0] == "L" for c in body):
            found.append((i, end, "hashtag"))
        i = text.find("#", max(j, i + 1))
    return found


def _cashtags(text: str) -> list[tuple[int, int, str]]:
    found = []
    for m in _CASHTAG_RE.finditer(text):
        start, end = m.span()
        prev, nxt = _before(text, start), _after(text, end)
        if (prev and (_is_hashtag_letter(prev) or prev == "$")) or (nxt and (_is_hashtag_letter(nxt) or nxt == "$")):
            continue
        found.append((start, end, "cashtag"))
    return found


def _emails(text: str) -> list[tuple[int, int, str]]:
    found = []
    for m in _EMAIL_RE.finditer(text):
        start, end = m.span()
        prev, nxt = _before(text, start), _after(text, end)
        if prev and (_is_word(prev) or prev in ".+-@/"):
            continue
        if nxt and (_is_word(nxt) or nxt in "@-" or (nxt == "." and _after(text, end + 1).isalnum())):
            continue
        found.append((start, end, "email"))
    return found


def _common_tld(tld: str) -> bool:
    lowered = tld.lower()
    if lowered.isascii():
        return lowered.isalpha() and (len(lowered) == 2 or lowered in _GENERIC_TLDS)
    return lowered in ("рф", "укр", "срб", "бел", "қаз", "موقع", "شبكة", "فلسطين", "مصر", "السعودية", "امارات")


def _url_matches(text: str) -> Any:
    """URL candidates: the regex runs only over the runs of non-space text around a dot
    followed by something (a URL has one; a full stop before a space is skipped, as TDLib
    does), which keeps long texts cheap."""
    end = 0
    for dot in _DOT_RE.finditer(text):
        if dot.start() < end:
            continue  # in the run already searched
        start = dot.start()
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        end = dot.end()
        while end < len(text) and not text[end].isspace():
            end += 1
        yield from _URL_RE.finditer(text, start, end)


def _urls(text: str) -> list[tuple[int, int, str]]:
    found = []
    for m in _url_matches(text):
        start = m.start()
        scheme = m.group("scheme")
        if scheme is not None and scheme.lower() not in ("http", "https", "ftp"):
            continue
        prev = _before(text, start)
        if prev and (_is_word(prev) or prev in "/#@."):
            continue
        domain = m.group("domain")
        labels = domain.split(".")
        if any(not label for label in labels) or "_" in "".join(labels[-2:]):
            continue
        tld = labels[-1]
        is_ipv4 = len(labels) == 4 and all(label.isdigit() and int(label) < 256 for label in labels)
        if not (is_ipv4 and scheme) and not (_common_tld(tld) if scheme is None else tld.isalpha() and len(tld) >= 2):
            continue
        end = m.end("port") if m.group("port") else m.end("domain")
        path = m.group("path")
        if path:
            while len(path) > 1 and path[-1] in _BAD_PATH_END:
                path = path[:-1]
            if path[0] == "/" or len(path) > 1:
                end = m.start("path") + len(path)
        if _after(text, end) == "@":
            continue  # part of an e-mail address
        found.append((start, end, "url"))
    return found


def to_utf16_offsets(text: str, spans: list[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """``(start, end, type)`` in code points -> MessageEntity dicts in UTF-16 code units."""
    if not spans:
        return []
    astral = [m.start() for m in _ASTRAL_RE.finditer(text)]  # each takes two UTF-16 code units

    def unit(i: int) -> int:
        if not astral:
            return i
        return i + bisect.bisect_left(astral, i)

    return [{"type": kind, "offset": unit(s), "length": unit(e) - unit(s)} for s, e, kind in spans]


def find_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram finds in ``text`` by itself, sorted, not overlapping."""
    if not text:
        return []
    spans: list[tuple[int, int, str]] = []
    if "@" in text:
        spans += _emails(text)
        spans += _mentions(text)
    if "." in text:
        spans += _urls(text)
    if "/" in text:
        spans += _commands(text)
    if "#" in text:
        spans += _hashtags(text)
    if "$" in text:
        spans += _cashtags(text)
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return to_utf16_offsets(text, kept)


def merge_entities(given: list[dict[str, Any]] | None, found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The sender's entities plus the found ones that cross none of them but bold, italic,
    underline, strikethrough, spoiler and block quotes; sorted by offset."""
    if not found:
        return given or None
    blocking = [(e.get("offset", 0), e.get("offset", 0) + e.get("length", 0)) for e in given or []
                if isinstance(e, dict) and e.get("type") not in CONTAINERS]
    added = [f for f in found
             if not any(f["offset"] < end and start < f["offset"] + f["length"] for start, end in blocking)]
    if not added:
        return given or None
    merged = list(given or []) + added
    merged.sort(key=lambda e: (e.get("offset", 0), -e.get("length", 0)))
    return merged


def with_found_entities(text: str | None, given: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """``given`` (the sender's entities, or None) with what Telegram finds in ``text`` added."""
    if not text:
        return given or None
    return merge_entities(given, find_entities(text))
