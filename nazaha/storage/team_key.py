"""The team public key the bot wraps new reports to, and how it follows a rotation.

After a team-key rotation (nazaha/services/key_rotation.py) the database's
``system_settings`` hold the new team public key and its signature by the team signing key.
A bot accepts the new key only if that signature verifies with the signing public key it
has pinned in its data dir (``team-signing.pub``, written by ``nazaha init``), so whoever
can write the database but not the bot host cannot make the bot seal reports to a key of
their own. It checks the database periodically (no restart needed) and, inside the write
transaction of every report it stores, whether the key moved on (so no report is committed
wrapped to a retired key). On acceptance it rewrites ``team-public.key`` in the data dir.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import (
    SIGNING_PUBLIC_BYTES,
    TeamPublicKey,
    verify_team_public_key,
)
from nazaha.storage.models import SystemSetting

log = logging.getLogger(__name__)

SETTING_TEAM_PUBLIC_KEY = "team_public_key"
SETTING_TEAM_KEY_ID = "team_key_id"
SETTING_TEAM_KEY_SIGNATURE = "team_key_signature"


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


class PublishedTeamKey:
    """The current team public key of a bot process.

    ``signing_pin`` is the pinned signing public key, or ``None`` (an installation made
    before rotation existed); then ``pin_path`` is read again at each check until the file
    appears, and from then on it stays pinned for the life of the process. ``public_path``
    (the data dir's ``team-public.key``) is rewritten when a new key is accepted.
    """

    def __init__(
        self,
        current: TeamPublicKey,
        *,
        signing_pin: bytes | None = None,
        pin_path: Path | None = None,
        public_path: Path | None = None,
    ) -> None:
        self._current = current
        self._pin = signing_pin
        self._pin_path = pin_path
        self._public_path = public_path

    @property
    def current(self) -> TeamPublicKey:
        return self._current

    def _signing_pin(self) -> bytes | None:
        if self._pin is None and self._pin_path is not None:
            try:
                self._pin = read_signing_pin(self._pin_path)
            except ValueError:
                log.error("the pinned team signing key file is malformed; no new team key is accepted")
        return self._pin

    def verified(self, public_bytes: bytes | None, signature: bytes | None) -> TeamPublicKey | None:
        """The key in ``public_bytes`` if the pinned signing key signed it, else ``None``."""
        pin = self._signing_pin()
        if pin is None or not public_bytes or not signature:
            return None
        try:
            public = TeamPublicKey.from_bytes(bytes(public_bytes))
        except ValueError:
            return None
        return public if verify_team_public_key(pin, public, bytes(signature)) else None

    def accept(self, public_bytes: bytes | None, signature: bytes | None) -> bool:
        """Switch to the key in ``public_bytes`` if it is properly signed; True if switched."""
        public = self.verified(public_bytes, signature)
        if public is None:
            log.warning("the database names a team key that the pinned signing key did not sign; kept the current one")
            return False
        if public.key_id != self._current.key_id:
            self._current = public
            self._write_public_file(public)
            log.info("accepted a new team public key")
        return True

    def _write_public_file(self, public: TeamPublicKey) -> None:
        if self._public_path is None:
            return
        temporary = self._public_path.with_name(self._public_path.name + ".new")
        try:
            temporary.write_bytes(public.to_bytes())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self._public_path)
        except OSError:
            log.warning("could not rewrite the team public key file; the database's signed key is used")

    async def check_in(self, session: AsyncSession) -> TeamPublicKey:
        """Inside a write transaction: the key to wrap to now. Reads the published key id
        (with a share lock on PostgreSQL, so a rotation's publication and this transaction
        are ordered) and follows a properly signed new key."""
        published = await session.scalar(
            select(SystemSetting.value)
            .where(SystemSetting.name == SETTING_TEAM_KEY_ID)
            .with_for_update(read=True)
        )
        if published is not None and bytes(published).decode("ascii") != self._current.key_id:
            rows = dict(
                (await session.execute(
                    select(SystemSetting.name, SystemSetting.value).where(
                        SystemSetting.name.in_((SETTING_TEAM_PUBLIC_KEY, SETTING_TEAM_KEY_SIGNATURE))
                    )
                )).all()
            )
            self.accept(rows.get(SETTING_TEAM_PUBLIC_KEY), rows.get(SETTING_TEAM_KEY_SIGNATURE))
        return self._current

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
        """Read the published key and follow it if it moved on and is signed; True if the
        current key changed. Cheap: one small read."""
        async with sessionmaker() as session:
            rows = dict(
                (await session.execute(
                    select(SystemSetting.name, SystemSetting.value).where(
                        SystemSetting.name.in_(
                            (SETTING_TEAM_KEY_ID, SETTING_TEAM_PUBLIC_KEY, SETTING_TEAM_KEY_SIGNATURE)
                        )
                    )
                )).all()
            )
        published = rows.get(SETTING_TEAM_KEY_ID)
        if published is None or bytes(published).decode("ascii") == self._current.key_id:
            return False
        before = self._current.key_id
        self.accept(rows.get(SETTING_TEAM_PUBLIC_KEY), rows.get(SETTING_TEAM_KEY_SIGNATURE))
        return self._current.key_id != before


__all__ = [
    "PublishedTeamKey",
    "SETTING_TEAM_KEY_ID",
    "SETTING_TEAM_KEY_SIGNATURE",
    "SETTING_TEAM_PUBLIC_KEY",
    "read_signing_pin",
]
