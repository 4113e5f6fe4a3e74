"""Broadcasts: compose and edit, the preview of exactly what Telegram will show, "send a test
to me", submission, approval by a second person (an admin who is not the author), rejection
with a note, pause/resume/cancel, and the delivery progress.

Volunteers and caseworkers see and act on their own broadcasts; admins see every broadcast.
Every change is CSRF-checked and audited in the same transaction (content-free: the
broadcast's id, never its text). The logic is nazaha.awareness.broadcasts'.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.admin.broadcast_summary import delivery_summary
from nazaha.admin.context import AdminStaff, AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.awareness import chat_state, is_admin, query_code
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import broadcasts as service
from nazaha.awareness import members, surveys
from nazaha.awareness.broadcast_image import MAX_UPLOAD_BYTES, ImageRefused, prepare_image_async
from nazaha.awareness.broadcast_progress import audience_size
from nazaha.awareness.broadcast_revision import PART_NAME
from nazaha.awareness.library_editor import library
from nazaha.awareness.schedule import ScheduleError, palestine_parts, parse_send_at
from nazaha.awareness.test_send_limits import SendTestLimits
from nazaha.services import audit
from nazaha.storage.awareness_models import LANGUAGES, OUTBOX_STATES
from nazaha.storage.database import write_session

router = APIRouter()

# While a broadcast may be sending, its progress page reloads itself this often (a <meta>
# refresh: the pages carry no inline script).
PROGRESS_REFRESH_SECONDS = 5
REFRESHING = frozenset({"approved", "sending"})


def _channel_available(console: Console) -> bool:
    return bool(console.settings.publication_chat_ids)


async def _number(console: Console, staff: StaffSession) -> int | None:
    async with console.sessionmaker() as session:
        return await members.existing_number(session, staff.identity.id)


async def _visible(console: Console, staff: StaffSession, broadcast_id: int) -> service.BroadcastView:
    """The broadcast if this member may see it (404 otherwise: a volunteer does not learn
    that another's broadcast exists)."""
    number = await _number(console, staff)
    async with console.sessionmaker() as session:
        try:
            return await service.get_broadcast(session, broadcast_id, viewer=number, admin=is_admin(staff))
        except service.BroadcastError:
            raise HTTPException(status_code=404) from None


async def _summary(console: Console, session: AsyncSession, view: service.BroadcastView, progress: dict[str, int]) -> str:
    """Where the delivery stands, in words (before the start: with the audience it would have)."""
    audience = None
    if view.started_at is None and view.status != "cancelled" and not sum(progress.values()):
        audience = await audience_size(session, ",".join(view.topics), ",".join(view.languages))
    return delivery_summary(view.status, progress, started_at=view.started_at, send_at=view.send_at,
                            audience=audience, now=console.clock())


async def _form_context(console: Console) -> dict:
    async with console.sessionmaker() as session:
        topics = await library(session)
        open_surveys = await surveys.list_surveys(session, status="open")
    return {"topics": topics, "open_surveys": open_surveys, "languages": LANGUAGES,
            "channel_available": _channel_available(console)}


@router.get("/awareness/broadcasts")
async def broadcast_list(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    admin = is_admin(staff)
    number = await _number(console, staff)
    async with console.sessionmaker() as session:
        items = await service.list_broadcasts(session, author=None if admin else number) if admin or number else []
        progress = await service.progress_of_many(session, [b.id for b in items])
        names = await members.names_by_number(session, [b.author_no for b in items])
    return render(request, "broadcasts.html", nav="awareness", items=items, progress=progress, names=names,
                  admin=admin, me=number, now=console.clock())


@router.get("/awareness/broadcasts/new")
async def compose_page(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    return render(request, "broadcast_edit.html", nav="awareness", broadcast=None, form=None,
                  error=None, **await _form_context(console))


@router.get("/awareness/broadcasts/{broadcast_id:int}/edit")
async def edit_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    view = await _visible(console, staff, broadcast_id)
    if not view.editable or view.author_no != await _number(console, staff):
        return redirect(f"/awareness/broadcasts/{broadcast_id}?error=not_editable")
    date, time = palestine_parts(view.send_at)
    form = {
        "name": view.name, "bodies": view.bodies, "languages": view.languages, "topics": view.topics,
        "to_channel": view.to_channel, "survey": view.survey_id, "send_date": date, "send_time": time,
    }
    return render(request, "broadcast_edit.html", nav="awareness", broadcast=view, form=form, error=None,
                  **await _form_context(console))


async def _read_upload(image: UploadFile | None) -> bytes | None:
    if image is None or not image.filename:
        return None
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    return data or None


async def _save(
    request: Request, console: Console, staff: StaffSession, broadcast_id: int | None, *,
    name: str, body_ar: str, body_en: str, language: list[str], topic: list[str], to_channel: str,
    survey: str, send_date: str, send_time: str, image: UploadFile | None, remove_image: str,
) -> Response:
    form = {
        "name": name, "bodies": {"ar": body_ar, "en": body_en}, "languages": tuple(language),
        "topics": tuple(topic), "to_channel": to_channel == "1", "survey": int(survey) if survey.isdigit() else None,
        "send_date": send_date, "send_time": send_time,
    }
    view = await _visible(console, staff, broadcast_id) if broadcast_id is not None else None

    async def refused(code: str) -> Response:
        return render(request, "broadcast_edit.html", status_code=400, nav="awareness", broadcast=view, form=form,
                      error=code, **await _form_context(console))

    try:
        send_at = parse_send_at(send_date, send_time)
    except ScheduleError:
        return await refused("send_at")
    upload = await _read_upload(image)
    jpeg = None
    if upload is not None:
        try:
            jpeg = await prepare_image_async(upload)  # one upload decoded at a time
        except ImageRefused as exc:
            return await refused("image_" + exc.code)
    composition = service.Composition(
        name=name, bodies=form["bodies"], topics=tuple(topic), languages=tuple(language),
        to_channel=form["to_channel"], survey_id=form["survey"], send_at=send_at,
    )
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            number = await members.number_of(session, staff.identity.id)
            saved = await service.save_broadcast(session, composition, author=number, now=now,
                                                 channel_available=_channel_available(console),
                                                 broadcast_id=broadcast_id)
            if jpeg is not None:
                await service.set_image(session, saved, jpeg, author=number)
            elif remove_image == "1":
                await service.set_image(session, saved, None, author=number)
            await audit.append(session, actor_id=staff.identity.id, action=audit.BROADCAST_CHANGE,
                               detail={"broadcast": saved}, now=now)
    except service.BroadcastError as exc:
        return await refused(exc.code)
    return redirect(f"/awareness/broadcasts/{saved}")


FormText = Annotated[str, Form(max_length=service.NAME_MAX * 4)]
BodyText = Annotated[str, Form(max_length=service.BODY_MAX_CHARS)]


@router.post("/awareness/broadcasts", dependencies=[CsrfChecked])
async def create(
    request: Request, console: ConsoleDep, staff: AwarenessStaff,
    name: FormText = "", body_ar: BodyText = "", body_en: BodyText = "",
    language: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    topic: Annotated[list[str], Form()] = [],  # noqa: B006
    to_channel: Annotated[str, Form(max_length=4)] = "", survey: Annotated[str, Form(max_length=12)] = "",
    send_date: Annotated[str, Form(max_length=16)] = "", send_time: Annotated[str, Form(max_length=16)] = "",
    image: Annotated[UploadFile | None, File()] = None, remove_image: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    return await _save(request, console, staff, None, name=name, body_ar=body_ar, body_en=body_en,
                       language=language, topic=topic, to_channel=to_channel, survey=survey,
                       send_date=send_date, send_time=send_time, image=image, remove_image=remove_image)


@router.post("/awareness/broadcasts/{broadcast_id:int}", dependencies=[CsrfChecked])
async def update(
    request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int,
    name: FormText = "", body_ar: BodyText = "", body_en: BodyText = "",
    language: Annotated[list[str], Form()] = [],  # noqa: B006
    topic: Annotated[list[str], Form()] = [],  # noqa: B006
    to_channel: Annotated[str, Form(max_length=4)] = "", survey: Annotated[str, Form(max_length=12)] = "",
    send_date: Annotated[str, Form(max_length=16)] = "", send_time: Annotated[str, Form(max_length=16)] = "",
    image: Annotated[UploadFile | None, File()] = None, remove_image: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    return await _save(request, console, staff, broadcast_id, name=name, body_ar=body_ar, body_en=body_en,
                       language=language, topic=topic, to_channel=to_channel, survey=survey,
                       send_date=send_date, send_time=send_time, image=image, remove_image=remove_image)


def _permissions(view: service.BroadcastView, *, author: bool, admin: bool) -> dict[str, bool]:
    """What the page offers this member (the service checks again)."""
    return {
        "edit": author and view.editable,
        "submit": author and view.editable,
        "withdraw": author and view.status == "submitted",
        "approve": admin and not author and view.status == "submitted",
        # The author of a submitted broadcast takes it back (withdraw): never "send back" to oneself.
        "reject": admin and not author and view.status == "submitted",
        # Before it starts too: an approved broadcast waiting for its time can be held.
        "pause": (admin or author) and view.status in ("approved", "sending"),
        "resume": (admin or author) and view.status == "paused",
        "cancel": (admin or author) and view.status not in service.FINAL,
        "test": view.status != "cancelled",
    }


@router.get("/awareness/broadcasts/{broadcast_id:int}")
async def broadcast_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    view = await _visible(console, staff, broadcast_id)
    number = await _number(console, staff)
    link_id, linked = await chat_state(console, staff)
    tests = await _test_results(console, staff, broadcast_id, link_id if linked else None)
    async with console.sessionmaker() as session:
        versions = await service.previews(session, view)
        progress = await service.progress(session, broadcast_id)
        summary = await _summary(console, session, view, progress)
        names = await members.names_by_number(session, [view.author_no, view.approved_by])
        survey = await surveys.get_survey(session, view.survey_id) if view.survey_id is not None else None
        topics = {t.code: t for t in await library(session)}
        admin, author = is_admin(staff), view.author_no == number
        can = _permissions(view, author=author, admin=admin)
        # Of the very view this page shows: approving or rejecting applies to exactly it.
        reviewing = can["approve"] or can["reject"]
        revision = await service.view_revision(session, view) if reviewing else None
        parts = await service.view_parts(session, view) if reviewing else None
        # An administrator's own broadcast: is there anyone else to approve it?
        other_admins = await members.other_admins(session, staff.identity.id) if admin and author else None
    return render(
        request, "broadcast.html", nav="awareness", b=view, versions=versions, progress=progress, summary=summary,
        # preview_html escapes every character of the text itself (nazaha.awareness.markup).
        bubbles={v.language: Markup(v.html) for v in versions},
        states=OUTBOX_STATES, tests=tests, tests_waiting=any(not t.handled for t in tests),
        linked=linked, names=names, survey=survey, topics=topics,
        can=can, author=author, admin=admin, sendable=all(not v.problems for v in versions) and bool(versions),
        send_at_past=view.send_at is not None and view.send_at <= console.clock(), revision=revision, parts=parts,
        other_admins=other_admins, changed=_changed_query(request), kept=_kept_time(request),
        error=query_code(request, "error"), done=query_code(request, "done"),
    )


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2})?")


def _changed_query(request: Request) -> list[str]:
    """The parts a refused review said changed (``changed=text_en.links_en``), known names only."""
    return [name for name in (request.query_params.get("changed") or "").split(".")[:12] if PART_NAME.fullmatch(name)]


def _kept_time(request: Request) -> dict[str, str]:
    """The date and time typed in "Approve for this time", sent back after a refusal so the
    form keeps them (well-formed values only)."""
    date, time = request.query_params.get("send_date") or "", request.query_params.get("send_time") or ""
    return {"send_date": date if _DATE.fullmatch(date) else "", "send_time": time if _TIME.fullmatch(time) else ""}


@router.get("/awareness/broadcasts/{broadcast_id:int}/image")
async def broadcast_image(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    await _visible(console, staff, broadcast_id)
    async with console.sessionmaker() as session:
        found = await service.image_of(session, broadcast_id)
    if found is None:
        raise HTTPException(status_code=404)
    content, mime_type = found
    return Response(content, media_type=mime_type)


@router.get("/awareness/broadcasts/{broadcast_id:int}/progress")
async def progress_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    view = await _visible(console, staff, broadcast_id)
    number = await _number(console, staff)
    async with console.sessionmaker() as session:
        progress = await service.progress(session, broadcast_id)
        summary = await _summary(console, session, view, progress)
    total = sum(progress.values())
    finished = total - progress["queued"] - progress["sending"]
    return render(
        request, "broadcast_progress.html", nav="awareness", b=view, progress=progress, states=OUTBOX_STATES,
        total=total, finished=finished, summary=summary, refresh=PROGRESS_REFRESH_SECONDS if view.status in REFRESHING else None,
        can=_permissions(view, author=view.author_no == number, admin=is_admin(staff)),
        error=query_code(request, "error"), done=query_code(request, "done"),
    )


def _back(broadcast_id: int, *, page: str = "", **query: str) -> Response:
    """Back to the broadcast page (``page="progress"``: its progress page) with ``query``
    (codes and values made of URL-safe characters only)."""
    suffix = "&".join(f"{k}={v}" for k, v in query.items() if v)
    path = f"/awareness/broadcasts/{broadcast_id}" + ("/progress" if page == "progress" else "")
    return redirect(path + (f"?{suffix}" if suffix else ""))


async def _act(console: Console, staff: StaffSession, broadcast_id: int, action: str, change, *,
               detail: dict | None = None, done: str, page: str = "",
               refused: Callable[[str], Awaitable[dict[str, str]]] | None = None) -> Response:
    """Run ``change(session, number)`` and audit ``action`` in one transaction; then back to
    ``page`` (:func:`_back`) saying ``done``, or the refusal's code with what ``refused(code)``
    adds to the query."""
    await _visible(console, staff, broadcast_id)
    try:
        async with write_session(console.sessionmaker) as session:
            number = await members.number_of(session, staff.identity.id)
            await change(session, number)
            await audit.append(session, actor_id=staff.identity.id, action=action,
                               detail={"broadcast": broadcast_id, **(detail or {})}, now=console.clock())
    except service.BroadcastError as exc:
        extra = await refused(exc.code) if refused is not None else {}
        return _back(broadcast_id, page=page, error=exc.code, **extra)
    return _back(broadcast_id, page=page, done=done)


def _review_refusal(console: Console, broadcast_id: int, parts: str, kept: dict[str, str] | None = None):
    """What a refused approval or send-back adds to the page's address: ``changed``, the
    parts that differ from those the page showed (``parts``, from its form); the date and
    time typed for "Approve for this time" (``kept``, well-formed values only), so that the
    form keeps them."""

    async def refused(code: str) -> dict[str, str]:
        extra = {k: v for k, v in (kept or {}).items() if (_DATE if k == "send_date" else _TIME).fullmatch(v)}
        if code == "changed":
            async with console.sessionmaker() as session:
                extra["changed"] = ".".join(await service.changed_parts(session, broadcast_id, parts))
        return extra

    return refused


@router.post("/awareness/broadcasts/{broadcast_id:int}/submit", dependencies=[CsrfChecked])
async def submit(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    return await _act(console, staff, broadcast_id, audit.BROADCAST_SUBMIT,
                      lambda session, n: service.submit(session, broadcast_id, author=n, now=console.clock()),
                      done="submitted")


@router.post("/awareness/broadcasts/{broadcast_id:int}/withdraw", dependencies=[CsrfChecked])
async def withdraw(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    return await _act(console, staff, broadcast_id, audit.BROADCAST_STATE,
                      lambda session, n: service.withdraw(session, broadcast_id, author=n),
                      detail={"status": "draft"}, done="withdrawn")


Revision = Annotated[str, Form(max_length=64)]
# What the page showed, part by part (nazaha.awareness.broadcast_revision.encode_parts).
Parts = Annotated[str, Form(max_length=400)]


@router.post("/awareness/broadcasts/{broadcast_id:int}/approve", dependencies=[CsrfChecked])
async def approve(
    request: Request, console: ConsoleDep, staff: AdminStaff, broadcast_id: int, revision: Revision = "",
    parts: Parts = "", send_now: Annotated[str, Form(max_length=4)] = "",
    send_date: Annotated[str, Form(max_length=16)] = "", send_time: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Approve the revision the page showed. Its time passed: ``send_now=1`` (send it at
    once) or a new ``send_date``/``send_time`` (Palestine time), which the page keeps
    when the approval is refused. Refused because the broadcast changed: the page says
    which parts (``parts``: those it showed)."""
    now = console.clock()
    refused = _review_refusal(console, broadcast_id, parts, {"send_date": send_date, "send_time": send_time})
    try:
        new_time = parse_send_at(send_date, send_time)
    except ScheduleError:
        await _visible(console, staff, broadcast_id)
        return _back(broadcast_id, error="new_time", **await refused("new_time"))
    at_once = send_now == "1" and new_time is None
    detail = {"rescheduled": True} if new_time is not None else {"send_now": True} if at_once else {}
    return await _act(console, staff, broadcast_id, audit.BROADCAST_APPROVE,
                      lambda session, n: service.approve(session, broadcast_id, reviewer=n, now=now, revision=revision,
                                                         send_now=send_now == "1", send_at=new_time),
                      detail=detail, done="approved_now" if at_once else "approved", refused=refused)


@router.post("/awareness/broadcasts/{broadcast_id:int}/reject", dependencies=[CsrfChecked])
async def reject(request: Request, console: ConsoleDep, staff: AdminStaff, broadcast_id: int,
                 note: Annotated[str, Form(max_length=service.NOTE_MAX * 2)] = "", revision: Revision = "",
                 parts: Parts = "") -> Response:
    return await _act(console, staff, broadcast_id, audit.BROADCAST_REJECT,
                      lambda session, n: service.reject(session, broadcast_id, reviewer=n, note=note, revision=revision),
                      done="rejected", refused=_review_refusal(console, broadcast_id, parts))


# The progress page's forms say "back=progress": their answer returns there.
Back = Annotated[str, Form(max_length=16)]


@router.post("/awareness/broadcasts/{broadcast_id:int}/pause", dependencies=[CsrfChecked])
async def pause(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int, back: Back = "") -> Response:
    admin = is_admin(staff)
    return await _act(console, staff, broadcast_id, audit.BROADCAST_STATE,
                      lambda session, n: service.pause(session, broadcast_id, actor=n, admin=admin),
                      detail={"status": "paused"}, done="paused", page=back)


@router.post("/awareness/broadcasts/{broadcast_id:int}/resume", dependencies=[CsrfChecked])
async def resume(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int, back: Back = "") -> Response:
    admin = is_admin(staff)
    detail: dict = {}

    async def change(session, number: int) -> None:
        detail["status"] = await service.resume(session, broadcast_id, actor=number, admin=admin)

    return await _act(console, staff, broadcast_id, audit.BROADCAST_STATE, change, detail=detail, done="resumed",
                      page=back)


@router.post("/awareness/broadcasts/{broadcast_id:int}/cancel", dependencies=[CsrfChecked])
async def cancel(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int, back: Back = "") -> Response:
    admin = is_admin(staff)
    return await _act(console, staff, broadcast_id, audit.BROADCAST_STATE,
                      lambda session, n: service.cancel(session, broadcast_id, actor=n, admin=admin),
                      detail={"status": "cancelled"}, done="cancelled", page=back)


# ---- "send a test to me" ------------------------------------------------------------------

RESULTS_KEPT = 10  # test results per broadcast the member's session remembers


def _test_limits(console: Console) -> SendTestLimits:
    limits = console.services.get("test_send_limits")
    if limits is None:
        limits = console.services["test_send_limits"] = SendTestLimits()
    return limits


async def _test_results(console: Console, staff: StaffSession, broadcast_id: int,
                        link_id: str | None) -> list[service.TestSendView]:
    """The member's tests of this broadcast: those the bot's database holds (waiting, or
    handled), then the results shown before. A handled row is deleted once read here, its
    result kept in the session's memory: the bot's database keeps no history of tests."""
    async with console.sessionmaker() as session:
        rows = await service.test_sends(session, broadcast_id, link_id)
    handled = [t for t in rows if t.handled]
    if handled:
        async with write_session(console.sessionmaker) as session:
            await service.forget_test_sends(session, [t.id for t in handled])
    shown = staff.test_results.get(broadcast_id, [])
    if handled:
        shown = staff.test_results[broadcast_id] = (handled + shown)[:RESULTS_KEPT]
    return [t for t in rows if not t.handled] + shown


@router.post("/awareness/broadcasts/{broadcast_id:int}/test", dependencies=[CsrfChecked])
async def test(request: Request, console: ConsoleDep, staff: AwarenessStaff, broadcast_id: int) -> Response:
    """Refused, with the page saying why, for a broadcast that could not be submitted
    (``problems``), without a linked chat, while a test of it is still waiting, and past the
    limits (:class:`SendTestLimits`)."""
    link_id, linked = await chat_state(console, staff)
    now = console.clock()
    limits = _test_limits(console)
    refused = limits.refusal(staff.identity.id, broadcast_id, now)
    if refused is not None:
        await _visible(console, staff, broadcast_id)
        return _back(broadcast_id, error=refused)
    queued: list[int] = []

    async def change(session, number: int) -> None:
        queued.append(await service.request_tests(session, broadcast_id, link_id=link_id if linked else None, now=now))

    answer = await _act(console, staff, broadcast_id, audit.BROADCAST_TEST, change, done="test_queued")
    if queued:
        limits.count(staff.identity.id, broadcast_id, now)
    return answer

