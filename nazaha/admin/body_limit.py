"""How large a request body the console reads: a limit for every request, chosen before any
route (sign-in included) reads a byte of it.

* A request that declares a ``Content-Length`` over its limit is answered 413 at once, with
  the console's error page, before the app (or anything) reads its body.
* A body without a declared length (``Transfer-Encoding: chunked``) is counted as it arrives
  by Starlette's ``RequestBodyLimitMiddleware``, which raises a 413 HTTPException as soon as
  the count passes the limit, so no more than the limit plus one chunk is ever held; the
  app's HTTPException handler turns it into the same error page.

:class:`BodyLimit` picks the limit of each request:

* ``upload_bytes`` for a request to a route with a file field (``UploadFile``/``File()``;
  :func:`upload_routes` finds them in the app, so a new one is covered without a list to
  keep) **from a signed-in member** (a live session cookie): the broadcast image (at most
  10 MB, with the form's texts) and the Keys page's recovery file;
* ``default_bytes`` for everything else: the sign-in and invitation forms, every other
  form, and an upload route for anyone not signed in. An anonymous request therefore never
  gets more than ``default_bytes`` read, whatever its path.

Limits come from ``NAZAHA_CONSOLE_MAX_BODY_BYTES`` and ``NAZAHA_CONSOLE_MAX_UPLOAD_BODY_BYTES``
(nazaha/bot/settings.py); the reverse proxy in front should refuse bodies over the upload
limit itself (nginx: ``client_max_body_size``, see docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BodyLimit", "UploadRoute", "upload_routes"]


@dataclass(frozen=True)
class UploadRoute:
    """A route that takes a file: its methods and its path pattern (Starlette's)."""

    methods: frozenset[str]
    path: str
    path_regex: re.Pattern[str]

    def matches(self, scope: Scope) -> bool:
        return scope.get("method") in self.methods and self.path_regex.match(scope.get("path", "")) is not None


def upload_routes(routes: Iterable[object]) -> list[UploadRoute]:
    """The FastAPI routes among ``routes`` (routers included without a prefix, as the
    console includes them) with a file field in their body."""
    from fastapi import params
    from fastapi.routing import APIRoute

    found: list[UploadRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(upload_routes(inner.routes))
        elif isinstance(route, APIRoute) and any(
            isinstance(field.field_info, params.File) for field in route.dependant.body_params
        ):
            found.append(UploadRoute(frozenset(route.methods), route.path, route.path_regex))
    return found


class BodyLimit:
    """Pure ASGI middleware: each HTTP request gets ``upload_bytes`` if it is a signed-in
    member's request to one of ``uploads`` (``signed_in(scope)`` says whether its session
    cookie is live), else ``default_bytes``. Over it: ``refusal(scope)``, an ASGI response
    with status 413 (default: plain text)."""

    def __init__(self, app: ASGIApp, *, default_bytes: int, upload_bytes: int,
                 uploads: Iterable[UploadRoute], signed_in: Callable[[Scope], bool],
                 refusal: Callable[[Scope], ASGIApp] | None = None) -> None:
        self.app = app
        self.uploads = tuple(uploads)
        self.signed_in = signed_in
        self.refusal = refusal or (lambda scope: PlainTextResponse("Content Too Large", status_code=413))
        self._default = RequestBodyLimitMiddleware(app, max_body_size=default_bytes)
        self._upload = RequestBodyLimitMiddleware(app, max_body_size=max(upload_bytes, default_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = self._upload if self._is_upload(scope) else self._default
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > counted.max_body_size:
            await self.refusal(scope)(scope, receive, send)
            return
        await counted(scope, receive, send)

    def _is_upload(self, scope: Scope) -> bool:
        return any(route.matches(scope) for route in self.uploads) and self.signed_in(scope)
