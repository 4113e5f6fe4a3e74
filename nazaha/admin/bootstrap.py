"""The first administrator: `nazaha init`, `nazaha demo` and `nazaha invite-admin` print a
one-time invitation link (never a password). The passphrase-sealed team key is kept in the
console's store until that administrator types the team passphrase at enrolment, then
deleted (nazaha.services.accounts)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from nazaha.services.accounts import Accounts
from nazaha.storage.console_db import create_console_engine, ensure_console_secret, prepare_console_store
from nazaha.storage.console_models import StaffUser, TeamKeyGrant
from nazaha.storage.crypto import TamperedData
from nazaha.storage.database import create_sessionmaker, write_session


def _sealed_key_id(sealed_team_key: bytes) -> str:
    import json

    try:
        return str(json.loads(sealed_team_key.decode("utf-8"))["key_id"])
    except (ValueError, KeyError, UnicodeDecodeError):
        raise TamperedData("not a team recovery file") from None


async def first_admin_invitation(settings, recovery_file: Path | None, username: str = "admin") -> str | None:
    """A fresh invitation link for the first administrator, or ``None`` if an enrolled
    administrator already holds the team key (then admins invite from the console).

    ``recovery_file`` (the passphrase-sealed team key) is needed while nobody holds the key;
    :class:`FileNotFoundError` / :class:`TamperedData` if it is missing or not one."""
    from nazaha.bot.app import kdf_floor
    from nazaha.bot.setup import kdf_params

    console_dir = settings.effective_console_dir
    engine = create_console_engine(settings.effective_database_url, console_dir)
    try:
        await prepare_console_store(engine)
        accounts = Accounts(ensure_console_secret(console_dir), kdf_params(settings), kdf_floor(settings))
        async with write_session(create_sessionmaker(engine)) as session:
            granted_admin = await session.scalar(
                select(StaffUser.id)
                .join(TeamKeyGrant, TeamKeyGrant.user_id == StaffUser.id)
                .where(StaffUser.role == "admin", StaffUser.state == "active")
                .limit(1)
            )
            if granted_admin is not None:
                return None
            if recovery_file is None:
                raise FileNotFoundError("the team recovery file is needed for the first administrator")
            sealed = Path(recovery_file).read_bytes()
            await accounts.store_bootstrap(session, sealed, _sealed_key_id(sealed))
            pending = await session.scalar(
                select(StaffUser).where(StaffUser.role == "admin", StaffUser.state.in_(("invited", "reset")))
                .order_by(StaffUser.created_at).limit(1)
            )
            if pending is None:
                _, token = await accounts.invite(session, username=username, role="admin", created_by=None)
            else:
                token = await accounts.new_invitation(session, pending.id, None)
        return f"{settings.effective_console_url}/invite/{token}"
    finally:
        await engine.dispose()
