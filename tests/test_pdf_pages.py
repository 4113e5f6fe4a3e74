"""PDF page images rendered in a confined subprocess (nazaha/storage/pdf_pages.py).

Every PDF here is made by the test: with Pillow (multi-page), or written by hand (a drawing
we can check pixel by pixel, a real RC4-encrypted file, a nested-form "bomb").
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import struct
import sys
import time

import pypdfium2 as pdfium
import pytest
from PIL import Image, PngImagePlugin

from nazaha.storage import pdf_pages
from nazaha.storage.pdf_pages import PdfRenderError, render_pdf_pages

# --------------------------------------------------------------------------- PDF makers


def build_pdf(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """A PDF with objects 1..n (object 1 the catalog) and a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + trailer_extra + b">>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d " % len(data) + extra + b">>\nstream\n" + data + b"\nendstream"


def one_page(
    content: bytes, width: int = 600, height: int = 800, resources: bytes = b""
) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R %s>>"
        % (width, height, resources),
        stream(content),
    ]


def half_black(width: int = 600, height: int = 800) -> bytes:
    """One page whose left half is black (PDF origin: bottom left)."""
    return build_pdf(one_page(b"0 g 0 0 %d %d re f" % (width // 2, height), width, height))


def pillow_pdf(sizes: list[tuple[int, int]]) -> bytes:
    """A multi-page PDF, one page per image size (Pillow: 72 dpi, so pixels = points)."""
    images = [Image.new("RGB", size, (40 * i, 90, 200)) for i, size in enumerate(sizes)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=72)
    return buffer.getvalue()


def form_bomb(depth: int = 8, fan: int = 10) -> bytes:
    """A 3 KB page that draws a form that draws the next form `fan` times, `depth` deep:
    fan**depth leaf drawings (10**7 here)."""
    objects = one_page(b"/X Do", resources=b"/Resources << /XObject << /X 5 0 R >> >> ")
    for level in range(depth):
        if level == depth - 1:
            content, resources = b"0 0 1 1 re f", b""
        else:
            content = b" ".join(b"q 1 0 0 1 %d 0 cm /X Do Q" % i for i in range(fan))
            resources = b"/Resources << /XObject << /X %d 0 R >> >> " % (6 + level)
        form = b"/Type /XObject /Subtype /Form /BBox [0 0 600 800] " + resources
        objects.append(stream(content, form))
    return build_pdf(objects)


_PAD = bytes.fromhex(
    "28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a"
)


def _rc4(key: bytes, data: bytes) -> bytes:
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def rc4_encrypted(user_password: bytes, owner_password: bytes = b"owner") -> bytes:
    """half_black's page under the Standard security handler, revision 2 (RC4, 40-bit),
    as PDF 1.4 (ISO 32000-1, 7.6.3) specifies: algorithms 2, 3 and 4."""
    file_id = hashlib.md5(b"nazaha test").digest()
    permissions = -4
    owner_key = hashlib.md5((owner_password + _PAD)[:32]).digest()[:5]
    o_value = _rc4(owner_key, (user_password + _PAD)[:32])
    file_key = hashlib.md5(
        (user_password + _PAD)[:32] + o_value + struct.pack("<i", permissions) + file_id
    ).digest()[:5]
    u_value = _rc4(file_key, _PAD)
    content = b"0 g 0 0 300 800 re f"
    object_key = hashlib.md5(file_key + struct.pack("<I", 4)[:3] + b"\x00\x00").digest()[:10]
    objects = one_page(b"")
    objects[3] = stream(_rc4(object_key, content))
    objects.append(
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (o_value.hex().encode(), u_value.hex().encode(), permissions)
    )
    id_hex = file_id.hex().encode()
    return build_pdf(objects, b"/Encrypt 5 0 R /ID [<%s> <%s>] " % (id_hex, id_hex))


# --------------------------------------------------------------------------- helpers


def png_chunks(png: bytes) -> list[bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        kinds.append(png[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


@pytest.fixture
def spawned(monkeypatch):
    """The worker processes started during the test, and an event set at each start."""
    procs: list[asyncio.subprocess.Process] = []
    started = asyncio.Event()
    real_spawn = pdf_pages._spawn

    async def recording_spawn(argv):
        proc = await real_spawn(argv)
        procs.append(proc)
        started.set()
        return proc

    monkeypatch.setattr(pdf_pages, "_spawn", recording_spawn)
    return procs, started


def assert_reaped(proc: asyncio.subprocess.Process) -> None:
    assert proc.returncode is not None
    with pytest.raises(ChildProcessError):  # already waited for: no zombie left
        os.waitpid(proc.pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{proc.pid}")


# --------------------------------------------------------------------------- pages


async def test_multi_page_pdf_gives_one_png_per_page_with_the_page_aspect(spawned):
    sizes = [(600, 800), (800, 400), (300, 300)]
    pages = await render_pdf_pages(pillow_pdf(sizes), scale=1.5)
    assert pages.page_count == 3 and len(pages) == 3
    for png, (width, height) in zip(pages, sizes):
        image = Image.open(io.BytesIO(png))
        image.load()
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (round(width * 1.5), round(height * 1.5))
    assert len(spawned[0]) == 1
    assert_reaped(spawned[0][0])


async def test_the_drawing_is_rendered_the_right_way_up():
    (png,) = await render_pdf_pages(half_black(), scale=1.0)
    image = Image.open(io.BytesIO(png))
    assert image.size == (600, 800)
    assert image.getpixel((10, 10)) == (0, 0, 0)  # left half black
    assert image.getpixel((590, 790)) == (255, 255, 255)  # right half white


async def test_png_carries_pixels_only():
    pages = await render_pdf_pages(pillow_pdf([(200, 100), (100, 200)]))
    for png in pages:
        assert set(png_chunks(png)) <= {b"IHDR", b"IDAT", b"IEND"}
        assert Image.open(io.BytesIO(png)).info == {}


async def test_large_scale_is_capped_at_the_long_side_limit():
    pdf = build_pdf(one_page(b"0 g 0 0 1000 500 re f", width=2000, height=1000))
    (png,) = await render_pdf_pages(pdf, scale=50.0)
    assert Image.open(io.BytesIO(png)).size == (2000, 1000)
    (png,) = await render_pdf_pages(pdf, scale=50.0, max_long_side_px=640)
    assert Image.open(io.BytesIO(png)).size == (640, 320)


async def test_max_pages_and_page_count():
    pages = await render_pdf_pages(pillow_pdf([(100, 100)] * 5), max_pages=2)
    assert len(pages) == 2 and pages.page_count == 5


async def test_total_output_cap_stops_early_or_refuses():
    pdf = pillow_pdf([(300, 300)] * 4)
    full = await render_pdf_pages(pdf)
    one_and_a_half = len(full[0]) + len(full[1]) // 2
    pages = await render_pdf_pages(pdf, max_total_bytes=one_and_a_half)
    assert len(pages) == 1 and pages.page_count == 4 and pages[0] == full[0]
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(pdf, max_total_bytes=len(full[0]) - 1)
    assert caught.value.reason == "too_complex"


# --------------------------------------------------------------------------- refusals


async def test_garbage_is_not_a_pdf_and_starts_no_process(spawned):
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(b"MZ\x90\x00 this is no PDF" * 50)
    assert caught.value.reason == "not_a_pdf"
    assert str(caught.value) == "not_a_pdf"
    assert spawned[0] == []


async def test_pdf_header_with_garbage_after_it_fails():
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(b"%PDF-1.7\n" + os.urandom(4000))
    assert caught.value.reason == "failed"


async def test_truncated_pdf_fails(spawned):
    pdf = pillow_pdf([(600, 800), (600, 800)])
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(pdf[: len(pdf) // 2])
    assert caught.value.reason == "failed"
    assert_reaped(spawned[0][0])


async def test_pdf_that_needs_a_password_is_encrypted():
    locked = rc4_encrypted(user_password=b"secret")
    # it is a real encrypted PDF: the password opens it, nothing else does
    document = pdfium.PdfDocument(locked, password="secret")
    assert len(document) == 1
    document.close()
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(locked)
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(locked)
    assert caught.value.reason == "encrypted"


async def test_pdf_encrypted_with_an_empty_user_password_is_rendered():
    # owner password only ("permissions"): readers open it without asking
    (png,) = await render_pdf_pages(rc4_encrypted(user_password=b""), scale=1.0)
    image = Image.open(io.BytesIO(png))
    assert image.getpixel((10, 10)) == (0, 0, 0)
    assert image.getpixel((590, 790)) == (255, 255, 255)


# --------------------------------------------------------------------------- limits


async def test_bomb_is_killed_at_the_timeout_and_reaped(spawned):
    procs, _ = spawned
    started = time.monotonic()
    with pytest.raises(PdfRenderError) as caught:
        # the worker needs well over 0.3 s of CPU before this bomb exhausts its memory
        # limit, so the parent's wall-clock kill comes first
        await render_pdf_pages(form_bomb(), timeout_s=0.3)
    assert caught.value.reason == "too_complex"
    assert time.monotonic() - started < 5
    (proc,) = procs
    assert proc.returncode == -signal.SIGKILL
    assert_reaped(proc)


async def test_bomb_hits_the_memory_limit_before_the_timeout(spawned):
    procs, _ = spawned
    started = time.monotonic()
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(form_bomb(), timeout_s=60.0, memory_mb=256)
    assert caught.value.reason == "too_complex"
    assert time.monotonic() - started < 30  # the worker died by itself, not by our timer
    (proc,) = procs
    assert proc.returncode == -signal.SIGABRT  # PDFium's allocation failed: it aborts
    assert_reaped(proc)


async def test_cancelled_caller_kills_and_reaps_the_worker(spawned):
    procs, started = spawned
    task = asyncio.ensure_future(render_pdf_pages(form_bomb(), timeout_s=60.0))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (proc,) = procs
    assert proc.returncode == -signal.SIGKILL
    assert_reaped(proc)


# --------------------------------------------------------------------------- confinement


def test_worker_env_inherits_nothing(monkeypatch):
    monkeypatch.setenv("NAZAHA_BOT_TOKEN", "123:secret")
    assert pdf_pages.worker_env() == {}
    argv = pdf_pages.worker_argv(
        max_pages=1, scale=1.0, max_long_side_px=10, max_total_bytes=10, memory_mb=128,
        timeout_s=2.0,
    )
    assert argv[:3] == [sys.executable, "-I", str(pdf_pages._WORKER)]


async def test_worker_runs_confined(monkeypatch):
    monkeypatch.setenv("NAZAHA_BOT_TOKEN", "123:secret")
    monkeypatch.setenv("NAZAHA_DATABASE_URL", "sqlite:///secret.db")
    report = await pdf_pages.worker_self_check(memory_mb=300, timeout_s=4.5)
    assert not [name for name in report["env"] if name.startswith("NAZAHA")]
    # nothing but what Python sets for itself (PEP 538 locale coercion)
    assert set(report["env"]) <= {"LC_CTYPE"}
    assert report["limits"] == {
        "RLIMIT_AS": 300 * 1024 * 1024,
        "RLIMIT_CPU": 6,
        "RLIMIT_CORE": 0,
        "RLIMIT_NOFILE": 16,
        "RLIMIT_FSIZE": 0,
    }
    if os.geteuid() == 0:  # an empty network namespace needs privilege or user namespaces
        assert report["network_dropped"] is True
        # and a worker started as root renders as nobody: the console's 0600 files are closed to it
        assert report["started_as_root"] and report["runs_as_nobody"]


def test_parent_refuses_pngs_with_anything_but_pixels():
    image = Image.new("RGB", (40, 20))
    clean, tagged = io.BytesIO(), io.BytesIO()
    image.save(clean, "PNG")
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    image.save(tagged, "PNG", pnginfo=info)
    pdf_pages._check_png(clean.getvalue(), 40)
    for bad, cap in ((tagged.getvalue(), 40), (clean.getvalue(), 39), (clean.getvalue()[:-3], 40)):
        with pytest.raises(PdfRenderError):
            pdf_pages._check_png(bad, cap)
    broken = bytearray(clean.getvalue())
    broken[-20] ^= 0xFF  # a flipped bit inside IDAT: the CRC no longer matches
    with pytest.raises(PdfRenderError):
        pdf_pages._check_png(bytes(broken), 40)


async def test_parent_survives_a_worker_that_breaks_the_framing(monkeypatch, spawned):
    monkeypatch.setattr(
        pdf_pages, "worker_argv",
        lambda **_: [sys.executable, "-I", "-c", "print('hello')"],
    )
    with pytest.raises(PdfRenderError) as caught:
        await render_pdf_pages(half_black())
    assert caught.value.reason == "failed"
    assert_reaped(spawned[0][0])


async def test_nonsensical_limits_are_refused():
    for kwargs in ({"scale": 0.0}, {"scale": float("nan")}, {"max_pages": 0}, {"timeout_s": -1.0}):
        with pytest.raises(ValueError):
            await render_pdf_pages(half_black(), **kwargs)
