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
    KeyPaths,
    create_team_key,
    ensure_bot_secrets,
    load_bot_secrets,
    load_team_private_key,
    load_team_public_key,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def paths(tmp_path) -> KeyPaths:
    return KeyPaths.for_data_dir(tmp_path / "var")


def test_key_paths(tmp_path):
    p = KeyPaths.for_data_dir(tmp_path)
    assert p.data_dir == tmp_path
    assert p.bot_key == tmp_path / "bot.key"
    assert p.pepper == tmp_path / "pepper.key"
    assert p.team_public == tmp_path / "team-public.key"
    assert p.team_recovery == tmp_path / "team-recovery.key"
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


def test_create_team_key_and_load(paths):
    public = create_team_key(paths, "recovery passphrase", KDF_TESTING, floor=KDF_TESTING)
    assert mode(paths.team_recovery) == 0o600
    assert mode(paths.team_public) == 0o644
    assert paths.team_public.read_bytes() == public.to_bytes()
    assert json.loads(paths.team_recovery.read_bytes())["key_id"] == public.key_id

    loaded_public = load_team_public_key(paths)
    assert loaded_public == public
    private = load_team_private_key(paths.team_recovery, "recovery passphrase", floor=KDF_TESTING)
    assert private.key_id == public.key_id

    data_key = new_data_key()
    wrapped = wrap_for_team(data_key, loaded_public, "rep-1")
    assert unwrap_with_team(wrapped, private, "rep-1") == data_key
    assert sorted(p.name for p in paths.data_dir.iterdir()) == ["team-public.key", "team-recovery.key"]


def test_create_team_key_refuses_overwrite(paths):
    public = create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING)
    before = (paths.team_public.read_bytes(), paths.team_recovery.read_bytes())
    with pytest.raises(FileExistsError):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING)
    # the operator moved the recovery copy offline: the public key alone still blocks
    paths.team_recovery.unlink()
    with pytest.raises(FileExistsError):
        create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING)
    assert paths.team_public.read_bytes() == before[0]
    assert load_team_public_key(paths) == public


def test_create_team_key_refuses_weak_params(paths):
    with pytest.raises(WeakKdfParameters):
        create_team_key(paths, "pw", KDF_TESTING)  # default floor
    assert not paths.team_public.exists() and not paths.team_recovery.exists()


def test_load_team_private_key_errors(paths):
    create_team_key(paths, "pw", KDF_TESTING, floor=KDF_TESTING)
    with pytest.raises(WrongPassphrase):
        load_team_private_key(paths.team_recovery, "not pw", floor=KDF_TESTING)
    with pytest.raises(WeakKdfParameters):  # production floor refuses test params
        load_team_private_key(paths.team_recovery, "pw")
    doc = json.loads(paths.team_recovery.read_bytes())
    doc["params"]["memory_kib"] = 32
    paths.team_recovery.write_text(json.dumps(doc))
    with pytest.raises(WeakKdfParameters):
        load_team_private_key(paths.team_recovery, "pw", floor=KDF_TESTING)
    paths.team_recovery.write_bytes(b"garbage")
    with pytest.raises(TamperedData):
        load_team_private_key(paths.team_recovery, "pw", floor=KDF_TESTING)
    with pytest.raises(FileNotFoundError):
        load_team_private_key(paths.data_dir / "nope.key", "pw", floor=KDF_TESTING)


def test_load_team_public_key_missing_or_corrupt(paths):
    with pytest.raises(FileNotFoundError, match="nazaha init"):
        load_team_public_key(paths)
    paths.data_dir.mkdir(parents=True)
    paths.team_public.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        load_team_public_key(paths)


def test_stronger_params_round_trip(paths):
    params = KdfParams(memory_kib=256, iterations=2, lanes=2)
    public = create_team_key(paths, "pw", params, floor=KDF_TESTING)
    assert load_team_private_key(paths.team_recovery, "pw", floor=params).key_id == public.key_id
