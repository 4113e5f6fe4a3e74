"""The short-lived process that turns one PDF into PNG page images (see pdf_pages.py).

Run only by :mod:`nazaha.storage.pdf_pages`, as ``python -I pdf_worker.py LIMITS...`` with an
empty environment.  It imports nothing from ``nazaha`` (``-I`` keeps the script's folder off
``sys.path``): only the standard library, pypdfium2 and Pillow.

Order matters: the limits are set and the network is dropped first, then the libraries are
imported, and only then is the PDF read from standard input.  Nothing it reads can run
before the limits are in force.

Arguments (all numbers): ``max_pages scale max_long_side_px max_total_bytes memory_mb
cpu_seconds``, or ``--self-check`` followed by the same numbers, which sets the limits and
reports them (and the environment's variable names) as JSON instead of reading a PDF.

Standard output (the only channel back), a sequence of frames, integers big-endian:

    b"P" u32 length, PNG bytes      one page image, in page order
    b"E" u32 page_count             the end: the document has page_count pages in all
    b"X" u8 length, ASCII reason    failure (one of REASONS); nothing follows

Standard error is discarded by the parent; this process writes no file (RLIMIT_FSIZE 0).
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import struct
import sys

REASONS = ("not_a_pdf", "encrypted", "too_complex", "failed")
NOFILE = 16  # descriptors: stdio, the output pipe, imports and PDFium's font scan
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def apply_limits(memory_mb: int, cpu_seconds: int) -> None:
    """Set this process's resource limits (soft = hard, so they cannot be raised again)."""
    for limit, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_NOFILE, NOFILE),
    ):
        resource.setrlimit(limit, (value, value))


def drop_network() -> bool:
    """Move into a new, empty network namespace; True if that worked.

    Tried as is (works with CAP_SYS_ADMIN), then inside a new user namespace (works for an
    ordinary user where the kernel allows unprivileged user namespaces).  Both need a
    single-threaded process, which this is at start-up.  Where neither is allowed the
    worker goes on: it opens no socket itself and PDFium has no network code.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            return True
    return False


NOBODY = 65534


def drop_privileges() -> bool:
    """Started as root: become ``nobody`` (no group), so that a PDF exploit cannot read the
    console's files (its secret, its store: mode 0600, another owner). Imports happen after
    this. Returns True if the worker now runs as nobody."""
    if os.getuid() != 0:
        return False
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError:
        return False
    return os.getuid() == NOBODY


def _private_stdout() -> int:
    """A private copy of standard output for the frames; fd 1 then points at stderr, so
    a stray print (ours or a library's) cannot corrupt the framing."""
    out = os.dup(1)
    os.dup2(2, 1)
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fail(out: int, reason: str) -> None:
    code = reason.encode("ascii")
    _write_all(out, b"X" + struct.pack(">B", len(code)) + code)


def _page_png(page, scale: float, max_long_side_px: int) -> bytes:
    """One page as a PNG that holds pixels only, its long side at most max_long_side_px."""
    import io

    from PIL import Image

    width, height = page.get_size()  # PDF points (1/72 in)
    long_side = max(width, height)
    if not (math.isfinite(long_side) and long_side > 0):
        raise ValueError("page has no size")
    # a hair under the cap so rounding up (math.ceil in render) cannot pass it
    scale = min(scale, (max_long_side_px - 0.01) / long_side)
    bitmap = page.render(scale=scale, may_draw_forms=False)
    try:
        rendered = bitmap.to_pil().convert("RGB")
    finally:
        bitmap.close()
    # a brand-new image from the raw pixels: no info, no profile, nothing but pixels
    clean = Image.frombytes("RGB", rendered.size, rendered.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render(out: int, pdf: bytes, max_pages: int, scale: float, max_long_side_px: int,
           max_total_bytes: int) -> None:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    if b"%PDF-" not in pdf[:1024]:
        return _fail(out, "not_a_pdf")
    try:
        document = pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError as error:
        locked = (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY)
        return _fail(out, "encrypted" if error.err_code in locked else "failed")
    page_count = len(document)
    total = 0
    for index in range(min(page_count, max_pages)):
        page = document[index]
        try:
            png = _page_png(page, scale, max_long_side_px)
        finally:
            page.close()
        if total + len(png) > max_total_bytes:
            if index == 0:
                return _fail(out, "too_complex")
            break  # the pages that fit; page_count tells the caller there are more
        total += len(png)
        _write_all(out, b"P" + struct.pack(">I", len(png)) + png)
    _write_all(out, b"E" + struct.pack(">I", page_count))


def self_check(out: int, network_dropped: bool) -> None:
    import json

    limits = {
        name: resource.getrlimit(getattr(resource, name))[0]
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_NOFILE", "RLIMIT_FSIZE")
    }
    started_as_root = os.getuid() == 0
    report = {
        "env": sorted(os.environ), "limits": limits, "network_dropped": network_dropped,
        "started_as_root": started_as_root, "runs_as_nobody": drop_privileges(),
    }
    _write_all(out, json.dumps(report).encode())


def main(argv: list[str]) -> int:
    checking = argv[:1] == ["--self-check"]
    numbers = argv[1:] if checking else argv
    max_pages, scale, max_long_side_px, max_total_bytes, memory_mb, cpu_seconds = (
        int(numbers[0]), float(numbers[1]), int(numbers[2]), int(numbers[3]),
        int(numbers[4]), int(numbers[5]),
    )
    network_dropped = drop_network()
    apply_limits(memory_mb, cpu_seconds)
    out = _private_stdout()
    if checking:
        self_check(out, network_dropped)
        return 0
    try:
        import pypdfium2  # noqa: F401  (loaded under the limits, before any input)
        from PIL import Image, PngImagePlugin  # noqa: F401  (PNG's encoder loads lazily otherwise)

        Image.init()
        drop_privileges()  # after the imports (the interpreter may live in root's home)
        pdf = sys.stdin.buffer.read()
        render(out, pdf, max_pages, scale, max_long_side_px, max_total_bytes)
    except MemoryError:
        _fail(out, "too_complex")
    except Exception:  # noqa: BLE001 - the parent gets a reason code, never a message
        _fail(out, "failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
