"""Short anonymous surveys: create (question and 2-8 answers per language, a closing date),
open, close, and their results as aggregates with small cells hidden.

Anyone in the awareness area may create a survey and read results; its author or an admin
edits a draft, opens and closes it. Opening publishes it in the bot's "Have your say" (Learn)
to everyone, and lets broadcasts carry it. Closing deletes the survey's "already answered"
markers; answers the bot holds in memory, fewer than a batch, are then never counted (the
pages say so: nazaha/awareness/tally.py).
The logic is nazaha.awareness.surveys'; every change is CSRF-checked and audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin import i18n
from nazaha.admin.context import AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.awareness import aggregate_min_batch, is_admin, query_code
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import members
from nazaha.awareness import surveys as service
from nazaha.services import audit
from nazaha.storage.awareness_models import LANGUAGES
from nazaha.storage.database import write_session

router = APIRouter()

Question = Annotated[str, Form(max_length=1000)]
Options = Annotated[str, Form(max_length=4000)]


@router.get("/awareness/surveys")
async def survey_list(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    async with console.sessionmaker() as session:
        items = await service.list_surveys(session)
    return render(request, "surveys.html", nav="awareness", items=items,
                  min_cell=max(service.MIN_CELL, console.settings.stats_min_cell),
                  min_batch=aggregate_min_batch(console))


async def _survey(console: Console, survey_id: int) -> service.SurveyView:
    async with console.sessionmaker() as session:
        try:
            return await service.get_survey(session, survey_id)
        except service.SurveyError:
            raise HTTPException(status_code=404) from None


async def _may_change(console: Console, staff: StaffSession, survey: service.SurveyView) -> bool:
    if is_admin(staff):
        return True
    async with console.sessionmaker() as session:
        return await members.existing_number(session, staff.identity.id) == survey.author_no


@router.get("/awareness/surveys/{survey_id:int}")
async def survey_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, survey_id: int) -> Response:
    survey = await _survey(console, survey_id)
    async with console.sessionmaker() as session:
        results = await service.survey_results(session, survey_id, i18n.current_locale(),
                                               min_cell=console.settings.stats_min_cell)
        names = await members.names_by_number(session, [survey.author_no])
    return render(request, "survey.html", nav="awareness", survey=survey, results=results, names=names,
                  may_change=await _may_change(console, staff, survey), min_batch=aggregate_min_batch(console),
                  error=query_code(request, "error"), done=query_code(request, "done"))


def _form(survey: service.SurveyView | None) -> dict:
    if survey is None:
        return {"texts": {}, "closes_on": ""}
    return {"closes_on": survey.closes_on.isoformat() if survey.closes_on else "",
            "texts": {lang: {"question": q, "options": "\n".join(o)} for lang, (q, o) in survey.texts.items()}}


def _edit_page(request: Request, survey, form: dict, error: str | None = None, status_code: int = 200) -> Response:
    return render(request, "survey_edit.html", status_code=status_code, nav="awareness", survey=survey, form=form,
                  languages=LANGUAGES, error=error)


@router.get("/awareness/surveys/new")
async def new_survey_page(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    return _edit_page(request, None, _form(None))


@router.get("/awareness/surveys/{survey_id:int}/edit")
async def edit_survey_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, survey_id: int) -> Response:
    survey = await _survey(console, survey_id)
    if survey.status != "draft" or not await _may_change(console, staff, survey):
        return redirect(f"/awareness/surveys/{survey_id}?error=not_editable")
    return _edit_page(request, survey, _form(survey))


async def _save(request: Request, console: Console, staff: StaffSession, survey_id: int | None, *,
                question_ar: str, options_ar: str, question_en: str, options_en: str, closes_on: str) -> Response:
    survey = await _survey(console, survey_id) if survey_id is not None else None
    form = {"closes_on": closes_on, "texts": {"ar": {"question": question_ar, "options": options_ar},
                                              "en": {"question": question_en, "options": options_en}}}
    try:
        closing = dt.date.fromisoformat(closes_on) if closes_on.strip() else None
    except ValueError:
        return _edit_page(request, survey, form, "closes_on", 400)
    data = service.SurveyInput({"ar": (question_ar, options_ar), "en": (question_en, options_en)}, closing)
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            number = await members.number_of(session, staff.identity.id)
            saved = await service.save_survey(session, data, author=number, today=now.date(), survey_id=survey_id,
                                              admin=is_admin(staff))
            await audit.append(session, actor_id=staff.identity.id, action=audit.SURVEY_CHANGE,
                               detail={"survey": saved, "status": "draft"}, now=now)
    except service.SurveyError as exc:
        return _edit_page(request, survey, form, exc.code, 400)
    return redirect(f"/awareness/surveys/{saved}?done=saved")


@router.post("/awareness/surveys", dependencies=[CsrfChecked])
async def create(request: Request, console: ConsoleDep, staff: AwarenessStaff,
                 question_ar: Question = "", options_ar: Options = "", question_en: Question = "",
                 options_en: Options = "", closes_on: Annotated[str, Form(max_length=16)] = "") -> Response:
    return await _save(request, console, staff, None, question_ar=question_ar, options_ar=options_ar,
                       question_en=question_en, options_en=options_en, closes_on=closes_on)


@router.post("/awareness/surveys/{survey_id:int}", dependencies=[CsrfChecked])
async def update(request: Request, console: ConsoleDep, staff: AwarenessStaff, survey_id: int,
                 question_ar: Question = "", options_ar: Options = "", question_en: Question = "",
                 options_en: Options = "", closes_on: Annotated[str, Form(max_length=16)] = "") -> Response:
    return await _save(request, console, staff, survey_id, question_ar=question_ar, options_ar=options_ar,
                       question_en=question_en, options_en=options_en, closes_on=closes_on)


async def _status(console: Console, staff: StaffSession, survey_id: int, status: str) -> Response:
    await _survey(console, survey_id)
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            number = await members.number_of(session, staff.identity.id)
            if status == "open":
                await service.open_survey(session, survey_id, author=number, admin=is_admin(staff), today=now.date())
            else:
                await service.close_survey(session, survey_id, author=number, admin=is_admin(staff))
            await audit.append(session, actor_id=staff.identity.id, action=audit.SURVEY_CHANGE,
                               detail={"survey": survey_id, "status": status}, now=now)
    except service.SurveyError as exc:
        return redirect(f"/awareness/surveys/{survey_id}?error={exc.code}")
    return redirect(f"/awareness/surveys/{survey_id}?done={status}")


@router.post("/awareness/surveys/{survey_id:int}/open", dependencies=[CsrfChecked])
async def open_survey(request: Request, console: ConsoleDep, staff: AwarenessStaff, survey_id: int) -> Response:
    return await _status(console, staff, survey_id, "open")


@router.post("/awareness/surveys/{survey_id:int}/close", dependencies=[CsrfChecked])
async def close_survey(request: Request, console: ConsoleDep, staff: AwarenessStaff, survey_id: int) -> Response:
    return await _status(console, staff, survey_id, "closed")
