"""The kinds of file accepted as evidence: the one list the flow, the handlers, storage and
the screens all use.

A kind is the name of the Telegram ``Message`` field that carries the file ("photo",
"document", "voice", ...). ``FILE_FIELDS`` is the order in which a message is searched:
Telegram sets both ``animation`` and ``document`` on a GIF, so ``animation`` comes first.
Stored in the ``evidence.kind`` column (at most 16 characters).
"""

from __future__ import annotations

from pathlib import PurePosixPath

EVIDENCE_KINDS: tuple[str, ...] = (
    "photo",
    "document",
    "voice",
    "audio",
    "video",
    "video_note",
    "animation",
)
# Message fields searched for a file, in order (``photo`` is a list of sizes, largest last).
FILE_FIELDS: tuple[str, ...] = (
    "photo",
    "animation",
    "video",
    "video_note",
    "audio",
    "voice",
    "document",
)
assert set(FILE_FIELDS) == set(EVIDENCE_KINDS)
assert all(len(kind) <= 16 for kind in EVIDENCE_KINDS)

__all__ = ["EVIDENCE_KINDS", "FILE_FIELDS"]


def labelled_as(
    mime_type: str | None, file_name: str | None, mime_prefix: str, extensions: frozenset[str]
) -> bool:
    """Whether the sender's labels say a file is of a family: its MIME type starts with
    ``mime_prefix`` (e.g. ``"image/"``) or its name ends with one of ``extensions`` (lower
    case, no dot). Both labels are the sender's choice: callers treat a match as a reason to
    try, never as proof."""
    if mime_type and mime_type.split(";", 1)[0].strip().lower().startswith(mime_prefix):
        return True
    if file_name:
        suffix = PurePosixPath(file_name.replace("\\", "/")).suffix.lower().lstrip(".")
        return suffix in extensions
    return False
