"""File types by their bytes, safe download names, and the in-memory PDF pages cache
(nazaha/services/evidence_files.py)."""

from __future__ import annotations

import asyncio

import pytest

from nazaha.services.evidence_files import (
    PdfPageCache,
    content_disposition,
    download_name,
    inline_image_type,
    safe_extension,
    sniff,
)
from nazaha.storage.pdf_pages import PageImages, PdfRenderError

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PDF = b"%PDF-1.7\n%\xe2\xe3"
EXE = b"MZ\x90\x00\x03\x00\x00\x00"


@pytest.mark.parametrize(
    ("mime", "head", "kind", "expected"),
    [
        ("application/pdf", PDF, "document", ".pdf"),
        ("application/pdf", EXE, "document", ".bin"),  # a program labelled as a PDF
        ("image/jpeg", PNG, "document", ".png"),  # the bytes decide
        ("text/plain", PDF, "document", ".pdf"),
        ("text/plain", b"just words", "document", ".txt"),
        ("application/x-msdownload", EXE, "document", ".bin"),
        ("IMAGE/JPEG; charset=x", JPEG, "document", ".jpg"),
        (None, JPEG, "photo", ".jpg"),  # Telegram photos carry no MIME type
        (None, b"OggS\x00\x02", "voice", ".ogg"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04", "document", ".docx"),
        ("application/javascript", b"alert(1)", "document", ".bin"),
        (None, b"", "document", ".bin"),
    ],
)
def test_extension_comes_from_the_allow_list_and_the_bytes(mime, head, kind, expected):
    assert safe_extension(mime, head, kind) == expected


def test_only_our_images_are_inline():
    assert inline_image_type(JPEG) == "image/jpeg" and inline_image_type(PNG) == "image/png"
    assert inline_image_type(b"GIF89a....") is None and inline_image_type(PDF) is None
    assert sniff(b"junk before " + PDF) == "pdf"


def test_download_names_are_ascii_and_built_by_us():
    assert download_name("R-7KQ2MX", 3, ".jpg") == "R-7KQ2MX-3.jpg"
    assert download_name("R-7KQ2MX", 2, ".pdf", suffix="original") == "R-7KQ2MX-2-original.pdf"
    assert download_name('../"x', 1, ".bin") == "case-1.bin"
    with pytest.raises(ValueError):
        download_name("R-7KQ2MX", 1, '.pdf"; x')
    with pytest.raises(ValueError):
        content_disposition('a"b.pdf')
    assert content_disposition("R-1-2.png", inline=True) == "inline; filename=\"R-1-2.png\"; filename*=UTF-8''R-1-2.png"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_shares_one_render_per_owner_and_forgets_after_ttl():
    clock = FakeClock()
    renders = []

    async def render(pdf: bytes) -> PageImages:
        renders.append(pdf)
        await asyncio.sleep(0)
        return PageImages([b"page-1", b"page-2"], 2)

    async def load() -> bytes:
        return PDF

    cache = PdfPageCache(ttl_s=300, clock=clock, render=render)
    first, second = await asyncio.gather(cache.pages("s1", "r", "f", load), cache.pages("s1", "r", "f", load))
    assert first == second == [b"page-1", b"page-2"] and first.page_count == 2
    assert len(renders) == 1  # the parallel requests shared one render
    await cache.pages("s2", "r", "f", load)
    assert len(renders) == 2  # another session renders for itself
    clock.now += 301
    await cache.pages("s1", "r", "f", load)
    assert len(renders) == 3
    cache.drop_owner("s1")
    cache.drop_owner("s2")
    assert len(cache) == 0


async def test_cache_remembers_render_errors_but_not_read_errors():
    clock = FakeClock()
    calls = []

    async def broken(pdf: bytes) -> PageImages:
        calls.append("render")
        raise PdfRenderError("encrypted")

    async def load() -> bytes:
        return PDF

    cache = PdfPageCache(clock=clock, render=broken)
    for _ in range(2):
        with pytest.raises(PdfRenderError) as caught:
            await cache.pages("s", "r", "f", load)
        assert caught.value.reason == "encrypted"
    assert calls == ["render"]

    async def unreadable() -> bytes:
        calls.append("load")
        raise OSError("disk")

    for _ in range(2):
        with pytest.raises(OSError):
            await cache.pages("s", "r", "g", unreadable)
    assert calls.count("load") == 2


async def test_cache_keeps_within_its_byte_budget():
    async def render(pdf: bytes) -> PageImages:
        return PageImages([b"x" * 600], 1)

    async def load() -> bytes:
        return PDF

    clock = FakeClock()
    cache = PdfPageCache(max_bytes=1000, clock=clock, render=render)
    await cache.pages("s", "r", "a", load)
    clock.now += 1
    await cache.pages("s", "r", "b", load)
    assert len(cache) == 1  # the older one went
