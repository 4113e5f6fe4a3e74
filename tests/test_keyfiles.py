"""Tests for nazaha.storage.keyfiles: secrets kept outside the database."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading

import pytest

from nazaha.storage.crypto import (
    KDF_TESTING,
    KdfParams,
    TamperedData,
    WeakKdfParameters,
    WrongPassphrase,
    new_data_key,
    unwrap_with_team,
    wrap_for_team,
)
from nazaha.storage.keyfiles import (
    BotHostRefused,
    KeyPaths,
    RecoveryFileRefused,
    check_bot_host_data_dir,
    create_team_key,
    ensure_bot_secrets,
    load_bot_secrets,
    load_team_private_key,
    load_team_public_key,
    rotate_bot_secrets,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def paths(tmp_path) -> KeyPaths:
    return KeyPaths.for_data_dir(tmp_path / "var")


@pytest.fixture
def recovery(tmp_path):
    """Where the operator keeps the recovery file: outside the data dir."""
    offline = tmp_path / "usb"
    offline.mkdir()
    return offline / "team-recovery.key"


def test_key_paths(tmp_path):
    p = KeyPaths.for_data_dir(tmp_path)
    assert p.data_dir == tmp_path
    assert p.bot_key == tmp_path / "bot.key"
    assert p.pepper == tmp_path / "pepper.key"
    assert p.team_public == tmp_path / "team-public.key"
    assert p.team_recovery == tmp_path / "team-recovery.key"
    assert p.console_db == tmp_path / "console.db"
    assert KeyPaths.for_data_dir(str(tmp_path)) == p


def test_ensure_bot_secrets_creates_then_reuses(paths):
    bot_key, pepper = ensure_bot_secrets(paths)
    assert len(bot_key) == 32 and len(pepper) == 32 and bot_key != pepper
    assert paths.bot_key.read_bytes() == bot_key
    assert paths.pepper.read_bytes() == pepper
    assert mode(paths.bot_key) == 0o600
    assert mode(paths.pepper) == 0o600
    assert mode(paths.data_dir) == 0o700
    assert ensure_bot_secrets(paths) == (bot_key, pepper)
    assert load_bot_secrets(paths) == (bot_key, pepper)
    # no temporary files left behind
    assert sorted(p.name for p in paths.data_dir.iterdir()) == ["bot.key", "pepper.key"]


def test_ensure_bot_secrets_tightens_existing_dir(paths):
    paths.data_dir.mkdir(mode=0o755)
    os.chmod(paths.data_dir, 0o755)
    ensure_bot_secrets(paths)
    assert mode(paths.data_dir) == 0o700


def test_ensure_bot_secrets_creates_only_missing(paths):
    bot_key, pepper = ensure_bot_secrets(paths)
    paths.pepper.unlink()
    bot_key2, pepper2 = ensure_bot_secrets(paths)
    assert bot_key2 == bot_key and pepper2 != pepper


def test_ensure_bot_secrets_refuses_wrong_size(paths):
    paths.data_dir.mkdir(parents=True)
    paths.bot_key.write_bytes(b"x" * 31)
    with pytest.raises(ValueError):
        ensure_bot_secrets(paths)
    assert paths.bot_key.read_bytes() == b"x" * 31  # never replaced


def test_ensure_bot_secrets_concurrent_creators_agree(paths):
    results: list[tuple[bytes, bytes]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker():
        try:
            start.wait()
            results.append(ensure_bot_secrets(paths))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert results[0] == (paths.bot_key.read_bytes(), paths.pepper.read_bytes())


def test_load_bot_secrets_missing(paths):
    with pytest.raises(FileNotFoundError, match="nazaha init"):
        load_bot_secrets(paths)


def test_load_bot_secrets_wrong_size(paths):
    ensure_bot_secrets(paths)
    paths.pepper.write_bytes(b"y" * 33)
    with pytest.raises(ValueError):
        load_bot_secrets(paths)


def test_load_bot_secrets_overrides(paths):
    k, p = new_data_key(), new_data_key()
    kb, pb = base64.b64encode(k).decode(), base64.b64encode(p).decode()
    # no files needed when both come from the environment
    assert load_bot_secrets(paths, bot_key_b64=kb, pepper_b64=pb) == (k, p)
    # one override, one file
    file_key, file_pepper = ensure_bot_secrets(paths)
    assert load_bot_secrets(paths, bot_key_b64=kb) == (k, file_pepper)
    assert load_bot_secrets(paths, pepper_b64=pb) == (file_key, p)


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"z" * 16).decode()])
def test_load_bot_secrets_bad_override(paths, bad):
    with pytest.raises(ValueError):
        load_bot_secrets(paths, bot_key_b64=bad, pepper_b64=base64.b64encode(new_data_key()).decode())


def test_create_team_key_and_load(paths, recovery):
    public = create_team_key(
        paths, "recovery passphrase", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery
    )
    assert mode(recovery) == 0o600
    assert mode(paths.team_public) == 0o644
    assert paths.team_public.read_bytes() == public.to_bytes()
    assert json.loads(recovery.read_bytes())["key_id"] == public.key_id

    loaded_public = load_team_public_key(paths)
    assert loaded_public == public
    private = load_team_private_key(recovery, "recovery passphrase", floor=KDF_TESTING)
    assert private.key_id == public.key_id

    data_key = new_data_key()
    wrapped = wrap_for_team(data_key, loaded_public, "rep-1")
    assert unwrap_with_team(wrapped, private, "rep-1") == data_key
    # the recovery file never lands in the data dir
    assert sorted(p.name for p in paths.data_dir.iterdir()) == ["team-public.key", "team-signing.pub"]


def test_create_team_key_refuses_overwrite(paths, recovery):
    public = create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    before = (paths.team_public.read_bytes(), recovery.read_bytes())
    with pytest.raises(FileExistsError):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    # the operator moved the recovery copy offline: the public key alone still blocks
    recovery.unlink()
    with pytest.raises(FileExistsError):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    assert paths.team_public.read_bytes() == before[0]
    assert load_team_public_key(paths) == public


def test_create_team_key_refuses_weak_params(paths, recovery):
    with pytest.raises(WeakKdfParameters):
        create_team_key(paths, "pw", KDF_TESTING, recovery_file=recovery)  # default floor
    assert not paths.team_public.exists() and not recovery.exists()


def test_load_team_private_key_errors(paths, recovery):
    create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    with pytest.raises(WrongPassphrase):
        load_team_private_key(recovery, "not pw", floor=KDF_TESTING)
    with pytest.raises(WeakKdfParameters):  # production floor refuses test params
        load_team_private_key(recovery, "pw")
    doc = json.loads(recovery.read_bytes())
    doc["params"]["memory_kib"] = 32
    recovery.write_text(json.dumps(doc))
    with pytest.raises(WeakKdfParameters):
        load_team_private_key(recovery, "pw", floor=KDF_TESTING)
    recovery.write_bytes(b"garbage")
    with pytest.raises(TamperedData):
        load_team_private_key(recovery, "pw", floor=KDF_TESTING)
    with pytest.raises(FileNotFoundError):
        load_team_private_key(paths.data_dir / "nope.key", "pw", floor=KDF_TESTING)


def test_load_team_public_key_missing_or_corrupt(paths):
    with pytest.raises(FileNotFoundError, match="nazaha init"):
        load_team_public_key(paths)
    paths.data_dir.mkdir(parents=True)
    paths.team_public.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        load_team_public_key(paths)


def test_stronger_params_round_trip(paths, recovery):
    params = KdfParams(memory_kib=256, iterations=2, lanes=2)
    public = create_team_key(paths, "pw", params, floor=KDF_TESTING, recovery_file=recovery)
    assert load_team_private_key(recovery, "pw", floor=params).key_id == public.key_id


# --------------------------------------------------------------------------- recovery path


@pytest.mark.parametrize("inside", ["team-recovery.key", "sub/dir/../recovery.key", "."])
def test_create_team_key_refuses_a_recovery_file_inside_the_data_dir(paths, inside):
    paths.data_dir.mkdir()
    (paths.data_dir / "sub" / "dir").mkdir(parents=True)
    with pytest.raises(RecoveryFileRefused, match="inside the data dir"):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=paths.data_dir / inside)
    assert not paths.team_public.exists()
    assert not (paths.data_dir / "team-recovery.key").exists()


def test_create_team_key_refuses_a_symlink_into_the_data_dir(paths, tmp_path):
    paths.data_dir.mkdir()
    (tmp_path / "link").symlink_to(paths.data_dir)
    with pytest.raises(RecoveryFileRefused, match="inside the data dir"):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=tmp_path / "link" / "r.key")


def test_create_team_key_never_overwrites_the_recovery_path(paths, recovery):
    recovery.write_text("the operator's other file")
    with pytest.raises(RecoveryFileRefused, match="already exists"):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    assert recovery.read_text() == "the operator's other file"
    assert not paths.team_public.exists()
    with pytest.raises(RecoveryFileRefused, match="does not exist"):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery.parent / "no" / "r.key")


def test_the_demo_may_keep_the_recovery_file_in_the_data_dir(paths):
    public = create_team_key(
        paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=paths.team_recovery, allow_in_data_dir=True
    )
    assert load_team_private_key(paths.team_recovery, "pw", floor=KDF_TESTING).key_id == public.key_id


# --------------------------------------------------------------------------- bot host


def test_bot_host_check_passes_an_ordinary_data_dir(paths, recovery):
    check_bot_host_data_dir(paths.data_dir)  # missing: nothing to refuse
    ensure_bot_secrets(paths)
    create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    (paths.data_dir / "nazaha.db").write_bytes(b"SQLite format 3\x00")
    (paths.data_dir / "blobs").mkdir()
    check_bot_host_data_dir(paths.data_dir)


@pytest.mark.parametrize(
    "name, why",
    [
        ("team-recovery.key", "team recovery key"),
        ("passphrase.txt", "passphrase file"),
        ("demo-passphrase.txt", "passphrase file"),
        ("Team_PASSPHRASE", "passphrase file"),
        ("console.db", "console's own store"),
        ("console.db-wal", "console's own store"),
        ("console-secret.key", "console's own store"),
        ("audit-head-42.json", "console's own store"),
    ],
)
def test_bot_host_check_refuses_each_forbidden_file(paths, name, why):
    ensure_bot_secrets(paths)
    (paths.data_dir / name).write_text("x")
    with pytest.raises(BotHostRefused) as caught:
        check_bot_host_data_dir(paths.data_dir)
    assert caught.value.findings == [(paths.data_dir / name, caught.value.findings[0][1])]
    assert why in caught.value.findings[0][1]
    assert str(paths.data_dir / name) in str(caught.value) and why in str(caught.value)


def test_bot_host_check_finds_a_renamed_recovery_file_and_lists_all(paths):
    create_team_key(
        paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=paths.team_recovery, allow_in_data_dir=True
    )
    paths.team_recovery.rename(paths.data_dir / "backup.json")
    (paths.data_dir / "console.db").write_bytes(b"")
    with pytest.raises(BotHostRefused) as caught:
        check_bot_host_data_dir(paths.data_dir)
    assert [p.name for p, _ in caught.value.findings] == ["backup.json", "console.db"]


def test_rotate_bot_secrets_replaces_both_files(paths):
    """The upgrade to 0003 rotates the bot key and pepper: nothing the old ones sealed or
    named can be opened or linked with what the host holds afterwards."""
    old = ensure_bot_secrets(paths)
    rotate_bot_secrets(paths)
    bot_key, pepper = load_bot_secrets(paths)
    assert len(bot_key) == 32 and len(pepper) == 32 and bot_key != pepper
    assert bot_key != old[0] and pepper != old[1]
    assert mode(paths.bot_key) == 0o600 and mode(paths.pepper) == 0o600
    assert mode(paths.data_dir) == 0o700
    assert sorted(p.name for p in paths.data_dir.iterdir()) == ["bot.key", "pepper.key"]  # no temp files
    assert ensure_bot_secrets(paths) == (bot_key, pepper)  # the new ones are kept
    rotate_bot_secrets(paths)
    assert load_bot_secrets(paths) != (bot_key, pepper)


def test_rotate_bot_secrets_on_a_fresh_data_dir(paths):
    rotate_bot_secrets(paths)  # creates the directory, private
    assert mode(paths.data_dir) == 0o700
    bot_key, pepper = load_bot_secrets(paths)
    assert len(bot_key) == 32 and len(pepper) == 32


@pytest.mark.parametrize("place", ["subfolder", "symlinked folder", "padded", "password name"])
def test_bot_host_check_is_not_fooled_by_the_simple_evasions(paths, recovery, tmp_path, place):
    """Found by an attacker's test of the seized host: a key in a subfolder, behind a
    symlink, padded past the sniffing limit, or a password file under another word."""
    ensure_bot_secrets(paths)
    create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING, recovery_file=recovery)
    key = recovery.read_bytes()
    if place == "subfolder":
        (paths.data_dir / "backup").mkdir()
        (paths.data_dir / "backup" / "team-recovery.key").write_bytes(key)
    elif place == "symlinked folder":
        mounted = tmp_path / "mounted"
        mounted.mkdir()
        (mounted / "k").write_bytes(key)
        (paths.data_dir / "usb").symlink_to(mounted)
    elif place == "padded":
        (paths.data_dir / "notes.txt").write_bytes(key + b" " * 70_000)
    else:
        (paths.data_dir / "team-key-password.txt").write_text("olive lantern")
    with pytest.raises(BotHostRefused):
        check_bot_host_data_dir(paths.data_dir)
