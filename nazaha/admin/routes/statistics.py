"""The statistics page (admins: every case and what purged cases left; caseworkers: their
own cases), one SVG per chart (and the governorates' schematic tile map) and one CSV per chart.

``/statistics?from=YYYY-MM-DD&to=YYYY-MM-DD`` (default: the last twelve whole months, this
one included). Charts: ``/statistics/chart/<name>.svg`` (the map: ``map.svg``); data:
``/statistics/data/<name>.csv`` (and ``timeliness.csv``), same query. Viewing is not
audited; each CSV download is (``export``, ``{"what": "statistics"}``).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from nazaha.admin import i18n
from nazaha.admin.context import CaseStaff, ConsoleDep, render
from nazaha.admin.routes.cases import rules_of, viewer_of
from nazaha.admin.security import SVG_IMAGE_POLICY
from nazaha.admin.statistics_map import map_svg
from nazaha.admin.statistics_view import CHARTS, chart_csv, chart_svg, chart_table, timeliness, timeliness_csv
from nazaha.services import audit
from nazaha.services.deadlines import add_months
from nazaha.services.statistics import Statistics, statistics
from nazaha.storage.database import write_session

router = APIRouter()
_ = i18n.gettext
MAX_DAYS = 366 * 10


def default_range(today: dt.date) -> tuple[dt.date, dt.date]:
    """The last twelve whole months, the current one included."""
    first = add_months(today.replace(day=1), -11)
    last = add_months(today.replace(day=1), 1) - dt.timedelta(days=1)
    return first, last


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def range_of(request: Request, today: dt.date) -> tuple[dt.date, dt.date, bool]:
    """The requested range (or the default), and whether what was asked for was usable."""
    first, last = default_range(today)
    asked_from, asked_to = request.query_params.get("from"), request.query_params.get("to")
    date_from, date_to = _day(asked_from), _day(asked_to)
    ok = (asked_from is None or date_from is not None) and (asked_to is None or date_to is not None)
    date_from, date_to = date_from or first, date_to or last
    if date_from > date_to or (date_to - date_from).days > MAX_DAYS:
        return first, last, False
    return date_from, date_to, ok


async def _figures(request: Request, console, staff) -> tuple[Statistics, bool]:
    date_from, date_to, ok = range_of(request, console.today())
    async with console.sessionmaker() as session:
        stats = await statistics(session, viewer_of(staff), date_from, date_to, console.today(), rules_of(console))
    return stats, ok


def _query(stats: Statistics) -> str:
    return urllib.parse.urlencode({"from": stats.date_from.isoformat(), "to": stats.date_to.isoformat()})


@router.get("/statistics")
async def statistics_page(request: Request, console: ConsoleDep, staff: CaseStaff) -> Response:
    stats, ok = await _figures(request, console, staff)
    k = console.settings.stats_min_cell
    return render(
        request, "statistics.html", nav="statistics", stats=stats, range_ok=ok, min_cell=k,
        tables=[chart_table(stats, name, k) for name in CHARTS], figures=timeliness(stats, k),
        query=_query(stats), own_only=staff.identity.role != "admin",
        start_isolated=i18n.isolate(stats.date_from.isoformat()), end_isolated=i18n.isolate(stats.date_to.isoformat()),
    )


MAP = "map"


@router.get("/statistics/chart/{name}.svg")
async def chart(request: Request, console: ConsoleDep, staff: CaseStaff, name: str) -> Response:
    if name not in CHARTS and name != MAP:
        raise HTTPException(status_code=404)
    stats, _ok = await _figures(request, console, staff)
    k = console.settings.stats_min_cell
    if name == MAP:  # the governorates' table, published figures, as tiles
        svg = map_svg(chart_table(stats, "governorate", k), i18n.current_locale())
    else:
        svg = chart_svg(chart_table(stats, name, k), i18n.current_locale())
    return Response(svg, media_type="image/svg+xml", headers={"content-security-policy": SVG_IMAGE_POLICY})


@router.get("/statistics/data/{name}.csv")
async def data(request: Request, console: ConsoleDep, staff: CaseStaff, name: str) -> Response:
    if name not in (*CHARTS, "timeliness"):
        raise HTTPException(status_code=404)
    stats, _ok = await _figures(request, console, staff)
    k = console.settings.stats_min_cell
    body = timeliness_csv(timeliness(stats, k)) if name == "timeliness" else chart_csv(chart_table(stats, name, k))
    async with write_session(console.sessionmaker) as session:
        await audit.append(session, actor_id=staff.identity.id, action=audit.EXPORT,
                           detail={"what": "statistics"}, now=console.clock())
    filename = f"nazaha-{name}-{stats.date_from.isoformat()}-{stats.date_to.isoformat()}.csv"
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})
