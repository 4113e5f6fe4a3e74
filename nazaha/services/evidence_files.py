"""A case's evidence files as the console serves them: what each file is (by its bytes, not
by the reporter's labels), a safe download name, and PDF page images cached in memory.

* A file's type comes from its first bytes (:func:`sniff`); the reporter's MIME type only
  chooses among types the bytes agree with (:func:`safe_extension`). Download names are
  built from the designation, the file's number and an extension from an allow-list
  (:func:`download_name`): the reporter's file name never reaches a header.
* The clean copy is what the bot made (a re-encoded JPEG or PNG image, or a voice-reduced
  Ogg/Opus recording); only a clean image is ever shown inline (:attr:`EvidenceView.clean_image_type`).
* PDFs (by their bytes) are shown as page images rendered in a confined subprocess
  (:mod:`nazaha.storage.pdf_pages`); :class:`PdfPageCache` keeps them in this process's
  memory, per console session, for a few minutes at most. Nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import EvidenceRecord
from nazaha.storage.pdf_pages import PageImages, PdfRenderError, render_pdf_pages
from nazaha.storage.reports import UnlockedCase

__all__ = [
    "HEAD_BYTES",
    "CaseFiles",
    "EvidenceView",
    "PdfPageCache",
    "content_disposition",
    "download_name",
    "inline_image_type",
    "is_pdf",
    "safe_extension",
    "sniff",
]

HEAD_BYTES = 1024  # what sniffing reads (a PDF header may follow up to 1 KiB of junk)


# --------------------------------------------------------------------------- file types


def sniff(head: bytes) -> str | None:
    """The family of a file from its first bytes: ``"pdf"``, ``"jpeg"``, ``"png"``,
    ``"gif"``, ``"webp"``, ``"tiff"``, ``"ogg"``, ``"mp3"``, ``"wav"``, ``"isobmff"`` (MP4,
    MOV, M4A, HEIF), ``"zip"`` (also DOCX, XLSX, ODT...), ``"ole"`` (old Office files), or
    ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "isobmff"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if b"%PDF-" in head[:HEAD_BYTES]:  # last: readers accept junk before the header
        return "pdf"
    return None


def is_pdf(head: bytes) -> bool:
    return sniff(head) == "pdf"


# Claimed MIME type -> (extension, family its bytes must be; None: no signature to check).
_ALLOWED: dict[str, tuple[str, str | None]] = {
    "application/pdf": (".pdf", "pdf"),
    "image/jpeg": (".jpg", "jpeg"),
    "image/png": (".png", "png"),
    "image/gif": (".gif", "gif"),
    "image/webp": (".webp", "webp"),
    "image/tiff": (".tif", "tiff"),
    "image/heic": (".heic", "isobmff"),
    "image/heif": (".heif", "isobmff"),
    "image/avif": (".avif", "isobmff"),
    "audio/ogg": (".ogg", "ogg"),
    "audio/opus": (".ogg", "ogg"),
    "audio/mpeg": (".mp3", "mp3"),
    "audio/mp4": (".m4a", "isobmff"),
    "audio/x-m4a": (".m4a", "isobmff"),
    "audio/wav": (".wav", "wav"),
    "audio/x-wav": (".wav", "wav"),
    "video/mp4": (".mp4", "isobmff"),
    "video/quicktime": (".mov", "isobmff"),
    "text/plain": (".txt", None),
    "application/zip": (".zip", "zip"),
    "application/msword": (".doc", "ole"),
    "application/vnd.ms-excel": (".xls", "ole"),
    "application/vnd.ms-powerpoint": (".ppt", "ole"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx", "zip"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx", "zip"),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (".pptx", "zip"),
    "application/vnd.oasis.opendocument.text": (".odt", "zip"),
    "application/vnd.oasis.opendocument.spreadsheet": (".ods", "zip"),
}
# A family recognised by its bytes alone, when the claimed type is unknown or disagrees.
_BY_FAMILY = {
    "pdf": ".pdf", "jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp",
    "tiff": ".tif", "ogg": ".ogg", "mp3": ".mp3", "wav": ".wav", "zip": ".zip",
}
_BY_KIND = {"photo": "image/jpeg", "voice": "audio/ogg", "video_note": "video/mp4"}


def safe_extension(mime_type: str | None, head: bytes, kind: str | None = None) -> str:
    """An extension from the allow-list for a file whose first bytes are ``head``.

    The claimed ``mime_type`` (the reporter's label; for Telegram photos, voice notes and
    video messages, which carry none, the one Telegram always uses for ``kind``) is taken
    only if the bytes agree; otherwise the bytes' family decides; otherwise ``".bin"``.
    """
    claimed = (mime_type or _BY_KIND.get(kind or "", "")).split(";", 1)[0].strip().lower()
    family = sniff(head)
    if claimed in _ALLOWED:
        extension, needs = _ALLOWED[claimed]
        if needs is None and family is None or needs is not None and needs == family:
            return extension
    return _BY_FAMILY.get(family or "", ".bin")


def inline_image_type(head: bytes) -> str | None:
    """``"image/jpeg"`` or ``"image/png"`` for our own re-encoded images; else ``None``."""
    return {"jpeg": "image/jpeg", "png": "image/png"}.get(sniff(head) or "")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DESIGNATION = re.compile(r"[A-Z0-9-]{1,32}")


def download_name(designation: str, number: int, extension: str, *, suffix: str = "") -> str:
    """``R-7KQ2MX-3.jpg`` (or ``R-7KQ2MX-3-original.pdf`` with ``suffix="original"``):
    ASCII only, nothing from the reporter."""
    stem = designation if _DESIGNATION.fullmatch(designation or "") else "case"
    name = f"{stem}-{int(number)}" + (f"-{suffix}" if suffix else "") + extension
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError("unsafe download name")
    return name


def content_disposition(name: str, *, inline: bool = False) -> str:
    """``attachment; filename="…"; filename*=UTF-8''…`` for a name of :func:`download_name`."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError("unsafe download name")
    return f"{'inline' if inline else 'attachment'}; filename=\"{name}\"; filename*=UTF-8''{quote(name, safe='')}"


# --------------------------------------------------------------------------- PDF pages cache


@dataclasses.dataclass
class _Entry:
    task: asyncio.Task
    created: float
    size: int = 0


class PdfPageCache:
    """Rendered PDF pages in memory, per owner (a console session token), for ``ttl_s``
    seconds at most and ``max_bytes`` in all (oldest dropped first).

    Requests for the same document share one render (a page's ``<img>`` tags load in
    parallel); at most ``concurrency`` documents render at once. A :class:`PdfRenderError`
    is remembered like pages (so a broken file is not rendered again for every image);
    any other error is not.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 300.0,
        max_bytes: int = 192 * 1024 * 1024,
        concurrency: int = 2,
        clock: Callable[[], float] = time.monotonic,
        render: Callable[[bytes], Awaitable[PageImages]] = render_pdf_pages,
    ) -> None:
        self._ttl = ttl_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._render = render
        self._slots = asyncio.Semaphore(concurrency)
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def pages(
        self, owner: str, report_id: str, file_id: str, load: Callable[[], Awaitable[bytes]]
    ) -> PageImages:
        """The page images of a document (``load`` gives its bytes if it must be rendered).
        Raises :class:`PdfRenderError`, or whatever ``load`` raised."""
        self.sweep()
        key = (owner, report_id, file_id)
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(asyncio.ensure_future(self._make(load)), self._clock())
            self._entries[key] = entry
        try:
            pages = await asyncio.shield(entry.task)
        except PdfRenderError:
            raise
        except BaseException:
            if entry.task.done() and self._entries.get(key) is entry:
                del self._entries[key]
            raise
        if not entry.size:
            entry.size = sum(len(p) for p in pages) or 1
            self._trim()
        return pages

    async def _make(self, load: Callable[[], Awaitable[bytes]]) -> PageImages:
        async with self._slots:
            pdf = await load()
            try:
                return await self._render(pdf)
            finally:
                del pdf

    def sweep(self) -> None:
        """Drop entries older than the time to live."""
        cutoff = self._clock() - self._ttl
        for key in [k for k, e in self._entries.items() if e.created <= cutoff]:
            self._drop(key)

    def drop_owner(self, owner: str) -> None:
        """Drop an owner's entries (call at logout)."""
        for key in [k for k in self._entries if k[0] == owner]:
            self._drop(key)

    def _drop(self, key: tuple[str, str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and not entry.task.done():
            entry.task.add_done_callback(_consume)

    def _trim(self) -> None:
        total = sum(e.size for e in self._entries.values())
        for key, entry in sorted(self._entries.items(), key=lambda item: item[1].created):
            if total <= self._max_bytes:
                break
            if entry.size:
                total -= entry.size
                self._drop(key)


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning for a dropped render


# --------------------------------------------------------------------------- a case's files


@dataclasses.dataclass(frozen=True)
class EvidenceView:
    """One file of a case as listed to a caseworker (``number`` counts from 1)."""

    number: int
    record: EvidenceRecord
    clean_image_type: str | None  # "image/jpeg"/"image/png" when the clean copy is our image
    pdf: bool  # the original is a PDF by its bytes
    page_images: int = 0  # rendered pages available
    page_count: int = 0  # pages in the whole document
    pdf_error: str | None = None  # a PdfRenderError reason

    @property
    def id(self) -> str:
        return self.record.id


class CaseFiles:
    """The evidence blobs of one unlocked case; every read verifies what it returns."""

    def __init__(self, blobs: BlobStore, case: UnlockedCase, cache: PdfPageCache, owner: str) -> None:
        self._blobs = blobs
        self._case = case
        self._cache = cache
        self._owner = owner

    async def head(self, record: EvidenceRecord, variant: str) -> bytes:
        """The first :data:`HEAD_BYTES` (or fewer) bytes of a variant, from its first
        verified chunk."""
        stream = self._blobs.read_stream(self._case.epoch_key(record.key_epoch), self._case.report_id, record.id, variant)
        head = b""
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                head += chunk
                if len(head) >= HEAD_BYTES:
                    break
        return head[:HEAD_BYTES]

    async def read(self, record: EvidenceRecord, variant: str) -> bytes:
        """The whole variant, returned only once every chunk verified."""
        return await self._blobs.read_bytes(self._case.epoch_key(record.key_epoch), self._case.report_id, record.id, variant)

    async def pdf_pages(self, record: EvidenceRecord) -> PageImages:
        """Page images of the original (``PdfRenderError``), from the cache when there."""
        return await self._cache.pages(
            self._owner, self._case.report_id, record.id, lambda: self.read(record, "original")
        )

    async def describe(self, records: Sequence[EvidenceRecord], *, render: bool = True) -> list[EvidenceView]:
        """Views of ``records`` in order; PDFs rendered (or taken from the cache) when
        ``render``, so that the list knows how many pages each has."""
        views = []
        for number, record in enumerate(records, start=1):
            clean_type = None
            if record.has_clean_copy:
                clean_type = inline_image_type(await self.head(record, "clean"))
            pdf = not record.has_clean_copy and is_pdf(await self.head(record, "original"))
            views.append(EvidenceView(number, record, clean_type, pdf))
        if render:
            views = list(await asyncio.gather(*(self._with_pages(v) for v in views)))
        return views

    async def _with_pages(self, view: EvidenceView) -> EvidenceView:
        if not view.pdf:
            return view
        try:
            pages = await self.pdf_pages(view.record)
        except PdfRenderError as exc:
            return dataclasses.replace(view, pdf_error=exc.reason)
        return dataclasses.replace(view, page_images=len(pages), page_count=pages.page_count)
