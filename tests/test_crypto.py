"""Round trips and negative tests for nazaha.storage.crypto."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nazaha.storage import crypto
from nazaha.storage.crypto import (
    DESIGNATION_ALPHABET,
    KDF_FLOOR,
    KDF_PRODUCTION,
    KDF_TESTING,
    RECEIPT_DIGITS,
    BotKeyBox,
    CryptoError,
    KdfParams,
    ReporterKeys,
    TamperedData,
    TeamPrivateKey,
    TeamPublicKey,
    UnknownKeyId,
    WeakKdfParameters,
    WrongPassphrase,
    WrongReceipt,
    argon2id,
    derive_reporter_keys,
    format_receipt,
    new_data_key,
    new_receipt,
    new_system_salt,
    normalize_receipt,
    open_field,
    open_sealed,
    open_team_private_key,
    pseudonym,
    random_designation,
    seal,
    seal_field,
    seal_team_private_key,
    unwrap_for_reporter,
    unwrap_with_team,
    wrap_for_reporter,
    wrap_for_team,
    wrapped_key_id,
)

RLM = "\u200f"
LRM = "\u200e"
NBSP = "\u00a0"


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def team() -> TeamPrivateKey:
    return TeamPrivateKey.generate()


@pytest.fixture(scope="module")
def other_team() -> TeamPrivateKey:
    return TeamPrivateKey.generate()


@pytest.fixture
def data_key() -> bytes:
    return new_data_key()


# --------------------------------------------------------------------------- errors


def test_error_hierarchy():
    for cls in (TamperedData, WrongPassphrase, WrongReceipt, WeakKdfParameters, UnknownKeyId):
        assert issubclass(cls, CryptoError)
    assert not issubclass(WrongReceipt, TamperedData)


# --------------------------------------------------------------------------- KDF params


def test_kdf_params_dict_round_trip():
    assert KdfParams.from_dict(KDF_PRODUCTION.to_dict()) == KDF_PRODUCTION
    assert KDF_PRODUCTION.to_dict() == {"memory_kib": 65536, "iterations": 3, "lanes": 4}


@pytest.mark.parametrize(
    "bad",
    [
        {"memory_kib": 64, "iterations": 1},
        {"memory_kib": 64, "iterations": 1, "lanes": 1, "extra": 1},
        {"memory_kib": "64", "iterations": 1, "lanes": 1},
        {"memory_kib": 64, "iterations": 0, "lanes": 1},
        {"memory_kib": 64, "iterations": True, "lanes": 1},
        {"memory_kib": 8, "iterations": 1, "lanes": 4},
        {"memory_kib": 2**40, "iterations": 1, "lanes": 1},
        [64, 1, 1],
    ],
)
def test_kdf_params_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError):
        KdfParams.from_dict(bad)


def test_check_at_least():
    KDF_PRODUCTION.check_at_least(KDF_FLOOR)
    KDF_FLOOR.check_at_least(KDF_FLOOR)
    for weaker in (
        KdfParams(memory_kib=19455, iterations=2, lanes=1),
        KdfParams(memory_kib=65536, iterations=1, lanes=4),
    ):
        with pytest.raises(WeakKdfParameters):
            weaker.check_at_least(KDF_FLOOR)
    with pytest.raises(WeakKdfParameters):
        KdfParams(memory_kib=65536, iterations=3, lanes=1).check_at_least(KDF_PRODUCTION)


def test_production_floor_refuses_testing_params():
    # The default floor is the production one: cheap test parameters must be refused,
    # before any derivation happens.
    with pytest.raises(WeakKdfParameters):
        argon2id(b"secret", b"saltsalt", KDF_TESTING)
    with pytest.raises(WeakKdfParameters):
        derive_reporter_keys(new_receipt(), new_system_salt(), KDF_TESTING)
    with pytest.raises(WeakKdfParameters):
        seal_team_private_key(TeamPrivateKey.generate(), "pass", KDF_TESTING)


def test_argon2id_deterministic_and_salted():
    a = argon2id(b"secret", b"salt-one", KDF_TESTING, floor=KDF_TESTING)
    assert a == argon2id(b"secret", b"salt-one", KDF_TESTING, floor=KDF_TESTING)
    assert a != argon2id(b"secret", b"salt-two", KDF_TESTING, floor=KDF_TESTING)
    assert a != argon2id(b"secreT", b"salt-one", KDF_TESTING, floor=KDF_TESTING)
    assert len(a) == 32
    assert len(argon2id(b"s", b"salt-one", KDF_TESTING, floor=KDF_TESTING, length=64)) == 64


def test_argon2id_known_answer():
    # RFC 9106 style sanity: output depends on every parameter.
    base = argon2id(b"pw", b"somesalt", KDF_TESTING, floor=KDF_TESTING)
    more_mem = KdfParams(memory_kib=128, iterations=1, lanes=1)
    more_it = KdfParams(memory_kib=64, iterations=2, lanes=1)
    more_lanes = KdfParams(memory_kib=64, iterations=1, lanes=2)
    outs = {base} | {
        argon2id(b"pw", b"somesalt", p, floor=KDF_TESTING) for p in (more_mem, more_it, more_lanes)
    }
    assert len(outs) == 4


# --------------------------------------------------------------------------- sealing


def test_new_data_key():
    keys = {new_data_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 for k in keys)


def test_seal_round_trip_and_format(data_key):
    sealed = seal(data_key, b"aad", b"hello")
    assert sealed[0] == 1
    assert len(sealed) == 1 + 12 + 5 + 16
    assert open_sealed(data_key, b"aad", sealed) == b"hello"
    assert seal(data_key, b"aad", b"hello") != sealed  # random nonce
    assert open_sealed(data_key, b"aad", seal(data_key, b"aad", b"")) == b""


def test_seal_rejects_wrong_key_length():
    with pytest.raises(ValueError):
        seal(b"short", b"", b"x")
    with pytest.raises(ValueError):
        open_sealed(b"short", b"", b"x" * 40)


def test_open_sealed_wrong_key_or_aad(data_key):
    sealed = seal(data_key, b"aad", b"hello")
    with pytest.raises(TamperedData):
        open_sealed(new_data_key(), b"aad", sealed)
    with pytest.raises(TamperedData):
        open_sealed(data_key, b"aae", sealed)


@pytest.mark.parametrize("cut", [0, 1, 12, 13, 28, -1])
def test_open_sealed_truncated(data_key, cut):
    sealed = seal(data_key, b"aad", b"hello")
    with pytest.raises(TamperedData):
        open_sealed(data_key, b"aad", sealed[:cut])


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=512), aad=st.binary(max_size=64), data=st.data())
def test_property_seal_round_trip_and_any_bit_flip_fails(plaintext, aad, data):
    key = new_data_key()
    sealed = seal(key, aad, plaintext)
    assert open_sealed(key, aad, sealed) == plaintext
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed) * 8 - 1), label="bit")
    with pytest.raises(TamperedData):
        open_sealed(key, aad, flip(sealed, bit))


@settings(max_examples=100, deadline=None)
@given(
    report_id=st.text(max_size=40),
    field=st.text(max_size=20),
    plaintext=st.binary(max_size=256),
    data=st.data(),
)
def test_property_field_round_trip_and_bit_flip(report_id, field, plaintext, data):
    key = new_data_key()
    sealed = seal_field(key, report_id, field, plaintext)
    assert open_field(key, report_id, field, sealed) == plaintext
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed) * 8 - 1), label="bit")
    with pytest.raises(TamperedData):
        open_field(key, report_id, field, flip(sealed, bit))


def test_field_round_trip(data_key):
    text = "وصف الحادثة: رشوة في دائرة الترخيص".encode()
    sealed = seal_field(data_key, "rep-1", "description", text)
    assert text not in sealed
    assert open_field(data_key, "rep-1", "description", sealed) == text


def test_field_flipped_bit(data_key):
    sealed = seal_field(data_key, "rep-1", "description", b"secret")
    for bit in (0, 8, 8 * 13, len(sealed) * 8 - 1):
        with pytest.raises(TamperedData):
            open_field(data_key, "rep-1", "description", flip(sealed, bit))


def test_field_moved_to_other_report_or_field(data_key):
    sealed = seal_field(data_key, "rep-1", "description", b"secret")
    with pytest.raises(TamperedData):
        open_field(data_key, "rep-2", "description", sealed)
    with pytest.raises(TamperedData):
        open_field(data_key, "rep-1", "institution", sealed)
    with pytest.raises(TamperedData):
        open_field(new_data_key(), "rep-1", "description", sealed)


def test_field_aad_is_unambiguous(data_key):
    # With naive NUL-joining these two would share an AAD; the length-prefixed frame does not.
    sealed = seal_field(data_key, "a\x00b", "c", b"x")
    with pytest.raises(TamperedData):
        open_field(data_key, "a", "b\x00c", sealed)
    sealed = seal_field(data_key, "ab", "c", b"x")
    with pytest.raises(TamperedData):
        open_field(data_key, "a", "bc", sealed)


def test_field_truncated(data_key):
    sealed = seal_field(data_key, "rep-1", "description", b"secret")
    for n in (0, 5, len(sealed) - 1):
        with pytest.raises(TamperedData):
            open_field(data_key, "rep-1", "description", sealed[:n])


# --------------------------------------------------------------------------- team key


def test_team_key_serialisation(team):
    pub = team.public_key()
    raw = pub.to_bytes()
    assert len(raw) == 1184 + 32
    again = TeamPublicKey.from_bytes(raw)
    assert again == pub and hash(again) == hash(pub)
    assert again.key_id == pub.key_id
    assert re.fullmatch(r"[0-9a-f]{16}", pub.key_id)
    import hashlib

    assert pub.key_id == hashlib.sha256(raw).hexdigest()[:16]

    priv_raw = team.to_bytes()
    assert len(priv_raw) == 64 + 32
    restored = TeamPrivateKey.from_bytes(priv_raw)
    assert restored.public_key() == pub
    assert restored.key_id == pub.key_id


def test_team_key_repr_and_pickle_hide_secrets(team):
    assert team.to_bytes().hex() not in repr(team)
    assert team.key_id in repr(team)
    with pytest.raises(TypeError):
        pickle.dumps(team)


def test_team_key_from_bytes_rejects_wrong_length(team):
    with pytest.raises(ValueError):
        TeamPublicKey.from_bytes(team.public_key().to_bytes()[:-1])
    with pytest.raises(ValueError):
        TeamPrivateKey.from_bytes(team.to_bytes() + b"\x00")


def test_distinct_team_keys_have_distinct_ids(team, other_team):
    assert team.key_id != other_team.key_id


def test_wrap_for_team_round_trip(team, data_key):
    wrapped = wrap_for_team(data_key, team.public_key(), "rep-1")
    assert wrapped_key_id(wrapped) == team.key_id
    assert wrapped[1:9].hex() == team.key_id
    assert unwrap_with_team(wrapped, team, "rep-1") == data_key
    # works from a public key rebuilt from its bytes, and a private key rebuilt from seeds
    pub2 = TeamPublicKey.from_bytes(team.public_key().to_bytes())
    wrapped2 = wrap_for_team(data_key, pub2, "rep-1")
    assert unwrap_with_team(wrapped2, TeamPrivateKey.from_bytes(team.to_bytes()), "rep-1") == data_key


def test_wrap_for_team_flipped_bit(team, data_key):
    wrapped = wrap_for_team(data_key, team.public_key(), "rep-1")
    header_bits = 9 * 8
    # bits in the encapsulated key (ML-KEM part, X25519 part) and in the AEAD ciphertext
    for bit in (
        header_bits,
        header_bits + 8 * 500 + 3,
        header_bits + 8 * 1088 + 1,  # X25519 ephemeral public key
        header_bits + 8 * 1100,
        len(wrapped) * 8 - 1,
    ):
        with pytest.raises(TamperedData):
            unwrap_with_team(flip(wrapped, bit), team, "rep-1")
    with pytest.raises(TamperedData):  # version byte
        unwrap_with_team(flip(wrapped, 0), team, "rep-1")


def test_wrap_for_team_moved_to_other_report(team, data_key):
    wrapped = wrap_for_team(data_key, team.public_key(), "rep-1")
    with pytest.raises(TamperedData):
        unwrap_with_team(wrapped, team, "rep-2")


def test_wrap_for_other_team_key_is_unknown_key_id(team, other_team, data_key):
    wrapped = wrap_for_team(data_key, other_team.public_key(), "rep-1")
    with pytest.raises(UnknownKeyId) as info:
        unwrap_with_team(wrapped, team, "rep-1")
    assert info.value.wanted == other_team.key_id
    assert info.value.have == team.key_id


def test_wrap_for_team_key_id_bit_flip_is_unknown_key_id(team, data_key):
    wrapped = wrap_for_team(data_key, team.public_key(), "rep-1")
    with pytest.raises(UnknownKeyId):
        unwrap_with_team(flip(wrapped, 8), team, "rep-1")


def test_wrap_for_team_truncated(team, data_key):
    wrapped = wrap_for_team(data_key, team.public_key(), "rep-1")
    for n in (0, 1, 9, 20, 1000, len(wrapped) - 1):
        with pytest.raises(TamperedData):
            unwrap_with_team(wrapped[:n], team, "rep-1")


def test_wrap_for_team_rejects_bad_data_key(team):
    with pytest.raises(ValueError):
        wrap_for_team(b"short", team.public_key(), "rep-1")


# --------------------------------------------------------------------------- sealed team key


def _sealed_team_key(team: TeamPrivateKey, passphrase: str = "correct horse") -> bytes:
    return seal_team_private_key(team, passphrase, KDF_TESTING, floor=KDF_TESTING)


def _edit(blob: bytes, **changes) -> bytes:
    doc = json.loads(blob)
    for key, value in changes.items():
        if key == "params":
            doc["params"].update(value)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_seal_team_private_key_round_trip(team):
    blob = _sealed_team_key(team)
    doc = json.loads(blob)
    assert doc["v"] == 1 and doc["kdf"] == "argon2id"
    assert doc["params"] == KDF_TESTING.to_dict()
    assert doc["key_id"] == team.key_id
    assert set(doc) == {"v", "kdf", "params", "salt", "key_id", "sealed"}
    opened = open_team_private_key(blob, "correct horse", floor=KDF_TESTING)
    assert opened.to_bytes() == team.to_bytes()
    assert team.to_bytes().hex() not in blob.decode()


def test_sealed_team_key_salts_differ(team):
    assert json.loads(_sealed_team_key(team))["salt"] != json.loads(_sealed_team_key(team))["salt"]


def test_sealed_team_key_unicode_passphrase_is_normalised(team):
    nfc, nfd = "caf\u00e9 كلمة", "cafe\u0301 كلمة"
    blob = _sealed_team_key(team, nfc)
    assert open_team_private_key(blob, nfd, floor=KDF_TESTING).key_id == team.key_id


def test_sealed_team_key_wrong_passphrase(team):
    blob = _sealed_team_key(team)
    with pytest.raises(WrongPassphrase):
        open_team_private_key(blob, "wrong horse", floor=KDF_TESTING)


def test_sealed_team_key_lowered_params_below_floor(team):
    # File made with production-like params above the floor; an attacker lowers them.
    strong = KdfParams(memory_kib=128, iterations=2, lanes=1)
    blob = seal_team_private_key(team, "pw", strong, floor=strong)
    lowered = _edit(blob, params={"memory_kib": 64, "iterations": 1})
    with pytest.raises(WeakKdfParameters):
        open_team_private_key(lowered, "pw", floor=strong)
    # Production floor refuses a file made with test parameters.
    with pytest.raises(WeakKdfParameters):
        open_team_private_key(_sealed_team_key(team), "correct horse")


def test_sealed_team_key_edited_params_above_floor_fail(team):
    blob = _sealed_team_key(team)
    for edit in ({"iterations": 2}, {"memory_kib": 128}, {"lanes": 2, "memory_kib": 64}):
        with pytest.raises((WrongPassphrase, TamperedData)):
            open_team_private_key(_edit(blob, params=edit), "correct horse", floor=KDF_TESTING)


def test_sealed_team_key_edited_header_fails(team, other_team):
    blob = _sealed_team_key(team)
    with pytest.raises((WrongPassphrase, TamperedData)):
        open_team_private_key(_edit(blob, key_id=other_team.key_id), "correct horse", floor=KDF_TESTING)
    with pytest.raises((WrongPassphrase, TamperedData)):
        open_team_private_key(_edit(blob, salt="AAAAAAAAAAAAAAAAAAAAAA=="), "correct horse", floor=KDF_TESTING)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 3},
        {"v": True},
        {"kdf": "scrypt"},
        {"salt": "not base64!"},
        {"sealed": "@@@"},
        {"key_id": "short"},
        {"params": {"memory_kib": 4, "lanes": 1}},
    ],
)
def test_sealed_team_key_malformed_structure_is_tampered(team, changes):
    blob = _edit(_sealed_team_key(team), **changes)
    with pytest.raises(TamperedData):
        open_team_private_key(blob, "correct horse", floor=KDF_TESTING)


def test_sealed_team_key_flipped_bit_in_ciphertext(team):
    import base64

    blob = _sealed_team_key(team)
    sealed = base64.b64decode(json.loads(blob)["sealed"])
    edited = _edit(blob, sealed=base64.b64encode(flip(sealed, 8 * 20)).decode())
    with pytest.raises(WrongPassphrase):
        open_team_private_key(edited, "correct horse", floor=KDF_TESTING)


@pytest.mark.parametrize("cut", [0, 1, 10, -10, -2])
def test_sealed_team_key_truncated(team, cut):
    blob = _sealed_team_key(team).rstrip()
    with pytest.raises(TamperedData):
        open_team_private_key(blob[:cut], "correct horse", floor=KDF_TESTING)


def test_sealed_team_key_not_json(team):
    for junk in (b"", b"\xff\xfe", b"[]", b'"x"', b"null"):
        with pytest.raises(TamperedData):
            open_team_private_key(junk, "pw", floor=KDF_TESTING)


def test_seal_team_private_key_requested_below_floor(team):
    with pytest.raises(WeakKdfParameters):
        seal_team_private_key(team, "pw", KDF_TESTING)  # default floor = KDF_FLOOR
    with pytest.raises(WeakKdfParameters):
        seal_team_private_key(
            team, "pw", KdfParams(memory_kib=64, iterations=1, lanes=1), floor=KdfParams(memory_kib=128, iterations=1, lanes=1)
        )


def test_empty_passphrase_refused(team):
    with pytest.raises(ValueError):
        seal_team_private_key(team, "", KDF_TESTING, floor=KDF_TESTING)


# --------------------------------------------------------------------------- receipts


def test_new_receipt_format_and_uniqueness():
    receipts = [new_receipt() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9]{20}", r) for r in receipts)
    assert RECEIPT_DIGITS == 20
    assert len(set(receipts)) == 1000
    # every digit position uses the full range (not e.g. a fixed leading digit)
    assert {r[0] for r in receipts} == set("0123456789")


def test_format_receipt():
    assert format_receipt("12345678901234567890") == "1234 5678 9012 3456 7890"
    assert format_receipt("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠") == "1234 5678 9012 3456 7890"
    with pytest.raises(ValueError):
        format_receipt("1234")


ASCII = "12345678901234567890"


@pytest.mark.parametrize(
    "text",
    [
        ASCII,
        "1234 5678 9012 3456 7890",
        "  1234-5678-9012-3456-7890  ",
        "1234\u20135678\u20149012\u22123456\u20107890",  # en/em dash, minus, hyphen
        f"1234{NBSP}5678{NBSP}9012\u202f3456\t7890\n",
        "١٢٣٤ ٥٦٧٨ ٩٠١٢ ٣٤٥٦ ٧٨٩٠",
        f"{RLM}١٢٣٤{RLM} {RLM}٥٦٧٨{RLM} ٩٠١٢ {LRM}٣٤٥٦ ٧٨٩٠{RLM}",
        "۱۲۳۴ ۵۶۷۸ ۹۰۱۲ ۳۴۵۶ ۷۸۹۰",  # Extended Arabic-Indic (Persian/Urdu keyboards)
        "\u2067١٢٣٤ 5678\u2069 ۹۰۱۲\u200b3456\u061c\ufeff7890",  # isolates, ZWSP, ALM, BOM
    ],
)
def test_normalize_receipt_accepts(text):
    assert normalize_receipt(text) == ASCII


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1234 5678 9012 3456",  # too few digits
        "١٢٣٤ ٥٦٧٨ ٩٠١٢ ٣٤٥٦ ٧٨٩",  # 19 Arabic-Indic digits
        "1234 5678 9012 3456 7890 1",  # too many
        "1234 5678 9012 3456 789O",  # letter O
        "1234.5678.9012.3456.7890",
        "receipt: 12345678901234567890",
        "１２３４５６７８９０１２３４５６７８９０",  # fullwidth digits: not accepted
        "1" * 20 + " " * 300,  # absurdly long input
    ],
)
def test_normalize_receipt_rejects(text):
    assert normalize_receipt(text) is None


def test_normalize_receipt_non_str():
    assert normalize_receipt(None) is None  # type: ignore[arg-type]


def test_derive_reporter_keys_round_trip(data_key):
    salt = new_system_salt()
    receipt = new_receipt()
    keys = derive_reporter_keys(receipt, salt, KDF_TESTING, floor=KDF_TESTING)
    assert isinstance(keys, ReporterKeys)
    assert len(keys.lookup) == 32 and len(keys.wrap_key) == 32
    assert keys.lookup != keys.wrap_key
    assert keys.lookup.hex() not in repr(keys) and keys.wrap_key.hex() not in repr(keys)

    wrapped = wrap_for_reporter(data_key, keys.wrap_key, "rep-1")
    # the reporter types the receipt later, formatted and in Arabic-Indic digits
    arabic = format_receipt(receipt).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    again = derive_reporter_keys(RLM + arabic, salt, KDF_TESTING, floor=KDF_TESTING)
    assert again == keys
    assert unwrap_for_reporter(wrapped, again.wrap_key, "rep-1") == data_key


def test_reporter_keys_depend_on_receipt_and_salt():
    salt = new_system_salt()
    a = derive_reporter_keys(ASCII, salt, KDF_TESTING, floor=KDF_TESTING)
    b = derive_reporter_keys("12345678901234567891", salt, KDF_TESTING, floor=KDF_TESTING)
    c = derive_reporter_keys(ASCII, new_system_salt(), KDF_TESTING, floor=KDF_TESTING)
    assert len({a.lookup, b.lookup, c.lookup}) == 3
    assert len({a.wrap_key, b.wrap_key, c.wrap_key}) == 3


def test_reporter_key_pair_is_derived_from_the_receipt():
    salt = new_system_salt()
    receipt = new_receipt()
    keys = derive_reporter_keys(receipt, salt, KDF_TESTING, floor=KDF_TESTING)
    assert len(keys.kem_seed) == 96
    assert keys.kem_seed.hex() not in repr(keys)
    private = keys.kem_private()
    assert isinstance(private, TeamPrivateKey)
    assert private.to_bytes() == keys.kem_seed  # ML-KEM-768 seed || X25519 private
    public = private.public_key().to_bytes()
    assert len(public) == 1216
    # the same receipt typed another way gives the same key pair
    arabic = format_receipt(receipt).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for typed in (format_receipt(receipt), RLM + arabic + LRM, NBSP + receipt):
        again = derive_reporter_keys(typed, salt, KDF_TESTING, floor=KDF_TESTING)
        assert again.kem_private().public_key().to_bytes() == public
    # another receipt (or another system salt) gives another one
    other = ("1" if receipt[0] != "1" else "2") + receipt[1:]
    for different in (
        derive_reporter_keys(other, salt, KDF_TESTING, floor=KDF_TESTING),
        derive_reporter_keys(receipt, new_system_salt(), KDF_TESTING, floor=KDF_TESTING),
    ):
        assert different.kem_seed != keys.kem_seed
        assert different.kem_private().public_key().to_bytes() != public
    # separate from the other derived values
    assert keys.lookup not in keys.kem_seed and keys.wrap_key not in keys.kem_seed
    with pytest.raises(TypeError):
        pickle.dumps(keys)


def test_a_value_sealed_to_the_reporter_public_key_opens_with_the_receipt():
    salt = new_system_salt()
    receipt = new_receipt()
    public = TeamPublicKey.from_bytes(
        derive_reporter_keys(receipt, salt, KDF_TESTING, floor=KDF_TESTING)
        .kem_private()
        .public_key()
        .to_bytes()
    )
    case_key = new_data_key()
    sealed = crypto.seal_to_key(public, "nazaha/test/case-key", ("rep-1",), case_key)
    later = derive_reporter_keys(format_receipt(receipt), salt, KDF_TESTING, floor=KDF_TESTING)
    assert crypto.open_from_key(later.kem_private(), "nazaha/test/case-key", ("rep-1",), sealed) == case_key
    wrong = derive_reporter_keys(new_receipt(), salt, KDF_TESTING, floor=KDF_TESTING)
    with pytest.raises(CryptoError):
        crypto.open_from_key(wrong.kem_private(), "nazaha/test/case-key", ("rep-1",), sealed)


def test_reporter_keys_without_a_seed_have_no_key_pair():
    with pytest.raises(ValueError):
        ReporterKeys(lookup=b"l" * 32, wrap_key=b"w" * 32).kem_private()


def test_malformed_receipt_refused_by_derivation():
    with pytest.raises(WrongReceipt):
        derive_reporter_keys("1234", new_system_salt(), KDF_TESTING, floor=KDF_TESTING)


def test_wrong_receipt(data_key):
    salt = new_system_salt()
    right = derive_reporter_keys(new_receipt(), salt, KDF_TESTING, floor=KDF_TESTING)
    wrong = derive_reporter_keys(new_receipt(), salt, KDF_TESTING, floor=KDF_TESTING)
    wrapped = wrap_for_reporter(data_key, right.wrap_key, "rep-1")
    with pytest.raises(WrongReceipt):
        unwrap_for_reporter(wrapped, wrong.wrap_key, "rep-1")


def test_reporter_wrapped_key_flipped_bit_moved_truncated(data_key):
    wrap_key = new_data_key()
    wrapped = wrap_for_reporter(data_key, wrap_key, "rep-1")
    assert unwrap_for_reporter(wrapped, wrap_key, "rep-1") == data_key
    for bit in range(0, len(wrapped) * 8, 37):
        with pytest.raises(WrongReceipt):
            unwrap_for_reporter(flip(wrapped, bit), wrap_key, "rep-1")
    with pytest.raises(WrongReceipt):
        unwrap_for_reporter(wrapped, wrap_key, "rep-2")
    for n in (0, 10, len(wrapped) - 1):
        with pytest.raises(WrongReceipt):
            unwrap_for_reporter(wrapped[:n], wrap_key, "rep-1")


# --------------------------------------------------------------------------- bot key box


def test_bot_key_box_round_trip_and_binding():
    key = new_data_key()
    box = BotKeyBox(key)
    sealed = box.seal("fsm", "abc123", b'{"state": "draft"}')
    assert box.open("fsm", "abc123", sealed) == b'{"state": "draft"}'
    assert BotKeyBox(key).open("fsm", "abc123", sealed) == b'{"state": "draft"}'
    with pytest.raises(TamperedData):
        box.open("fsm", "abc124", sealed)  # moved to another row
    with pytest.raises(TamperedData):
        box.open("notify", "abc123", sealed)  # other purpose
    with pytest.raises(TamperedData):
        BotKeyBox(new_data_key()).open("fsm", "abc123", sealed)  # other bot key
    with pytest.raises(TamperedData):
        box.open("fsm", "abc123", flip(sealed, 100))
    with pytest.raises(TamperedData):
        box.open("fsm", "abc123", sealed[:-1])


def test_bot_key_box_requires_32_byte_key():
    with pytest.raises(ValueError):
        BotKeyBox(b"x" * 31)
    assert "redacted" in repr(BotKeyBox(new_data_key()))


# --------------------------------------------------------------------------- pseudonyms etc.


def test_pseudonym_stable_and_per_pepper():
    p1, p2 = new_data_key(), new_data_key()
    a = pseudonym(p1, "fsm", 123456, 987654321, 987654321)
    assert a == pseudonym(p1, "fsm", 123456, 987654321, 987654321)
    assert re.fullmatch(r"[0-9a-f]{64}", a)
    assert a != pseudonym(p2, "fsm", 123456, 987654321, 987654321)
    assert a != pseudonym(p1, "rate", 123456, 987654321, 987654321)
    assert "987654321" not in a


def test_pseudonym_encoding_is_unambiguous():
    p = new_data_key()
    assert pseudonym(p, "ab", "c") != pseudonym(p, "a", "bc")
    assert pseudonym(p, "a\x00b") != pseudonym(p, "a", "b")
    assert pseudonym(p, 5) != pseudonym(p, "5")
    assert pseudonym(p, "x") != pseudonym(p, b"x")
    assert pseudonym(p, 1) != pseudonym(p, True)
    assert pseudonym(p, None) != pseudonym(p, "")
    assert pseudonym(p) != pseudonym(p, "")


def test_pseudonym_rejects_bad_input():
    with pytest.raises(ValueError):
        pseudonym(b"", "x")
    with pytest.raises(TypeError):
        pseudonym(new_data_key(), 1.5)


def test_random_designation():
    seen = {random_designation() for _ in range(500)}
    assert len(seen) > 490
    for d in seen:
        assert re.fullmatch(r"R-[A-Z2-9]{6}", d)
        assert not set(d[2:]) & set("0O1IL")
        assert set(d[2:]) <= set(DESIGNATION_ALPHABET)
    assert not set(DESIGNATION_ALPHABET) & set("0O1IL")


def test_new_system_salt():
    salts = {new_system_salt() for _ in range(50)}
    assert len(salts) == 50 and all(len(s) == 16 for s in salts)


def test_constant_time_equal():
    assert crypto.constant_time_equal(b"abc", b"abc")
    assert not crypto.constant_time_equal(b"abc", b"abd")


# --------------------------------------------------------------------------- staff passwords


def test_password_hash_round_trip():
    phc = crypto.hash_password("s3cret كلمة", KDF_TESTING, floor=KDF_TESTING)
    assert phc.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert "s3cret" not in phc
    assert crypto.verify_password("s3cret كلمة", phc, floor=KDF_TESTING)
    assert not crypto.verify_password("s3cret", phc, floor=KDF_TESTING)
    assert not crypto.verify_password("", phc, floor=KDF_TESTING)
    assert crypto.hash_password("x", KDF_TESTING, floor=KDF_TESTING) != crypto.hash_password(
        "x", KDF_TESTING, floor=KDF_TESTING
    )


def test_password_hash_floor_and_malformed():
    with pytest.raises(WeakKdfParameters):
        crypto.hash_password("pw", KDF_TESTING)
    phc = crypto.hash_password("pw", KDF_TESTING, floor=KDF_TESTING)
    with pytest.raises(WeakKdfParameters):
        crypto.verify_password("pw", phc)  # production floor refuses a test-strength hash
    for bad in ("", "garbage", phc.replace("argon2id", "argon2i"), phc[:-30]):
        with pytest.raises(TamperedData):
            crypto.verify_password("pw", bad, floor=KDF_TESTING)
    # edited parameters no longer verify
    assert not crypto.verify_password("pw", phc.replace("t=1", "t=2"), floor=KDF_TESTING)


def test_password_needs_rehash():
    phc = crypto.hash_password("pw", KDF_TESTING, floor=KDF_TESTING)
    assert not crypto.password_needs_rehash(phc, KDF_TESTING)
    assert crypto.password_needs_rehash(phc, KDF_PRODUCTION)
