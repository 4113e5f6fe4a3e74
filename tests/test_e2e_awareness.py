"""End to end: Learn, subscriptions, /stop, quizzes, surveys, campaign and staff links, with
the real `nazaha bot` process against the sandbox emulator over HTTP; for a member linking
their own chat and testing a broadcast, the console too (on the same data dir).

The library used here is written into the database before the bot starts, as the console
would (origin "console", so the bot's sync of the content files leaves it alone), with a
position that puts its topic first whatever the content files hold.

The bot runs with NAZAHA_AGGREGATE_MIN_BATCH=1 (every answer, open or vote is written in a
batch of its own) and a flush every half second, so that counts can be seen here; the last
test restarts it with batches of 3 and must stay last."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio
from fastapi.testclient import TestClient

from nazaha.admin.app import create_app
from nazaha.awareness.broadcast_message import TEST_SURVEY_PREFIX, TEST_UNSUBSCRIBE_DATA, UNSUBSCRIBE_DATA
from nazaha.bot.settings import Settings
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.awareness_models import COUNT_BIAS
from tests.console_support import MovableClock, csrf_of, enrol
from tests.e2e_support import PASSPHRASE, TOKEN, BotProcess, Chat, press_callback, run_init

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

TOPIC = "e2e_topic"
ARTICLES = 8  # two pages of six
SURVEY = "E2ESURVEY"
WIPE_SURVEY = "E2EWIPE"
BATCH_SURVEY = "E2EBATCH"
TEST_SURVEY = "E2ETEST"  # answered only from a test send and then for real
STAFF_CODE = "e2e-staff-link-code-0001"
INVITATION_RE = re.compile(r"http://\S+/invite/\S+")
TEST_LABEL = "TEST of a broadcast draft that is not approved — only you received this"


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def seed_library(db_path: Path) -> None:
    """A topic of 8 articles and 2 quiz questions, an open and a closed survey, campaigns
    and a staff chat code, as the console would write them."""
    day = today()
    with sqlite3.connect(db_path, timeout=30) as db:
        db.execute("INSERT INTO awareness_topics (code, position, origin, hidden) VALUES (?, -1000, 'console', 0)", (TOPIC,))
        for language, title in (("en", "E2E topic"), ("ar", "موضوع الاختبار")):
            db.execute(
                "INSERT INTO awareness_topic_texts (topic, language, title, summary) VALUES (?, ?, ?, ?)",
                (TOPIC, language, title, "E2E summary" if language == "en" else "ملخص"),
            )
        for n in range(ARTICLES):
            cursor = db.execute(
                "INSERT INTO awareness_items (code, topic, kind, position, origin, published, updated_on) "
                "VALUES (?, ?, 'article', ?, 'console', 1, ?)",
                (f"e2e_article_{n}", TOPIC, n, day),
            )
            db.execute(
                "INSERT INTO awareness_item_texts (item_id, language, title, body, options, correct_option, sources) "
                "VALUES (?, 'en', ?, ?, '', NULL, ?)",
                (cursor.lastrowid, f"E2E article {n}", f"**Bold** body {n}", f"Source {n}"),
            )
        for n in range(2):
            cursor = db.execute(
                "INSERT INTO awareness_items (code, topic, kind, position, origin, published, updated_on) "
                "VALUES (?, ?, 'quiz', ?, 'console', 1, ?)",
                (f"e2e_quiz_{n}", TOPIC, 100 + n, day),
            )
            db.execute(
                "INSERT INTO awareness_item_texts (item_id, language, title, body, options, correct_option, sources) "
                "VALUES (?, 'en', ?, ?, ?, 1, '')",
                (cursor.lastrowid, f"E2E question {n}?", "Because *B* is right.", "Answer A\nAnswer B\nAnswer C"),
            )
        for code, status in ((SURVEY, "open"), ("E2ECLOSED", "closed"), (WIPE_SURVEY, "open"), (BATCH_SURVEY, "open"),
                             (TEST_SURVEY, "open")):
            cursor = db.execute(
                "INSERT INTO surveys (code, status, author_id, created_on, closes_on) VALUES (?, ?, 1, ?, NULL)",
                (code, status, day),
            )
            db.execute(
                "INSERT INTO survey_texts (survey_id, language, question, options) VALUES (?, 'en', ?, ?)",
                (cursor.lastrowid, f"Would you report corruption you witnessed? ({code})", "Yes\nNo\nNot sure"),
            )
            if status == "open":  # the console makes a row per option when it opens a survey
                for option in range(3):
                    db.execute(
                        "INSERT INTO survey_counts (survey_id, option, biased_count) VALUES (?, ?, ?)",
                        (cursor.lastrowid, option, COUNT_BIAS),
                    )
        for code, target, active in (("poster", TOPIC, 1), ("article3", "item:e2e_article_3", 1), ("old", TOPIC, 0)):
            db.execute(
                "INSERT INTO campaigns (code, name, target, active, created_on) VALUES (?, ?, ?, ?, ?)",
                (code, code, target, active, day),
            )
        # As SQLAlchemy writes UtcDateTime on SQLite: UTC, without an offset.
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)).replace(tzinfo=None).isoformat(sep=" ")
        db.execute(
            "INSERT INTO staff_chat_codes (code_hash, link_id, expires_at) VALUES (?, ?, ?)",
            (hashlib.sha256(STAFF_CODE.encode()).hexdigest(), "f" * 32, expires),
        )


class Deployment:
    def __init__(self, tmp: Path, server: SandboxServer, client: SandboxClient) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "var"
        self.server = server
        self.client = client
        self.bot = BotProcess(
            self.data_dir, server.url, tmp / "bot.log",
            extra_env={"NAZAHA_AGGREGATE_MIN_BATCH": "1", "NAZAHA_AGGREGATE_FLUSH_SECONDS": "0.5",
                       "NAZAHA_BROADCAST_CHECK_SECONDS": "0.5"},
        )
        self.invitation = ""  # the first administrator's, printed by `nazaha init`

    def db_rows(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "nazaha.db", timeout=30) as db:
            return db.execute(sql, params).fetchall()

    async def wait_rows(self, sql: str, expected: Callable[[list[tuple]], bool], timeout: float = 30.0) -> list[tuple]:
        """The rows once ``expected(rows)`` holds (writes land a moment after a reply)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.db_rows(sql)
            if expected(rows) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-awareness")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client)
        d.invitation = INVITATION_RE.search(run_init(d.data_dir, server.url).stdout).group(0)
        seed_library(d.data_dir / "nazaha.db")
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


# ---- helpers ----------------------------------------------------------------------------


async def wait_message(chat: Chat, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
    """The first message of the chat (sent or edited) for which ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    version = -1
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            texts = [(m["message_id"], (m.get("text") or m["kind"])[:80]) for m in await chat.messages()]
            raise AssertionError(f"no such message; chat: {texts}")
        try:
            data = await chat.client.wait_for_change(chat.user_id, version, timeout=min(remaining, 5.0))
        except (TimeoutError, asyncio.TimeoutError):
            continue
        version = data["version"]
        for message in data["messages"]:
            if not message["deleted"] and predicate(message):
                return message


async def wait_text(chat: Chat, message_id: int, needle: str) -> dict:
    """Message ``message_id`` once its text contains ``needle`` (an edit in place)."""
    return await wait_message(chat, lambda m: m["message_id"] == message_id and needle in (m.get("text") or ""))


def button(message: dict, label: str) -> str:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for b in row:
            if label in b["text"]:
                return b["callback_data"]
    labels = [b["text"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
    raise AssertionError(f"no button {label!r} in {labels}")


async def tap(chat: Chat, message: dict, label: str) -> None:
    await chat.press_data(message["message_id"], button(message, label))


async def open_learn(chat: Chat) -> dict:
    await chat.send("/learn")
    return await chat.expect("Learn about corruption")


async def open_topic(chat: Chat) -> dict:
    home = await open_learn(chat)
    await tap(chat, home, "E2E topic")
    return await wait_text(chat, home["message_id"], "E2E summary")


# ---- browsing ---------------------------------------------------------------------------


async def test_browse_topics_article_and_the_next_page(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    topic = await open_topic(chat)
    assert "Page 1 of 2" in topic["text"]
    assert button(topic, "E2E article 0").startswith("aw:it:")
    assert "E2E article 6" not in str(topic["reply_markup"])

    await tap(chat, topic, "E2E article 0")
    article = await wait_text(chat, topic["message_id"], "E2E article 0\n\nBold body 0")
    assert article["text"] == "E2E article 0\n\nBold body 0\n\nSources:\n• Source 0"
    kinds = {(e["type"], e["offset"], e["length"]) for e in article["entities"]}
    assert {("bold", 0, 13), ("bold", 15, 4)} <= kinds
    assert article["parse_mode"] is None
    assert button(article, "Quiz me").startswith("aw:quiz:")

    await tap(chat, article, "Next article")
    await wait_text(chat, topic["message_id"], "E2E article 1\n\nBold body 1")
    back = await wait_message(chat, lambda m: m["message_id"] == topic["message_id"] and "Back to the topic" in str(m["reply_markup"]))
    await tap(chat, back, "Back to the topic")
    topic_again = await wait_text(chat, topic["message_id"], "E2E summary")
    await tap(chat, topic_again, "Next")
    second = await wait_text(chat, topic["message_id"], "Page 2 of 2")
    assert button(second, "E2E article 6") and button(second, "E2E article 7")
    assert "E2E article 0" not in str(second["reply_markup"])
    # Everything happened in one message, edited in place.
    assert [m for m in await chat.bot_messages_since(topic["message_id"])] == []


async def test_learn_from_the_main_menu_button(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/start")
    await chat.expect("What would you like to do?")
    await press_callback(chat, "m:learn")
    home = await chat.expect("Learn about corruption")
    assert button(home, "E2E topic") == f"aw:top:{TOPIC}:0"
    assert "coming soon" not in home["text"]


# ---- subscriptions ----------------------------------------------------------------------


def subscriber_rows(deployment: Deployment) -> list[tuple]:
    return deployment.db_rows(
        "SELECT s.language, s.sealed_chat, s.chat_key, group_concat(t.topic) FROM subscribers s "
        "LEFT JOIN subscriber_topics t ON t.subscriber_id = s.id GROUP BY s.id"
    )


async def test_subscribe_to_a_topic_see_it_ticked_and_stop(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    before = len(subscriber_rows(deployment))
    topic = await open_topic(chat)
    await tap(chat, topic, "E2E article 2")
    article = await wait_text(chat, topic["message_id"], "E2E article 2\n\n")
    await tap(chat, article, "Subscribe to this topic")
    # Not subscribed yet: first what subscribing means, then "Yes".
    consent = await wait_text(chat, topic["message_id"], "Telegram id")
    assert "/stop" in consent["text"] and "apart from any report" in consent["text"]
    await tap(chat, consent, "Yes, subscribe")
    ticked = await wait_text(chat, topic["message_id"], "E2E article 2\n\n")
    ticked = await wait_message(chat, lambda m: m["message_id"] == topic["message_id"] and "Subscribed to this topic" in str(m["reply_markup"]))
    assert button(ticked, "✅ Subscribed to this topic")

    rows = await deployment.wait_rows(
        "SELECT count(*) FROM subscribers", lambda r: r[0][0] == before + 1
    )
    assert rows[0][0] == before + 1
    mine = [r for r in subscriber_rows(deployment) if r[3] == TOPIC]
    assert mine and mine[-1][0] == "en"
    # The chat id is sealed, and the lookup key is a keyed hash.
    assert str(chat.user_id).encode() not in mine[-1][1] and str(chat.user_id) not in mine[-1][2]

    await chat.send("/subscribe")
    screen = await chat.expect("Subscriptions")
    assert button(screen, f"✅ E2E topic") == f"aw:off:s:0:{TOPIC}"
    assert "You are subscribed to: \u201c\u2068E2E topic\u2069\u201d." in screen["text"]

    await chat.send("/stop")
    await chat.expect("You are unsubscribed")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)
    assert deployment.db_rows("SELECT count(*) FROM subscribers")[0][0] == before
    await chat.send("/stop")
    await chat.expect("You are not subscribed")


async def test_subscriptions_screen_toggles_and_the_unsubscribe_button_works_anywhere(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    before = len(subscriber_rows(deployment))
    await chat.send("/subscribe")
    screen = await chat.expect("Subscriptions")
    assert "Telegram id" in screen["text"] and "not subscribed" in screen["text"]
    await tap(chat, screen, "E2E topic")
    ticked = await wait_text(chat, screen["message_id"], "You are subscribed to: \u201c\u2068E2E topic\u2069\u201d")
    assert button(ticked, "✅ E2E topic")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before + 1)

    # The language follows the bot's: /language -> Arabic updates the subscription.
    await chat.send("/language")
    await chat.expect("Choose your language")
    await press_callback(chat, "l:ar")
    rows = await deployment.wait_rows(
        "SELECT language FROM subscribers ORDER BY id DESC LIMIT 1", lambda r: r and r[0][0] == "ar"
    )
    assert rows[0][0] == "ar"

    # "Unsubscribe" under a broadcast (the sender puts aw:unsub there), pressed in the
    # middle of a report: the subscription goes, the report stays.
    await chat.send("/report")
    await press_callback(chat, "n:continue:safety")
    question = await wait_message(chat, lambda m: m["from_bot"] and "f:category:" in str(m.get("reply_markup")))
    await chat.press_data(screen["message_id"], "aw:unsub")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)
    assert deployment.db_rows("SELECT count(*) FROM subscribers")[0][0] == before
    # Its keyboard is taken away, and the question is asked again, as /stop does.
    await wait_message(chat, lambda m: m["message_id"] == screen["message_id"] and not m.get("reply_markup"))
    await wait_message(
        chat, lambda m: m["from_bot"] and m["message_id"] > question["message_id"] and "f:category:" in str(m.get("reply_markup"))
    )
    await press_callback(chat, "f:category:bribery")
    await wait_message(chat, lambda m: m["from_bot"] and "f:sector:" in str(m.get("reply_markup")))
    assert question


async def test_wipe_also_ends_the_subscription(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    before = len(subscriber_rows(deployment))
    await chat.send("/subscribe")
    screen = await chat.expect("Subscriptions")
    await tap(chat, screen, "Subscribe to all topics")
    everything = await wait_text(chat, screen["message_id"], "You are subscribed to every topic.")
    # As after any other subscription: the language the messages come in (trial).
    assert "You are subscribed to every topic.\nMessages come in English, the language you chose" in everything["text"]
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before + 1)
    await chat.send("/wipe")
    await press_callback(chat, "w:yes")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)
    assert deployment.db_rows("SELECT count(*) FROM subscribers")[0][0] == before


async def test_stop_in_the_middle_of_a_report_keeps_the_draft(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/report")
    await press_callback(chat, "n:continue:safety")
    await chat.expect("What kind of corruption is it?")
    await press_callback(chat, "f:category:bribery")
    await chat.expect("Which kind of institution is involved?")
    await chat.send("/stop")
    await chat.expect("You are not subscribed")
    # The question is asked again, and the report goes on from where it was.
    await chat.expect("Which kind of institution is involved?")
    await press_callback(chat, "f:sector:local_council")
    await chat.expect("In which governorate")


# ---- quizzes ----------------------------------------------------------------------------


async def test_quiz_me_sends_an_anonymous_quiz_poll_and_counts_only(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    topic = await open_topic(chat)
    await tap(chat, topic, "Quiz me")
    poll_message = await wait_message(chat, lambda m: m["from_bot"] and m["kind"] == "poll")
    sent = (await deployment.client.calls("sendPoll"))[-1]["params"]
    assert sent["type"] == "quiz" and sent["is_anonymous"] in (True, "true")
    assert sent["question"] == "E2E question 0?"
    assert "poll_answer" not in str(await deployment.client.calls("getUpdates"))
    # Nothing is written when a poll is sent: which poll stands for which item is in memory.
    assert quiz_counts(deployment) == {}
    await deployment.client.vote_poll(chat.user_id, poll_message["message_id"], [1])
    rows = await deployment.wait_rows(QUIZ_COUNTS, lambda r: dict(r) == {0: 0, 1: 1, 2: 0})
    assert dict(rows) == {0: 0, 1: 1, 2: 0}
    columns = [c[1] for c in deployment.db_rows("PRAGMA table_info(quiz_counts)")]
    assert not any("chat" in c or "user" in c or "poll" in c for c in columns)


QUIZ_COUNTS = (
    f"SELECT q.option, q.biased_count - {COUNT_BIAS} FROM quiz_counts q "
    "JOIN awareness_items i ON i.id = q.item_id WHERE i.code = 'e2e_quiz_0'"
)


def quiz_counts(deployment: Deployment) -> dict[int, int]:
    return dict(deployment.db_rows(QUIZ_COUNTS))


# ---- surveys ----------------------------------------------------------------------------


def survey_counts_sql(code: str) -> str:
    return (
        f"SELECT c.option, c.biased_count - {COUNT_BIAS} FROM survey_counts c "
        f"JOIN surveys s ON s.id = c.survey_id WHERE s.code = '{code}'"
    )


def survey_counts(deployment: Deployment, code: str = SURVEY) -> dict[int, int]:
    return dict(deployment.db_rows(survey_counts_sql(code)))


def survey_markers(deployment: Deployment, code: str) -> list[tuple]:
    return deployment.db_rows(
        "SELECT m.marker, m.expires_at FROM survey_answer_markers m JOIN surveys s ON s.id = m.survey_id WHERE s.code = ?",
        code,
    )


async def test_a_survey_answer_is_counted_once_in_aggregate(deployment: Deployment):
    first = await Chat.open(deployment.client, "en")
    home = await open_learn(first)
    await tap(first, home, "Have your say")
    listing = await wait_text(first, home["message_id"], "Short anonymous surveys")
    assert "E2ECLOSED" not in str(listing["reply_markup"])
    await tap(first, listing, f"({SURVEY})")
    survey = await wait_text(first, home["message_id"], f"({SURVEY})")
    assert button(survey, "Yes") == f"sv:{SURVEY}:0"
    await tap(first, survey, "Not sure")
    await first.expect("Thank you, your answer was counted anonymously.")
    await tap(first, survey, "Yes")
    await first.expect("You already answered this survey.")

    # Another citizen answers from the buttons under a broadcast.
    second = await Chat.open(deployment.client, "en")
    await second.send("/start")
    menu = await second.expect("What would you like to do?")
    await second.press_data(menu["message_id"], f"sv:{SURVEY}:2")
    await second.expect("Thank you, your answer was counted anonymously.")
    await second.press_data(menu["message_id"], "sv:E2ECLOSED:0")
    await second.expect("This survey is closed.")

    rows = await deployment.wait_rows(survey_counts_sql(SURVEY), lambda r: dict(r) == {0: 0, 1: 0, 2: 2})
    assert dict(rows) == {0: 0, 1: 0, 2: 2}
    markers = survey_markers(deployment, SURVEY)
    assert len(markers) == 2
    assert all(str(c.user_id) not in marker for marker, _ in markers for c in (first, second))
    assert all(expires.endswith(":00:00.000000") or expires.endswith(":00:00") for _, expires in markers)
    assert deployment.db_rows("SELECT count(*) FROM survey_counts c JOIN surveys s ON s.id = c.survey_id WHERE s.code = 'E2ECLOSED'")[0][0] == 0


# ---- campaign and staff links ---------------------------------------------------------------


async def test_a_campaign_link_opens_its_content_and_is_counted_per_day(deployment: Deployment):
    for payload in ("c_poster", "c_PoStEr"):  # codes do not depend on case (trial)
        chat = await Chat.open(deployment.client, "en")
        await chat.send(f"/start {payload}")
        topic = await chat.expect("E2E summary")
        assert topic["text"].startswith("E2E topic")
    # Written by the periodic flush (here every half second), never at the moment of an open.
    rows = await deployment.wait_rows(
        f"SELECT d.day, d.biased_opens - {COUNT_BIAS} FROM campaign_days d JOIN campaigns c ON c.id = d.campaign_id "
        "WHERE c.code = 'poster'",
        lambda r: r == [(today(), 2)],
    )
    assert rows == [(today(), 2)]

    chat = await Chat.open(deployment.client, "en")
    await chat.send("/start c_article3")
    await chat.expect("E2E article 3\n\nBold body 3")
    await chat.send("/start c_old")  # inactive: just the welcome
    await chat.expect("Welcome to Nazaha")
    await chat.send("/start c_nonexistent")
    await chat.expect("Welcome to Nazaha")
    assert deployment.db_rows(
        "SELECT count(*) FROM campaign_days d JOIN campaigns c ON c.id = d.campaign_id WHERE c.code = 'old'"
    )[0][0] == 0  # inactive: no row (active ones get one per day, at 0 until opened)


async def test_wipe_forgets_the_accounts_survey_markers(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/start")
    menu = await chat.expect("What would you like to do?")
    await chat.press_data(menu["message_id"], f"sv:{WIPE_SURVEY}:1")
    await chat.expect("Thank you, your answer was counted anonymously.")
    assert len(survey_markers(deployment, WIPE_SURVEY)) == 1
    await chat.send("/wipe")
    await press_callback(chat, "w:yes")
    await deployment.wait_rows(
        f"SELECT count(*) FROM survey_answer_markers m JOIN surveys s ON s.id = m.survey_id WHERE s.code = '{WIPE_SURVEY}'",
        lambda r: r[0][0] == 0,
    )
    assert survey_markers(deployment, WIPE_SURVEY) == []
    assert survey_counts(deployment, WIPE_SURVEY) == {0: 0, 1: 1, 2: 0}  # the answer stays, counted


def confirmation_of(message: dict) -> str:
    """The 6-digit code in the bot's answer to /start l_<code>."""
    return re.search(r"\b(\d{6})\b", message["text"]).group(1)


def links_of(deployment: Deployment, table: str, link_id: str) -> int:
    return deployment.db_rows(f"SELECT count(*) FROM {table} WHERE link_id = ?", link_id)[0][0]


async def test_opening_a_staff_link_gives_a_code_and_links_nothing(deployment: Deployment):
    """Replaces test_a_volunteer_links_their_chat_once: whoever opens the link is no longer
    linked; the chat gets a code for the console, kept only as a hash, and /stop drops it."""
    chat = await Chat.open(deployment.client, "en")
    await chat.send(f"/start l_{STAFF_CODE}")
    reply = await chat.expect("type this code on the console page")
    assert "nothing is linked until it is typed" in reply["text"] and "give this code to no one" in reply["text"]
    code = confirmation_of(reply)
    link_id = "f" * 32
    assert links_of(deployment, "staff_chats", link_id) == 0
    (row,) = deployment.db_rows(
        "SELECT code_hash, sealed_name, attempts, sealed_chat FROM staff_chat_confirmations WHERE link_id = ?", link_id)
    assert code not in row[0] and row[1] is None and row[2] == 0  # the seeded code had no reply key
    assert str(chat.user_id).encode() not in row[3]
    await chat.send(f"/start l_{STAFF_CODE}")
    await chat.expect("This link has expired or was already used")
    await chat.send("/stop")  # "stop messaging me": the code waiting for the console goes too
    await chat.expect("This chat is no longer linked to a console account")
    await deployment.wait_rows(
        f"SELECT count(*) FROM staff_chat_confirmations WHERE link_id = '{link_id}'", lambda r: r[0][0] == 0)
    assert links_of(deployment, "staff_chat_confirmations", link_id) == 0


# ---- a console member's own chat: linked with the bot's code, tests that change nothing ----


class RealTimeClock(MovableClock):
    """The console's clock at the real time (the bot's), movable ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


class Console:
    """The console app on the deployment's data dir, one signed-in administrator. Requests
    run in a worker thread so that the sandbox, served by this loop, keeps answering."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def get(self, path: str):
        return await asyncio.to_thread(self.client.get, path)

    async def post(self, path: str, data: dict) -> str:
        """The form posted with the page's CSRF token; where it redirects to."""
        page = await self.get("/awareness")  # the session's token
        answer = await asyncio.to_thread(self.client.post, path, data={"csrf": csrf_of(page.text), **data})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    async def link_start(self) -> str:
        """Link my Telegram: the `/start l_<code>` message the page shows."""
        assert await self.post("/awareness/telegram/link", {}) == "/awareness#telegram"
        page = (await self.get("/awareness")).text
        return re.search(r'<code id="telegram-start">(/start l_[A-Za-z0-9_-]+)</code>', page).group(1)

    async def type_code(self, code: str) -> str:
        return await self.post("/awareness/telegram/confirm", {"code": code})

    async def link(self, chat: Chat) -> None:
        """The member's own chat opens a new link; the member types the bot's code."""
        await chat.send(await self.link_start())
        code = confirmation_of(await chat.expect("type this code on the console page"))
        assert await self.type_code(code) == "/awareness?done=linked#telegram"

    async def linked(self) -> bool:
        return 'id="telegram-linked"' in (await self.get("/awareness")).text


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def console(deployment: Deployment):
    settings = Settings(
        _env_file=None, data_dir=deployment.data_dir, kdf_profile="testing", bot_username="nazaha_e2e_bot",
        console_dir=deployment.data_dir.parent / f"{deployment.data_dir.name}-console",
    )
    clock = RealTimeClock()
    client = TestClient(create_app(settings, clock=clock), base_url="https://testserver", follow_redirects=False,
                        headers={"Accept-Language": "en"})
    await asyncio.to_thread(client.__enter__)
    try:
        await asyncio.to_thread(enrol, client, deployment.invitation, clock, team_passphrase=PASSPHRASE)
        c = Console(client)
        assert await c.post("/locale", {"locale": "en", "back": "/awareness"})
        yield c
    finally:
        await asyncio.to_thread(client.__exit__, None, None, None)


def staff_links(deployment: Deployment) -> int:
    return deployment.db_rows("SELECT count(*) FROM staff_chats")[0][0]


async def test_a_member_s_link_works_only_with_the_code_typed_in_the_console(deployment: Deployment, console: Console):
    # Someone else opens the member's link (a citizen it was handed to): a code, no link.
    start = await console.link_start()
    citizen = await Chat.open(deployment.client, "en")
    await citizen.send(start)
    code = confirmation_of(await citizen.expect("type this code on the console page"))
    assert staff_links(deployment) == 0 and not await console.linked()
    assert 'id="code-waiting"' in (await console.get("/awareness")).text
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert await console.type_code(wrong) == "/awareness?error=confirm_wrong&left=4#confirm-error"
    assert staff_links(deployment) == 0 and not await console.linked()
    # The link is used up: the member's own chat cannot take it over.
    me = Chat(deployment.client, await deployment.client.create_user(first_name="Amal", language_code="en"))
    await me.send(start)
    await me.expect("This link has expired or was already used")

    # A new link, opened in the member's own chat, the code typed: linked, named.
    await console.link(me)
    assert staff_links(deployment) == 1 and await console.linked()
    page = (await console.get("/awareness")).text
    assert re.search(r'id="telegram-name">.*<bdi>Amal</bdi>', page)
    assert deployment.db_rows("SELECT count(*) FROM staff_chat_confirmations")[0][0] == 0
    assert not any(b"Amal" in (row[0] or b"") for row in deployment.db_rows("SELECT sealed_chat FROM staff_chats"))

    # /stop in that chat ends the link; so does /wipe; so does Unsubscribe.
    await me.send("/stop")
    await me.expect("This chat is no longer linked to a console account")
    await deployment.wait_rows("SELECT count(*) FROM staff_chats", lambda r: r[0][0] == 0)
    assert not await console.linked() and 'id="telegram-name"' not in (await console.get("/awareness")).text
    await console.link(me)
    await me.send("/wipe")
    await press_callback(me, "w:yes")
    await deployment.wait_rows("SELECT count(*) FROM staff_chats", lambda r: r[0][0] == 0)
    assert not await console.linked()
    await console.link(me)
    confirmation = await me.expect("")  # any of the bot's messages: the button's data is what counts
    await me.press_data(confirmation["message_id"], UNSUBSCRIBE_DATA)
    await me.expect("This chat is no longer linked to a console account")
    await deployment.wait_rows("SELECT count(*) FROM staff_chats", lambda r: r[0][0] == 0)
    assert not await console.linked()


async def test_a_test_send_is_labelled_and_its_buttons_change_nothing(deployment: Deployment, console: Console):
    me = Chat(deployment.client, await deployment.client.create_user(first_name="Amal", language_code="en"))
    await console.link(me)
    await me.send("/subscribe")
    screen = await me.expect("Subscriptions")
    await tap(me, screen, "Subscribe to all topics")
    await wait_text(me, screen["message_id"], "You are subscribed to every topic.")
    subscribers = await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] > 0)
    (survey_id,), = deployment.db_rows("SELECT id FROM surveys WHERE code = ?", TEST_SURVEY)
    page = await console.get("/awareness/broadcasts/new")
    answer = await asyncio.to_thread(console.client.post, "/awareness/broadcasts", data={
        "csrf": csrf_of(page.text), "name": "E2E test send", "language": ["en"],
        "body_en": "Have your **say**", "survey": str(survey_id)})
    broadcast = answer.headers["location"]
    assert await console.post(broadcast + "/test", {}) == broadcast + "?done=test_queued"

    # First the label, then the message: with the survey's options and Unsubscribe, test data.
    label = await me.expect(TEST_LABEL)
    message = await wait_message(me, lambda m: m["from_bot"] and "Have your say" in (m.get("text") or ""))
    assert message["message_id"] > label["message_id"]
    data = [b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row]
    assert data == [f"{TEST_SURVEY_PREFIX}:{TEST_SURVEY}:{n}" for n in range(3)] + [TEST_UNSUBSCRIBE_DATA]
    assert all(len(d.encode()) <= 64 for d in data)

    # The console shows it sent; then the bot's database holds no trace of the test.
    deadline = asyncio.get_running_loop().time() + 30
    while "Sent" not in re.findall(r'<td class="test-state">([^<]+)</td>', (await console.get(broadcast)).text):
        assert asyncio.get_running_loop().time() < deadline, "the test was not shown as sent"
        await asyncio.sleep(0.2)
    assert deployment.db_rows("SELECT count(*) FROM broadcast_test_sends")[0][0] == 0

    # Its survey answer is not counted (and leaves no marker: the real answer is taken).
    assert await press_for_notice(me, message["message_id"], data[0]) == "This was a test: nothing was counted or changed."
    assert await press_for_notice(me, message["message_id"], TEST_UNSUBSCRIBE_DATA) == (
        "This was a test: nothing was counted or changed.")
    await me.press_data(message["message_id"], f"sv:{TEST_SURVEY}:1")
    await me.expect("Thank you, your answer was counted anonymously.")
    rows = await deployment.wait_rows(survey_counts_sql(TEST_SURVEY), lambda r: sum(n for _, n in r) > 0)
    assert dict(rows) == {0: 0, 1: 1, 2: 0}
    # Its Unsubscribe unsubscribed no one and kept the link.
    assert deployment.db_rows("SELECT count(*) FROM subscribers") == subscribers
    assert staff_links(deployment) == 1 and await console.linked()


async def test_help_and_commands_name_learn_subscribe_and_stop(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/help")
    help_message = await chat.expect("/learn")
    assert "/subscribe" in help_message["text"] and "/stop" in help_message["text"]
    await chat.send("/start")
    assert "/learn" in (await chat.expect("Welcome to Nazaha"))["text"]
    for _ in range(200):  # registered at start-up
        if len(await deployment.client.calls("setMyShortDescription")) >= 3:
            break
        await asyncio.sleep(0.1)
    for language in ("en", "ar"):
        names = [c["command"] for c in await deployment.client.commands(language_code=language)]
        assert {"learn", "subscribe", "stop"} <= set(names)


# ---- what a tester found: stale buttons, a report in progress, quizzes, typed text ---------


async def press_for_notice(chat: Chat, message_id: int, data: str, timeout: float = 30.0) -> str | None:
    """Press a button and return the notice the bot answered it with (None: no text)."""
    chat.last_seen = max(m["message_id"] for m in await chat.messages())
    pressed = await chat.client.press(chat.user_id, message_id, data)
    deadline = time.monotonic() + timeout
    while True:
        answer = await chat.client.callback_answer(pressed["callback_query_id"])
        if answer["answered"]:
            return (answer.get("answer") or {}).get("text")
        if time.monotonic() > deadline:
            raise AssertionError(f"the button {data!r} was not answered")
        await asyncio.sleep(0.05)


async def current(chat: Chat, message_id: int) -> dict:
    return next(m for m in await chat.messages() if m["message_id"] == message_id)


# The topics of the newest subscription (the tests here run one at a time), comma-separated.
NEWEST_TOPICS = (
    "SELECT group_concat(t.topic) FROM subscribers s LEFT JOIN subscriber_topics t "
    "ON t.subscriber_id = s.id WHERE s.id = (SELECT max(id) FROM subscribers)"
)


async def test_an_old_subscription_button_after_stop_changes_nothing(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    before = len(subscriber_rows(deployment))
    await chat.send("/subscribe")
    screen = await chat.expect("Subscriptions")
    notice = await press_for_notice(chat, screen["message_id"], button(screen, "E2E topic"))
    assert notice == "Subscribed to \u201cE2E topic\u201d"
    ticked = await wait_text(chat, screen["message_id"], "You are subscribed to: \u201c\u2068E2E topic\u2069\u201d")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before + 1)

    await chat.send("/stop")
    await chat.expect("You are unsubscribed")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)

    # The old screen still shows ✅: its button asks to remove the topic, which is already
    # so. Nothing changes; the real state comes as a new message at the bottom.
    notice = await press_for_notice(chat, ticked["message_id"], button(ticked, "✅ E2E topic"))
    assert notice and "out of date" in notice
    fresh = await chat.expect("You are not subscribed. Tap a topic")
    assert fresh["message_id"] > ticked["message_id"]
    assert deployment.db_rows("SELECT count(*) FROM subscribers")[0][0] == before  # replies follow commits
    assert "You are subscribed to" in (await current(chat, ticked["message_id"]))["text"]  # not edited

    # From the fresh screen each button does what it shows, with a short notice.
    notice = await press_for_notice(chat, fresh["message_id"], button(fresh, "E2E topic"))
    assert notice == "Subscribed to \u201cE2E topic\u201d"
    again = await wait_text(chat, fresh["message_id"], "You are subscribed to: \u201c\u2068E2E topic\u2069\u201d")
    notice = await press_for_notice(chat, fresh["message_id"], button(again, "✅ E2E topic"))
    assert notice == "Unsubscribed from \u201cE2E topic\u201d"
    await chat.expect("You removed your last topic")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)


async def test_unsubscribing_works_in_the_middle_of_a_report(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    before = len(subscriber_rows(deployment))
    await chat.send("/subscribe")
    screen = await chat.expect("Subscriptions")
    await tap(chat, screen, "Subscribe to all topics")
    everything = await wait_text(chat, screen["message_id"], "You are subscribed to every topic.")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before + 1)

    await chat.send("/report")
    await press_callback(chat, "n:continue:safety")
    await chat.expect("What kind of corruption is it?")

    # A ticked topic on the old screen: removed, the screen shows it, the question is back.
    notice = await press_for_notice(chat, screen["message_id"], button(everything, "✅ E2E topic"))
    assert notice == "Unsubscribed from \u201cE2E topic\u201d"
    fewer = await wait_message(
        chat, lambda m: m["message_id"] == screen["message_id"] and "every topic" not in (m.get("text") or "")
    )
    await chat.expect("What kind of corruption is it?")
    rows = await deployment.wait_rows(NEWEST_TOPICS, lambda r: TOPIC not in (r[0][0] or ""))
    assert rows[0][0] and TOPIC not in rows[0][0]  # the other topics stay

    # "Unsubscribe from everything": the subscription goes, the draft stays.
    notice = await press_for_notice(chat, screen["message_id"], button(fewer, "Unsubscribe from everything"))
    assert notice == "Unsubscribed from every topic"
    await chat.expect("What kind of corruption is it?")
    await deployment.wait_rows("SELECT count(*) FROM subscribers", lambda r: r[0][0] == before)
    assert deployment.db_rows("SELECT count(*) FROM subscribers")[0][0] == before
    await wait_text(chat, screen["message_id"], "You are not subscribed")
    texts = [m.get("text") or "" for m in await chat.bot_messages_since(screen["message_id"])]
    assert not any("expired" in t for t in texts), texts
    await press_callback(chat, "f:category:bribery")
    await chat.expect("Which kind of institution is involved?")


async def test_learn_buttons_in_a_report_get_what_learn_gets(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    subscribers = len(subscriber_rows(deployment))
    topic = await open_topic(chat)
    article = button(topic, "E2E article 0")
    await chat.send("/start")
    menu = await chat.expect("What would you like to do?")
    await chat.send("/report")
    await press_callback(chat, "n:continue:safety")
    await chat.expect("What kind of corruption is it?")
    await chat.send("/learn")
    said = (await chat.expect("You are in the middle of a report"))["text"]
    polls = len(await deployment.client.calls("sendPoll", chat_id=chat.user_id))

    taps = [
        (topic["message_id"], aw_data) for aw_data in (
            f"aw:top:{TOPIC}:0", article, f"aw:quiz:{TOPIC}:0", f"aw:quiz:{TOPIC}:1", "aw:home:0",
            "aw:subs:0", f"aw:on:s:0:{TOPIC}", "aw:all", "aw:svs",
        )
    ] + [(menu["message_id"], "m:learn")]
    for message_id, data in taps:
        await chat.press_data(message_id, data)
        answer = await chat.expect("You are in the middle of a report")
        assert answer["text"] == said, data
        await chat.expect("What kind of corruption is it?")
    texts = [m.get("text") or "" for m in await chat.bot_messages_since(menu["message_id"])]
    assert not any("expired" in t for t in texts), texts
    assert len(await deployment.client.calls("sendPoll", chat_id=chat.user_id)) == polls
    assert len(subscriber_rows(deployment)) == subscribers  # "subscribe" waits for the report

    # "Cancel this report?" has no Back button: its help does not name one.
    await press_callback(chat, "n:cancel:category")
    await chat.expect("Discard this report?")
    await chat.send("/subscribe")
    help_text = (await chat.expect("You are in the middle of a report"))["text"]
    assert "Back" not in help_text and "buttons" in help_text
    await chat.expect("Discard this report?")
    await press_callback(chat, "x:no")
    await chat.expect("What kind of corruption is it?")


async def test_a_quiz_ends_and_each_next_question_is_sent_once(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    topic = await open_topic(chat)
    await tap(chat, topic, "Quiz me")
    first = await wait_message(chat, lambda m: m["from_bot"] and m["kind"] == "poll")
    next_data = button(first, "Next question")
    await chat.press_data(first["message_id"], next_data)
    second = await wait_message(chat, lambda m: m["kind"] == "poll" and m["message_id"] > first["message_id"])
    assert not (second.get("reply_markup") or {}).get("inline_keyboard")  # the last question
    end = await chat.expect("That was the last question of this topic")
    assert "anonymous" in end["text"] and end["message_id"] > second["message_id"]
    assert button(end, "Back to the topic") == f"aw:top:{TOPIC}:0" and button(end, "Topics") == "aw:home:0"
    # The first poll lost its buttons; tapping its old "Next question" again sends nothing.
    await wait_message(chat, lambda m: m["message_id"] == first["message_id"] and not m.get("reply_markup"))
    polls = len(await deployment.client.calls("sendPoll", chat_id=chat.user_id))
    notice = await press_for_notice(chat, first["message_id"], next_data)
    assert notice == "The next question is already below."
    assert len(await deployment.client.calls("sendPoll", chat_id=chat.user_id)) == polls

    # "Back to the topic" under a poll: a new message (a poll cannot become text), and the
    # bot never asks Telegram for an edit it refuses.
    await chat.press_data(first["message_id"], f"aw:top:{TOPIC}:0")
    topic_again = await chat.expect("E2E summary")
    assert topic_again["message_id"] > end["message_id"]
    await tap(chat, end, "Back to the topic")
    await wait_text(chat, end["message_id"], "E2E summary")  # a text message is edited in place
    refused = [c for c in await deployment.client.calls("editMessageText", chat_id=chat.user_id) if not c["ok"]]
    assert refused == []


async def test_text_typed_while_browsing_learn_gets_a_hint(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await open_topic(chat)
    await chat.send("what is wasta?")
    hint = await chat.expect("choose a topic")
    home = await chat.expect("Learn about corruption")
    assert button(home, "E2E topic") and hint["message_id"] < home["message_id"]
    # Elsewhere, text gets the main menu as before.
    await chat.send("/start")
    await chat.expect("Welcome to Nazaha")
    await chat.send("hello")
    await chat.expect("What would you like to do?")
    assert not [m for m in await chat.bot_messages_since(chat.last_seen) if "choose a topic" in (m.get("text") or "")]


# ---- batches (keep last: restarts the bot) ------------------------------------------------


async def answer_as_new_citizen(deployment: Deployment, code: str, option: int) -> None:
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/start")
    menu = await chat.expect("What would you like to do?")
    await chat.press_data(menu["message_id"], f"sv:{code}:{option}")
    await chat.expect("Thank you, your answer was counted anonymously.")


async def test_answers_are_written_only_in_batches_of_min_batch(deployment: Deployment):
    """With NAZAHA_AGGREGATE_MIN_BATCH=3: two answers are in memory only (their markers are
    written), the third writes all three at once; a graceful stop drops a smaller batch."""
    deployment.bot.stop()
    deployment.bot.extra_env["NAZAHA_AGGREGATE_MIN_BATCH"] = "3"
    await deployment.bot.launch()
    for option in (0, 2):
        await answer_as_new_citizen(deployment, BATCH_SURVEY, option)
    assert len(survey_markers(deployment, BATCH_SURVEY)) == 2
    assert survey_counts(deployment, BATCH_SURVEY) == {0: 0, 1: 0, 2: 0}
    await answer_as_new_citizen(deployment, BATCH_SURVEY, 2)
    rows = await deployment.wait_rows(survey_counts_sql(BATCH_SURVEY), lambda r: sum(n for _, n in r) == 3)
    assert dict(rows) == {0: 1, 1: 0, 2: 2}

    await answer_as_new_citizen(deployment, BATCH_SURVEY, 1)
    deployment.bot.stop()  # SIGINT: a graceful stop, one answer waiting
    assert "1 counted answers, opens or votes below the batch size dropped at shutdown" in (
        deployment.bot.log_path.read_text(errors="replace")
    )
    assert survey_counts(deployment, BATCH_SURVEY) == {0: 1, 1: 0, 2: 2}  # dropped, never written alone
