"""End to end: the real `nazaha bot` process talks HTTP to the sandbox Bot API emulator."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import pytest_asyncio

from nazaha.bot.app import build_i18n
from nazaha.handlers import labels, screens
from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer
from nazaha.storage.crypto import KDF_TESTING, normalize_receipt
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from nazaha.storage.reports import ReportVault
from tests.e2e_support import (
    RECEIPT_RE,
    TOKEN,
    BotProcess,
    Chat,
    assert_no_unknown_calls,
    find_plaintext,
    nazaha_command,
    nazaha_env,
    press_callback,
    recovery_file,
    run_init,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

I18N = build_i18n()
DESCRIPTION = "The director of the water department took 500 dinars to move my file forward."


def ar(text: str) -> str:
    """The Arabic of a whole catalog message (fails for text that is not a msgid)."""
    translated = I18N.gettext(text, locale="ar")
    assert translated != text, f"not an Arabic catalog message: {text!r}"
    return translated


def in_arabic(render, *args) -> str:
    """What a screen function renders for an Arabic-speaking user."""
    with I18N.context(), I18N.use_locale("ar"):
        return str(render(*args))


class Deployment:
    def __init__(self, tmp: Path, server: SandboxServer, client: SandboxClient, **extra_env: str) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "var"
        self.server = server
        self.client = client
        self.bot = BotProcess(self.data_dir, server.url, tmp / "bot.log", dict(extra_env))

    def db_rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "nazaha.db") as db:
            return db.execute(sql).fetchall()

    def decrypt_with_team_key(self, designation: str) -> dict:
        passphrase_file = self.tmp / "passphrase.txt"
        out = subprocess.run(
            nazaha_command(
                "decrypt", designation, "--passphrase-file", str(passphrase_file),
                "--key-file", str(recovery_file(self.data_dir)),
            ),
            env=nazaha_env(self.data_dir, self.server.url),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout)

    async def open_with_receipt(self, receipt: str):
        engine = create_engine(f"sqlite+aiosqlite:///{self.data_dir / 'nazaha.db'}")
        try:
            vault = await ReportVault.load(
                create_sessionmaker(engine),
                load_team_public_key(KeyPaths.for_data_dir(self.data_dir)),
                kdf_floor=KDF_TESTING,
            )
            return await vault.open_with_receipt(receipt)
        finally:
            await engine.dispose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    async with SandboxServer(host="127.0.0.1", port=0, default_token=TOKEN) as server:
        client = SandboxClient(server.url, token=TOKEN)
        d = Deployment(tmp, server, client)
        run_init(d.data_dir, server.url)
        await d.bot.launch()
        try:
            yield d
        finally:
            d.bot.stop()
            await client.close()


async def complete_corruption_report_in_arabic(chat: Chat, description: str) -> str:
    await chat.send("/start")
    await chat.expect(ar("What would you like to do?"))
    await press_callback(chat, "m:report")
    await chat.expect(in_arabic(screens.safety_text, None)[:20])
    await press_callback(chat, "n:continue:safety")
    await chat.expect(ar("What kind of corruption is it? Choose the closest category."))
    await press_callback(chat, "f:category:bribery")
    await chat.expect(ar("Which kind of institution is involved?"))
    await press_callback(chat, "f:sector:local_council")
    await chat.expect(ar('In which governorate did it happen? You may choose "Prefer not to say".'))
    await press_callback(chat, "f:governorate:hebron")
    await chat.expect(ar("When did it happen?"))
    await press_callback(chat, "f:when:last_month")
    await chat.expect(in_arabic(lambda: labels.QUESTIONS["description"])[:15])
    await chat.send(description)
    await chat.expect("(")  # "received (N characters so far)"
    await press_callback(chat, "n:done:description")
    await chat.expect(in_arabic(lambda: labels.QUESTIONS["evidence"])[:10])
    await press_callback(chat, "n:done:evidence")
    await chat.expect(in_arabic(lambda: labels.QUESTIONS["contact"])[:10])
    await press_callback(chat, "f:contact:anonymous")
    await chat.expect(in_arabic(lambda: labels.QUESTIONS["notify"])[:10])
    await press_callback(chat, "f:notify:none")
    await chat.expect(ar("Please check your report before you send it:"))
    await press_callback(chat, "n:submit:review")
    receipt_message = await chat.expect(in_arabic(screens.receipt, "@").split("@")[0][:25])
    assert receipt_message["protect_content"] is True
    return RECEIPT_RE.search(receipt_message["text"]).group(1)


async def test_arabic_corruption_report_end_to_end(deployment: Deployment):
    chat = await Chat.open(deployment.client, "ar")
    canary = "CANARY-" + "kq7zv3xw" + " فساد في البلدية"
    receipt = await complete_corruption_report_in_arabic(chat, f"{DESCRIPTION} {canary}")

    rows = deployment.db_rows("SELECT designation, kind, category, sector, governorate, status FROM reports")
    assert len(rows) >= 1
    designation = [r for r in rows if r[2] == "bribery"][-1][0]
    opened = deployment.decrypt_with_team_key(designation)
    assert opened["fields"]["description"] == f"{DESCRIPTION} {canary}"
    assert opened["triage"]["governorate"] == "hebron"
    assert opened["fields"]["when"] == "last_month"

    by_receipt = await deployment.open_with_receipt(receipt)
    assert by_receipt is not None and by_receipt.designation == designation
    # Arabic-Indic digits and spaces are accepted on input.
    arabic_digits = receipt.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert normalize_receipt(arabic_digits) == receipt.replace(" ", "")
    assert (await deployment.open_with_receipt(arabic_digits)).designation == designation

    # The canary is nowhere in plaintext: database, WAL, data dir, logs.
    hits = find_plaintext(canary[:15], [deployment.data_dir, deployment.bot.log_path])
    assert hits == []
    hits_ar = find_plaintext("فساد في البلدية", [deployment.data_dir, deployment.bot.log_path])
    assert hits_ar == []
    # and no receipt in the logs either
    assert receipt not in deployment.bot.log_path.read_text(errors="replace")
    await assert_no_unknown_calls(deployment.client)  # every method the bot used is modelled


async def test_english_complaint_with_confidential_contact(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/start")
    await chat.expect("Welcome to Nazaha")
    await chat.press("Complain about a public service")
    await chat.expect("Your safety comes first.")
    await chat.press("I understand, continue")
    await chat.expect("Which public service")
    await chat.press("Water and electricity")
    await chat.expect("In which governorate")
    await chat.press("Gaza")
    await chat.expect("Describe what happened")
    await chat.send("No water")
    await chat.expect("Send more, or tap Done")
    await chat.press("Done")
    await chat.expect("too short")
    await chat.send("in our street for three weeks, the municipality does not answer.")
    await chat.expect("characters so far")
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.expect("How would you like to stay in touch?")
    await chat.press("Share my contact details")
    await chat.expect("Do you agree to share them?")
    await chat.press("I agree")
    await chat.expect("write the name")
    await chat.send("Samira K.")
    await chat.expect("phone number")
    await chat.send("0599 123 456")
    await chat.expect("Would you like a short notification")
    await chat.press("No notifications")
    review = await chat.expect("Please check your complaint")  # a complaint, not a report
    assert "Samira K." in review["text"] and "Water and electricity" in review["text"]
    await chat.press("Send the complaint")
    receipt_message = await chat.expect("Your receipt number:")
    assert receipt_message["protect_content"] is True
    receipt = RECEIPT_RE.search(receipt_message["text"]).group(1)
    report = await deployment.open_with_receipt(receipt)
    assert report.kind == "complaint"
    assert report.triage["service"] == "water_electricity"
    assert report.fields["contact_name"] == "Samira K."
    assert report.fields["contact_phone"] == "0599 123 456"
    assert report.fields["description"] == (
        "No water\n\nin our street for three weeks, the municipality does not answer."
    )


async def test_edit_and_cancel_paths(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/report")
    await chat.expect("Your safety comes first.")
    await chat.press("I understand, continue")
    await chat.expect("What kind of corruption")
    await chat.press("Bribery")
    await chat.expect("Which kind of institution")
    await chat.press("Back")
    await chat.expect("What kind of corruption")
    await chat.press("Public procurement")
    await chat.expect("Which kind of institution")
    await chat.press("Ministry")
    await chat.expect("In which governorate")
    await chat.press("Nablus")
    await chat.expect("When did it happen?")
    await chat.press("still going on")
    await chat.expect("Describe what happened")
    await chat.send(DESCRIPTION)
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.expect("stay in touch")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your report")
    await chat.press("Edit: Governorate")
    await chat.expect("In which governorate")
    await chat.press("Jenin")
    review = await chat.expect("Please check your report")
    assert "Jenin" in review["text"] and "Nablus" not in review["text"]
    assert "Public procurement" in review["text"]
    # Cancel asks first; "No" keeps everything.
    await chat.press("Cancel")
    await chat.expect("Discard this report?")
    await chat.press("No, continue")
    review = await chat.expect("Please check your report")
    assert "Jenin" in review["text"]
    # /start mid-flow asks before discarding too; "Yes" discards.
    await chat.send("/start")
    await chat.expect("Discard this report?")
    await chat.press("Yes, discard it")
    await chat.expect("Your draft was deleted. Nothing was sent.")
    # Old buttons of the discarded report have expired.
    await chat.press("Send the report", in_message=review)
    await chat.expect("This button has expired.")


async def test_bad_input_gets_clear_answer_and_loses_nothing(deployment: Deployment):
    chat = await Chat.open(deployment.client, "en")
    await chat.send("/report")
    await chat.press("I understand, continue")
    await chat.expect("What kind of corruption")
    await chat.send_kind("sticker")
    await chat.expect("Please choose one of the buttons below.")
    await chat.send_kind("location")
    await chat.expect("Please choose one of the buttons below.")
    question = await chat.latest_keyboard_message()
    await chat.press_data(question["message_id"], "f:category:no-such-thing")
    await chat.expect("This button has expired.")
    await chat.press_data(question["message_id"], "zz" * 20)
    await chat.expect("This button has expired.")
    await chat.send("/frobnicate")
    await chat.expect("your draft is kept")
    await chat.press("Conflict of interest")
    await chat.press_data(question["message_id"], "f:category:bribery")  # an old button
    await chat.expect("This button has expired.")
    await chat.press("Private company")
    await chat.press("Prefer not to say")
    await chat.press("Earlier")
    await chat.expect("Describe what happened")
    await chat.send_kind("photo", content=b"\x89PNG fake")
    await chat.expect("Please write the description here, or send a voice note.")
    weird = "\u200fمدير\u200b المشتريات\u202e \x07\x1b[31m" + "ز" * 60
    full = "x" * (4096 - 1) + "\u200f"
    await chat.send(weird)
    await chat.expect("characters so far")
    await chat.send(full)
    await chat.expect("characters so far")
    await chat.press("Done")
    await chat.expect("Do you have evidence?")
    await chat.press("Done")
    await chat.press("Stay anonymous")
    await chat.press("No notifications")
    await chat.expect("Please check your report")
    # The review shows the description back exactly, split over messages as needed.
    shown = "".join(m["text"] for m in await chat.bot_messages_since(chat.last_seen))
    assert "Your description:\n\n" + weird + "\n\n" + full in shown
    await chat.press("Send the report")
    receipt = RECEIPT_RE.search((await chat.expect("Your receipt number:"))["text"]).group(1)
    report = await deployment.open_with_receipt(receipt)
    assert report.fields["description"] == weird + "\n\n" + full
    assert report.triage["category"] == "conflict_of_interest"


async def test_commands_registered_per_language(deployment: Deployment):
    for _ in range(200):  # the bot registers them at start-up: wait for it
        if len(await deployment.client.calls("setMyShortDescription")) >= 3:
            break
        await asyncio.sleep(0.1)
    english = await deployment.client.commands(language_code="en")
    arabic = await deployment.client.commands(language_code="ar")
    default = await deployment.client.commands()
    assert {c["command"] for c in english} >= {"start", "report", "complaint", "followup", "cancel", "wipe", "forget"}
    assert [c["command"] for c in english] == [c["command"] for c in arabic]
    assert next(c for c in english if c["command"] == "report")["description"] == "Report corruption"
    assert next(c for c in arabic if c["command"] == "report")["description"] == ar("Report corruption")
    assert ar("Report corruption") != "Report corruption"
    assert default == arabic
    descriptions = {
        c["params"].get("language_code"): c["params"]["description"]
        for c in await deployment.client.calls("setMyDescription")
    }
    assert set(descriptions) >= {None, "ar", "en"}
    assert descriptions["en"].startswith("Nazaha lets you report corruption")
    assert descriptions["ar"] == descriptions[None] != descriptions["en"]


async def test_language_button_switches_and_is_remembered(deployment: Deployment):
    chat = await Chat.open(deployment.client, "ar")
    await chat.send("/start")
    await chat.expect(ar("What would you like to do?"))
    await press_callback(chat, "m:language")
    await press_callback(chat, "l:en")
    await chat.expect("Language set to English.")
    await chat.send("hello")
    await chat.expect("What would you like to do?")
    await press_callback(chat, "m:language")
    await press_callback(chat, "l:ar")
    await chat.expect(ar("What would you like to do?"))
    await assert_no_unknown_calls(deployment.client)
