"""Text formatting and markup validation the way the Bot API does it.

Only what the emulator needs: Telegram-HTML parsing into plain text plus entities (with
UTF-16 offsets, as Telegram counts them), and validation of reply markup. Strict on purpose:
a bot that puts unescaped user text into HTML should fail here as it would on Telegram.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ApiError",
    "parse_html",
    "utf16_len",
    "validate_reply_markup",
    "MAX_TEXT_LENGTH",
    "MAX_CAPTION_LENGTH",
    "MAX_CALLBACK_DATA_BYTES",
]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64


class ApiError(Exception):
    """A Bot API error response: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: Telegram's unit for text limits and entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


_TAG_RE = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)"
    r"((?:\s+[a-zA-Z_:-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)\s*>"
)
_ATTR_RE = re.compile(r"([a-zA-Z_:-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?")
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_SUPPORTED_TAGS = set(_SIMPLE_TAGS) | {"a", "span", "tg-emoji"}


def _unescape(fragment: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("#"):
            try:
                code = int(name[2:], 16) if name[1:2] in ("x", "X") else int(name[1:])
                return chr(code)
            except (ValueError, OverflowError):
                return m.group(0)
        return _NAMED_ENTITIES.get(name.lower(), m.group(0))

    return _ENTITY_RE.sub(repl, fragment) if "&" in fragment else fragment


def parse_html(raw: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-HTML into ``(plain_text, entities)``; raise ApiError 400 like Telegram."""

    def fail(detail: str) -> ApiError:
        return bad_request(f"can't parse entities: {detail}")

    def byte_offset(i: int) -> int:
        return len(raw[:i].encode("utf-8", "surrogatepass"))

    out: list[str] = []
    pos16 = 0  # current offset in the plain text, in UTF-16 code units
    stack: list[tuple[str, dict[str, str], int]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    n = len(raw)
    while i < n:
        lt = raw.find("<", i)
        chunk_end = n if lt < 0 else lt
        if chunk_end > i:
            text = _unescape(raw[i:chunk_end])
            out.append(text)
            pos16 += utf16_len(text)
        if lt < 0:
            break
        m = _TAG_RE.match(raw, lt)
        if m is None:
            name_match = re.match(r"</?([^\s>]*)", raw[lt:])
            name = name_match.group(1) if name_match else ""
            raise fail(f'Unsupported start tag "{name}" at byte offset {byte_offset(lt)}')
        closing, name, attr_text = m.group(1) == "/", m.group(2).lower(), m.group(3)
        if name not in _SUPPORTED_TAGS:
            kind = "end" if closing else "start"
            raise fail(f'Unsupported {kind} tag "{name}" at byte offset {byte_offset(lt)}')
        if closing:
            if not stack:
                raise fail(f'Unexpected end tag at byte offset {byte_offset(lt)}')
            open_name, attrs, start16 = stack.pop()
            if open_name != name:
                raise fail(
                    f'Unmatched end tag at byte offset {byte_offset(lt)}, '
                    f'expected "</{open_name}>", found "</{name}>"'
                )
            _close_entity(open_name, attrs, start16, pos16, entities, stack)
        else:
            attrs = {
                a.group(1).lower(): _unescape(a.group(2) or a.group(3) or a.group(4) or "")
                for a in _ATTR_RE.finditer(attr_text)
            }
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(lt)}')
            stack.append((name, attrs, pos16))
        i = m.end()
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_entity(
    name: str,
    attrs: dict[str, str],
    start: int,
    end: int,
    entities: list[dict[str, Any]],
    stack: list[tuple[str, dict[str, str], int]],
) -> None:
    if end <= start:
        return
    entity: dict[str, Any] = {"offset": start, "length": end - start}
    if name == "a":
        href = attrs.get("href", "")
        if not href:
            return
        entity.update(type="text_link", url=href)
    elif name == "span":
        entity["type"] = "spoiler"
    elif name == "tg-emoji":
        entity.update(type="custom_emoji", custom_emoji_id=attrs.get("emoji-id", ""))
    elif name == "code" and stack and stack[-1][0] == "pre":
        # <pre><code class="language-x"> is one pre entity with a language
        language = attrs.get("class", "")
        if language.startswith("language-"):
            stack[-1][1]["language"] = language[len("language-"):]
        return
    else:
        entity["type"] = _SIMPLE_TAGS[name]
        if name == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
        if name == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
    entities.append(entity)


_INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_URL_RE = re.compile(r"^(https?|tg)://\S+$", re.IGNORECASE)


def validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    """Validate a reply_markup object (already JSON-decoded) and return it normalised."""
    if markup is None:
        return None
    invalid = bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(markup, dict):
        raise invalid
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise invalid
        count = 0
        for row in rows:
            for button in row:
                count += 1
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise invalid
                if not button["text"]:
                    raise bad_request("BUTTON_TEXT_EMPTY")
                actions = [a for a in _INLINE_ACTIONS if button.get(a) is not None]
                if not actions:
                    raise bad_request("text buttons are unallowed in the inline keyboard")
                if "callback_data" in actions:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8", "surrogatepass")) <= MAX_CALLBACK_DATA_BYTES:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in actions and not _URL_RE.match(str(button["url"])):
                    raise bad_request("BUTTON_URL_INVALID")
        if count > 100:
            raise bad_request("reply markup is too long")
        return markup
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise invalid
        for row in rows:
            for button in row:
                text = button if isinstance(button, str) else button.get("text") if isinstance(button, dict) else None
                if not isinstance(text, str):
                    raise invalid
                if not text:
                    raise bad_request("BUTTON_TEXT_EMPTY")
        return markup
    if markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
        return markup
    raise invalid
