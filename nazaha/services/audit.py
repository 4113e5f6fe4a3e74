"""The console's tamper-evident audit log (issue 9, "Audit").

Every entry is appended inside the write transaction of the action it records, so both
commit or neither does. Entries form a hash chain::

    hash(n) = SHA-256(seq, at, actor_id, action, case_ref, detail, hash(n-1))

(:func:`nazaha.storage.crypto.audit_entry_hash`; the first entry chains to 64 zeros). The
chain's head ``(seq, hash)`` is authenticated with an HMAC under a subkey of the console
secret, a key outside the database, and written to ``audit-head-<seq>.json`` files by
:func:`export_head`, to be copied off the host. :func:`verify` recomputes the chain and
compares it with exported heads.

The log is content-free: an actor is a staff user id, an action one of :data:`ACTIONS`, a case
a random reference (``console.case_refs``, which a purge can cut), and ``detail`` short codes
only (``{"status": "closed"}``). Report ids, designations and anything a person wrote never
enter it.

Concurrency: appends are serialised. On SQLite by the write transaction itself (callers use
``write_transaction``/``write_session``: ``BEGIN IMMEDIATE``); on PostgreSQL by a
transaction-scoped advisory lock taken before the last entry is read, held until the caller
commits (so append late in the transaction). A caller that breaks these rules gets a
primary-key conflict on ``seq``, never a forked chain.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.console_models import CONSOLE_SCHEMA, AuditEntry, CaseRef
from nazaha.storage.crypto import AUDIT_GENESIS_HASH, audit_entry_hash, audit_head_mac
from nazaha.storage.database import write_transaction

GENESIS_HASH = AUDIT_GENESIS_HASH


def N_(message: str) -> str:
    """Marks a msgid for extraction; the console translates it when it renders it."""
    return message


# --------------------------------------------------------------------------- actions

LOGIN = "login"
LOGIN_FAILED = "login_failed"  # unknown account, wrong password or wrong TOTP code alike
LOGIN_THROTTLED = "login_throttled"
RECOVERY_CODE_USED = "recovery_code_used"
LOGOUT = "logout"
SESSION_EXPIRED = "session_expired"
CASE_VIEW = "case_view"
CASE_SEARCH = "case_search"  # a search in decrypted text (the query itself is never logged)
EVIDENCE_DOWNLOAD = "evidence_download"
EVIDENCE_ORIGINAL = "evidence_original"
STATUS_CHANGE = "status_change"
REOPEN = "reopen"
REPLY = "reply"
NOTE = "note"
SHARE = "share"
UNSHARE = "unshare"
RECUSE = "recuse"
UNRECUSE = "unrecuse"
ASSIGN = "assign"
LABEL = "label"
PRIORITY = "priority"
LINK = "link"
UNLINK = "unlink"
EXPORT = "export"
USER_INVITE = "user_invite"
USER_ENROL = "user_enrol"
USER_RESET = "user_reset"
USER_REMOVE = "user_remove"
USER_ROLE = "user_role"
KEY_GRANT = "key_grant"
KEY_CHANGE = "key_change"
TEMPLATE_CHANGE = "template_change"
AUDIT_EXPORT = "audit_export"
PURGE = "purge"  # closed cases purged after the retention period; no case reference
KEY_ROTATION_START = "key_rotation_start"  # detail: the old and new team key ids (public)
KEY_ROTATION_FINISH = "key_rotation_finish"
# Awareness (issue 11). Detail: the broadcast, survey, campaign or item id; never a text.
BROADCAST_CHANGE = "broadcast_change"  # composed or edited (text, image, audience, schedule)
BROADCAST_SUBMIT = "broadcast_submit"
BROADCAST_APPROVE = "broadcast_approve"
BROADCAST_REJECT = "broadcast_reject"
BROADCAST_STATE = "broadcast_state"  # paused, resumed, cancelled, withdrawn: detail "status"
BROADCAST_TEST = "broadcast_test"  # "send a test to me"
STAFF_CHAT_LINK = "staff_chat_link"  # a link code made for the member's own Telegram chat
STAFF_CHAT_UNLINK = "staff_chat_unlink"
# The code the bot sent to the chat typed back; detail "outcome": linked, wrong, locked, expired.
STAFF_CHAT_CONFIRM = "staff_chat_confirm"
LIBRARY_CHANGE = "library_change"
SURVEY_CHANGE = "survey_change"  # created, edited, opened, closed: detail "status"
CAMPAIGN_CHANGE = "campaign_change"

# What the admin page shows for each action (msgids; the console translates them).
ACTION_LABELS: Mapping[str, str] = {
    LOGIN: N_("Signed in"),
    LOGIN_FAILED: N_("Failed sign-in"),
    LOGIN_THROTTLED: N_("Sign-in throttled"),
    RECOVERY_CODE_USED: N_("Recovery code used"),
    LOGOUT: N_("Signed out"),
    SESSION_EXPIRED: N_("Session expired"),
    CASE_VIEW: N_("Case opened"),
    CASE_SEARCH: N_("Cases searched"),
    EVIDENCE_DOWNLOAD: N_("Evidence downloaded"),
    EVIDENCE_ORIGINAL: N_("Original evidence downloaded"),
    STATUS_CHANGE: N_("Status changed"),
    REOPEN: N_("Case reopened"),
    REPLY: N_("Reply sent"),
    NOTE: N_("Note added"),
    SHARE: N_("Case shared"),
    UNSHARE: N_("Case share revoked"),
    RECUSE: N_("Caseworker recused"),
    UNRECUSE: N_("Recusal lifted"),
    ASSIGN: N_("Case assigned"),
    LABEL: N_("Labels changed"),
    PRIORITY: N_("Priority changed"),
    LINK: N_("Cases linked"),
    UNLINK: N_("Cases unlinked"),
    EXPORT: N_("Data exported (a case, the inbox or statistics)"),
    USER_INVITE: N_("User invited"),
    USER_ENROL: N_("User enrolled"),
    USER_RESET: N_("User reset"),
    USER_REMOVE: N_("User removed"),
    USER_ROLE: N_("User role changed"),
    KEY_GRANT: N_("Team key granted"),
    KEY_CHANGE: N_("Key changed"),
    TEMPLATE_CHANGE: N_("Reply template changed"),
    AUDIT_EXPORT: N_("Audit head exported"),
    PURGE: N_("Closed cases purged"),
    KEY_ROTATION_START: N_("Team-key rotation started"),
    KEY_ROTATION_FINISH: N_("Team-key rotation finished"),
    BROADCAST_CHANGE: N_("Broadcast composed or edited"),
    BROADCAST_SUBMIT: N_("Broadcast submitted for approval"),
    BROADCAST_APPROVE: N_("Broadcast approved"),
    BROADCAST_REJECT: N_("Broadcast rejected"),
    BROADCAST_STATE: N_("Broadcast paused, resumed, withdrawn or cancelled"),
    BROADCAST_TEST: N_("Broadcast test requested"),
    STAFF_CHAT_LINK: N_("Telegram link code made"),
    STAFF_CHAT_UNLINK: N_("Telegram chat unlinked"),
    STAFF_CHAT_CONFIRM: N_("Telegram link confirmation code typed"),
    LIBRARY_CHANGE: N_("Library content changed"),
    SURVEY_CHANGE: N_("Survey changed"),
    CAMPAIGN_CHANGE: N_("Campaign changed"),
}
ACTIONS: frozenset[str] = frozenset(ACTION_LABELS)


class AuditRejected(ValueError):
    """An unknown action, a malformed actor id, or a detail that is not short codes."""


# --------------------------------------------------------------------------- entries

_CODE_RE = re.compile(r"[A-Za-z0-9_.:-]{0,64}")
_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_MAX_DETAIL_KEYS = 16
_INT_RANGE = range(-(2**53), 2**53)  # exact in every JSON reader
# Constant key of the PostgreSQL advisory lock that serialises appends ("nazaha-audit").
PG_AUDIT_LOCK_KEY = 0x6E617A6168610A01

DetailValue = str | int | bool | None


@dataclass(frozen=True)
class AuditRecord:
    """One entry as the admin page shows it. ``at`` is aware UTC; ``detail`` the decoded
    codes (empty if the stored JSON is unreadable: :func:`verify` reports that)."""

    seq: int
    at: dt.datetime
    actor_id: str | None
    action: str
    case_ref: str | None
    detail: Mapping[str, DetailValue]
    hash: str
    exported: bool


def canonical_detail(detail: Mapping[str, DetailValue] | None) -> str:
    """The JSON text stored and hashed for ``detail``: sorted keys, no spaces.

    Keys: ``[a-z][a-z0-9_]{0,31}``, at most 16. Values: ``None``, ``bool``, ``int`` (within
    ±2**53) or a code of at most 64 characters from ``[A-Za-z0-9_.:-]``. Anything else raises
    :class:`AuditRejected`, so no free text can enter the log.
    """
    if detail is None:
        return "{}"
    if not isinstance(detail, Mapping) or len(detail) > _MAX_DETAIL_KEYS:
        raise AuditRejected("detail must be a mapping of at most 16 codes")
    for key, value in detail.items():
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise AuditRejected("detail keys must be short lower-case codes")
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            if value not in _INT_RANGE:
                raise AuditRejected("detail integers must be within ±2**53")
        elif not isinstance(value, str) or not _CODE_RE.fullmatch(value):
            raise AuditRejected("detail values must be codes of at most 64 characters [A-Za-z0-9_.:-]")
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def timestamp_text(at: dt.datetime) -> str:
    """The hashed form of a time: UTC, microseconds, ``2025-01-31T08:00:00.000000Z``."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware (UTC) datetime")
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _serialise_appends(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(PG_AUDIT_LOCK_KEY)))


async def case_ref_for(session: AsyncSession, report_id: str, *, create: bool = False) -> str | None:
    """The audit log's random reference for a report (made on first use with ``create``)."""
    ref = await session.scalar(select(CaseRef.ref).where(CaseRef.report_id == report_id))
    if ref is None and create:
        ref = secrets.token_hex(16)
        await session.execute(insert(CaseRef).values(report_id=report_id, ref=ref))
    return ref


async def append(
    session: AsyncSession,
    *,
    actor_id: str | None,
    action: str,
    report_id: str | None = None,
    detail: Mapping[str, DetailValue] | None = None,
    now: dt.datetime | None = None,
) -> AuditRecord:
    """Append one entry inside the caller's write transaction (the caller commits).

    ``actor_id``: a staff user id, or None (e.g. a failed login of an unknown account: the
    typed name is never logged). ``report_id`` is stored only as its :class:`CaseRef`.
    Raises :class:`AuditRejected` for an unknown ``action``, a malformed ``actor_id`` or
    ``report_id``, or a ``detail`` that is not short codes (see :func:`canonical_detail`).
    """
    if action not in ACTIONS:
        raise AuditRejected("unknown audit action")
    if actor_id is not None and not (isinstance(actor_id, str) and _ID_RE.fullmatch(actor_id)):
        raise AuditRejected("actor_id must be a staff user id")
    if report_id is not None and not (isinstance(report_id, str) and _ID_RE.fullmatch(report_id)):
        raise AuditRejected("report_id must be a report id")
    detail_text = canonical_detail(detail)
    at = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)

    await _serialise_appends(session)
    case_ref = await case_ref_for(session, report_id, create=True) if report_id else None
    last = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last is not None else (1, GENESIS_HASH)
    entry_hash = audit_entry_hash(
        seq, timestamp_text(at), actor_id, action, case_ref, detail_text, prev_hash
    )
    await session.execute(
        insert(AuditEntry).values(
            seq=seq,
            at=at,
            actor_id=actor_id,
            action=action,
            case_ref=case_ref,
            detail=detail_text,
            prev_hash=prev_hash,
            hash=entry_hash,
            exported=False,
        )
    )
    return AuditRecord(
        seq, at, actor_id, action, case_ref, json.loads(detail_text), entry_hash, False
    )


def _filtered(statement: Any, actor_id: str | None, action: str | None, case_ref: str | None) -> Any:
    if actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if case_ref is not None:
        statement = statement.where(AuditEntry.case_ref == case_ref)
    return statement


def _decoded_detail(stored: str) -> Mapping[str, DetailValue]:
    try:
        value = json.loads(stored)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def entries(
    session: AsyncSession,
    *,
    page: int = 1,
    page_size: int = 50,
    actor_id: str | None = None,
    action: str | None = None,
    report_id: str | None = None,
) -> list[AuditRecord]:
    """One page (1-based; ``page_size`` 1..500) of entries, newest first, optionally only
    one actor's, one action's or one case's. ``ValueError`` for a bad page or size."""
    if page < 1 or not 1 <= page_size <= 500:
        raise ValueError("page must be >= 1 and page_size within 1..500")
    case_ref = None
    if report_id is not None:
        case_ref = await case_ref_for(session, report_id)
        if case_ref is None:
            return []
    statement = _filtered(select(AuditEntry), actor_id, action, case_ref)
    rows = await session.scalars(
        statement.order_by(AuditEntry.seq.desc()).offset((page - 1) * page_size).limit(page_size)
    )
    return [
        AuditRecord(
            row.seq, row.at, row.actor_id, row.action, row.case_ref,
            _decoded_detail(row.detail), row.hash, bool(row.exported),
        )
        for row in rows
    ]


async def count_entries(
    session: AsyncSession,
    *,
    actor_id: str | None = None,
    action: str | None = None,
    report_id: str | None = None,
) -> int:
    """How many entries :func:`entries` pages through with the same filters."""
    case_ref = None
    if report_id is not None:
        case_ref = await case_ref_for(session, report_id)
        if case_ref is None:
            return 0
    statement = _filtered(select(func.count()).select_from(AuditEntry), actor_id, action, case_ref)
    return int(await session.scalar(statement) or 0)


# --------------------------------------------------------------------------- heads


class HeadFileError(ValueError):
    """An exported head file that cannot be read or is malformed."""


@dataclass(frozen=True)
class ExportedHead:
    """The chain's head as exported: entry ``seq`` had ``hash`` (and time ``at``); ``mac``
    authenticates ``(seq, hash)`` under the console secret. ``seq`` 0: an empty log."""

    seq: int
    hash: str
    at: dt.datetime | None
    mac: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "hash": self.hash,
                "at": None if self.at is None else timestamp_text(self.at),
                "mac": self.mac,
            },
            indent=2,
        ) + "\n"

    @classmethod
    def from_json(cls, raw: str | bytes) -> ExportedHead:
        """Parse a head file's text; :class:`HeadFileError` if malformed."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or set(doc) != {"seq", "hash", "at", "mac"}:
                raise ValueError("unexpected keys")
            seq, entry_hash, at, mac = doc["seq"], doc["hash"], doc["at"], doc["mac"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise ValueError("bad seq")
            if not all(isinstance(v, str) and _HEX64_RE.fullmatch(v) for v in (entry_hash, mac)):
                raise ValueError("bad hash or mac")
            if at is None:
                if seq != 0:
                    raise ValueError("missing time")
                when = None
            else:
                when = _parse_at(at)
                if when is None:
                    raise ValueError("bad time")
        except (ValueError, TypeError) as exc:
            raise HeadFileError(f"not an audit head file ({exc})") from None
        return cls(seq=seq, hash=entry_hash, at=when, mac=mac)


def head_mac(console_secret: bytes, seq: int, entry_hash: str) -> str:
    """HMAC-SHA256 of the head ``(seq, entry_hash)`` under an HKDF subkey of the console
    secret, 64 hex chars (:func:`nazaha.storage.crypto.audit_head_mac`)."""
    return audit_head_mac(console_secret, seq, entry_hash)


HEAD_FILE_RE = re.compile(r"audit-head-([0-9]{1,19})\.json")


def head_file_name(seq: int) -> str:
    return f"audit-head-{seq}.json"


def load_head(path: Path) -> ExportedHead:
    """Read one head file; :class:`HeadFileError` if unreadable or malformed."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HeadFileError(f"cannot read {path} ({exc.strerror})") from None
    return ExportedHead.from_json(raw)


def head_files(directory: Path) -> list[Path]:
    """The ``audit-head-<seq>.json`` files in ``directory``, oldest (lowest seq) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := HEAD_FILE_RE.fullmatch(p.name))]
    return [path for _seq, path in sorted(found)]


def latest_exported_head(directory: Path) -> ExportedHead | None:
    """The head file with the highest seq in ``directory`` (None if there is none);
    :class:`HeadFileError` if that file is malformed."""
    files = head_files(directory)
    return load_head(files[-1]) if files else None


def _write_head_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Where the console writes the heads, inside its console dir (copy them off the host).
HEADS_DIR = "audit-heads"


class AuditChainBroken(Exception):
    """:func:`export_head` found the log tampered with since the latest head: it refuses to
    authenticate it. ``problems`` are content-free (seq and kind)."""

    def __init__(self, problems: Sequence[AuditProblem]):
        super().__init__(f"the audit log has {len(problems)} problem(s); run `nazaha audit verify`")
        self.problems = tuple(problems)


async def export_head(
    sessionmaker: async_sessionmaker[AsyncSession], console_secret: bytes, directory: Path
) -> Path:
    """Write the current head to ``directory/audit-head-<seq>.json`` (0600, directory 0700)
    and mark the entries up to it exported; returns the file's path.

    First checks the entries since the latest head already in ``directory`` (one hour's
    worth when run hourly; the whole log on the first export) and raises
    :class:`AuditChainBroken` rather than authenticate a tampered log; :class:`HeadFileError`
    if that latest head file is malformed.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    previous = latest_exported_head(directory)
    async with write_transaction(sessionmaker) as session:
        await _serialise_appends(session)  # no append commits between the check and the head
        result = await _check(
            session, console_secret, [previous] if previous else [], since=previous
        )
        if not result.ok:
            raise AuditChainBroken(result.problems)
        last = (
            await session.execute(
                select(AuditEntry.seq, AuditEntry.hash, AuditEntry.at)
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            )
        ).first()
        seq, entry_hash, at = (last.seq, last.hash, last.at) if last else (0, GENESIS_HASH, None)
        head = ExportedHead(seq, entry_hash, at, head_mac(console_secret, seq, entry_hash))
        path = directory / head_file_name(seq)
        _write_head_file(path, head.to_json().encode("ascii"))
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq <= seq, AuditEntry.exported.is_(False))
            .values(exported=True)
        )
    return path


# --------------------------------------------------------------------------- verification

EDITED = "edited"  # the entry's fields do not give its stored hash
MISSING = "missing"  # entries from this seq on are absent (deleted), up to the next present
CHAIN_BROKEN = "chain_broken"  # prev_hash is not the previous entry's hash
INSERTED = "inserted"  # a seq that cannot belong to the chain (before its start)
UNREADABLE = "unreadable"  # a field of the wrong type or format
TRUNCATED = "truncated"  # the log ends before an exported head
REWRITTEN = "rewritten"  # the entry at an exported head's seq is not the one exported
HEAD_FORGED = "head_forged"  # the head file's MAC (or its time) does not check out

PROBLEM_LABELS: Mapping[str, str] = {
    EDITED: N_("entry edited (its hash does not match)"),
    MISSING: N_("entries deleted (gap in the sequence)"),
    CHAIN_BROKEN: N_("chain broken (previous hash does not match)"),
    INSERTED: N_("entry inserted outside the chain"),
    UNREADABLE: N_("entry unreadable (a field has the wrong type)"),
    TRUNCATED: N_("log truncated before an exported head"),
    REWRITTEN: N_("log rewritten (differs from an exported head)"),
    HEAD_FORGED: N_("exported head forged (authentication failed)"),
}


@dataclass(frozen=True)
class AuditProblem:
    """One finding: the entry's ``seq`` (for a head problem: the head's seq) and ``kind``
    (a key of :data:`PROBLEM_LABELS`). For ``missing``: ``last_seq`` is the last absent seq."""

    seq: int
    kind: str
    last_seq: int | None = None

    def describe(self) -> str:
        """One English line, e.g. ``entry 7: entry edited (its hash does not match)``."""
        where = f"entry {self.seq}"
        if self.last_seq is not None and self.last_seq != self.seq:
            where = f"entries {self.seq}-{self.last_seq}"
        return f"{where}: {PROBLEM_LABELS[self.kind]}"


@dataclass(frozen=True)
class VerifyResult:
    """``ok`` iff no problem was found; ``entries`` counts the entries read, ``last_seq`` is
    the highest seq present (0 if none), ``heads`` counts the heads compared."""

    ok: bool
    problems: tuple[AuditProblem, ...]
    entries: int
    last_seq: int
    heads: int = 0


def _parse_at(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Chain:
    """Checks raw rows fed in seq order. Starts at seq ``expected`` chained to ``prev``
    (None: the first row's prev_hash is not checked, its hash is compared with a head)."""

    expected: int = 1
    prev: str | None = GENESIS_HASH
    wanted: frozenset[int] = frozenset()
    problems: list[AuditProblem] = field(default_factory=list)
    found: dict[int, tuple[Any, dt.datetime | None]] = field(default_factory=dict)
    count: int = 0
    last_seq: int = 0

    def feed(self, row: Any) -> None:
        self.count += 1
        seq = row.seq
        if not _is_int(seq):
            self.problems.append(AuditProblem(self.expected, UNREADABLE))
            self.prev = row.hash if isinstance(row.hash, str) else None
            return
        if seq < self.expected:
            self.problems.append(AuditProblem(seq, INSERTED))
            return
        if seq > self.expected:
            self.problems.append(AuditProblem(self.expected, MISSING, seq - 1))
        at = _parse_at(row.at)
        readable = (
            at is not None
            and all(isinstance(v, str) for v in (row.action, row.detail, row.prev_hash))
            and all(v is None or isinstance(v, str) for v in (row.actor_id, row.case_ref))
        )
        if not readable:
            self.problems.append(AuditProblem(seq, UNREADABLE))
        elif row.hash != audit_entry_hash(
            seq, timestamp_text(at), row.actor_id, row.action, row.case_ref, row.detail, row.prev_hash
        ):
            self.problems.append(AuditProblem(seq, EDITED))
        if self.prev is not None and row.prev_hash != self.prev:
            self.problems.append(AuditProblem(seq, CHAIN_BROKEN))
        self.prev = row.hash if isinstance(row.hash, str) else None
        self.expected = seq + 1
        self.last_seq = seq
        if seq in self.wanted:
            self.found[seq] = (row.hash, at)

    def check_head(self, head: ExportedHead, console_secret: bytes) -> None:
        expected_mac = head_mac(console_secret, head.seq, head.hash)
        if not hmac.compare_digest(expected_mac, head.mac):
            self.problems.append(AuditProblem(head.seq, HEAD_FORGED))
            return
        if head.seq == 0:
            if head.hash != GENESIS_HASH:
                self.problems.append(AuditProblem(0, HEAD_FORGED))
            return
        found = self.found.get(head.seq)
        if found is None:
            self.problems.append(AuditProblem(head.seq, TRUNCATED if head.seq > self.last_seq else REWRITTEN))
        elif found[0] != head.hash:
            self.problems.append(AuditProblem(head.seq, REWRITTEN))
        elif head.at is not None and found[1] != head.at:
            self.problems.append(AuditProblem(head.seq, HEAD_FORGED))  # its time was edited


_RAW_COLUMNS = "seq, at, actor_id, action, case_ref, detail, prev_hash, hash"


async def _log_exists(session: AsyncSession) -> bool:
    connection = await session.connection()
    return await connection.run_sync(
        lambda sync: inspect(sync).has_table(AuditEntry.__tablename__, schema=CONSOLE_SCHEMA)
    )


async def _check(
    session: AsyncSession,
    console_secret: bytes,
    heads: Sequence[ExportedHead],
    *,
    since: ExportedHead | None = None,
) -> VerifyResult:
    """Stream the raw rows (no type conversion that could raise on a tampered value) in seq
    order, from ``since.seq`` (whose hash must be ``since.hash``) or from the start."""
    start = since.seq if since is not None and since.seq > 0 else 0
    chain = _Chain(
        expected=max(start, 1),
        prev=None if start else GENESIS_HASH,
        wanted=frozenset(h.seq for h in heads),
    )
    if await _log_exists(session):
        query = text(
            f"SELECT {_RAW_COLUMNS} FROM {CONSOLE_SCHEMA}.{AuditEntry.__tablename__} "
            "WHERE seq >= :start ORDER BY seq"
        ).execution_options(yield_per=1000)
        result = await session.stream(query, {"start": start})
        async for row in result:
            chain.feed(row)
    for head in heads:
        chain.check_head(head, console_secret)
    problems = tuple(chain.problems)
    return VerifyResult(not problems, problems, chain.count, chain.last_seq, len(heads))


async def verify(
    sessionmaker: async_sessionmaker[AsyncSession],
    console_secret: bytes,
    head: ExportedHead | None = None,
    *,
    heads: Iterable[ExportedHead] = (),
) -> VerifyResult:
    """Recompute the whole chain and compare it with ``head`` and ``heads`` (exported).

    Detects an edited, deleted, inserted or reordered entry; against an exported head, a
    truncated log, a rewritten log (even if rewritten consistently) and a forged head file.
    Never raises on tampering: the findings are in the result, content-free. Without a head
    it cannot tell a consistently rewritten or truncated log from an intact one.
    """
    all_heads = ([head] if head is not None else []) + list(heads)
    async with sessionmaker() as session:
        return await _check(session, console_secret, all_heads)
