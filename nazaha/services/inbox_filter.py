"""The inbox's filter and sort: what a member asked to see, read from and written back to
the query string (:meth:`InboxFilter.from_query` ignores bad values)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from nazaha.services.deadlines import FLAGS
from nazaha.services.workflow import STATUSES, normalise_label
from nazaha.storage.console_models import PRIORITIES

SORT_KEYS = (
    "designation",
    "kind",
    "category",
    "sector",
    "governorate",
    "status",
    "priority",
    "assignee",
    "received",
    "age",
    "deadline",
    "labels",
)
PAGE_SIZE_MAX = 200
_CODE = re.compile(r"[a-z0-9_]{1,64}")
_DESIGNATION_PART = re.compile(r"[A-Z0-9-]{1,16}")
_USER_ID = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass
class InboxFilter:
    """What the inbox shows. Every field is optional; direct construction checks values
    (``ValueError``), :meth:`from_query` ignores bad ones.

    ``designation``: a part of it (case-insensitive); ``kind``/``category``/``service``/
    ``sector``/``governorate``: codes; ``statuses``: any of these; ``priority``: one of
    ``PRIORITIES``; ``label``: one label; ``assignee``: ``"me"``, ``"none"`` or a user id;
    ``received_from``/``received_to``: inclusive days; ``flag``: one of ``FLAGS``;
    ``unseen_only``: only cases new or updated since the viewer last opened them.
    ``sort``: one of :data:`SORT_KEYS`; pages count from 1, ``page_size`` 1-200.
    """

    designation: str | None = None
    kind: str | None = None
    category: str | None = None
    service: str | None = None
    sector: str | None = None
    governorate: str | None = None
    statuses: tuple[str, ...] = ()
    priority: str | None = None
    label: str | None = None
    assignee: str | None = None
    received_from: dt.date | None = None
    received_to: dt.date | None = None
    flag: str | None = None
    unseen_only: bool = False
    sort: str = "received"
    descending: bool = True
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.designation is not None:
            self.designation = _designation_part(self.designation)
        for name in ("kind", "category", "service", "sector", "governorate"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or _CODE.fullmatch(value) is None):
                raise ValueError(f"{name} is a code like 'bribery'")
        self.statuses = tuple(dict.fromkeys(self.statuses))
        if any(s not in STATUSES for s in self.statuses):
            raise ValueError("unknown status")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise ValueError("unknown priority")
        if self.label is not None:
            self.label = normalise_label(self.label)
        if self.assignee is not None and self.assignee not in ("me", "none") and (
            not isinstance(self.assignee, str) or _USER_ID.fullmatch(self.assignee) is None
        ):
            raise ValueError("assignee is 'me', 'none' or a user id")
        for name in ("received_from", "received_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
                raise ValueError(f"{name} is a date")
        if self.flag is not None and self.flag not in FLAGS:
            raise ValueError("unknown flag")
        if self.sort not in SORT_KEYS:
            raise ValueError("unknown sort key")
        for name, low, high in (("page", 1, 10**9), ("page_size", 1, PAGE_SIZE_MAX)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}")
        self.unseen_only = bool(self.unseen_only)
        self.descending = bool(self.descending)

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> InboxFilter:
        """Read a filter from query-string parameters (a ``dict``, or Starlette's
        ``QueryParams`` with repeated keys). Unknown keys and bad values are ignored:

        ``designation kind category service sector governorate priority label assignee
        flag`` (text), ``status`` (repeated or comma-separated), ``received_from`` /
        ``received_to`` (YYYY-MM-DD), ``unseen`` (1), ``sort``, ``dir`` (asc|desc),
        ``page``, ``page_size``.
        """
        values: dict[str, Any] = {}
        for name in ("designation", "kind", "category", "service", "sector", "governorate",
                     "priority", "label", "assignee", "flag"):
            text = _last(query, name)
            if text:
                values[name] = text.strip()
        statuses = [part.strip() for raw in _all(query, "status") for part in raw.split(",")]
        values["statuses"] = tuple(s for s in statuses if s in STATUSES)
        for name in ("received_from", "received_to"):
            values[name] = _parse_date(_last(query, name))
        values["unseen_only"] = _last(query, "unseen") in ("1", "true", "on", "yes")
        values["sort"] = _last(query, "sort") or "received"
        direction = _last(query, "dir")
        values["descending"] = direction != "asc" if direction in ("asc", "desc") else True
        values["page"] = _parse_int(_last(query, "page")) or 1
        values["page_size"] = _parse_int(_last(query, "page_size")) or 50
        result = cls()
        for name, value in values.items():
            try:
                result = dataclasses.replace(result, **{name: value})
            except (ValueError, TypeError):
                pass  # a bad value is ignored, the default stays
        return result

    def to_query(self) -> list[tuple[str, str]]:
        """The parameters that :meth:`from_query` reads back into this filter, without the
        defaults (for ``urllib.parse.urlencode``)."""
        default = InboxFilter()
        pairs: list[tuple[str, str]] = []
        for name in ("designation", "kind", "category", "service", "sector", "governorate"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name)))
        pairs.extend(("status", s) for s in self.statuses)
        for name in ("priority", "label", "assignee"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name)))
        for name in ("received_from", "received_to"):
            if getattr(self, name) is not None:
                pairs.append((name, getattr(self, name).isoformat()))
        if self.flag is not None:
            pairs.append(("flag", self.flag))
        if self.unseen_only:
            pairs.append(("unseen", "1"))
        if self.sort != default.sort:
            pairs.append(("sort", self.sort))
        if self.descending != default.descending:
            pairs.append(("dir", "desc" if self.descending else "asc"))
        if self.page != default.page:
            pairs.append(("page", str(self.page)))
        if self.page_size != default.page_size:
            pairs.append(("page_size", str(self.page_size)))
        return pairs


def _designation_part(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("designation is text")
    part = value.strip().upper()
    if _DESIGNATION_PART.fullmatch(part) is None:
        raise ValueError("designation is a part of one, like 'R-7KQ'")
    return part


def _all(query: Mapping[str, Any], key: str) -> list[str]:
    getlist = getattr(query, "getlist", None)
    raw = getlist(key) if callable(getlist) else query.get(key)
    if raw is None:
        return []
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    return [item for item in items if isinstance(item, str)]


def _last(query: Mapping[str, Any], key: str) -> str | None:
    items = [item for item in _all(query, key) if item.strip()]
    return items[-1] if items else None


def _parse_date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text else None
    except ValueError:
        return None


def _parse_int(text: str | None) -> int | None:
    if text is None or not text.strip().isascii() or not text.strip().isdigit() or len(text.strip()) > 9:
        return None
    return int(text.strip())


__all__ = ["PAGE_SIZE_MAX", "SORT_KEYS", "InboxFilter"]
