"""The awareness library: topics and their articles and quiz questions in each language.

Everyone in the awareness area may read it (with a preview of what Telegram shows and a quiz's
aggregate answers); admins add and edit topics and items and publish or unpublish them. What
the console writes is ``origin = "console"``: the bot's content files never overwrite it.
The logic is nazaha.awareness.library_editor's; every change is CSRF-checked and audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup

from nazaha.admin import i18n
from nazaha.admin.context import AdminStaff, AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.awareness import is_admin, query_code
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import library_editor as service
from nazaha.awareness.surveys import quiz_results, split_options
from nazaha.services import audit
from nazaha.storage.awareness_models import ITEM_KINDS, LANGUAGES
from nazaha.storage.database import write_session

router = APIRouter()

Short = Annotated[str, Form(max_length=400)]
Long = Annotated[str, Form(max_length=20_000)]


@router.get("/awareness/library")
async def library_page(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    async with console.sessionmaker() as session:
        topics = await service.library(session)
    return render(request, "library.html", nav="awareness", topics=topics, admin=is_admin(staff),
                  languages=LANGUAGES, done=query_code(request, "done"))


async def _item(console: Console, item_id: int) -> service.ItemView:
    async with console.sessionmaker() as session:
        try:
            return await service.get_item(session, item_id)
        except service.LibraryError:
            raise HTTPException(status_code=404) from None


@router.get("/awareness/library/items/{item_id:int}")
async def item_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, item_id: int) -> Response:
    item = await _item(console, item_id)
    previews = {}
    for language, text in item.texts.items():
        if item.kind == "article":
            html, length = service.article_preview(text, language)
            # preview_html escapes every character of the text itself (nazaha.awareness.markup).
            previews[language] = (Markup(html), length)
    results = None
    if item.kind == "quiz":
        async with console.sessionmaker() as session:
            results = await quiz_results(session, item_id, i18n.current_locale(),
                                         min_cell=console.settings.stats_min_cell)
    return render(request, "library_item.html", nav="awareness", item=item, previews=previews, results=results,
                  admin=is_admin(staff), done=query_code(request, "done"))


def _form_of(item: service.ItemView | None) -> dict:
    if item is None:
        return {"texts": {}, "published": True, "correct": ""}
    correct = next((t.correct_option for t in item.texts.values() if t.correct_option is not None), None)
    return {
        "topic": item.topic, "kind": item.kind, "code": item.code, "published": item.published,
        "correct": str(correct + 1) if correct is not None else "",
        "texts": {lang: {"title": t.title, "body": t.body, "options": "\n".join(t.options), "sources": t.sources}
                  for lang, t in item.texts.items()},
    }


async def _item_form(request: Request, console: Console, item: service.ItemView | None, form: dict,
                     error: tuple[str, str | None] | None = None, status_code: int = 200) -> Response:
    async with console.sessionmaker() as session:
        topics = await service.library(session)
    return render(request, "library_item_edit.html", status_code=status_code, nav="awareness", item=item, form=form,
                  topics=topics, kinds=ITEM_KINDS, languages=LANGUAGES, error=error)


@router.get("/awareness/library/items/new")
async def new_item_page(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    form = _form_of(None)
    form["topic"] = request.query_params.get("topic", "")
    form["kind"] = request.query_params.get("kind") if request.query_params.get("kind") in ITEM_KINDS else "article"
    return await _item_form(request, console, None, form)


@router.get("/awareness/library/items/{item_id:int}/edit")
async def edit_item_page(request: Request, console: ConsoleDep, staff: AdminStaff, item_id: int) -> Response:
    item = await _item(console, item_id)
    return await _item_form(request, console, item, _form_of(item))


async def _save_item(request: Request, console: Console, staff: StaffSession, item_id: int | None) -> Response:
    item = await _item(console, item_id) if item_id is not None else None
    raw = await request.form()

    def field(name: str, limit: int = 20_000) -> str:
        value = raw.get(name)
        return value[:limit] if isinstance(value, str) else ""

    kind = item.kind if item is not None else field("kind", 16)
    correct_text = field("correct", 4).strip()
    correct = int(correct_text) - 1 if correct_text.isdigit() else None
    texts = {}
    form = {"topic": field("topic", 64), "kind": kind, "code": field("code", 64), "published": field("published", 4) == "1",
            "correct": correct_text, "texts": {}}
    for language in LANGUAGES:
        values = {k: field(f"{k}_{language}") for k in ("title", "body", "options", "sources")}
        form["texts"][language] = values
        texts[language] = service.ItemText(
            values["title"], values["body"], tuple(split_options(values["options"])) if kind == "quiz" else (),
            correct if kind == "quiz" else None, values["sources"],
        )
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            saved = await service.save_item(session, topic=form["topic"], kind=kind, texts=texts,
                                            published=form["published"], today=now.date(), item_id=item_id,
                                            code=form["code"])
            await audit.append(session, actor_id=staff.identity.id, action=audit.LIBRARY_CHANGE,
                               detail={"item": saved}, now=now)
    except service.LibraryError as exc:
        return await _item_form(request, console, item, form, (exc.code, exc.language), status_code=400)
    return redirect(f"/awareness/library/items/{saved}?done=saved")


@router.post("/awareness/library/items", dependencies=[CsrfChecked])
async def create_item(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    return await _save_item(request, console, staff, None)


@router.post("/awareness/library/items/{item_id:int}", dependencies=[CsrfChecked])
async def update_item(request: Request, console: ConsoleDep, staff: AdminStaff, item_id: int) -> Response:
    return await _save_item(request, console, staff, item_id)


@router.post("/awareness/library/items/{item_id:int}/publish", dependencies=[CsrfChecked])
async def publish_item(request: Request, console: ConsoleDep, staff: AdminStaff, item_id: int,
                       published: Annotated[str, Form(max_length=4)] = "") -> Response:
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            await service.set_published(session, item_id, published == "1", today=now.date())
            await audit.append(session, actor_id=staff.identity.id, action=audit.LIBRARY_CHANGE,
                               detail={"item": item_id, "published": published == "1"}, now=now)
    except service.LibraryError:
        raise HTTPException(status_code=404) from None
    return redirect(f"/awareness/library/items/{item_id}?done={'published' if published == '1' else 'unpublished'}")


async def _topic_form(request: Request, topic: service.TopicView | None, form: dict,
                      error: tuple[str, str | None] | None = None, status_code: int = 200) -> Response:
    return render(request, "library_topic_edit.html", status_code=status_code, nav="awareness", topic=topic,
                  form=form, languages=LANGUAGES, error=error)


@router.get("/awareness/library/topics/new")
async def new_topic_page(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    return await _topic_form(request, None, {"code": "", "hidden": False, "texts": {}})


@router.get("/awareness/library/topics/{code}/edit")
async def edit_topic_page(request: Request, console: ConsoleDep, staff: AdminStaff, code: str) -> Response:
    async with console.sessionmaker() as session:
        try:
            topic = await service.get_topic(session, code)
        except service.LibraryError:
            raise HTTPException(status_code=404) from None
    form = {"code": topic.code, "hidden": topic.hidden,
            "texts": {lang: {"title": t, "summary": s} for lang, (t, s) in topic.texts.items()}}
    return await _topic_form(request, topic, form)


async def _save_topic(request: Request, console: Console, staff: StaffSession, code: str | None) -> Response:
    raw = await request.form()

    def field(name: str, limit: int = 2000) -> str:
        value = raw.get(name)
        return value[:limit] if isinstance(value, str) else ""

    form = {"code": code if code is not None else field("code", 64), "hidden": field("hidden", 4) == "1", "texts": {}}
    for language in LANGUAGES:
        form["texts"][language] = {"title": field(f"title_{language}", 200), "summary": field(f"summary_{language}")}
    topic = None
    try:
        async with write_session(console.sessionmaker) as session:
            if code is not None:
                topic = await service.get_topic(session, code)
            saved = await service.save_topic(
                session, code=form["code"], hidden=form["hidden"], new=code is None,
                texts={lang: (v["title"], v["summary"]) for lang, v in form["texts"].items()},
            )
            await audit.append(session, actor_id=staff.identity.id, action=audit.LIBRARY_CHANGE,
                               detail={"topic": saved}, now=console.clock())
    except service.LibraryError as exc:
        if exc.code == "not_found":
            raise HTTPException(status_code=404) from None
        return await _topic_form(request, topic, form, (exc.code, exc.language), status_code=400)
    return redirect("/awareness/library?done=topic_saved")


@router.post("/awareness/library/topics", dependencies=[CsrfChecked])
async def create_topic(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    return await _save_topic(request, console, staff, None)


@router.post("/awareness/library/topics/{code}", dependencies=[CsrfChecked])
async def update_topic(request: Request, console: ConsoleDep, staff: AdminStaff, code: str) -> Response:
    return await _save_topic(request, console, staff, code)
