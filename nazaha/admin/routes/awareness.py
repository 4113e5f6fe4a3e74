"""The volunteers' area (awareness content and broadcasts). Until that release, it says so:
volunteers have no access to cases."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nazaha.admin.context import CurrentStaff, render

router = APIRouter()


@router.get("/awareness")
async def awareness(request: Request, staff: CurrentStaff) -> Response:
    return render(request, "awareness.html", nav="awareness")
