"""Per-user preferences (language, safety notice seen), keyed by pseudonym and sealed."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import BotKeyBox, pseudonym
from nazaha.storage.database import engine_of, upsert_op
from nazaha.storage.models import UserPreference
from nazaha.storage.unit_of_work import UnitOfWork, active_uow

PURPOSE = "prefs"


@dataclasses.dataclass(frozen=True)
class Preferences:
    locale: str | None = None
    safety_seen: bool = False


class PreferenceStore:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], box: BotKeyBox, pepper: bytes
    ) -> None:
        self._sessionmaker = sessionmaker
        self._dialect = engine_of(sessionmaker).dialect.name
        self._box = box
        self._pepper = pepper

    def record_key(self, user_id: int) -> str:
        return pseudonym(self._pepper, "prefs", user_id)

    def prime(self, uow: UnitOfWork, key: str, sealed: bytes | None) -> None:
        """Put a row read elsewhere (see storage/update_rows.py) into the update's overlay."""
        uow.overlay(PURPOSE).setdefault(key, self._open(key, sealed))

    async def get(self, user_id: int) -> Preferences:
        key = self.record_key(user_id)
        uow = active_uow()
        if uow is not None:
            overlay = uow.overlay(PURPOSE)
            if key in overlay:
                return overlay[key]
            session = await uow.read()
            sealed = await session.scalar(
                select(UserPreference.sealed).where(UserPreference.pseudonym == key)
            )
        else:
            async with self._sessionmaker() as session:
                sealed = await session.scalar(
                    select(UserPreference.sealed).where(UserPreference.pseudonym == key)
                )
        return self._open(key, sealed)

    def _open(self, key: str, sealed: bytes | None) -> Preferences:
        if sealed is None:
            return Preferences()
        raw = json.loads(self._box.open(PURPOSE, key, sealed))
        return Preferences(
            locale=raw.get("locale") if isinstance(raw.get("locale"), str) else None,
            safety_seen=bool(raw.get("safety_seen", False)),
        )

    def set(self, uow: UnitOfWork, user_id: int, prefs: Preferences) -> None:
        """Queue the write into the update's unit of work."""
        key = self.record_key(user_id)
        plaintext = json.dumps(dataclasses.asdict(prefs), separators=(",", ":")).encode("utf-8")
        values = {"pseudonym": key, "sealed": self._box.seal(PURPOSE, key, plaintext)}
        uow.overlay(PURPOSE)[key] = prefs
        uow.add(upsert_op(self._dialect, UserPreference.__table__, values, ["pseudonym"]))
