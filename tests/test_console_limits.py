"""Request body limits of the console (nazaha/admin/body_limit.py): a body over the limit is
refused with 413 before it is read, whether it declares its length or comes in chunks; only
a signed-in member's request to a route with a file field gets the larger upload limit;
ordinary sign-in and uploads within the limits still work.

Over a real uvicorn server with raw sockets (to send a header without its body, or a chunked
body that never ends), and with the test client for the signed-in cases."""

from __future__ import annotations

import asyncio
import io
import os
import re

import pytest
from PIL import Image
from sqlalchemy import select

from nazaha.admin.app import create_app
from nazaha.admin.body_limit import upload_routes
from nazaha.bot.settings import Settings
from nazaha.bot.setup import initialise
from nazaha.storage.awareness_models import Broadcast, BroadcastImage
from tests.console_support import PASSPHRASE, console_settings, csrf_of
from tests.test_console_awareness import compose, count, member, world  # noqa: F401 (fixture)
from tests.test_console_browser import serving

DEFAULT = Settings.model_fields["console_max_body_bytes"].default
UPLOAD = Settings.model_fields["console_max_upload_body_bytes"].default
TIMEOUT = 20  # seconds: a server that waits for a body we never send fails the test


def test_the_defaults_fit_the_forms_and_the_image():
    from nazaha.awareness.broadcast_image import MAX_UPLOAD_BYTES

    assert DEFAULT == 1024 * 1024 and UPLOAD == 11 * 1024 * 1024
    # A library item: eight fields of at most 20,000 characters, URL-encoded Arabic (6 bytes).
    assert 8 * 20_000 * 6 < DEFAULT
    # The image with the broadcast's two texts (20,000 characters each, 4 bytes at most in UTF-8).
    assert MAX_UPLOAD_BYTES + 2 * 20_000 * 4 < UPLOAD


def test_the_upload_limit_goes_to_the_routes_with_a_file_field_and_no_other(tmp_path):
    app = create_app(console_settings(tmp_path / "var"))
    found = {(method, route.path) for route in upload_routes(app.routes) for method in route.methods}
    assert found == {
        ("POST", "/awareness/broadcasts"),
        ("POST", "/awareness/broadcasts/{broadcast_id:int}"),
        ("POST", "/keys/rotate"),
    }


# ------------------------------------------------------------------ over a real server


@pytest.fixture
async def live(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    async with serving(create_app(settings)) as base:
        yield int(base.rsplit(":", 1)[1])


async def exchange(port: int, head: str, body: list[bytes] = ()) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers) and the ``body`` pieces as they are, then
    read one response: its status, headers (lower-case names) and content."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n")
        for piece in body:
            writer.write(piece)
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), TIMEOUT)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        content = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), TIMEOUT)
        return int(status.split()[1]), headers, content
    finally:
        writer.close()


def chunked(pieces: list[bytes], *, end: bool) -> list[bytes]:
    framed = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces]
    return framed + ([b"0\r\n\r\n"] if end else [])


FORM = "Content-Type: application/x-www-form-urlencoded\nAccept-Language: en"


async def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(live):
    # 2 GB announced, nothing sent: an answer at all means nobody waited for the body.
    status, headers, content = await exchange(live, f"POST /login HTTP/1.1\nHost: x\n{FORM}\nContent-Length: 2000000000\n")
    assert status == 413
    assert "Too large" in content.decode() and "content-security-policy" in headers
    status, _, _ = await exchange(live, f"POST /login HTTP/1.1\nHost: x\n{FORM}\nContent-Length: {DEFAULT + 1}\n")
    assert status == 413
    # A route that never reads a body answers 413 all the same.
    status, headers, _ = await exchange(live, "GET /login HTTP/1.1\nHost: x\nContent-Length: 2000000000\n")
    assert status == 413 and "content-security-policy" in headers


async def test_an_upload_route_gives_no_larger_limit_to_anyone_not_signed_in(live):
    multipart = "Content-Type: multipart/form-data; boundary=b"
    for cookie in ("", "Cookie: __Host-nazaha-session=forged\n"):
        head = f"POST /awareness/broadcasts HTTP/1.1\nHost: x\n{multipart}\n{cookie}Content-Length: {DEFAULT + 1}\n"
        status, _, _ = await exchange(live, head)
        assert status == 413, cookie


async def test_a_chunked_body_is_counted_and_refused_once_over_the_limit(live):
    piece = b"a" * (64 * 1024)
    pieces = [piece] * (DEFAULT // len(piece)) + [b"a"]  # one byte over, and no end chunk
    head = f"POST /login HTTP/1.1\nHost: x\n{FORM}\nTransfer-Encoding: chunked\n"
    status, _, content = await exchange(live, head, chunked(pieces, end=False))
    assert status == 413 and "Too large" in content.decode()
    # Within the limit, the same chunked form reaches the sign-in (refused there: no CSRF token).
    status, _, _ = await exchange(live, head, chunked([b"username=a&password=b&code=1"], end=True))
    assert status == 403


# ------------------------------------------------------------------ signed in (test client)


def noise_png(size: tuple[int, int]) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, "PNG", compress_level=1)
    return out.getvalue()


async def test_a_signed_in_upload_gets_the_larger_limit_and_nothing_else_does(world):
    w = world
    vera = await member(w, "vera", "volunteer")  # invited, enrolled and signed in again: sign-in works
    picture = noise_png((800, 600))
    assert DEFAULT < len(picture) < UPLOAD
    files = {"image": ("photo.png", picture, "image/png")}
    broadcast_id = compose(vera, language=["en"], body_en="With a large picture.", files=files)
    async with w.sm() as session:
        stored = await session.get(BroadcastImage, broadcast_id)
    assert stored is not None and stored.mime_type == "image/jpeg"

    # The same upload from a browser that is not signed in: 413, not a redirect to sign in.
    stranger = w.browser()
    page = stranger.get("/login")
    refused = stranger.post("/awareness/broadcasts", data={"csrf": csrf_of(page.text), "name": "x"}, files=files)
    assert refused.status_code == 413

    # Signed in, but a route without a file field: the ordinary limit.
    page = vera.get("/awareness")
    refused = vera.post("/locale", data={"csrf": csrf_of(page.text), "locale": "en", "back": "/" + "a" * DEFAULT})
    assert refused.status_code == 413

    # Signed in, an upload over the upload limit: refused unread, with the console's page.
    before = await count(w, Broadcast)
    page = vera.get("/awareness/broadcasts/new")
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(page.text), "name": "x", "language": ["en"],
                                                       "body_en": "t"},
                        files={"image": ("huge.png", b"\x89PNG" + b"\x00" * UPLOAD, "image/png")})
    assert refused.status_code == 413
    assert "Too large" in refused.text and "at most 10 MB" in refused.text
    assert await count(w, Broadcast) == before
    async with w.sm() as session:
        assert (await session.scalars(select(Broadcast.id))).all() == [broadcast_id]
    assert re.search(r"<h1>\s*Too large", refused.text)
