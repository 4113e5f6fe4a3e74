"""One read for the row nearly every update needs: the account's preferences.

Read once at the start of the update (inside the user's lock), on SQLite through the reader
lane (one thread hop, no greenlets), and primed into the unit of work's overlay so the store
answers later reads from memory. Conversation state is in memory (storage/fsm.py) and
duplicate updates are recognised in memory (handlers/middlewares.py), so this is the only
database access of an ordinary step.
"""

from __future__ import annotations

from aiogram.fsm.storage.base import StorageKey
from nazaha.storage.database import engine_of, sqlite_lanes
from nazaha.storage.prefs import SELECT_ROW, PreferenceStore
from nazaha.storage.sqlite_lane import read
from nazaha.storage.unit_of_work import UnitOfWork


class UpdateRows:
    def __init__(self, prefs: PreferenceStore) -> None:
        self.prefs = prefs

    async def load(self, uow: UnitOfWork, key: StorageKey) -> None:
        """Read the preferences of ``key``'s user into ``uow``. Call it inside the user's
        lock, before anything else reads."""
        prefs_key = self.prefs.record_key(key.user_id)
        params = {"key": prefs_key}
        lanes = sqlite_lanes(engine_of(uow.sessionmaker))
        if lanes is not None:  # SQLite: one hop to the reading connection's thread
            row = await lanes.reader.run(
                read(lambda connection: connection.execute(SELECT_ROW, params).one_or_none())
            )
        else:
            session = await uow.read()
            row = (await session.execute(SELECT_ROW, params)).one_or_none()
        sealed, expires_at = row if row is not None else (None, None)
        self.prefs.prime(uow, prefs_key, sealed, expires_at)
