"""Evidence files: from a Telegram message to sealed blobs, streamed, never plaintext on disk."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Mapping

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from nazaha.bot.retry import BOT_API, RetryPolicy
from nazaha.flows.report_flow import Attach, EvidenceItem, looks_like_audio
from nazaha.storage.blobs import BlobInfo, BlobStore, BlobTooLarge
from nazaha.storage.reports import new_sealing_context
from nazaha.storage.scrub import looks_like_image, scrub_image
from nazaha.storage.voice import reduce_voice_async

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 64 * 1024


class FetchError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "too_big" | "failed"


@dataclass(frozen=True)
class FileRef:
    file_id: str
    size: int | None
    file_name: str | None
    mime_type: str | None


def file_of(message: Message) -> tuple[str, FileRef] | None:
    """The evidence kind and file of a message, if it carries one we accept."""
    if message.photo:
        largest = message.photo[-1]
        return "photo", FileRef(largest.file_id, largest.file_size, None, "image/jpeg")
    for kind in ("document", "video", "audio", "voice", "video_note"):
        media = getattr(message, kind, None)
        if media is not None:
            return kind, FileRef(
                media.file_id,
                media.file_size,
                getattr(media, "file_name", None),
                getattr(media, "mime_type", None),
            )
    return None


def content_kind(message: Message) -> str:
    """"location", "sticker", ...: the plain name of what a message carries."""
    kind = message.content_type
    return str(getattr(kind, "value", kind))


def attach_of(message: Message) -> Attach | None:
    found = file_of(message)
    if found is None:
        return None
    kind, ref = found
    return Attach(
        kind=kind,
        size=ref.size,
        file_name=ref.file_name,
        mime_type=ref.mime_type,
        forwarded=message.forward_origin is not None,
    )


def context_keys(context: Mapping[str, str]) -> tuple[str, bytes]:
    return context["report_id"], base64.b64decode(context["data_key"])


def new_context() -> dict[str, str]:
    report_id, data_key = new_sealing_context()
    return {"report_id": report_id, "data_key": base64.b64encode(data_key).decode()}


class EvidenceIntake:
    """Downloads a file as a stream into the blob store, sealed under the report's key.

    Images also get a metadata-free copy for caseworkers, and voice notes and audio a
    voice-reduced copy (storage/voice.py); the original is kept as sent.
    """

    def __init__(self, blobs: BlobStore, max_file_bytes: int, policy: RetryPolicy = BOT_API) -> None:
        self.blobs = blobs
        self.max_file_bytes = max_file_bytes
        self.policy = policy
        # Report ids of drafts that received a file, with when (monotonic seconds): the
        # orphan purge keeps their blobs while the draft may still be submitted. Memory
        # only, like the drafts themselves.
        self._drafts: dict[str, float] = {}

    def recent_drafts(self, max_age_seconds: float) -> set[str]:
        """Report ids of drafts that received a file within ``max_age_seconds``."""
        cutoff = time.monotonic() - max_age_seconds
        for report_id in [r for r, seen in self._drafts.items() if seen < cutoff]:
            del self._drafts[report_id]
        return set(self._drafts)

    async def fetch(
        self, bot: Bot, message: Message, context: Mapping[str, str] | None
    ) -> tuple[EvidenceItem, dict[str, str]]:
        found = file_of(message)
        if found is None:
            raise FetchError("failed")
        kind, ref = found
        context = dict(context) if context else new_context()
        report_id, data_key = context_keys(context)
        self._drafts[report_id] = time.monotonic()
        item_id = secrets.token_hex(16)
        got = await self.policy.run(lambda: bot.get_file(ref.file_id), what="GetFile")
        if not got.ok:
            # "file is too big": Telegram serves bots at most 20 MB.
            too_big = isinstance(got.error, TelegramBadRequest) and "too big" in got.error.message.lower()
            raise FetchError("too_big" if too_big else "failed")
        file = got.value
        if file is None or file.file_path is None:
            raise FetchError("failed")
        # The URL holds the bot token: it is built here and never logged.
        url = bot.session.api.file_url(bot.token, file.file_path)

        async def download() -> BlobInfo:
            # A fresh stream each attempt; a failed attempt leaves no blob behind.
            stream = bot.session.stream_content(
                url=url, chunk_size=DOWNLOAD_CHUNK, raise_for_status=True, timeout=120
            )
            return await self.blobs.write_stream(
                data_key, report_id, item_id, "original", stream, max_bytes=self.max_file_bytes
            )

        try:
            downloaded = await self.policy.run(download, what="file download")
        except BlobTooLarge:
            raise FetchError("too_big") from None
        except Exception:
            log.warning("evidence download failed")
            self.blobs.delete(report_id, item_id)
            raise FetchError("failed") from None
        if not downloaded.ok or downloaded.value is None:
            log.warning("evidence download failed (%s)", type(downloaded.error).__name__)
            self.blobs.delete(report_id, item_id)
            raise FetchError("failed")
        info = downloaded.value

        has_clean, flagged = False, None
        if kind == "photo" or looks_like_image(ref.mime_type, ref.file_name):
            original = await self.blobs.read_bytes(data_key, report_id, item_id, "original")
            result = await asyncio.to_thread(scrub_image, original)
            del original
            if result.data is not None:
                await self.blobs.write_bytes(data_key, report_id, item_id, "clean", result.data)
                has_clean = True
            else:
                flagged = result.flagged
        elif looks_like_audio(kind, ref.mime_type, ref.file_name):
            original = await self.blobs.read_bytes(data_key, report_id, item_id, "original")
            reduced = await reduce_voice_async(original)
            del original
            if reduced.data is not None:
                await self.blobs.write_bytes(data_key, report_id, item_id, "clean", reduced.data)
                has_clean = True
            else:
                flagged = reduced.flagged
        origin = message.forward_origin.model_dump_json() if message.forward_origin else None
        item = EvidenceItem(
            id=item_id,
            kind=kind,
            size=info.size,
            file_name=ref.file_name,
            mime_type=ref.mime_type,
            has_clean_copy=has_clean,
            flagged=flagged,
            forwarded=origin is not None,
            forward_origin=origin,
            sha256=info.sha256,
        )
        return item, context

    def discard(self, context: Mapping[str, str], item_id: str | None = None) -> None:
        """Delete one blob, or every blob of an abandoned draft."""
        if not context:
            return
        report_id, _ = context_keys(context)
        if item_id is None:
            self._drafts.pop(report_id, None)
            self.blobs.delete_report(report_id)
        else:
            self.blobs.delete(report_id, item_id)
