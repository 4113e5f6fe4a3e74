"""Sealing, storing and opening reports.

A report's answers are sealed field by field under a fresh data key (AES-256-GCM, AAD binds
report id and field name). The data key is wrapped for the team (HPKE) and for the reporter
(a key derived from the receipt with Argon2id; only an HKDF "lookup" value is stored).
The report id and designation are random: nothing about the reporter goes into them.

Sealing (:meth:`ReportVault.seal`) is the slow part (Argon2id, in a worker thread) and writes
nothing; :meth:`ReportVault.store` queues the insert into the update's unit of work, so the
receipt can be shown only once the report is committed.

Evidence is uploaded (and sealed under the data key) while the report is still a draft, so
the report id and data key are chosen first (:func:`new_sealing_context`), carried by the
draft, and handed to :meth:`ReportVault.seal`. The evidence rows are inserted by
:meth:`ReportVault.store` in the same write as the report.

Follow-up (:meth:`ReportVault.unlock_with_receipt`, :meth:`ReportVault.unlock_with_team`)
gives an :class:`UnlockedCase`: the report's triage header and its data key, for
:class:`nazaha.storage.cases.CaseService`.

Each report also stores the reporter's public key (a hybrid key pair derived from the
receipt, see ``crypto.ReporterKeys``), so that new keys can later be wrapped for the
reporter without the receipt. Reports stored before it get it when their reporter next
unlocks them (:meth:`ReportVault.store_reporter_public_key`, a report-side write).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.storage.crypto import (
    KDF_FLOOR,
    KEY_BYTES,
    KdfParams,
    ReporterKeys,
    TamperedData,
    TeamKeyRing,
    TeamPrivateKey,
    TeamPublicKey,
    WrongReceipt,
    constant_time_equal,
    derive_reporter_keys,
    new_data_key,
    new_receipt,
    new_system_salt,
    normalize_receipt,
    open_field,
    open_previous_case_key,
    random_designation,
    seal_field,
    unwrap_case_key_for_reporter,
    unwrap_for_reporter,
    unwrap_with_team,
    wrap_for_reporter,
    wrap_for_team,
)
from nazaha.storage.database import write_transaction
from nazaha.storage.kdf_thread import SUBMISSION, UNLOCK, KdfThread
from nazaha.storage.models import CaseKeyEpoch, Evidence, Report, ReportField, SystemSetting
from nazaha.storage.team_key import (
    SETTING_TEAM_KEY_ID,
    SETTING_TEAM_KEY_SIGNATURE,
    SETTING_TEAM_PUBLIC_KEY,
    PublishedTeamKey,
    read_generation,
    read_signing_pin,
)
from nazaha.storage.report_writes import ReportBatch
from nazaha.storage.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from nazaha.storage.cases import EvidenceRecord

KINDS = ("corruption", "complaint")
TRIAGE_KEYS = ("category", "sector", "service", "governorate")

SETTING_RECEIPT_SALT = "receipt_salt"
SETTING_RECEIPT_KDF = "receipt_kdf"

_DESIGNATION_ATTEMPTS = 20
_REPORT_ID_RE = re.compile(r"[0-9a-f]{32}")

# Argon2id is memory-hard and slow on purpose. One dedicated worker thread bounds it to a
# single core however many reporters submit at once, so the event loop (everyone else's
# ordinary steps) keeps a core of its own. Submissions go before queued receipt unlocks, so
# a flood of receipt guesses never delays a report (see kdf_thread.py).
_KDF_THREAD = KdfThread("nazaha-kdf")


async def _in_kdf_thread(priority: int, function, *args):
    return await _KDF_THREAD.run(priority, function, *args)


class ReportNotFound(LookupError):
    """No report has this designation."""


class SystemNotInitialised(RuntimeError):
    """The database lacks the receipt salt / KDF / team key settings."""


@dataclasses.dataclass(frozen=True)
class ReportDraft:
    kind: str
    triage: dict[str, str | None]
    fields: dict[str, str]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown report kind {self.kind!r}")
        unknown = set(self.triage) - set(TRIAGE_KEYS)
        if unknown:
            raise ValueError(f"unknown triage keys: {sorted(unknown)}")
        for name, value in self.fields.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("report fields are str -> str")


@dataclasses.dataclass(frozen=True, repr=False)
class SealedReport:
    """A report prepared and encrypted, not yet stored.

    ``receipt`` is the secret to show the reporter after the commit (20 ASCII digits; use
    ``format_receipt`` to display). ``designation`` is updated in the rare case that it
    collided with an existing one when stored.
    """

    report_id: str
    designation: str
    kind: str
    triage: dict[str, str | None]
    created_on: dt.date
    team_key_id: str
    wrapped_key_team: bytes
    wrapped_key_reporter: bytes
    receipt_lookup: bytes
    sealed_fields: dict[str, bytes]
    receipt: str
    # The reporter's hybrid public key derived from the receipt (1216 bytes, not secret).
    reporter_public_key: bytes = dataclasses.field(default=b"", compare=False)
    # Kept so that store() can seal the evidence metadata; as secret as the receipt.
    data_key: bytes = dataclasses.field(default=b"", compare=False)

    def __repr__(self) -> str:  # never show the receipt
        return f"SealedReport(designation={self.designation!r}, kind={self.kind!r})"


@dataclasses.dataclass(frozen=True)
class OpenedReport:
    report_id: str
    designation: str
    kind: str
    status: str
    created_on: dt.date
    triage: dict[str, str | None]
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True)
class UnlockedCase:
    """A report opened for follow-up: its header and its data key (never shown in repr).

    Whoever holds this can read and add to the case; keep it no longer than the session.
    """

    report_id: str
    designation: str
    kind: str
    status: str
    outcome: str | None
    created_on: dt.date
    # The newest case key: what new messages, files and notes are sealed under.
    data_key: bytes = dataclasses.field(repr=False)
    # Unlocked with the receipt only: the reporter's public key (1216 bytes) derived from
    # it at unlock, and whether the report row still lacks it (stored before migration
    # 0007). ``b""`` / False when unlocked by the team.
    reporter_public_key: bytes = dataclasses.field(default=b"", repr=False, compare=False)
    reporter_public_key_missing: bool = dataclasses.field(default=False, compare=False)
    # Every epoch's case key, epoch 0 first and ``data_key`` last (team-key rotations open
    # new epochs); ``()`` means the case has only ``data_key`` (epoch 0).
    epoch_keys: tuple[bytes, ...] = dataclasses.field(default=(), repr=False, compare=False)
    # Unlocked with the receipt only: the reporter's private key (derived from it), so that
    # a session open across a team-key rotation can follow the case to its new key
    # (:meth:`ReportVault.follow_epochs`). Memory only, like the data key.
    reporter_private: TeamPrivateKey | None = dataclasses.field(default=None, repr=False, compare=False)

    def __reduce__(self):  # keep the data key out of pickles (caches, Redis, crash dumps)
        raise TypeError("UnlockedCase must not be pickled")

    @property
    def key_epoch(self) -> int:
        """The newest epoch (the one ``data_key`` belongs to)."""
        return max(len(self.epoch_keys) - 1, 0)

    def epoch_key(self, epoch: int) -> bytes:
        """The case key of ``epoch``; ``LookupError`` if the case has no such epoch."""
        keys = self.epoch_keys or (self.data_key,)
        if not 0 <= epoch < len(keys):
            raise LookupError("no such case key epoch")
        return keys[epoch]

    def sealed_epoch(self, field: str, sealed: bytes) -> tuple[int, bytes]:
        """``(epoch, plaintext)`` of a value sealed with ``seal_field`` under one of the
        case's keys (newest tried first: a value is sealed under the key that was newest
        when it was written). :class:`TamperedData` if no key opens it."""
        return open_with_epoch_keys(self.epoch_keys or (self.data_key,), self.report_id, field, sealed)

    def open_field(self, field: str, sealed: bytes) -> bytes:
        """The plaintext of a value sealed under any of the case's keys (see
        :meth:`sealed_epoch`)."""
        return self.sealed_epoch(field, sealed)[1]


def open_with_epoch_keys(
    epoch_keys: Sequence[bytes], report_id: str, field: str, sealed: bytes
) -> tuple[int, bytes]:
    """``(epoch, plaintext)`` of a value sealed with ``seal_field`` under one of a case's
    keys (``epoch_keys``: epoch 0 first), newest tried first. AES-GCM authenticates, so
    only the right key opens it; :class:`TamperedData` if none does."""
    for epoch in range(len(epoch_keys) - 1, -1, -1):
        try:
            return epoch, open_field(epoch_keys[epoch], report_id, field, sealed)
        except TamperedData:
            continue
    raise TamperedData("no case key opens this value")


def new_sealing_context() -> tuple[str, bytes]:
    """A fresh report id (32 random hex digits) and data key, chosen before submission so
    that evidence can be sealed under them while the report is still a draft."""
    return secrets.token_hex(16), new_data_key()


def _check_sealing_context(report_id: str, data_key: bytes) -> tuple[str, bytes]:
    if not isinstance(report_id, str) or _REPORT_ID_RE.fullmatch(report_id) is None:
        raise ValueError("a report id is 32 lowercase hex digits")
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes")
    return report_id, bytes(data_key)


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _load_team_public(team_public: TeamPublicKey | bytes | str | os.PathLike[str]) -> TeamPublicKey:
    if isinstance(team_public, TeamPublicKey):
        return team_public
    if isinstance(team_public, (bytes, bytearray)):
        return TeamPublicKey.from_bytes(bytes(team_public))
    return TeamPublicKey.from_bytes(Path(team_public).read_bytes())


async def _read_settings(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, bytes]:
    async with sessionmaker() as session:
        rows = await session.execute(select(SystemSetting.name, SystemSetting.value))
        return {name: bytes(value) for name, value in rows.all()}


async def initialise_system(
    sessionmaker: async_sessionmaker[AsyncSession], team_public: TeamPublicKey, kdf: KdfParams
) -> None:
    """Create the receipt salt, receipt KDF parameters and team key settings if missing
    (idempotent: existing values are never replaced)."""
    wanted = {
        SETTING_RECEIPT_SALT: new_system_salt(),
        SETTING_RECEIPT_KDF: json.dumps(kdf.to_dict()).encode("utf-8"),
        SETTING_TEAM_PUBLIC_KEY: team_public.to_bytes(),
        SETTING_TEAM_KEY_ID: team_public.key_id.encode("ascii"),
    }
    async with write_transaction(sessionmaker) as session:
        existing = set((await session.scalars(select(SystemSetting.name))).all())
        for name, value in wanted.items():
            if name not in existing:
                session.add(SystemSetting(name=name, value=value))


class ReportVault:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        team_public: TeamPublicKey | PublishedTeamKey,
        receipt_salt: bytes,
        kdf: KdfParams,
        kdf_floor: KdfParams = KDF_FLOOR,
    ) -> None:
        kdf.check_at_least(kdf_floor)  # WeakKdfParameters
        self._sessionmaker = sessionmaker
        self._team_key = team_public if isinstance(team_public, PublishedTeamKey) else PublishedTeamKey(team_public)
        self._salt = receipt_salt
        self._kdf = kdf
        self._floor = kdf_floor
        # Opened (and failing) when a receipt matches no report, so that an unknown receipt
        # costs the same work as a known one.
        self._dummy_wrapped = wrap_for_reporter(new_data_key(), new_data_key(), "0" * 32)

    @classmethod
    async def load(
        cls,
        sessionmaker: async_sessionmaker[AsyncSession],
        team_public: TeamPublicKey | bytes | str | os.PathLike[str],
        kdf_floor: KdfParams = KDF_FLOOR,
        *,
        signing_pin_path: Path | None = None,
        public_path: Path | None = None,
        generation_path: Path | None = None,
    ) -> ReportVault:
        """Build the vault from the stored settings; ``team_public`` is the key object, its
        bytes, or the path of a file holding ``TeamPublicKey.to_bytes()``.

        After a team-key rotation the database names a newer key than ``team_public``: it is
        used if the signing key pinned at ``signing_pin_path`` signed it at a generation not
        below the one in ``generation_path`` (and both files are rewritten). Raises :class:`SystemNotInitialised`,
        ``RuntimeError`` if the key does not match the one recorded in the database (and no
        pinned signature vouches for it), ``WeakKdfParameters`` if the receipt KDF is too
        weak; ``ValueError`` for a malformed pin or generation file.
        """
        public = _load_team_public(team_public)
        settings = await _read_settings(sessionmaker)
        missing = [
            name
            for name in (SETTING_RECEIPT_SALT, SETTING_RECEIPT_KDF, SETTING_TEAM_KEY_ID)
            if name not in settings
        ]
        if missing:
            raise SystemNotInitialised(
                f"missing system settings {', '.join(missing)}: run `nazaha init`"
            )
        published = PublishedTeamKey(
            public, generation=read_generation(generation_path),
            signing_pin=read_signing_pin(signing_pin_path), pin_path=signing_pin_path,
            public_path=public_path, generation_path=generation_path,
        )
        recorded = settings[SETTING_TEAM_KEY_ID].decode("ascii", "replace")
        # After any rotation: follow the published key, or (a bot, with its pin) finish
        # pinning the next signing key if a crash came between its files (team_key.py).
        # Without a pin (the console, the commands) a matching key needs nothing more.
        accepted = SETTING_TEAM_KEY_SIGNATURE in settings and (
            recorded != public.key_id or signing_pin_path is not None
        ) and published.accept(settings)
        if recorded != public.key_id and not accepted:
            raise RuntimeError(
                f"the team public key ({public.key_id}) is not the one this database was "
                f"set up with ({recorded})"
            )
        kdf = KdfParams.from_dict(json.loads(settings[SETTING_RECEIPT_KDF]))
        return cls(sessionmaker, published, settings[SETTING_RECEIPT_SALT], kdf, kdf_floor)

    @classmethod
    async def from_database(
        cls, sessionmaker: async_sessionmaker[AsyncSession], kdf_floor: KdfParams = KDF_FLOOR
    ) -> ReportVault:
        """The vault on the team public key the database names, for the console and the
        offline commands: they open reports with a team key and need no key file (a bot
        host's file may lag behind a rotation). :class:`SystemNotInitialised` as
        :meth:`load`."""
        published = (await _read_settings(sessionmaker)).get(SETTING_TEAM_PUBLIC_KEY)
        if published is None:
            raise SystemNotInitialised("the team public key is not set: run `nazaha init`")
        return await cls.load(sessionmaker, published, kdf_floor)

    @property
    def team_key(self) -> PublishedTeamKey:
        """The team public key new reports are wrapped to (follows signed rotations)."""
        return self._team_key

    # -- reporter side ------------------------------------------------------------------

    async def seal(
        self,
        draft: ReportDraft,
        *,
        report_id: str | None = None,
        data_key: bytes | None = None,
    ) -> SealedReport:
        """Encrypt a draft (Argon2id and HPKE in a worker thread). Writes nothing.

        ``report_id`` and ``data_key`` (both or neither) are the ones the draft's evidence
        was sealed under (from :func:`new_sealing_context`); by default fresh ones are made.
        """
        if (report_id is None) != (data_key is None):
            raise ValueError("pass both report_id and data_key, or neither")
        if report_id is None or data_key is None:
            report_id, data_key = new_sealing_context()
        else:
            report_id, data_key = _check_sealing_context(report_id, data_key)
        designation = await self._free_designation()
        return await _in_kdf_thread(
            SUBMISSION, self._seal_sync, draft, designation, report_id, data_key
        )

    def _seal_sync(
        self, draft: ReportDraft, designation: str, report_id: str, data_key: bytes
    ) -> SealedReport:
        receipt = new_receipt()
        keys = derive_reporter_keys(receipt, self._salt, self._kdf, self._floor)
        team_public = self._team_key.current
        return SealedReport(
            report_id=report_id,
            designation=designation,
            kind=draft.kind,
            triage={name: draft.triage.get(name) for name in TRIAGE_KEYS},
            created_on=_today(),
            team_key_id=team_public.key_id,
            wrapped_key_team=wrap_for_team(data_key, team_public, report_id),
            wrapped_key_reporter=wrap_for_reporter(data_key, keys.wrap_key, report_id),
            receipt_lookup=keys.lookup,
            sealed_fields={
                name: seal_field(data_key, report_id, name, value.encode("utf-8"))
                for name, value in draft.fields.items()
            },
            receipt=receipt,
            reporter_public_key=_public_key_of(keys),
            data_key=data_key,
        )

    async def _free_designation(self) -> str:
        async with self._sessionmaker() as session:
            for _ in range(_DESIGNATION_ATTEMPTS):
                candidate = random_designation()
                if not await _designation_taken(session, candidate):
                    return candidate
        raise RuntimeError("could not find a free report designation")

    def store(
        self,
        uow: UnitOfWork,
        sealed: SealedReport,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> None:
        """Queue the insert of the report, its fields and its evidence rows (in the given
        order, ``source="report"``) into the update's transaction."""
        from nazaha.storage.cases import evidence_row_values

        if evidence and len(sealed.data_key) != KEY_BYTES:
            raise ValueError("this sealed report carries no data key to seal evidence with")
        evidence_rows = [
            evidence_row_values(sealed.data_key, sealed.report_id, record, seq, "report")
            for seq, record in enumerate(evidence, start=1)
        ]

        async def insert(session: AsyncSession) -> None:
            designation = sealed.designation
            attempts = 0
            # Checked again inside the write transaction (another report may have taken it
            # since seal()); designations carry no cryptographic binding, so a new one is safe.
            while await _designation_taken(session, designation):
                attempts += 1
                if attempts >= _DESIGNATION_ATTEMPTS:
                    raise RuntimeError("could not find a free report designation")
                designation = random_designation()
            object.__setattr__(sealed, "designation", designation)
            # A rotation may have published a new team key since seal(): never commit a
            # report wrapped to a key that is being retired.
            team_public = await self._team_key.check_in(session)
            wrapped_team = sealed.wrapped_key_team
            if team_public.key_id != sealed.team_key_id:
                if len(sealed.data_key) != KEY_BYTES:
                    raise RuntimeError("the team key changed and this sealed report carries no data key")
                wrapped_team = wrap_for_team(sealed.data_key, team_public, sealed.report_id)
            session.add(
                Report(
                    id=sealed.report_id,
                    designation=designation,
                    kind=sealed.kind,
                    status="received",
                    created_on=sealed.created_on,
                    team_key_id=team_public.key_id,
                    wrapped_key_team=wrapped_team,
                    wrapped_key_reporter=sealed.wrapped_key_reporter,
                    receipt_lookup=sealed.receipt_lookup,
                    reporter_public_key=sealed.reporter_public_key or None,
                    **{name: sealed.triage.get(name) for name in TRIAGE_KEYS},
                )
            )
            await session.flush()  # the parent row first, for the foreign key
            session.add_all(
                ReportField(report_id=sealed.report_id, name=name, sealed=value)
                for name, value in sealed.sealed_fields.items()
            )
            await session.flush()
            if evidence_rows:
                await session.execute(Evidence.__table__.insert(), evidence_rows)

        uow.add(insert)

    async def unlock_with_receipt(self, receipt: str) -> UnlockedCase | None:
        """The case behind a receipt, or None if the text is not a receipt of any stored
        report (malformed or unknown).

        A well-formed receipt always costs one Argon2id (in the KDF worker thread), one
        lookup and one AES-GCM unwrap, whether or not it matches, so response time does not
        tell a known receipt from an unknown one. ``WrongReceipt`` only if a matching report
        fails to open (which means the stored data was modified).
        """
        digits = normalize_receipt(receipt)
        if digits is None:
            return None
        keys, public_key = await _in_kdf_thread(UNLOCK, self._derive_for_unlock, digits)
        async with self._sessionmaker() as session:
            report = await session.scalar(
                select(Report).where(Report.receipt_lookup == keys.lookup)
            )
        if report is None:
            try:
                unwrap_for_reporter(self._dummy_wrapped, keys.wrap_key, "0" * 32)
            except WrongReceipt:
                pass
            return None
        data_key = unwrap_for_reporter(report.wrapped_key_reporter, keys.wrap_key, report.id)
        reporter_private = keys.kem_private()
        epoch_keys: tuple[bytes, ...] = (data_key,)
        if report.key_epoch:
            async with self._sessionmaker() as session:
                rows = await epoch_rows(session, report.id)
            epoch_keys = _reporter_chain(report.id, report.key_epoch, rows, reporter_private, data_key)
        return dataclasses.replace(
            _unlocked(report, epoch_keys),
            reporter_private=reporter_private,
            reporter_public_key=public_key,
            reporter_public_key_missing=report.reporter_public_key is None,
        )

    async def follow_epochs(self, case: UnlockedCase) -> UnlockedCase:
        """``case`` itself, or, if a team-key rotation gave the report a newer case key
        since it was unlocked with the receipt, the same case holding every key up to the
        newest (so that what the reporter writes next is sealed under it). One small read
        when nothing changed. ``WrongReceipt`` if the new rows do not chain."""
        if case.reporter_private is None:
            return case
        async with self._sessionmaker() as session:
            epoch = await session.scalar(select(Report.key_epoch).where(Report.id == case.report_id))
            if epoch is None or epoch <= case.key_epoch:  # never back to an older key
                return case
            rows = await epoch_rows(session, case.report_id)
        chain = _reporter_chain(case.report_id, epoch, rows, case.reporter_private, case.epoch_key(0))
        return dataclasses.replace(case, data_key=chain[-1], epoch_keys=chain)

    def _derive_for_unlock(self, digits: str) -> tuple[ReporterKeys, bytes]:
        # The key pair is made for every well-formed receipt, known or not, so that its
        # cost does not tell them apart either.
        keys = derive_reporter_keys(digits, self._salt, self._kdf, self._floor)
        return keys, _public_key_of(keys)

    @staticmethod
    def store_reporter_public_key(batch: ReportBatch, case: UnlockedCase) -> None:
        """Queue the backfill of a report's missing reporter public key into ``batch``: a
        report-side write (a ``ReportBatch``), never an update's unit of work, so that no
        commit ties the report to the account that unlocked it. Writes only where the
        column is still NULL; does nothing for a case not unlocked with its receipt or
        whose report has the key already. ``TypeError`` for anything but a ``ReportBatch``."""
        if not isinstance(batch, ReportBatch):
            raise TypeError("the reporter public key is a report-side write: use a ReportBatch")
        if not case.reporter_public_key_missing or not case.reporter_public_key:
            return
        statement = (
            update(Report)
            .where(Report.id == case.report_id, Report.reporter_public_key.is_(None))
            .values(reporter_public_key=case.reporter_public_key)
        )

        async def backfill(session: AsyncSession) -> None:
            await session.execute(statement)

        batch.add(backfill)

    async def open_with_receipt(self, receipt: str) -> OpenedReport | None:
        """The reporter's view, or None if the text is not a receipt of any stored report.

        ``WrongReceipt`` / ``TamperedData`` only if a matching report fails to open (which
        means the stored data was modified)."""
        case = await self.unlock_with_receipt(receipt)
        if case is None:
            return None
        return await self._open(case)

    # -- team side ----------------------------------------------------------------------

    async def unlock_with_team(
        self, designation: str, team_private: TeamPrivateKey | TeamKeyRing
    ) -> UnlockedCase:
        """The case for the caseworkers, every epoch's key with it (``ReportNotFound``,
        ``UnknownKeyId``, ``TamperedData``)."""
        async with self._sessionmaker() as session:
            report = await session.scalar(select(Report).where(Report.designation == designation))
            if report is None:
                raise ReportNotFound(designation)
            rows = await epoch_rows(session, report.id) if report.key_epoch else []
        return _unlocked(
            report, team_epoch_keys(report.id, report.wrapped_key_team, report.key_epoch, rows, team_private)
        )

    async def open_with_team(self, designation: str, team_private: TeamPrivateKey) -> OpenedReport:
        """The caseworkers' view (``ReportNotFound``, ``UnknownKeyId``, ``TamperedData``)."""
        return await self._open(await self.unlock_with_team(designation, team_private))

    async def _open(self, case: UnlockedCase) -> OpenedReport:
        async with self._sessionmaker() as session:
            report = await session.get(Report, case.report_id)
            if report is None:  # deleted since it was unlocked
                raise ReportNotFound(case.designation)
            fields = await _fields_of(session, report.id)
        return _opened(report, case, fields)


def _public_key_of(keys: ReporterKeys) -> bytes:
    return keys.kem_private().public_key().to_bytes()


def _unlocked(report: Report, epoch_keys: tuple[bytes, ...]) -> UnlockedCase:
    return UnlockedCase(
        report_id=report.id,
        designation=report.designation,
        kind=report.kind,
        status=report.status,
        outcome=report.outcome,
        created_on=report.created_on,
        data_key=epoch_keys[-1],
        epoch_keys=epoch_keys if len(epoch_keys) > 1 else (),
    )


async def epoch_rows(session: AsyncSession, report_id: str) -> list[CaseKeyEpoch]:
    """A report's ``CaseKeyEpoch`` rows, oldest first."""
    return list((await session.scalars(
        select(CaseKeyEpoch).where(CaseKeyEpoch.report_id == report_id).order_by(CaseKeyEpoch.epoch)
    )).all())


def _reporter_chain(
    report_id: str, epoch: int, rows: Sequence[CaseKeyEpoch], reporter_private: TeamPrivateKey, first_key: bytes
) -> tuple[bytes, ...]:
    """Every epoch's key for the reporter, epoch 0 first: the key of ``epoch`` (the report
    row's, as on the team's side; rows beyond it are ignored) from its wrap to the
    reporter's public key, then down the chain to epoch 0, which must be the key the receipt
    opened. ``WrongReceipt`` if a row is missing or they disagree."""
    newest = next((row for row in rows if row.epoch == epoch), None)
    if newest is None:
        raise WrongReceipt("the case keys of this report are missing")
    key = unwrap_case_key_for_reporter(newest.wrapped_reporter, reporter_private, report_id, epoch)
    try:
        chain = _down_the_chain(report_id, epoch, key, rows)
    except TamperedData:
        raise WrongReceipt("the case keys of this report do not chain") from None
    if not constant_time_equal(chain[0], first_key):
        raise WrongReceipt("the case keys of this report do not chain")
    return chain


def _down_the_chain(report_id: str, epoch: int, key: bytes, rows: Sequence[CaseKeyEpoch]) -> tuple[bytes, ...]:
    """Keys of epochs 0..``epoch`` from the key of ``epoch`` and the chain rows (each
    holding the previous epoch's key sealed under its own). :class:`TamperedData` if an
    epoch is missing or a link fails to open."""
    by_epoch = {row.epoch: row for row in rows}
    keys = [key]
    for current in range(epoch, 0, -1):
        row = by_epoch.get(current)
        if row is None:
            raise TamperedData("a case key epoch is missing")
        keys.append(open_previous_case_key(keys[-1], row.sealed_previous, report_id, current))
    return tuple(reversed(keys))


def team_epoch_keys(
    report_id: str,
    wrapped_key_team: bytes,
    key_epoch: int,
    rows: Sequence[CaseKeyEpoch],
    team_private: TeamPrivateKey | TeamKeyRing,
) -> tuple[bytes, ...]:
    """Every epoch's case key of a report for the team, epoch 0 first: the newest from the
    team's wrap, the older ones down the chain (``rows``: the report's ``CaseKeyEpoch``
    rows). ``UnknownKeyId`` / ``TamperedData``."""
    newest = unwrap_with_team(wrapped_key_team, team_private, report_id, key_epoch)
    return _down_the_chain(report_id, key_epoch, newest, rows)


async def _designation_taken(session: AsyncSession, designation: str) -> bool:
    found = await session.scalar(select(Report.id).where(Report.designation == designation))
    return found is not None


async def _fields_of(session: AsyncSession, report_id: str) -> dict[str, bytes]:
    rows = await session.execute(
        select(ReportField.name, ReportField.sealed).where(ReportField.report_id == report_id)
    )
    return {name: bytes(sealed) for name, sealed in rows.all()}


def _opened(report: Report, case: UnlockedCase, sealed_fields: dict[str, bytes]) -> OpenedReport:
    fields = {
        name: case.open_field(name, sealed).decode("utf-8")
        for name, sealed in sorted(sealed_fields.items())
    }
    return OpenedReport(
        report_id=report.id,
        designation=report.designation,
        kind=report.kind,
        status=report.status,
        created_on=report.created_on,
        triage={name: getattr(report, name) for name in TRIAGE_KEYS},
        fields=fields,
    )


__all__: list[str] = [
    "KINDS",
    "TRIAGE_KEYS",
    "OpenedReport",
    "ReportDraft",
    "ReportNotFound",
    "ReportVault",
    "SealedReport",
    "SystemNotInitialised",
    "UnlockedCase",
    "epoch_rows",
    "initialise_system",
    "new_sealing_context",
    "open_with_epoch_keys",
    "team_epoch_keys",
]
