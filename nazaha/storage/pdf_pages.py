"""PDF evidence shown to caseworkers as page images, rendered in a confined subprocess.

A PDF is a program for a complex parser; a reporter's (or an impostor's) file must not be
able to reach the console's memory, keys or network.  So each document is rendered by a
new, short-lived Python process (``pdf_worker.py``, pypdfium2 + Pillow) that:

* starts with an empty environment (:func:`worker_env`: no ``NAZAHA_*`` settings, no
  secrets) in isolated mode (``python -I``: no ``PYTHON*`` variables, no user site, not the
  console's working folder), with ``/`` as its working folder and no inherited descriptors;
* before it reads a byte of the PDF: moves into an empty network namespace where the host
  allows it, and sets RLIMIT_AS (``memory_mb``), RLIMIT_CPU, RLIMIT_CORE 0, RLIMIT_NOFILE
  16 and RLIMIT_FSIZE 0 (it can write no file);
* reads the PDF on standard input and sends back only PNGs that Pillow encoded from raw
  pixels (no metadata, no text layer, no links), framed as ``pdf_worker`` describes.

The parent kills it at ``timeout_s`` (wall time), waits for it (no zombie), and checks each
PNG's structure (only IHDR, IDAT, IEND; size within the cap) before returning it.

Errors are :class:`PdfRenderError` with a reason code only; nothing of the document is
logged or carried in an exception.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import struct
import sys
import zlib
from pathlib import Path

__all__ = [
    "REASONS",
    "MAX_LONG_SIDE_PX",
    "MAX_TOTAL_BYTES",
    "PageImages",
    "PdfRenderError",
    "render_pdf_pages",
    "worker_argv",
    "worker_env",
    "worker_self_check",
]

REASONS = ("not_a_pdf", "encrypted", "too_complex", "failed")
MAX_LONG_SIDE_PX = 2000  # pixels on a page image's long side, whatever the scale
MAX_TOTAL_BYTES = 40 * 1024 * 1024  # PNG bytes for one document, all pages together

_WORKER = Path(__file__).with_name("pdf_worker.py")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND"})
# how a worker dies at a limit: SIGXCPU/SIGKILL (RLIMIT_CPU), SIGABRT or SIGTRAP (PDFium's
# allocator gives up under RLIMIT_AS); any other death counts as "failed"
_LIMIT_SIGNALS = frozenset({signal.SIGXCPU, signal.SIGKILL, signal.SIGABRT, signal.SIGTRAP})


class PdfRenderError(Exception):
    """A document that gives no page images; ``reason`` is one of :data:`REASONS`:
    ``not_a_pdf`` (no PDF header), ``encrypted`` (needs a password), ``too_complex`` (time,
    CPU, memory or output limit reached), ``failed`` (damaged or unreadable)."""

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            reason = "failed"
        super().__init__(reason)
        self.reason = reason


class PageImages(list):
    """The PNG images (``bytes``) of the first pages, in order; ``page_count`` is the
    number of pages in the whole document (more than ``len(self)`` when the page or byte
    cap cut the list short)."""

    def __init__(self, images: list[bytes], page_count: int) -> None:
        super().__init__(images)
        self.page_count = page_count


def worker_env() -> dict[str, str]:
    """The worker's whole environment: nothing from the parent's.  Python under ``-I``
    needs no variable, and PDFium finds system fonts in fixed folders."""
    return {}


def worker_argv(
    *, max_pages: int, scale: float, max_long_side_px: int, max_total_bytes: int,
    memory_mb: int, timeout_s: float, self_check: bool = False,
) -> list[str]:
    """The worker's command line (interpreter, isolated mode, script, limits)."""
    cpu_seconds = max(1, math.ceil(timeout_s)) + 1  # the wall-time kill normally comes first
    numbers = [max_pages, scale, max_long_side_px, max_total_bytes, memory_mb, cpu_seconds]
    return [
        sys.executable, "-I", str(_WORKER),
        *(["--self-check"] if self_check else []),
        *(repr(n) for n in numbers),
    ]


async def render_pdf_pages(
    pdf: bytes,
    *,
    max_pages: int = 20,
    scale: float = 1.5,
    timeout_s: float = 20.0,
    memory_mb: int = 512,
    max_long_side_px: int = MAX_LONG_SIDE_PX,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> PageImages:
    """Render the first ``max_pages`` pages of ``pdf`` as PNG images.

    ``scale`` is pixels per PDF point (1.5 = 108 dpi), lowered for any page whose long side
    would exceed ``max_long_side_px``.  Pages stop early when the next would take the
    PNGs past ``max_total_bytes``.  ``timeout_s`` is wall time for the whole document;
    ``memory_mb`` the worker's address-space limit.  Returns a :class:`PageImages` (a list
    of PNG ``bytes`` with ``page_count``).  Raises :class:`PdfRenderError`, or
    ``ValueError`` for nonsensical limits.
    """
    if not (max_pages >= 1 and max_long_side_px >= 1 and max_total_bytes >= 1 and memory_mb >= 64):
        raise ValueError("limits out of range")
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError("scale and timeout_s must be positive")
    if b"%PDF-" not in pdf[:1024]:  # no process for what cannot be a PDF
        raise PdfRenderError("not_a_pdf")
    argv = worker_argv(
        max_pages=max_pages, scale=scale, max_long_side_px=max_long_side_px,
        max_total_bytes=max_total_bytes, memory_mb=memory_mb, timeout_s=timeout_s,
    )
    proc = await _spawn(argv)
    feeding = asyncio.ensure_future(_feed(proc, pdf))
    try:
        images, page_count = await asyncio.wait_for(
            _collect(proc, max_total_bytes, max_long_side_px), timeout_s
        )
    except asyncio.TimeoutError:
        raise PdfRenderError("too_complex") from None
    finally:
        feeding.cancel()
        await _stop(proc)
    return PageImages(images, page_count)


async def worker_self_check(*, memory_mb: int = 512, timeout_s: float = 20.0) -> dict:
    """Start a worker as :func:`render_pdf_pages` would and return what it reports after
    confinement: ``env`` (variable names), ``limits`` (soft RLIMIT_* values) and
    ``network_dropped`` (in an empty network namespace).  For tests and start-up checks."""
    argv = worker_argv(
        max_pages=1, scale=1.0, max_long_side_px=1, max_total_bytes=1,
        memory_mb=memory_mb, timeout_s=timeout_s, self_check=True,
    )
    proc = await _spawn(argv)
    try:
        proc.stdin.close()
        data = await asyncio.wait_for(proc.stdout.read(), timeout_s)
    finally:
        await _stop(proc)
    return json.loads(data)


async def _spawn(argv: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=worker_env(),
        cwd="/",
        close_fds=True,
    )


async def _feed(proc: asyncio.subprocess.Process, pdf: bytes) -> None:
    try:
        proc.stdin.write(pdf)
        await proc.stdin.drain()
        proc.stdin.close()
    except OSError:  # BrokenPipeError, ConnectionResetError
        pass  # the worker stopped reading (it failed or was killed): its frames tell why


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Kill the worker if it still runs, and reap it."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    await proc.wait()


async def _collect(
    proc: asyncio.subprocess.Process, max_total_bytes: int, max_long_side_px: int
) -> tuple[list[bytes], int]:
    """Read the worker's frames: (PNG images, page count), or PdfRenderError."""
    stdout = proc.stdout
    images: list[bytes] = []
    total = 0
    try:
        while True:
            kind = await stdout.readexactly(1)
            if kind == b"P":
                (length,) = struct.unpack(">I", await stdout.readexactly(4))
                total += length
                if total > max_total_bytes:
                    raise PdfRenderError("failed")  # the worker enforces the cap itself
                png = await stdout.readexactly(length)
                _check_png(png, max_long_side_px)
                images.append(png)
            elif kind == b"E":
                (page_count,) = struct.unpack(">I", await stdout.readexactly(4))
                if page_count < len(images):
                    raise PdfRenderError("failed")
                return images, page_count
            elif kind == b"X":
                (length,) = struct.unpack(">B", await stdout.readexactly(1))
                reason = (await stdout.readexactly(length)).decode("ascii", "replace")
                raise PdfRenderError(reason)
            else:
                raise PdfRenderError("failed")
    except asyncio.IncompleteReadError:
        pass
    # the output ended without an end frame: the worker died; a limit, or a crash?
    returncode = await proc.wait()
    if returncode < 0 and -returncode in _LIMIT_SIGNALS:
        raise PdfRenderError("too_complex")
    raise PdfRenderError("failed")


def _check_png(png: bytes, max_long_side_px: int) -> None:
    """Raise PdfRenderError("failed") unless png is a PNG of only IHDR, IDAT and IEND chunks (with
    good CRCs) whose sides are within the cap: pixels and nothing else."""
    if not png.startswith(_PNG_SIGNATURE):
        raise PdfRenderError("failed")
    offset = len(_PNG_SIGNATURE)
    chunks = []
    while offset < len(png):
        if offset + 12 > len(png):
            raise PdfRenderError("failed")
        (length,) = struct.unpack_from(">I", png, offset)
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        end = offset + 12 + length
        if end > len(png) or kind not in _PNG_CHUNKS:
            raise PdfRenderError("failed")
        (crc,) = struct.unpack_from(">I", png, offset + 8 + length)
        if zlib.crc32(kind + body) != crc:
            raise PdfRenderError("failed")
        chunks.append((kind, body))
        offset = end
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise PdfRenderError("failed")
    width, height = struct.unpack_from(">II", chunks[0][1])
    if not (1 <= width <= max_long_side_px and 1 <= height <= max_long_side_px):
        raise PdfRenderError("failed")
