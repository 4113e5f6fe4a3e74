"""Campaign links as the console makes them: ``https://t.me/<bot>?start=c_<code>`` opens a
topic or an item of the library, and the bot counts the opens per campaign and day
(nazaha.awareness.campaigns: an aggregate, never who opened it, written in batches of at
least NAZAHA_AGGREGATE_MIN_BATCH opens, so the last few may not show yet). The console creates and
deactivates campaigns, shows each link with a QR code (segno: an inline SVG, and a PNG to
print) and the opens per day.

Codes are case-insensitive: stored in lower case (a link typed as ``c_Gaza`` opens ``gaza``),
and a code whose lower case another campaign's code has is refused.

Who may switch a campaign off and on (:func:`may_pause`, :func:`may_resume`): its author
(``created_by``) or an administrator pauses it; an administrator resumes any, its author
only a pause of their own (``paused_by``), never an administrator's. A campaign made before
authors were recorded (``created_by`` None) is paused and resumed by administrators only.
Members are named by their awareness number (nazaha.awareness.members).

The opens are shown as surveys' answers are (:func:`shown_opens`, the rule in
nazaha.services.disclosure): nothing below ``min_cell`` (5 at least) opens in all, and a day
under it hidden, with another withheld where the hidden one could be worked out from the
total. A link given to one person alone must not tell whether they opened it.

Functions take the caller's session (a write transaction where they write) and do not commit.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.awareness.campaigns import ITEM_TARGET, PAYLOAD_PREFIX
from nazaha.awareness.campaigns import CODE as BOT_CODE
from nazaha.awareness.surveys import MIN_CELL
from nazaha.services.disclosure import breakdown
from nazaha.storage.awareness_models import AwarenessItem, AwarenessTopic, Campaign, CampaignDay

__all__ = [
    "CODE", "NAME_MAX", "CampaignError", "CampaignView", "deep_link", "qr_svg", "qr_png",
    "list_campaigns", "get_campaign", "create_campaign", "set_active", "may_pause", "may_resume",
    "normal_code", "MIN_CELL", "ShownOpens", "shown_opens",
]

CODE = re.compile(r"[A-Za-z0-9_-]{1,30}")  # with fullmatch; what the bot accepts too (BOT_CODE)
RANDOM_CODE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
RANDOM_CODE_LENGTH = 10  # 36**10: about 3.7e15
NAME_MAX = 120
DAYS_SHOWN = 60


class CampaignError(ValueError):
    """Refused: ``code`` is ``not_found``, ``name``, ``code`` (not 1-30 of A-Z a-z 0-9 _ -),
    ``code_taken`` (in any case), ``target``, ``not_allowed`` (neither its author nor an
    admin) or ``paused_by_admin`` (an admin's pause: only an admin resumes it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class CampaignView:
    id: int
    code: str
    name: str
    target: str
    active: bool
    created_on: dt.date
    total: int = 0
    days: list[tuple[dt.date, int]] = field(default_factory=list)  # newest first
    created_by: int | None = None  # awareness member numbers (None: not recorded)
    paused_by: int | None = None

    @property
    def payload(self) -> str:
        return f"{PAYLOAD_PREFIX}{self.code}"


@dataclass(frozen=True)
class ShownOpens:
    """A campaign's opens as the console shows them. ``total``: None under ``min_cell``
    opens in all (then nothing else is shown); ``days``: newest first, each count an int,
    ``"<k"`` (hidden) or ``"x"`` (withheld); ``earlier``: the days before those listed,
    together, in the same form (None when every day is listed)."""

    min_cell: int
    total: int | None
    days: list[tuple[dt.date, int | str]] = field(default_factory=list)
    earlier: int | str | None = None


def shown_opens(campaign: CampaignView, min_cell: int = MIN_CELL) -> ShownOpens:
    """``campaign``'s opens with small counts hidden (``min_cell``: at least
    :data:`~nazaha.awareness.surveys.MIN_CELL`). The days not listed count as one more part
    of the total, so that no hidden day can be worked out from it."""
    k = max(MIN_CELL, int(min_cell))
    counts = [n for _, n in campaign.days]
    earlier = campaign.total - sum(counts)
    total, shown = breakdown(counts + ([earlier] if earlier else []), k)
    if total is None:
        return ShownOpens(k, None)
    days = [(day, value) for (day, _), value in zip(campaign.days, shown, strict=False)]
    return ShownOpens(k, total, days, shown[len(counts)] if earlier else None)


def normal_code(code: str) -> str:
    """A campaign code as stored and looked up: lower case (Telegram passes a link's start
    parameter exactly as typed)."""
    return code.strip().lower()


def may_pause(campaign: CampaignView, member: int | None, *, admin: bool) -> bool:
    """Whether a member (awareness ``member`` number, None if they have none) may deactivate
    ``campaign``: an admin, or its recorded author."""
    return admin or (member is not None and campaign.created_by == member)


def may_resume(campaign: CampaignView, member: int | None, *, admin: bool) -> bool:
    """Whether a member may activate ``campaign`` again: an admin; its author only if they
    paused it themselves (an author's campaign paused by someone else was paused by an
    admin: only an admin lifts that)."""
    return admin or (may_pause(campaign, member, admin=False) and campaign.paused_by == member)


def deep_link(bot_username: str, payload: str) -> str:
    """``https://t.me/<bot>?start=<payload>`` (the payload: 1-64 of A-Z a-z 0-9 _ -)."""
    return f"https://t.me/{bot_username.lstrip('@')}?start={payload}"


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline ``<svg>`` element (made on the server, no script,
    no style: safe to put in a page)."""
    import segno

    return segno.make(url, error="m").svg_inline(scale=4, border=4, dark="#000", light="#fff")


def qr_png(url: str, *, scale: int = 12) -> bytes:
    """The QR code of ``url`` as a PNG large enough for a poster."""
    import segno

    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


async def _days(session: AsyncSession, campaign_ids: list[int]) -> dict[int, list[tuple[dt.date, int]]]:
    found: dict[int, list[tuple[dt.date, int]]] = {i: [] for i in campaign_ids}
    if not campaign_ids:
        return found
    # The bot makes a day's row for every active campaign at once: days without opens
    # (count 0) are not listed.
    rows = await session.execute(
        select(CampaignDay.campaign_id, CampaignDay.day, CampaignDay.opens)
        .where(CampaignDay.campaign_id.in_(campaign_ids), CampaignDay.opens > 0)
        .order_by(CampaignDay.day.desc())
    )
    for campaign_id, day, opens in rows.all():
        found[campaign_id].append((day, int(opens)))
    return found


def _view(row: Campaign, days: list[tuple[dt.date, int]]) -> CampaignView:
    return CampaignView(row.id, row.code, row.name, row.target, bool(row.active), row.created_on,
                        sum(n for _, n in days), days[:DAYS_SHOWN], row.created_by, row.paused_by)


async def list_campaigns(session: AsyncSession) -> list[CampaignView]:
    """Every campaign, newest first, with its opens (total, and per day: the latest 60)."""
    rows = (await session.scalars(select(Campaign).order_by(Campaign.id.desc()))).all()
    days = await _days(session, [r.id for r in rows])
    return [_view(r, days[r.id]) for r in rows]


async def get_campaign(session: AsyncSession, campaign_id: int) -> CampaignView:
    row = await session.get(Campaign, campaign_id)
    if row is None:
        raise CampaignError("not_found")
    return _view(row, (await _days(session, [row.id]))[row.id])


async def _target_exists(session: AsyncSession, target: str) -> bool:
    if target.startswith(ITEM_TARGET):
        return await session.scalar(
            select(func.count()).select_from(AwarenessItem).where(
                AwarenessItem.code == target[len(ITEM_TARGET):], AwarenessItem.kind == "article"
            )
        ) > 0
    return await session.get(AwarenessTopic, target) is not None


async def create_campaign(
    session: AsyncSession, *, name: str, code: str, target: str, today: dt.date, author: int | None = None,
) -> int:
    """A new active campaign made by ``author`` (an awareness member number); ``code``
    empty: a random one; any other is stored in lower case. Returns its id."""
    name = " ".join(name.split())
    if not name or len(name) > NAME_MAX:
        raise CampaignError("name")
    code = normal_code(code) or "".join(secrets.choice(RANDOM_CODE_CHARS) for _ in range(RANDOM_CODE_LENGTH))
    if not CODE.fullmatch(code) or not BOT_CODE.match(code):
        raise CampaignError("code")
    if not target or len(target) > 80 or not await _target_exists(session, target):
        raise CampaignError("target")
    # A code kept from before codes were lower-cased (migration 0012) may differ in case.
    taken = select(Campaign.id).where(or_(Campaign.code == code, func.lower(Campaign.code) == code))
    if await session.scalar(taken.limit(1)) is not None:
        raise CampaignError("code_taken")
    row = Campaign(code=code, name=name, target=target, active=True, created_on=today, created_by=author)
    session.add(row)
    await session.flush()
    return row.id


async def set_active(
    session: AsyncSession, campaign_id: int, active: bool, *, member: int | None, admin: bool,
) -> None:
    """Deactivate (the bot stops following and counting the link; ``paused_by`` = ``member``)
    or reactivate, as ``member`` (an awareness number) may (:func:`may_pause`,
    :func:`may_resume`). :class:`CampaignError` ``not_found``, ``not_allowed`` or
    ``paused_by_admin``. Setting the state it already has changes nothing."""
    row = await session.get(Campaign, campaign_id)
    if row is None:
        raise CampaignError("not_found")
    view = _view(row, [])
    if not may_pause(view, member, admin=admin):
        raise CampaignError("not_allowed")
    if bool(active) == bool(row.active):
        return  # a second press: the first one's pause (and who made it) stands
    if active and not may_resume(view, member, admin=admin):
        raise CampaignError("paused_by_admin")
    row.active = bool(active)
    row.paused_by = None if active else member
    await session.flush()
