"""Evidence files: from a Telegram message to sealed blobs, streamed, never plaintext on disk."""

from __future__ import annotations

import asyncio
import contextlib
import base64
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from nazaha.bot.retry import BOT_API, RetryPolicy
from nazaha.flows.evidence_kinds import FILE_FIELDS
from nazaha.flows.report_flow import Album, Attach, EvidenceItem, StoredAlbum, looks_like_audio
from nazaha.storage.blobs import BlobInfo, BlobStore, BlobTooLarge
from nazaha.storage.reports import new_sealing_context
from nazaha.storage.scrub import SNIFF_BYTES, looks_like_image, scrub_image, sniff_image
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
    """The evidence kind (one of ``EVIDENCE_KINDS``) and file of a message, if it has one."""
    for kind in FILE_FIELDS:
        media = getattr(message, kind, None)
        if not media:
            continue
        if kind == "photo":
            largest = media[-1]
            return kind, FileRef(largest.file_id, largest.file_size, None, "image/jpeg")
        return kind, FileRef(
            media.file_id,
            media.file_size,
            getattr(media, "file_name", None),
            getattr(media, "mime_type", None),
        )
    return None


def caption_of(message: Message) -> str | None:
    """The caption the user wrote under a file, exactly as written, or ``None``."""
    return message.caption if message.caption and message.caption.strip() else None


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
        caption=caption_of(message),
        message_id=message.message_id,
    )


def album_of(messages: list[Message]) -> tuple[Album, list[Message]]:
    """The flow event for an album's messages and the messages carrying its files, in the
    order of ``Album.attaches``. The album's caption is its messages' captions joined."""
    files = [m for m in messages if file_of(m) is not None]
    captions: list[str] = []
    captioned: list[int] = []
    for m in messages:
        caption = caption_of(m)
        if caption is not None and caption not in captions:
            captions.append(caption)
            captioned.append(m.message_id)
    caption = "\n\n".join(captions) or None
    attaches = tuple(a for a in (attach_of(m) for m in files) if a is not None)
    # An edit of the caption maps to what it gave only if one message carries it.
    message_id = captioned[0] if len(captioned) == 1 else 0
    return Album(attaches, caption, message_id), files


async def fetch_album(
    intake: "EvidenceIntake",
    bot: Bot,
    messages: list[Message],
    context: Mapping[str, str] | None,
    caption: str | None,
) -> StoredAlbum:
    """Fetch the files of an album one after the other, all under one report id and key."""
    items: list[EvidenceItem] = []
    failures: list[str] = []
    current = dict(context) if context else new_context()
    for message in messages:
        try:
            item, current = await intake.fetch(bot, message, current, caption)
            items.append(item)
        except FetchError as exc:
            failures.append(exc.reason)
    return StoredAlbum(tuple(items), current, tuple(failures))


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
        self,
        bot: Bot,
        message: Message,
        context: Mapping[str, str] | None,
        caption: str | None = None,
    ) -> tuple[EvidenceItem, dict[str, str]]:
        """Download, seal and describe the file of ``message``.

        ``caption`` (an album's caption) replaces the message's own; it is kept in the
        item, to be sealed with the file's metadata. ``FetchError`` if it cannot be had.
        """
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
        if await self._is_image(kind, ref, data_key, report_id, item_id):
            has_clean, flagged = await self._clean_copy(
                data_key, report_id, item_id, lambda data: asyncio.to_thread(scrub_image, data)
            )
        elif looks_like_audio(kind, ref.mime_type, ref.file_name):
            has_clean, flagged = await self._clean_copy(
                data_key, report_id, item_id, reduce_voice_async
            )
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
            caption=caption or caption_of(message),
        )
        return item, context

    async def _is_image(
        self, kind: str, ref: FileRef, data_key: bytes, report_id: str, item_id: str
    ) -> bool:
        """Whether to make a metadata-free copy: photos, files labelled as images, and
        documents whose first bytes are an image's, whatever their name or claimed type."""
        if kind == "photo" or looks_like_image(ref.mime_type, ref.file_name):
            return True
        if kind != "document":
            return False
        head = b""
        stream = self.blobs.read_stream(data_key, report_id, item_id, "original")
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
        return sniff_image(head)

    async def _clean_copy(
        self,
        data_key: bytes,
        report_id: str,
        item_id: str,
        clean: Callable[[bytes], Awaitable[Any]],
    ) -> tuple[bool, str | None]:
        """Make the caseworkers' copy of a stored original with ``clean`` (metadata-free
        image, voice-reduced audio: a result with ``data`` or, when it cannot, ``flagged``)
        and seal it as the "clean" variant. Returns ``(has_clean_copy, flagged)``."""
        original = await self.blobs.read_bytes(data_key, report_id, item_id, "original")
        result = await clean(original)
        del original
        if result.data is None:
            return False, result.flagged
        await self.blobs.write_bytes(data_key, report_id, item_id, "clean", result.data)
        return True, None

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
