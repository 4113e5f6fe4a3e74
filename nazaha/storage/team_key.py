"""The team public key the bot wraps new reports to, and how it follows a rotation.

After a team-key rotation (nazaha/services/key_rotation.py) the database's
``system_settings`` hold the new team public key, its *generation* (1 at the first rotation,
one more at each), the *next* signing public key, and the signature over the three by the
signing key the bots have pinned. A bot accepts the new key only if that signature verifies
with the signing public key pinned in its data dir (``team-signing.pub``, written by
``nazaha init``) and the generation is not below the one it holds (``team-key.generation``,
0 before any rotation); it then pins the next signing key instead. Whoever can write the
database but not the bot host can therefore neither make the bot seal reports to a key of
their own, nor roll it back to a retired key that was validly signed once, nor use the
signing key of an old (leaked) recovery file: that key is no longer pinned.

A bot checks the database periodically (no restart needed) and, inside the write
transaction of every report and notification link it stores, whether the key moved on (so
nothing is committed wrapped to a retired key). On acceptance it rewrites its data dir's
``team-key.generation``, ``team-public.key`` and then ``team-signing.pub`` (in that order:
after a crash in between, the next start verifies the same publication with the pin still
in place and finishes the job, and an older key stays refused).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import SIGNING_PUBLIC_BYTES, TeamPublicKey, verify_team_public_key
from nazaha.storage.models import SystemSetting

log = logging.getLogger(__name__)

SETTING_TEAM_PUBLIC_KEY = "team_public_key"
SETTING_TEAM_KEY_ID = "team_key_id"
SETTING_TEAM_KEY_SIGNATURE = "team_key_signature"
SETTING_TEAM_KEY_GENERATION = "team_key_generation"
SETTING_NEXT_SIGNING_KEY = "team_next_signing_key"
_PUBLISHED = (
    SETTING_TEAM_PUBLIC_KEY, SETTING_TEAM_KEY_SIGNATURE, SETTING_TEAM_KEY_GENERATION, SETTING_NEXT_SIGNING_KEY,
)


def read_signing_pin(path: Path | None) -> bytes | None:
    """The pinned signing public key (32 bytes) from ``path``, or ``None`` if there is no
    such file. ``ValueError`` if the file is not 32 bytes."""
    if path is None:
        return None
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) != SIGNING_PUBLIC_BYTES:
        raise ValueError("the pinned team signing key is not 32 bytes")
    return raw


def read_generation(path: Path | None) -> int:
    """The team key generation a bot holds (its data dir's ``team-key.generation``); 0 if
    there is no such file. ``ValueError`` if it is not a non-negative integer."""
    if path is None:
        return 0
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit():
        raise ValueError("the team key generation file is not a number")
    return int(text)


def parse_generation(value: bytes | None) -> int | None:
    """A published generation (ASCII digits) as an int, ``None`` if absent or malformed."""
    if value is None:
        return None
    text = bytes(value).decode("ascii", "replace")
    if not text.isdigit() or len(text) > 15:  # generations stay far below 2**53
        return None
    return int(text)


def write_bot_key_files(
    generation_path: Path, public_path: Path, pin_path: Path, public: TeamPublicKey, generation: int, pin: bytes
) -> None:
    """Write a bot host's team key files in the crash-safe order (generation, key, pin).
    Used by a bot that accepted a publication, and by the rotation itself on a host that
    holds the bot's data dir: then the bot takes the new key from its own files, which no
    database writer can touch (:meth:`PublishedTeamKey.refresh`). ``OSError``."""
    _write_atomically(generation_path, f"{generation}\n".encode("ascii"))
    _write_atomically(public_path, public.to_bytes())
    _write_atomically(pin_path, pin)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


class PublishedTeamKey:
    """The current team public key of a bot process, and its generation.

    ``signing_pin`` is the pinned signing public key, or ``None`` (an installation made
    before rotation existed); then ``pin_path`` is read again at each check until the file
    appears. ``generation_path``, ``public_path`` and ``pin_path`` (the data dir's
    ``team-key.generation``, ``team-public.key`` and ``team-signing.pub``) are rewritten
    when a new key is accepted.
    """

    def __init__(
        self,
        current: TeamPublicKey,
        *,
        generation: int = 0,
        signing_pin: bytes | None = None,
        pin_path: Path | None = None,
        public_path: Path | None = None,
        generation_path: Path | None = None,
    ) -> None:
        self._current = current
        self._generation = generation
        self._pin = signing_pin
        self._pin_path = pin_path
        self._public_path = public_path
        self._generation_path = generation_path

    @property
    def current(self) -> TeamPublicKey:
        return self._current

    @property
    def generation(self) -> int:
        return self._generation

    def _signing_pin(self) -> bytes | None:
        if self._pin is None and self._pin_path is not None:
            try:
                self._pin = read_signing_pin(self._pin_path)
            except ValueError:
                log.error("the pinned team signing key file is malformed; no new team key is accepted")
        return self._pin

    def accept(self, published: dict[str, bytes]) -> bool:
        """Switch to the published key (``system_settings`` rows by name) if the pinned
        signing key signed it (with its generation and the next signing key) and it is not
        older than the one held, then pin the next signing key; True if the published key is
        (now) the current one."""
        generation = parse_generation(published.get(SETTING_TEAM_KEY_GENERATION))
        next_signing = published.get(SETTING_NEXT_SIGNING_KEY)
        try:
            public = TeamPublicKey.from_bytes(bytes(published.get(SETTING_TEAM_PUBLIC_KEY) or b""))
        except ValueError:
            public = None
        if (
            public is not None and next_signing is not None and generation == self._generation
            and public.key_id == self._current.key_id and next_signing == self._pin
        ):
            return True  # accepted before: the pin has moved on to the next signing key
        pin = self._signing_pin()
        if (
            public is None or generation is None or not next_signing or pin is None
            or generation < self._generation  # a rollback to a key retired since
            or not verify_team_public_key(
                pin, public, generation, next_signing, published.get(SETTING_TEAM_KEY_SIGNATURE) or b""
            )
        ):
            # ERROR: after a genuine rotation this means reports keep going to a retired key
            # (a wrong pin on this host); otherwise someone wrote the database.
            log.error(
                "the database names a team key that the pinned signing key did not sign, or an "
                "older one; kept the current one"
            )
            return False
        self._current, self._generation, self._pin = public, generation, bytes(next_signing)
        self._write_files()
        log.info("accepted a new team public key")
        return True

    def _write_files(self) -> None:
        try:
            if self._generation_path is not None:  # first: it is what refuses older keys
                _write_atomically(self._generation_path, f"{self._generation}\n".encode("ascii"))
            if self._public_path is not None:
                _write_atomically(self._public_path, self._current.to_bytes())
            if self._pin_path is not None and self._pin is not None:  # last (see the module)
                _write_atomically(self._pin_path, self._pin)
        except OSError:
            log.warning("could not rewrite the team key files; the database's signed key is used")

    def sync_from_files(self) -> bool:
        """Take a newer generation from this host's own files (written there by the rotation
        itself when it ran on this host): the key, generation and pin no database writer can
        change. True if the current key changed. Never goes back to an older generation."""
        if self._generation_path is None or self._public_path is None or self._pin_path is None:
            return False
        try:
            generation = read_generation(self._generation_path)
            if generation <= self._generation:
                return False
            public = TeamPublicKey.from_bytes(self._public_path.read_bytes())
            pin = read_signing_pin(self._pin_path)
        except (OSError, ValueError):
            return False
        if pin is None:
            return False
        changed = public.key_id != self._current.key_id
        self._current, self._generation, self._pin = public, generation, pin
        if changed:
            log.info("took the new team public key from this host's files")
        return changed

    async def _published(self, session: AsyncSession) -> dict[str, bytes]:
        rows = await session.execute(
            select(SystemSetting.name, SystemSetting.value).where(SystemSetting.name.in_(_PUBLISHED))
        )
        return {name: bytes(value) for name, value in rows.all()}

    async def check_in(self, session: AsyncSession) -> TeamPublicKey:
        """Inside a write transaction: the key to wrap to now. Reads the published key id
        (with a share lock on PostgreSQL, so a rotation's publication and this transaction
        are ordered) and follows a properly signed newer key."""
        published = await session.scalar(
            select(SystemSetting.value)
            .where(SystemSetting.name == SETTING_TEAM_KEY_ID)
            .with_for_update(read=True)
        )
        if published is not None and bytes(published).decode("ascii", "replace") != self._current.key_id:
            self.sync_from_files()
            if bytes(published).decode("ascii", "replace") != self._current.key_id:
                self.accept(await self._published(session))
        return self._current

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
        """Read the published key and follow it if it moved on and is signed; True if the
        current key changed. Cheap: one small read (and this host's files first)."""
        synced = self.sync_from_files()
        async with sessionmaker() as session:
            published_id = await session.scalar(
                select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID)
            )
            if published_id is None or bytes(published_id).decode("ascii", "replace") == self._current.key_id:
                return synced
            published = await self._published(session)
        before = self._current.key_id
        self.accept(published)
        return synced or self._current.key_id != before


__all__ = [
    "PublishedTeamKey",
    "SETTING_NEXT_SIGNING_KEY",
    "SETTING_TEAM_KEY_GENERATION",
    "SETTING_TEAM_KEY_ID",
    "SETTING_TEAM_KEY_SIGNATURE",
    "SETTING_TEAM_PUBLIC_KEY",
    "parse_generation",
    "read_generation",
    "read_signing_pin",
    "write_bot_key_files",
]
