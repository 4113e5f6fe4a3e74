"""Export of one case for referral to an authority: a ZIP, built in memory, holding

* ``case.html``: a readable, self-contained document (no script, no external resource, every
  value escaped by the template) with the answers, the thread with dates and directions, and
  the list of files, in the caseworker's language;
* ``evidence/``: the metadata-free copies (PDFs as their page images), and the originals in
  ``evidence/originals/`` only when chosen.

Contact details and originals are left out unless chosen (:class:`ExportChoices`). Before
exporting, the caseworker may edit every text that goes into the document (answers,
messages, file names, captions): :class:`Redactions` replaces the stored text by theirs.
The total size of the files is capped (:data:`MAX_EXPORT_BYTES`, :class:`ExportTooLarge`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence

from nazaha.services.evidence_files import CaseFiles, download_name, is_pdf, safe_extension
from nazaha.storage.cases import EvidenceRecord, ThreadMessage
from nazaha.storage.pdf_pages import PdfRenderError

__all__ = [
    "ANSWER_ORDER",
    "CONTACT_FIELDS",
    "MAX_EXPORT_BYTES",
    "Answer",
    "ExportChoices",
    "ExportTooLarge",
    "ExportedFile",
    "ExportedMessage",
    "Redactions",
    "ReferralDocument",
    "build_referral_zip",
    "content_version",
    "order_fields",
    "plan_document",
]

MAX_EXPORT_BYTES = 200 * 1024 * 1024  # files in the ZIP, before compression
CONTACT_FIELDS = frozenset({"contact", "contact_name", "contact_phone"})
# The order of the reporter's form (nazaha.flows.report_flow); unknown fields follow, sorted.
ANSWER_ORDER = ("category", "sector", "service", "governorate", "when", "description",
                "contact", "contact_name", "contact_phone")
DOCUMENT_NAME = "case.html"


class ExportTooLarge(Exception):
    """The chosen files exceed the export limit; nothing was exported."""


@dataclasses.dataclass(frozen=True)
class ExportChoices:
    answers: bool = True
    thread: bool = True
    evidence: bool = True  # the metadata-free copies
    contact: bool = False  # the reporter's contact details (name, phone, their choice)
    originals: bool = False  # the files as the reporter sent them


@dataclasses.dataclass(frozen=True)
class Answer:
    field: str
    label: str  # in the caseworker's language
    text: str  # a choice's label, or what the reporter wrote

    @property
    def contact(self) -> bool:
        return self.field in CONTACT_FIELDS


@dataclasses.dataclass(frozen=True)
class Redactions:
    """The caseworker's version of each text, by key: ``answers`` by field name,
    ``messages`` by message id, ``file_names`` and ``captions`` by evidence id. A key that is
    absent keeps the stored text; an empty text removes it."""

    answers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    messages: Mapping[str, str] = dataclasses.field(default_factory=dict)
    file_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    captions: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ExportedMessage:
    direction: str  # "reporter" or "staff"
    created_on: dt.date
    text: str  # "" when removed by the caseworker


@dataclasses.dataclass
class ExportedFile:
    """One evidence item as the document lists it; ``paths`` are its files in the ZIP."""

    number: int
    kind: str
    size_bytes: int
    file_name: str | None
    caption: str | None
    sha256: str | None = None  # of the original, only when originals are exported
    paths: list[str] = dataclasses.field(default_factory=list)
    clean: str = "none"  # "copy", "pages", "none" (no metadata-free copy), "not_chosen"
    pdf_error: str | None = None
    page_count: int = 0
    page_images: int = 0
    original: bool = False


@dataclasses.dataclass
class ReferralDocument:
    designation: str
    kind: str
    created_on: dt.date
    exported_at: dt.datetime
    choices: ExportChoices
    answers: list[Answer]
    messages: list[ExportedMessage]
    files: list[ExportedFile]


# Sealed with the answers but not an answer: the language the reporter wrote in.
NOT_ANSWERS = frozenset({"language"})


def order_fields(names: Iterable[str]) -> list[str]:
    """Field names in the form's order, unknown ones after, sorted; not the reporter's
    language (:data:`NOT_ANSWERS`)."""
    names = set(names) - NOT_ANSWERS
    return [n for n in ANSWER_ORDER if n in names] + sorted(names - set(ANSWER_ORDER))


def content_version(answers: Iterable[str], messages: Iterable[str], evidence: Iterable[str]) -> str:
    """A short fingerprint of what a case holds (field names, message and file ids), so
    that a redaction form made before a new message arrived is not exported as if complete."""
    digest = hashlib.sha256()
    for part in (sorted(answers), list(messages), list(evidence)):
        digest.update("\x1f".join(part).encode() + b"\x1e")
    return digest.hexdigest()[:32]


def _redacted(texts: Mapping[str, str], key: str, stored: str | None) -> str | None:
    if key not in texts:
        return stored
    return texts[key].replace("\r\n", "\n")


def plan_document(
    *,
    designation: str,
    kind: str,
    created_on: dt.date,
    exported_at: dt.datetime,
    answers: Sequence[Answer],
    thread: Sequence[ThreadMessage],
    evidence: Sequence[EvidenceRecord],
    choices: ExportChoices,
    redactions: Redactions,
) -> ReferralDocument:
    """What the document will say, with the caseworker's edits applied and contact details
    left out unless chosen (the ZIP's files are added by :func:`build_referral_zip`)."""
    kept = []
    if choices.answers:
        for answer in answers:
            if answer.contact and not choices.contact:
                continue
            text = _redacted(redactions.answers, answer.field, answer.text) or ""
            kept.append(dataclasses.replace(answer, text=text))
    messages = []
    if choices.thread:
        for message in thread:
            text = _redacted(redactions.messages, message.id, message.body) or ""
            messages.append(ExportedMessage(message.direction, message.created_on, text))
    files = [
        ExportedFile(
            number=number,
            kind=record.kind,
            size_bytes=record.size_bytes,
            file_name=_redacted(redactions.file_names, record.id, record.file_name) or None,
            caption=_redacted(redactions.captions, record.id, record.caption) or None,
        )
        for number, record in enumerate(evidence, start=1)
    ]
    return ReferralDocument(designation, kind, created_on, exported_at, choices, kept, messages, files)


class _Zip:
    """A ZIP in memory that refuses to grow past ``max_bytes`` of content."""

    _STORED = (".jpg", ".png", ".gif", ".webp", ".ogg", ".mp3", ".mp4", ".m4a", ".mov",
               ".zip", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".heic", ".heif", ".avif")

    def __init__(self, max_bytes: int, when: dt.datetime) -> None:
        self.buffer = io.BytesIO()
        self.archive = zipfile.ZipFile(self.buffer, "w")
        self.max_bytes = max_bytes
        self.total = 0
        self.date_time = when.timetuple()[:6]

    async def add(self, path: str, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise ExportTooLarge()
        info = zipfile.ZipInfo(path, date_time=self.date_time)
        info.external_attr = 0o600 << 16
        info.compress_type = zipfile.ZIP_STORED if path.endswith(self._STORED) else zipfile.ZIP_DEFLATED
        await asyncio.to_thread(self.archive.writestr, info, data)

    def close(self) -> bytes:
        self.archive.close()
        return self.buffer.getvalue()


async def build_referral_zip(
    document: ReferralDocument,
    evidence: Sequence[EvidenceRecord],
    files: CaseFiles,
    render: Callable[[ReferralDocument], str],
    *,
    max_bytes: int | None = None,
) -> bytes:
    """The ZIP (bytes): the chosen files under ``evidence/``, then ``case.html`` made by
    ``render(document)`` once the files' paths are known (``max_bytes``: default
    :data:`MAX_EXPORT_BYTES`). Raises :class:`ExportTooLarge`
    (checked on the stored sizes first, then on the bytes actually read) and the blob
    store's errors."""
    max_bytes = MAX_EXPORT_BYTES if max_bytes is None else max_bytes
    choices = document.choices
    estimate = sum(
        r.size_bytes * (int(choices.evidence and r.has_clean_copy) + int(choices.originals))
        for r in evidence
    )
    if estimate > max_bytes:
        raise ExportTooLarge()
    archive = _Zip(max_bytes, document.exported_at)
    name = document.designation
    for entry, record in zip(document.files, evidence, strict=True):
        if choices.evidence:
            await _add_clean(archive, files, name, entry, record)
        else:
            entry.clean = "not_chosen"
        if choices.originals:
            data = await files.read(record, "original")
            extension = safe_extension(record.mime_type, data[:1024], record.kind)
            path = "evidence/originals/" + download_name(name, entry.number, extension, suffix="original")
            await archive.add(path, data)
            del data
            entry.paths.append(path)
            entry.original = True
            entry.sha256 = record.sha256
    await archive.add(DOCUMENT_NAME, render(document).encode("utf-8"))
    return archive.close()


async def _add_clean(archive: _Zip, files: CaseFiles, name: str, entry: ExportedFile, record: EvidenceRecord) -> None:
    if record.has_clean_copy:
        data = await files.read(record, "clean")
        path = "evidence/" + download_name(name, entry.number, safe_extension(None, data[:1024]))
        await archive.add(path, data)
        entry.paths.append(path)
        entry.clean = "copy"
        return
    if not is_pdf(await files.head(record, "original")):
        entry.clean = "none"
        return
    try:
        pages = await files.pdf_pages(record)
    except PdfRenderError as exc:
        entry.clean, entry.pdf_error = "none", exc.reason
        return
    for page, png in enumerate(pages, start=1):
        path = "evidence/" + download_name(name, entry.number, ".png", suffix=f"page-{page}")
        await archive.add(path, png)
        entry.paths.append(path)
    entry.clean, entry.page_count, entry.page_images = "pages", pages.page_count, len(pages)
