"""One read for the rows nearly every update needs.

Each update used to read its rows one by one, each a round trip to the database thread:
whether its id was already claimed (dedup), the user's preferences (locale) and the FSM
record (the draft). :class:`UpdateRows` reads all three with a single statement at the
start of the update (inside the user's lock) and primes the unit of work's overlays, so the
stores answer those reads from memory. Nothing changes in what is stored or sealed.
"""

from __future__ import annotations

from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import bindparam, select

from nazaha.storage.database import engine_of, sqlite_lanes
from nazaha.storage.fsm import SqlFsmStorage
from nazaha.storage.models import FsmRecord, ProcessedUpdate, UserPreference
from nazaha.storage.prefs import PreferenceStore
from nazaha.storage.sqlite_lane import read
from nazaha.storage.unit_of_work import UnitOfWork


def _fsm_column(column: object) -> object:
    return select(column).where(FsmRecord.key == bindparam("fsm_key")).scalar_subquery()


# Built once: scalar subqueries, so one row comes back whatever exists (SQLite, PostgreSQL).
STATEMENT = select(
    select(ProcessedUpdate.update_id)
    .where(
        ProcessedUpdate.bot_id == bindparam("bot_id"),
        ProcessedUpdate.update_id == bindparam("update_id"),
    )
    .scalar_subquery()
    .label("claimed"),
    select(UserPreference.sealed)
    .where(UserPreference.pseudonym == bindparam("prefs_key"))
    .scalar_subquery()
    .label("prefs"),
    _fsm_column(FsmRecord.key).label("fsm_key"),
    _fsm_column(FsmRecord.state).label("state"),
    _fsm_column(FsmRecord.sealed_data).label("sealed_data"),
    _fsm_column(FsmRecord.expires_at).label("expires_at"),
    _fsm_column(FsmRecord.expired).label("expired"),
)


class UpdateRows:
    def __init__(self, fsm: SqlFsmStorage, prefs: PreferenceStore) -> None:
        self.fsm = fsm
        self.prefs = prefs

    async def load(self, uow: UnitOfWork, key: StorageKey) -> None:
        """Read the update's claim, the user's preferences and the FSM record at ``key``
        into ``uow``. Call it inside the user's lock, before anything else reads."""
        fsm_key = self.fsm.record_key(key)
        prefs_key = self.prefs.record_key(key.user_id)
        params = {
            "bot_id": uow.bot_id if uow.bot_id is not None else key.bot_id,
            "update_id": uow.update_id if uow.update_id is not None else -1,
            "prefs_key": prefs_key,
            "fsm_key": fsm_key,
        }
        lanes = sqlite_lanes(engine_of(uow.sessionmaker))
        if lanes is not None:  # SQLite: one hop to the reading connection's thread
            row = await lanes.reader.run(read(lambda connection: connection.execute(STATEMENT, params).one()))
        else:
            session = await uow.read()
            row = (await session.execute(STATEMENT, params)).one()
        if uow.update_id is not None:
            uow.note_claimed(row.claimed is not None)
        self.prefs.prime(uow, prefs_key, row.prefs)
        fsm_row = None
        if row.fsm_key is not None:
            fsm_row = (row.state, row.sealed_data, row.expires_at, bool(row.expired))
        self.fsm.prime(uow, fsm_key, fsm_row)
