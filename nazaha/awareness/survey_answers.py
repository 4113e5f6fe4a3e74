"""Short anonymous surveys in the bot: which are open, and counting an answer.

An answer leaves:

1. a **marker** ``HMAC-SHA256(pepper, "survey", survey id, user id)`` in
   ``survey_answer_markers``, written at once in a transaction of its own (never through the
   update's unit of work, which may carry the user's preferences row and, on SQLite, shares
   one commit with other users' updates): "this account answered this survey", with no
   answer; it expires when the survey closes (the end of ``closes_on``) or 30 days after the
   answer, rounded down to the hour, and the bot's maintenance deletes it then;
2. **+1** for ``(survey, option)`` in the bot's memory (:class:`~nazaha.awareness.tally.Tally`,
   one group per survey), added to ``survey_counts`` only once ``min_batch`` answers to that
   survey are waiting, all in one transaction: the only record of the answer. The rows of
   ``survey_counts`` exist before the first answer (made in option order when the survey
   opens, or by the first batch for all options at once), so neither their order nor a
   commit pairs an answer with its marker: whoever reads the database or its WAL sees a
   batch of at least ``min_batch`` answers and as many markers.

The marker is written first, so a crash loses answers rather than counting one twice; a
graceful stop drops a survey's batch smaller than ``min_batch`` (tally.py says why). The
pepper can test a Telegram id against a marker (an id counts as known to whoever holds the
pepper), which says only that the account answered, until the marker expires or the account
sends /wipe (:meth:`SurveyAnswers.forget_account`).

Results are never shown to citizens; the console shows aggregates (cells under 5 hidden).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.awareness.surveys import split_options  # the one split (see there)
from nazaha.awareness.tally import DEFAULT_MIN_BATCH, Batch, Tally, add_counts, ensure_rows

from nazaha.storage.awareness_models import (
    LANGUAGES,
    Survey,
    SurveyAnswerMarker,
    SurveyCount,
    SurveyText,
)
from nazaha.storage.crypto import pseudonym
from nazaha.storage.database import dialect_insert, write_transaction
from nazaha.storage.unit_of_work import active_uow

__all__ = ["MARKER_TTL", "Answer", "OpenSurvey", "SurveyAnswers", "marker_expiry", "write_survey_counts"]

MARKER_TTL = dt.timedelta(days=30)
CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class Answer(enum.Enum):
    """How recording an answer ended."""

    COUNTED = "counted"
    ALREADY = "already"  # this account answered before: nothing counted
    CLOSED = "closed"  # unknown, not open, past its closing day, or no such option


@dataclass(frozen=True)
class OpenSurvey:
    """A survey as a citizen sees it, in one language (the other if this one is missing)."""

    id: int
    code: str
    question: str
    options: tuple[str, ...]
    language: str


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def marker_expiry(closes_on: dt.date | None, now: dt.datetime) -> dt.datetime:
    """When a marker made ``now`` expires: the end of the closing day (midnight UTC after
    it) if the survey has one, else ``now`` + 30 days; rounded down to the hour."""
    if closes_on is not None:
        return dt.datetime.combine(closes_on + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return _hour(now + MARKER_TTL)


def _is_open(status: str, closes_on: dt.date | None, today: dt.date) -> bool:
    return status == "open" and (closes_on is None or closes_on >= today)


def valid_code(code: str) -> bool:
    return 0 < len(code) <= 16 and set(code) <= CODE_CHARS


async def write_survey_counts(session: AsyncSession, batch: Batch) -> None:
    """A batch of ``((survey id, option), n)``: first the rows of every option of each
    survey in it that are missing (count 0, option order), then the additions."""
    survey_ids = sorted({survey_id for (survey_id, _option), _n in batch})
    options: dict[int, int] = {}
    for survey_id, text in (
        await session.execute(
            select(SurveyText.survey_id, SurveyText.options).where(SurveyText.survey_id.in_(survey_ids))
        )
    ).all():
        options[survey_id] = max(options.get(survey_id, 0), len(split_options(text)))
    keys = [(survey_id, option) for survey_id in survey_ids for option in range(options.get(survey_id, 0))]
    table, key_names = SurveyCount.__table__, ("survey_id", "option")
    await ensure_rows(session, table, key_names, keys)
    await add_counts(session, table, key_names, "biased_count", batch)


class SurveyAnswers:
    """Open surveys and answers to them. ``pepper`` keys the markers; ``min_batch``: the
    answers to one survey held in memory before they are written (see the module)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], pepper: bytes, *,
        min_batch: int = DEFAULT_MIN_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._pepper = pepper
        self.counts: Tally[tuple[int, int]] = Tally(
            sessionmaker, write_survey_counts, min_batch=min_batch,
            group=lambda key: key[0], name="survey answers",
        )

    def marker(self, survey_id: int, user_id: int) -> str:
        return pseudonym(self._pepper, "survey", int(survey_id), int(user_id))

    # ---- reads ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        uow = active_uow()
        if uow is not None:
            yield await uow.read()
            return
        async with self._sessionmaker() as session:
            yield session

    async def open_surveys(self, language: str, today: dt.date) -> list[OpenSurvey]:
        """Open surveys (newest first) that have a text in some language."""
        async with self._reading() as session:
            rows = list(
                (
                    await session.execute(
                        select(Survey.id, Survey.code, Survey.status, Survey.closes_on)
                        .where(Survey.status == "open")
                        .order_by(Survey.created_on.desc(), Survey.id.desc())
                    )
                ).all()
            )
            ids = [r.id for r in rows if _is_open(r.status, r.closes_on, today)]
            texts = await self._texts(session, ids)
        surveys = []
        for row in rows:
            chosen = _choose(texts.get(row.id, {}), language)
            if row.id in ids and chosen is not None:
                shown, (question, options) = chosen
                surveys.append(OpenSurvey(row.id, row.code, question, options, shown))
        return surveys

    async def survey(self, code: str, language: str, today: dt.date) -> OpenSurvey | None:
        """The survey ``code`` if it is open now (else None)."""
        if not valid_code(code):
            return None
        async with self._reading() as session:
            row = (
                await session.execute(
                    select(Survey.id, Survey.status, Survey.closes_on).where(Survey.code == code)
                )
            ).one_or_none()
            if row is None or not _is_open(row.status, row.closes_on, today):
                return None
            texts = await self._texts(session, [row.id])
        chosen = _choose(texts.get(row.id, {}), language)
        if chosen is None:
            return None
        shown, (question, options) = chosen
        return OpenSurvey(row.id, code, question, options, shown)

    @staticmethod
    async def _texts(session: AsyncSession, ids: list[int]) -> dict[int, dict[str, tuple[str, tuple[str, ...]]]]:
        if not ids:
            return {}
        rows = await session.execute(
            select(SurveyText.survey_id, SurveyText.language, SurveyText.question, SurveyText.options)
            .where(SurveyText.survey_id.in_(ids))
        )
        texts: dict[int, dict[str, tuple[str, tuple[str, ...]]]] = {}
        for survey_id, language, question, options in rows:
            listed = tuple(split_options(options))
            if question and len(listed) >= 2:
                texts.setdefault(survey_id, {})[language] = (question, listed)
        return texts

    # ---- writes -----------------------------------------------------------------------

    async def answer(self, code: str, option: int, user_id: int, *, now: dt.datetime) -> Answer:
        """Record that the account ``user_id`` chose ``option`` (0-based) of survey ``code``:
        the marker in a transaction of its own, then +1 in memory, written with the survey's
        next batch (see the module's docstring). Must not run inside the update's write
        transaction (a due batch is written here)."""
        today = now.date()
        if not valid_code(code) or option < 0:
            return Answer.CLOSED
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(Survey.id, Survey.status, Survey.closes_on).where(Survey.code == code)
                )
            ).one_or_none()
            if row is None or not _is_open(row.status, row.closes_on, today):
                return Answer.CLOSED
            texts = await self._texts(session, [row.id])
        counts = {len(options) for _question, options in texts.get(row.id, {}).values()}
        if not counts or option >= min(counts):
            return Answer.CLOSED
        if not await self._mark(row.id, self.marker(row.id, user_id), marker_expiry(row.closes_on, now), now):
            return Answer.ALREADY
        await self.counts.add((row.id, option))
        return Answer.COUNTED

    async def _mark(self, survey_id: int, marker: str, expires_at: dt.datetime, now: dt.datetime) -> bool:
        """Insert the marker (replacing an expired one); False if a live one exists."""

        async def op(session: AsyncSession) -> bool:
            insert = dialect_insert(session)
            await session.execute(
                delete(SurveyAnswerMarker).where(
                    SurveyAnswerMarker.marker == marker, SurveyAnswerMarker.expires_at <= now
                )
            )
            result = await session.execute(
                insert(SurveyAnswerMarker)
                .values(marker=marker, survey_id=survey_id, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["marker"])
            )
            return bool(result.rowcount)

        return bool(await self._write(op))

    async def _write(self, op):
        """``op`` in a write transaction of its own (the engine's writer lock on SQLite)."""
        async with write_transaction(self._sessionmaker) as session:
            return await op(session)

    async def purge_expired_markers(self, now: dt.datetime) -> int:
        """Delete markers whose time is over, and those of closed surveys. Returns how many."""

        async def op(session: AsyncSession) -> int:
            expired = await session.execute(
                delete(SurveyAnswerMarker).where(SurveyAnswerMarker.expires_at <= now)
            )
            closed = await session.execute(
                delete(SurveyAnswerMarker).where(
                    SurveyAnswerMarker.survey_id.in_(select(Survey.id).where(Survey.status == "closed"))
                )
            )
            return int(expired.rowcount or 0) + int(closed.rowcount or 0)

        return int(await self._write(op))

    async def forget_account(self, user_id: int) -> int:
        """/wipe: delete this account's markers of every survey there is (surveys are few:
        the marker of each is computed), in a transaction of its own. The account may then
        answer those surveys again. Returns how many markers went."""
        async with write_transaction(self._sessionmaker) as session:
            ids = list((await session.scalars(select(Survey.id).order_by(Survey.id))).all())
            deleted = 0
            for start in range(0, len(ids), 500):
                markers = [self.marker(survey_id, user_id) for survey_id in ids[start:start + 500]]
                result = await session.execute(
                    delete(SurveyAnswerMarker).where(SurveyAnswerMarker.marker.in_(markers))
                )
                deleted += int(result.rowcount or 0)
        return deleted


def _choose(texts: dict[str, tuple[str, tuple[str, ...]]], language: str):
    for candidate in (language, *(c for c in LANGUAGES if c != language), *sorted(texts)):
        if candidate in texts:
            return candidate, texts[candidate]
    return None
