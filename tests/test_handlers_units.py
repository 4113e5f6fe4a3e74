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


async def test_session_keys_live_in_memory_and_expire():
    from nazaha.handlers.session_keys import SessionKeys

    now = [0.0]
    keys: "SessionKeys[bytes]" = SessionKeys(ttl_seconds=900, clock=lambda: now[0])
    ref = await keys.put(b"k" * 32)
    now[0] = 899
    assert await keys.get(ref) == b"k" * 32  # renews
    now[0] = 899 + 899
    assert await keys.get(ref) == b"k" * 32
    now[0] += 901
    assert await keys.get(ref) is None
    ref2 = await keys.put(b"x" * 32)
    await keys.drop(ref2)
    assert await keys.get(ref2) is None and await keys.get("unknown") is None


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


async def test_session_keys_sweep_clear_and_len():
    from nazaha.handlers.session_keys import SessionKeys

    now = [0.0]
    keys: "SessionKeys[bytes]" = SessionKeys(ttl_seconds=900, clock=lambda: now[0])
    old = await keys.put(b"o" * 32)
    now[0] = 600
    fresh = await keys.put(b"f" * 32)
    assert len(keys) == 2 and keys.sweep() == 0
    now[0] = 900  # the first one's time is up; nobody called put() or get() since
    assert keys.sweep() == 1 and len(keys) == 1
    assert await keys.get(old) is None and await keys.get(fresh) == b"f" * 32
    keys.clear()
    assert len(keys) == 0 and await keys.get(fresh) is None


async def test_safety_reads_live_in_memory_expire_and_are_forgotten():
    """Who acknowledged the safety notice is kept in memory only (never in the sealed
    preferences row), under a pseudonym, for the draft lifetime; /wipe and a restart forget
    it."""
    from nazaha.handlers.safety_reads import SafetyReads

    now = [0.0]
    reads = SafetyReads(b"p" * 32, ttl=3600, clock=lambda: now[0])
    assert not await reads.seen(1)
    await reads.acknowledge(1)
    await reads.acknowledge(2)
    assert await reads.seen(1) and await reads.seen(2) and not await reads.seen(3)
    await reads.acknowledge(987_654_321)
    assert all(len(key) == 64 and "987654321" not in key for key in reads._until)  # pseudonyms
    await reads.forget(987_654_321)
    now[0] = 3599
    assert await reads.seen(1)  # reading does not renew it
    await reads.forget(2)  # /wipe
    assert not await reads.seen(2)
    now[0] = 3600
    assert reads.sweep() == 1 and len(reads) == 0 and not await reads.seen(1)
    await reads.acknowledge(1)
    reads.clear()  # the process stops
    assert not await reads.seen(1)


async def test_restart_notice_is_due_once_per_account_in_its_window_only():
    import datetime as dt

    from nazaha.handlers.restart_notice import RestartNotice

    t0 = dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc)
    now = [t0]
    notice = RestartNotice(b"p" * 32, clock=lambda: now[0])
    assert not await notice.first_contact(1)  # no window: a first start, or long after a stop
    await notice.open_until(t0 + dt.timedelta(hours=24))
    assert await notice.first_contact(1) and await notice.first_contact(2)
    assert not await notice.first_contact(1)  # once per account per run
    assert len(notice) == 2
    now[0] = t0 + dt.timedelta(hours=23, minutes=59)
    assert await notice.first_contact(3)
    notice.sweep()
    assert len(notice) == 3  # still in the window
    now[0] = t0 + dt.timedelta(hours=24)
    assert not await notice.first_contact(4)  # the window closed: nobody is told any more
    assert notice.until is None and len(notice) == 0  # and nobody is remembered
    now[0] = t0 + dt.timedelta(hours=30)
    await notice.open_until(now[0] + dt.timedelta(hours=1))  # the next run
    assert await notice.first_contact(1)


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


def test_wipe_buttons_parse():
    assert cb.parse(cb.wipe()) == cb.Wipe() and cb.parse("w:chat") == cb.Wipe(None)
    assert cb.parse(cb.wipe(True)) == cb.Wipe(True) and cb.parse(cb.wipe(False)) == cb.Wipe(False)
    assert cb.parse("w:maybe") is None


async def test_flood_control_and_failures_never_post_in_a_group():
    """Flood control's warning and the failure notice go only to private chats."""

    from aiogram.types import Update


    def message(chat: dict) -> Update:
        return Update.model_validate({"update_id": 5, "message": {
            "message_id": 1, "date": 0, "chat": chat, "from": {"id": 9, "is_bot": False, "first_name": "A"},
            "text": "x"}})

    group = message({"id": -100, "type": "supergroup", "title": "G"})
    private = message({"id": 9, "type": "private", "first_name": "A"})

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[int] = []

        def send(self, chat_id: int, text: str, keyboard=None, **kwargs) -> None:
            self.sent.append(chat_id)

        def answer_callback(self, *args) -> None:
            pass

    from nazaha.bot.app import build_i18n

    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        await _flood_and_failure(throttle_group=group, private=private, Recorder=Recorder)


async def _flood_and_failure(throttle_group, private, Recorder) -> None:
    from types import SimpleNamespace

    from nazaha.handlers.middlewares import RecentUpdates, UnitOfWorkMiddleware

    group = throttle_group
    throttle = ThrottleMiddleware(b"p" * 32, rate=0.0, burst=0, clock=lambda: 0.0)
    user = SimpleNamespace(id=9)
    for update, expected in ((group, []), (private, [9])):
        outbox = Recorder()
        throttle._buckets.clear()
        await throttle(lambda e, d: None, update, {"event_from_user": user, "outbox": outbox})
        assert outbox.sent == expected

    sent: list[int] = []

    class FailingBot(SimpleNamespace):
        async def __call__(self, method, request_timeout=None):
            sent.append(method.chat_id)
            return True

    async def boom(event, data):
        raise RuntimeError("boom")

    middleware = UnitOfWorkMiddleware(RecentUpdates())
    bot = FailingBot(id=1)
    await middleware(boom, group, {"bot": bot, "uow": None})
    assert sent == []
    await middleware(boom, private.model_copy(update={"update_id": 6}), {"bot": bot, "uow": None})
    assert sent == [9]
