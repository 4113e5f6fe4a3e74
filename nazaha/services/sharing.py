"""Who works a case besides its assignee (shares), who must stay away from it (recusals,
admins only), and cases about the same incident (links). Like the workflow, these take the
caller's session and do not commit; each raises ``CaseAccessDenied`` for a case the viewer
may not see, ``NotAllowed`` for an action their role or relation to the case does not allow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import Viewer, require_visible, visible_ids
from nazaha.services.case_rows import NotAllowed, active_staff, any_recused, case_states, now_or, record_event, touch
from nazaha.storage.console_models import CaseLink, CaseRecusal, CaseShare, StaffUser
from nazaha.storage.models import Report


async def share(
    session: AsyncSession, viewer: Viewer, report_id: str, user_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Let another active caseworker (not recused from the case) work the case. Only an admin
    or the case's assignee may share (``NotAllowed``), never with themself (``ValueError``).
    Returns True if it was not shared yet."""
    await require_visible(session, viewer, report_id)
    state = (await case_states(session, [report_id]))[report_id]
    if not viewer.is_admin and state.assignee_id != viewer.user_id:
        raise NotAllowed("only an admin or the assignee shares a case")
    if user_id == viewer.user_id:
        raise ValueError("a case is not shared with oneself")
    await active_staff(session, user_id, ("caseworker",))
    if await any_recused(session, [report_id], user_id):
        raise ValueError("this caseworker is recused from the case")
    if await session.get(CaseShare, (report_id, user_id)) is not None:
        return False
    moment = now_or(now)
    session.add(CaseShare(report_id=report_id, user_id=user_id))
    record_event(session, report_id, viewer, "share", None, user_id, moment)
    await touch(session, viewer, [state], moment)
    return True


async def unshare(
    session: AsyncSession, viewer: Viewer, report_id: str, user_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Revoke a share: an admin, the assignee, or the caseworker it was shared with.
    Returns True if there was one."""
    await require_visible(session, viewer, report_id)
    state = (await case_states(session, [report_id]))[report_id]
    if not viewer.is_admin and viewer.user_id not in (state.assignee_id, user_id):
        raise NotAllowed("only an admin, the assignee or the caseworker themself revokes a share")
    result = await session.execute(
        delete(CaseShare).where(CaseShare.report_id == report_id, CaseShare.user_id == user_id)
    )
    if not result.rowcount:
        return False
    moment = now_or(now)
    record_event(session, report_id, viewer, "unshare", user_id, None, moment)
    await touch(session, viewer, [state], moment)
    return True


async def shared_with(session: AsyncSession, viewer: Viewer, report_id: str) -> list[str]:
    """The user ids the case is shared with, sorted."""
    await require_visible(session, viewer, report_id)
    return sorted(await session.scalars(select(CaseShare.user_id).where(CaseShare.report_id == report_id)))


async def recuse(
    session: AsyncSession, viewer: Viewer, report_id: str, user_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Admins only: keep a caseworker (never oneself: ``ValueError``) away from a case (e.g.
    a conflict of interest). Their share goes and, if they were the assignee, the case
    becomes unassigned. Returns True if they were not recused yet."""
    if not viewer.is_admin:
        raise NotAllowed("only an admin recuses")
    await require_visible(session, viewer, report_id)
    if user_id == viewer.user_id:
        raise ValueError("nobody recuses themself")
    user = await session.get(StaffUser, user_id) if isinstance(user_id, str) else None
    if user is None or user.role != "caseworker":
        raise ValueError("only a caseworker can be recused")
    if await session.get(CaseRecusal, (report_id, user_id)) is not None:
        return False
    state = (await case_states(session, [report_id]))[report_id]
    moment = now_or(now)
    session.add(CaseRecusal(report_id=report_id, user_id=user_id))
    await session.execute(
        delete(CaseShare).where(CaseShare.report_id == report_id, CaseShare.user_id == user_id)
    )
    if state.assignee_id == user_id:
        record_event(session, report_id, viewer, "assign", user_id, None, moment)
        state.assignee_id = None
    record_event(session, report_id, viewer, "recuse", None, user_id, moment)
    await touch(session, viewer, [state], moment)
    return True


async def unrecuse(
    session: AsyncSession, viewer: Viewer, report_id: str, user_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Admins only: lift a recusal. Returns True if there was one."""
    if not viewer.is_admin:
        raise NotAllowed("only an admin lifts a recusal")
    await require_visible(session, viewer, report_id)
    result = await session.execute(
        delete(CaseRecusal).where(CaseRecusal.report_id == report_id, CaseRecusal.user_id == user_id)
    )
    if not result.rowcount:
        return False
    state = (await case_states(session, [report_id]))[report_id]
    moment = now_or(now)
    record_event(session, report_id, viewer, "unrecuse", user_id, None, moment)
    await touch(session, viewer, [state], moment)
    return True


async def recused(session: AsyncSession, viewer: Viewer, report_id: str) -> list[str]:
    """Admins only: the user ids recused from the case, sorted."""
    if not viewer.is_admin:
        raise NotAllowed("only an admin sees recusals")
    await require_visible(session, viewer, report_id)
    return sorted(await session.scalars(select(CaseRecusal.user_id).where(CaseRecusal.report_id == report_id)))


# -- linked cases ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LinkedCase:
    report_id: str
    designation: str
    status: str


def _pair(a: str, b: str) -> tuple[str, str]:
    if a == b:
        raise ValueError("a case cannot be linked to itself")
    return (a, b) if a < b else (b, a)


async def link(
    session: AsyncSession, viewer: Viewer, report_id: str, other_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Link two cases about the same incident (both visible to the viewer). Returns True
    if they were not linked yet."""
    first, second = _pair(report_id, other_id)
    await require_visible(session, viewer, [first, second])
    if await session.get(CaseLink, (first, second)) is not None:
        return False
    states = await case_states(session, [first, second])
    moment = now_or(now)
    session.add(CaseLink(report_a=first, report_b=second))
    record_event(session, first, viewer, "link", None, second, moment)
    record_event(session, second, viewer, "link", None, first, moment)
    await touch(session, viewer, states.values(), moment)
    return True


async def unlink(
    session: AsyncSession, viewer: Viewer, report_id: str, other_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Remove a link between two cases (both visible). Returns True if there was one."""
    first, second = _pair(report_id, other_id)
    await require_visible(session, viewer, [first, second])
    result = await session.execute(
        delete(CaseLink).where(CaseLink.report_a == first, CaseLink.report_b == second)
    )
    if not result.rowcount:
        return False
    states = await case_states(session, [first, second])
    moment = now_or(now)
    record_event(session, first, viewer, "unlink", second, None, moment)
    record_event(session, second, viewer, "unlink", first, None, moment)
    await touch(session, viewer, states.values(), moment)
    return True


async def linked_cases(session: AsyncSession, viewer: Viewer, report_id: str) -> list[LinkedCase]:
    """The cases linked to this one that the viewer may see, by designation."""
    await require_visible(session, viewer, report_id)
    others = set(
        await session.scalars(select(CaseLink.report_b).where(CaseLink.report_a == report_id))
    ) | set(await session.scalars(select(CaseLink.report_a).where(CaseLink.report_b == report_id)))
    allowed = await visible_ids(session, viewer, others)
    if not allowed:
        return []
    rows = await session.execute(
        select(Report.id, Report.designation, Report.status)
        .where(Report.id.in_(sorted(allowed)))
        .order_by(Report.designation)
    )
    return [LinkedCase(*row) for row in rows]


__all__ = [
    "LinkedCase",
    "link",
    "linked_cases",
    "recuse",
    "recused",
    "share",
    "shared_with",
    "unlink",
    "unrecuse",
    "unshare",
]
