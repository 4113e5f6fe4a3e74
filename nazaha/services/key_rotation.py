"""Team-key rotation (issue 10): a new team key pair, every report re-keyed, every
notification link's outer layer and every staff grant re-wrapped, the old key destroyed.

Three steps, each safe to interrupt (docs/architecture.md, "Team-key rotation"):

1. :func:`start_rotation`, one write transaction: grants of the new key for every member
   who holds the old one, a ``console.key_rotations`` row (with the new public key, and a MAC
   under the console secret, so that a row written by someone who can write the database
   but not read the console's files is never resumed), and the new public key published in
   the bot's ``system_settings`` with its generation (one more than the last) and the next
   signing key, signed by the current signing key (from the old recovery file); bots then pin
   the next signing key, which only the new recovery file holds. From its commit on, bots (which accept only a key the pinned signing key
   signed) wrap new reports and links to the new key; a report a bot seals meanwhile is
   re-wrapped inside its own write transaction (``PublishedTeamKey.check_in``).
2. :func:`run_rotation`, batches of reports still under the old key: each gets a new case
   key (epoch + 1) wrapped to the new team key and to the reporter's public key, chained to
   the previous one; reports stored before the reporter public key existed (migration 0007)
   and not unlocked since are only re-wrapped. Then the links. Each batch commits on its own;
   the rows themselves say what is left, so a killed run resumes with a new call.
3. The same call finishes once nothing is left under the old key: the old grants (and any
   bootstrap copy) deleted, the rotation marked finished, both SQLite WALs truncated (freed
   pages are zeroed by ``secure_delete``) or the tables VACUUMed on PostgreSQL. Reports or
   links the old key cannot open (modified rows) keep it unfinished, the old grants in
   place, unless the caller accepts them (``accept_failed``) after looking at them.

The caller holds the old private key (from the offline recovery file, or a session that
holds both grants) and drops it afterwards. Errors: :class:`RotationError` with a ``code``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nazaha.services import audit
from nazaha.services.purge import forget
from nazaha.storage.console_models import (
    KeyRotation,
    StaffUser,
    TeamKeyBootstrap,
    TeamKeyGrant,
)
from nazaha.storage.crypto import (
    CryptoError,
    TeamKeyRing,
    TeamPrivateKey,
    TeamPublicKey,
    TeamSigningKey,
    constant_time_equal,
    grant_team_key,
    keyed_hash,
    new_data_key,
    open_from_key,
    seal_previous_case_key,
    seal_to_key,
    unwrap_with_team,
    wrap_case_key_for_reporter,
    wrap_for_team,
    wrapped_key_id,
)
from nazaha.storage.database import engine_of, write_transaction
from nazaha.storage.models import CaseKeyEpoch, NotificationLink, Report, SystemSetting
from nazaha.storage.notifications import LINK_LABEL
from nazaha.storage.team_key import (
    SETTING_NEXT_SIGNING_KEY,
    SETTING_TEAM_KEY_GENERATION,
    SETTING_TEAM_KEY_ID,
    SETTING_TEAM_KEY_SIGNATURE,
    SETTING_TEAM_PUBLIC_KEY,
    parse_generation,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200


class RotationError(Exception):
    """``code``: ``unfinished`` (a rotation is running or was interrupted: resume it),
    ``not_current`` (the key offered is not the published team key), ``no_rotation``
    (nothing to resume), ``old_key_missing`` (resuming needs the old private key),
    ``tampered`` (the rotation row's MAC or key does not check out: it is not resumed),
    ``failed`` (``failed`` names the designations of the reports, ``failed_links`` counts
    the notification links, that the old key could not open; the rotation stays unfinished)."""

    def __init__(self, code: str, failed: tuple[str, ...] = (), failed_links: int = 0) -> None:
        super().__init__(code)
        self.code = code
        self.failed = failed
        self.failed_links = failed_links


def _row_mac(
    console_secret: bytes, old_key_id: str, new_key_id: str, new_public_key: bytes, generation: int
) -> str:
    return keyed_hash(
        console_secret, "key-rotation",
        f"{old_key_id}|{new_key_id}|{hashlib.sha256(new_public_key).hexdigest()}|{generation}",
    )


def staff_key_checks_out(
    console_secret: bytes, user_id: str, role: str, public_key: bytes | None, key_mac: str | None
) -> bool:
    """Whether a member's key record (id, role, public key) carries the MAC the console
    wrote under its secret at enrolment or sign-in: a row written into the database by
    anyone else is never granted the team key."""
    if not public_key or not key_mac:
        return False
    return constant_time_equal(key_mac.encode(), staff_key_mac(console_secret, user_id, role, public_key).encode())


def staff_key_mac(console_secret: bytes, user_id: str, role: str, public_key: bytes) -> str:
    """The MAC of a member's key record (see :func:`staff_key_checks_out`)."""
    return keyed_hash(console_secret, "staff-key", f"{user_id}|{role}|{hashlib.sha256(bytes(public_key)).hexdigest()}")


@dataclasses.dataclass(frozen=True)
class RotationState:
    """Where a rotation stands (key ids are public). ``reports_left``/``links_left``: rows
    still under the old key; ``failed``: reports the old key could not open (tampered)."""

    old_key_id: str
    new_key_id: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    reports_total: int
    reports_left: int
    links_left: int = 0
    failed: int = 0

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def _setting(session: AsyncSession, name: str) -> bytes | None:
    value = await session.scalar(select(SystemSetting.value).where(SystemSetting.name == name))
    return None if value is None else bytes(value)


async def _put_setting(session: AsyncSession, name: str, value: bytes) -> None:
    if await _setting(session, name) is None:
        session.add(SystemSetting(name=name, value=value))
    else:
        await session.execute(update(SystemSetting).where(SystemSetting.name == name).values(value=value))


async def unfinished_rotation(session: AsyncSession) -> KeyRotation | None:
    """The rotation that was started and not finished, if any."""
    return await session.scalar(
        select(KeyRotation).where(KeyRotation.finished_at.is_(None)).order_by(KeyRotation.id.desc()).limit(1)
    )


async def rotation_state(session: AsyncSession) -> RotationState | None:
    """The unfinished rotation's progress, else the last finished one's, else ``None``."""
    rotation = await unfinished_rotation(session) or await session.scalar(
        select(KeyRotation).order_by(KeyRotation.id.desc()).limit(1)
    )
    if rotation is None:
        return None
    left = 0
    if rotation.finished_at is None:
        left = await session.scalar(
            select(func.count()).select_from(Report).where(Report.team_key_id == rotation.old_key_id)
        ) or 0
    return RotationState(
        rotation.old_key_id, rotation.new_key_id, rotation.started_at, rotation.finished_at,
        rotation.reports_total, left,
    )


async def start_rotation(
    sessionmaker: async_sessionmaker[AsyncSession],
    old: TeamPrivateKey,
    signing: TeamSigningKey,
    new: TeamPrivateKey,
    next_signing: TeamSigningKey,
    *,
    console_secret: bytes,
    generation: int,
    actor_id: str | None,
    now: dt.datetime | None = None,
) -> RotationState:
    """Step 1 (one transaction): grants of ``new`` for every member holding ``old`` (active
    caseworkers and admins whose key record checks out), the rotation row (MAC under
    ``console_secret``), the new public key published for the bots at ``generation + 1``
    with ``next_signing``'s public half, signed by ``signing`` (the key the bots pin now).

    ``generation`` is the old key's, from its recovery file (which nobody can change);
    write the new recovery file, holding ``new``, ``next_signing`` and ``generation + 1``,
    *before* calling this. ``RotationError``: ``unfinished`` (one is under way),
    ``not_current`` (``old`` is not the published team key), ``tampered`` (the database's
    generation is not the recovery file's: modified).
    """
    now = now or _now()
    public = new.public_key()
    async with write_transaction(sessionmaker) as session:
        # Locked on PostgreSQL: two starts at once (two admins, the page and the command)
        # are ordered, and the second sees the first's unfinished rotation.
        published = await session.scalar(
            select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID).with_for_update()
        )
        if await unfinished_rotation(session) is not None:
            raise RotationError("unfinished")
        if published is None or bytes(published).decode("ascii", "replace") != old.key_id:
            raise RotationError("not_current")
        if (parse_generation(await _setting(session, SETTING_TEAM_KEY_GENERATION)) or 0) != generation:
            raise RotationError("tampered")  # bots would refuse the new key as a rollback
        generation += 1
        holders = (
            await session.execute(
                select(StaffUser.id, StaffUser.role, StaffUser.public_key, StaffUser.key_mac)
                .join(TeamKeyGrant, TeamKeyGrant.user_id == StaffUser.id)
                .where(
                    TeamKeyGrant.team_key_id == old.key_id, StaffUser.public_key.is_not(None),
                    StaffUser.state == "active", StaffUser.role.in_(("admin", "caseworker")),
                )
            )
        ).all()
        skipped = 0
        for user_id, role, staff_public, key_mac in holders:
            if not staff_key_checks_out(console_secret, user_id, role, staff_public, key_mac):
                skipped += 1  # a row someone wrote into the database: never given the key
                continue
            session.add(
                TeamKeyGrant(
                    user_id=user_id, team_key_id=new.key_id,
                    sealed=grant_team_key(new, TeamPublicKey.from_bytes(staff_public), user_id),
                    granted_by=actor_id, granted_at=now,
                )
            )
        total = await session.scalar(
            select(func.count()).select_from(Report).where(Report.team_key_id == old.key_id)
        ) or 0
        session.add(
            KeyRotation(
                old_key_id=old.key_id, new_key_id=new.key_id, new_public_key=public.to_bytes(),
                started_by=actor_id, started_at=now, reports_total=total, generation=generation,
                mac=_row_mac(console_secret, old.key_id, new.key_id, public.to_bytes(), generation),
            )
        )
        if skipped:
            log.warning("a team-key rotation gave %d staff record(s) that failed their check no key", skipped)
        await _put_setting(session, SETTING_TEAM_PUBLIC_KEY, public.to_bytes())
        await _put_setting(session, SETTING_TEAM_KEY_GENERATION, str(generation).encode("ascii"))
        await _put_setting(session, SETTING_NEXT_SIGNING_KEY, next_signing.public_bytes())
        await _put_setting(
            session, SETTING_TEAM_KEY_SIGNATURE,
            signing.sign_team_public_key(public, generation, next_signing.public_bytes()),
        )
        await _put_setting(session, SETTING_TEAM_KEY_ID, new.key_id.encode("ascii"))
        await audit.append(
            session, actor_id=actor_id, action=audit.KEY_ROTATION_START,
            detail={"old_key": old.key_id, "new_key": new.key_id, "reports": total}, now=now,
        )
    return RotationState(old.key_id, new.key_id, now, None, total, total)


@dataclasses.dataclass
class _Rekeyed:
    report_id: str
    wrapped_team: bytes
    key_epoch: int
    epoch_row: dict | None


def _rekey(
    rows: list, old: TeamPrivateKey, new_public: TeamPublicKey, today: dt.date
) -> tuple[list[_Rekeyed], list[str]]:
    """Pure crypto for one batch (run in a worker thread): per report, a new epoch when the
    reporter's public key is there, else the same key re-wrapped."""
    done, failed = [], []
    for report_id, wrapped, epoch, reporter_public in rows:
        try:
            key = unwrap_with_team(wrapped, old, report_id, epoch)
        except CryptoError:
            failed.append(report_id)
            continue
        if reporter_public is None:
            done.append(_Rekeyed(report_id, wrap_for_team(key, new_public, report_id, epoch), epoch, None))
            continue
        fresh = new_data_key()
        next_epoch = epoch + 1
        done.append(
            _Rekeyed(
                report_id,
                wrap_for_team(fresh, new_public, report_id, next_epoch),
                next_epoch,
                {
                    "report_id": report_id,
                    "epoch": next_epoch,
                    "wrapped_reporter": wrap_case_key_for_reporter(
                        fresh, TeamPublicKey.from_bytes(reporter_public), report_id, next_epoch
                    ),
                    "sealed_previous": seal_previous_case_key(fresh, key, report_id, next_epoch),
                    "created_on": today,
                },
            )
        )
    return done, failed


_REPORTS = Report.__table__
# One statement for a whole batch (executemany); the old key id guards against a row that a
# concurrent run re-keyed already.
_REKEY_REPORT = (
    update(_REPORTS)
    .where(_REPORTS.c.id == bindparam("b_id"), _REPORTS.c.team_key_id == bindparam("b_old"))
    .values(wrapped_key_team=bindparam("b_wrapped"), key_epoch=bindparam("b_epoch"), team_key_id=bindparam("b_new"))
)


async def _rekey_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    rotation: KeyRotation,
    old: TeamPrivateKey,
    new_public: TeamPublicKey,
    after: str,
    batch_size: int,
) -> tuple[int, list[str], str | None]:
    """The next ``batch_size`` reports after id ``after`` still under the old key, re-keyed
    in one transaction: (re-keyed, failed ids, last id read or ``None`` when none was left).
    Walking by id keeps each batch's read short (no re-reading of re-keyed rows)."""
    async with write_transaction(sessionmaker) as session:
        query = (
            select(Report.id, Report.wrapped_key_team, Report.key_epoch, Report.reporter_public_key)
            .where(Report.team_key_id == rotation.old_key_id, Report.id > after)
            .order_by(Report.id)
            .limit(batch_size)
            .with_for_update()
        )
        rows = [(r, bytes(w), e, None if p is None else bytes(p)) for r, w, e, p in (await session.execute(query)).all()]
        if not rows:
            return 0, [], None
        today = _now().date()
        done, failed = await asyncio.to_thread(_rekey, rows, old, new_public, today)
        epochs = [item.epoch_row for item in done if item.epoch_row is not None]
        if epochs:
            await session.execute(CaseKeyEpoch.__table__.insert(), epochs)
        if done:
            await session.execute(
                _REKEY_REPORT,
                [
                    {"b_id": item.report_id, "b_old": rotation.old_key_id, "b_wrapped": item.wrapped_team,
                     "b_epoch": item.key_epoch, "b_new": rotation.new_key_id}
                    for item in done
                ],
            )
        return len(done), failed, rows[-1][0]


def _reseal(rows: list, old: TeamPrivateKey, new_public: TeamPublicKey) -> tuple[list[dict], int]:
    """Pure crypto for a batch of links (in a worker thread): new outer layers for those
    sealed to ``old``; (updates, failed)."""
    updates, failed = [], 0
    for link_id, report_id, sealed in rows:
        try:
            if wrapped_key_id(sealed) != old.key_id:
                continue
            inner = open_from_key(old, LINK_LABEL, (link_id, report_id), sealed)
        except CryptoError:
            failed += 1
            continue
        updates.append({"b_id": link_id, "b_sealed": seal_to_key(new_public, LINK_LABEL, (link_id, report_id), inner)})
    return updates, failed


_LINKS = NotificationLink.__table__
_RESEAL_LINK = update(_LINKS).where(_LINKS.c.id == bindparam("b_id")).values(sealed_link=bindparam("b_sealed"))


async def _reseal_links(
    sessionmaker: async_sessionmaker[AsyncSession], old: TeamPrivateKey, new_public: TeamPublicKey, batch_size: int
) -> tuple[int, int]:
    """Re-seal the outer layer of every link still sealed to ``old``; (re-sealed, failed)."""
    after, resealed, failed = "", 0, 0
    while True:
        async with write_transaction(sessionmaker) as session:
            rows = (
                await session.execute(
                    select(NotificationLink.id, NotificationLink.report_id, NotificationLink.sealed_link)
                    .where(NotificationLink.id > after)
                    .order_by(NotificationLink.id)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                return resealed, failed
            after = rows[-1].id
            updates, failed_here = await asyncio.to_thread(
                _reseal, [(i, r, bytes(s)) for i, r, s in rows], old, new_public
            )
            failed += failed_here
            if updates:
                await session.execute(_RESEAL_LINK, updates)
                resealed += len(updates)


async def run_rotation(
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: TeamPrivateKey | TeamKeyRing,
    *,
    console_secret: bytes,
    actor_id: str | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], object] | None = None,
    accept_failed: bool = False,
    now: Callable[[], dt.datetime] = _now,
) -> RotationState:
    """Steps 2 and 3: re-key what is still under the old key, then finish. Resumes an
    interrupted run (call it again). ``keys`` must hold the old private key (a ring holding
    both, or the old key alone: the new public key is the one recorded at the start, checked
    against the row's MAC under ``console_secret``). ``on_batch(n)`` is called after each
    committed batch of reports (progress, tests). ``RotationError`` ``no_rotation``,
    ``old_key_missing``, ``tampered``, or ``failed`` (reports the old key could not open;
    the rotation stays unfinished unless ``accept_failed``)."""
    async with sessionmaker() as session:
        rotation = await unfinished_rotation(session)
    if rotation is None:
        raise RotationError("no_rotation")
    expected = _row_mac(
        console_secret, rotation.old_key_id, rotation.new_key_id, bytes(rotation.new_public_key), rotation.generation
    )
    try:
        recorded_key_id = TeamPublicKey.from_bytes(bytes(rotation.new_public_key)).key_id
    except ValueError:
        recorded_key_id = ""
    async with sessionmaker() as session:  # an old, finished row made unfinished again
        later = await session.scalar(
            select(func.count()).select_from(KeyRotation).where(
                KeyRotation.generation >= rotation.generation, KeyRotation.id != rotation.id
            )
        )
    if (
        not constant_time_equal((rotation.mac or "").encode(), expected.encode())
        or recorded_key_id != rotation.new_key_id
        or later
    ):
        log.error("a team-key rotation row failed its check and is not resumed")
        raise RotationError("tampered")
    old = keys.for_key_id(rotation.old_key_id) if isinstance(keys, TeamKeyRing) else (
        keys if keys.key_id == rotation.old_key_id else None
    )
    if old is None:
        raise RotationError("old_key_missing")
    new_public = TeamPublicKey.from_bytes(rotation.new_public_key)
    skip: set[str] = set()
    while True:  # one pass by id; another if a row under the old key appeared behind it
        after: str | None = ""
        while after is not None:
            count, failed, after = await _rekey_batch(sessionmaker, rotation, old, new_public, after, batch_size)
            skip.update(failed)
            if count and on_batch is not None:
                on_batch(count)
        async with sessionmaker() as session:
            left = await session.scalar(
                select(func.count()).select_from(Report).where(Report.team_key_id == rotation.old_key_id)
            ) or 0
        if left <= len(skip):
            break
    _, failed_links = await _reseal_links(sessionmaker, old, new_public, batch_size)
    if skip or failed_links:
        log.warning("a team-key rotation left %d report(s) and %d link(s) the old key could not open",
                    len(skip), failed_links)
        if not accept_failed:
            async with sessionmaker() as session:
                names = (await session.scalars(
                    select(Report.designation).where(Report.id.in_(skip)).order_by(Report.designation)
                )).all() if skip else []
            raise RotationError("failed", tuple(names), failed_links)
    finished_at = now()
    async with write_transaction(sessionmaker) as session:
        # Bots wrap to the new key from the start's commit on (their write transactions
        # read the published key): nothing new can appear under the old one now.
        current = await session.get(KeyRotation, rotation.id)
        if current is None or current.finished_at is not None:
            raise RotationError("no_rotation")
        await session.execute(delete(TeamKeyGrant).where(TeamKeyGrant.team_key_id == rotation.old_key_id))
        await session.execute(delete(TeamKeyBootstrap).where(TeamKeyBootstrap.key_id == rotation.old_key_id))
        current.finished_at = finished_at
        await audit.append(
            session, actor_id=actor_id, action=audit.KEY_ROTATION_FINISH,
            detail={"old_key": rotation.old_key_id, "new_key": rotation.new_key_id,
                    "failed": len(skip) + failed_links},
            now=finished_at,
        )
    await forget(engine_of(sessionmaker))
    return RotationState(
        rotation.old_key_id, rotation.new_key_id, rotation.started_at, finished_at,
        rotation.reports_total, 0, 0, len(skip) + failed_links,
    )


__all__ = [
    "BATCH_SIZE",
    "RotationError",
    "RotationState",
    "rotation_state",
    "run_rotation",
    "start_rotation",
    "unfinished_rotation",
]
