"""Campaign links for posters and partners: ``https://t.me/<bot>?start=c_<code>`` with its QR
code (inline SVG on the page, a PNG to print), the opens per day and in total (aggregates
the bot counts, never per person; small counts hidden as surveys' are:
campaign_editor.shown_opens), deactivation.

Anyone in the awareness area may make campaigns and read their counts; a campaign's author or
an admin deactivates it, and only an admin activates again one an admin deactivated
(campaign_editor.may_pause / may_resume). The logic is nazaha.awareness.campaign_editor's;
every change is CSRF-checked and audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup

from nazaha.admin.context import AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.routes.awareness import aggregate_min_batch, bot_username, is_admin, query_code
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import campaign_editor as service
from nazaha.awareness import members
from nazaha.awareness.library_editor import campaign_targets, library
from nazaha.services import audit
from nazaha.storage.database import write_session

router = APIRouter()


async def _targets(console: Console) -> tuple[list, dict]:
    async with console.sessionmaker() as session:
        targets = await campaign_targets(session)
        topics = await library(session)
    titles: dict[str, object] = {t.code: t for t in topics}
    for topic in topics:
        for item in topic.items:
            titles[f"item:{item.code}"] = item
    return targets, titles


async def _list_page(request: Request, console: Console, *, form: dict, error: str | None, done: str | None,
                     status_code: int = 200) -> Response:
    async with console.sessionmaker() as session:
        items = await service.list_campaigns(session)
    targets, titles = await _targets(console)
    username = bot_username(console)
    links = {c.id: service.deep_link(username, c.payload) for c in items} if username else {}
    opens = {c.id: service.shown_opens(c, console.settings.stats_min_cell) for c in items}
    return render(request, "campaigns.html", status_code=status_code, nav="awareness", items=items, links=links,
                  opens=opens, min_cell=max(service.MIN_CELL, console.settings.stats_min_cell),
                  targets=targets, titles=titles, bot_configured=username is not None, form=form,
                  min_batch=aggregate_min_batch(console), error=error, done=done)


@router.get("/awareness/campaigns")
async def campaign_list(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    return await _list_page(request, console, form={}, error=query_code(request, "error"),
                            done=query_code(request, "done"))


async def _campaign(console: Console, campaign_id: int) -> service.CampaignView:
    async with console.sessionmaker() as session:
        try:
            return await service.get_campaign(session, campaign_id)
        except service.CampaignError:
            raise HTTPException(status_code=404) from None


@router.get("/awareness/campaigns/{campaign_id:int}")
async def campaign_page(request: Request, console: ConsoleDep, staff: AwarenessStaff, campaign_id: int) -> Response:
    campaign = await _campaign(console, campaign_id)
    _, titles = await _targets(console)
    username = bot_username(console)
    link = service.deep_link(username, campaign.payload) if username else None
    admin = is_admin(staff)
    async with console.sessionmaker() as session:
        number = await members.existing_number(session, staff.identity.id)
        names = await members.names_by_number(session, [campaign.created_by, campaign.paused_by])
    return render(request, "campaign.html", nav="awareness", c=campaign, link=link, titles=titles,
                  opens=service.shown_opens(campaign, console.settings.stats_min_cell),
                  # segno's SVG of a URL made of our own characters: no script, no style.
                  qr=Markup(service.qr_svg(link)) if link else None, bot_configured=username is not None,
                  names=names, may_pause=service.may_pause(campaign, number, admin=admin),
                  may_resume=service.may_resume(campaign, number, admin=admin), min_batch=aggregate_min_batch(console),
                  done=query_code(request, "done"), error=query_code(request, "error"))


@router.get("/awareness/campaigns/{campaign_id:int}/qr.png")
async def campaign_qr_png(request: Request, console: ConsoleDep, staff: AwarenessStaff, campaign_id: int) -> Response:
    campaign = await _campaign(console, campaign_id)
    username = bot_username(console)
    if username is None:
        raise HTTPException(status_code=404)
    png = service.qr_png(service.deep_link(username, campaign.payload))
    return Response(png, media_type="image/png",
                    headers={"content-disposition": f'attachment; filename="campaign-{campaign.code}.png"'})


@router.post("/awareness/campaigns", dependencies=[CsrfChecked])
async def create(request: Request, console: ConsoleDep, staff: AwarenessStaff,
                 name: Annotated[str, Form(max_length=400)] = "", code: Annotated[str, Form(max_length=64)] = "",
                 target: Annotated[str, Form(max_length=120)] = "") -> Response:
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            author = await members.number_of(session, staff.identity.id)
            saved = await service.create_campaign(session, name=name, code=code, target=target, today=now.date(),
                                                  author=author)
            await audit.append(session, actor_id=staff.identity.id, action=audit.CAMPAIGN_CHANGE,
                               detail={"campaign": saved, "active": True}, now=now)
    except service.CampaignError as exc:
        return await _list_page(request, console, form={"name": name, "code": code, "target": target},
                                error=exc.code, done=None, status_code=400)
    return redirect(f"/awareness/campaigns/{saved}?done=created")


@router.post("/awareness/campaigns/{campaign_id:int}/active", dependencies=[CsrfChecked])
async def set_active(request: Request, console: ConsoleDep, staff: AwarenessStaff, campaign_id: int,
                     active: Annotated[str, Form(max_length=4)] = "") -> Response:
    now = console.clock()
    try:
        async with write_session(console.sessionmaker) as session:
            await _set_active(session, staff, campaign_id, active == "1")
            await audit.append(session, actor_id=staff.identity.id, action=audit.CAMPAIGN_CHANGE,
                               detail={"campaign": campaign_id, "active": active == "1"}, now=now)
    except service.CampaignError as exc:
        if exc.code == "not_found":
            raise HTTPException(status_code=404) from None
        return redirect(f"/awareness/campaigns/{campaign_id}?error={exc.code}")
    return redirect(f"/awareness/campaigns/{campaign_id}?done={'activated' if active == '1' else 'deactivated'}")


async def _set_active(session, staff: StaffSession, campaign_id: int, active: bool) -> None:
    # A member who never made anything has no number: they may not change a campaign
    # unless they are an admin (whose pause is then recorded under a number given now).
    admin = is_admin(staff)
    number = await (members.number_of if admin else members.existing_number)(session, staff.identity.id)
    await service.set_active(session, campaign_id, active, member=number, admin=admin)
