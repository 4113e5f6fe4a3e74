"""Short anonymous surveys, as the console makes and reads them.

A survey has a question and 2-8 options in one or both languages (the same number of options
in each: answers are counted per option index, whatever the language), a closing date, and a
status: ``draft`` (being written, editable), ``open`` (a broadcast may carry it; the bot counts
answers), ``closed`` (final). Opening creates the survey's ``survey_counts`` rows, one per
option at 0 in option order (from the texts as they are then: a draft's options may change
until it opens), so that no answer ever creates a row. Closing deletes the survey's
"already answered" markers.

Results are aggregates only (``survey_counts``, which the bot adds to in batches of at
least NAZAHA_AGGREGATE_MIN_BATCH answers, so the last few may not show yet), shown with
small-cell suppression (:mod:`nazaha.services.disclosure`): a cell under ``min_cell`` (5 at
least) is hidden, and another is withheld where the hidden one could be worked out from the
total and the rest; below ``min_cell`` answers in all, no breakdown is shown. Quiz results
(anonymous Telegram polls, summed per item and option in ``quiz_counts``) follow the same
rule.

Functions take the caller's session (a write transaction where they write) and do not commit.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.disclosure import breakdown
from nazaha.storage.awareness_models import (
    LANGUAGES,
    AwarenessItemText,
    QuizCount,
    Survey,
    SurveyAnswerMarker,
    SurveyCount,
    SurveyText,
)

__all__ = [
    "MIN_CELL", "QUESTION_MAX", "OPTION_MAX", "MIN_OPTIONS", "MAX_OPTIONS", "SurveyError",
    "SurveyView", "SurveyInput", "Results", "ResultRow", "list_surveys", "get_survey",
    "save_survey", "open_survey", "close_survey", "close_due_surveys", "survey_results",
    "quiz_results", "survey_for_message", "split_options",
]

MIN_CELL = 5  # never fewer, whatever the statistics setting says
QUESTION_MAX = 300
OPTION_MAX = 64  # an option is a button label
MIN_OPTIONS, MAX_OPTIONS = 2, 8


class SurveyError(ValueError):
    """Refused: ``code`` is ``not_found``, ``not_allowed``, ``not_editable``, ``transition``,
    ``no_language``, ``question``, ``options``, ``option_count_differs`` or ``closes_on``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def split_options(text: str | None) -> list[str]:
    """One option per line; blank lines and surrounding spaces dropped. Every line boundary
    Python knows (``str.splitlines``: \\n, \\r, U+2028, U+0085, \\v, ...) separates options,
    and this is the ONE split the console, its preview, the count rows, the sender's buttons
    and the bot's answers all use: an option holding U+2028 once showed as one button in
    the preview and went out as two, shifting every answer after it."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@dataclass(frozen=True)
class SurveyInput:
    """``texts``: language -> (question, options one per line); a language left empty is
    not offered. ``closes_on``: the last day answers are taken (None: until closed)."""

    texts: Mapping[str, tuple[str, str]]
    closes_on: dt.date | None


@dataclass(frozen=True)
class SurveyView:
    id: int
    code: str
    status: str
    author_no: int
    created_on: dt.date
    closes_on: dt.date | None
    texts: dict[str, tuple[str, tuple[str, ...]]]  # language -> (question, options)
    total: int = 0

    def question(self, language: str) -> str:
        """The question in ``language``, else in the first language it has."""
        text = self.texts.get(language) or next(iter(self.texts.values()), ("", ()))
        return text[0]

    def options(self, language: str) -> tuple[str, ...]:
        text = self.texts.get(language) or next(iter(self.texts.values()), ("", ()))
        return text[1]


@dataclass(frozen=True)
class ResultRow:
    index: int
    label: str
    shown: int | str  # the count, "<5" (small) or "x" (withheld as a complement)
    percent: float | None  # of the total, for a count that is shown


@dataclass(frozen=True)
class Results:
    """``total``: every answer (shown only from ``min_cell`` answers: else None and no rows)."""

    total: int | None
    min_cell: int
    rows: list[ResultRow] = field(default_factory=list)


def _view(survey: Survey, texts: list[SurveyText], total: int) -> SurveyView:
    by_language = {
        t.language: (t.question, tuple(split_options(t.options)))
        for t in sorted(texts, key=lambda t: LANGUAGES.index(t.language) if t.language in LANGUAGES else 9)
    }
    return SurveyView(survey.id, survey.code, survey.status, survey.author_id, survey.created_on,
                      survey.closes_on, by_language, total)


async def list_surveys(session: AsyncSession, *, status: str | None = None) -> list[SurveyView]:
    """Every survey (newest first), or those of one status."""
    statement = select(Survey).order_by(Survey.id.desc())
    if status is not None:
        statement = statement.where(Survey.status == status)
    surveys = list((await session.scalars(statement)).all())
    if not surveys:
        return []
    ids = [s.id for s in surveys]
    texts: dict[int, list[SurveyText]] = {}
    for text in (await session.scalars(select(SurveyText).where(SurveyText.survey_id.in_(ids)))).all():
        texts.setdefault(text.survey_id, []).append(text)
    totals = dict(
        (await session.execute(
            select(SurveyCount.survey_id, func.sum(SurveyCount.count))
            .where(SurveyCount.survey_id.in_(ids)).group_by(SurveyCount.survey_id)
        )).all()
    )
    return [_view(s, texts.get(s.id, []), int(totals.get(s.id) or 0)) for s in surveys]


async def get_survey(session: AsyncSession, survey_id: int) -> SurveyView:
    survey = await session.get(Survey, survey_id)
    if survey is None:
        raise SurveyError("not_found")
    texts = list((await session.scalars(select(SurveyText).where(SurveyText.survey_id == survey_id))).all())
    total = await session.scalar(select(func.sum(SurveyCount.count)).where(SurveyCount.survey_id == survey_id))
    return _view(survey, texts, int(total or 0))


def _checked_texts(survey: SurveyInput) -> dict[str, tuple[str, list[str]]]:
    texts: dict[str, tuple[str, list[str]]] = {}
    for language in LANGUAGES:
        question, options_text = survey.texts.get(language, ("", ""))
        question, options = question.strip(), split_options(options_text)
        if not question and not options:
            continue
        if not question or len(question) > QUESTION_MAX:
            raise SurveyError("question")
        if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS or any(len(o) > OPTION_MAX for o in options):
            raise SurveyError("options")
        texts[language] = (question, options)
    if not texts:
        raise SurveyError("no_language")
    if len({len(options) for _, options in texts.values()}) > 1:
        raise SurveyError("option_count_differs")
    return texts


async def save_survey(
    session: AsyncSession, survey: SurveyInput, *, author: int, today: dt.date,
    survey_id: int | None = None, admin: bool = False,
) -> int:
    """Create a draft survey (``survey_id`` None) or rewrite a draft (its author or an
    admin). Returns the survey's id. :class:`SurveyError` on bad input."""
    texts = _checked_texts(survey)
    if survey.closes_on is not None and survey.closes_on < today:
        raise SurveyError("closes_on")
    if survey_id is None:
        row = Survey(code=secrets.token_urlsafe(9), status="draft", author_id=author,
                     created_on=today, closes_on=survey.closes_on)
        session.add(row)
        await session.flush()
    else:
        row = await session.get(Survey, survey_id)
        if row is None:
            raise SurveyError("not_found")
        if not admin and row.author_id != author:
            raise SurveyError("not_allowed")
        if row.status != "draft":
            raise SurveyError("not_editable")
        row.closes_on = survey.closes_on
        await session.execute(delete(SurveyText).where(SurveyText.survey_id == row.id))
    for language, (question, options) in texts.items():
        session.add(SurveyText(survey_id=row.id, language=language, question=question, options="\n".join(options)))
    await session.flush()
    return row.id


async def _row_for_change(session: AsyncSession, survey_id: int, author: int, admin: bool) -> Survey:
    row = await session.get(Survey, survey_id)
    if row is None:
        raise SurveyError("not_found")
    if not admin and row.author_id != author:
        raise SurveyError("not_allowed")
    return row


async def open_survey(session: AsyncSession, survey_id: int, *, author: int, admin: bool, today: dt.date) -> None:
    """draft -> open (its author or an admin); a closing date already past is refused. The
    survey's count rows are made now: one per option, at 0, in option order."""
    row = await _row_for_change(session, survey_id, author, admin)
    if row.status != "draft":
        raise SurveyError("transition")
    if row.closes_on is not None and row.closes_on < today:
        raise SurveyError("closes_on")
    row.status = "open"
    options = max(
        (len(split_options(text)) for text in (await session.scalars(
            select(SurveyText.options).where(SurveyText.survey_id == survey_id))).all()),
        default=0,
    )
    await session.execute(delete(SurveyCount).where(SurveyCount.survey_id == survey_id))
    for option in range(options):  # one by one: the rows land in option order
        await session.execute(insert(SurveyCount).values(survey_id=survey_id, option=option))
    await session.flush()


async def close_survey(session: AsyncSession, survey_id: int, *, author: int, admin: bool) -> None:
    """open (or draft) -> closed, and its "already answered" markers deleted."""
    row = await _row_for_change(session, survey_id, author, admin)
    if row.status == "closed":
        raise SurveyError("transition")
    row.status = "closed"
    await session.execute(delete(SurveyAnswerMarker).where(SurveyAnswerMarker.survey_id == survey_id))
    await session.flush()


async def close_due_surveys(session: AsyncSession, today: dt.date) -> int:
    """Close the open surveys whose closing date is over (markers deleted); how many."""
    due = list((await session.scalars(
        select(Survey).where(Survey.status == "open", Survey.closes_on.is_not(None), Survey.closes_on < today)
    )).all())
    for row in due:
        row.status = "closed"
        await session.execute(delete(SurveyAnswerMarker).where(SurveyAnswerMarker.survey_id == row.id))
    await session.flush()
    return len(due)


def _results(counts: list[int], labels: list[str], min_cell: int) -> Results:
    k = max(MIN_CELL, int(min_cell))
    total, shown = breakdown(counts, k)
    if total is None:
        return Results(total=None, min_cell=k)
    rows = [
        ResultRow(i, labels[i] if i < len(labels) else f"#{i + 1}", value,
                  round(100.0 * value / total, 1) if isinstance(value, int) else None)
        for i, value in enumerate(shown)
    ]
    return Results(total=total, min_cell=k, rows=rows)


async def survey_results(session: AsyncSession, survey_id: int, language: str, *, min_cell: int = MIN_CELL) -> Results:
    """The survey's counts per option (labels in ``language`` where it has them)."""
    view = await get_survey(session, survey_id)
    labels = list(view.options(language))
    stored = dict((await session.execute(
        select(SurveyCount.option, SurveyCount.count).where(SurveyCount.survey_id == survey_id)
    )).all())
    size = max([len(labels), *(o + 1 for o in stored)], default=0)
    return _results([int(stored.get(i, 0)) for i in range(size)], labels, min_cell)


async def quiz_results(session: AsyncSession, item_id: int, language: str, *, min_cell: int = MIN_CELL) -> Results:
    """A quiz item's answers per option: Telegram's anonymous counts of every poll sent for
    it, summed by the bot into ``quiz_counts`` (labels in ``language`` where the item has it)."""
    texts = {t.language: t for t in (await session.scalars(
        select(AwarenessItemText).where(AwarenessItemText.item_id == item_id))).all()}
    text = texts.get(language) or next(iter(texts.values()), None)
    labels = split_options(text.options) if text is not None else []
    stored = dict((await session.execute(
        select(QuizCount.option, QuizCount.count).where(QuizCount.item_id == item_id)
    )).all())
    size = max([len(labels), *(o + 1 for o in stored)], default=0)
    return _results([max(0, int(stored.get(i, 0))) for i in range(size)], labels, min_cell)


async def survey_for_message(session: AsyncSession, survey_id: int | None, language: str) -> tuple[str, tuple[str, ...]] | None:
    """What a broadcast carrying survey ``survey_id`` shows in ``language``: the survey's code
    (for the buttons' callback data) and its options in that language; None if there is no
    survey or it has no text in that language."""
    if survey_id is None:
        return None
    survey = await session.get(Survey, survey_id)
    text = await session.get(SurveyText, (survey_id, language))
    if survey is None or text is None:
        return None
    return survey.code, tuple(split_options(text.options))
