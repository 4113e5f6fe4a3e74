"""`nazaha init` and the bot's start-up leave the bot host unable to open anything."""

from __future__ import annotations

import re
import sqlite3

import pytest

from nazaha.bot.app import build_runtime
from nazaha.bot.cli import build_parser, cmd_bot, cmd_init
from nazaha.bot.settings import Settings
from nazaha.bot.setup import initialise
from nazaha.storage.crypto import KDF_TESTING
from nazaha.storage.keyfiles import BotHostRefused, KeyPaths, load_team_private_key

GOOD = "olive lantern mends a copper kite at dusk"


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    for name in list(__import__("os").environ):
        if name.startswith("NAZAHA_"):
            monkeypatch.delenv(name)
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "var",
        kdf_profile="testing",
        bot_token="123:test-token",
        telegram_api_url="http://127.0.0.1:9",  # never reached
    )


@pytest.fixture
def usb(tmp_path):
    (tmp_path / "usb").mkdir()
    return tmp_path / "usb"


def passphrase_file(tmp_path, text=GOOD):
    path = tmp_path / "pass.txt"
    path.write_text(text + "\n", encoding="utf-8")
    return str(path)


async def run_init(settings, *argv):
    await cmd_init(settings, build_parser().parse_args(["init", *argv]))


async def test_init_refuses_without_a_recovery_file(settings, tmp_path):
    with pytest.raises(SystemExit, match="--recovery-file PATH"):
        await run_init(settings, "--passphrase-file", passphrase_file(tmp_path))
    assert not settings.data_dir.exists()


@pytest.mark.parametrize("inside", ["team-recovery.key", "keys/../r.key"])
async def test_init_refuses_a_recovery_file_inside_the_data_dir(settings, tmp_path, inside):
    with pytest.raises(SystemExit, match="inside the data dir"):
        await run_init(
            settings, "--passphrase-file", passphrase_file(tmp_path), "--recovery-file", str(settings.data_dir / inside)
        )
    assert not settings.data_dir.exists()


async def test_init_refuses_to_overwrite_the_recovery_path(settings, tmp_path, usb):
    (usb / "r.key").write_text("keep me")
    with pytest.raises(SystemExit, match="already exists"):
        await run_init(settings, "--passphrase-file", passphrase_file(tmp_path), "--recovery-file", str(usb / "r.key"))
    assert (usb / "r.key").read_text() == "keep me"


@pytest.mark.parametrize(
    "text, why", [("Zq9!wb", "too short"), ("1qaz2wsx3edc", "common passwords"), ("aaaaaaaaaaaaaaaa", "too easy")]
)
async def test_init_checks_a_passphrase_file_like_a_typed_one(settings, tmp_path, usb, text, why, capsys):
    with pytest.raises(SystemExit, match=why) as caught:
        await run_init(settings, "--passphrase-file", passphrase_file(tmp_path, text), "--recovery-file", str(usb / "r"))
    assert text not in str(caught.value)
    assert not settings.data_dir.exists() and not (usb / "r").exists()


async def test_init_writes_the_recovery_file_outside_and_prints_no_password(settings, tmp_path, usb, capsys):
    await run_init(settings, "--passphrase-file", passphrase_file(tmp_path), "--recovery-file", str(usb / "r.key"))
    out = capsys.readouterr().out
    assert str(usb / "r.key") in out and "opens every report" in out and "offline" in out
    # No password is ever printed: the first administrator gets a one-time invitation link.
    assert re.search(r"http://127\.0\.0\.1:8080/invite/[A-Za-z0-9_-]{40,}\n", out)
    assert not re.search(r"password\W*:|password is", out, re.I)
    assert load_team_private_key(usb / "r.key", GOOD, floor=KDF_TESTING)
    assert sorted(p.name for p in settings.data_dir.iterdir()) == [
        "bot.key", "nazaha.db", "pepper.key", "team-public.key", "team-signing.pub"
    ]
    with sqlite3.connect(settings.data_dir / "nazaha.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "staff_users" not in tables  # no staff account or key copy in the bot's database
    # a second run needs neither, and the bot may start on this data dir
    await run_init(settings)
    assert "Warning" not in capsys.readouterr().out


def test_admin_options_are_gone():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["init", "--admin", "boss"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["init", "--admin-password-file", "x"])


@pytest.mark.parametrize("name", ["team-recovery.key", "demo-passphrase.txt", "console.db"])
async def test_the_bot_refuses_to_start_next_to_forbidden_files(settings, usb, name):
    await initialise(settings, passphrase=GOOD, recovery_file=usb / "r.key")
    (settings.data_dir / name).write_text("x")
    with pytest.raises(BotHostRefused):
        await build_runtime(settings)
    with pytest.raises(SystemExit, match=f"{name}: "):
        await cmd_bot(settings, build_parser().parse_args(["bot"]))


async def test_the_demo_keeps_everything_on_one_machine(settings):
    demo = settings.model_copy(update={"demo": True})
    result = await initialise(demo, passphrase=GOOD)
    paths = KeyPaths.for_data_dir(settings.data_dir)
    assert result.recovery_file == paths.team_recovery.resolve() and paths.team_recovery.exists()
    (settings.data_dir / "demo-passphrase.txt").write_text(GOOD)
    runtime = await build_runtime(demo)
    await runtime.close()
    with pytest.raises(BotHostRefused):
        await build_runtime(settings)  # the same data dir outside the demo
