"""Online backups and restores of a Nazaha installation, and the purge log they carry.

A backup (``nazaha backup DEST``) is a directory, made while the bot and the console run::

    DEST/manifest.json            what is in it: versions, alembic revision, counts, SHA-256
    DEST/purge-log.json           the console's purge log at backup time (hashes and days)
    DEST/data/nazaha.db           SQLite: the bot's database (backup API, one step)
    DEST/data/nazaha.pgdump       PostgreSQL instead: pg_dump -Fc of the database (both schemas)
    DEST/data/team-public.key, team-key.generation, team-signing.pub   public (the bot's pin)
    DEST/data/blobs/<report>/<file>.<variant>   the sealed evidence the database refers to
    DEST/data/bot.key, pepper.key               only with include_bot_secrets
    DEST/console/console.db       SQLite: the console's store (backup API, one step)
    DEST/console/audit-heads/*    the exported audit heads, if any
    DEST/console/console-secret.key             only with include_console_secret

Consistency. Each SQLite file is copied in one step of the backup API, so each is a
consistent snapshot; the two files are copied one after the other (the bot's first), so a
case changed between the two copies may show its bot-side state (status, thread) a moment
older than its console-side state. A case purged in that moment is in the purge log of the
console copy and is purged again at restore. On PostgreSQL one ``pg_dump`` takes both schemas
in one snapshot, and the evidence list is read in that same snapshot (``--snapshot``).

Blobs are immutable once written and are written before the row that refers to them is
committed, so the blobs are copied after the database: every evidence row of the copy had its
blob on disk when the database was copied. A blob that is missing by the time it is copied
was deleted in between (its case purged, its draft discarded): the manifest lists it under
``missing_blobs``; the restore re-applies the purge log, which removes its case, and any
evidence row left pointing at a missing blob shows as "file unavailable" to caseworkers.
Blobs written after the database copy (drafts) are not copied: nothing in the copy refers
to them.

A restore (``nazaha restore SRC``) needs an empty data dir and console dir, checks every
file against the manifest, copies everything back (PostgreSQL: ``pg_restore`` into an empty
database), then purges again every case whose keyed hash is in the backup's purge log or in
a newer one given with ``purge_logs`` (``nazaha purge-log export FILE`` on the live console,
or the ``purge-log.json`` of a newer backup). The hashes are keyed with the console secret,
which the restore therefore needs (from the backup or a separate file).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from nazaha.bot.settings import Settings
from nazaha.storage.blobs import VARIANTS, BlobStore
from nazaha.storage.console_db import CONSOLE_DB_NAME, CONSOLE_SECRET_NAME
from nazaha.services.purge import purge_hash
from nazaha.storage.crypto import KEY_BYTES
from nazaha.storage.keyfiles import KeyPaths

__all__ = [
    "MANIFEST_NAME",
    "PURGE_LOG_NAME",
    "BackupError",
    "BackupResult",
    "RestoreResult",
    "PurgeLog",
    "make_backup",
    "restore_backup",
    "export_purge_log",
    "read_purge_log",
    "write_purge_log",
    "purge_hash",
]

MANIFEST_NAME = "manifest.json"
PURGE_LOG_NAME = "purge-log.json"
MANIFEST_FORMAT = "nazaha-backup"
PURGE_LOG_FORMAT = "nazaha-purge-log"
FORMAT_VERSION = 1

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_PUBLIC_MODE = 0o644
_HEADS_DIR = "audit-heads"
_SQLITE_DUMP = "nazaha.db"
_PG_DUMP = "nazaha.pgdump"
_BLOB_CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    """A backup or restore refused or failed; ``str(exc)`` says why, for the operator."""


@dataclass
class BackupResult:
    dest: Path
    manifest: dict[str, Any]

    @property
    def missing_blobs(self) -> list[str]:
        return self.manifest["missing_blobs"]


@dataclass
class RestoreResult:
    data_dir: Path
    console_dir: Path
    purged: int  # cases purged again from the purge logs
    purge_log_entries: int  # distinct hashes known after the restore
    missing_blobs: list[str] = field(default_factory=list)
    console_secret_restored: bool = False
    bot_secrets_restored: bool = False
    # Console rows of reports the bot's copy does not hold (written between the two copies)
    orphaned_console_cases: int = 0


@dataclass(frozen=True)
class PurgeLog:
    """Purged cases as ``report_hash -> purged_on``: content-free (keyed hashes and days)."""

    entries: dict[str, dt.date]

    def merged(self, other: PurgeLog) -> PurgeLog:
        both = dict(self.entries)
        for key, day in other.entries.items():
            both[key] = min(day, both.get(key, day))
        return PurgeLog(both)


# --------------------------------------------------------------------------- small helpers


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_BLOB_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mkdir_private(path: Path) -> None:
    """Make ``path`` and any missing parent, each 0700 (whatever the umask)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=_DIR_MODE, exist_ok=True)
        os.chmod(directory, _DIR_MODE)
    if not missing:
        os.chmod(path, _DIR_MODE)


def _copy_file(src: Path, dst: Path, mode: int = _FILE_MODE) -> None:
    """Copy to a new file (never overwrites), fsync'ed, with ``mode``."""
    with src.open("rb") as fh:  # first: a missing source leaves nothing behind
        _mkdir_private(dst.parent)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            os.fchmod(fd, mode)
            while chunk := fh.read(_BLOB_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, document: Any) -> None:
    data = (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _prepare_empty_dir(path: Path, what: str) -> None:
    """Create ``path`` (0700), or accept it if it is an empty directory; refuse otherwise."""
    if path.is_symlink() or (path.exists() and not _is_empty_dir(path)):
        raise BackupError(f"{what} {path} is not a new empty directory; refusing to write into it")
    _mkdir_private(path)


def _nazaha_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nazaha")
    except PackageNotFoundError:  # pragma: no cover - always installed here
        return "unknown"


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(url.database)


def _libpq_target(settings: Settings) -> tuple[str, dict[str, str]]:
    """``pg_dump``/``pg_restore`` connection string (no password) and environment."""
    url = make_url(settings.effective_database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None, query={})
    return plain.render_as_string(hide_password=False), env


# --------------------------------------------------------------------------- SQLite


def _read_only_uri(path: Path) -> str:
    return Path(path).resolve().as_uri() + "?mode=ro"  # percent-encoded: any file name


def _sqlite_copy(src: Path, dst: Path) -> None:
    """One-step online copy through SQLite's backup API (a consistent snapshot: the step
    holds one read transaction; writers in WAL mode are not blocked), then the copy is
    turned into a single self-contained file without free pages."""
    if not src.is_file():
        raise BackupError(f"no database at {src}")
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    os.close(fd)
    source = sqlite3.connect(_read_only_uri(src), uri=True, timeout=30)
    try:
        source.execute("PRAGMA busy_timeout=30000")
        target = sqlite3.connect(dst)
        try:
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=DELETE")
            target.execute("VACUUM")
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(dst, _FILE_MODE)


def _sqlite_counts(path: Path, prefix: str = "") -> dict[str, int]:
    conn = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {f"{prefix}{name}": conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
    finally:
        conn.close()


def _sqlite_scalar(path: Path, sql: str) -> Any:
    conn = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def _sqlite_rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        return list(conn.execute(sql))
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


_EVIDENCE_SQL = "SELECT report_id, id, has_clean_copy FROM evidence ORDER BY report_id, id"
_PURGE_LOG_SQL = "SELECT report_hash, purged_on FROM purge_log ORDER BY report_hash"


# --------------------------------------------------------------------------- PostgreSQL


async def _pg_backup(settings: Settings, out: Path) -> tuple[dict[str, int], list[tuple], str | None, PurgeLog]:
    """pg_dump (custom format) of the whole database in one exported snapshot; the counts,
    the evidence list, the alembic revision and the purge log read in that same snapshot."""
    import asyncpg

    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not installed (PostgreSQL client tools are needed)")
    dsn, env = _libpq_target(settings)
    conn = await asyncpg.connect(dsn, password=env.get("PGPASSWORD"))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            tables = await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN ('public', 'console') AND table_type = 'BASE TABLE' "
                "ORDER BY table_schema, table_name"
            )
            counts: dict[str, int] = {}
            for row in tables:
                schema, name = row["table_schema"], row["table_name"]
                key = name if schema == "public" else f"{schema}.{name}"
                counts[key] = await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{name}"')
            evidence = [tuple(r) for r in await conn.fetch(_EVIDENCE_SQL)] if "evidence" in counts else []
            revision = (
                await conn.fetchval("SELECT version_num FROM alembic_version")
                if "alembic_version" in counts
                else None
            )
            log_rows = (
                [tuple(r) for r in await conn.fetch(_PURGE_LOG_SQL.replace("purge_log", "console.purge_log"))]
                if "console.purge_log" in counts
                else []
            )
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            os.close(fd)
            process = await asyncio.create_subprocess_exec(
                "pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={out}",
                "--no-owner", "--no-privileges", f"--dbname={dsn}",
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            _out, err = await process.communicate()
            if process.returncode != 0:
                raise BackupError(f"pg_dump failed: {err.decode(errors='replace').strip()[:500]}")
    finally:
        await conn.close()
    os.chmod(out, _FILE_MODE)
    return counts, evidence, revision, _purge_log_from_rows(log_rows)


async def _pg_restore(settings: Settings, dump: Path) -> None:
    import asyncpg

    if shutil.which("pg_restore") is None:
        raise BackupError("pg_restore is not installed (PostgreSQL client tools are needed)")
    dsn, env = _libpq_target(settings)
    conn = await asyncpg.connect(dsn, password=env.get("PGPASSWORD"))
    try:
        existing = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('public', 'console')"
        )
    finally:
        await conn.close()
    if existing:
        raise BackupError(
            "the database named by NAZAHA_DATABASE_URL is not empty: restore into a new, empty database"
        )
    process = await asyncio.create_subprocess_exec(
        "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
        f"--dbname={dsn}", str(dump),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"pg_restore failed: {err.decode(errors='replace').strip()[:500]}")


async def _pg_counts(settings: Settings) -> dict[str, int]:
    import asyncpg

    dsn, env = _libpq_target(settings)
    conn = await asyncpg.connect(dsn, password=env.get("PGPASSWORD"))
    try:
        counts = {}
        for row in await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('public', 'console') AND table_type = 'BASE TABLE'"
        ):
            schema, name = row["table_schema"], row["table_name"]
            key = name if schema == "public" else f"{schema}.{name}"
            counts[key] = await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{name}"')
        return counts
    finally:
        await conn.close()


# --------------------------------------------------------------------------- purge log


def _purge_log_from_rows(rows: Iterable[tuple]) -> PurgeLog:
    entries: dict[str, dt.date] = {}
    for report_hash, purged_on in rows:
        day = purged_on if isinstance(purged_on, dt.date) else dt.date.fromisoformat(str(purged_on)[:10])
        entries[str(report_hash)] = day
    return PurgeLog(entries)


def _purge_log_document(log: PurgeLog) -> dict[str, Any]:
    return {
        "format": PURGE_LOG_FORMAT,
        "version": FORMAT_VERSION,
        "entries": [
            {"report_hash": key, "purged_on": day.isoformat()} for key, day in sorted(log.entries.items())
        ],
    }


def write_purge_log(log: PurgeLog, path: Path) -> None:
    """Write ``log`` as JSON to a new file ``path`` (0600); ``FileExistsError`` if it exists."""
    _write_json(Path(path), _purge_log_document(log))


def read_purge_log(path: Path) -> PurgeLog:
    """Read a purge log file (``BackupError`` if it is not one)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"cannot read the purge log {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != PURGE_LOG_FORMAT or doc.get("version") != FORMAT_VERSION:
        raise BackupError(f"{path} is not a Nazaha purge log")
    entries: dict[str, dt.date] = {}
    try:
        for entry in doc["entries"]:
            key = str(entry["report_hash"])
            if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
                raise ValueError("bad hash")
            entries[key] = dt.date.fromisoformat(entry["purged_on"])
    except (KeyError, TypeError, ValueError):
        raise BackupError(f"{path} is not a valid purge log") from None
    return PurgeLog(entries)


async def export_purge_log(settings: Settings, out: Path) -> int:
    """Write the live console store's purge log to ``out`` (a new file); returns its size
    in entries. Hashes and days only: nothing in it names a case without the console secret."""
    from nazaha.storage.console_db import console_db_path, create_console_engine

    if _sqlite_path(settings) is not None and not console_db_path(settings.effective_console_dir).is_file():
        raise BackupError(f"no console store in {settings.effective_console_dir}")
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT report_hash, purged_on FROM console.purge_log"))).all()
    finally:
        await engine.dispose()
    log = _purge_log_from_rows(rows)
    try:
        write_purge_log(log, Path(out))
    except FileExistsError:
        raise BackupError(f"{out} already exists; refusing to overwrite it") from None
    return len(log.entries)


# --------------------------------------------------------------------------- backup


def _copy_blobs(root: Path, dest_root: Path, evidence: Sequence[tuple]) -> tuple[dict[str, str], list[str]]:
    """Copy the blobs the database copy refers to; ``(files, missing)`` where files maps
    ``blobs/<report>/<file>.<variant>`` to its SHA-256."""
    store = BlobStore(root)
    files: dict[str, str] = {}
    missing: list[str] = []
    for report_id, file_id, has_clean in evidence:
        for variant in sorted(VARIANTS):
            try:
                source = store.path(report_id, file_id, variant)
            except ValueError:
                continue
            name = f"blobs/{report_id}/{file_id}.{variant}"
            expected = variant == "original" or bool(has_clean)
            try:
                _copy_file(source, dest_root / name)
            except FileNotFoundError:
                if expected:
                    missing.append(name)
                continue
            files[name] = _sha256_file(dest_root / name)
    return files, missing


async def make_backup(
    settings: Settings,
    dest: Path,
    *,
    include_console_secret: bool = False,
    include_bot_secrets: bool = False,
) -> BackupResult:
    """Back up the installation ``settings`` names into ``dest`` (a new or empty directory,
    made 0700; files 0600). Online: the bot and the console may run meanwhile.

    The bot key and pepper are copied only with ``include_bot_secrets``, the console secret
    only with ``include_console_secret`` (it protects the staff keys in the console's store:
    a backup holding both gives up that protection). ``BackupError`` with the reason if
    ``dest`` is not empty or a store is missing.
    """
    dest = Path(dest)
    _prepare_empty_dir(dest, "the backup destination")
    paths = KeyPaths.for_data_dir(settings.data_dir)
    console_dir = settings.effective_console_dir
    data_out, console_out = dest / "data", dest / "console"
    _mkdir_private(data_out)
    _mkdir_private(console_out)
    files: dict[str, str] = {}
    versions: dict[str, str] = {
        "nazaha": _nazaha_version(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }

    sqlite_db = _sqlite_path(settings)
    if sqlite_db is not None:
        backend = "sqlite"
        # The bot's database first, then the console's store: each one consistent.
        await asyncio.to_thread(_sqlite_copy, sqlite_db, data_out / _SQLITE_DUMP)
        store = console_dir / CONSOLE_DB_NAME
        console_copied = store.is_file()
        if console_copied:
            await asyncio.to_thread(_sqlite_copy, store, console_out / CONSOLE_DB_NAME)
        counts = _sqlite_counts(data_out / _SQLITE_DUMP)
        evidence = _sqlite_rows(data_out / _SQLITE_DUMP, _EVIDENCE_SQL)
        revision = _sqlite_scalar(data_out / _SQLITE_DUMP, "SELECT version_num FROM alembic_version")
        purge_log = PurgeLog({})
        if console_copied:
            counts.update(_sqlite_counts(console_out / CONSOLE_DB_NAME, "console."))
            purge_log = _purge_log_from_rows(_sqlite_rows(console_out / CONSOLE_DB_NAME, _PURGE_LOG_SQL))
            files[f"console/{CONSOLE_DB_NAME}"] = _sha256_file(console_out / CONSOLE_DB_NAME)
        files[f"data/{_SQLITE_DUMP}"] = _sha256_file(data_out / _SQLITE_DUMP)
    else:
        backend = "postgresql"
        counts, evidence, revision, purge_log = await _pg_backup(settings, data_out / _PG_DUMP)
        files[f"data/{_PG_DUMP}"] = _sha256_file(data_out / _PG_DUMP)
        versions["pg_dump"] = subprocess.run(
            ["pg_dump", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()

    # Blobs after the database: everything the copy refers to was on disk before it.
    from nazaha.bot.app import blob_root

    blob_files, missing = await asyncio.to_thread(_copy_blobs, blob_root(settings), data_out, evidence)
    files.update({f"data/{name}": digest for name, digest in blob_files.items()})

    # The team public key with its generation, and the signing key the bot pins.
    for public_file in (paths.team_public, paths.team_key_generation, paths.team_signing_public):
        if public_file.is_file():
            _copy_file(public_file, data_out / public_file.name)
            files[f"data/{public_file.name}"] = _sha256_file(data_out / public_file.name)
    heads = console_dir / _HEADS_DIR
    if heads.is_dir():
        for head in sorted(heads.iterdir()):
            if head.is_file() and not head.name.startswith("."):
                _copy_file(head, console_out / _HEADS_DIR / head.name)
                files[f"console/{_HEADS_DIR}/{head.name}"] = _sha256_file(console_out / _HEADS_DIR / head.name)

    secrets_copied: list[str] = []
    if include_console_secret:
        secret = console_dir / CONSOLE_SECRET_NAME
        if not secret.is_file():
            raise BackupError(f"no console secret in {console_dir}")
        _copy_file(secret, console_out / CONSOLE_SECRET_NAME)
        files[f"console/{CONSOLE_SECRET_NAME}"] = _sha256_file(console_out / CONSOLE_SECRET_NAME)
        secrets_copied.append("console secret")
    if include_bot_secrets:
        for path, what in ((paths.bot_key, "bot key"), (paths.pepper, "pepper")):
            if not path.is_file():
                raise BackupError(f"no {what} file at {path} (secrets given through the environment are not copied)")
            _copy_file(path, data_out / path.name)
            files[f"data/{path.name}"] = _sha256_file(data_out / path.name)
            secrets_copied.append(what)

    write_purge_log(purge_log, dest / PURGE_LOG_NAME)
    files[PURGE_LOG_NAME] = _sha256_file(dest / PURGE_LOG_NAME)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "backend": backend,
        "alembic_revision": revision,
        "versions": versions,
        "counts": {**counts, "blobs": len(blob_files)},
        "purge_log_entries": len(purge_log.entries),
        "secrets": secrets_copied,
        "missing_blobs": missing,
        "files": dict(sorted(files.items())),
    }
    _write_json(dest / MANIFEST_NAME, manifest)
    return BackupResult(dest, manifest)


# --------------------------------------------------------------------------- restore


def _load_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{src} holds no {MANIFEST_NAME}: not a Nazaha backup") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"cannot read {src / MANIFEST_NAME}: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"{src} is not a backup this version of Nazaha can restore")
    return manifest


def _verify_files(src: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names is there with its SHA-256; no other file is."""
    listed: dict[str, str] = manifest["files"]
    problems = []
    for name, digest in listed.items():
        path = src / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            problems.append(f"{name}: a path outside the backup")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256_file(path) != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    present = {
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
    }
    for extra in sorted(present - listed.keys()):
        problems.append(f"{extra}: not in the manifest")
    if problems:
        raise BackupError("the backup does not match its manifest:\n  " + "\n  ".join(problems))


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from nazaha.storage.migrations import alembic_config

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _read_console_secret(path: Path) -> bytes:
    data = Path(path).read_bytes()
    if len(data) != KEY_BYTES:
        raise BackupError(f"{path} is not a console secret ({KEY_BYTES} bytes)")
    return data


async def restore_backup(
    settings: Settings,
    src: Path,
    *,
    purge_logs: Sequence[Path] = (),
    console_secret_file: Path | None = None,
) -> RestoreResult:
    """Restore the backup in ``src`` onto the empty data dir and console dir ``settings``
    names (PostgreSQL: into the empty database ``NAZAHA_DATABASE_URL`` names), then purge
    again every case named in the backup's purge log or in ``purge_logs`` (newer ones).

    The console secret comes from the backup (if it was made with it) or from
    ``console_secret_file``; it is copied into the console dir. ``BackupError`` with the
    reason if a directory is not empty, a file does not match the manifest, the backup is
    from a newer schema, or a purge log must be applied without the console secret.
    """
    src = Path(src)
    manifest = _load_manifest(src)
    _verify_files(src, manifest)
    revision = manifest.get("alembic_revision")
    if revision is not None and revision not in _known_revisions():
        raise BackupError(
            f"the backup's database is at migration {revision}, unknown to this version of "
            "Nazaha: restore it with the version that made it"
        )
    logs = [read_purge_log(path) for path in purge_logs]

    data_dir, console_dir = Path(settings.data_dir), Path(settings.effective_console_dir)
    for directory, what in ((data_dir, "the data dir"), (console_dir, "the console dir")):
        if directory.exists() and not _is_empty_dir(directory):
            raise BackupError(f"{what} {directory} is not empty: restore onto an empty one")

    listed: dict[str, str] = manifest["files"]
    secret_in_backup = f"console/{CONSOLE_SECRET_NAME}" in listed
    if console_secret_file is not None:
        console_secret: bytes | None = _read_console_secret(console_secret_file)
    elif secret_in_backup:
        console_secret = _read_console_secret(src / "console" / CONSOLE_SECRET_NAME)
    else:
        console_secret = None
    backup_log = read_purge_log(src / PURGE_LOG_NAME)
    purge_log = backup_log
    for log in logs:
        purge_log = purge_log.merged(log)
    if purge_log.entries and console_secret is None:
        raise BackupError(
            "purged cases must be purged again, and their hashes are keyed with the console "
            "secret: pass --console-secret FILE (the backup was made without it)"
        )

    backend = manifest["backend"]
    sqlite_db = _sqlite_path(settings)
    if (backend == "sqlite") != (sqlite_db is not None):
        raise BackupError(
            f"the backup is of a {backend} database; set NAZAHA_DATABASE_URL accordingly"
        )
    _mkdir_private(data_dir)
    _mkdir_private(console_dir)
    if backend == "sqlite":
        if sqlite_db.exists():
            raise BackupError(f"{sqlite_db} already exists: restore onto an empty data dir")
        _copy_file(src / "data" / _SQLITE_DUMP, sqlite_db)
        if f"console/{CONSOLE_DB_NAME}" in listed:
            _copy_file(src / "console" / CONSOLE_DB_NAME, console_dir / CONSOLE_DB_NAME)
        counts = _sqlite_counts(sqlite_db)
        if (console_dir / CONSOLE_DB_NAME).is_file():
            counts.update(_sqlite_counts(console_dir / CONSOLE_DB_NAME, "console."))
    else:
        await _pg_restore(settings, src / "data" / _PG_DUMP)
        counts = await _pg_counts(settings)
    expected = {k: v for k, v in manifest["counts"].items() if k != "blobs"}
    if {k: counts.get(k) for k in expected} != expected:
        raise BackupError("the restored database's row counts differ from the manifest's")

    restored_secret = restored_bot = False
    for name, digest in listed.items():
        top, _, rest = name.partition("/")
        if top == "data" and rest not in (_SQLITE_DUMP, _PG_DUMP):
            mode = _PUBLIC_MODE if rest in ("team-public.key", "team-key.generation", "team-signing.pub") else _FILE_MODE
            _copy_file(src / name, data_dir / rest, mode)
            restored_bot = restored_bot or rest in ("bot.key", "pepper.key")
        elif top == "console" and rest not in (CONSOLE_DB_NAME, CONSOLE_SECRET_NAME):
            _copy_file(src / name, console_dir / rest)
    if console_secret is not None:
        secret_path = console_dir / CONSOLE_SECRET_NAME
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            os.write(fd, console_secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        restored_secret = True

    purged, orphans = await _purge_again(settings, console_secret, purge_log)
    return RestoreResult(
        orphaned_console_cases=orphans,
        data_dir=data_dir,
        console_dir=console_dir,
        purged=purged,
        purge_log_entries=len(purge_log.entries),
        missing_blobs=list(manifest.get("missing_blobs", [])),
        console_secret_restored=restored_secret,
        bot_secrets_restored=restored_bot,
    )


# Console rows of a case, by the column that names the report (case_links: both ends).
async def _purge_again(
    settings: Settings, console_secret: bytes | None, purge_log: PurgeLog
) -> tuple[int, int]:
    """Delete every restored case whose purge hash is in ``purge_log``: its bot rows (the
    report and, by cascade, fields, thread, evidence, notification links), its console rows
    and its blobs, after adding the content-free aggregate of each one that was closed in the
    backup (as its purge did in the lost store); record the whole log in the restored store. Then delete the console rows
    of reports the bot's copy does not hold (SQLite: reports that arrived between the copy
    of the bot's database and that of the console's store). Returns ``(purged, orphans)``."""
    from sqlalchemy import select

    from nazaha.bot.app import blob_root
    from nazaha.services.purge import (
        CONSOLE_CASE_TABLES,
        add_to_aggregates,
        case_columns,
        delete_bot_rows,
        delete_console_rows,
        forget,
        purgeable,
    )
    from nazaha.storage.console_db import create_console_engine, prepare_console_store
    from nazaha.storage.console_models import PurgeLogEntry
    from nazaha.storage.database import create_sessionmaker, write_session
    from nazaha.storage.models import Report

    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    purged: list[str] = []
    try:
        await prepare_console_store(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            report_ids = set((await session.scalars(select(Report.id))).all())
            console_ids: set[str] = set()
            for table in CONSOLE_CASE_TABLES:
                for column in case_columns(table):
                    console_ids.update((await session.scalars(select(column).distinct())).all())
        doomed = []
        if console_secret is not None:
            doomed = sorted(rid for rid in report_ids if purge_hash(console_secret, rid) in purge_log.entries)
        orphans = sorted(console_ids - report_ids)
        async with write_session(sessionmaker) as session:
            # A case closed when the backup was made gets the aggregate its purge gave it
            # in the lost store (the backup predates that purge), so its figures stay.
            for row in await purgeable(session, doomed) if doomed else ():
                await add_to_aggregates(session, row)
            if doomed or orphans:
                await delete_console_rows(session, doomed + orphans)
            if doomed:
                await delete_bot_rows(session, doomed)
                purged.extend(doomed)
            known = set((await session.scalars(select(PurgeLogEntry.report_hash))).all())
            session.add_all(
                PurgeLogEntry(report_hash=report_hash, purged_on=day)
                for report_hash, day in sorted(purge_log.entries.items())
                if report_hash not in known
            )
        blobs = BlobStore(blob_root(settings))
        for report_id in purged:
            blobs.delete_report(report_id)
        if engine.dialect.name == "sqlite" or purged:
            await forget(engine)  # SQLite: both WAL files truncated; PostgreSQL: VACUUM
    finally:
        await engine.dispose()
    return len(purged), len(orphans)
