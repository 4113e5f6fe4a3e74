"""The console's metrics (definitions: nazaha/metrics.py): requests by route template and
status class with their duration, and ``GET /metrics``.

``/metrics`` exists only when ``NAZAHA_CONSOLE_METRICS_TOKEN`` is set, and answers only a
request that carries it as ``Authorization: Bearer <token>``: the console is reachable by
everyone who can reach its sign-in page, so its metrics may not be. Without the setting, or
with a wrong token, the answer is the console's ordinary 404 page.

A request is labelled with the template of the route it matched (``/cases/{designation}``),
never with its path; one that matched none is ``unmatched``, the static files ``/static``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nazaha import metrics

router = APIRouter()


def route_label(scope: Scope) -> str:
    """The matched route's template, ``/static`` or ``unmatched``: never the path itself."""
    route = scope.get("route")
    template = getattr(route, "path", None)  # as declared, converters included: "{n:int}"
    if isinstance(template, str) and template.startswith("/"):
        return template
    if isinstance(scope.get("endpoint"), StaticFiles):
        return "/static"
    return metrics.UNMATCHED_ROUTE


class RequestMetrics:
    """Pure ASGI middleware (outermost): counts each HTTP request by method, route template
    and status class, and observes its duration by route template. A request whose
    application raised counts as 5xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_label(scope)
            metrics.CONSOLE_REQUESTS.labels(
                metrics.http_method(scope.get("method", "")), route, metrics.status_class(status)
            ).inc()
            metrics.CONSOLE_SECONDS.labels(route).observe(time.perf_counter() - started)


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """True if ``authorization`` is ``Bearer <expected>`` (constant-time comparison)."""
    if not expected or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@router.get("/metrics")
async def metrics_page(request: Request) -> Response:
    settings: Any = request.app.state.console.settings
    token = settings.console_metrics_token
    expected = token.get_secret_value() if token is not None else None
    if not token_matches(expected, request.headers.get("authorization")):
        raise HTTPException(status_code=404)
    return Response(
        metrics.exposition(metrics.CONSOLE_REGISTRY), media_type=None,
        headers={"Content-Type": metrics.CONTENT_TYPE},
    )


__all__ = ["RequestMetrics", "route_label", "router", "token_matches"]
