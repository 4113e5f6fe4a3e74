"""Secrets that live outside the database, as files in the data dir.

* ``bot.key``         32 random bytes: the bot key (:class:`~nazaha.storage.crypto.BotKeyBox`)
* ``pepper.key``      32 random bytes: the pseudonym pepper
* ``team-public.key`` the team public key (raw bytes, 1216)

The team private key, sealed under the team passphrase (JSON, see
:func:`~nazaha.storage.crypto.seal_team_private_key`), is the **recovery file**: with its
passphrase it opens every report, so ``nazaha init`` writes it to a path the operator names,
outside the data dir, to be kept offline. Only ``nazaha demo`` keeps it in the data dir,
as ``team-recovery.key`` (:attr:`KeyPaths.team_recovery`).

The data dir belongs to the bot host, which may be seized: :func:`check_bot_host_data_dir`
refuses a data dir holding the recovery file, a passphrase file or the console's own store
(``console.db``).

Files are written atomically (temporary file, fsync, then an exclusive link or
``os.replace``) with mode 0600 (public key 0644); the data dir is 0700. Creation never
overwrites an existing key: if two processes race to create the bot secrets, both end up
with the one that was written first.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .crypto import (
    KDF_FLOOR,
    KDF_PRODUCTION,
    KEY_BYTES,
    KdfParams,
    TeamPrivateKey,
    TeamPublicKey,
    TeamSigningKey,
    open_team_private_key,
    open_team_recovery,
    seal_team_recovery,
)

__all__ = [
    "KeyPaths",
    "RecoveryFileRefused",
    "BotHostRefused",
    "check_recovery_file",
    "check_bot_host_data_dir",
    "ensure_bot_secrets",
    "rotate_bot_secrets",
    "load_bot_secrets",
    "create_team_key",
    "load_team_public_key",
    "load_team_private_key",
]

log = logging.getLogger(__name__)

_SECRET_MODE = 0o600
_PUBLIC_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class KeyPaths:
    data_dir: Path
    bot_key: Path
    pepper: Path
    team_public: Path
    team_signing_public: Path  # the pinned team signing key (Ed25519, 32 bytes)
    team_key_generation: Path  # the generation of team-public.key (0 before any rotation)
    team_recovery: Path  # the demo's recovery file; a real deployment keeps it offline
    console_db: Path  # the console's own store (staff keys): never on the bot host

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike[str]) -> KeyPaths:
        d = Path(data_dir)
        return cls(
            data_dir=d,
            bot_key=d / "bot.key",
            pepper=d / "pepper.key",
            team_public=d / "team-public.key",
            team_signing_public=d / "team-signing.pub",
            team_key_generation=d / "team-key.generation",
            team_recovery=d / "team-recovery.key",
            console_db=d / "console.db",
        )


# --------------------------------------------------------------------------- file helpers


def _ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        try:
            os.chmod(directory, _DIR_MODE)
        except OSError:
            # e.g. a mounted volume we do not own; the key files themselves stay 0600.
            log.warning("could not restrict permissions of data dir %s to 0700", directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Atomically create ``path`` with ``data``; ``FileExistsError`` if it already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() publishes the complete file and fails if the name exists: atomic and
            # exclusive, so a concurrent creator cannot be overwritten.
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # Filesystem without hard links: fall back to replace (not exclusive).
            if path.exists():
                raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    _fsync_dir(path.parent)


def _read_secret_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT,
            f"{what} not found; run `nazaha init` (or set it through the environment)",
            str(path),
        ) from None
    if len(data) != KEY_BYTES:
        raise ValueError(f"{what} at {path} must be exactly {KEY_BYTES} bytes, found {len(data)}")
    return data


def _ensure_secret_file(path: Path, what: str) -> bytes:
    if not path.exists():
        try:
            _write_new_file(path, os.urandom(KEY_BYTES), _SECRET_MODE)
        except FileExistsError:
            pass  # another process created it first: use theirs
    return _read_secret_file(path, what)


def _decode_b64_secret(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{what} must decode to exactly {KEY_BYTES} bytes, found {len(raw)}")
    return raw


# --------------------------------------------------------------------------- bot secrets


def ensure_bot_secrets(paths: KeyPaths) -> tuple[bytes, bytes]:
    """Create the bot key and pepper if missing; return ``(bot_key, pepper)``.

    Raises ``ValueError`` if an existing file has the wrong size (never replaces it).
    """
    _ensure_private_dir(paths.data_dir)
    bot_key = _ensure_secret_file(paths.bot_key, "bot key")
    pepper = _ensure_secret_file(paths.pepper, "pepper")
    return bot_key, pepper


def rotate_bot_secrets(paths: KeyPaths) -> None:
    """Replace the bot key and pepper files with new random secrets (atomically, one file
    at a time). Whatever the old ones sealed or named can no longer be opened or linked by
    whoever takes the new ones; callers delete what the old ones protected first."""
    _ensure_private_dir(paths.data_dir)
    for path in (paths.bot_key, paths.pepper):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _SECRET_MODE)
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    _fsync_dir(paths.data_dir)


def load_bot_secrets(
    paths: KeyPaths, bot_key_b64: str | None = None, pepper_b64: str | None = None
) -> tuple[bytes, bytes]:
    """Return ``(bot_key, pepper)`` from the overrides (base64, e.g. from ``NAZAHA_BOT_KEY`` /
    ``NAZAHA_PEPPER``) or else from the files; ``FileNotFoundError`` if a file is missing."""
    if bot_key_b64:
        bot_key = _decode_b64_secret(bot_key_b64, "NAZAHA_BOT_KEY")
    else:
        bot_key = _read_secret_file(paths.bot_key, "bot key")
    if pepper_b64:
        pepper = _decode_b64_secret(pepper_b64, "NAZAHA_PEPPER")
    else:
        pepper = _read_secret_file(paths.pepper, "pepper")
    if bot_key == pepper:
        raise ValueError("the bot key and the pepper must be different secrets")
    return bot_key, pepper


# --------------------------------------------------------------------------- team key


class RecoveryFileRefused(ValueError):
    """The path named for the team recovery file is refused; ``str(exc)`` says why."""


def check_recovery_file(
    paths: KeyPaths, recovery_file: str | os.PathLike[str], *, allow_in_data_dir: bool = False
) -> Path:
    """Return the absolute path where the recovery file may be created.

    Raises :class:`RecoveryFileRefused` if the path is inside the data dir (unless
    ``allow_in_data_dir``, the demo), if something already exists there (never
    overwritten), or if its directory does not exist.
    """
    target = Path(recovery_file).expanduser().resolve()
    data_dir = paths.data_dir.expanduser().resolve()
    if not allow_in_data_dir and target.is_relative_to(data_dir):
        raise RecoveryFileRefused(
            f"the recovery file {target} would be inside the data dir {data_dir}: the data dir "
            "is on the bot host, and with its passphrase the recovery file opens every report. "
            "Name a path on offline storage (e.g. a USB key) instead"
        )
    if target.exists() or target.is_symlink():
        raise RecoveryFileRefused(f"{target} already exists; refusing to overwrite it")
    if not target.parent.is_dir() and target.parent != data_dir:  # the data dir is made
        raise RecoveryFileRefused(f"the directory {target.parent} does not exist")
    return target


def create_team_key(
    paths: KeyPaths,
    passphrase: str,
    params: KdfParams = KDF_PRODUCTION,
    floor: KdfParams = KDF_FLOOR,
    *,
    recovery_file: str | os.PathLike[str],
    allow_in_data_dir: bool = False,
) -> TeamPublicKey:
    """Generate the team key and the team signing key; write both, sealed, to
    ``recovery_file`` (0600) then ``team-public.key`` and the signing key's public half
    ``team-signing.pub`` (0644, what the bot pins) in the data dir.

    ``FileExistsError`` if the team public key already exists (the recovery file may have
    been moved offline, so the public key alone counts); :class:`RecoveryFileRefused` for a
    path :func:`check_recovery_file` refuses. The passphrase's strength is the caller's
    business (:mod:`nazaha.storage.passphrases`).
    """
    params.check_at_least(floor)
    if paths.team_public.exists():
        raise FileExistsError(
            errno.EEXIST, "a team key already exists; refusing to replace it", str(paths.team_public)
        )
    recovery = check_recovery_file(paths, recovery_file, allow_in_data_dir=allow_in_data_dir)
    _ensure_private_dir(paths.data_dir)
    private = TeamPrivateKey.generate()
    signing = TeamSigningKey.generate()
    blob = seal_team_recovery(private, signing, passphrase, params, floor)
    # Prove the recovery copy opens before anything is ever encrypted to this key.
    opened, opened_signing = open_team_recovery(blob, passphrase, floor)
    if opened.key_id != private.key_id or opened_signing is None:
        raise RuntimeError("sealed team key did not round-trip")
    public = private.public_key()
    # Recovery first: a public key without its recovery copy would make reports unreadable.
    _write_new_file(recovery, blob, _SECRET_MODE)
    try:
        _write_new_file(paths.team_public, public.to_bytes(), _PUBLIC_MODE)
        paths.team_signing_public.unlink(missing_ok=True)  # only ever next to its team key
        _write_new_file(paths.team_signing_public, signing.public_bytes(), _PUBLIC_MODE)
    except FileExistsError:
        # Lost a race with another creator: ours must not be left behind half-installed.
        recovery.unlink(missing_ok=True)
        raise
    return public


# --------------------------------------------------------------------------- bot host


class BotHostRefused(RuntimeError):
    """The data dir holds something the bot host must never hold.

    ``findings`` lists ``(path, why)`` pairs; ``str(exc)`` names each file and why.
    """

    def __init__(self, findings: list[tuple[Path, str]]) -> None:
        self.findings = findings
        lines = "\n".join(f"  {path}: {why}" for path, why in findings)
        super().__init__(
            "refusing to start: the bot host may be seized, and its data dir holds\n"
            f"{lines}\nMove these off this machine (`nazaha demo` alone keeps everything "
            "on one machine)."
        )


_RECOVERY_WHY = "the team recovery key: with its passphrase it opens every report; keep it offline"
_PASSPHRASE_WHY = "a passphrase file: with the recovery key it opens every report"
_CONSOLE_WHY = (
    "the console's own store (staff keys): the console runs on another machine, "
    "never on the bot host"
)
_SNIFF_MAX_BYTES = 64 * 1024


def _looks_like_sealed_team_key(path: Path) -> bool:
    """A renamed recovery file: JSON with the sealed team key's fields, even padded with
    whitespace (it still opens) or mentioned anywhere in the first bytes."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_MAX_BYTES)
    except OSError:
        return False
    try:
        doc = json.loads(head.strip())
        if isinstance(doc, dict) and {"kdf", "salt", "key_id", "sealed"} <= doc.keys():
            return True
    except ValueError:
        pass
    return all(f'"{field}"'.encode() in head for field in ("kdf", "salt", "key_id", "sealed"))


# Names that say "a secret of the team or the console" (compared case-insensitively).
_SECRET_NAME_WORDS = ("recovery", "passphrase", "password", "passwd", "team-key", "team_key", "teamkey")
# The data dir's own subfolders that hold only what the bot writes (not searched: large).
_BOT_SUBDIRS = {"blobs"}


def _walk_data_dir(root: Path, limit: int = 10_000) -> list[Path]:
    """Every file and folder under ``root`` (symlinks followed once, the blob store
    skipped), at most ``limit`` entries."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack and len(found) < limit:
        folder = stack.pop()
        try:
            status = folder.stat()
            if (status.st_dev, status.st_ino) in seen:
                continue
            seen.add((status.st_dev, status.st_ino))
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if folder == root and entry.name in _BOT_SUBDIRS:
                continue
            found.append(entry)
            if entry.is_dir():  # follows a symlink to a folder, e.g. a mounted USB key
                stack.append(entry)
    return found


def check_bot_host_data_dir(data_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`BotHostRefused` if ``data_dir`` (searched through its subfolders and
    the folders its symlinks point to, the blob store excepted) holds the team recovery key
    (by name, or any file holding a sealed team key, renamed or padded), a passphrase or
    password file (any name with "passphrase", "password", "recovery" or "team-key") or the
    console's store (``console.db`` and its ``-wal``/``-shm``/``-journal``, the console
    secret, audit heads). A missing data
    dir passes. This is a guard against mistakes, not against a determined operator: a
    compressed or encrypted copy of the key would pass (docs/security.md).

    Not called by ``nazaha demo``, where everything shares one machine by design.
    """
    paths = KeyPaths.for_data_dir(data_dir)
    if not paths.data_dir.is_dir():
        return
    known = {paths.bot_key, paths.pepper, paths.team_public, paths.team_signing_public, paths.team_key_generation}
    findings: list[tuple[Path, str]] = []
    for entry in _walk_data_dir(paths.data_dir):
        name = entry.name.casefold()
        if entry in known:
            continue
        if name == paths.team_recovery.name or "recovery" in name and entry.is_file():
            findings.append((entry, _RECOVERY_WHY))
        elif any(word in name for word in _SECRET_NAME_WORDS):
            findings.append((entry, _PASSPHRASE_WHY))
        elif (
            name == paths.console_db.name
            or name.startswith(paths.console_db.name + "-")
            or name == "console-secret.key"
            or name.startswith("audit-head-")
        ):
            findings.append((entry, _CONSOLE_WHY))
        elif _looks_like_sealed_team_key(entry):
            findings.append((entry, _RECOVERY_WHY))
    if findings:
        raise BotHostRefused(findings)


def load_team_public_key(paths: KeyPaths) -> TeamPublicKey:
    try:
        raw = paths.team_public.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "team public key not found; run `nazaha init`", str(paths.team_public)
        ) from None
    return TeamPublicKey.from_bytes(raw)


def load_team_private_key(
    path: Path, passphrase: str, floor: KdfParams = KDF_FLOOR
) -> TeamPrivateKey:
    """Open a sealed team private key file (e.g. the recovery copy). Raises
    ``WrongPassphrase`` / ``WeakKdfParameters`` / ``TamperedData`` from the crypto module."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "sealed team key file not found", str(path)) from None
    return open_team_private_key(blob, passphrase, floor)


# --------------------------------------------------------------------------- rotation


def write_recovery_file(target: Path, blob: bytes, *, replace: bool = False) -> None:
    """Write a sealed recovery file (0600). A new file only, unless ``replace`` (the demo's
    own copy in its data dir, swapped atomically)."""
    if not replace:
        _write_new_file(target, blob, _SECRET_MODE)
        return
    temporary = target.with_name(target.name + ".new")
    temporary.unlink(missing_ok=True)
    _write_new_file(temporary, blob, _SECRET_MODE)
    os.replace(temporary, target)
    _fsync_dir(target.parent)


def pin_signing_key(paths: KeyPaths, signing_public: bytes) -> None:
    """Write ``team-signing.pub`` for an installation made before the team signing key
    existed. ``FileExistsError`` if another signing key is pinned there already."""
    if paths.team_signing_public.exists():
        if paths.team_signing_public.read_bytes() != signing_public:
            raise FileExistsError(
                errno.EEXIST, "another team signing key is pinned", str(paths.team_signing_public)
            )
        return
    _write_new_file(paths.team_signing_public, signing_public, _PUBLIC_MODE)


def pin_rotation_on_this_host(
    paths: KeyPaths, public: TeamPublicKey, generation: int, next_signing_public: bytes
) -> bool:
    """On a host that holds the bot's data dir (one machine, or the demo), write the new
    team key, its generation and the next signing key into the bot's own files right after
    a rotation starts: the bot then takes them from there, whatever the database says (a
    writer who also holds an old recovery file cannot race the publication). False if the
    data dir is not here. ``OSError`` if it is and cannot be written."""
    from nazaha.storage.team_key import write_bot_key_files

    if not paths.team_public.exists():
        return False
    write_bot_key_files(
        paths.team_key_generation, paths.team_public, paths.team_signing_public, public, generation,
        next_signing_public,
    )
    return True


__all__ += ["pin_rotation_on_this_host", "pin_signing_key", "write_recovery_file"]
