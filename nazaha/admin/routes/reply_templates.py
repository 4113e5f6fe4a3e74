"""Saved replies per language (acknowledgement, request for more information, closure),
which caseworkers edit and start replies from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin.context import CaseStaff, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.cases import viewer_of
from nazaha.services import audit
from nazaha.services import templates as reply_templates
from nazaha.storage.database import write_session

router = APIRouter()


@router.get("/templates")
async def templates_page(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    edit_id = request.query_params.get("edit")
    async with write_session(console.sessionmaker) as session:
        await reply_templates.ensure_default_templates(session, now=console.clock())
        items = await reply_templates.list_templates(session)
    editing = next((t for t in items if t.id == edit_id), None)
    return render(
        request, "reply_templates.html", nav="templates", items=items, editing=editing,
        purposes=reply_templates.PURPOSES, locales=reply_templates.LOCALES,
        error=request.query_params.get("error"),
    )


@router.post("/templates", dependencies=[CsrfChecked])
async def save(
    request: Request, console: ConsoleDep, staff: CaseStaff,
    template_id: Annotated[str, Form(max_length=32)] = "",
    locale: Annotated[str, Form(max_length=8)] = "ar",
    purpose: Annotated[str, Form(max_length=32)] = "other",
    title: Annotated[str, Form(max_length=200)] = "",
    body: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    try:
        async with write_session(console.sessionmaker) as session:
            await reply_templates.save_template(
                session, viewer_of(staff), template_id=template_id or None, locale=locale,
                purpose=purpose, title=title, body=body, now=console.clock(),
            )
            await audit.append(session, actor_id=staff.identity.id, action=audit.TEMPLATE_CHANGE, now=console.clock())
    except reply_templates.TemplateNotFound:
        raise HTTPException(status_code=404) from None
    except ValueError:
        return redirect("/templates?error=invalid")
    return redirect("/templates")


@router.post("/templates/{template_id}/delete", dependencies=[CsrfChecked])
async def delete(request: Request, console: ConsoleDep, staff: CaseStaff, template_id: str) -> Response:
    async with write_session(console.sessionmaker) as session:
        await reply_templates.delete_template(session, viewer_of(staff), template_id)
        await audit.append(session, actor_id=staff.identity.id, action=audit.TEMPLATE_CHANGE, now=console.clock())
    return redirect("/templates")
