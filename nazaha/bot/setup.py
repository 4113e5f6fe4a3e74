"""`nazaha init`: data dir, database, keys and the first admin, idempotently."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from nazaha.bot.settings import Settings
from nazaha.bot.upgrade import upgrade_data_dir
from nazaha.storage.crypto import (
    KDF_PRODUCTION,
    KDF_TESTING,
    KdfParams,
    hash_password,
    seal_team_private_key,
)
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import (
    KeyPaths,
    create_team_key,
    ensure_bot_secrets,
    load_team_private_key,
    load_team_public_key,
)
from nazaha.storage.reports import initialise_system

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitResult:
    created_team_key: bool
    admin_username: str | None
    admin_password: str | None  # shown once, only when the admin was created now


def kdf_params(settings: Settings) -> KdfParams:
    return KDF_TESTING if settings.kdf_profile == "testing" else KDF_PRODUCTION


async def initialise(
    settings: Settings,
    *,
    passphrase: str | None,
    admin_username: str = "admin",
    admin_password: str | None = None,
) -> InitResult:
    """Create what is missing; never overwrite a key that exists.

    ``passphrase`` protects the team key's recovery copy; it is needed only when the team
    key does not exist yet (first run).
    """
    from nazaha.bot.app import kdf_floor

    paths = KeyPaths.for_data_dir(settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (settings.bot_key and settings.pepper):
        ensure_bot_secrets(paths)
    await upgrade_data_dir(settings)

    params = kdf_params(settings)
    floor = kdf_floor(settings)
    created = False
    if not paths.team_public.exists():
        if not passphrase:
            raise SystemExit("a passphrase for the team key is needed on first run")
        create_team_key(paths, passphrase, params=params, floor=floor)
        created = True
    team_public = load_team_public_key(paths)

    engine = create_engine(settings.effective_database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        await initialise_system(sessionmaker, team_public, params)
        return InitResult(created, None, None)
    finally:
        await engine.dispose()
