"""Logging that cannot leak content: no exception messages, no bot token.

Our code logs events, never content. Exception messages are another matter: a library's
error may quote a URL holding the bot token or a value a user sent. So tracebacks keep their
frames (file, line, code) but withhold the message, and the token is masked in every line.
"""

from __future__ import annotations

import logging
import traceback


class ContentFreeFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str] | None = None) -> None:
        super().__init__(fmt)
        self.secrets = [s for s in (secrets or []) if s]

    def formatException(self, ei) -> str:  # noqa: N802 (logging's API)
        exc_type, _, tb = ei
        frames = "".join(traceback.format_tb(tb))
        name = exc_type.__name__ if exc_type else "Exception"
        return f"Traceback (most recent call last):\n{frames}{name} (message withheld)"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text


def configure_logging(level: str, secrets: list[str] | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        ContentFreeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiogram's per-update lines carry only ids and timings, but they are noise; access
    # logs would record paths and addresses.
    for name, minimum in (
        ("aiogram.event", logging.WARNING),
        ("aiohttp.access", logging.WARNING),
        ("uvicorn.access", logging.WARNING),
        ("alembic", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(minimum)
