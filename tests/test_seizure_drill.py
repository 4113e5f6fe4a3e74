"""Seizure drill (issue 7): what an attacker holding the bot host can recover.

The real `nazaha bot` (DEBUG logs) serves several citizens through the sandbox emulator: a
corruption report with contact details, a canary file and notifications on; a complaint; an
abandoned draft; a discarded draft; a follow-up from another account with a reply both ways;
/forget; /wipe. The data dir is copied while the bot runs (twice), after SIGKILL and after a
restart and clean stop. Then, with only those copies, the bot's log, its NAZAHA_* environment
and what `nazaha init` printed, the tests look for items 1-4 of the threat model (content,
data keys, receipts, account <-> report links), for the structural rule (no commit writes
a pseudonym-keyed row and a report-side row together) and for item 5 after /wipe.

Failure messages name the secret, the encoding and the place, never the secret's value.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import secrets
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.emulator import BotApiEmulator
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.cases import CaseService
from nazaha.storage.crypto import KDF_TESTING, BotKeyBox
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import KeyPaths, load_team_private_key, load_team_public_key
from nazaha.storage.reports import ReportVault
from nazaha.storage.notifications import NotificationDispatcher
from tests import forensics
from tests.e2e_support import PASSPHRASE, RECEIPT_RE, TOKEN, BotProcess, Chat, nazaha_env, recovery_file, run_init

pytestmark = [pytest.mark.e2e]

BOT_ID = int(TOKEN.split(":")[0])
TIMEOUT = 60.0  # generous: the machine is shared
ARABIC_LETTERS = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"

# Tables keyed by an account pseudonym, and tables that belong to reports (issue 7).
PSEUDONYM_TABLES = {"fsm_records", "user_preferences", "receipt_attempts"}
REPORT_TABLES = {
    "reports",
    "report_fields",
    "evidence",
    "case_messages",
    "notification_links",
    "pending_notifications",
    "notification_instructions",
}
DB_NAME = "nazaha.db"


def word(prefix: str) -> str:
    """A unique random canary word, e.g. ``descqhzkvmwpa``."""
    return prefix + "".join(secrets.choice("bcdfghjkmnpqrstvwxz") for _ in range(10))


def arabic_word() -> str:
    return "".join(secrets.choice(ARABIC_LETTERS) for _ in range(9))


def exif_jpeg(author: str) -> bytes:
    """A small JPEG whose EXIF names its author and carries GPS coordinates."""
    image = Image.new("RGB", (32, 24), (20, 120, 40))
    exif = Image.Exif()
    exif[0x013B] = author  # Artist
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (31.0, 54.0, 13.0), "E", (35.0, 12.0, 34.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def receipt_forms(receipt: str) -> dict[str, str]:
    indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    return {
        "with spaces": receipt,
        "digits only": receipt.replace(" ", ""),
        "Arabic-Indic with spaces": receipt.translate(indic),
        "Arabic-Indic digits only": receipt.replace(" ", "").translate(indic),
    }


@dataclass
class ReportFacts:
    """A stored report as the team key shows it (obtained legitimately, for comparison)."""

    report_id: str
    designation: str
    data_key: bytes


@dataclass
class Seizure:
    """Everything the attacker has, plus what the test knows to look for."""

    copies: dict[str, Path]  # label -> copy of the data dir
    log_path: Path
    env: dict[str, str]  # the bot's NAZAHA_* variables
    init_output: str
    text_secrets: dict[str, str] = field(default_factory=dict)  # name -> value
    ids: dict[str, int] = field(default_factory=dict)  # name -> user/chat id
    reports: dict[str, ReportFacts] = field(default_factory=dict)  # name -> facts

    def secret_patterns(self) -> dict[str, dict[str, bytes]]:
        """Every secret in every encoding: canaries, names, receipts, file ids, ids, data keys."""
        patterns: dict[str, dict[str, bytes]] = {}
        for name, value in self.text_secrets.items():
            patterns[name] = forensics.text_patterns(value)
        for name, value in self.ids.items():
            patterns[name] = forensics.int_patterns(value)
        for name, facts in self.reports.items():
            patterns[f"data key of {name}"] = forensics.bytes_patterns(facts.data_key)
        return patterns

    def bot_key(self, copy: Path) -> bytes:
        if self.env.get("NAZAHA_BOT_KEY"):
            return base64.b64decode(self.env["NAZAHA_BOT_KEY"])
        return (copy / "bot.key").read_bytes()

    def pepper(self, copy: Path) -> bytes:
        if self.env.get("NAZAHA_PEPPER"):
            return base64.b64decode(self.env["NAZAHA_PEPPER"])
        return (copy / "pepper.key").read_bytes()


def copy_data_dir(source: Path, target: Path) -> Path:
    """Copy every file under ``source`` as it is now (files vanishing mid-copy are skipped)."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        try:
            if path.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
        except FileNotFoundError:
            continue
    return target


class Staff:
    """The console's side: the team key (recovery copy kept outside the data dir)."""

    def __init__(self, data_dir: Path, recovery: Path) -> None:
        self.engine = create_engine(f"sqlite+aiosqlite:///{data_dir / DB_NAME}")
        self.sessionmaker = create_sessionmaker(self.engine)
        self.cases = CaseService(self.sessionmaker)
        self.team_private = load_team_private_key(recovery, PASSPHRASE, floor=KDF_TESTING)
        self.team_public = load_team_public_key(KeyPaths.for_data_dir(data_dir))

    async def case(self, designation: str):
        vault = await ReportVault.load(self.sessionmaker, self.team_public, kdf_floor=KDF_TESTING)
        return await vault.unlock_with_team(designation, self.team_private)

    async def close(self) -> None:
        await self.engine.dispose()


def designations(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / DB_NAME) as db:
        return {r[0] for r in db.execute("SELECT designation FROM reports")}


async def open_citizen(client: SandboxClient, seizure: Seizure, who: str) -> Chat:
    first_name, username = word("Name"), word("user")
    user = await client.create_user(first_name=first_name, language_code="en", username=username)
    seizure.text_secrets[f"first name of {who}"] = first_name
    seizure.text_secrets[f"username of {who}"] = username
    seizure.ids[f"user/chat id of {who}"] = user["id"]
    return Chat(client, user)


async def submit(chat: Chat, data_dir: Path) -> tuple[str, str]:
    """Press "Send" on the review; returns (receipt, designation)."""
    before = designations(data_dir)
    await chat.press("📨 Send the ", timeout=TIMEOUT)  # "report" or "complaint"
    message = await chat.expect("Your receipt number:", timeout=TIMEOUT)
    (designation,) = designations(data_dir) - before
    return RECEIPT_RE.search(message["text"]).group(1), designation


async def pass_safety_notice(chat: Chat) -> None:
    """Tap "I understand, continue" if the safety notice is shown (it is shown once)."""
    await chat.expect("", timeout=TIMEOUT)
    keyboard = await chat.latest_keyboard_message()
    labels = [b["text"] for row in keyboard["reply_markup"]["inline_keyboard"] for b in row]
    if any("I understand, continue" in label for label in labels):
        await chat.press("I understand, continue", in_message=keyboard)


async def walk_corruption_to_description(chat: Chat) -> None:
    await chat.send("/report")
    await pass_safety_notice(chat)
    await chat.press("Bribery", timeout=TIMEOUT)
    await chat.press("Ministry", timeout=TIMEOUT)
    await chat.press("Jenin", timeout=TIMEOUT)
    await chat.press("Earlier", timeout=TIMEOUT)
    await chat.expect("Describe what happened", timeout=TIMEOUT)


async def run_scenario(tmp: Path, seizure: Seizure, server: SandboxServer, bot: BotProcess, staff: Staff) -> None:
    client = SandboxClient(server.url, token=TOKEN)
    data_dir = bot.data_dir
    s = seizure.text_secrets
    try:
        await bot.launch()
        a = await open_citizen(client, seizure, "A (reporter)")
        b = await open_citizen(client, seizure, "B (complainant)")
        c = await open_citizen(client, seizure, "C (abandons a draft)")
        d = await open_citizen(client, seizure, "D (follows up for A)")

        # (a) A corruption report with contact details, a canary file, notifications on.
        s["description canary of A"] = word("desc")
        s["Arabic description canary of A"] = arabic_word()
        s["contact name of A"] = word("Contact")
        s["contact phone of A"] = "0599 " + str(secrets.randbelow(9_000_000) + 1_000_000)
        s["evidence file content canary of A"] = word("file")
        s["evidence file name of A"] = word("fname") + ".txt"
        await walk_corruption_to_description(a)
        await a.send(f"The clerk {s['description canary of A']} asked for money {s['Arabic description canary of A']}.")
        await a.press("Done", timeout=TIMEOUT)
        await a.expect("Do you have evidence?", timeout=TIMEOUT)
        content = (s["evidence file content canary of A"] + " minutes of the tender committee\n").encode() * 50
        await a.send_kind("document", filename=s["evidence file name of A"], content=content, mime="text/plain")
        await a.expect("Saved and encrypted", timeout=TIMEOUT)
        s["EXIF author canary in A's photo"] = word("Exif")
        await a.send_kind(
            "document", filename="IMG_0001.jpg", content=exif_jpeg(s["EXIF author canary in A's photo"]), mime="image/jpeg"
        )
        await a.expect("Saved and encrypted", timeout=TIMEOUT)
        await a.press("Done", timeout=TIMEOUT)
        await a.press("Share my contact details", timeout=TIMEOUT)
        await a.press("I agree", timeout=TIMEOUT)
        await a.expect("write the name", timeout=TIMEOUT)
        await a.send(s["contact name of A"])
        await a.expect("phone number", timeout=TIMEOUT)
        await a.send(s["contact phone of A"])
        await a.press("Notify me", timeout=TIMEOUT)
        await a.expect("Please check your report", timeout=TIMEOUT)
        receipt_a, designation_a = await submit(a, data_dir)

        # (b) A complaint.
        s["description canary of B complaint"] = word("cmpl")
        await b.send("/complaint")
        await pass_safety_notice(b)
        await b.press("Health", timeout=TIMEOUT)
        await b.press("Bethlehem", timeout=TIMEOUT)
        await b.expect("Describe what happened", timeout=TIMEOUT)
        await b.send(f"The hospital {s['description canary of B complaint']} sent us home.")
        await b.press("Done", timeout=TIMEOUT)
        await b.expect("Do you have evidence?", timeout=TIMEOUT)
        await b.press("Done", timeout=TIMEOUT)
        await b.press("Stay anonymous", timeout=TIMEOUT)
        await b.press("No notifications", timeout=TIMEOUT)
        await b.expect("Please check your complaint", timeout=TIMEOUT)
        receipt_b, designation_b = await submit(b, data_dir)

        for who, receipt in (("A", receipt_a), ("B", receipt_b)):
            for form, value in receipt_forms(receipt).items():
                s[f"receipt of {who}, {form}"] = value

        # (e) A caseworker replies; A is notified; the reporter follows up from account D.
        s["caseworker reply canary"] = word("staff")
        case_a = await staff.case(designation_a)
        await staff.cases.add_staff_reply(case_a, f"Thank you. {s['caseworker reply canary']}: the invoice?")
        # The console hands the news to the running bot (sealed to its memory-only mailbox).
        assert await NotificationDispatcher(staff.sessionmaker).dispatch(staff.team_private) == 1
        await a.expect("There is an update on your report", timeout=TIMEOUT)
        s["reporter reply canary (typed by D)"] = word("reply")
        # A's report as if stored before reporter public keys: D's unlock backfills the
        # key, a report-side write that the structural rule below covers too.
        with sqlite3.connect(data_dir / DB_NAME) as db:
            (public_key_a,) = db.execute(
                "SELECT reporter_public_key FROM reports WHERE designation = ?", (designation_a,)
            ).fetchone()
            db.execute("UPDATE reports SET reporter_public_key = NULL WHERE designation = ?", (designation_a,))
        assert public_key_a is not None
        await d.send("/followup")
        await d.expect("Please type your receipt number", timeout=TIMEOUT)
        await d.send(receipt_forms(receipt_a)["Arabic-Indic with spaces"])
        await d.expect("Your report", timeout=TIMEOUT)
        with sqlite3.connect(data_dir / DB_NAME) as db:
            assert db.execute(
                "SELECT reporter_public_key FROM reports WHERE designation = ?", (designation_a,)
            ).fetchone() == (public_key_a,)
        await d.press("Reply to the caseworkers", timeout=TIMEOUT)
        await d.expect("Write your message", timeout=TIMEOUT)
        await d.send(f"Yes, {s['reporter reply canary (typed by D)']} is the invoice number.")
        await d.expect("Your message was sent", timeout=TIMEOUT)
        await d.press("End the session", timeout=TIMEOUT)
        await d.expect("The follow-up session has ended", timeout=TIMEOUT)

        # (c) An abandoned draft.
        s["abandoned draft canary of C"] = word("aban")
        await walk_corruption_to_description(c)
        await c.send(f"The permit office {s['abandoned draft canary of C']} wanted a gift.")
        await c.expect("characters so far", timeout=TIMEOUT)

        # (d) A discarded draft (B again).
        s["discarded draft canary of B"] = word("disc")
        await walk_corruption_to_description(b)
        await b.send(f"The customs officer {s['discarded draft canary of B']} took a bribe.")
        await b.expect("characters so far", timeout=TIMEOUT)
        await b.send("/cancel")
        await b.press("Yes, discard it", timeout=TIMEOUT)
        await b.expect("Nothing was sent", timeout=TIMEOUT)

        copy_data_dir(data_dir, tmp / "seized" / "1 running, before forget and wipe")

        # (f) /forget and (g) /wipe, by the reporter.
        await a.send("/forget")
        await a.expect("", timeout=TIMEOUT)
        await a.send("/wipe")
        await a.press("Yes, erase everything", timeout=TIMEOUT)
        await a.expect("This conversation was erased", timeout=TIMEOUT)
        await d.send("/wipe")
        await d.press("Yes, erase everything", timeout=TIMEOUT)
        await d.expect("This conversation was erased", timeout=TIMEOUT)

        copy_data_dir(data_dir, tmp / "seized" / "2 running, at the end")
        bot.kill()
        copy_data_dir(data_dir, tmp / "seized" / "3 after SIGKILL")
        await bot.launch()
        s["canary C typed after the restart"] = word("rest")
        await c.send(f"Also {s['canary C typed after the restart']} at the second office.")
        await c.expect("", timeout=TIMEOUT)  # the restarted bot is serving again
        bot.stop()
        copy_data_dir(data_dir, tmp / "seized" / "4 after a clean stop")

        # Everything Telegram handed the bot about files.
        for n, stored in enumerate(server.emulator.files.values()):
            s[f"Telegram file_id #{n}"] = stored.file_id
            s[f"Telegram file_unique_id #{n}"] = stored.file_unique_id
        # What the team key shows (legitimately), to compare with what the bot key opens.
        for name, designation in (("A's report", designation_a), ("B's complaint", designation_b)):
            case = await staff.case(designation)
            seizure.reports[name] = ReportFacts(case.report_id, case.designation, case.data_key)
    finally:
        bot.kill()
        await client.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def seizure(tmp_path_factory) -> Seizure:
    tmp = tmp_path_factory.mktemp("seizure")
    emulator = BotApiEmulator()
    # Large, distinctive ids (above 2**32: SQLite would store them in 6 bytes).
    emulator._user_ids = itertools.count(6_000_000_000 + secrets.randbelow(2_000_000_000))
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN, emulator=emulator) as server:
        data_dir = tmp / "var"
        init = run_init(data_dir, server.url)
        # `nazaha init` wrote the recovery key outside the data dir, where the operator
        # names it (the console's side of this drill uses it).
        recovery = recovery_file(data_dir)
        assert recovery.exists() and not KeyPaths.for_data_dir(data_dir).team_recovery.exists()
        extra = {"NAZAHA_LOG_LEVEL": "DEBUG", "NAZAHA_NOTIFY_INTERVAL_SECONDS": "0.2"}
        bot = BotProcess(data_dir, server.url, tmp / "bot.log", dict(extra))
        env = {k: v for k, v in nazaha_env(data_dir, server.url, **extra).items() if k.startswith("NAZAHA_")}
        result = Seizure(
            copies={},
            log_path=bot.log_path,
            env=env,
            init_output=init.stdout + init.stderr,
        )
        staff = Staff(data_dir, recovery)
        try:
            await run_scenario(tmp, result, server, bot, staff)
        finally:
            await staff.close()
        result.copies = {p.name: p for p in sorted((tmp / "seized").iterdir())}
    assert len(result.copies) == 4
    return result


# --------------------------------------------------------------------------- the checks


def _row_label(copy: str, table: str, columns: tuple[str, ...], row: tuple[object, ...]) -> str:
    """A row named without its secrets: the copy, the table and a hash of its first column."""
    digest = hashlib.sha256(repr(row[0]).encode()).hexdigest()[:8] if row else "-"
    return f"[{copy}] {table} row with {columns[0]} hashing to {digest}"


def _all_row_versions(seizure: Seizure) -> dict[str, dict]:
    return {
        label: forensics.row_versions(forensics.sqlite_versions(copy / DB_NAME, copy / f"{DB_NAME}-wal"))
        for label, copy in seizure.copies.items()
    }


@pytest.fixture(scope="module")
def row_versions(seizure: Seizure) -> dict[str, dict]:
    return _all_row_versions(seizure)


def test_the_drill_saw_what_it_looks_for(seizure: Seizure, row_versions):
    """Guards the drill itself: reports were stored, and the carving finds rows."""
    assert set(seizure.reports) == {"A's report", "B's complaint"}
    assert any(s.startswith("Telegram file_id") for s in seizure.text_secrets)
    for label, versions in row_versions.items():
        tables = {table for table, _, _ in versions}
        assert {"reports", "report_fields"} <= tables, f"[{label}] carved tables: {sorted(tables)}"


def test_no_secret_in_plaintext_anywhere(seizure: Seizure):
    """Canaries, ids, names, usernames, receipts, file ids and data keys, in every encoding,
    in the copies of the data dir, the log, the environment and `nazaha init`'s output."""
    patterns = seizure.secret_patterns()
    hits: list[forensics.Hit] = []
    for label, copy in seizure.copies.items():
        hits += forensics.search_tree(copy, patterns, label=f"[{label}]")
    hits += forensics.search_file(seizure.log_path, patterns, "bot log")
    hits += forensics.search_env(seizure.env, patterns)
    hits += forensics.search_bytes(seizure.init_output.encode(), patterns, "output of nazaha init")
    assert not hits, f"{len(hits)} secret(s) in plaintext:\n" + "\n".join(sorted({str(h) for h in hits}))


def _secrets_in_plaintext(seizure: Seizure, plaintext: bytes) -> list[str]:
    """Names of the item 1-4 secrets in an opened value (canaries, data keys, report ids,
    receipts, chat ids)."""
    found: list[str] = []
    for name, value in seizure.text_secrets.items():
        if not name.startswith(("first name", "username", "Telegram file")):
            if any(p in plaintext for p in forensics.text_patterns(value).values()):
                found.append(name)
    for name, facts in seizure.reports.items():
        if any(p in plaintext for p in forensics.bytes_patterns(facts.data_key).values()):
            found.append(f"data key of {name}")
        if facts.report_id.encode() in plaintext or facts.report_id.upper().encode() in plaintext:
            found.append(f"report id of {name}")
        if facts.designation.encode() in plaintext:
            found.append(f"designation of {name}")
    for name, value in seizure.ids.items():
        for encoding, pattern in forensics.int_patterns(value).items():
            if pattern in plaintext:
                found.append(f"{name} ({encoding})")
                break
    key_like = forensics.key_like_values(plaintext)
    if key_like:
        found.append("key-sized base64 value(s) (a draft's data key?)")
    return found


def test_nothing_the_bot_key_opens_is_a_secret(seizure: Seizure, row_versions):
    """Every BLOB of every row version in the database and the WAL, tried with the bot key
    under every purpose and every context of its row.

    Findings are grouped by copy, table, row (named by a hash of its key), column and purpose,
    with the snapshots that hold such a version and the names of the secrets found."""
    purposes = forensics.bot_key_purposes()
    groups: dict[str, tuple[set[str], list[str]]] = {}
    opened_count = 0
    for label, versions in row_versions.items():
        bot_key = seizure.bot_key(seizure.copies[label])
        for (table, columns, row), where in versions.items():
            contexts = forensics.row_contexts(row)
            for column, value in zip(columns, row):
                if not isinstance(value, bytes) or len(value) < 28:
                    continue
                opened = forensics.try_open_with_bot_key(bot_key, value, contexts, purposes)
                if opened is None:
                    continue
                opened_count += 1
                found = _secrets_in_plaintext(seizure, opened.plaintext)
                if found:
                    place = f"{_row_label(label, table, columns, row)}, column {column}, purpose {opened.purpose!r}"
                    secrets_found, snapshots = groups.setdefault(place, (set(), []))
                    secrets_found.update(found)
                    snapshots.append(where)
    lines = [
        f"{place}: {len(snapshots)} version(s) (e.g. {snapshots[0]}) hold {', '.join(sorted(found))}"
        for place, (found, snapshots) in sorted(groups.items())
    ]
    assert not lines, (
        f"secrets recovered with the bot key ({opened_count} row versions opened in all):\n" + "\n".join(lines)
    )


def test_no_preferences_row_tells_that_an_account_began_a_report(seizure: Seizure, row_versions):
    """Issue 11: an awareness subscriber's Telegram id is known to the bot host, so no
    version of any preferences row may say that its account began a report or follow-up
    (older releases sealed "safety notice read" and "a conversation was open" into it): each,
    opened with the bot key, holds only the language and the /wipe anchor."""
    opened, findings = 0, set()
    for label, versions in row_versions.items():
        box = BotKeyBox(seizure.bot_key(seizure.copies[label]))
        for table, columns, row in versions:
            if table != "user_preferences":
                continue
            values = dict(zip(columns, row))
            try:
                fields = json.loads(box.open("prefs", values["pseudonym"], values["sealed"]))
            except Exception:  # a torn or partial version the carving found
                continue
            opened += 1
            if set(fields) - {"locale", "wipe_from"}:
                findings.add(f"[{label}] a user_preferences version holds {sorted(fields)}")
    assert opened, "the drill opened no preferences row"
    assert not findings, "\n".join(sorted(findings))


def test_no_row_ties_an_account_pseudonym_to_a_report(seizure: Seizure, row_versions):
    """With the pepper, pseudonyms of suspected accounts are computed and looked for in any
    row version that also names a report (its id or designation)."""
    findings: set[str] = set()
    report_marks = {
        name: (facts.report_id, facts.designation) for name, facts in seizure.reports.items()
    }
    for label, versions in row_versions.items():
        known = forensics.known_pseudonyms(seizure.pepper(seizure.copies[label]), seizure.ids, BOT_ID)
        for (table, columns, row), where in versions.items():
            accounts = {known[v] for v in row if isinstance(v, str) and v in known}
            if not accounts:
                continue
            reports = {n for n, marks in report_marks.items() if any(v in marks for v in row)}
            for account in accounts:
                for report in reports:
                    findings.add(
                        f"{_row_label(label, table, columns, row)} ({where}): pseudonym of {account} "
                        f"next to the id of {report}"
                    )
    assert not findings, "rows link an account to a report:\n" + "\n".join(sorted(findings))


def _pseudonym_keyed_tables(seizure: Seizure, row_versions) -> set[str]:
    """The named pseudonym tables plus any other non-report table holding a pseudonym of a
    known account."""
    tables = set(PSEUDONYM_TABLES)
    for label, versions in row_versions.items():
        known = forensics.known_pseudonyms(seizure.pepper(seizure.copies[label]), seizure.ids, BOT_ID)
        for table, _, row in versions:
            if table not in REPORT_TABLES and any(isinstance(v, str) and v in known for v in row):
                tables.add(table)
    return tables


def test_no_commit_holds_an_account_row_and_a_report_row(seizure: Seizure, row_versions):
    """The structural rule: no WAL commit changes a pseudonym-keyed table and a report-side
    table together."""
    account_tables = _pseudonym_keyed_tables(seizure, row_versions)
    findings: set[str] = set()
    commits = 0
    for label, copy in seizure.copies.items():
        for change in forensics.commit_table_changes(copy / DB_NAME, copy / f"{DB_NAME}-wal"):
            commits += 1
            mixed_account, mixed_report = change.tables & account_tables, change.tables & REPORT_TABLES
            if mixed_account and mixed_report:
                findings.add(
                    f"[{label}] {change.label} changes {sorted(mixed_account)} with {sorted(mixed_report)}"
                )
    assert not findings, (
        f"{len(findings)} of {commits} WAL commits tie account rows to report rows:\n" + "\n".join(sorted(findings))
    )


def test_data_dir_holds_no_team_secret(seizure: Seizure):
    """The bot host has no recovery key, passphrase file or console store in its data dir."""
    for label, copy in seizure.copies.items():
        names = sorted(p.name for p in copy.rglob("*") if p.is_file())
        assert "team-recovery.key" not in names, f"[{label}] holds the team recovery key"
        assert not [n for n in names if "passphrase" in n or "console" in n], f"[{label}]: {names}"


def test_wipe_leaves_no_preferences_or_draft_of_the_account(seizure: Seizure):
    """Item 5: after /wipe (A, then D), the database's latest state holds no draft,
    preference or link row keyed by a pseudonym of those accounts."""
    wiped = {name: value for name, value in seizure.ids.items() if name.endswith(("A (reporter)", "D (follows up for A)"))}
    findings = []
    for label in ("2 running, at the end", "3 after SIGKILL", "4 after a clean stop"):
        copy = seizure.copies[label]
        known = forensics.known_pseudonyms(seizure.pepper(copy), wiped, BOT_ID)
        latest = None
        for snapshot in forensics.sqlite_versions(copy / DB_NAME, copy / f"{DB_NAME}-wal"):
            if snapshot.generation in ("main", "current"):
                latest = snapshot
        assert latest is not None
        for table, rows in latest.tables.items():
            for row in rows.rows:
                for value in row:
                    if isinstance(value, str) and value in known:
                        findings.append(f"[{label}] {table} ({latest.label}) keeps a row of {known[value]}")
    assert not findings, "rows outlive /wipe:\n" + "\n".join(sorted(set(findings)))
