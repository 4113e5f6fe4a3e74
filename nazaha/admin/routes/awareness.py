"""The awareness hub (every role; volunteers see nothing else): broadcasts, library, surveys,
campaigns, and the member's own Telegram chat for "send a test to me".

Linking: "Link my Telegram" makes a one-time code (nazaha.awareness.staff_chats) shown as the
deep link ``https://t.me/<bot>?start=l_<code>`` and its QR code; the code is a secret, kept in
the member's session memory only and shown on this page until the bot links the chat or the
code expires (30 minutes). The member's random link id is kept on their row in the console's
store; the bot's database never says whose chat it is.
"""

from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from nazaha.admin.context import AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import broadcasts, members, staff_chats
from nazaha.awareness.campaign_editor import deep_link, qr_svg
from nazaha.services import audit
from nazaha.storage.database import write_session

router = APIRouter()

LINK_PREFIX = "l_"  # the /start payload of a link code
_ERROR_CODE = re.compile(r"[a-z_]{1,32}")


def is_admin(staff: StaffSession) -> bool:
    return staff.identity.role == "admin"


def bot_username(console: Console) -> str | None:
    """The bot's @username without the @ (NAZAHA_BOT_USERNAME), or None when unset."""
    name = getattr(console.settings, "bot_username", None)
    return name.lstrip("@") if name else None


def aggregate_min_batch(console: Console) -> int:
    """NAZAHA_AGGREGATE_MIN_BATCH, read from the settings the bot reads too: the least number
    of survey answers (per survey) or campaign opens the bot writes at once."""
    return max(1, int(getattr(console.settings, "aggregate_min_batch", 10) or 1))


def query_code(request: Request, name: str) -> str | None:
    """A short code from the query string (``done``, ``error``), or None."""
    value = request.query_params.get(name) or ""
    return value if _ERROR_CODE.fullmatch(value) else None


async def chat_state(console: Console, staff: StaffSession) -> tuple[str | None, bool]:
    """The member's link id and whether the bot has linked it."""
    async with console.sessionmaker() as session:
        link_id = await members.chat_link_id(session, staff.identity.id)
    return link_id, bool(link_id) and await staff_chats.is_linked(console.sessionmaker, link_id)


async def forget_chat_of(console: Console, user_id: str) -> None:
    """Unlink a member's chat (their account was reset or removed)."""
    async with write_session(console.sessionmaker) as session:
        link_id = await members.chat_link_id(session, user_id)
        await members.set_chat_link_id(session, user_id, None)
    if link_id:
        await staff_chats.unlink(console.sessionmaker, link_id)


@router.get("/awareness")
async def awareness(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    link_id, linked = await chat_state(console, staff)
    pending = staff.chat_link_code
    if linked or (pending is not None and pending[1] <= console.clock()):
        staff.chat_link_code = pending = None
    username = bot_username(console)
    link = deep_link(username, LINK_PREFIX + pending[0]) if pending and username else None
    async with console.sessionmaker() as session:
        waiting = await broadcasts.waiting_for_review(session) if is_admin(staff) else 0
    return render(
        request, "awareness.html", nav="awareness", linked=linked, link=link,
        link_qr=Markup(qr_svg(link)) if link else None,
        link_expires=pending[1] if pending else None, bot_configured=username is not None,
        # The same, typed in the chat (works where t.me links do not: the sandbox's chat page).
        start_command=f"/start {LINK_PREFIX}{pending[0]}" if link else None,
        waiting=waiting, error=query_code(request, "error"), done=query_code(request, "done"),
    )


@router.post("/awareness/telegram/link", dependencies=[CsrfChecked])
async def link_telegram(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    if bot_username(console) is None:
        return redirect("/awareness?error=no_bot_username#telegram")
    now = console.clock()
    async with write_session(console.sessionmaker) as session:
        link_id = await members.chat_link_id(session, staff.identity.id)
        if not link_id:
            link_id = secrets.token_hex(16)
            await members.set_chat_link_id(session, staff.identity.id, link_id)
        await audit.append(session, actor_id=staff.identity.id, action=audit.STAFF_CHAT_LINK, now=now)
    code, _ = await staff_chats.new_link_code(console.sessionmaker, link_id=link_id, now=now)
    staff.chat_link_code = (code, now + staff_chats.CODE_TTL)
    return redirect("/awareness#telegram")


@router.post("/awareness/telegram/unlink", dependencies=[CsrfChecked])
async def unlink_telegram(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.STAFF_CHAT_UNLINK, now=console.clock())
    await forget_chat_of(console, staff.identity.id)
    staff.chat_link_code = None
    return redirect("/awareness?done=unlinked#telegram")

