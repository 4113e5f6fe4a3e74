"""The broadcast engine: approved broadcasts go out to their subscribers, paced, at most once.

One task of the bot process (:meth:`BroadcastSender.run`, started by ``running()`` in
nazaha/bot/app.py). The console never sends: it changes ``broadcasts.status`` (approve,
pause, resume, cancel) and asks for test sends (``broadcast_test_sends`` rows); this task
looks for due work every ``check_seconds`` and at least every second while a broadcast is
sending. States (nazaha/storage/awareness_models.py):

* **start**: a broadcast ``approved`` (or set back to ``sending`` before it ever started)
  whose ``send_at`` has come (or is NULL) becomes ``sending`` with ``started_at``, and its
  outbox is materialised *in the same transaction*: one ``queued`` row per active subscriber
  of the audience, by ``INSERT ... SELECT`` under the unique (broadcast, subscriber), so a
  second run adds nothing. Audience: ``topics`` (comma list, "" = all): a subscriber who
  chose any of them, or who chose no topic at all (no topic = everything); ``languages``
  (comma list, "" = all): the subscriber's language. ``to_channel`` queues one post to each
  publication chat (``channel_state``; a timeout: ``in_doubt``, not posted again).
* **send**: queued rows (``next_attempt_at`` NULL or due) are claimed in id order, a small
  batch per transaction, and marked ``sending`` in that commit; a pool of workers sends
  each through one :class:`~nazaha.awareness.pacing.Pacer` (``limits`` windows: 97 % of
  ``rate`` per second overall, ``chat_rate`` per two seconds per subscriber, slots spread
  evenly); results are written back in
  batches: ``sent``; ``failed`` (400 and other refusals, or transient errors
  ``max_attempts`` times); ``blocked`` (403; the subscriber is deleted, as by /stop);
  ``queued`` again with ``attempts + 1`` and a jittered exponential ``next_attempt_at``
  (5xx, connection errors: :class:`~nazaha.bot.retry.RetryPolicy`'s back-off); ``in_doubt``
  (a timeout: Telegram may have taken it). A 429 pauses *every* send for ``retry_after``
  seconds and puts the row back without counting an attempt.
* **left**: a subscriber deleted after the start (/stop, /wipe, a 403 to another broadcast)
  keeps their rows, with ``subscriber_id`` NULL, so a broadcast's figures never shrink; a
  queued one is claimed as ``left`` and never sent (the claim joins ``subscribers`` with an
  outer join for that reason).
* **pause / resume / cancel** are the console's status changes, read before each claim and
  by the workers (at most a second old): ``paused`` stops claiming and rows not yet handed
  to Telegram go back to ``queued``; ``sending`` again continues; ``cancelled`` turns the
  remaining ``queued`` rows into ``skipped``. No ``queued``/``sending`` row left (and no
  channel post pending): ``done`` with ``finished_at``.
* **crash**: at start every row still ``sending`` (claimed by a process that died) becomes
  ``in_doubt`` and is never sent again (at most once: a duplicate awareness message is worse
  than a missed one). Only rows in the in-flight window can be in doubt: two claim batches,
  the sends in progress and the results not yet written (one to two seconds of sending).

Only ``sending`` broadcasts are ever sent to subscribers; test sends go to the linked staff
chat whatever the status (that is their point): first a message saying it is a test, then
exactly the text subscribers will get, whose buttons carry test data (a survey answer is not
counted, Unsubscribe unsubscribes no one: ``broadcast_message.build_message(test=True)``).
A test's row is deleted once the console has shown its result, and by the sender
``TEST_RESULT_TTL`` after the request at the latest; a staff chat that blocked the bot is
unlinked.
Messages are built by :func:`~nazaha.awareness.broadcast_message.build_message` and sent
with ``entities``/``caption_entities``, never ``parse_mode``. An image is uploaded by the
first send and its ``file_id`` kept in ``broadcast_images`` for every later send.

Logs carry counts and broadcast ids only: never a chat id, a subscriber id, a text or a
Telegram error description.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage, SendPhoto
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup
from sqlalchemy import bindparam, delete, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.broadcast_message import UNSUBSCRIBE_DATA, BroadcastMessage, build_message, label_for_test
from nazaha.awareness.pacing import Pacer
from nazaha.awareness.staff_chats import open_staff_chat, unlink
from nazaha.awareness.subscribers import SubscriberStore
from nazaha.awareness.surveys import split_options
from nazaha.bot.retry import BOT_API, RetryPolicy
from nazaha.bot.telegram_session import results_unused
from nazaha.storage.awareness_models import (
    LANGUAGES,
    Broadcast,
    BroadcastImage,
    BroadcastOutbox,
    BroadcastTestSend,
    BroadcastVersion,
    StaffChat,
    Subscriber,
    SubscriberTopic,
    Survey,
    SurveyText,
)
from nazaha.storage.crypto import BotKeyBox, TamperedData
from nazaha.storage.database import dialect_insert, engine_of, write_transaction

__all__ = ["BroadcastSender", "BROADCAST_RETRY", "TEST_RESULT_TTL", "audience_filter", "split_codes"]

log = logging.getLogger(__name__)

# 5xx and connection errors: retried from the outbox (the row goes back to ``queued``) with
# this policy's jittered back-off, at most ``max_attempts`` calls in all, then ``failed``.
BROADCAST_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.5, backoff_cap=8.0)
FLUSH_SECONDS = 0.5  # results are written a batch at a time, or this long after they are known
SENDING_POLL = 1.0  # seconds between passes at the most while a broadcast is sending
SHUTDOWN_GRACE = 5.0  # seconds a stop waits for the answers to sends in flight
CHUNK = 500  # ids per IN (...) list
# A handled test send (sent, failed) waits this long after its request for the console to
# show its result (the console then deletes it), and is deleted by the sender after that.
TEST_RESULT_TTL = dt.timedelta(minutes=2)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def split_codes(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for part in (value or "").split(","):
        part = part.strip()
        if part:
            seen.setdefault(part, None)
    return list(seen)


def audience_filter(topics: str, languages: str) -> list:
    """SQL conditions on ``subscribers`` for a broadcast's audience (see the module doc)."""
    conditions = [Subscriber.active.is_(True)]
    wanted_languages = split_codes(languages)
    if wanted_languages:
        conditions.append(Subscriber.language.in_(wanted_languages))
    wanted_topics = split_codes(topics)
    if wanted_topics:
        chose_one = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id,
            SubscriberTopic.topic.in_(wanted_topics),
        )
        chose_none = ~exists().where(SubscriberTopic.subscriber_id == Subscriber.id)
        conditions.append(or_(chose_one, chose_none))
    return conditions


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def error_code(exc: BaseException) -> int | None:
    """The Bot API status of an aiogram error (None for network errors and the unknown)."""
    for kind, code in (
        (TelegramRetryAfter, 429), (TelegramForbiddenError, 403), (TelegramEntityTooLarge, 413),
        (TelegramBadRequest, 400), (TelegramUnauthorizedError, 401), (TelegramNotFound, 404),
        (TelegramConflictError, 409), (TelegramServerError, 500),
    ):
        if isinstance(exc, kind):
            return code
    return None


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.TimeoutError) or isinstance(exc.__cause__, asyncio.TimeoutError)


class _MaybePosted(Exception):
    """A channel post's answer timed out: Telegram may have posted it."""


# ---- what one broadcast says -----------------------------------------------------------


@dataclass
class Content:
    """A broadcast's versions, image and survey, loaded once per run of the broadcast;
    messages are built on first use per language (``channel``: without Unsubscribe;
    ``test``: for a test send, the buttons carrying test data)."""

    broadcast_id: int
    languages: tuple[str, ...]  # the audience's languages, in the broadcast's order
    versions: dict[str, str]
    image: bytes | None = None
    image_mime: str | None = None
    file_id: str | None = None
    survey_code: str | None = None
    survey_options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    test: bool = False
    _built: dict[tuple[str, bool], tuple[BroadcastMessage, InlineKeyboardMarkup | None]] = field(
        default_factory=dict
    )
    upload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # (language, channel, photo file id) -> (the method for chat 0, its JSON fields or None)
    prepared: dict[tuple[str, bool, str | None], tuple[Any, dict[str, Any] | None]] = field(
        default_factory=dict
    )

    def language_for(self, wanted: str | None) -> str | None:
        """The version a subscriber of language ``wanted`` gets: theirs, else the first of
        the broadcast's languages that has one, else the bot's languages' order, else any.
        None: the broadcast has no version at all."""
        if wanted in self.versions:
            return wanted
        for language in (*self.languages, *LANGUAGES, *sorted(self.versions)):
            if language in self.versions:
                return language
        return None

    def message(self, language: str, *, channel: bool = False) -> tuple[BroadcastMessage, InlineKeyboardMarkup | None]:
        key = (language, channel)
        built = self._built.get(key)
        if built is None:
            options = self.survey_options.get(language) or next(iter(self.survey_options.values()), ())
            message = build_message(
                self.versions[language], language, has_image=self.image is not None,
                survey_code=self.survey_code if options else None, survey_options=options,
                test=self.test,
            )
            if channel:  # a channel has no subscribers: no Unsubscribe button
                rows = tuple(row for row in message.buttons if all(d != UNSUBSCRIBE_DATA for _, d in row))
                message = BroadcastMessage(message.formatted, message.has_image, rows)
            built = self._built[key] = (message, message.reply_markup() if message.buttons else None)
        return built


async def load_content(session: AsyncSession, broadcast_id: int) -> Content | None:
    """None if the broadcast does not exist (any more)."""
    row = (
        await session.execute(
            select(Broadcast.languages, Broadcast.survey_id).where(Broadcast.id == broadcast_id)
        )
    ).one_or_none()
    if row is None:
        return None
    versions = dict(
        (
            await session.execute(
                select(BroadcastVersion.language, BroadcastVersion.body).where(
                    BroadcastVersion.broadcast_id == broadcast_id
                )
            )
        ).all()
    )
    content = Content(broadcast_id, tuple(split_codes(row.languages)), versions)
    image = (
        await session.execute(
            select(BroadcastImage.content, BroadcastImage.mime_type, BroadcastImage.file_id).where(
                BroadcastImage.broadcast_id == broadcast_id
            )
        )
    ).one_or_none()
    if image is not None:
        content.image, content.image_mime, content.file_id = image.content, image.mime_type, image.file_id
    if row.survey_id is not None:
        survey = (
            await session.execute(select(Survey.code, Survey.status).where(Survey.id == row.survey_id))
        ).one_or_none()
        if survey is not None and survey.status != "closed":
            texts = await session.execute(
                select(SurveyText.language, SurveyText.options).where(SurveyText.survey_id == row.survey_id)
            )
            content.survey_code = survey.code
            content.survey_options = {
                language: tuple(split_options(options))
                for language, options in texts.all()
            }
    return content


# ---- the outbox rows in this process ---------------------------------------------------


@dataclass(slots=True, eq=False)
class Job:
    row_id: int
    broadcast_id: int
    subscriber_id: int
    attempts: int
    chat_key: str
    sealed_chat: bytes
    language: str
    started: bool = False  # handed to Telegram: its fate is no longer "not sent"


@dataclass(slots=True)
class Result:
    """What to write for a row: ``next_attempt_at`` set only for a row queued again."""

    row_id: int
    subscriber_id: int
    state: str
    attempts: int
    error_code: int | None = None
    next_attempt_at: dt.datetime | None = None


class BroadcastSender:
    """See the module documentation. ``rate``-dependent sizes: ``batch_size`` rows per claim
    (default rate/4, 10-250) and ``workers`` concurrent sends (default rate/4, 4-64)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bot: Bot,
        subscribers: SubscriberStore,
        box: BotKeyBox,
        pacer: Pacer,
        *,
        publication_chat_ids: Sequence[int] = (),
        check_seconds: float = 5.0,
        retry: RetryPolicy = BROADCAST_RETRY,
        channel_retry: RetryPolicy = BOT_API,
        batch_size: int | None = None,
        workers: int | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._postgres = engine_of(sessionmaker).dialect.name == "postgresql"
        self._bot = bot
        self._subscribers = subscribers
        self._box = box
        self.pacer = pacer
        self._publication = tuple(publication_chat_ids)
        self._check = float(check_seconds)
        self._retry = retry
        self._channel_retry = channel_retry
        self._batch = batch_size or min(250, max(10, pacer.rate // 4))
        self._workers = workers or min(64, max(4, pacer.rate // 4))
        self._now = now
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._in_hand: set[Job] = set()  # taken from the queue by a worker, not yet done
        self._stopping = False
        self._results: list[Result] = []
        self._results_ready = asyncio.Event()  # results wait to be written
        self._results_full = asyncio.Event()  # a batch of them
        self._wake = asyncio.Event()
        self._status: dict[int, str] = {}  # unfinished broadcasts: id -> status
        self._content: dict[int, Content] = {}
        self._channel_due: set[int] = set()  # sending, with channel_state queued
        self._channel_busy: set[int] = set()
        self._refill_wanted = False
        self._full_wanted = False
        self._last_full = 0.0  # time.monotonic() of the last full pass
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.passes = 0  # completed passes (tests wait on it)
        self.counts: Counter[str] = Counter()  # results so far by state (tests, benchmark)

    # ---- the loop -----------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now (in-process callers; the console's changes are polled)."""
        self._full_wanted = True
        self._wake.set()

    async def run(self) -> None:
        """Recover, then send until cancelled. On cancellation sends in flight get
        ``SHUTDOWN_GRACE`` seconds to be answered, rows not yet handed to Telegram go back
        to ``queued``, and the results are written."""
        while True:
            try:
                await self.recover()
                break
            except Exception as exc:  # e.g. the database is busy: try again
                log.warning("broadcast recovery failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(self._check)
        workers = [asyncio.create_task(self._worker()) for _ in range(self._workers)]
        flusher = asyncio.create_task(self._flusher())
        try:
            full = True
            while True:
                try:
                    timeout = await self.pass_once(full=full)
                except Exception:
                    log.exception("broadcast pass failed")
                    timeout = self._check
                self.passes += 1
                woken = True
                if timeout > 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        woken = False
                full = (self._full_wanted or not woken
                        or time.monotonic() - self._last_full >= SENDING_POLL)
        finally:
            await self._shutdown(workers, flusher)

    async def _shutdown(self, workers: list[asyncio.Task[None]], flusher: asyncio.Task[None]) -> None:
        """Sends already handed to Telegram get ``SHUTDOWN_GRACE`` seconds to be answered
        (their results are written); everything else stops at once."""
        self._stopping = True
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while any(job.started for job in self._in_hand) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        tasks = [*workers, flusher, *self._side_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        unsent = [job for job in self._in_hand if not job.started]
        while not self._queue.empty():
            unsent.append(self._queue.get_nowait())
        self._results.extend(
            Result(job.row_id, job.subscriber_id, "queued", job.attempts) for job in unsent
        )
        try:
            await asyncio.wait_for(self._flush(), 10)
        except Exception:
            log.warning("broadcast results not written at shutdown: their rows will be in doubt")

    async def recover(self) -> int:
        """Rows, channel posts and test sends left ``sending`` by a process that died:
        ``in_doubt`` (test sends: ``failed``), never sent again. Returns the rows."""
        async with write_transaction(self._sessionmaker) as session:
            result = await session.execute(
                update(BroadcastOutbox).where(BroadcastOutbox.state == "sending").values(state="in_doubt")
            )
            await session.execute(
                update(Broadcast).where(Broadcast.channel_state == "sending").values(channel_state="in_doubt")
            )
            await session.execute(
                update(BroadcastTestSend).where(BroadcastTestSend.state == "sending").values(state="failed")
            )
        in_doubt = int(result.rowcount or 0)
        if in_doubt:
            log.warning(
                "broadcasts: %d message(s) were in flight when the sender stopped; "
                "marked in doubt, not sent again", in_doubt,
            )
        return in_doubt

    async def pass_once(self, *, full: bool = True) -> float:
        """One look at the database; returns how long to wait before the next one (woken
        earlier when the local queue runs low or a result batch was written). Only a
        ``full`` pass (at least every second) looks for new broadcasts, status changes and
        test sends; the others only refill the queue (each claim reads the status)."""
        now = self._now()
        if full:
            self._last_full, self._full_wanted = time.monotonic(), False
            await self._start_due(now)
            await self._read_statuses()
            await self._skip_cancelled(now)
            await self._test_sends()
            self._channel_posts()
        sending = sorted(b for b, s in self._status.items() if s == "sending")
        exhausted = await self._claim(sending, now) if sending else []
        await self._finish(exhausted, now)
        if any(b not in exhausted and self._status.get(b) == "sending" for b in sending):
            self._refill_wanted = True  # more rows wait: a worker wakes the loop when it runs low
            return SENDING_POLL
        if any(s == "sending" for s in self._status.values()):
            earliest = await self._earliest_retry(sending)
            wait = SENDING_POLL if earliest is None else (earliest - self._now()).total_seconds()
            return min(self._check, SENDING_POLL, max(0.02, wait))
        return self._check

    # ---- starting: status and outbox in one transaction ---------------------------------

    async def _start_due(self, now: dt.datetime) -> None:
        async with self._sessionmaker() as session:
            due = (
                await session.execute(
                    select(Broadcast.id, Broadcast.topics, Broadcast.languages, Broadcast.to_channel)
                    .where(
                        Broadcast.status.in_(("approved", "sending")),
                        Broadcast.started_at.is_(None),
                        or_(Broadcast.send_at.is_(None), Broadcast.send_at <= now),
                    )
                    .order_by(Broadcast.id)
                )
            ).all()
        for row in due:
            recipients = await self.materialise(row.id, row.topics, row.languages, row.to_channel, now)
            if recipients is not None:
                log.info("broadcast %d started: %d recipient(s)", row.id, recipients)

    async def materialise(
        self, broadcast_id: int, topics: str, languages: str, to_channel: bool, now: dt.datetime
    ) -> int | None:
        """Start a due broadcast: ``sending``, ``started_at`` and its outbox rows in one
        transaction. None if it was not (or no longer) startable."""
        async with write_transaction(self._sessionmaker) as session:
            started = await session.execute(
                update(Broadcast)
                .where(
                    Broadcast.id == broadcast_id,
                    Broadcast.status.in_(("approved", "sending")),
                    Broadcast.started_at.is_(None),
                )
                .values(
                    status="sending", started_at=now,
                    channel_state="queued" if to_channel else None,
                )
            )
            if started.rowcount != 1:
                return None
            # In random order: outbox ids in subscriber order would tell, once a row's
            # subscriber_id is NULL (they left), which subscriber it was (seized-host trial).
            recipients = select(
                literal(broadcast_id), Subscriber.id, literal("queued"), literal(0)
            ).where(*audience_filter(topics, languages)).order_by(func.random())
            insert = (
                dialect_insert(session)(BroadcastOutbox)
                .from_select(["broadcast_id", "subscriber_id", "state", "attempts"], recipients)
                .on_conflict_do_nothing(index_elements=["broadcast_id", "subscriber_id"])
            )
            inserted = await session.execute(insert)
        return int(inserted.rowcount or 0)

    # ---- the console's status changes ----------------------------------------------------

    async def _read_statuses(self) -> None:
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Broadcast.id, Broadcast.status, Broadcast.channel_state).where(
                        Broadcast.status.in_(("sending", "paused", "cancelled")),
                        Broadcast.started_at.is_not(None),
                        Broadcast.finished_at.is_(None),
                    )
                )
            ).all()
        self._status = {r.id: r.status for r in rows}
        self._channel_due = {r.id for r in rows if r.status == "sending" and r.channel_state == "queued"}
        for broadcast_id in [b for b in self._content if self._status.get(b) != "sending"]:
            if self._status.get(broadcast_id) != "paused":
                del self._content[broadcast_id]

    async def _skip_cancelled(self, now: dt.datetime) -> None:
        cancelled = [b for b, s in self._status.items() if s == "cancelled"]
        if not cancelled:
            return
        async with write_transaction(self._sessionmaker) as session:
            skipped = await session.execute(
                update(BroadcastOutbox)
                .where(BroadcastOutbox.broadcast_id.in_(cancelled), BroadcastOutbox.state == "queued")
                .values(state="skipped")
            )
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id.in_(cancelled), Broadcast.channel_state == "queued")
                .values(channel_state="skipped")
            )
            in_flight = set(
                (
                    await session.execute(
                        select(BroadcastOutbox.broadcast_id)
                        .where(BroadcastOutbox.broadcast_id.in_(cancelled), BroadcastOutbox.state == "sending")
                        .distinct()
                    )
                ).scalars()
            )
            finished = [b for b in cancelled if b not in in_flight]
            if finished:
                await session.execute(
                    update(Broadcast)
                    .where(Broadcast.id.in_(finished), Broadcast.finished_at.is_(None))
                    .values(finished_at=now)
                )
        if skipped.rowcount:
            log.info("broadcasts cancelled: %d message(s) skipped", skipped.rowcount)

    # ---- claiming a batch ---------------------------------------------------------------

    async def _claim(self, sending: list[int], now: dt.datetime) -> list[int]:
        """Top the local queue up to two batches; returns the broadcasts that had no more
        rows to give now."""
        exhausted: list[int] = []
        for broadcast_id in sending:
            wanted = 2 * self._batch - self._queue.qsize()
            if wanted < self._batch // 2 + 1:
                break
            if broadcast_id not in self._content:
                async with self._sessionmaker() as session:
                    content = await load_content(session, broadcast_id)
                if content is None:
                    continue
                self._content[broadcast_id] = content
            claimed = await self._claim_rows(broadcast_id, min(wanted, self._batch), now)
            if claimed is None:
                continue
            rows, jobs = claimed
            for job in jobs:
                self._queue.put_nowait(job)
            if rows < min(wanted, self._batch):
                exhausted.append(broadcast_id)
        return exhausted

    async def _claim_rows(self, broadcast_id: int, limit: int, now: dt.datetime) -> tuple[int, list[Job]] | None:
        """Mark up to ``limit`` due rows ``sending`` (rows whose subscriber has left, deleted
        or inactive: ``left``, never sent) in one commit: (rows taken, jobs to send). None if
        the broadcast is no longer ``sending``."""
        o, s = BroadcastOutbox, Subscriber
        query = (
            select(o.id, o.subscriber_id, o.attempts, s.chat_key, s.sealed_chat, s.language, s.active)
            .outerjoin(s, s.id == o.subscriber_id)
            .where(
                o.broadcast_id == broadcast_id,
                o.state == "queued",
                or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now),
            )
            .order_by(o.id)
            .limit(limit)
        )
        if self._postgres:  # several senders on one database take different rows
            query = query.with_for_update(of=o, skip_locked=True)
        async with write_transaction(self._sessionmaker) as session:
            status = (
                await session.execute(select(Broadcast.status).where(Broadcast.id == broadcast_id))
            ).scalar_one_or_none()
            if status != "sending":
                if status is not None:
                    self._status[broadcast_id] = status
                return None
            rows = (await session.execute(query)).all()
            active = [r.id for r in rows if r.active]  # NULL when the subscriber is gone
            left = [r.id for r in rows if not r.active]
            for state, ids in (("sending", active), ("left", left)):
                for chunk in _chunks(ids):
                    await session.execute(update(o).where(o.id.in_(chunk)).values(state=state))
        return len(rows), [
            Job(r.id, broadcast_id, r.subscriber_id, r.attempts, r.chat_key, r.sealed_chat, r.language)
            for r in rows if r.active
        ]

    async def _earliest_retry(self, sending: list[int]) -> dt.datetime | None:
        if not sending:
            return None
        async with self._sessionmaker() as session:
            return (
                await session.execute(
                    select(BroadcastOutbox.next_attempt_at)
                    .where(
                        BroadcastOutbox.broadcast_id.in_(sending),
                        BroadcastOutbox.state == "queued",
                        BroadcastOutbox.next_attempt_at.is_not(None),
                    )
                    .order_by(BroadcastOutbox.next_attempt_at)
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def _rows_left(self, broadcast_id: int, session: AsyncSession | None = None) -> bool:
        query = (
            select(BroadcastOutbox.id)
            .where(
                BroadcastOutbox.broadcast_id == broadcast_id,
                BroadcastOutbox.state.in_(("queued", "sending")),
            )
            .limit(1)
        )
        if session is not None:
            return (await session.execute(query)).first() is not None
        async with self._sessionmaker() as own:
            return (await own.execute(query)).first() is not None

    async def _finish(self, exhausted: list[int], now: dt.datetime) -> None:
        """``done`` for the sending broadcasts with nothing left to send or confirm."""
        for broadcast_id in exhausted:
            if self._status.get(broadcast_id) != "sending" or await self._rows_left(broadcast_id):
                continue
            async with write_transaction(self._sessionmaker) as session:
                if await self._rows_left(broadcast_id, session):
                    continue
                done = await session.execute(
                    update(Broadcast)
                    .where(
                        Broadcast.id == broadcast_id,
                        Broadcast.status == "sending",
                        or_(Broadcast.channel_state.is_(None),
                            Broadcast.channel_state.not_in(("queued", "sending"))),
                    )
                    .values(status="done", finished_at=now)
                )
            if done.rowcount == 1:
                self._status.pop(broadcast_id, None)
                self._content.pop(broadcast_id, None)
                log.info("broadcast %d done", broadcast_id)

    # ---- sending ------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping:
            job = await self._queue.get()
            self._in_hand.add(job)
            if self._refill_wanted and self._queue.qsize() < self._batch:
                self._refill_wanted = False
                self._wake.set()
            try:
                result = await self._deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: keep the row from being sent twice
                log.error("broadcast send failed unexpectedly (%s)", type(exc).__name__)
                result = Result(job.row_id, job.subscriber_id, "in_doubt" if job.started else "failed",
                                job.attempts)
            self._in_hand.discard(job)
            self._record(result)

    def _record(self, result: Result) -> None:
        self._results.append(result)
        self.counts[result.state] += 1
        if len(self._results) == 1:
            self._results_ready.set()
        if len(self._results) >= self._batch:
            self._results_full.set()

    def _returned(self, job: Job) -> Result:
        """A row taken from the queue but not sent because its broadcast stopped."""
        if self._status.get(job.broadcast_id) == "paused":
            return Result(job.row_id, job.subscriber_id, "queued", job.attempts)
        return Result(job.row_id, job.subscriber_id, "skipped", job.attempts)

    async def _deliver(self, job: Job) -> Result:
        content = self._content.get(job.broadcast_id)
        if self._status.get(job.broadcast_id) != "sending" or content is None:
            return self._returned(job)
        language = content.language_for(job.language)
        if language is None:
            return Result(job.row_id, job.subscriber_id, "failed", job.attempts)
        try:
            chat_id = self._subscribers.open_chat(job.chat_key, job.sealed_chat)
        except (TamperedData, ValueError):
            log.warning("broadcast %d: a subscriber row could not be opened", job.broadcast_id)
            return Result(job.row_id, job.subscriber_id, "failed", job.attempts)
        await self.pacer.acquire(f"s{job.subscriber_id}")
        if self._stopping:
            return Result(job.row_id, job.subscriber_id, "queued", job.attempts)
        if self._status.get(job.broadcast_id) != "sending":  # paused while waiting (a 429)
            return self._returned(job)
        job.started = True
        attempts = job.attempts + 1
        try:
            await self._send(chat_id, content, language)
        except TelegramRetryAfter as exc:
            self.pacer.pause(exc.retry_after)
            return Result(job.row_id, job.subscriber_id, "queued", job.attempts, 429,
                          self._now() + dt.timedelta(seconds=exc.retry_after))
        except TelegramForbiddenError:
            return Result(job.row_id, job.subscriber_id, "blocked", attempts, 403)
        except TelegramEntityTooLarge:  # a network error's subclass, but a refusal
            return Result(job.row_id, job.subscriber_id, "failed", attempts, 413)
        except (TelegramServerError, TelegramNetworkError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if _is_timeout(exc):  # Telegram may have taken it: at most once
                return Result(job.row_id, job.subscriber_id, "in_doubt", attempts)
            code = error_code(exc)
            if attempts >= self._retry.max_attempts:
                return Result(job.row_id, job.subscriber_id, "failed", attempts, code)
            at = self._now() + dt.timedelta(seconds=self._retry.backoff(attempts))
            return Result(job.row_id, job.subscriber_id, "queued", attempts, code, at)
        except TelegramAPIError as exc:  # 400 and every other refusal
            return Result(job.row_id, job.subscriber_id, "failed", attempts, error_code(exc))
        return Result(job.row_id, job.subscriber_id, "sent", attempts)

    async def _send(self, chat_id: int, content: Content, language: str, *, channel: bool = False) -> None:
        """One message (raises aiogram's errors). The first photo send uploads the image
        and keeps Telegram's file id; the others send that id."""
        if content.image is not None and content.file_id is None:
            async with content.upload_lock:
                if content.file_id is None:
                    message, markup = content.message(language, channel=channel)
                    upload = BufferedInputFile(content.image, filename="image.jpg")
                    sent = await self._bot(
                        SendPhoto(chat_id=chat_id, photo=upload, **message.formatted.as_caption(), reply_markup=markup)
                    )
                    if sent.photo:
                        await self._keep_file_id(content, sent.photo[-1].file_id)
                    return
        method, fields = self._prepared(content, language, channel)
        with results_unused():
            if fields is None:
                await self._bot(method.model_copy(update={"chat_id": chat_id}))
            else:  # the same fields for every chat: serialised here, no model per send
                await self._bot.session.post_json(self._bot, method, orjson.dumps({**fields, "chat_id": chat_id}))

    def _prepared(self, content: Content, language: str, channel: bool) -> tuple[Any, dict[str, Any] | None]:
        key = (language, channel, content.file_id)
        found = content.prepared.get(key)
        if found is None:
            message, markup = content.message(language, channel=channel)
            if content.image is None:
                method: Any = SendMessage(chat_id=0, **message.formatted.as_text(), reply_markup=markup)
            else:
                method = SendPhoto(chat_id=0, photo=content.file_id, **message.formatted.as_caption(),
                                   reply_markup=markup)
            session = self._bot.session
            fields = session.json_fields(self._bot, method) if hasattr(session, "post_json") else None
            found = content.prepared[key] = (method, fields)
        return found

    async def _keep_file_id(self, content: Content, file_id: str) -> None:
        content.file_id = file_id
        try:
            async with write_transaction(self._sessionmaker) as session:
                await session.execute(
                    update(BroadcastImage)
                    .where(BroadcastImage.broadcast_id == content.broadcast_id)
                    .values(file_id=file_id)
                )
        except Exception as exc:  # this process still reuses it
            log.warning("broadcast image id not stored (%s)", type(exc).__name__)

    async def _paced_call(self, key: str, method: Any) -> None:
        """One Bot API call outside the outbox (a test's label), under the same pace."""
        await self.pacer.acquire(key)
        try:
            with results_unused():
                await self._bot(method)
        except TelegramRetryAfter as exc:
            self.pacer.pause(exc.retry_after)
            raise

    async def _paced_send(self, key: str, chat_id: int, content: Content, language: str, *, channel: bool = False) -> None:
        """One send outside the outbox (test sends, channel posts), under the same pace."""
        await self.pacer.acquire(key)
        try:
            await self._send(chat_id, content, language, channel=channel)
        except TelegramRetryAfter as exc:
            self.pacer.pause(exc.retry_after)
            raise

    # ---- writing results ----------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await self._results_ready.wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._results_full.wait(), FLUSH_SECONDS)
            self._results_ready.clear()
            self._results_full.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("broadcast results not written yet (%s); retrying", type(exc).__name__)
                self._results_ready.set()
                await asyncio.sleep(1.0)
            if self._queue.empty():
                self._wake.set()  # perhaps the end of a broadcast

    async def _flush(self) -> None:
        """Write the results known so far in one transaction."""
        results, self._results = self._results, []
        if not results:
            return
        try:
            await self.write_results(results)
        except BaseException:
            self._results[:0] = results
            raise

    async def write_results(self, results: Sequence[Result]) -> None:
        o = BroadcastOutbox
        grouped: dict[tuple[str, int, int | None], list[int]] = defaultdict(list)
        timed: list[dict] = []
        blocked: list[int] = []
        for r in results:
            if r.next_attempt_at is not None:
                timed.append({"b_id": r.row_id, "b_attempts": r.attempts, "b_next": r.next_attempt_at,
                              "b_code": r.error_code})
            else:
                grouped[(r.state, r.attempts, r.error_code)].append(r.row_id)
            if r.state == "blocked":
                blocked.append(r.subscriber_id)
        async with write_transaction(self._sessionmaker) as session:
            for (state, attempts, code), ids in grouped.items():
                values: dict = {"state": state, "attempts": attempts}
                if code is not None:
                    values["error_code"] = code
                for chunk in _chunks(ids):
                    await session.execute(
                        update(o).where(o.id.in_(chunk), o.state == "sending").values(**values)
                    )
            if timed:
                table = o.__table__
                await session.execute(
                    table.update()
                    .where(table.c.id == bindparam("b_id"), table.c.state == "sending")
                    .values(state="queued", attempts=bindparam("b_attempts"),
                            next_attempt_at=bindparam("b_next"), error_code=bindparam("b_code")),
                    timed,
                )
            await SubscriberStore.delete_blocked(session, blocked)

    # ---- test sends and channel posts ---------------------------------------------------

    async def _test_sends(self) -> None:
        t = BroadcastTestSend
        stale = [t.state.in_(("sent", "failed")), t.requested_at < self._now() - TEST_RESULT_TTL]
        async with self._sessionmaker() as session:
            waiting = (await session.execute(select(t.id).where(t.state == "queued").limit(1))).first()
            old = (await session.execute(select(t.id).where(*stale).limit(1))).first()
        if old is not None:  # results the console did not show in time: no history kept
            async with write_transaction(self._sessionmaker) as session:
                await session.execute(delete(t).where(*stale))
        if waiting is None:
            return
        async with write_transaction(self._sessionmaker) as session:
            rows = (
                await session.execute(
                    select(BroadcastTestSend.id, BroadcastTestSend.broadcast_id, BroadcastTestSend.language,
                           StaffChat.link_id, StaffChat.sealed_chat)
                    .join(StaffChat, StaffChat.link_id == BroadcastTestSend.link_id)
                    .where(BroadcastTestSend.state == "queued")
                    .order_by(BroadcastTestSend.id)
                    .limit(20)
                )
            ).all()
            if rows:
                await session.execute(
                    update(BroadcastTestSend)
                    .where(BroadcastTestSend.id.in_([r.id for r in rows]))
                    .values(state="sending")
                )
        for row in rows:
            self._spawn(self._test_send(row.id, row.broadcast_id, row.language, row.link_id, row.sealed_chat))

    async def _test_send(self, test_id: int, broadcast_id: int, language: str, link_id: str, sealed: bytes) -> None:
        """"TEST ..." in the version's language (saying whether it is approved yet), then the
        message with test buttons."""
        state = "failed"
        try:
            async with self._sessionmaker() as session:
                content = await load_content(session, broadcast_id)  # as it is now, not cached
                status = await session.scalar(select(Broadcast.status).where(Broadcast.id == broadcast_id))
            chosen = content.language_for(language) if content is not None else None
            if content is not None and chosen is not None:
                content.test = True
                chat_id = open_staff_chat(self._box, link_id, sealed)
                key = f"t{link_id}"
                label = SendMessage(chat_id=chat_id, text=label_for_test(chosen, status))
                outcome = await self._channel_retry.run(lambda: self._paced_call(key, label), what="test label")
                if outcome.ok:
                    outcome = await self._channel_retry.run(
                        lambda: self._paced_send(key, chat_id, content, chosen), what="test broadcast"
                    )
                state = "sent" if outcome.ok else "failed"
                if outcome.blocked:  # the member blocked the bot: "stop messaging me"
                    await unlink(self._sessionmaker, link_id)
        except Exception as exc:
            log.warning("test broadcast not sent (%s)", type(exc).__name__)
        finally:
            async with write_transaction(self._sessionmaker) as session:
                await session.execute(
                    update(BroadcastTestSend).where(BroadcastTestSend.id == test_id).values(state=state)
                )

    def _channel_posts(self) -> None:
        for broadcast_id in self._channel_due - self._channel_busy:
            self._channel_busy.add(broadcast_id)
            self._spawn(self._post_to_channels(broadcast_id), channel=broadcast_id)

    async def _post_to_channels(self, broadcast_id: int) -> None:
        """The broadcast's post to every publication chat, in its first language, without
        Unsubscribe. ``channel_state``: queued -> sending -> sent | failed (no chat
        configured, or any chat refused it or kept failing) | in_doubt (none failed, but a
        chat's answer timed out: Telegram may have posted it, so it is not posted again)."""
        async with write_transaction(self._sessionmaker) as session:
            claimed = await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.channel_state == "queued",
                       Broadcast.status == "sending")
                .values(channel_state="sending")
            )
            if claimed.rowcount != 1:
                return
            content = await load_content(session, broadcast_id)
        posted = doubtful = 0
        language = content.language_for(content.languages[0] if content.languages else None) if content else None
        if content is not None and language is not None:
            for index, chat_id in enumerate(self._publication):
                try:
                    outcome = await self._channel_retry.run(
                        lambda chat_id=chat_id, index=index: self._post_once(
                            f"p{index}", chat_id, content, language),
                        what="channel post",
                    )
                except _MaybePosted:
                    doubtful += 1
                    continue
                except Exception as exc:
                    log.warning("channel post failed (%s)", type(exc).__name__)
                    continue
                posted += outcome.ok
        if self._publication and posted == len(self._publication):
            state = "sent"
        elif self._publication and posted + doubtful == len(self._publication):
            state = "in_doubt"
        else:
            state = "failed"
        if not self._publication:
            log.warning("broadcast %d: no publication chat configured (NAZAHA_PUBLICATION_CHAT_IDS)", broadcast_id)
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(
                update(Broadcast).where(Broadcast.id == broadcast_id).values(channel_state=state)
            )
        log.info("broadcast %d: channel post %s (%d of %d chat(s), %d in doubt)",
                 broadcast_id, state, posted, len(self._publication), doubtful)
        self.wake()

    async def _post_once(self, key: str, chat_id: int, content: Content, language: str) -> None:
        """One channel post; a timeout raises :class:`_MaybePosted`, which the retry policy
        lets through instead of posting again (at most once, as for subscribers)."""
        try:
            await self._paced_send(key, chat_id, content, language, channel=True)
        except (TelegramNetworkError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if not _is_timeout(exc):
                raise
            raise _MaybePosted() from exc

    def _spawn(self, coro, *, channel: int | None = None) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._side_tasks.discard(t)
            if channel is not None:
                self._channel_busy.discard(channel)
            if not t.cancelled() and t.exception() is not None:
                log.error("broadcast side task failed (%s)", type(t.exception()).__name__)

        task.add_done_callback(finished)
