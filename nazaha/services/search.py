"""Search inside the decrypted content of the filtered cases.

The inbox filter picks the cases in SQL (newest first, at most ``limit_cases``); their sealed
report fields, thread messages, internal notes and evidence metadata are read with one query
per table, and each case's data key is unwrapped with the team key and its texts opened and
matched in a worker thread (the event loop keeps serving). Nothing decrypted is kept or
logged; a case that fails to open is skipped (and logged without any detail).

Matching is a substring test on normalised text (:func:`normalise_for_search`): NFKC,
case-folded, diacritics and tashkeel removed, tatweel and invisible format characters
removed, أ/إ/آ/ٱ read as ا, ة as ه, ى as ي, Arabic-Indic digits as ASCII digits, runs of
white space as one space; the Arabic definite article (with و ف ب ك ل written onto it) is
ignored at the start of words. A query of several words matches a case holding every one of
them, anywhere in its texts, in any order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import Viewer
from nazaha.services.deadlines import DeadlineRules
from nazaha.services.inbox import InboxFilter, filtered_report_ids
from nazaha.services.notes import note_field
from nazaha.storage.cases import _evidence_field, _message_field
from nazaha.storage.console_models import CaseNote
from nazaha.storage.crypto import CryptoError, TeamKeyRing, TeamPrivateKey
from nazaha.storage.models import CaseKeyEpoch, CaseMessage, Evidence, Report, ReportField
from nazaha.storage.reports import open_with_epoch_keys, team_epoch_keys

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...) list
_SPACES = re.compile(r"\s+")
_LETTERS = str.maketrans(
    {
        "\u0623": "\u0627",  # أ -> ا (also reached by dropping the hamza mark)
        "\u0625": "\u0627",  # إ -> ا
        "\u0622": "\u0627",  # آ -> ا
        "\u0671": "\u0627",  # ٱ (alef wasla) -> ا
        "\u0629": "\u0647",  # ة -> ه
        "\u0649": "\u064a",  # ى -> ي
        **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # Eastern Arabic-Indic digits
    }
)


@functools.cache
def _dropped() -> dict[int, None]:
    """Every combining mark (tashkeel, Quranic marks, Latin accents after NFD) and format
    character (tatweel is a letter modifier: listed too; bidi controls, zero-width joiners,
    BOM), as a ``str.translate`` table that deletes them."""
    table: dict[int, None] = {0x0640: None}  # tatweel
    # Above U+2FFFF only the tags and variation selectors (U+E0000-E0FFF) are such marks.
    for code in (*range(0x30000), *range(0xE0000, 0xE1000)):
        if unicodedata.category(chr(code)) in ("Mn", "Me", "Cf"):
            table[code] = None
    return table


def normalise_for_search(text: str) -> str:
    """``text`` as the search compares it (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = unicodedata.normalize("NFD", text).translate(_dropped())
    text = unicodedata.normalize("NFC", text).translate(_LETTERS)
    return _SPACES.sub(" ", text).strip()


async def _rows_by_report(session: AsyncSession, columns: Sequence[Any], report_column: Any, ids: list[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for row in await session.execute(select(*columns).where(report_column.in_(chunk))):
            found[row[0]].append(row)
    return found


def _texts_of(report_id: str, keys: tuple[bytes, ...], sealed: dict[str, list[Any]]) -> list[str]:
    def opened(field: str, value: bytes) -> bytes:
        return open_with_epoch_keys(keys, report_id, field, value)[1]

    texts = []
    for _rid, name, value in sealed["fields"].get(report_id, ()):
        texts.append(opened(name, value).decode("utf-8"))
    for _rid, message_id, direction, body in sealed["messages"].get(report_id, ()):
        texts.append(opened(_message_field(message_id, direction), body).decode("utf-8"))
    for _rid, note_id, body in sealed["notes"].get(report_id, ()):
        texts.append(opened(note_field(note_id), body).decode("utf-8"))
    for _rid, evidence_id, meta in sealed["evidence"].get(report_id, ()):
        opened_meta = json.loads(opened(_evidence_field(evidence_id), meta))
        texts.extend(opened_meta.get(key) or "" for key in ("file_name", "caption"))
    return texts


# The Arabic definite article and the one-letter words written onto it (و ف ب ك ل): a
# search for "الرشوة" finds "رشوة" and "والرشوة", and the other way round.
_ARTICLE = re.compile(r"(?<!\w)(?:[وفبك]?ال|لل)(?=\w\w\w)")


def _without_articles(normalised: str) -> str:
    return _ARTICLE.sub("", normalised)


def search_terms(text: str) -> list[str]:
    """The words of a query as they are matched: normalised, without the Arabic article;
    a case matches when each word appears somewhere in it (in any order)."""
    return [w for w in _without_articles(normalise_for_search(text)).split(" ") if w]


def _match(
    ids: list[str],
    wrapped: dict[str, tuple[bytes, int]],
    sealed: dict[str, dict[str, list[Any]]],
    terms: list[str],
    team_private: TeamPrivateKey | TeamKeyRing,
) -> list[str]:
    matches = []
    skipped = 0
    for report_id in ids:
        try:
            wrapped_key, epoch = wrapped[report_id]
            keys = team_epoch_keys(report_id, wrapped_key, epoch, sealed["epochs"].get(report_id, ()), team_private)
            texts = _texts_of(report_id, keys, sealed)
        except (CryptoError, ValueError, UnicodeDecodeError, AttributeError):
            skipped += 1
            continue
        haystack = "\n".join(_without_articles(normalise_for_search(text)) for text in texts if text)
        if all(term in haystack for term in terms):
            matches.append(report_id)
    if skipped:
        log.warning("search skipped %d case(s) that failed to open", skipped)
    return matches


async def search(
    session: AsyncSession,
    viewer: Viewer,
    f: InboxFilter,
    text: str,
    team_private: TeamPrivateKey | TeamKeyRing,
    vault: object = None,
    cases: object = None,
    limit_cases: int = 1000,
    *,
    today: dt.date | None = None,
    deadlines: DeadlineRules | None = None,
) -> list[str]:
    """The ids of the cases matching ``f`` (all pages, the newest ``limit_cases``) whose
    report fields, thread messages, notes or evidence file names or captions contain
    ``text`` (normalised, see :func:`normalise_for_search`), newest first. An empty or blank
    ``text`` matches nothing. ``today``/``deadlines`` serve a deadline flag in ``f``
    (default: today in UTC, the default rules).

    ``vault`` and ``cases`` (the ``ReportVault`` and ``CaseService``) are accepted for
    interface stability and not needed: the search reads the sealed rows in batches itself.
    """
    terms = search_terms(text) if isinstance(text, str) else []
    if not terms or limit_cases < 1:
        return []
    today = today or dt.datetime.now(dt.timezone.utc).date()
    rules = deadlines or DeadlineRules()
    ids = await filtered_report_ids(session, viewer, f, today, rules, limit_cases)
    if not ids:
        return []
    wrapped = {
        rid: (bytes(value), epoch)
        for rows in (
            await _rows_by_report(session, [Report.id, Report.wrapped_key_team, Report.key_epoch], Report.id, ids)
        ).values()
        for rid, value, epoch in rows
    }
    sealed = {
        "epochs": {
            rid: [row for _rid, row in rows]
            for rid, rows in (
                await _rows_by_report(session, [CaseKeyEpoch.report_id, CaseKeyEpoch], CaseKeyEpoch.report_id, ids)
            ).items()
        },
        "fields": await _rows_by_report(
            session, [ReportField.report_id, ReportField.name, ReportField.sealed], ReportField.report_id, ids
        ),
        "messages": await _rows_by_report(
            session,
            [CaseMessage.report_id, CaseMessage.id, CaseMessage.direction, CaseMessage.sealed_body],
            CaseMessage.report_id,
            ids,
        ),
        "notes": await _rows_by_report(
            session, [CaseNote.report_id, CaseNote.id, CaseNote.sealed], CaseNote.report_id, ids
        ),
        "evidence": await _rows_by_report(
            session, [Evidence.report_id, Evidence.id, Evidence.sealed_meta], Evidence.report_id, ids
        ),
    }
    return await asyncio.to_thread(_match, ids, wrapped, sealed, terms, team_private)


__all__ = ["normalise_for_search", "search", "search_terms"]
