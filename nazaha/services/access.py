"""Who may see which case in the console.

* **admin**: every case;
* **caseworker**: cases that are unassigned, assigned to them or shared with them, and never
  one they are recused from;
* **volunteer** (and any unknown role): none.

:func:`visible_clause` is that rule as one SQL condition on ``reports`` (``r``) outer-joined
to ``console.cases`` (``c``), so that listing, counting and searching apply it inside the
query. Every case-level function raises :class:`CaseAccessDenied` for a case the viewer may
not see, and for a case that does not exist (the same error: no oracle for report ids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, exists, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.storage.console_models import ROLES, CaseRecusal, CaseShare, CaseState
from nazaha.storage.models import Report

REPORTS = Report.__table__
CASES = CaseState.__table__
SHARES = CaseShare.__table__
RECUSALS = CaseRecusal.__table__


class CaseAccessDenied(Exception):
    """The viewer may not see this case (or it does not exist)."""


@dataclasses.dataclass(frozen=True)
class Viewer:
    """The staff member a call is made for: their ``StaffUser.id`` and role
    (``"admin"``, ``"caseworker"`` or ``"volunteer"``)."""

    user_id: str
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ValueError("a viewer has a user id")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def visible_clause(viewer: Viewer, reports: Any = REPORTS, cases: Any = CASES) -> Any:
    """The SQL condition "``viewer`` may see this case", over ``reports`` outer-joined to
    ``cases`` on ``cases.report_id = reports.id`` (a report without a case row is unassigned)."""
    if viewer.role == "admin":
        return true()
    if viewer.role != "caseworker":
        return false()
    me = viewer.user_id
    shared = exists().where(SHARES.c.report_id == reports.c.id, SHARES.c.user_id == me)
    recused = exists().where(RECUSALS.c.report_id == reports.c.id, RECUSALS.c.user_id == me)
    return and_(
        or_(cases.c.assignee_id.is_(None), cases.c.assignee_id == me, shared),
        ~recused,
    )


def cases_join(reports: Any = REPORTS, cases: Any = CASES) -> Any:
    return reports.outerjoin(cases, cases.c.report_id == reports.c.id)


async def visible_ids(session: AsyncSession, viewer: Viewer, report_ids: Iterable[str]) -> set[str]:
    """Which of ``report_ids`` exist and are visible to ``viewer``."""
    wanted = sorted({rid for rid in report_ids if isinstance(rid, str)})
    if not wanted or viewer.role not in ("admin", "caseworker"):
        return set()
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = await session.scalars(
            select(REPORTS.c.id)
            .select_from(cases_join())
            .where(REPORTS.c.id.in_(chunk), visible_clause(viewer))
        )
        found.update(rows.all())
    return found


async def can_see(session: AsyncSession, viewer: Viewer, report_id: str) -> bool:
    """Whether ``viewer`` may see the case ``report_id`` (False if there is no such case)."""
    return report_id in await visible_ids(session, viewer, [report_id])


async def require_visible(session: AsyncSession, viewer: Viewer, report_ids: Sequence[str] | str) -> list[str]:
    """The ids (duplicates dropped, order kept) if ``viewer`` may see every one of them;
    :class:`CaseAccessDenied` otherwise. An empty list is returned as is."""
    ids = [report_ids] if isinstance(report_ids, str) else list(dict.fromkeys(report_ids))
    if ids and set(ids) - await visible_ids(session, viewer, ids):
        raise CaseAccessDenied("case not visible to this viewer")
    return ids


__all__ = [
    "CaseAccessDenied",
    "Viewer",
    "can_see",
    "cases_join",
    "require_visible",
    "visible_clause",
    "visible_ids",
]
