"""The revision of a broadcast: one fingerprint of everything the sender will send, so that an
approval (or a rejection) applies to exactly the content the administrator reviewed.

The broadcast page puts the revision in its approve and reject forms; ``approve``/``reject``
(:mod:`nazaha.awareness.broadcasts`) refuse when the posted one is no longer the current one
(the author took the broadcast back, changed it and submitted it again while the page was
open). Identical content gives the identical revision, whoever saved it and when.

The forms also carry the :func:`parts` of what the page showed (:func:`encode_parts`), so that
a refusal can say *what* changed (:func:`changed`): a language's text, its links (the
addresses included: a link's address can change while its words stay), the image, the
survey, the audience, the time. They only word the refusal; the revision alone decides it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nazaha.awareness.markup import links_of, parse_markup
from nazaha.storage.awareness_models import LANGUAGES

__all__ = ["PART_NAME", "RevisionSurvey", "changed", "encode_parts", "parts", "revision"]

# The name of a part: text_<language>, links_<language>, image, survey, audience, time.
PART_NAME = re.compile(r"(?:text|links)_[a-z]{2}|image|survey|audience|time")
_ENCODED_PART = re.compile(rf"({PART_NAME.pattern}):([0-9a-f]{{16}})")

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


def _short(value: object) -> str:
    encoded = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:16]


def parts(
    *,
    bodies: Mapping[str, str],
    image: bytes | None,
    survey: RevisionSurvey | None,
    topics: Iterable[str],
    languages: Iterable[str],
    to_channel: bool,
    send_at: dt.datetime | None,
) -> dict[str, str]:
    """Part name (:data:`PART_NAME`) -> a fingerprint of 16 hex digits, over the same
    arguments as :func:`revision`: ``text_<language>`` is what the version reads (its
    text and bold/italic, without link addresses), ``links_<language>`` its links (their
    words and addresses, and any refused target), ``audience`` the topics, languages and
    channel flag. Pure."""
    found: dict[str, str] = {}
    for language, body in bodies.items():
        formatted = parse_markup(body)
        found[f"text_{language}"] = _short([formatted.text, [[e.type, e.offset, e.length] for e in formatted.entities
                                                             if e.type != "text_link"]])
        found[f"links_{language}"] = _short([[[link.text, link.url] for link in links_of(formatted)],
                                             list(formatted.bad_links)])
    found["image"] = _short(hashlib.sha256(image).hexdigest() if image is not None else None)
    found["survey"] = _short(None if survey is None else [
        survey.id, sorted([language, question, list(options)] for language, (question, options) in survey.texts.items())])
    found["audience"] = _short([sorted(set(topics)), list(languages), bool(to_channel)])
    found["time"] = _short(_utc(send_at))
    return found


def encode_parts(found: Mapping[str, str]) -> str:
    """``name:fingerprint`` pairs joined by ``.`` (at most 8 parts of 26 characters with two
    languages), for a hidden form field."""
    return ".".join(f"{name}:{value}" for name, value in found.items())


def _order(name: str) -> tuple[int, int, int, str]:
    kind, _, language = name.partition("_")
    if not language:
        return (1, ("image", "survey", "audience", "time").index(kind), 0, "")
    rank = LANGUAGES.index(language) if language in LANGUAGES else len(LANGUAGES)
    return (0, rank, ("text", "links").index(kind), language)


def changed(posted: str, current: Mapping[str, str]) -> list[str]:
    """The names of the parts that differ between ``posted`` (:func:`encode_parts` as a form
    sent it back: untrusted, malformed pairs are ignored) and ``current``; a part on one side
    only differs. Languages first (Arabic, English; text before links), then image, survey,
    audience, time. Empty when ``posted`` holds no part (the form carried none)."""
    before = dict(_ENCODED_PART.fullmatch(pair).groups() for pair in (posted or "").split(".")
                  if _ENCODED_PART.fullmatch(pair))
    if not before:
        return []
    names = {name for name in {*before, *current} if before.get(name) != current.get(name)}
    return sorted(names, key=_order)
