"""Steps every change to a case shares: its console row (made on first change and locked),
the "updated" mark, the workflow event, who may be named in it. The workflow
(:mod:`nazaha.services.workflow`), sharing and links (:mod:`nazaha.services.sharing`) and
notes build on these; like them, nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import CaseAccessDenied, Viewer
from nazaha.storage.console_models import CaseEvent, CaseRecusal, CaseState, CaseView, StaffUser
from nazaha.storage.database import dialect_insert


class NotAllowed(CaseAccessDenied):
    """The viewer may see the case but not take this action (e.g. a caseworker assigning a
    case to someone else, anyone but an admin recusing)."""


def now_or(now: dt.datetime | None) -> dt.datetime:
    """``now``, or the current UTC time if None."""
    return now if now is not None else dt.datetime.now(dt.timezone.utc)


async def case_states(session: AsyncSession, report_ids: Sequence[str]) -> dict[str, CaseState]:
    """The console rows of these cases, made if missing and locked (PostgreSQL) for the rest
    of the transaction. The ids must be reports that exist (check visibility first)."""
    ids = list(dict.fromkeys(report_ids))
    if not ids:
        return {}
    insert = dialect_insert(session)(CaseState.__table__)
    await session.execute(
        insert.on_conflict_do_nothing(index_elements=["report_id"]),
        [{"report_id": rid, "priority": "normal"} for rid in ids],
    )
    rows = await session.scalars(
        select(CaseState)
        .where(CaseState.report_id.in_(ids))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.report_id: row for row in rows}


async def touch(session: AsyncSession, viewer: Viewer, states: Iterable[CaseState], now: dt.datetime) -> None:
    """Mark cases updated at ``now``. The viewer's own view moves along if they were up to
    date, so their own change does not show as news to them."""
    states = list(states)
    if not states:
        return
    views = {
        view.report_id: view
        for view in await session.scalars(
            select(CaseView).where(
                CaseView.user_id == viewer.user_id,
                CaseView.report_id.in_([s.report_id for s in states]),
            )
        )
    }
    for state in states:
        previous = state.updated_at
        state.updated_at = now
        view = views.get(state.report_id)
        if view is not None and (previous is None or view.seen_at >= previous):
            view.seen_at = now
    await session.flush()


def record_event(
    session: AsyncSession, report_id: str, viewer: Viewer, kind: str, old: str | None, new: str | None, now: dt.datetime
) -> None:
    """Add a ``case_events`` row: ``kind`` ("status", "assign", ...), codes or ids only."""
    session.add(CaseEvent(report_id=report_id, at=now, actor_id=viewer.user_id, kind=kind, old=old, new=new))


async def active_staff(session: AsyncSession, user_id: str | None, roles: tuple[str, ...]) -> StaffUser:
    """The active staff member ``user_id`` with one of ``roles`` (``ValueError`` otherwise)."""
    user = await session.get(StaffUser, user_id) if isinstance(user_id, str) else None
    if user is None or user.state != "active" or user.role not in roles:
        raise ValueError(f"not an active staff member with role {' or '.join(roles)}")
    return user


async def any_recused(session: AsyncSession, report_ids: Sequence[str], user_id: str) -> bool:
    """Whether ``user_id`` is recused from any of these cases."""
    return bool(
        await session.scalar(
            select(
                exists().where(CaseRecusal.report_id.in_(list(report_ids)), CaseRecusal.user_id == user_id)
            )
        )
    )


__all__ = ["NotAllowed", "active_staff", "any_recused", "case_states", "now_or", "record_event", "touch"]
