"""The redacting log filter, the third-party log levels, error handlers and core dumps."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import warnings

import pytest

from nazaha.bot import logs
from nazaha.bot.logs import REDACTED, RedactingFilter, configure_logging, redact

TOKEN = "123456789:AAE-secret-token-value_abcdefghijk"


@pytest.fixture
def logged():
    """Configure logging as ``nazaha`` does; yields a function returning what was printed."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, warnings.showwarning
    configure_logging("DEBUG", secrets=[TOKEN])
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)
    yield buffer.getvalue
    root.handlers[:], level, warnings.showwarning = saved
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize(
    "secret",
    [
        TOKEN,
        "987654321",  # a user id
        "-1001234567890",  # a group chat id
        "١٢٣٤٥٦٧٨",  # Arabic-Indic digits
        "۱۲۳۴۵۶۷",  # Persian digits
        "1234 5678 9012 3456 7890",  # a receipt as printed
        "1234-5678-9012-3456-7890",
        "١٢٣٤ ٥٦٧٨ ٩٠١٢ ٣٤٥٦ ٧٨٩٠",
        "0599 123 456",  # a phone number
        "+970 599 123 456",
        "@samir_k",
        "samir.k@example.org",
        "AgACAgIAAxkBAAIBZ2Zk3QABcdEfGh",  # a Telegram file id
        "SBX12_abcDEF-ghiJKLmnoPQRstu",  # a sandbox file id
        "3f2a9c0d1e8b7a6f5c4d3e2b1a0f9e8d",  # hex
        "https://api.telegram.org/file/bot/photos/file_12.jpg",
    ],
)
def test_secrets_are_masked(secret):
    text = redact(f"before {secret} after", [TOKEN])
    assert secret not in text, text
    assert text.startswith("before ") and text.endswith(" after")
    assert REDACTED in text


def test_url_keeps_scheme_and_host_only():
    assert redact("GET https://api.telegram.org/bot123/getMe?x=1 done") == (
        f"GET https://api.telegram.org/{REDACTED} done"
    )
    assert redact("listening on http://127.0.0.1:8081") == "listening on http://127.0.0.1:8081"


@pytest.mark.parametrize(
    "ordinary",
    [
        "update handling failed: TelegramForbiddenError in a message update",
        "Bot API refused SendMessage (TelegramRetryAfter)",
        "webhook server listening on 127.0.0.1:8443",
        "webhook server listening on 127.0.0.1:48213",
        "notification not delivered after 4 attempts",
        "line 123, in UnitOfWorkMiddleware.__call__",
        "retry in 30 s, 1234 left",
        "تم استلام بلاغك",
    ],
)
def test_ordinary_words_and_short_numbers_are_kept(ordinary):
    assert redact(ordinary) == ordinary


def test_filter_builds_masks_and_withholds(logged):
    log = logging.getLogger("nazaha.test")
    name = "Sam" + "ir"
    try:
        raise RuntimeError(" ".join(("Flood", "control", str(987654321), name)))
    except RuntimeError as exc:
        log.exception("call failed: %s (chat %d, user @%s)", exc, 987654321, "samir_k")
    log.info("token %s in %s", TOKEN, f"https://example.org/bot{TOKEN}/getMe")
    out = logged()
    for leaked in ("987654321", name, "samir_k", TOKEN, "Flood control", "getMe"):
        assert leaked not in out, out
    assert "RuntimeError (message withheld)" in out and "Traceback" in out


def test_chained_causes_are_withheld_too(logged):
    try:
        try:
            raise KeyError("secret" + "-key")
        except KeyError as inner:
            raise ValueError("outer" + " message") from inner
    except ValueError:
        logging.getLogger("nazaha.test").exception("failed")
    out = logged()
    assert "KeyError (message withheld)" in out and "ValueError (message withheld)" in out
    assert "secret-key" not in out and "outer message" not in out


def test_timestamps_to_the_second(logged):
    logging.getLogger("nazaha.test").warning("tick")
    line = logged().strip().splitlines()[-1]
    stamp = " ".join(line.split(" ")[:2])
    assert len(stamp) == len("2026-01-01 12:00:00") and "," not in stamp


def test_third_party_loggers_held_at_warning(logged):
    for name in ("aiogram.event", "aiosqlite", "PIL.TiffImagePlugin", "sqlalchemy.engine", "asyncio"):
        logging.getLogger(name).debug("DEBUG-%s", name)
        logging.getLogger(name).info("INFO-%s", name)
    logging.getLogger("nazaha.x").debug("ours-at-debug")
    out = logged()
    assert "DEBUG-" not in out and "INFO-" not in out
    assert "ours-at-debug" in out


def test_warnings_are_logged_without_their_text(logged):
    warnings.warn("Update: {'chat': {'first_name': 'Samir'}}", RuntimeWarning, stacklevel=1)
    out = logged()
    assert "RuntimeWarning" in out and "Samir" not in out


def test_filter_is_idempotent_and_never_drops():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", ("123456789",), None)
    f = RedactingFilter()
    assert f.filter(record) and f.filter(record)
    assert record.getMessage() == f"id {REDACTED}"


def test_error_handler_logs_type_and_kind_only(logged):
    from aiogram.exceptions import TelegramRetryAfter
    from aiogram.methods import SendMessage
    from aiogram.types import ErrorEvent, Update

    from nazaha.bot.error_logging import on_error

    update = Update.model_validate(
        {
            "update_id": 7,
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": {"id": 987654321, "type": "private"},
                "text": "hello",
            },
        }
    )
    exc = TelegramRetryAfter(
        method=SendMessage(chat_id=987654321, text="x"),
        message="Flood control exceeded in chat 987654321",
        retry_after=3,
    )
    assert asyncio.run(on_error(ErrorEvent(update=update, exception=exc))) is True
    out = logged()
    assert "TelegramRetryAfter in a message update" in out
    assert "987654321" not in out and "Flood" not in out


def test_loop_exception_handler_logs_type_only(logged):
    from nazaha.bot.error_logging import loop_exception_handler

    async def fail():
        raise ValueError("chat 987654321 Samir")

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(loop_exception_handler)
        task = loop.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.call_exception_handler({"message": "Task exception was never retrieved",
                                     "exception": task.exception(), "future": task})

    asyncio.run(main())
    out = logged()
    assert "ValueError" in out and "Samir" not in out and "987654321" not in out


def test_core_dumps_are_off_in_a_subprocess():
    code = (
        "import resource, sys\n"
        "from nazaha.bot.hardening import disable_core_dumps, is_dumpable\n"
        "assert is_dumpable() in (True, None)\n"
        "assert disable_core_dumps()\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), is_dumpable())\n"
        "if sys.platform.startswith('linux'):\n"
        "    print(next(l for l in open('/proc/self/limits') if l.startswith('Max core file size')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    if sys.platform.startswith("linux"):
        assert lines[0] == "(0, 0) False"
        assert lines[1].split()[4:6] == ["0", "0"]
    else:
        assert lines[0].startswith("(0, 0)")


def test_logs_module_names_the_third_party_loggers():
    for name in ("aiogram", "aiohttp", "asyncio", "PIL", "sqlalchemy", "aiosqlite", "alembic", "uvicorn", "httpx", "multipart"):
        assert name in logs.THIRD_PARTY_LOGGERS


def test_debug_lines_of_any_library_are_dropped_even_unlisted(capsys) -> None:
    import logging

    from nazaha.bot.logs import configure_logging

    configure_logging("DEBUG")
    logging.getLogger("some_new_library.parser").debug("entering paragraph: StateBlock(line=0)")
    logging.getLogger("markdown_it.rules_block").debug("entering paragraph")
    logging.getLogger("some_new_library").warning("a library warning stays")
    logging.getLogger("nazaha.awareness").debug("our own debug line stays")
    err = capsys.readouterr().err
    assert "entering paragraph" not in err
    assert "a library warning stays" in err and "our own debug line stays" in err
