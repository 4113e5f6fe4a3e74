"""The awareness hub (every role; volunteers see nothing else): broadcasts, library, surveys,
campaigns, and the member's own Telegram chat for "send a test to me".

Linking (nazaha.awareness.staff_chats): "Link my Telegram" makes a one-time code shown as
the deep link ``https://t.me/<bot>?start=l_<code>`` and its QR code, and a one-time key pair;
both are secrets kept in the member's session memory only (the code is shown on this page
for 30 minutes). The chat that opens the link gets a 6-digit code from the bot and nothing
is linked until the member types that code here (5 tries, 10 minutes): a link that reached
someone else (a citizen, a leak) links nothing. Once linked, the page names the chat by the
first name Telegram gave the bot, which the bot sealed to the session's key and this store
keeps under the console secret. The member's random link id is kept on their row in the
console's store; the bot's database never says whose chat it is. "Unlink my Telegram"
forgets the chat; so does /stop, /wipe or Unsubscribe in that chat (the bot deletes the link).
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from nazaha.admin.context import AwarenessStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.admin.sessions import StaffSession
from nazaha.awareness import broadcasts, members, staff_chats
from nazaha.awareness.campaign_editor import deep_link, qr_svg
from nazaha.services import audit
from nazaha.storage.crypto import ConsoleSecretBox
from nazaha.storage.database import write_session

router = APIRouter()

LINK_PREFIX = "l_"  # the /start payload of a link code
_ERROR_CODE = re.compile(r"[a-z_]{1,32}")
# What typing the confirmation code did -> the page's word for it (_awareness.html).
_CONFIRM_ERRORS = {"wrong": "confirm_wrong", "locked": "confirm_locked", "expired": "confirm_expired",
                   "none": "confirm_none", "malformed": "confirm_malformed"}


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


def _names(console: Console) -> ConsoleSecretBox:
    return ConsoleSecretBox(console.console_secret)


async def forget_chat_of(console: Console, user_id: str) -> None:
    """Unlink a member's chat (their account was reset or removed, or they unlinked it)."""
    async with write_session(console.sessionmaker) as session:
        link_id = await members.chat_link_id(session, user_id)
        await members.set_chat_name(session, _names(console), user_id, None)
        await members.set_chat_link_id(session, user_id, None)
    if link_id:
        await staff_chats.unlink(console.sessionmaker, link_id)


def _attempts_left(request: Request) -> int | None:
    value = request.query_params.get("left") or ""
    return int(value) if value.isdigit() and len(value) == 1 else None


@router.get("/awareness")
async def awareness(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    link_id, linked = await chat_state(console, staff)
    now = console.clock()
    pending = staff.chat_link_code
    if linked or (pending is not None and pending.ends_at <= now):
        staff.chat_link_code = pending = None
    async with console.sessionmaker() as session:
        name = await members.chat_name(session, _names(console), staff.identity.id)
        waiting = await broadcasts.waiting_for_review(session) if is_admin(staff) else 0
    if name is not None and not linked:  # the chat said /stop (or the like): forget the name too
        async with write_session(console.sessionmaker) as session:
            await members.set_chat_name(session, _names(console), staff.identity.id, None)
        name = None
    username = bot_username(console)
    showing = pending is not None and pending.expires_at > now
    link = deep_link(username, LINK_PREFIX + pending.code) if showing and username else None
    return render(
        request, "awareness.html", nav="awareness", linked=linked, chat_name=name, link=link,
        link_qr=Markup(qr_svg(link)) if link else None, pending=pending is not None,
        link_expires=pending.expires_at if pending else None, bot_configured=username is not None,
        # The same, typed in the chat (works where t.me links do not: the sandbox's chat page).
        start_command=f"/start {LINK_PREFIX}{pending.code}" if link else None,
        code_waiting=bool(pending and link_id) and await staff_chats.confirmation_waiting(
            console.sessionmaker, link_id, now=now),
        digits=staff_chats.CONFIRM_DIGITS, attempts_left=_attempts_left(request),
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
    reply_key = staff_chats.new_reply_key()
    code, _ = await staff_chats.new_link_code(console.sessionmaker, link_id=link_id,
                                              reply_key=reply_key.public_key(), now=now)
    staff.chat_link_code = staff_chats.PendingLink(code, now + staff_chats.CODE_TTL, reply_key)
    return redirect("/awareness#telegram")


@router.post("/awareness/telegram/confirm", dependencies=[CsrfChecked])
async def confirm_telegram(
    request: Request, console: ConsoleDep, staff: AwarenessStaff,
    code: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The code the bot sent to the chat that opened the member's link, typed back: only
    now is the chat linked (every attempt is audited, without the code)."""
    now = console.clock()
    pending = staff.chat_link_code
    async with console.sessionmaker() as session:
        link_id = await members.chat_link_id(session, staff.identity.id)
    if pending is None or pending.ends_at <= now or not link_id:
        staff.chat_link_code = None
        return redirect("/awareness?error=confirm_expired#confirm-error")
    result = await staff_chats.confirm(console.sessionmaker, link_id, code, now=now)
    if result.outcome not in ("malformed", "none"):
        async with write_session(console.sessionmaker) as session:
            if result.outcome == "linked":
                name = staff_chats.open_first_name(pending.reply_key, link_id, result.sealed_name)
                await members.set_chat_name(session, _names(console), staff.identity.id, name)
            await audit.append(session, actor_id=staff.identity.id, action=audit.STAFF_CHAT_CONFIRM,
                               detail={"outcome": result.outcome}, now=now)
    if result.outcome == "linked":
        staff.chat_link_code = None
        return redirect("/awareness?done=linked#telegram")
    if result.outcome in ("locked", "expired"):
        staff.chat_link_code = None
    left = f"&left={result.attempts_left}" if result.outcome == "wrong" else ""
    return redirect(f"/awareness?error={_CONFIRM_ERRORS[result.outcome]}{left}#confirm-error")


@router.post("/awareness/telegram/unlink", dependencies=[CsrfChecked])
async def unlink_telegram(request: Request, console: ConsoleDep, staff: AwarenessStaff) -> Response:
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.STAFF_CHAT_UNLINK, now=console.clock())
    await forget_chat_of(console, staff.identity.id)
    staff.chat_link_code = None
    return redirect("/awareness?done=unlinked#telegram")

