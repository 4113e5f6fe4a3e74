"""Logging that cannot leak content: one redacting filter on every handler we install.

Our code logs events, never content. Other code is another matter: a library's error may
quote a URL holding the bot token, a chat id ("Flood control exceeded ... in chat <id>") or a
value a user sent; Pillow logs EXIF values and aiosqlite every statement at DEBUG. So:

* every record passes :class:`RedactingFilter` on the handler: the message is built (args
  that are exceptions become their type name), the exception is formatted without its
  message (frames only), and the whole text is masked by :func:`redact`;
* third-party loggers are held at WARNING whatever ``NAZAHA_LOG_LEVEL`` says;
* warnings go through logging with their category and place only, never their text;
* timestamps are to the second.
"""

from __future__ import annotations

import logging
import re
import traceback
import warnings
from collections.abc import Iterable

# Loggers of other packages: WARNING at the least, whatever the configured level.
THIRD_PARTY_LOGGERS = (
    "aiogram",
    "aiohttp",
    "asyncio",
    "PIL",
    "sqlalchemy",
    "aiosqlite",
    "alembic",
    "uvicorn",
    "fastapi",
    "starlette",
    "httpx",
    "httpcore",
    "multipart",
    "python_multipart",
    "urllib3",
    "asyncpg",
    "redis",
    "passlib",
    "babel",
    "jinja2",
    "markdown_it",
    "limits",
)

REDACTED = "<redacted>"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# URLs keep their scheme and host; a path can hold the token, a file path or an id.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#]+)[/?#](?:[^\s'\"]*[^\s'\"),.;:!?])?")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_USERNAME = re.compile(r"(?<![\w@])@\w{2,}")
# 20+ characters of [A-Za-z0-9_-] holding a digit (file ids, hex ids, base64url keys), or
# 40+ of them whatever they hold; plain identifiers such as TelegramForbiddenError stay.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*\d|[A-Za-z0-9_-]{40})[A-Za-z0-9_-]{20,}")
# Digits in any script (\d is Unicode): 5+ in a row, or groups joined by spaces or dashes.
_DIGIT_RUN = re.compile(r"\d+(?:[ \u00a0\-]+\d+)*")
_DIGIT = re.compile(r"\d")


def _mask_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    start = match.start()
    if start and match.string[start - 1] == ":" and text.isascii() and text.isdigit() and int(text) <= 65535:
        return text  # a port, as in 127.0.0.1:8443
    if start >= 2 and match.string[start - 1] == "." and match.string[start - 2].isdigit() and text.isdigit():
        return text  # the fraction of a decimal number, as in "sleep for 1.53458 seconds"
    digits = len(_DIGIT.findall(text))
    if digits >= 8 or re.search(r"\d{5,}", text):
        return REDACTED
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets, URL paths, e-mail addresses, @usernames, long opaque tokens and
    long numbers (5+ digits in a row, or 8+ digits in groups such as "0599 123 456")
    replaced by ``<redacted>``. Ordinary words, short numbers and identifiers stay."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL.sub(lambda m: f"{m.group(1)}/{REDACTED}", text)
    text = _EMAIL.sub(REDACTED, text)
    text = _USERNAME.sub("@" + REDACTED, text)
    text = _OPAQUE.sub(REDACTED, text)
    return _DIGIT_RUN.sub(_mask_digits, text)


def withheld(exc: BaseException) -> str:
    return f"{type(exc).__name__} (message withheld)"


def format_exception_withheld(ei) -> str:  # noqa: ANN001 (logging's exc_info tuple)
    """A traceback's frames (file, line, code) and the exception's type, never its message;
    chained causes are followed the same way."""
    exc_type, exc, tb = ei
    parts = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = "".join(traceback.format_tb(exc.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(exc).__name__} (message withheld)")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if not parts:
        name = exc_type.__name__ if exc_type else "Exception"
        frames = "".join(traceback.format_tb(tb))
        parts.append(f"Traceback (most recent call last):\n{frames}{name} (message withheld)")
    return "\n\nCaused by (or during the handling of):\n".join(reversed(parts))


class ContentFreeFormatter(logging.Formatter):
    """Tracebacks keep their frames but withhold the message; time to the second."""

    def __init__(self, fmt: str = LINE_FORMAT, secrets: list[str] | None = None) -> None:
        super().__init__(fmt, datefmt=TIMESTAMP_FORMAT)
        self.secrets = [s for s in (secrets or []) if s]

    def formatException(self, ei) -> str:  # noqa: N802 (logging's API)
        return format_exception_withheld(ei)

    def format(self, record: logging.LogRecord) -> str:
        # The rest of the line is masked by RedactingFilter; the timestamp must stay.
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """Rewrites each record into its final, redacted text before any formatter sees it:
    ``record.msg`` becomes the built message (exceptions among the args reduced to their
    type), ``record.args`` is emptied, ``record.exc_text`` holds the withheld traceback.
    Never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "nazaha_redacted", False):
            return True
        try:
            message = self._message(record)
        except Exception:  # a broken format string must not stop logging
            message = "(log message could not be built)"
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(format_exception_withheld(record.exc_info), self.secrets)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        record.nazaha_redacted = True
        return True

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        msg = record.msg
        if isinstance(msg, BaseException):
            return withheld(msg)
        args = record.args
        if isinstance(args, tuple):
            args = tuple(withheld(a) if isinstance(a, BaseException) else a for a in args)
        elif isinstance(args, dict):
            args = {k: withheld(v) if isinstance(v, BaseException) else v for k, v in args.items()}
        msg = str(msg)
        return msg % args if args else msg


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` replacement: the category and where, never the text (a
    library's warning may quote an update)."""
    logging.getLogger("py.warnings").warning(
        "%s at %s:%d (message withheld)", category.__name__, filename, lineno
    )


def third_party_level(level: int) -> int:
    return max(logging.WARNING, level)


class ThirdPartyFloor(logging.Filter):
    """Below WARNING, only our own loggers (``nazaha.*``) reach the handler: a library's
    DEBUG or INFO lines are dropped whatever its name, not only those named in
    :data:`THIRD_PARTY_LOGGERS` (markdown-it logs each block it parses at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == "nazaha" or record.name.startswith("nazaha.")


def configure_logging(level: str, secrets: list[str] | None = None) -> None:
    """Root handler on stderr with :class:`ThirdPartyFloor` and :class:`RedactingFilter`;
    ``level`` is a level name (``NAZAHA_LOG_LEVEL``); ``secrets`` are masked wherever they
    appear (the bot token)."""
    handler = logging.StreamHandler()
    handler.addFilter(ThirdPartyFloor())
    handler.addFilter(RedactingFilter(secrets or []))
    handler.setFormatter(ContentFreeFormatter(LINE_FORMAT, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(third_party_level(root.level))
    logging.captureWarnings(True)
    warnings.showwarning = _show_warning
