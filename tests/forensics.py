"""What someone who seized the bot host can do with its files: reusable tools for the drill.

* :func:`sqlite_versions` replays a SQLite WAL and yields every committed version of every
  table that the main file and the WAL still hold; :func:`commit_table_changes` says which
  tables each WAL commit changed.
* :func:`text_patterns`, :func:`int_patterns`, :func:`bytes_patterns` turn one secret into the
  byte strings it may be stored as; :func:`search_tree`, :func:`search_file`,
  :func:`search_env` look for them.
* :func:`try_open_with_bot_key` tries a BLOB against :class:`~nazaha.storage.crypto.BotKeyBox`
  with every purpose the code base uses and every context found in the same row.
* :func:`known_pseudonyms` computes the pepper pseudonyms of candidate Telegram ids, as an
  attacker holding the pepper would.

Nothing here prints a secret: hits name the secret (``"receipt of A, digits only"``), the
encoding and the place, never the value.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24
WAL_MAGICS = (0x377F0682, 0x377F0683)
SQLITE_HEADER = b"SQLite format 3\x00"

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "nazaha"

# --------------------------------------------------------------------------- SQLite replay


@dataclass(frozen=True)
class TableRows:
    """One table in one snapshot: column names and the rows (tuples of Python values)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    def row_set(self) -> frozenset[tuple[object, ...]]:
        return frozenset(self.rows)


@dataclass(frozen=True)
class Snapshot:
    """The database as it was at one point.

    ``label`` says where it comes from: ``"main file"``, ``"wal commit #3 (frame 17)"`` or
    ``"old wal generation salts=(a, b) commit #0 (frame 40)"``. ``generation`` groups
    snapshots that follow one another (``"main"``, ``"current"`` or ``"old:<salt1>:<salt2>"``);
    ``tables`` maps a table name to its rows. Tables that could not be read (an
    inconsistent best-effort image) are absent and named in ``unreadable``.
    """

    label: str
    generation: str
    tables: Mapping[str, TableRows]
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Frame:
    index: int
    page_no: int
    commit_size: int  # pages in the database after this commit; 0 if not a commit frame
    salts: tuple[int, int]
    page: bytes


def _wal_frames(wal: bytes) -> tuple[int, tuple[int, int], list[_Frame]]:
    """(page size, header salts, frames) of a WAL file's bytes; (0, (0, 0), []) if it has none."""
    if len(wal) < WAL_HEADER_BYTES:
        return 0, (0, 0), []
    magic, _version, page_size, _ckpt, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:WAL_HEADER_BYTES])
    if magic not in WAL_MAGICS or page_size < 512 or page_size & (page_size - 1):
        return 0, (0, 0), []
    frame_bytes = WAL_FRAME_HEADER_BYTES + page_size
    frames = []
    for index, offset in enumerate(range(WAL_HEADER_BYTES, len(wal) - frame_bytes + 1, frame_bytes)):
        page_no, commit_size, s1, s2 = struct.unpack(">4I", wal[offset : offset + 16])
        if page_no == 0:
            continue
        page = wal[offset + WAL_FRAME_HEADER_BYTES : offset + frame_bytes]
        frames.append(_Frame(index, page_no, commit_size, (s1, s2), page))
    return page_size, (salt1, salt2), frames


def _main_page_size(main: bytes) -> int:
    if len(main) < 100 or not main.startswith(SQLITE_HEADER):
        return 0
    size = struct.unpack(">H", main[16:18])[0]
    return 65536 if size == 1 else size


def _pages_of(main: bytes, page_size: int) -> dict[int, bytes]:
    return {i // page_size + 1: main[i : i + page_size] for i in range(0, len(main) - page_size + 1, page_size)}


def _read_image(image: bytes, workdir: Path) -> tuple[dict[str, TableRows], tuple[str, ...]]:
    """Every table of a database image, read with sqlite3 in immutable mode."""
    path = workdir / "image.db"
    path.write_bytes(image)
    tables: dict[str, TableRows] = {}
    unreadable: list[str] = []
    try:
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    except sqlite3.DatabaseError:
        return {}, ("<whole image>",)
    try:
        try:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.DatabaseError:
            return {}, ("<schema>",)
        for name in names:
            try:
                cursor = db.execute(f'SELECT * FROM "{name}"')
                columns = tuple(d[0] for d in cursor.description)
                tables[name] = TableRows(columns, tuple(cursor.fetchall()))
            except sqlite3.DatabaseError:
                unreadable.append(name)
    finally:
        db.close()
    return tables, tuple(unreadable)


def _replay(
    base: dict[int, bytes], frames: list[_Frame], page_size: int, generation: str, label: str, workdir: Path
) -> Iterator[Snapshot]:
    pages = dict(base)
    commit_no = 0
    for frame in frames:
        pages[frame.page_no] = frame.page
        if frame.commit_size:
            image = b"".join(pages.get(n, b"\x00" * page_size) for n in range(1, frame.commit_size + 1))
            tables, unreadable = _read_image(image, workdir)
            yield Snapshot(f"{label}commit #{commit_no} (frame {frame.index})", generation, tables, unreadable)
            commit_no += 1


def sqlite_versions(db_path: Path, wal_path: Path | None = None) -> Iterator[Snapshot]:
    """Every committed version of the database that ``db_path`` and its WAL still hold.

    Yields, in order: the main file alone (``generation="main"``); then, starting from a copy
    of the main file, the WAL's current generation (frames whose salts match the WAL header)
    applied frame by frame, one snapshot after each commit frame (``generation="current"``);
    then, best effort, each older generation left in the file past the current frames (salts
    differ from the header), applied on top of the main file (``"old:<salt1>:<salt2>"``).

    WAL layout: a 32-byte header (magic, version, page size, checkpoint seq, salt1, salt2,
    checksum1, checksum2), then frames of a 24-byte header (page no, commit size: the database
    size in pages, non-zero only on a commit frame, salt1, salt2, checksum1, checksum2) and one
    page. Checksums are not verified: an attacker would not either.

    Each image is written to a temporary file and opened read-only with
    ``file:...?immutable=1``; tables that fail to read are listed in ``Snapshot.unreadable``.
    ``wal_path`` defaults to ``<db_path>-wal``; a missing file counts as empty.
    """
    db_path = Path(db_path)
    wal_path = Path(wal_path) if wal_path is not None else db_path.with_name(db_path.name + "-wal")
    main = db_path.read_bytes() if db_path.exists() else b""
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    wal_page_size, header_salts, frames = _wal_frames(wal)
    page_size = _main_page_size(main) or wal_page_size
    if not page_size:
        return
    base = _pages_of(main, page_size)
    with tempfile.TemporaryDirectory(prefix="forensics-") as tmp:
        workdir = Path(tmp)
        if main:
            tables, unreadable = _read_image(main, workdir)
            yield Snapshot("main file", "main", tables, unreadable)
        if wal_page_size != page_size:
            return
        current = [f for f in frames if f.salts == header_salts]
        yield from _replay(base, current, page_size, "current", "wal ", workdir)
        older: dict[tuple[int, int], list[_Frame]] = {}
        for frame in frames:
            if frame.salts != header_salts:
                older.setdefault(frame.salts, []).append(frame)
        for salts, group in older.items():
            generation = f"old:{salts[0]}:{salts[1]}"
            yield from _replay(base, group, page_size, generation, f"old wal generation salts={salts} ", workdir)


@dataclass(frozen=True)
class CommitChange:
    """One WAL commit: its snapshot label and the tables whose rows differ from the commit before."""

    label: str
    tables: frozenset[str]


def commit_table_changes(db_path: Path, wal_path: Path | None = None) -> Iterator[CommitChange]:
    """For each WAL commit, the tables it changed (row sets compared table by table).

    The first commit of the current generation is compared with the main file (which is what
    the database was before it); the first commit of an older generation has no known
    predecessor and is skipped, later ones are compared with the commit before them.
    """
    main: Snapshot | None = None
    last: dict[str, Snapshot] = {}
    for snapshot in sqlite_versions(db_path, wal_path):
        if snapshot.generation == "main":
            main = snapshot
            continue
        before = last.get(snapshot.generation, main if snapshot.generation == "current" else None)
        last[snapshot.generation] = snapshot
        if before is None:
            continue
        changed = set()
        for name in set(before.tables) | set(snapshot.tables):
            old, new = before.tables.get(name), snapshot.tables.get(name)
            if (old.row_set() if old else frozenset()) != (new.row_set() if new else frozenset()):
                changed.add(name)
        yield CommitChange(snapshot.label, frozenset(changed))


def row_versions(snapshots: Iterable[Snapshot]) -> dict[tuple[str, tuple[str, ...], tuple[object, ...]], str]:
    """Distinct (table, columns, row) over ``snapshots``, each with the label of the first
    snapshot that holds it."""
    seen: dict[tuple[str, tuple[str, ...], tuple[object, ...]], str] = {}
    for snapshot in snapshots:
        for name, table in snapshot.tables.items():
            for row in table.rows:
                seen.setdefault((name, table.columns, row), snapshot.label)
    return seen


# --------------------------------------------------------------------------- byte patterns


def _json_escaped(text: str, upper: bool) -> bytes:
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
        else:
            units = ch.encode("utf-16-be")
            for i in range(0, len(units), 2):
                code = f"{units[i]:02x}{units[i + 1]:02x}"
                out.append("\\u" + (code.upper() if upper else code))
    return "".join(out).encode("ascii")


def text_patterns(text: str) -> dict[str, bytes]:
    """The byte forms a string may be stored in: UTF-8, UTF-16-LE/BE and, if it has
    non-ASCII characters, JSON's ``\\uXXXX`` escapes (lower- and upper-case hex).

    Maps an encoding name to the bytes.
    """
    patterns = {
        "utf-8": text.encode("utf-8"),
        "utf-16-le": text.encode("utf-16-le"),
        "utf-16-be": text.encode("utf-16-be"),
    }
    if not text.isascii():
        patterns["json \\uxxxx"] = _json_escaped(text, upper=False)
        patterns["json \\uXXXX"] = _json_escaped(text, upper=True)
    return patterns


def int_patterns(value: int) -> dict[str, bytes]:
    """An integer as text (see :func:`text_patterns`) and in binary: big-endian two's
    complement in 4, 6 and 8 bytes where it fits (SQLite's record format) and 8-byte
    little-endian (PostgreSQL int8 in a heap tuple)."""
    patterns = {f"decimal {k}": v for k, v in text_patterns(str(value)).items()}
    for size in (4, 6, 8):
        if -(1 << (8 * size - 1)) <= value < (1 << (8 * size - 1)):
            patterns[f"sqlite int {size}-byte big-endian"] = value.to_bytes(size, "big", signed=True)
    patterns["postgresql int8 little-endian"] = value.to_bytes(8, "little", signed=True)
    return patterns


def bytes_patterns(value: bytes) -> dict[str, bytes]:
    """A binary secret (a data key) raw, as hex and as base64 (standard and URL-safe, with and
    without padding)."""
    b64 = base64.b64encode(value)
    url = base64.urlsafe_b64encode(value)
    return {
        "raw": value,
        "hex": value.hex().encode(),
        "HEX": value.hex().upper().encode(),
        "base64": b64,
        "base64 unpadded": b64.rstrip(b"="),
        "base64url": url,
        "base64url unpadded": url.rstrip(b"="),
    }


Secrets = Mapping[str, Mapping[str, bytes]]  # secret name -> encoding name -> bytes


@dataclass(frozen=True)
class Hit:
    """A secret found: where (a path, ``"environment NAZAHA_X"``, ...), which secret (by name),
    in which encoding."""

    where: str
    secret: str
    encoding: str

    def __str__(self) -> str:
        return f"{self.secret} [{self.encoding}] in {self.where}"


def search_bytes(data: bytes, secrets: Secrets, where: str) -> list[Hit]:
    """Every (secret, encoding) of ``secrets`` that occurs in ``data``."""
    return [
        Hit(where, name, encoding)
        for name, patterns in secrets.items()
        for encoding, pattern in patterns.items()
        if pattern and pattern in data
    ]


def search_file(path: Path, secrets: Secrets, where: str | None = None) -> list[Hit]:
    """:func:`search_bytes` over one file's bytes (a missing file has none)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return search_bytes(data, secrets, where or str(path))


def search_tree(root: Path, secrets: Secrets, label: str | None = None) -> list[Hit]:
    """:func:`search_file` over every file under ``root``; places are named
    ``<label or root>/<relative path>``."""
    root = Path(root)
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hits += search_file(path, secrets, f"{label or root}/{path.relative_to(root)}")
    return hits


def search_env(env: Mapping[str, str], secrets: Secrets) -> list[Hit]:
    """:func:`search_bytes` over each environment variable's name and value."""
    hits = []
    for key, value in env.items():
        hits += search_bytes(f"{key}={value}".encode("utf-8", "surrogateescape"), secrets, f"environment {key}")
    return hits


# --------------------------------------------------------------------------- the bot key


def bot_key_purposes(package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Every purpose string the code base may pass to ``BotKeyBox.seal/open``: string
    literals given to ``.seal(``/``.open(`` and ``*PURPOSE = "..."`` constants in modules
    that use ``BotKeyBox``, plus the known ones (fsm, prefs, notify)."""
    found = {"fsm", "prefs", "notify"}
    for path in package_dir.rglob("*.py"):
        source = path.read_text(errors="replace")
        if "BotKeyBox" not in source and "box" not in source:
            continue
        found.update(re.findall(r"\b[A-Z_]*PURPOSE\s*=\s*[\"']([^\"']+)[\"']", source))
        found.update(re.findall(r"\.(?:seal|open)\(\s*[\"']([^\"']+)[\"']", source))
    return tuple(sorted(found))


def row_contexts(row: Iterable[object]) -> list[str]:
    """Plausible BotKeyBox contexts in a row: its text values and integers as decimal text."""
    contexts: list[str] = [""]
    for value in row:
        if isinstance(value, str) and value not in contexts:
            contexts.append(value)
        elif isinstance(value, int) and not isinstance(value, bool) and str(value) not in contexts:
            contexts.append(str(value))
    return contexts


@dataclass(frozen=True)
class Opened:
    """A BLOB that opened with the bot key: under which purpose and context, and its plaintext."""

    purpose: str
    context: str = field(repr=False)
    plaintext: bytes = field(repr=False)


def try_open_with_bot_key(
    bot_key: bytes, value: bytes, contexts: Iterable[str] = ("",), purposes: Iterable[str] | None = None
) -> Opened | None:
    """Try ``value`` against ``BotKeyBox(bot_key)`` with every purpose (default:
    :func:`bot_key_purposes`) and every context (pass :func:`row_contexts` of its row);
    the first that opens, or ``None``."""
    from nazaha.storage.crypto import BotKeyBox, CryptoError

    box = BotKeyBox(bot_key)
    for purpose in purposes if purposes is not None else bot_key_purposes():
        for context in contexts:
            try:
                return Opened(purpose, context, box.open(purpose, context, bytes(value)))
            except (CryptoError, ValueError):
                continue
    return None


KEY_LIKE_B64 = re.compile(rb"[A-Za-z0-9+/_-]{43}=?")


def key_like_values(plaintext: bytes) -> int:
    """How many base64 strings in ``plaintext`` decode to exactly 32 bytes (a key's size)."""
    count = 0
    for match in KEY_LIKE_B64.finditer(plaintext):
        raw = match.group(0)
        try:
            decoded = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_" if b"-" in raw or b"_" in raw else None)
        except ValueError:
            continue
        if len(decoded) == 32:
            count += 1
    return count


# --------------------------------------------------------------------------- the pepper


def pseudonym_purposes(package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Purpose strings passed as the first part to ``pseudonym(pepper, ...)`` in the code base
    (string literals and ``*PURPOSE`` constants of modules that call it)."""
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        source = path.read_text(errors="replace")
        if "pseudonym(" not in source:
            continue
        found.update(re.findall(r"pseudonym\(\s*[\w.]+\s*,\s*[\"']([^\"']+)[\"']", source))
        found.update(re.findall(r"\b[A-Z_]*PURPOSE\s*=\s*[\"']([^\"']+)[\"']", source))
    return tuple(sorted(found))


def fsm_destinies(package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """aiogram FSM destinies used by the code base ("default" and ``DESTINY = "..."``)."""
    found = {"default"}
    for path in package_dir.rglob("*.py"):
        found.update(re.findall(r"\bDESTINY\s*=\s*[\"']([^\"']+)[\"']", path.read_text(errors="replace")))
    return tuple(sorted(found))


def known_pseudonyms(pepper: bytes, ids: Mapping[str, int], bot_id: int) -> dict[str, str]:
    """What an attacker with the pepper computes for suspected accounts: pseudonym -> the
    name of the id it belongs to. Covers ``pseudonym(pepper, purpose, id)`` for every purpose
    of :func:`pseudonym_purposes` and aiogram FSM keys ``("fsm", bot_id, chat_id, user_id,
    thread_id=None, destiny)`` of private chats (chat id = user id)."""
    from nazaha.storage.crypto import pseudonym

    table: dict[str, str] = {}
    for name, value in ids.items():
        for purpose in pseudonym_purposes():
            table[pseudonym(pepper, purpose, value)] = name
        for destiny in fsm_destinies():
            table[pseudonym(pepper, "fsm", bot_id, value, value, None, destiny)] = name
    return table
