"""Awareness tables: content library, subscribers, broadcasts and their outbox, quizzes,
surveys, campaigns, and volunteers' linked chats (migration 0009; staff chat
confirmation: 0010).

Kept apart from the report side on purpose: no table here has a column that refers to a
report, a receipt, a draft, a notification link or a user pseudonym of the report side, and
no report-side table refers to these. Subscriber chat ids are sealed under the **bot key**:
the bot must read them to broadcast, so a seized bot host reveals who subscribes (said in
docs/security.md and on the subscribe screen) — and nothing else about them.

Aggregates only: quizzes keep a count per item and option, surveys a count per option,
campaigns a count per day. Count rows are created in a fixed order before anything is
counted (never by an answer), and the bot adds to them in batches (nazaha/awareness/tally.py).
A survey's "already answered" marker holds no answer, expires, and is never written in the
transaction that adds to a count.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column

from nazaha.storage.models import Base, UtcDateTime

# Languages content and broadcasts come in (the bot's own locales).
LANGUAGES = ("ar", "en")

# awareness_items.kind
ITEM_KINDS = ("article", "quiz")
# awareness_items.origin: "file" (nazaha/locales/<lang>/awareness/, loaded at start until an
# admin edits the item) or "console" (written or edited in the console; files never overwrite it)
ITEM_ORIGINS = ("file", "console")

# broadcasts.status, in the order a broadcast normally moves through them:
#   draft -> submitted (waiting for an admin) -> approved (scheduled; the sender starts it at
#   send_at) -> sending -> done;  paused <-> sending;  rejected (back to the author, who may
#   edit and submit again);  cancelled (final: nothing more is sent).
BROADCAST_STATUSES = (
    "draft", "submitted", "rejected", "approved", "sending", "paused", "done", "cancelled",
)
# broadcast_outbox.state:
#   queued    waiting to be sent (next_attempt_at: not before, after a 429/5xx)
#   sending   handed to Telegram and not yet confirmed; found at start-up = the sender died
#             with it in flight -> in_doubt (at most once: never sent again)
#   sent | failed (gave up: 400 or retries exhausted) | blocked (403: the subscriber is deleted)
#   in_doubt (a timeout, or in flight at a crash: it may have arrived) | skipped (the
#   broadcast was cancelled before it went) | left (the subscriber left, by /stop, /wipe or
#   a block, before it went)
# A row outlives its subscriber (subscriber_id becomes NULL): a broadcast's figures stay
# as they were when it ended, and say nothing more about who got it.
OUTBOX_STATES = ("queued", "sending", "sent", "failed", "blocked", "in_doubt", "skipped", "left")
# survey.status
SURVEY_STATUSES = ("draft", "open", "closed")

# Counts (survey_counts, quiz_counts, campaign_days) are stored plus COUNT_BIAS, a number
# SQLite always writes in 8 bytes: adding to a count then rewrites its row in place, at the
# same size, instead of moving it within its page (a small integer grows from 0 to 1 and 2
# bytes as it counts, and a moved cell's new place says which count changed last). Read
# them through ``count`` / ``opens`` (the stored value minus the bias); write the stored
# column (``biased_count`` / ``biased_opens``), e.g. with :func:`biased`.
COUNT_BIAS = 1 << 48


def biased(count: int) -> int:
    """What is stored for ``count``."""
    return COUNT_BIAS + int(count)


class AwarenessTopic(Base):
    """A topic of the library ("forms of corruption", "your rights", ...)."""

    __tablename__ = "awareness_topics"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)  # [a-z0-9_]
    position: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="file")
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AwarenessTopicText(Base):
    __tablename__ = "awareness_topic_texts"

    topic: Mapped[str] = mapped_column(
        String(32), ForeignKey("awareness_topics.code", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    title: Mapped[str] = mapped_column(String(64))  # also the button label
    summary: Mapped[str] = mapped_column(Text, default="")


class AwarenessItem(Base):
    """An article or a quiz question of a topic."""

    __tablename__ = "awareness_items"
    __table_args__ = (Index("ix_awareness_items_topic_position", "topic", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # [a-z0-9_-], stable across edits
    topic: Mapped[str] = mapped_column(
        String(32), ForeignKey("awareness_topics.code", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))  # ITEM_KINDS
    position: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="file")  # ITEM_ORIGINS
    published: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_on: Mapped[dt.date] = mapped_column(Date)


class AwarenessItemText(Base):
    """One language's version of an item. Articles: ``title`` + ``body`` (the console's
    markup: **bold**, *italic*, [text](https://…)). Quizzes: ``title`` is the question,
    ``options`` one option per line (2-10), ``correct_option`` 0-based, ``body`` the
    explanation shown for the right answer. ``sources``: where each fact comes from, one per
    line (kept beside the text, shown under an article)."""

    __tablename__ = "awareness_item_texts"

    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("awareness_items.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[str] = mapped_column(Text, default="")
    correct_option: Mapped[int | None] = mapped_column(Integer)
    sources: Mapped[str] = mapped_column(Text, default="")


class Subscriber(Base):
    """A chat that asked for awareness messages. ``chat_key`` = HMAC(pepper, chat id) for
    lookups; ``sealed_chat`` = the chat id under the bot key (AAD binds chat_key). /stop,
    /wipe and a 403 to a broadcast ("blocked by the user") delete the row (its topics go
    with it; its outbox rows stay, without it). ``active`` false (only rows older than
    migration 0011, which deleted them, or set by hand) keeps a row out of every audience."""

    __tablename__ = "subscribers"
    __table_args__ = (Index("ix_subscribers_active_language", "active", "language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_key: Mapped[str] = mapped_column(String(64), unique=True)
    sealed_chat: Mapped[bytes] = mapped_column(LargeBinary)
    language: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    joined_on: Mapped[dt.date] = mapped_column(Date)  # a day: coarse on purpose


class SubscriberTopic(Base):
    __tablename__ = "subscriber_topics"
    __table_args__ = (Index("ix_subscriber_topics_topic", "topic"),)

    subscriber_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(32), primary_key=True)


class Broadcast(Base):
    """A message volunteers compose and an admin approves. ``topics``/``languages``: the
    audience, comma-separated codes ("" = every topic / every language). ``author_id`` and
    ``approved_by``: console staff ids (the console's store says who they are)."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_status_send_at", "status", "send_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120))  # internal, for the console's lists
    status: Mapped[str] = mapped_column(String(16), default="draft")  # BROADCAST_STATUSES
    author_id: Mapped[int] = mapped_column(Integer)
    approved_by: Mapped[int | None] = mapped_column(Integer)
    topics: Mapped[str] = mapped_column(String(512), default="")
    languages: Mapped[str] = mapped_column(String(32), default="")
    to_channel: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The post to the publication chat(s): None (not asked), queued, sending, sent, failed,
    # skipped (cancelled first), in_doubt (in flight at a crash, or a chat's answer timed
    # out: it may have been posted; never posted again).
    channel_state: Mapped[str | None] = mapped_column(String(16))
    survey_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("surveys.id", ondelete="SET NULL")
    )
    send_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # None: once approved
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    review_note: Mapped[str] = mapped_column(Text, default="")  # why an admin rejected it


class BroadcastVersion(Base):
    """The text of a broadcast in one language, in the console's markup (parsed to Telegram
    entities at send time, never sent with parse_mode)."""

    __tablename__ = "broadcast_versions"

    broadcast_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    body: Mapped[str] = mapped_column(Text)


class BroadcastImage(Base):
    """The optional image (re-encoded, metadata stripped). ``file_id``: Telegram's id once
    the first send uploaded it, so later sends reuse it."""

    __tablename__ = "broadcast_images"

    broadcast_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    mime_type: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[str | None] = mapped_column(String(256))


class BroadcastOutbox(Base):
    """One row per recipient of a broadcast (see OUTBOX_STATES). ``subscriber_id`` is NULL
    once the subscriber is deleted: the row still counts in the broadcast's figures and is
    never sent (a queued one becomes ``left``). NULLs are distinct under the unique
    constraint, on SQLite and PostgreSQL alike."""

    __tablename__ = "broadcast_outbox"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "subscriber_id"),
        Index("ix_broadcast_outbox_broadcast_state", "broadcast_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("broadcasts.id", ondelete="CASCADE")
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error_code: Mapped[int | None] = mapped_column(Integer)  # the last Bot API error code


class StaffChat(Base):
    """A volunteer's or caseworker's own Telegram chat, linked from the console for "send a
    test to me" once the member typed back the code the bot sent to that chat
    (nazaha/awareness/staff_chats.py). ``link_id`` is random; only the console's store says
    whose it is. ``chat_key`` = HMAC(pepper, "staff-chat", chat id): /stop, /wipe and
    Unsubscribe in that chat find and delete the row."""

    __tablename__ = "staff_chats"

    link_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_key: Mapped[str] = mapped_column(String(64), index=True)
    sealed_chat: Mapped[bytes] = mapped_column(LargeBinary)
    linked_on: Mapped[dt.date] = mapped_column(Date)


class StaffChatCode(Base):
    """A one-time code the console shows as t.me/<bot>?start=l_<code>; the chat that opens
    it gets a confirmation code (``staff_chat_confirmations``), nothing more. ``code_hash``
    = SHA-256 of the code (hex). ``reply_key``: the public half of a one-time key pair whose
    private half is in the member's console session only; the bot seals the chat's first
    name to it."""

    __tablename__ = "staff_chat_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    reply_key: Mapped[bytes | None] = mapped_column(LargeBinary)


class StaffChatConfirmation(Base):
    """A chat that opened a member's link, waiting for the member to type the confirmation
    code the bot sent it (one per link id: a newer one replaces it). ``code_hash``: SHA-256
    of (link id, code); ``sealed_chat`` as in ``staff_chats``; ``sealed_name``: the chat's
    first name sealed to the console session's ``reply_key`` (the bot host cannot open it).
    Deleted when confirmed, after ``attempts`` wrong codes, or at ``expires_at``."""

    __tablename__ = "staff_chat_confirmations"

    link_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_key: Mapped[str] = mapped_column(String(64), index=True)
    sealed_chat: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_name: Mapped[bytes | None] = mapped_column(LargeBinary)
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class BroadcastTestSend(Base):
    """"Send a test to me": the sender delivers the broadcast to one linked staff chat.
    ``state``: queued | sending | sent | failed. A handled row (sent, failed) is deleted as
    soon as the member's console page has shown its result, and by the sender at the
    latest ``TEST_RESULT_TTL`` after the request (nazaha/awareness/sender.py): the bot's
    database keeps no history of who tested what."""

    __tablename__ = "broadcast_test_sends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("broadcasts.id", ondelete="CASCADE")
    )
    link_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("staff_chats.link_id", ondelete="CASCADE")
    )
    language: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class QuizCount(Base):
    """How many chose an option of a quiz item, over every anonymous quiz poll sent for it
    (Telegram's counts, added in batches). No poll, chat, language or day: which poll went
    to which chat lives only in the bot's memory (nazaha/awareness/quiz_polls.py)."""

    __tablename__ = "quiz_counts"

    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("awareness_items.id", ondelete="CASCADE"), primary_key=True
    )
    option: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    biased_count: Mapped[int] = mapped_column(
        BigInteger, default=COUNT_BIAS, server_default=text(str(COUNT_BIAS))
    )
    count: Mapped[int] = column_property(biased_count - COUNT_BIAS)


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # random, in callback data
    status: Mapped[str] = mapped_column(String(16), default="draft")  # SURVEY_STATUSES
    author_id: Mapped[int] = mapped_column(Integer)
    created_on: Mapped[dt.date] = mapped_column(Date)
    closes_on: Mapped[dt.date | None] = mapped_column(Date)


class SurveyText(Base):
    """The question and its options (one per line, 2-8) in one language."""

    __tablename__ = "survey_texts"

    survey_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    question: Mapped[str] = mapped_column(String(300))
    options: Mapped[str] = mapped_column(Text)


class SurveyCount(Base):
    """How many chose an option: the only record of answers. A row per option is created
    (count 0, in option order) when the survey opens; the bot adds answers in batches."""

    __tablename__ = "survey_counts"

    survey_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True
    )
    option: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    biased_count: Mapped[int] = mapped_column(
        BigInteger, default=COUNT_BIAS, server_default=text(str(COUNT_BIAS))
    )
    count: Mapped[int] = column_property(biased_count - COUNT_BIAS)


class SurveyAnswerMarker(Base):
    """"This account already answered this survey": HMAC(pepper, survey, user id), no answer,
    deleted at ``expires_at`` (rounded to the hour) or when the survey closes. Written in its
    own transaction, never in the one that adds to a count."""

    __tablename__ = "survey_answer_markers"

    marker: Mapped[str] = mapped_column(String(64), primary_key=True)
    survey_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("surveys.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class Campaign(Base):
    """A deep link t.me/<bot>?start=c_<code> for posters and partners; ``target`` is a
    topic code or ``item:<code>``. ``code`` is lower case (made so by the console, and by
    migration 0012 where no other code differed only in case): a link opens its campaign
    whatever the case it is typed in. ``created_by`` and ``paused_by`` (while inactive):
    console members' awareness numbers, as ``broadcasts.author_id`` (the console's store
    says who they are); None for a campaign made before 0012, or one that is active."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # [a-z0-9_-], <= 30
    name: Mapped[str] = mapped_column(String(120))
    target: Mapped[str] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_on: Mapped[dt.date] = mapped_column(Date)
    created_by: Mapped[int | None] = mapped_column(Integer)
    paused_by: Mapped[int | None] = mapped_column(Integer)


class CampaignDay(Base):
    """Opens of a campaign link per UTC day: an aggregate, never per person. The bot's first
    batch with opens of a day creates that day's row for every active campaign (count 0, in
    the order of their codes), then adds the batch's opens."""

    __tablename__ = "campaign_days"

    campaign_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    biased_opens: Mapped[int] = mapped_column(
        BigInteger, default=COUNT_BIAS, server_default=text(str(COUNT_BIAS))
    )
    opens: Mapped[int] = column_property(biased_opens - COUNT_BIAS)
