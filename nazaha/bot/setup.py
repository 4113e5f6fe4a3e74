"""`nazaha init`: data dir, database and keys, idempotently. No staff account, no password.

The team key is created once; its sealed private half (the recovery file) goes to a path
the operator names, outside the data dir, to be kept offline. Only ``nazaha demo``
(``settings.demo``) keeps it in the data dir.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nazaha.bot.settings import Settings
from nazaha.bot.upgrade import upgrade_data_dir
from nazaha.storage.crypto import KDF_PRODUCTION, KDF_TESTING, KdfParams
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import (
    KeyPaths,
    RecoveryFileRefused,
    check_recovery_file,
    create_team_key,
    ensure_bot_secrets,
    load_team_public_key,
)
from nazaha.storage.passphrases import check_passphrase
from nazaha.storage.reports import initialise_system

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitResult:
    created_team_key: bool
    recovery_file: Path | None  # where the recovery file was written, when created now


def kdf_params(settings: Settings) -> KdfParams:
    return KDF_TESTING if settings.kdf_profile == "testing" else KDF_PRODUCTION


async def initialise(
    settings: Settings,
    *,
    passphrase: str | None,
    recovery_file: str | os.PathLike[str] | None = None,
) -> InitResult:
    """Create what is missing; never overwrite a key that exists.

    ``passphrase`` and ``recovery_file`` are needed only when the team key does not exist
    yet (first run): the passphrase must pass
    :func:`~nazaha.storage.passphrases.check_passphrase` (``WeakPassphrase``), the recovery
    file must be outside the data dir and new (``RecoveryFileRefused``); both are checked
    before anything is written. In the demo the recovery file defaults to the data dir's
    ``team-recovery.key``.
    """
    from nazaha.bot.app import kdf_floor

    paths = KeyPaths.for_data_dir(settings.data_dir)
    create = not paths.team_public.exists()
    if create:
        if not passphrase:
            raise SystemExit("a passphrase for the team key is needed on first run")
        check_passphrase(passphrase)
        if recovery_file is None:
            if not settings.demo:
                raise RecoveryFileRefused(
                    "creating the team key needs a path for its recovery file, outside the data dir"
                )
            recovery_file = paths.team_recovery
        recovery_file = check_recovery_file(paths, recovery_file, allow_in_data_dir=settings.demo)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (settings.bot_key and settings.pepper):
        ensure_bot_secrets(paths)
    await upgrade_data_dir(settings)

    params = kdf_params(settings)
    written = None
    if create:
        create_team_key(
            paths,
            passphrase,
            params=params,
            floor=kdf_floor(settings),
            recovery_file=recovery_file,
            allow_in_data_dir=settings.demo,
        )
        written = recovery_file
    team_public = load_team_public_key(paths)

    engine = create_engine(settings.effective_database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        await initialise_system(sessionmaker, team_public, params)
        # The awareness library's files, so that the console lists them before the bot
        # first starts (the bot syncs them again at each start).
        from nazaha.awareness.library import sync_library
        from nazaha.bot.app import LOCALES_DIR

        await sync_library(sessionmaker, LOCALES_DIR)
    finally:
        await engine.dispose()
    return InitResult(create, written)
