"""The revision of a broadcast: one fingerprint of everything the sender will send, so that an
approval (or a rejection) applies to exactly the content the administrator reviewed.

The broadcast page puts the revision in its approve and reject forms; ``approve``/``reject``
(:mod:`nazaha.awareness.broadcasts`) refuse when the posted one is no longer the current one
(the author took the broadcast back, changed it and submitted it again while the page was
open). Identical content gives the identical revision, whoever saved it and when.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["RevisionSurvey", "revision"]

# Bump when the document below changes shape: an old revision then never matches a new one.
_FORMAT = 1


@dataclass(frozen=True)
class RevisionSurvey:
    """The survey a broadcast carries: its id and, per language, its question and options
    (already split, in order: ``nazaha.awareness.surveys.split_options``)."""

    id: int
    texts: Mapping[str, tuple[str, tuple[str, ...]]]


def _utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite keeps no offset: stored values are UTC
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat()


def revision(
    *,
    bodies: Mapping[str, str],
    image: bytes | None,
    survey: RevisionSurvey | None,
    topics: Iterable[str],
    languages: Iterable[str],
    to_channel: bool,
    send_at: dt.datetime | None,
) -> str:
    """SHA-256 (64 lower-case hex digits) over what will be sent: every language's text
    (``bodies``: language -> markup), the SHA-256 of the image's bytes (None: no image), the
    survey (None: none), the audience (``topics``: a set, order ignored; ``languages`` in
    the broadcast's order, which picks the channel post's language), whether it is also
    posted to the channel, and ``send_at`` (an aware datetime, or naive UTC; None: as soon
    as approved). The broadcast's internal name is not part of it: it is never sent.
    Pure: the same arguments always give the same string."""
    document = {
        "format": _FORMAT,
        "bodies": sorted([language, body] for language, body in bodies.items()),
        "image": hashlib.sha256(image).hexdigest() if image is not None else None,
        "survey": None if survey is None else {
            "id": survey.id,
            "texts": sorted([language, question, list(options)]
                            for language, (question, options) in survey.texts.items()),
        },
        "topics": sorted(set(topics)),
        "languages": list(languages),
        "to_channel": bool(to_channel),
        "send_at": _utc(send_at),
    }
    encoded = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
