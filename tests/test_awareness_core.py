"""The awareness markup (text and Telegram entities) and the subscriber store."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import func, select

from nazaha.awareness.broadcast_message import label_for_test
from nazaha.awareness.markup import (
    CAPTION_LIMIT,
    Link,
    address_parts,
    links_of,
    markup_problems,
    parse_markup,
    preview_html,
    utf16_len,
)
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.storage.awareness_models import Subscriber, SubscriberTopic
from nazaha.storage.crypto import BotKeyBox, TamperedData

TODAY = dt.date(2026, 11, 30)


def test_bold_italic_and_links_become_entities_with_utf16_offsets() -> None:
    formatted = parse_markup("😀 **قانون** *x* [AMAN](https://www.aman-palestine.org)")
    assert formatted.text == "😀 قانون x AMAN"
    kinds = [(e.type, e.offset, e.length) for e in formatted.entities]
    # The emoji is two UTF-16 code units: offsets count them as Telegram does.
    assert kinds == [("bold", 3, 5), ("italic", 9, 1), ("text_link", 11, 4)]
    assert formatted.entities[2].url == "https://www.aman-palestine.org"


@pytest.mark.parametrize(
    "source",
    ["<b>not html</b> & <i>", "*unclosed **bold", "[x](javascript:alert(1))", "a_b_c *", "\\*lit\\*", "# h\n- item"],
)
def test_anything_typed_is_sent_as_text_never_as_broken_markup(source: str) -> None:
    formatted = parse_markup(source)
    # Entities always lie inside the text, on its UTF-16 units.
    for entity in formatted.entities:
        assert 0 <= entity.offset and entity.offset + entity.length <= utf16_len(formatted.text)
        if entity.type == "text_link":
            assert entity.url.startswith(("https://", "http://"))
    assert "<b>" not in preview_html(formatted).replace("&lt;b&gt;", "")


def test_javascript_links_are_refused_and_reported() -> None:
    formatted = parse_markup("[click](javascript:alert(1))")
    assert not any(e.type == "text_link" for e in formatted.entities)
    assert "bad_link" in markup_problems("[click](javascript:alert(1))")


def test_paragraphs_and_line_breaks() -> None:
    assert parse_markup("one\ntwo\n\n\n\nthree").text == "one\ntwo\n\nthree"


def test_limits_count_the_parsed_text() -> None:
    assert markup_problems("**" + "a" * CAPTION_LIMIT + "**", limit=CAPTION_LIMIT) == []
    assert markup_problems("a" * (CAPTION_LIMIT + 1), limit=CAPTION_LIMIT) == ["too_long"]
    assert markup_problems("  \n ") == ["empty"]


def test_preview_escapes_and_nests() -> None:
    html = preview_html(parse_markup('**a *b* <script>** [x"](https://e.org/?a=1&b="2")'))
    assert html == (
        '<b>a <i>b</i> &lt;script&gt;</b> '
        '<a href="https://e.org/?a=1&amp;b=%222%22" rel="noopener noreferrer nofollow">x&quot;</a>'
    )


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        # The trial: "2*3*4" lost its asterisks (the 3 in italics). A * between digits is a character.
        ("2*3*4", "2*3*4", []),
        ("٢*٣*٤ and 2**3**4", "٢*٣*٤ and 2**3**4", []),
        ("*3* of *them* cost 5*2", "3 of them cost 5*2", [("italic", 0, 1), ("italic", 5, 4)]),
        # _ formats a whole word, as the hint says; inside a word it is a character.
        ("_underscore_ and snake_case_name", "underscore and snake_case_name", [("italic", 0, 10)]),
        # A backslash keeps a mark as typed, as the hint says.
        ("\\*not italic\\* \\_nor this\\_ \\*\\*nor bold\\*\\*", "*not italic* _nor this_ **nor bold**", []),
        # Next to a letter * still formats: an Arabic word with an attached prefix can be bold.
        ("و**الفساد** a*b*c", "والفساد abc", [("bold", 1, 6), ("italic", 9, 1)]),
    ],
)
def test_what_the_formatting_hint_says_is_what_happens(source: str, text: str, entities: list) -> None:
    formatted = parse_markup(source)
    assert formatted.text == text
    assert [(e.type, e.offset, e.length) for e in formatted.entities] == entities


def test_links_and_their_addresses_as_a_reviewer_reads_them() -> None:
    formatted = parse_markup("😀 [AMAN](https://www.aman-palestine.org/a?b=1#c) then **[bold <x>](http://e.org:8080)**")
    assert links_of(formatted) == (Link("AMAN", "https://www.aman-palestine.org/a?b=1#c"), Link("bold <x>", "http://e.org:8080"))
    assert links_of(parse_markup("no link, only https://bare.example.org")) == ()  # shown in full anyway
    cases = {
        "https://www.aman-palestine.org/a?b=1#c": ("https://", "www.aman-palestine.org", "/a?b=1#c", False),
        "http://e.org:8080": ("http://", "e.org", ":8080", False),
        # What comes before the last "@" is a user name: the browser opens evil.example.com.
        "https://www.aman-palestine.org@evil.example.com/login": (
            "https://www.aman-palestine.org@", "evil.example.com", "/login", False),
        "https://evil.example.com\\@aman.org": ("https://", "evil.example.com", "\\@aman.org", False),
        "https://evil.example.com?@aman.org": ("https://", "evil.example.com", "?@aman.org", False),
        "https://xn--man-5cd.org/": ("https://", "xn--man-5cd.org", "/", True),
        "https://аman.org": ("https://", "аman.org", "", True),
        "http://[::1]:80/x": ("http://", "[::1]", ":80/x", False),
        "not an address": ("not an address", "", "", False),
    }
    for url, (before, host, after, international) in cases.items():
        found = address_parts(url)
        assert (found.before, found.host, found.after, found.international) == (before, host, after, international), url
        assert found.before + found.host + found.after == url
    # The markup writes a host with lookalike letters in its xn-- form, and the reviewer is warned.
    (link,) = links_of(parse_markup("[aman](https://аman.org/)"))
    assert link.address.host.startswith("xn--") and link.address.international


def test_a_test_send_says_not_approved_only_before_approval() -> None:
    """The trial: the test of an approved broadcast said "a broadcast draft that is not approved"."""
    for status in ("draft", "submitted", "rejected", None):
        assert label_for_test("en", status) == "TEST of a broadcast draft that is not approved — only you received this"
    for status in ("approved", "paused", "sending", "done", "cancelled"):
        assert label_for_test("en", status) == "TEST of a broadcast — only you received this"


@pytest.fixture
def store(sessionmaker) -> SubscriberStore:
    return SubscriberStore(sessionmaker, BotKeyBox(os.urandom(32)), os.urandom(32))


async def test_subscribe_change_and_stop(store: SubscriberStore, sessionmaker) -> None:
    await store.subscribe_now(700_000_001, "ar", {"forms", "rights"}, today=TODAY)
    first = await store.get(700_000_001)
    assert first is not None and first.topics == {"forms", "rights"} and first.language == "ar"
    await store.subscribe_now(700_000_001, "en", {"budget"}, today=TODAY)
    again = await store.get(700_000_001)
    assert again.id == first.id and again.topics == {"budget"} and again.language == "en"
    async with sessionmaker() as session:
        row = (await session.execute(select(Subscriber))).scalar_one()
    # The chat id is nowhere in the clear, and opens only with this bot key and row.
    assert b"700000001" not in row.sealed_chat and "700000001" not in row.chat_key
    assert store.open_chat(row.chat_key, row.sealed_chat) == 700_000_001
    with pytest.raises(TamperedData):
        store.open_chat(store.chat_key(700_000_002), row.sealed_chat)
    await store.stop_now(700_000_001)
    assert await store.get(700_000_001) is None
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(SubscriberTopic))).scalar() == 0


async def test_blocked_subscribers_are_deleted_with_their_topics_and_may_subscribe_again(
    store: SubscriberStore, sessionmaker
) -> None:
    for chat in (1, 2, 3):
        await store.subscribe_now(chat, "ar", {"forms", "rights"}, today=TODAY)
    ids = [(await store.get(chat)).id for chat in (1, 3)]
    async with sessionmaker() as session:
        await SubscriberStore.delete_blocked(session, ids)
        await session.commit()
    assert [await store.get(chat) is None for chat in (1, 2, 3)] == [True, False, True]
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(SubscriberTopic))).scalar() == 2
    # Unblocked, the chat subscribes again like a new one.
    await store.subscribe_now(1, "en", {"forms"}, today=TODAY)
    again = await store.get(1)
    assert again is not None and again.active and again.topics == {"forms"}


def test_a_broadcast_message_ends_with_unsubscribe_in_the_subscribers_language() -> None:
    from nazaha.awareness.broadcast_message import UNSUBSCRIBE_DATA, build_message

    message = build_message("**Hi**", "en", survey_code="abc", survey_options=("Yes", "No"))
    assert [row[0][1] for row in message.buttons] == ["sv:abc:0", "sv:abc:1", UNSUBSCRIBE_DATA]
    assert message.buttons[-1][0][0] == "Unsubscribe"
    assert not message.too_long
    assert build_message("a" * 1025, "ar", has_image=True).too_long


async def test_a_staff_chat_is_linked_only_once_the_bot_s_code_is_typed_back(sessionmaker) -> None:
    """Trial finding: whoever opened a member's l_<code> link was linked at once. Now the
    chat gets a 6-digit code and only the member typing it in the console links it."""
    from nazaha.awareness import staff_chats
    from nazaha.storage.awareness_models import StaffChat, StaffChatCode, StaffChatConfirmation

    from tests.broadcast_support import clear_awareness

    await clear_awareness(sessionmaker)  # PostgreSQL's database is shared by the run
    box, pepper = BotKeyBox(os.urandom(32)), os.urandom(32)
    links = staff_chats.StaffChatLinks(sessionmaker, box, pepper)
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)

    async def rows(model) -> list:
        async with sessionmaker() as session:
            return (await session.execute(select(model))).scalars().all()

    # The link code works once and only before it expires; opening it links nothing.
    reply_key = staff_chats.new_reply_key()
    code, link_id = await staff_chats.new_link_code(sessionmaker, reply_key=reply_key.public_key(), now=now)
    late, _ = await staff_chats.new_link_code(sessionmaker, now=now)
    assert await links.start_confirmation(late, 4242, "Vera", now=now + staff_chats.CODE_TTL) is None
    confirmation = await links.start_confirmation(code, 4242, "Vera", now=now)
    assert confirmation is not None and len(confirmation) == 6 and confirmation.isdigit()
    assert await links.start_confirmation(code, 4343, "Other", now=now) is None  # used up
    assert await rows(StaffChat) == [] and not await staff_chats.is_linked(sessionmaker, link_id)
    (waiting,) = await rows(StaffChatConfirmation)
    assert confirmation not in waiting.code_hash and b"Vera" not in waiting.sealed_name
    assert staff_chats.open_staff_chat(box, link_id, waiting.sealed_chat) == 4242
    assert await staff_chats.confirmation_waiting(sessionmaker, link_id, now=now)

    # Wrong codes count (the malformed do not); the right one links, Arabic digits too.
    wrong = f"{(int(confirmation) + 1) % 1_000_000:06d}"
    assert (await staff_chats.confirm(sessionmaker, link_id, "12ab", now=now)).outcome == "malformed"
    assert await staff_chats.confirm(sessionmaker, link_id, wrong, now=now) == staff_chats.Confirmed("wrong", 4)
    arabic = "".join("٠١٢٣٤٥٦٧٨٩"[int(d)] for d in confirmation)
    done = await staff_chats.confirm(sessionmaker, link_id, f" {arabic[:3]} {arabic[3:]} ", now=now)
    assert done.outcome == "linked"
    assert staff_chats.open_first_name(reply_key, link_id, done.sealed_name) == "Vera"
    assert staff_chats.open_first_name(staff_chats.new_reply_key(), link_id, done.sealed_name) is None
    assert await staff_chats.is_linked(sessionmaker, link_id)
    assert await rows(StaffChatConfirmation) == [] and await rows(StaffChatCode) == []
    (linked,) = await rows(StaffChat)
    assert linked.chat_key == links.chat_key(4242) and staff_chats.open_staff_chat(box, link_id, linked.sealed_chat) == 4242

    # Five wrong codes delete the confirmation: even the right one is refused afterwards.
    code, other = await staff_chats.new_link_code(sessionmaker, now=now)
    confirmation = await links.start_confirmation(code, 5555, None, now=now)
    wrong = f"{(int(confirmation) + 1) % 1_000_000:06d}"
    outcomes = [(await staff_chats.confirm(sessionmaker, other, wrong, now=now)).outcome for _ in range(5)]
    assert outcomes == ["wrong"] * 4 + ["locked"]
    assert (await staff_chats.confirm(sessionmaker, other, confirmation, now=now)).outcome == "none"
    assert not await staff_chats.is_linked(sessionmaker, other)

    # An expired confirmation is refused and deleted.
    code, third = await staff_chats.new_link_code(sessionmaker, now=now)
    confirmation = await links.start_confirmation(code, 6666, None, now=now)
    expired = await staff_chats.confirm(sessionmaker, third, confirmation, now=now + staff_chats.CONFIRM_TTL)
    assert expired.outcome == "expired" and not await staff_chats.is_linked(sessionmaker, third)
    assert not await staff_chats.confirmation_waiting(sessionmaker, third, now=now)

    # The bot's maintenance pass deletes codes and confirmations past their time.
    code, fourth = await staff_chats.new_link_code(sessionmaker, now=now)
    await links.start_confirmation(code, 7777, None, now=now)
    await staff_chats.new_link_code(sessionmaker, now=now)
    assert await links.purge_expired(now) == 0
    assert await links.purge_expired(now + staff_chats.CODE_TTL) == 2
    assert await rows(StaffChatCode) == [] and await rows(StaffChatConfirmation) == []

    await staff_chats.unlink(sessionmaker, link_id)
    assert not await staff_chats.is_linked(sessionmaker, link_id)


async def test_the_sealed_first_name_does_not_tell_its_length(sessionmaker) -> None:
    """Seized-host trial (F4): the name sealed to the console's reply key was 1145 bytes
    plus the name's UTF-8 length. Every name is now padded to one size before sealing."""
    from nazaha.awareness import staff_chats
    from nazaha.storage.awareness_models import StaffChatConfirmation

    from tests.broadcast_support import clear_awareness

    await clear_awareness(sessionmaker)
    links = staff_chats.StaffChatLinks(sessionmaker, BotKeyBox(os.urandom(32)), os.urandom(32))
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    longest = "\U0001F600" * staff_chats.NAME_MAX  # 4 UTF-8 bytes a character
    names = {"Al": "Al", "Ā": "Ā", "Yusuf\x00": "Yusuf\x00", longest + "x": longest}
    sealed = {}
    for chat_id, (given, kept) in enumerate(names.items(), start=100):
        reply_key = staff_chats.new_reply_key()
        code, link_id = await staff_chats.new_link_code(sessionmaker, reply_key=reply_key.public_key(), now=now)
        assert await links.start_confirmation(code, chat_id, given, now=now) is not None
        async with sessionmaker() as session:
            sealed[given] = await session.scalar(
                select(StaffChatConfirmation.sealed_name).where(StaffChatConfirmation.link_id == link_id))
        assert staff_chats.open_first_name(reply_key, link_id, sealed[given]) == kept
    assert len({len(value) for value in sealed.values()}) == 1
    # An unpadded block (what was sealed before) or a bad padding opens as no name.
    with pytest.raises(ValueError):
        staff_chats._unpad_name("Al".encode())
    with pytest.raises(ValueError):
        staff_chats._unpad_name(bytes(staff_chats.NAME_PADDED))
    await clear_awareness(sessionmaker)


def test_confirmation_codes_are_read_as_typed() -> None:
    from nazaha.awareness.staff_chats import normalise_code

    assert normalise_code("123 456") == normalise_code("123-456") == normalise_code("\u2066123456\u2069") == "123456"
    assert normalise_code("١٢٣٤٥٦") == normalise_code("۱۲۳۴۵۶") == "123456"
    assert normalise_code("12345x") == "" and normalise_code("") == ""
    # One reading for every code typed in the console: the same function signs in.
    from nazaha import typed_codes

    assert normalise_code is typed_codes.normalise_code
    assert typed_codes.normalise_code("abcde-٢٣٤٥٦", letters=True) == "ABCDE23456"
    assert typed_codes.normalise_code("abcde-23456") == "" and typed_codes.normalise_code("حسن12", letters=True) == ""
    assert typed_codes.normalise_code("1" * (typed_codes.MAX_TYPED + 1)) == ""


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\u2028", "\u2029", "\x85", "\x0b"])
def test_survey_options_split_the_same_for_the_console_the_sender_and_the_bot(separator) -> None:
    """An attacker's option "Yes<U+2028>No" showed one button in the preview and went out as
    two, shifting every answer after it: every reader now splits with one function."""
    from nazaha.awareness import sender, survey_answers, surveys

    text = f"Yes{separator}No\nNot sure"
    assert surveys.split_options(text) == ["Yes", "No", "Not sure"]
    assert survey_answers.split_options is surveys.split_options
    assert sender.split_options is surveys.split_options
