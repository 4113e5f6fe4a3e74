"""The `nazaha` command: init, bot, sandbox, console, demo, decrypt, notify, cases, audit,
purge, backup, restore, purge-log."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from nazaha.bot.logs import configure_logging
from nazaha.bot.settings import SANDBOX_TOKEN, Settings

log = logging.getLogger("nazaha")


def _read_secret_file(path: str | None) -> str | None:
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").strip()


def _ask_passphrase() -> str:
    """Ask twice on the terminal; refused passphrases are explained and asked again."""
    from nazaha.storage.passphrases import MIN_LENGTH, WeakPassphrase, check_passphrase

    if not sys.stdin.isatty():
        raise SystemExit("no terminal to ask for the passphrase: use --passphrase-file")
    while True:
        first = getpass.getpass(f"Passphrase for the team key (at least {MIN_LENGTH} characters): ")
        try:
            check_passphrase(first)
        except WeakPassphrase as exc:
            print(f"Refused: {exc}.")
            continue
        if getpass.getpass("Repeat it: ") == first:
            return first
        print("They differ; try again.")


DEMO_PASSPHRASE_FILE = "demo-passphrase.txt"

RECOVERY_WHY = (
    "With its passphrase this file opens every report, past and future. Keep it offline "
    "(e.g. a USB key in a safe), never on the bot host: the bot does not need it, and "
    "`nazaha bot` refuses to start on a data dir that holds it."
)


# ---- commands -------------------------------------------------------------------------


async def cmd_init(settings: Settings, args: argparse.Namespace) -> None:
    from nazaha.bot.setup import initialise
    from nazaha.storage.keyfiles import (
        BotHostRefused,
        KeyPaths,
        RecoveryFileRefused,
        check_bot_host_data_dir,
        check_recovery_file,
    )
    from nazaha.storage.passphrases import WeakPassphrase, read_passphrase_file

    paths = KeyPaths.for_data_dir(settings.data_dir)
    passphrase = None
    if paths.team_public.exists():
        if args.recovery_file:
            print(f"The team key already exists: --recovery-file {args.recovery_file} is not used.")
    else:
        # Everything is checked before anything is written.
        if not args.recovery_file:
            raise SystemExit(
                "creating the team key needs --recovery-file PATH: where to write the team "
                "recovery key, outside the data dir (e.g. on a USB key). " + RECOVERY_WHY
            )
        try:
            check_recovery_file(paths, args.recovery_file)
            if args.passphrase_file:
                passphrase = read_passphrase_file(args.passphrase_file)
        except RecoveryFileRefused as exc:
            raise SystemExit(f"--recovery-file: {exc}") from None
        except WeakPassphrase as exc:
            raise SystemExit(f"--passphrase-file: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"--passphrase-file: cannot read it ({exc})") from None
        if passphrase is None:
            passphrase = _ask_passphrase()
    try:
        result = await initialise(settings, passphrase=passphrase, recovery_file=args.recovery_file)
    except (RecoveryFileRefused, WeakPassphrase) as exc:
        raise SystemExit(str(exc)) from None
    print(f"Data dir ready: {settings.data_dir}")
    if result.created_team_key:
        print(f"Team recovery key written to {result.recovery_file}.")
        print(RECOVERY_WHY)
    await _print_first_admin_invitation(settings, result.recovery_file if result.created_team_key else None)
    try:
        check_bot_host_data_dir(settings.data_dir)
    except BotHostRefused as exc:
        print(f"Warning: `nazaha bot` will not start yet: {exc}")


ADMIN_EXISTS = (
    "No invitation made: an administrator already holds the team key; administrators invite "
    "members and reset accounts on the console's Team page."
)


async def _print_first_admin_invitation(settings: Settings, recovery_file: Path | None) -> None:
    from nazaha.admin.bootstrap import first_admin_invitation

    try:
        link = await first_admin_invitation(settings, recovery_file)
    except FileNotFoundError:
        print(
            "No administrator holds the team key yet: run `nazaha invite-admin --key-file PATH` "
            "with the team recovery file to get the first administrator's invitation link."
        )
        return
    if link is not None:
        _print_invitation(link)


def _print_invitation(link: str) -> None:
    print("Open this one-time link to create the first administrator account (valid 72 hours,")
    print("used up only when the form is completed; you will need the team passphrase):")
    print(f"  {link}")


async def cmd_invite_admin(settings: Settings, args: argparse.Namespace) -> None:
    """A new invitation link for the first administrator (e.g. the last one expired), as
    long as no administrator holds the team key; else a one-line reason and exit status 1
    (whether or not the recovery file is at hand)."""
    from nazaha.admin.bootstrap import first_admin_invitation
    from nazaha.storage.crypto import TamperedData
    from nazaha.storage.keyfiles import KeyPaths

    key_file = Path(args.key_file) if args.key_file else KeyPaths.for_data_dir(settings.data_dir).team_recovery
    try:
        link = await first_admin_invitation(settings, key_file if key_file.exists() else None)
    except FileNotFoundError:
        raise SystemExit("--key-file PATH is needed: the team recovery key, kept offline") from None
    except TamperedData:
        raise SystemExit(f"{key_file} is not a team recovery file") from None
    if link is None:
        raise SystemExit(ADMIN_EXISTS)
    _print_invitation(link)


async def cmd_bot(settings: Settings, args: argparse.Namespace) -> None:
    from nazaha.bot.app import run_polling, run_webhook
    from nazaha.bot.hardening import disable_core_dumps
    from nazaha.storage.keyfiles import BotHostRefused

    disable_core_dumps()  # drafts and keys live in this process's memory only

    try:
        await (run_webhook(settings) if args.webhook else run_polling(settings))
    except BotHostRefused as exc:
        raise SystemExit(str(exc)) from None


async def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> None:
    from nazaha.sandbox.server import serve_forever

    token = settings.bot_token.get_secret_value() if settings.bot_token else SANDBOX_TOKEN
    await serve_forever(settings.sandbox_host, settings.sandbox_port, token)


def console_server(settings: Settings, *, embedded: bool = False):
    import uvicorn

    from nazaha.admin.app import create_app

    class EmbeddedServer(uvicorn.Server):
        """Leaves signal handling to the process that embeds it (the demo)."""

        @contextlib.contextmanager
        def capture_signals(self):
            yield

    trusted = settings.console_forwarded_allow_ips
    config = uvicorn.Config(
        create_app(settings),
        host=settings.console_host,
        port=settings.console_port,
        access_log=False,
        log_level="warning",
        # Our logging (the redacting filter), not uvicorn's own handlers.
        log_config=None,
        # X-Forwarded-For is believed only from proxies the operator names: otherwise any
        # client could pick the address its failed sign-ins are counted under.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        server_header=False,
    )
    return (EmbeddedServer if embedded else uvicorn.Server)(config)


async def cmd_console(settings: Settings, args: argparse.Namespace) -> None:
    from nazaha.bot.hardening import disable_core_dumps

    disable_core_dumps()  # members' unlocked keys live in this process's memory only
    await console_server(settings).serve()


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    """Sandbox emulator, bot and console in one process, on embedded defaults."""
    from nazaha.bot.app import run_polling
    from nazaha.bot.hardening import disable_core_dumps
    from nazaha.bot.setup import initialise
    from nazaha.sandbox.server import SandboxServer
    from nazaha.storage.keyfiles import KeyPaths

    sandbox_url = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
    settings = settings.model_copy(
        update={
            "bot_token": settings.bot_token or _secret(SANDBOX_TOKEN),
            "telegram_api_url": settings.telegram_api_url or sandbox_url,
            "demo": True,
        }
    )
    if settings.bot_username is None:  # the sandbox names its bot after the token's id
        bot_id = settings.bot_token.get_secret_value().split(":", 1)[0]
        settings = settings.model_copy(update={"bot_username": f"sandbox_{bot_id}_bot"})
    disable_core_dumps()
    paths = KeyPaths.for_data_dir(settings.data_dir)
    passphrase_file = settings.data_dir / DEMO_PASSPHRASE_FILE
    passphrase = None
    if not paths.team_public.exists():
        # Demo only: a real deployment asks the operator for the passphrase.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase = secrets.token_urlsafe(24)
        passphrase_file.write_text(passphrase + "\n", encoding="utf-8")
        os.chmod(passphrase_file, 0o600)
    await initialise(settings, passphrase=passphrase)
    async with SandboxServer(
        host=settings.sandbox_host,
        port=settings.sandbox_port,
        default_token=settings.bot_token.get_secret_value(),
    ) as sandbox:
        # Ctrl+C from here on stops everything quietly (before: the default KeyboardInterrupt).
        stop = _stop_on_signal()
        print("\nNazaha demo is running.")
        # The address carries this run's control key (after #, so never sent to a server).
        print(f"  Chat with the bot in your browser: {sandbox.page_url}")
        print(f"  Review console:                    {settings.effective_console_url}/")
        await _print_first_admin_invitation(settings, paths.team_recovery)
        print(f"  Demo team key: recovery file {paths.team_recovery}, passphrase in {passphrase_file}")
        command = Path(sys.executable).parent / "nazaha"
        print(f"  Read a report: {command} decrypt R-XXXXXX --passphrase-file {passphrase_file}")
        print(
            "  Demo only: bot, console, recovery key and passphrase share this machine and data "
            "dir by design. A real deployment keeps the recovery key and passphrase offline, and "
            "`nazaha bot` refuses to start next to them."
        )
        print("Press Ctrl+C to stop.\n", flush=True)
        await _run_until_signal(
            run_polling(settings, handle_signals=False),
            console_server(settings, embedded=True),
            stop,
        )
        print("\nNazaha demo stopped.", flush=True)


def _stop_on_signal() -> asyncio.Event:
    """An event set by Ctrl+C or SIGTERM (instead of a KeyboardInterrupt in the loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_until_signal(polling, console, stop: asyncio.Event) -> None:
    """Run the bot and the console until ``stop`` is set (Ctrl+C / SIGTERM) or one of them
    fails; then stop both in order, so that nothing logs a cancelled task as an error."""
    tasks = [
        asyncio.create_task(polling),
        asyncio.create_task(console.serve()),
        asyncio.create_task(stop.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        console.should_exit = True  # uvicorn ends its lifespan itself instead of being cancelled
        # A getUpdates cut short by the stop is not an error worth an ERROR line.
        logging.getLogger("aiogram.dispatcher").setLevel(logging.CRITICAL)
        tasks[0].cancel()
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not tasks[2] and task.exception():
            raise task.exception()


def _recovery_file_and_passphrase(settings: Settings, args: argparse.Namespace) -> tuple[Path, str]:
    """The recovery file (``--key-file``; the demo's own file in the data dir otherwise) and
    its passphrase (``--passphrase-file`` or asked)."""
    from nazaha.storage.keyfiles import KeyPaths

    paths = KeyPaths.for_data_dir(settings.data_dir)
    if args.key_file:
        key_file = Path(args.key_file)
    elif paths.team_recovery.exists():  # the demo keeps it in the data dir
        key_file = paths.team_recovery
    else:
        raise SystemExit("--key-file PATH is needed: the team recovery key, kept offline")
    passphrase = _read_secret_file(args.passphrase_file)
    if passphrase is None:
        try:
            passphrase = getpass.getpass("Team key passphrase: ")
        except EOFError:
            raise SystemExit("no terminal to ask for the passphrase: use --passphrase-file FILE") from None
    return key_file, passphrase


def _team_private_key(settings: Settings, args: argparse.Namespace):
    """The team private key from the recovery file and its passphrase."""
    from nazaha.bot.app import kdf_floor
    from nazaha.storage.keyfiles import load_team_private_key

    key_file, passphrase = _recovery_file_and_passphrase(settings, args)
    return load_team_private_key(key_file, passphrase, floor=kdf_floor(settings))


async def cmd_decrypt(settings: Settings, args: argparse.Namespace) -> None:
    """Open one report with the offline recovery key: answers, thread and evidence (JSON)."""
    from nazaha.bot.app import kdf_floor
    from nazaha.storage.cases import CaseService
    from nazaha.storage.crypto import UnknownKeyId
    from nazaha.storage.database import create_engine, create_sessionmaker
    from nazaha.storage.reports import ReportNotFound, ReportVault, SystemNotInitialised

    designation = args.designation.strip().upper()
    args.designation = designation
    engine = create_engine(settings.effective_database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        try:
            vault = await ReportVault.from_database(sessionmaker, kdf_floor(settings))
        except SystemNotInitialised:
            raise SystemExit("the database is not initialised: run `nazaha init` first") from None
        if not await _designation_exists(sessionmaker, designation):
            raise SystemExit(f"no report has the designation {designation} (see `nazaha cases`)")
        team_private = _team_private_key(settings, args)
        try:
            report = await vault.open_with_team(designation, team_private)
        except ReportNotFound:
            raise SystemExit(f"no report has the designation {designation} (see `nazaha cases`)") from None
        except UnknownKeyId as exc:
            raise SystemExit(
                f"this recovery file holds team key {exc.have}, but {designation} is sealed to team "
                f"key {exc.wanted}: use the recovery file of the current key (saved at the last "
                "rotation)"
            ) from None
        case = await vault.unlock_with_team(designation, team_private)
        thread = await CaseService(sessionmaker).thread(case)
        withdrawals = await CaseService(sessionmaker).withdrawals(case.report_id)
        evidence = await _export_evidence(settings, sessionmaker, vault, args, team_private)
    finally:
        await engine.dispose()
    print(
        json.dumps(
            {
                "designation": report.designation,
                "kind": report.kind,
                "status": report.status,
                "outcome": case.outcome,
                "created_on": report.created_on.isoformat(),
                "triage": report.triage,
                "fields": report.fields,
                "contact_withdrawn_on": withdrawals[0].isoformat() if withdrawals[0] else None,
                "withdrawn_on": withdrawals[1].isoformat() if withdrawals[1] else None,
                "thread": [
                    {"direction": m.direction, "on": m.created_on.isoformat(), "body": m.body}
                    for m in thread
                ],
                "evidence": evidence,
            },
            ensure_ascii=False,
            indent=2,
        )
    )


async def _designation_exists(sessionmaker, designation: str) -> bool:
    from sqlalchemy import select

    from nazaha.storage.models import Report

    async with sessionmaker() as session:
        return await session.scalar(select(Report.id).where(Report.designation == designation)) is not None


async def cmd_cases(settings: Settings, args: argparse.Namespace) -> None:
    """List designations with their triage fields (no key needed: nothing sealed is read)."""
    from sqlalchemy import select

    from nazaha.storage.database import create_engine, create_sessionmaker
    from nazaha.storage.models import Report

    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            statement = select(
                Report.designation, Report.kind, Report.category, Report.service, Report.sector,
                Report.governorate, Report.status, Report.outcome, Report.created_on,
            ).order_by(Report.created_on.desc(), Report.designation)
            if args.status:
                statement = statement.where(Report.status == args.status)
            rows = (await session.execute(statement)).all()
    finally:
        await engine.dispose()
    columns = ("designation", "received", "kind", "category/service", "sector", "governorate", "status")
    table = [
        (
            r.designation, r.created_on.isoformat(), r.kind, r.category or r.service or "-",
            r.sector or "-", r.governorate or "-", r.status + (f" ({r.outcome})" if r.outcome else ""),
        )
        for r in rows
    ]
    if args.json:
        print(json.dumps([dict(zip(columns, row)) for row in table], ensure_ascii=False, indent=2))
        return
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    print(f"{len(table)} case(s)")


async def _export_evidence(settings, sessionmaker, vault, args, team_private) -> list[dict]:
    """List the report's evidence; with --export DIR, write the decrypted files there."""
    from nazaha.bot.app import blob_root
    from nazaha.storage.blobs import BlobStore
    from nazaha.services.evidence_files import safe_extension
    from nazaha.storage.cases import CaseService

    case = await vault.unlock_with_team(args.designation, team_private)
    records = await CaseService(sessionmaker).evidence(case)
    blobs = BlobStore(blob_root(settings))
    listed = []
    for number, record in enumerate(records, start=1):
        entry = {
            "number": number,
            "kind": record.kind,
            "size_bytes": record.size_bytes,
            "file_name": record.file_name,
            "mime_type": record.mime_type,
            "caption": record.caption,
            "sha256": record.sha256,
            "clean_copy": record.has_clean_copy,
            "flagged": record.flagged,
            "forwarded": record.forward_origin is not None,
        }
        if args.export:
            target = Path(args.export)
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            variants = ["original"] + (["clean"] if record.has_clean_copy else [])
            for variant in variants:
                path = target / f"{args.designation}-{number}-{variant}"
                head = b""
                with path.open("wb") as out:
                    async for chunk in blobs.read_stream(
                        case.epoch_key(record.key_epoch), case.report_id, record.id, variant
                    ):
                        head = head or chunk[:64]
                        out.write(chunk)
                # An extension from the allow-list, by the bytes (never the reporter's name).
                named = path.with_name(path.name + safe_extension(record.mime_type, head, record.kind))
                path.rename(named)
                entry[f"{variant}_path"] = str(named)
        listed.append(entry)
    return listed


async def cmd_notify(settings: Settings, args: argparse.Namespace) -> None:
    """Console-side job until the console does it after login: turn pending news into
    notification instructions for the running bot (needs the team key)."""
    from nazaha.storage.database import create_engine, create_sessionmaker
    from nazaha.storage.notifications import NotificationDispatcher

    team_private = _team_private_key(settings, args)
    engine = create_engine(settings.effective_database_url)
    try:
        issued = await NotificationDispatcher(create_sessionmaker(engine)).dispatch(team_private)
    finally:
        await engine.dispose()
    print(f"{issued} notification(s) handed to the running bot.")


from nazaha.services.audit import HEADS_DIR as AUDIT_HEADS_DIR  # noqa: E402


def _console_secret_for_audit(settings: Settings) -> bytes:
    """The existing console secret (never created here: a new one would authenticate
    nothing that was exported)."""
    from nazaha.storage.console_db import CONSOLE_SECRET_NAME, ensure_console_secret

    console_dir = settings.effective_console_dir
    if not (console_dir / CONSOLE_SECRET_NAME).exists():
        raise SystemExit(f"no console secret in {console_dir}: the console has not run here")
    try:
        return ensure_console_secret(console_dir)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the console secret: {exc}") from None


def _audit_heads(settings: Settings, args: argparse.Namespace) -> tuple[list, str]:
    """The exported heads to compare with, and where they came from."""
    from nazaha.services.audit import HeadFileError, head_files, load_head

    if args.head:
        files, where = [Path(args.head)], args.head
    else:
        default = settings.effective_console_dir / AUDIT_HEADS_DIR
        directory = Path(args.heads_dir) if args.heads_dir else default
        files, where = head_files(directory), str(directory)
        if args.heads_dir and not directory.is_dir():
            raise SystemExit(f"--heads-dir {directory}: not a directory")
    heads = []
    for path in files:
        try:
            heads.append(load_head(path))
        except HeadFileError as exc:
            raise SystemExit(f"audit head {path}: {exc}") from None
    return heads, where


async def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> None:
    """Exit 0 if the audit log is intact, 1 with one line per problem if not."""
    from nazaha.services.audit import verify
    from nazaha.storage.console_db import create_console_engine
    from nazaha.storage.database import create_sessionmaker

    secret = _console_secret_for_audit(settings)
    heads, where = _audit_heads(settings, args)
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        result = await verify(create_sessionmaker(engine), secret, heads=heads)
    finally:
        await engine.dispose()
    against = f"against {len(heads)} exported head(s) from {where}" if heads else "against no exported head"
    if result.ok:
        print(f"Audit log intact: {result.entries} entries, checked {against}.")
        if not heads:
            print(
                "Without an exported head a truncated or consistently rewritten log cannot be "
                "detected: pass --head FILE or --heads-dir DIR (copies kept off this host)."
            )
        return
    for problem in result.problems:
        print(f"audit: {problem.describe()}", file=sys.stderr)
    print(
        f"Audit log TAMPERED: {len(result.problems)} problem(s) in {result.entries} entries, "
        f"checked {against}.",
        file=sys.stderr,
    )
    raise SystemExit(1)


async def cmd_audit_export_head(settings: Settings, args: argparse.Namespace) -> None:
    """Write the authenticated head of the audit log (after checking what is new)."""
    from nazaha.services.audit import AuditChainBroken, HeadFileError, export_head
    from nazaha.storage.console_db import create_console_engine
    from nazaha.storage.database import create_sessionmaker

    secret = _console_secret_for_audit(settings)
    out = Path(args.out) if args.out else settings.effective_console_dir / AUDIT_HEADS_DIR
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        path = await export_head(create_sessionmaker(engine), secret, out)
    except AuditChainBroken as exc:
        for problem in exc.problems:
            print(f"audit: {problem.describe()}", file=sys.stderr)
        print("Audit log TAMPERED: no head exported; run `nazaha audit verify`.", file=sys.stderr)
        raise SystemExit(1) from None
    except HeadFileError as exc:
        raise SystemExit(f"the latest head in {out} is unreadable: {exc}") from None
    finally:
        await engine.dispose()
    print(f"Audit head written to {path}. Copy it off this host.")


CONSOLE_SECRET_WARNING = (
    "WARNING: this backup holds the console secret. With it, the console's store in the same "
    "backup no longer protects the staff keys: whoever reads the backup can guess each "
    "member's password offline, and the weakest one opens the team key and every report. "
    "Keep this backup encrypted and offline, apart from backups without the secret."
)
BOT_SECRETS_WARNING = (
    "WARNING: this backup holds the bot key and the pepper. With them, anyone who reads it "
    "can open the preferences rows and name the Telegram accounts behind every pseudonym "
    "(the pepper protects little: every Telegram id can be tried in hours). Keep this "
    "backup encrypted and offline."
)


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


async def cmd_backup(settings: Settings, args: argparse.Namespace) -> None:
    """A consistent online copy of the installation (docs: README, Backups)."""
    from nazaha.services.backup import BackupError, make_backup

    if args.include_console_secret:
        print(CONSOLE_SECRET_WARNING, file=sys.stderr)
    if args.include_bot_secrets:
        print(BOT_SECRETS_WARNING, file=sys.stderr)
    try:
        result = await make_backup(
            settings,
            Path(args.dest),
            include_console_secret=args.include_console_secret,
            include_bot_secrets=args.include_bot_secrets,
        )
    except BackupError as exc:
        raise SystemExit(f"backup: {exc}") from None
    manifest = result.manifest
    counts = manifest["counts"]
    print(
        f"Backup written to {result.dest}: {counts.get('reports', 0)} report(s), "
        f"{counts.get('blobs', 0)} blob file(s), {_entries(manifest['purge_log_entries'])} in the purge log."
    )
    if result.missing_blobs:
        print(
            f"{len(result.missing_blobs)} blob file(s) were deleted while the backup ran (their "
            "case purged or their file removed); the restore purges those cases again."
        )
    if manifest["secrets"]:
        print(f"It holds: {', '.join(manifest['secrets'])}.", file=sys.stderr)
        if args.include_console_secret:
            print(CONSOLE_SECRET_WARNING, file=sys.stderr)
        if args.include_bot_secrets:
            print(BOT_SECRETS_WARNING, file=sys.stderr)
    else:
        print(
            "It holds no bot key, pepper or console secret. Everything sealed stays sealed, but "
            "triage metadata and the staff accounts are readable: keep it encrypted and offline."
        )


async def cmd_restore(settings: Settings, args: argparse.Namespace) -> None:
    """Restore a backup onto an empty data dir and console dir, then purge again."""
    from nazaha.services.backup import BackupError, restore_backup

    if not args.purge_log and not args.no_newer_purge_log:
        raise SystemExit(
            "restore: a case purged after the backup was made would come back. Pass "
            "--purge-log FILE (from `nazaha purge-log export FILE` on the live console, or the "
            "purge-log.json of a newer backup), or --no-newer-purge-log if no case was purged "
            "since the backup (or the live console store is lost with no newer backup)."
        )
    try:
        result = await restore_backup(
            settings,
            Path(args.src),
            purge_logs=[Path(p) for p in args.purge_log or ()],
            console_secret_file=Path(args.console_secret) if args.console_secret else None,
        )
    except BackupError as exc:
        raise SystemExit(f"restore: {exc}") from None
    print(f"Restored into {result.data_dir} (console: {result.console_dir}).")
    print(
        f"{result.purged} case(s) purged again; the purge log now holds "
        f"{_entries(result.purge_log_entries)}."
    )
    if not result.console_secret_restored:
        print(
            f"No console secret was restored: put the original console-secret.key in "
            f"{result.console_dir} before starting the console (staff cannot sign in without it)."
        )
    if not result.bot_secrets_restored:
        print(
            "No bot key or pepper was restored: `nazaha init` makes new ones (preferences and "
            "notification links sealed under the old ones can no longer be opened)."
        )
    if result.missing_blobs:
        print(f"{len(result.missing_blobs)} blob file(s) listed as missing in the backup's manifest.")


async def cmd_purge_log_export(settings: Settings, args: argparse.Namespace) -> None:
    """Write the console's purge log (hashes and days only) to a new file."""
    from nazaha.services.backup import BackupError, export_purge_log

    try:
        count = await export_purge_log(settings, Path(args.file))
    except BackupError as exc:
        raise SystemExit(f"purge-log export: {exc}") from None
    print(f"{_entries(count)} of the purge log written to {args.file}.")


async def cmd_purge(settings: Settings, args: argparse.Namespace) -> None:
    """List the closed cases due for purging (retention: NAZAHA_RETENTION_DAYS) and, unless
    --dry-run, purge them (rows, blobs, derived values; content-free aggregates stay)."""
    import datetime as dt

    from nazaha.bot.app import blob_root
    from nazaha.services.purge import due_for_purge, purge_due
    from nazaha.storage.blobs import BlobStore
    from nazaha.storage.console_db import create_console_engine, prepare_console_store
    from nazaha.storage.database import create_sessionmaker

    secret = _console_secret_for_audit(settings)
    today = dt.datetime.now(dt.timezone.utc).date()
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        await prepare_console_store(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            due = await due_for_purge(session, today, settings.retention_days)
        print(f"Retention: {settings.retention_days} days after closing; {len(due)} case(s) due.")
        for item in due:
            print(f"{item.designation}  closed {item.closed_on.isoformat()}  due {item.purge_on.isoformat()}")
        if args.dry_run:
            return
        purged = await purge_due(sessionmaker, BlobStore(blob_root(settings)), secret, today, settings.retention_days)
    finally:
        await engine.dispose()
    print(f"Purged {purged} case(s).")


async def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> None:
    """Rotate the team key (issue 10): a new key pair, every report re-keyed, links and
    grants re-wrapped, the new recovery file written where --recovery-file says, the old
    key's grants destroyed. Run again to resume an interrupted rotation."""
    from nazaha.bot.app import kdf_floor
    from nazaha.bot.setup import kdf_params
    from nazaha.services.key_rotation import RotationError, run_rotation, start_rotation, unfinished_rotation
    from nazaha.storage import crypto
    from sqlalchemy import select

    from nazaha.storage.console_db import create_console_engine, ensure_console_secret, prepare_console_store
    from nazaha.storage.database import create_sessionmaker
    from nazaha.storage.models import SystemSetting
    from nazaha.storage.team_key import SETTING_TEAM_KEY_ID
    from nazaha.storage.keyfiles import (
        KeyPaths,
        RecoveryFileRefused,
        check_recovery_file,
        pin_rotation_on_this_host,
        pin_signing_key,
        write_recovery_file,
    )
    from nazaha.storage.passphrases import WeakPassphrase, read_passphrase_file

    paths = KeyPaths.for_data_dir(settings.data_dir)
    key_file, passphrase = _recovery_file_and_passphrase(settings, args)
    try:
        recovery = await asyncio.to_thread(crypto.open_recovery, key_file.read_bytes(), passphrase, kdf_floor(settings))
        old, signing = recovery.team, recovery.signing
    except FileNotFoundError:
        raise SystemExit(f"{key_file}: no such file") from None
    except crypto.CryptoError:
        raise SystemExit(f"{key_file}: the passphrase does not open this recovery file") from None

    console_secret = ensure_console_secret(settings.effective_console_dir)  # the rotation row's MAC
    engine = create_console_engine(settings.effective_database_url, settings.effective_console_dir)
    try:
        await prepare_console_store(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            pending = await unfinished_rotation(session)
            published = await session.scalar(
                select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID)
            )
        current = bytes(published).decode("ascii") if published is not None else "?"
        if pending is None and current != old.key_id:
            raise SystemExit(_ROTATION_ERRORS["not_current_ids"].format(have=old.key_id, current=current))
        if pending is None:
            # Only the demo keeps its recovery file in the data dir: rotate it in place there.
            replace = key_file == paths.team_recovery and not args.recovery_file
            target = key_file if replace else None
            if not replace:
                if not args.recovery_file:
                    raise SystemExit("--recovery-file PATH is needed: where to write the new recovery file, offline")
                try:
                    target = check_recovery_file(paths, args.recovery_file, allow_in_data_dir=settings.demo)
                except RecoveryFileRefused as exc:
                    raise SystemExit(f"--recovery-file: {exc}") from None
            try:
                new_passphrase = (
                    read_passphrase_file(args.new_passphrase_file) if args.new_passphrase_file else _ask_passphrase()
                )
            except WeakPassphrase as exc:
                raise SystemExit(f"--new-passphrase-file: {exc}") from None
            if signing is None:  # a recovery file made before the signing key existed
                signing = crypto.TeamSigningKey.generate()
                try:
                    pin_signing_key(paths, signing.public_bytes())
                except FileExistsError:
                    raise SystemExit(
                        f"{paths.team_signing_public} pins a signing key this recovery file does not hold"
                    ) from None
                print(
                    f"Team signing key created and pinned in {paths.team_signing_public}. Bots on "
                    "other hosts need a copy of that file in their data dir to follow the rotation."
                )
            # The new team key, and the signing key that will sign the next rotation (the bots
            # pin it instead of the current one, which the old recovery file holds).
            new, next_signing = crypto.TeamPrivateKey.generate(), crypto.TeamSigningKey.generate()
            blob = await asyncio.to_thread(
                crypto.seal_team_recovery, new, next_signing, new_passphrase, kdf_params(settings), kdf_floor(settings),
                recovery.generation + 1,
            )
            # Written before anything is published; the demo's own copy is swapped in after.
            written = target.with_name(target.name + ".new") if replace else target
            write_recovery_file(written, blob, replace=replace)
            try:
                state = await start_rotation(
                    sessionmaker, old, signing, new, next_signing, console_secret=console_secret,
                    generation=recovery.generation, actor_id=None,
                )
            except RotationError as exc:
                raise SystemExit(_ROTATION_ERRORS.get(exc.code, exc.code)) from None
            if pin_rotation_on_this_host(paths, new.public_key(), recovery.generation + 1, next_signing.public_bytes()):
                print(f"The bot's data dir {paths.data_dir} now pins the new key and signing key.")
            else:
                print(
                    "The bot's data dir is not on this host: on each bot host, check after a minute that "
                    f"team-public.key names key {new.key_id} (bots follow the signed publication)."
                )
            if replace:
                os.replace(written, target)
                demo_passphrase = settings.data_dir / DEMO_PASSPHRASE_FILE
                if demo_passphrase.exists():  # the demo keeps its passphrase beside it
                    demo_passphrase.write_text(new_passphrase + "\n", encoding="utf-8")
            print(f"New team recovery file written to {target}. {RECOVERY_WHY}")
            print(f"Rotation started: {state.reports_total} report(s) to re-key.")
        else:
            print("Resuming the unfinished rotation.")
        done = 0

        def progress(count: int) -> None:
            nonlocal done
            done += count
            print(f"  {done} report(s) re-keyed", flush=True)

        try:
            state = await run_rotation(
                sessionmaker, old, console_secret=console_secret, batch_size=settings.rotation_batch_size,
                on_batch=progress, accept_failed=args.accept_failed,
            )
        except RotationError as exc:
            if exc.code == "failed":
                _print_failed(exc)
            raise SystemExit(_ROTATION_ERRORS.get(exc.code, exc.code)) from None
    finally:
        await engine.dispose()
    print(f"Rotation finished: team key {state.new_key_id} replaces {state.old_key_id}.")
    if state.failed:
        print(f"Warning: {state.failed} report(s) or link(s) failed to open with the old key and stay as they were.")
    if key_file != paths.team_recovery:
        print(
            f"Destroy the old recovery file {key_file} once the new one is safely stored: it opens "
            "nothing written from now on (see docs/security.md for reports stored before 0007)."
        )


def _print_failed(exc) -> None:
    print("The old key could not open these, which keep it (their rows were modified?):")
    for designation in exc.failed:
        print(f"  {designation}")
    if exc.failed_links:
        print(f"  and {exc.failed_links} notification link(s)")


_ROTATION_ERRORS = {
    "not_current_ids": (
        "this recovery file holds team key {have}, not the current team key {current}: use the "
        "recovery file saved at the last rotation (or at installation)"
    ),
    "failed": (
        "the rotation stays unfinished and the old key's grants are kept. Look into those cases, "
        "then run the command again, with --accept-failed to finish without them"
    ),
    "tampered": (
        "the database does not match the recovery file (the key's generation) or the unfinished "
        "rotation's record does not check out: modified in the database? Nothing was done. "
        "Treat the database as compromised"
    ),
    "unfinished": "a rotation is already under way: run the command again to resume it",
    "not_current": "this recovery file does not hold the current team key",
    "old_key_missing": "resuming needs the recovery file of the key being replaced (--key-file)",
    "no_rotation": "no rotation to resume",
}


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nazaha", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the data dir, database and keys")
    init.add_argument(
        "--recovery-file",
        metavar="PATH",
        help="where to write the team recovery key, outside the data dir, to keep offline "
        "(required when the team key is created)",
    )
    init.add_argument(
        "--passphrase-file", help="file holding the new team key passphrase (checked like a typed one)"
    )
    init.set_defaults(func=cmd_init)
    bot = sub.add_parser("bot", help="run the bot (long polling, or --webhook)")
    bot.add_argument("--webhook", action="store_true")
    bot.set_defaults(func=cmd_bot)
    sub.add_parser("sandbox", help="run the Bot API emulator and its chat page").set_defaults(func=cmd_sandbox)
    sub.add_parser("console", help="run the review console").set_defaults(func=cmd_console)
    sub.add_parser("demo", help="everything on embedded defaults").set_defaults(func=cmd_demo)
    decrypt = sub.add_parser("decrypt", help="open a stored report with the team key")
    decrypt.add_argument("designation", help="the case designation, e.g. R-7K2QXM")
    decrypt.add_argument(
        "--key-file", help="the team recovery key file (required unless the demo's is in the data dir)"
    )
    decrypt.add_argument("--passphrase-file")
    decrypt.add_argument("--export", metavar="DIR", help="write the decrypted evidence files here")
    decrypt.set_defaults(func=cmd_decrypt)
    cases = sub.add_parser("cases", help="list case designations with their triage fields")
    cases.add_argument("--status", help="only cases with this status code")
    cases.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cases.set_defaults(func=cmd_cases)
    notify = sub.add_parser(
        "notify", help="hand pending update notifications to the running bot (team key)"
    )
    notify.add_argument("--key-file", help="team key recovery file (required outside the demo)")
    notify.add_argument("--passphrase-file")
    notify.set_defaults(func=cmd_notify)
    invite = sub.add_parser(
        "invite-admin", help="print a one-time invitation link for the first administrator"
    )
    invite.add_argument("--key-file", help="the team recovery key file (the demo's is found itself)")
    invite.set_defaults(func=cmd_invite_admin)
    audit = sub.add_parser("audit", help="check or export the console's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_sub.add_parser(
        "verify", help="recompute the hash chain; exit 1 with the problems if tampered"
    )
    heads = audit_verify.add_mutually_exclusive_group()
    heads.add_argument("--head", metavar="FILE", help="an exported audit-head-<seq>.json")
    heads.add_argument(
        "--heads-dir",
        metavar="DIR",
        help=f"compare with every head exported there (default: {AUDIT_HEADS_DIR} in the console dir)",
    )
    audit_verify.set_defaults(func=cmd_audit_verify)
    audit_export = audit_sub.add_parser(
        "export-head", help="write the authenticated head of the log, to copy off the host"
    )
    audit_export.add_argument(
        "--out", metavar="DIR", help=f"where to write it (default: {AUDIT_HEADS_DIR} in the console dir)"
    )
    audit_export.set_defaults(func=cmd_audit_export_head)
    backup = sub.add_parser("backup", help="a consistent online copy into a new empty directory")
    backup.add_argument("dest", metavar="DEST", help="a new or empty directory")
    backup.add_argument(
        "--include-console-secret",
        action="store_true",
        help="also copy the console secret (it protects the staff keys: with it the backup "
        "alone can be attacked offline)",
    )
    backup.add_argument(
        "--include-bot-secrets",
        action="store_true",
        help="also copy the bot key and pepper (they name the accounts behind pseudonyms)",
    )
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore", help="restore a backup onto an empty data dir, then purge again what was purged"
    )
    restore.add_argument("src", metavar="SRC", help="a directory made by `nazaha backup`")
    restore.add_argument(
        "--purge-log",
        metavar="FILE",
        action="append",
        help="a newer purge log (`nazaha purge-log export`, or a newer backup's purge-log.json); repeatable",
    )
    restore.add_argument(
        "--no-newer-purge-log",
        action="store_true",
        help="no case was purged since the backup (or no newer purge log exists)",
    )
    restore.add_argument(
        "--console-secret", metavar="FILE", help="the console secret, if the backup does not hold it"
    )
    restore.set_defaults(func=cmd_restore)
    purge_log = sub.add_parser("purge-log", help="the console's log of purged cases (hashes and days)")
    purge_log_sub = purge_log.add_subparsers(dest="purge_log_command", required=True)
    purge_log_export = purge_log_sub.add_parser("export", help="write it to a new file")
    purge_log_export.add_argument("file", metavar="FILE")
    purge_log_export.set_defaults(func=cmd_purge_log_export)
    keys = sub.add_parser("keys", help="team key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="replace the team key (run again to resume an interrupted rotation)"
    )
    rotate.add_argument("--key-file", metavar="PATH", help="the current team recovery file")
    rotate.add_argument("--passphrase-file", metavar="FILE", help="file holding its passphrase")
    rotate.add_argument(
        "--recovery-file", metavar="PATH", help="where to write the new recovery file, offline (a new file)"
    )
    rotate.add_argument(
        "--new-passphrase-file", metavar="FILE", help="file holding the new passphrase (checked like a typed one)"
    )
    rotate.add_argument(
        "--accept-failed", action="store_true",
        help="finish even if some reports or links could not be opened with the old key (they keep it)",
    )
    rotate.set_defaults(func=cmd_keys_rotate)
    purge = sub.add_parser("purge", help="purge the closed cases whose retention period is over")
    purge.add_argument("--dry-run", action="store_true", help="only list what is due")
    purge.set_defaults(func=cmd_purge)
    return parser


def _load_settings() -> Settings:
    """The settings, or one line per bad variable (never its value: it may be a secret)."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            "NAZAHA_" + "_".join(str(part) for part in error["loc"]).upper() + ": " + error["msg"]
            for error in exc.errors()
        )
        raise SystemExit(f"configuration error: {problems}") from None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Everything we create (database, WAL, keys, blobs) is readable by this user only.
    os.umask(0o077)
    settings = _load_settings()
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    configure_logging(settings.log_level, secrets=[token] if token else [])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(args.func(settings, args))


if __name__ == "__main__":
    main()
