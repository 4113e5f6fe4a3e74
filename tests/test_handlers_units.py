"""Small pure pieces of the Telegram layer: callback data, message splitting, throttling."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers.middlewares import ThrottleMiddleware
from nazaha.handlers.outbox import split_for_telegram


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_callback_data_round_trips_and_rejects_forgeries():
    assert cb.parse(cb.choose("category", "bribery")) == flow.Choose("category", "bribery")
    assert cb.parse(cb.nav("back")) == flow.Back()
    assert cb.parse(cb.edit("when")) == flow.Edit("when")
    assert cb.parse(cb.confirm_cancel(True)) == flow.ConfirmCancel(True)
    assert cb.parse(cb.menu("report")) == cb.MenuAction("report")
    assert cb.parse(cb.language("en")) == cb.LanguageChoice("en")
    for forged in (None, "", "zz", "f:", "f:category", "n:explode", "x:maybe", "m:admin", "l:fr", "a" * 65):
        assert cb.parse(forged) is None


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20000))
def test_split_for_telegram_loses_nothing_and_respects_the_limit(text):
    pieces = split_for_telegram(text)
    assert "".join(pieces) == text
    assert all(utf16_len(p) <= 4096 for p in pieces)


def test_split_counts_utf16_units_like_telegram():
    emoji = "😀" * 3000  # 6000 UTF-16 units
    pieces = split_for_telegram(emoji)
    assert len(pieces) == 2 and all(utf16_len(p) <= 4096 for p in pieces)
    assert split_for_telegram("x" * 4096) == ["x" * 4096]


def test_throttle_allows_a_burst_then_refills_and_warns_once():
    now = [0.0]
    throttle = ThrottleMiddleware(b"p" * 32, rate=2.0, burst=3, clock=lambda: now[0])
    assert [throttle.allow("u") for _ in range(3)] == [(True, False)] * 3
    assert throttle.allow("u") == (False, True)
    assert throttle.allow("u") == (False, False)  # warned already
    assert throttle.allow("other") == (True, False)  # per user
    now[0] += 0.5  # one token back
    assert throttle.allow("u") == (True, False)
    assert throttle.allow("u") == (False, True)


def test_session_keys_live_in_memory_and_expire():
    from nazaha.handlers.session_keys import SessionKeys

    now = [0.0]
    keys: "SessionKeys[bytes]" = SessionKeys(ttl_seconds=900, clock=lambda: now[0])
    ref = keys.put(b"k" * 32)
    now[0] = 899
    assert keys.get(ref) == b"k" * 32  # renews
    now[0] = 899 + 899
    assert keys.get(ref) == b"k" * 32
    now[0] += 901
    assert keys.get(ref) is None
    ref2 = keys.put(b"x" * 32)
    keys.drop(ref2)
    assert keys.get(ref2) is None and keys.get("unknown") is None


def test_command_of_reads_commands_only():
    assert cb.command_of("/Report@nazaha_bot now") == "/report"
    assert cb.command_of("/start") == "/start"
    assert cb.command_of("report /start") == ""
    assert cb.command_of(None) == "" and cb.command_of("") == ""


def test_logs_withhold_exception_messages_and_mask_the_token(capsys):
    import logging

    from nazaha.bot.logs import configure_logging

    configure_logging("INFO", secrets=["123:SECRET-token"])
    log = logging.getLogger("nazaha.test")
    name = "Sam" + "ir"  # content only at run time, as user input is
    try:
        raise ValueError(f"user wrote: my name is {name}")
    except ValueError:
        log.exception("failed calling https://api.telegram.org/bot123:SECRET-token/getMe")
    err = capsys.readouterr().err
    assert "ValueError (message withheld)" in err and "Traceback" in err
    assert "Samir" not in err and "SECRET-token" not in err


def test_session_keys_sweep_clear_and_len():
    from nazaha.handlers.session_keys import SessionKeys

    now = [0.0]
    keys: "SessionKeys[bytes]" = SessionKeys(ttl_seconds=900, clock=lambda: now[0])
    old = keys.put(b"o" * 32)
    now[0] = 600
    fresh = keys.put(b"f" * 32)
    assert len(keys) == 2 and keys.sweep() == 0
    now[0] = 900  # the first one's time is up; nobody called put() or get() since
    assert keys.sweep() == 1 and len(keys) == 1
    assert keys.get(old) is None and keys.get(fresh) == b"f" * 32
    keys.clear()
    assert len(keys) == 0 and keys.get(fresh) is None


def test_recent_updates_claim_once_release_and_stay_bounded():
    from nazaha.handlers.middlewares import RecentUpdates

    recent = RecentUpdates(size=3)
    assert recent.claim(1, 10) is True
    assert recent.claim(1, 10) is False  # redelivered
    assert recent.claim(2, 10) is True  # another bot's update 10
    recent.release(1, 10)  # failed before anything was kept: a redelivery may try again
    assert recent.claim(1, 10) is True and recent.claim(1, 10) is False
    recent.release(9, 9)  # unknown: nothing happens
    for update_id in (11, 12, 13):
        assert recent.claim(1, update_id)
    assert recent.claim(2, 10) is True  # the oldest were forgotten: at most ``size`` kept
    assert recent.claim(1, 13) is False


async def test_unit_of_work_middleware_deduplicates_in_memory():
    from types import SimpleNamespace

    from aiogram.types import Update

    from nazaha.handlers.middlewares import RecentUpdates, UnitOfWorkMiddleware
    from nazaha.storage.unit_of_work import DuplicateUpdate

    class FakeUow:
        def __init__(self) -> None:
            self.commits = 0

        async def commit(self) -> None:
            self.commits += 1

    middleware = UnitOfWorkMiddleware(RecentUpdates())
    bot = SimpleNamespace(id=7_123_456_789)
    calls: list[int] = []

    def handler_that(outcome):
        async def handler(event, data):
            calls.append(event.update_id)
            if outcome is not None:
                raise outcome
            return "handled"

        return handler

    async def deliver(update_id: int, outcome=None) -> tuple[object, int]:
        uow = FakeUow()
        result = await middleware(handler_that(outcome), Update(update_id=update_id), {"bot": bot, "uow": uow})
        return result, uow.commits

    assert await deliver(1) == ("handled", 1)
    assert await deliver(1) == (None, 0)  # redelivered: not handled again, nothing committed
    assert calls == [1]

    # A failing handler releases the id: the redelivery is handled.
    assert await deliver(2, RuntimeError("boom")) == (None, 0)
    assert await deliver(2) == ("handled", 1)
    assert calls == [1, 2, 2]

    # A report-side write found the id claimed (another replica, or before a restart):
    # the update's own unit of work is dropped and the id stays taken.
    assert await deliver(3, DuplicateUpdate("claimed")) == (None, 0)
    assert await deliver(3) == (None, 0)
    assert calls == [1, 2, 2, 3]
