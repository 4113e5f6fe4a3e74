"""Team-key rotation for admins (nazaha.services.key_rotation): the current team key, the
progress of a rotation, the form that starts one and the button that resumes one.

* ``GET  /keys``: the current key id (public), an unfinished rotation's progress (the page
  refreshes itself while this console runs it), the last finished rotation's date.
* ``POST /keys/rotate`` (CSRF, multipart): the current offline recovery file, its
  passphrase and a new passphrase (twice). The file is opened (Argon2id, in a thread), a new
  team key made and sealed with the same signing key into the new recovery file, all kept in
  the admin's session (memory only). Nothing changes yet. Any refusal is answered on the page.
* ``POST /keys/recovery-file`` (CSRF): the new recovery file, as a download (again if need be).
* ``POST /keys/start`` (CSRF): once the file was downloaded and the admin confirms it is
  stored offline, the rotation starts (grants of the new key, the new key published for the
  bots) and the re-keying runs in the background. ``POST /keys/cancel`` drops the prepared one.
* ``POST /keys/resume`` (CSRF): runs an unfinished rotation again (e.g. after a restart)
  with the keys of the admin's session, which holds both while both grants exist.

Only one run at a time per console (``Console.rotation_task``); the rows themselves say
what is left, so a run cut short by a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import select

from nazaha.admin.context import AdminStaff, Console, ConsoleDep, CsrfChecked, redirect, render
from nazaha.services import key_rotation
from nazaha.storage.console_models import KeyRotation
from nazaha.storage.crypto import (
    TamperedData,
    TeamKeyRing,
    TeamPrivateKey,
    TeamSigningKey,
    WeakKdfParameters,
    WrongPassphrase,
    open_recovery,
    seal_team_recovery,
)
from nazaha.storage.keyfiles import KeyPaths, pin_rotation_on_this_host
from nazaha.storage.models import SystemSetting
from nazaha.storage.passphrases import WeakPassphrase, check_passphrase
from nazaha.storage.team_key import SETTING_NEXT_SIGNING_KEY, SETTING_TEAM_KEY_ID, read_signing_pin

log = logging.getLogger(__name__)
router = APIRouter()

MAX_RECOVERY_FILE = 64 * 1024  # a recovery file is under 1 KiB


@dataclasses.dataclass(repr=False)
class PendingRotation:
    """Prepared, not started: the keys and the sealed new recovery file."""

    old: TeamPrivateKey
    signing: TeamSigningKey
    new: TeamPrivateKey
    next_signing: TeamSigningKey  # sealed in the new recovery file; the bots pin it next
    recovery_file: bytes
    generation: int  # the old key's, from its recovery file
    demo_passphrase: str | None = None  # the demo only: kept beside its recovery file
    downloaded: bool = False

    def __reduce__(self):
        raise TypeError("a prepared rotation must not be pickled")


def rotation_running(console: Console) -> bool:
    task = console.rotation_task
    return task is not None and not task.done()


async def _current_key_id(session) -> str | None:
    value = await session.scalar(select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID))
    return None if value is None else bytes(value).decode("ascii")


async def _page(request: Request, console: Console, staff, status_code: int = 200, **extra) -> Response:
    async with console.sessionmaker() as session:
        current = await _current_key_id(session)
        state = await key_rotation.rotation_state(session)
        last_finished = await session.scalar(
            select(KeyRotation.finished_at).where(KeyRotation.finished_at.is_not(None))
            .order_by(KeyRotation.id.desc()).limit(1)
        )
    unfinished = state if state is not None and not state.finished else None
    pending = staff.pending_rotation if unfinished is None else None
    return render(
        request, "keys.html", status_code=status_code, nav="keys",
        current_key_id=current,
        unfinished=unfinished,
        rekeyed=max(0, unfinished.reports_total - unfinished.reports_left) if unfinished else 0,
        running=unfinished is not None and rotation_running(console),
        problem=console.rotation_problem if unfinished is not None else None,
        last_finished=last_finished,
        pending=pending,
        **extra,
    )


async def _refused(request: Request, console: Console, staff, code: str) -> Response:
    """The page again with the refusal ``code`` (400); nothing was changed."""
    return await _page(request, console, staff, status_code=400, error=code)


@router.get("/keys")
async def keys_page(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    return await _page(
        request, console, staff,
        resumed=request.query_params.get("resumed") == "1",
        started=request.query_params.get("started") == "1",
    )


async def _run_in_background(
    console: Console, keys: TeamKeyRing | TeamPrivateKey, actor_id: str, accept_failed: bool = False
) -> None:
    console.rotation_problem = None
    try:
        await key_rotation.run_rotation(
            console.sessionmaker, keys, console_secret=console.console_secret, actor_id=actor_id,
            accept_failed=accept_failed,
        )
    except asyncio.CancelledError:  # the console stops: the next run resumes
        raise
    except key_rotation.RotationError as exc:  # shown on the page; nothing identifying logged
        if exc.code == "no_rotation":  # finished meanwhile by another run (e.g. the command)
            log.info("team-key rotation already finished")
            return
        console.rotation_problem = exc
        log.error("team-key rotation stopped: %s", exc.code)
    except Exception as exc:  # the page offers to resume; never log key material or ids
        log.error("team-key rotation stopped: %s", type(exc).__name__)
    else:
        log.info("team-key rotation finished")
    finally:
        console.audit_export_due = True


def _start_run(
    console: Console, keys: TeamKeyRing | TeamPrivateKey, actor_id: str, accept_failed: bool = False
) -> None:
    # Kept on the console so that the task is not garbage-collected mid-way.
    console.rotation_task = asyncio.create_task(_run_in_background(console, keys, actor_id, accept_failed))


async def resume_if_interrupted(console: Console) -> bool:
    """The console's housekeeping: an unfinished rotation that no run is working on (the
    console restarted mid-way) is resumed with the keys of any signed-in member who holds
    the old key (sessions open every grant at sign-in). True if a run was started."""
    if rotation_running(console) or console.rotation_problem is not None:
        return False  # a run that stopped on a problem waits for an admin
    async with console.sessionmaker() as session:
        rotation = await key_rotation.unfinished_rotation(session)
    if rotation is None or rotation.started_by is None:
        return False  # one the command line started: the command resumes it
    holder = console.sessions.holder_of(rotation.old_key_id)
    if holder is None:
        return False
    _start_run(console, holder.team_private, holder.identity.id)
    return True


def _check_new_passphrase(new_passphrase: str, new_passphrase_again: str) -> str | None:
    """The refusal code for the new recovery file's passphrase, or ``None``: the check
    ``nazaha init`` applies to the team passphrase."""
    if new_passphrase != new_passphrase_again:
        return "mismatch"
    try:
        check_passphrase(new_passphrase)
    except WeakPassphrase as exc:
        return f"weak_passphrase:{type(exc).__name__}"
    return None


async def _signing_mismatch(console: Console, signing: TeamSigningKey) -> bool:
    """True if the file's signing key is not the one the bots expect: the next signer the
    last rotation published, else the key pinned in this host's data dir (before any
    rotation). The bots would refuse what it signs."""
    async with console.sessionmaker() as session:
        expected = await session.scalar(
            select(SystemSetting.value).where(SystemSetting.name == SETTING_NEXT_SIGNING_KEY)
        )
    if expected is None:
        try:
            expected = read_signing_pin(KeyPaths.for_data_dir(console.settings.data_dir).team_signing_public)
        except (OSError, ValueError):
            return False
    return expected is not None and bytes(expected) != signing.public_bytes()


@router.post("/keys/rotate", dependencies=[CsrfChecked])
async def rotate(
    request: Request,
    console: ConsoleDep,
    staff: AdminStaff,
    recovery_file: Annotated[UploadFile | None, File()] = None,
    passphrase: Annotated[str, Form(max_length=1024)] = "",
    new_passphrase: Annotated[str, Form(max_length=1024)] = "",
    new_passphrase_again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    from nazaha.bot.app import kdf_floor
    from nazaha.bot.setup import kdf_params

    if rotation_running(console):
        return await _refused(request, console, staff, "unfinished")
    if recovery_file is None or not recovery_file.filename:
        return await _refused(request, console, staff, "file_missing")
    blob = await recovery_file.read(MAX_RECOVERY_FILE + 1)
    await recovery_file.close()
    if len(blob) > MAX_RECOVERY_FILE:
        return await _refused(request, console, staff, "file_too_large")
    code = _check_new_passphrase(new_passphrase, new_passphrase_again)
    if code is not None:
        return await _refused(request, console, staff, code)
    async with console.sessionmaker() as session:
        if await key_rotation.unfinished_rotation(session) is not None:
            return await _refused(request, console, staff, "unfinished")
        current = await _current_key_id(session)

    floor = kdf_floor(console.settings)
    try:
        recovery = await asyncio.to_thread(open_recovery, blob, passphrase, floor)
    except WrongPassphrase:
        return await _refused(request, console, staff, "wrong_passphrase")
    except WeakKdfParameters:
        return await _refused(request, console, staff, "weak_kdf")
    except TamperedData:
        return await _refused(request, console, staff, "malformed")
    old, signing = recovery.team, recovery.signing
    if old.key_id != current:  # start_rotation checks it again, in its transaction
        return await _refused(request, console, staff, "not_current")
    if signing is None:
        return await _refused(request, console, staff, "no_signing_key")
    if await _signing_mismatch(console, signing):
        return await _refused(request, console, staff, "signing_mismatch")

    new, next_signing = TeamPrivateKey.generate(), TeamSigningKey.generate()
    # The new recovery file is made, and must be stored, before anything changes.
    new_file = await asyncio.to_thread(
        seal_team_recovery, new, next_signing, new_passphrase, kdf_params(console.settings), floor,
        recovery.generation + 1,
    )
    staff.pending_rotation = PendingRotation(
        old, signing, new, next_signing, new_file, recovery.generation,
        demo_passphrase=new_passphrase if console.settings.demo else None,
    )
    return redirect("/keys")


def _replace_demo_recovery(console: Console, pending: PendingRotation) -> None:
    """The demo keeps its recovery file and passphrase in its data dir and prints where:
    keep them current, so that its printed commands (`nazaha decrypt`) still work."""
    from nazaha.bot.cli import DEMO_PASSPHRASE_FILE
    from nazaha.storage.keyfiles import write_recovery_file

    paths = KeyPaths.for_data_dir(console.settings.data_dir)
    if paths.team_recovery.exists():
        write_recovery_file(paths.team_recovery, pending.recovery_file, replace=True)
        passphrase_file = console.settings.data_dir / DEMO_PASSPHRASE_FILE
        if passphrase_file.exists():
            passphrase_file.write_text(pending.demo_passphrase + "\n", encoding="utf-8")


@router.post("/keys/recovery-file", dependencies=[CsrfChecked])
async def recovery_file_download(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    pending = staff.pending_rotation
    if not isinstance(pending, PendingRotation):
        return redirect("/keys")
    pending.downloaded = True
    return Response(
        content=pending.recovery_file,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="nazaha-team-recovery-{pending.new.key_id}.key"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/keys/cancel", dependencies=[CsrfChecked])
async def cancel(request: Request, console: ConsoleDep, staff: AdminStaff) -> Response:
    staff.pending_rotation = None
    return redirect("/keys")


@router.post("/keys/start", dependencies=[CsrfChecked])
async def start(
    request: Request,
    console: ConsoleDep,
    staff: AdminStaff,
    stored: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    pending = staff.pending_rotation
    if not isinstance(pending, PendingRotation):
        return redirect("/keys")
    if not pending.downloaded:
        return await _refused(request, console, staff, "not_downloaded")
    if stored != "1":
        return await _refused(request, console, staff, "stored_confirm")
    if rotation_running(console):
        return await _refused(request, console, staff, "unfinished")
    try:
        await key_rotation.start_rotation(
            console.sessionmaker, pending.old, pending.signing, pending.new, pending.next_signing,
            console_secret=console.console_secret, generation=pending.generation,
            actor_id=staff.identity.id, now=console.clock(),
        )
    except key_rotation.RotationError as exc:
        staff.pending_rotation = None
        return await _refused(request, console, staff, exc.code)
    staff.pending_rotation = None
    try:  # one machine: the bot's own files name the new key (no database writer can race it)
        pin_rotation_on_this_host(
            KeyPaths.for_data_dir(console.settings.data_dir), pending.new.public_key(), pending.generation + 1,
            pending.next_signing.public_bytes(),
        )
    except OSError:
        log.warning("could not write the bot's team key files on this host; bots follow the signed publication")
    if pending.demo_passphrase is not None:
        _replace_demo_recovery(console, pending)
    ring = TeamKeyRing([pending.new, pending.old])
    staff.team_private = ring
    console.audit_export_due = True
    _start_run(console, ring, staff.identity.id)
    return redirect("/keys?started=1")


@router.post("/keys/resume", dependencies=[CsrfChecked])
async def resume(
    request: Request,
    console: ConsoleDep,
    staff: AdminStaff,
    accept_failed: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    if rotation_running(console):
        return redirect("/keys")
    async with console.sessionmaker() as session:
        rotation = await key_rotation.unfinished_rotation(session)
    if rotation is None:
        return await _refused(request, console, staff, "no_rotation")
    # A session holds every key granted to the member: both while both grants exist.
    held = staff.team_private
    if held is None or rotation.old_key_id not in held.key_ids:
        return await _refused(request, console, staff, "old_key_missing")
    _start_run(console, held, staff.identity.id, accept_failed=accept_failed == "1")
    return redirect("/keys?resumed=1")
