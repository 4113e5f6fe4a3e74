r"""The awareness markup: what volunteers and content files write, turned into Telegram text
and entities.

Accepted: ``**bold**``, ``*italic*`` or ``_italic_``, ``[text](https://…)`` (http and https
only), a backslash before a punctuation character to keep it literal (``\*``, ``\_``,
``\[``), a blank line between paragraphs. Everything else (``#``, ``-``, ``<b>``, ``&amp;``)
is shown as typed. The parse is markdown-it-py's CommonMark inline rules with one change: a
``*`` between two digits is a character, never emphasis (``2*3*4`` stays as typed, where
CommonMark would put the 3 in italics); ``_`` inside a word (``snake_case``) is a character
already in CommonMark. A ``*`` next to a letter still opens or closes emphasis, so that an
Arabic word with an attached prefix can be bold (``و**الفساد**``). The entities (UTF-16
offsets, as the Bot API counts) are built by aiogram's ``aiogram.utils.formatting``.
Messages are always sent with ``entities``/``caption_entities`` and never with
``parse_mode``, so no text a volunteer or a file holds can make Telegram answer "can't
parse entities".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any

from aiogram.types import MessageEntity
from aiogram.utils.formatting import Bold, Italic, Text, TextLink
from markdown_it import MarkdownIt
from markdown_it.rules_inline.state_inline import Delimiter, StateInline

__all__ = [
    "TEXT_LIMIT", "CAPTION_LIMIT", "Formatted", "parse_markup", "utf16_len", "markup_problems",
    "preview_html", "plain", "Link", "links_of", "Address", "address_parts",
]

TEXT_LIMIT = 4096  # a message's text, in UTF-16 code units after parsing (Bot API)
CAPTION_LIMIT = 1024  # a photo's caption
_LINK_SCHEMES = ("https://", "http://")


def utf16_len(text: str) -> int:
    """Length as the Bot API counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _between_digits(source: str, start: int, end: int) -> bool:
    """Whether ``source[start:end]`` (a run of markers) has a digit on either side."""
    return start > 0 and end < len(source) and source[start - 1].isdecimal() and source[end].isdecimal()


def _emphasis(state: StateInline, silent: bool) -> bool:
    """markdown-it's emphasis tokenizer (rules_inline/emphasis.py), except that a run of
    ``*`` between two digits may not split the "word": ``2*3*4`` keeps its asterisks."""
    start = state.pos
    marker = state.src[start]
    if silent or marker not in ("_", "*"):
        return False
    end = start
    while end < state.posMax and state.src[end] == marker:
        end += 1
    scanned = state.scanDelims(start, marker == "*" and not _between_digits(state.src, start, end))
    for _ in range(scanned.length):
        token = state.push("text", "", 0)
        token.content = marker
        state.delimiters.append(Delimiter(marker=ord(marker), length=scanned.length, token=len(state.tokens) - 1,
                                          end=-1, open=scanned.can_open, close=scanned.can_close))
    state.pos += scanned.length
    return True


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # "zero" has no block rules but paragraphs: headings, lists, quotes, code stay text.
    parser = MarkdownIt("zero").enable(["emphasis", "link", "escape", "newline"])
    parser.inline.ruler.at("emphasis", _emphasis)
    # Every link target reaches _inline_nodes, which keeps http(s) only and reports the rest
    # (markdown-it would silently leave a javascript: link as literal text).
    parser.validateLink = lambda url: True
    return parser


@dataclass(frozen=True)
class Formatted:
    """Text and its entities, ready for sendMessage (``as_text``) or a caption
    (``as_caption``). ``bad_links``: link targets that were refused (shown as plain text)."""

    text: str
    entities: tuple[MessageEntity, ...]
    bad_links: tuple[str, ...] = ()

    def as_text(self) -> dict[str, Any]:
        return {"text": self.text, "entities": list(self.entities) or None}

    def as_caption(self) -> dict[str, Any]:
        return {"caption": self.text, "caption_entities": list(self.entities) or None}

    @property
    def length(self) -> int:
        return utf16_len(self.text)


def _inline_nodes(children: list[Any], bad_links: list[str]) -> list[Any]:
    """markdown-it inline tokens -> aiogram formatting nodes (nesting kept)."""
    stack: list[tuple[str, list[Any], str]] = [("root", [], "")]
    for token in children:
        kind = token.type
        if kind == "text":
            stack[-1][1].append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            stack[-1][1].append("\n")
        elif kind in ("strong_open", "em_open"):
            stack.append((kind, [], ""))
        elif kind == "link_open":
            stack.append((kind, [], str(token.attrs.get("href", ""))))
        elif kind in ("strong_close", "em_close", "link_close") and len(stack) > 1:
            opened, nodes, href = stack.pop()
            if opened == "strong_open":
                node: Any = Bold(*nodes)
            elif opened == "em_open":
                node = Italic(*nodes)
            elif href.lower().startswith(_LINK_SCHEMES) and nodes:
                node = TextLink(*nodes, url=href)
            else:
                bad_links.append(href)
                node = Text(*nodes)
            stack[-1][1].append(node)
        elif token.content:
            stack[-1][1].append(token.content)
    while len(stack) > 1:  # unbalanced input cannot happen with markdown-it; be safe anyway
        _, nodes, _ = stack.pop()
        stack[-1][1].extend(nodes)
    return stack[0][1]


def parse_markup(source: str) -> Formatted:
    """Parse the markup (never raises). Line ends are normalised; paragraphs are separated
    by one blank line; leading and trailing blank space is dropped."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs: list[list[Any]] = []
    bad_links: list[str] = []
    for token in _parser().parse(source):
        if token.type == "inline":
            paragraphs.append(_inline_nodes(token.children or [], bad_links))
    nodes: list[Any] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            nodes.append("\n\n")
        nodes.extend(paragraph)
    text, entities = Text(*nodes).render() if nodes else ("", [])
    return Formatted(text, tuple(entities), tuple(bad_links))


def plain(source: str) -> str:
    """The text a reader sees, without formatting (e.g. for a list in the console)."""
    return parse_markup(source).text


def markup_problems(source: str, *, limit: int = TEXT_LIMIT) -> list[str]:
    """Reasons the markup cannot be sent, as codes: ``"empty"``, ``"too_long"`` (more than
    ``limit`` UTF-16 code units once parsed), ``"bad_link"`` (a link that is not http(s))."""
    formatted = parse_markup(source)
    problems = []
    if not formatted.text.strip():
        problems.append("empty")
    if formatted.length > limit:
        problems.append("too_long")
    if formatted.bad_links:
        problems.append("bad_link")
    return problems


def preview_html(formatted: Formatted) -> str:
    """HTML for a preview of what Telegram shows: the text escaped, bold/italic/links as
    <b>/<i>/<a rel="noopener noreferrer nofollow">, line breaks as <br>. Safe to mark as
    Markup: every character of the text goes through html.escape."""
    units = formatted.text.encode("utf-16-le")
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for entity in sorted(formatted.entities, key=lambda e: (e.offset, -e.length)):
        start, end = entity.offset, entity.offset + entity.length
        if entity.type == "bold":
            tag, close = "<b>", "</b>"
        elif entity.type == "italic":
            tag, close = "<i>", "</i>"
        elif entity.type == "text_link":
            tag = f'<a href="{escape(entity.url or "", quote=True)}" rel="noopener noreferrer nofollow">'
            close = "</a>"
        else:
            continue
        opens.setdefault(start, []).append(tag)
        closes.setdefault(end, []).insert(0, close)
    out: list[str] = []
    length = len(units) // 2
    position = 0
    boundaries = sorted({0, length, *opens, *closes})
    for boundary in boundaries:
        if boundary > position:
            out.append(escape(units[position * 2:boundary * 2].decode("utf-16-le")))
            position = boundary
        out.extend(closes.get(boundary, ()))
        out.extend(opens.get(boundary, ()))
    return "".join(out).replace("\n", "<br>\n")


@dataclass(frozen=True)
class Link:
    """A link of a parsed text: the words a reader sees (``text``) and where it leads (``url``)."""

    text: str
    url: str

    @property
    def address(self) -> Address:
        return address_parts(self.url)


def links_of(formatted: Formatted) -> tuple[Link, ...]:
    """The text links of ``formatted``, in the order they appear (an address typed as plain
    text is not one: it shows in full)."""
    units = formatted.text.encode("utf-16-le")
    return tuple(
        Link(units[e.offset * 2:(e.offset + e.length) * 2].decode("utf-16-le"), e.url or "")
        for e in sorted(formatted.entities, key=lambda e: e.offset)
        if e.type == "text_link"
    )


@dataclass(frozen=True)
class Address:
    """A link's address cut for a reviewer: ``before`` the host (scheme, and any user name
    before an ``@``, which browsers do not visit), the ``host`` (the site it opens), ``after``
    it (port, path, query). ``before + host + after`` is the address. ``international``: the
    host has letters outside ASCII, or is their ``xn--`` form (the parser writes hosts so):
    such letters can imitate a familiar address (a Cyrillic "а" for a Latin "a")."""

    before: str
    host: str
    after: str
    international: bool


def address_parts(url: str) -> Address:
    """Cut ``url`` (an http(s) address) as a browser reads it: the host ends at the first
    ``/``, ``\\``, ``?`` or ``#``, after the last ``@``, before a ``:port``. Never raises; a
    string without ``://`` is all ``before``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return Address(url, "", "", False)
    cut = min((i for i in (rest.find(c) for c in "/\\?#") if i >= 0), default=len(rest))
    authority, after = rest[:cut], rest[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = hostport, ""
    colon = hostport.rfind(":")
    if colon > hostport.rfind("]") and hostport[colon + 1:].isdigit():
        host, port = hostport[:colon], hostport[colon:]
    international = not host.isascii() or any(label.lower().startswith("xn--") for label in host.split("."))
    return Address(scheme + separator + userinfo + at, host, port + after, international)
