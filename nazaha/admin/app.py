"""The caseworker console (FastAPI). Until the console issue lands, a placeholder page."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PLACEHOLDER = """<!doctype html>
<html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>نزاهة — Nazaha</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.6">
<h1>نزاهة — لوحة المتابعة</h1>
<p>لوحة مراجعة البلاغات قيد الإعداد وستتوفر في الإصدار القادم.</p>
<hr>
<div dir="ltr"><h1>Nazaha — review console</h1>
<p>The caseworkers' review console is being built and arrives in the next release.
Until then, <code>nazaha decrypt</code> opens a stored report with the team key.</p></div>
</body></html>"""


def create_app(settings: object | None = None) -> FastAPI:
    app = FastAPI(title="Nazaha console", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return PLACEHOLDER

    return app
