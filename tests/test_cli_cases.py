"""`nazaha cases` lists designations with triage fields; `nazaha decrypt` opens a report
with the recovery key, thread included, and says plainly when a designation is unknown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nazaha.bot.setup import initialise
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.casework_support import make_case
from tests.console_support import PASSPHRASE, console_settings

ROOT = Path(__file__).resolve().parent.parent


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NAZAHA_DATA_DIR": str(data_dir), "NAZAHA_KDF_PROFILE": "testing", "NAZAHA_DEMO": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from nazaha.bot.cli import main; main()", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


async def test_cases_lists_and_decrypt_opens_with_thread(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    engine = create_engine(settings.effective_database_url)
    public = load_team_public_key(KeyPaths.for_data_dir(settings.data_dir))
    try:
        sm = create_sessionmaker(engine)
        await make_case(sm, public, designation="R-CASE22", messages=[("reporter", "one more detail", False)])
        await make_case(sm, public, designation="R-CASE33", kind="complaint", category=None, service="health",
                        sector=None, status="acknowledged")
    finally:
        await engine.dispose()
    passphrase_file = tmp_path / "pass.txt"
    passphrase_file.write_text(PASSPHRASE)

    listed = _run(settings.data_dir, "cases")
    assert listed.returncode == 0, listed.stderr
    assert "R-CASE22" in listed.stdout and "R-CASE33" in listed.stdout and "health" in listed.stdout
    rows = json.loads(_run(settings.data_dir, "cases", "--json", "--status", "acknowledged").stdout)
    assert [r["designation"] for r in rows] == ["R-CASE33"]

    opened = _run(settings.data_dir, "decrypt", "r-case22", "--passphrase-file", str(passphrase_file))
    assert opened.returncode == 0, opened.stderr
    report = json.loads(opened.stdout)
    assert report["thread"] == [{"direction": "reporter", "on": "2026-11-01", "body": "one more detail"}]
    assert report["fields"]["description"]

    unknown = _run(settings.data_dir, "decrypt", "R-NOSUCH", "--passphrase-file", str(passphrase_file))
    assert unknown.returncode != 0
    assert "no report has the designation R-NOSUCH" in unknown.stderr
    assert "Traceback" not in unknown.stderr
