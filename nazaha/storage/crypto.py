"""All of Nazaha's cryptography, in one place.

Design (see DESIGN.md, "Secrets, keys and what is readable where"):

* Every report field is sealed with AES-256-GCM under a random per-report *data key*; the
  AAD binds the report id and the field name, so a ciphertext moved to another report or
  field fails to open.
* The data key is wrapped twice: by HPKE (ML-KEM-768+X25519 hybrid KEM, HKDF-SHA256,
  AES-256-GCM) to the *team public key*, and under a key derived from the reporter's
  *receipt* (Argon2id then HKDF).  The receipt itself is never stored.
* The team private key only ever exists at rest sealed under a passphrase (Argon2id with
  parameters recorded in, and authenticated by, the file).
* The bot process holds a *bot key* (for drafts, notification links, subscriber ids) and a
  *pepper* for pseudonyms; Telegram ids are never stored in the clear.

Encodings
---------
``seal`` output: ``0x01 || nonce(12) || AES-256-GCM ciphertext+tag(16)``.

Associated data and HPKE ``info`` strings are built by :func:`_frame`: an ASCII label, a NUL,
then every part as a 4-byte big-endian length followed by its bytes (strings as UTF-8).
Length prefixes make the encoding unambiguous even if an id contains NUL or the separator.

Wrapped team key: ``0x01 || key id (8 raw bytes = the 16 hex chars of key_id) || HPKE
ciphertext``.  The key id is outside the HPKE ciphertext so that :func:`unwrap_with_team`
can tell "made for another team key" (:class:`UnknownKeyId`) from tampering; it is still
authenticated because it is part of the HPKE ``info``.

Errors are typed (:class:`CryptoError` and subclasses); messages never contain secrets.
Programming errors (a key of the wrong length, a wrong argument type) raise ``ValueError`` /
``TypeError``.  Argon2id is synchronous and slow by design: async callers use
``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import struct
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidKey, InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nazaha.flows.receipts import RECEIPT_DIGITS, normalize_receipt

__all__ = [
    "CryptoError",
    "TamperedData",
    "WrongPassphrase",
    "WrongReceipt",
    "WeakKdfParameters",
    "UnknownKeyId",
    "KdfParams",
    "KDF_PRODUCTION",
    "KDF_FLOOR",
    "KDF_TESTING",
    "argon2id",
    "KEY_BYTES",
    "new_data_key",
    "seal",
    "open_sealed",
    "seal_field",
    "open_field",
    "TeamPrivateKey",
    "TeamPublicKey",
    "TeamKeyRing",
    "wrap_for_team",
    "unwrap_with_team",
    "wrapped_key_id",
    "seal_to_key",
    "open_from_key",
    "seal_team_private_key",
    "open_team_private_key",
    "RECEIPT_DIGITS",
    "new_receipt",
    "format_receipt",
    "normalize_receipt",
    "ReporterKeys",
    "derive_reporter_keys",
    "wrap_for_reporter",
    "unwrap_for_reporter",
    "BotKeyBox",
    "pseudonym",
    "DESIGNATION_ALPHABET",
    "random_designation",
    "new_system_salt",
    "constant_time_equal",
    "hash_password",
    "verify_password",
    "password_needs_rehash",
]


# --------------------------------------------------------------------------- errors


class CryptoError(Exception):
    """Base class of every cryptographic failure in Nazaha."""


class TamperedData(CryptoError):
    """Authenticated decryption failed: modified, truncated or moved data, or a wrong key."""


class WrongPassphrase(CryptoError):
    """The passphrase does not open this sealed key (or the sealed file was modified)."""


class WrongReceipt(CryptoError):
    """The receipt does not open this report (or the receipt is malformed)."""


class WeakKdfParameters(CryptoError):
    """Argon2id parameters below the configured floor: refused before deriving anything."""


class UnknownKeyId(CryptoError):
    """The wrapped key was made for a different team key."""

    def __init__(self, message: str, *, wanted: str | None = None, have: str | None = None):
        super().__init__(message)
        self.wanted = wanted  # key id the data was wrapped for (public information)
        self.have = have  # key id of the private key that was offered


# --------------------------------------------------------------------------- helpers

KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SEAL_VERSION = b"\x01"
_SEAL_OVERHEAD = len(_SEAL_VERSION) + _NONCE_BYTES + _TAG_BYTES


def _as_bytes(part: str | bytes) -> bytes:
    if isinstance(part, str):
        return part.encode("utf-8")
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"expected str or bytes, got {type(part).__name__}")


def _frame(label: str, *parts: str | bytes) -> bytes:
    """Unambiguous encoding: label NUL then (u32 big-endian length || bytes) per part."""
    out = [label.encode("ascii"), b"\x00"]
    for part in parts:
        raw = _as_bytes(part)
        out.append(struct.pack(">I", len(raw)))
        out.append(raw)
    return b"".join(out)


def _check_key(key: bytes, what: str = "key") -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes")
    return bytes(key)


def _hkdf(master: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(master)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without leaking where they differ."""
    return hmac.compare_digest(a, b)


# --------------------------------------------------------------------------- Argon2id

_KDF_MAX_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB: sanity bound for parameters read from files
_KDF_MAX_ITERATIONS = 100
_KDF_MAX_LANES = 64


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters (memory in KiB)."""

    memory_kib: int
    iterations: int
    lanes: int

    def __post_init__(self) -> None:
        for name in ("memory_kib", "iterations", "lanes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KdfParams.{name} must be a positive integer")
        if self.memory_kib < 8 * self.lanes:
            raise ValueError("Argon2id needs memory_kib >= 8 * lanes")

    def to_dict(self) -> dict[str, int]:
        return {"memory_kib": self.memory_kib, "iterations": self.iterations, "lanes": self.lanes}

    @classmethod
    def from_dict(cls, d: Any) -> KdfParams:
        """Parse untrusted parameters (e.g. from a key file); ``ValueError`` if malformed."""
        if not isinstance(d, dict) or set(d) != {"memory_kib", "iterations", "lanes"}:
            raise ValueError("KDF parameters must have exactly memory_kib, iterations, lanes")
        params = cls(memory_kib=d["memory_kib"], iterations=d["iterations"], lanes=d["lanes"])
        if (
            params.memory_kib > _KDF_MAX_MEMORY_KIB
            or params.iterations > _KDF_MAX_ITERATIONS
            or params.lanes > _KDF_MAX_LANES
        ):
            raise ValueError("KDF parameters are implausibly large")
        return params

    def check_at_least(self, floor: KdfParams) -> None:
        """Raise :class:`WeakKdfParameters` if any parameter is below ``floor``."""
        if (
            self.memory_kib < floor.memory_kib
            or self.iterations < floor.iterations
            or self.lanes < floor.lanes
        ):
            raise WeakKdfParameters(
                f"Argon2id parameters {self.to_dict()} are below the floor {floor.to_dict()}"
            )


KDF_PRODUCTION = KdfParams(memory_kib=65536, iterations=3, lanes=4)
# OWASP minimum for Argon2id (19 MiB, t=2, p=1); production refuses anything lower.
KDF_FLOOR = KdfParams(memory_kib=19456, iterations=2, lanes=1)
# Cheap parameters for tests only: callers must pass floor=KDF_TESTING explicitly.
KDF_TESTING = KdfParams(memory_kib=64, iterations=1, lanes=1)


def argon2id(
    secret: bytes,
    salt: bytes,
    params: KdfParams,
    floor: KdfParams = KDF_FLOOR,
    length: int = 32,
) -> bytes:
    """Argon2id(secret, salt). Checks ``params`` against ``floor`` first. Synchronous."""
    params.check_at_least(floor)
    if len(salt) < 8:
        raise ValueError("Argon2id salt must be at least 8 bytes")
    return Argon2id(
        salt=bytes(salt),
        length=length,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(bytes(secret))


# --------------------------------------------------------------------------- staff passwords

_PHC_RE = re.compile(
    r"\$argon2id\$v=19\$m=(?P<m>[0-9]{1,10}),t=(?P<t>[0-9]{1,10}),p=(?P<p>[0-9]{1,10})"
    r"\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}"
)


def _phc_params(phc: str) -> KdfParams:
    match = _PHC_RE.fullmatch(phc) if isinstance(phc, str) else None
    if match is None:
        raise TamperedData("not an Argon2id PHC string")
    try:
        return KdfParams.from_dict(
            {"memory_kib": int(match["m"]), "iterations": int(match["t"]), "lanes": int(match["p"])}
        )
    except ValueError:
        raise TamperedData("Argon2id PHC string has invalid parameters") from None


def hash_password(
    password: str, params: KdfParams = KDF_PRODUCTION, floor: KdfParams = KDF_FLOOR
) -> str:
    """Argon2id PHC string (``$argon2id$v=19$m=..,t=..,p=..$salt$hash``) for a staff password.

    The password is NFC-normalised (as for :func:`seal_team_private_key`). Synchronous.
    """
    params.check_at_least(floor)
    return Argon2id(
        salt=secrets.token_bytes(16),
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive_phc_encoded(_passphrase_bytes(password))


def verify_password(password: str, phc: str, floor: KdfParams = KDF_FLOOR) -> bool:
    """True iff ``password`` matches ``phc``. :class:`WeakKdfParameters` if the stored hash
    is below ``floor``; :class:`TamperedData` if ``phc`` is not an Argon2id PHC string."""
    _phc_params(phc).check_at_least(floor)
    if not isinstance(password, str) or not password:
        return False
    try:
        Argon2id.verify_phc_encoded(_passphrase_bytes(password), phc)
    except InvalidKey:
        return False
    return True


def password_needs_rehash(phc: str, params: KdfParams) -> bool:
    """True if ``phc`` was made with parameters other than ``params`` (rehash after login)."""
    return _phc_params(phc) != params


# --------------------------------------------------------------------------- AES-GCM sealing


def new_data_key() -> bytes:
    """A fresh random 256-bit key (per-report data key)."""
    return secrets.token_bytes(KEY_BYTES)


def seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """AES-256-GCM with a random nonce: ``0x01 || nonce || ciphertext+tag``."""
    aead = AESGCM(_check_key(key))
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _SEAL_VERSION + nonce + aead.encrypt(nonce, bytes(plaintext), bytes(aad))


def open_sealed(key: bytes, aad: bytes, sealed: bytes) -> bytes:
    """Inverse of :func:`seal`; :class:`TamperedData` on any failure."""
    aead = AESGCM(_check_key(key))
    sealed = bytes(sealed)
    if len(sealed) < _SEAL_OVERHEAD or sealed[:1] != _SEAL_VERSION:
        raise TamperedData("sealed data is truncated or of an unknown version")
    nonce = sealed[1 : 1 + _NONCE_BYTES]
    try:
        return aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], bytes(aad))
    except InvalidTag:
        raise TamperedData("sealed data failed authentication") from None


def _field_aad(report_id: str, field: str) -> bytes:
    return _frame("nazaha/field/v1", report_id, field)


def seal_field(data_key: bytes, report_id: str, field: str, plaintext: bytes) -> bytes:
    """Seal one report field; AAD = frame("nazaha/field/v1", report_id, field)."""
    return seal(data_key, _field_aad(report_id, field), plaintext)


def open_field(data_key: bytes, report_id: str, field: str, sealed: bytes) -> bytes:
    """Open a field sealed by :func:`seal_field`; :class:`TamperedData` on any failure."""
    return open_sealed(data_key, _field_aad(report_id, field), sealed)


# --------------------------------------------------------------------------- team key (HPKE)

_MLKEM_SEED_BYTES = 64
_MLKEM768_PUBLIC_BYTES = 1184
_X25519_BYTES = 32
_KEY_ID_HEX = 16
_KEY_ID_RAW = _KEY_ID_HEX // 2
_WRAP_VERSION = b"\x01"
_HPKE_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


class TeamPublicKey:
    """ML-KEM-768 + X25519 hybrid public key. Bytes: ML-KEM public (1184) || X25519 (32)."""

    __slots__ = ("_mlkem", "_x25519", "_raw", "_hpke")

    def __init__(self, mlkem_public: mlkem.MLKEM768PublicKey, x25519_public: x25519.X25519PublicKey):
        self._mlkem = mlkem_public
        self._x25519 = x25519_public
        self._raw = mlkem_public.public_bytes_raw() + x25519_public.public_bytes_raw()
        self._hpke = hpke.MLKEM768X25519PublicKey(mlkem_public, x25519_public)

    def to_bytes(self) -> bytes:
        return self._raw

    @classmethod
    def from_bytes(cls, b: bytes) -> TeamPublicKey:
        b = bytes(b)
        if len(b) != _MLKEM768_PUBLIC_BYTES + _X25519_BYTES:
            raise ValueError("a team public key is 1216 bytes (ML-KEM-768 || X25519)")
        return cls(
            mlkem.MLKEM768PublicKey.from_public_bytes(b[:_MLKEM768_PUBLIC_BYTES]),
            x25519.X25519PublicKey.from_public_bytes(b[_MLKEM768_PUBLIC_BYTES:]),
        )

    @property
    def key_id(self) -> str:
        """First 16 hex chars of SHA-256 over :meth:`to_bytes`."""
        return hashlib.sha256(self._raw).hexdigest()[:_KEY_ID_HEX]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TeamPublicKey):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"TeamPublicKey(key_id={self.key_id!r})"


class TeamPrivateKey:
    """The team's HPKE private key. Bytes: ML-KEM-768 seed (64) || X25519 private (32).

    :meth:`to_bytes` exists only to feed :func:`seal_team_private_key`; never store or log it.
    """

    __slots__ = ("_mlkem", "_x25519", "_hpke", "_public")

    def __init__(self, mlkem_private: mlkem.MLKEM768PrivateKey, x25519_private: x25519.X25519PrivateKey):
        self._mlkem = mlkem_private
        self._x25519 = x25519_private
        self._hpke = hpke.MLKEM768X25519PrivateKey(mlkem_private, x25519_private)
        self._public = TeamPublicKey(mlkem_private.public_key(), x25519_private.public_key())

    @classmethod
    def generate(cls) -> TeamPrivateKey:
        return cls(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    def public_key(self) -> TeamPublicKey:
        return self._public

    @property
    def key_id(self) -> str:
        return self._public.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """``{key_id}``: what a :class:`TeamKeyRing` holding only this key would say."""
        return frozenset({self._public.key_id})

    def to_bytes(self) -> bytes:
        return self._mlkem.private_bytes_raw() + self._x25519.private_bytes_raw()

    @classmethod
    def from_bytes(cls, b: bytes) -> TeamPrivateKey:
        b = bytes(b)
        if len(b) != _MLKEM_SEED_BYTES + _X25519_BYTES:
            raise ValueError("a team private key is 96 bytes (ML-KEM-768 seed || X25519)")
        return cls(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(b[:_MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(b[_MLKEM_SEED_BYTES:]),
        )

    def __repr__(self) -> str:  # never show key material
        return f"TeamPrivateKey(key_id={self.key_id!r})"

    def __reduce__(self):  # keep the key out of pickles (caches, Redis, crash dumps)
        raise TypeError("TeamPrivateKey must not be pickled")


class TeamKeyRing:
    """The team private keys one holder may use, newest first: during a team-key rotation
    a staff session holds the new key and the old one, so that reports not yet re-wrapped
    still open. Stands in for a :class:`TeamPrivateKey` wherever one is accepted: its
    :attr:`key_id`, :meth:`public_key` and :meth:`to_bytes` are the newest key's (what a new
    grant gives); :func:`unwrap_with_team` and :func:`open_from_key` pick the member the
    value was sealed for. ``ValueError`` if empty."""

    __slots__ = ("_keys",)

    def __init__(self, keys: "list[TeamPrivateKey] | tuple[TeamPrivateKey, ...]"):
        unique: dict[str, TeamPrivateKey] = {}
        for key in keys:
            if isinstance(key, TeamKeyRing):
                for inner in key.keys:
                    unique.setdefault(inner.key_id, inner)
            else:
                unique.setdefault(key.key_id, key)
        if not unique:
            raise ValueError("a team key ring holds at least one key")
        self._keys = tuple(unique.values())

    @property
    def keys(self) -> tuple[TeamPrivateKey, ...]:
        return self._keys

    @property
    def newest(self) -> TeamPrivateKey:
        return self._keys[0]

    @property
    def key_id(self) -> str:
        return self._keys[0].key_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(key.key_id for key in self._keys)

    def public_key(self) -> TeamPublicKey:
        return self._keys[0].public_key()

    def to_bytes(self) -> bytes:
        return self._keys[0].to_bytes()

    def for_key_id(self, key_id: str) -> TeamPrivateKey | None:
        for key in self._keys:
            if hmac.compare_digest(key.key_id, key_id):
                return key
        return None

    def __repr__(self) -> str:
        return f"TeamKeyRing(key_ids={[key.key_id for key in self._keys]!r})"

    def __reduce__(self):
        raise TypeError("TeamKeyRing must not be pickled")


def _private_for(private: "TeamPrivateKey | TeamKeyRing", wanted: str) -> TeamPrivateKey:
    """The key (or ring member) for ``wanted``; :class:`UnknownKeyId` if there is none."""
    if isinstance(private, TeamKeyRing):
        found = private.for_key_id(wanted)
        if found is None:
            raise UnknownKeyId(
                f"sealed to key {wanted}, not one of {sorted(private.key_ids)}",
                wanted=wanted, have=private.key_id,
            )
        return found
    have = private.key_id
    if not hmac.compare_digest(wanted, have):
        raise UnknownKeyId(f"sealed to key {wanted}, not {have}", wanted=wanted, have=have)
    return private


def _team_info(report_id: str, key_id: str, epoch: int = 0) -> bytes:
    if epoch == 0:  # the layout of every report stored before rotation existed
        return _frame("nazaha/report-key/v1", report_id, key_id)
    return _frame("nazaha/report-key/v2", report_id, str(_check_epoch(epoch)), key_id)


def _check_epoch(epoch: int) -> int:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**31:
        raise ValueError("a case key epoch is an int in [0, 2**31)")
    return epoch


def wrap_for_team(data_key: bytes, team_public: TeamPublicKey, report_id: str, epoch: int = 0) -> bytes:
    """HPKE-wrap a report's case key of ``epoch`` (0: the data key made at submission) to
    the team: ``0x01 || key id (8 bytes) || HPKE ciphertext``; the report id, the epoch and
    the key id are bound in the HPKE ``info``."""
    data_key = _check_key(data_key, "data key")
    key_id = team_public.key_id
    ct = _HPKE_SUITE.encrypt(data_key, team_public._hpke, info=_team_info(report_id, key_id, epoch))
    return _WRAP_VERSION + bytes.fromhex(key_id) + ct


def wrapped_key_id(wrapped: bytes) -> str:
    """The team key id a wrapped data key was made for (:class:`TamperedData` if malformed)."""
    wrapped = bytes(wrapped)
    if len(wrapped) < 1 + _KEY_ID_RAW + _TAG_BYTES or wrapped[:1] != _WRAP_VERSION:
        raise TamperedData("wrapped key is truncated or of an unknown version")
    return wrapped[1 : 1 + _KEY_ID_RAW].hex()


def unwrap_with_team(
    wrapped: bytes, team_private: TeamPrivateKey | TeamKeyRing, report_id: str, epoch: int = 0
) -> bytes:
    """Recover a case key wrapped by :func:`wrap_for_team` (``team_private`` a key or a
    :class:`TeamKeyRing`); :class:`UnknownKeyId` or :class:`TamperedData` on failure."""
    wrapped = bytes(wrapped)
    wanted = wrapped_key_id(wrapped)
    key = _private_for(team_private, wanted)
    try:
        data_key = _HPKE_SUITE.decrypt(
            wrapped[1 + _KEY_ID_RAW :], key._hpke, info=_team_info(report_id, wanted, epoch)
        )
    except (InvalidTag, ValueError):
        raise TamperedData("wrapped data key failed authentication") from None
    if len(data_key) != KEY_BYTES:
        raise TamperedData("wrapped data key has the wrong length")
    return data_key



def seal_to_key(public: TeamPublicKey, label: str, parts: tuple[str, ...], plaintext: bytes) -> bytes:
    """HPKE-seal ``plaintext`` to ``public`` (the team key, or a running bot's mailbox key).

    ``label`` and ``parts`` (e.g. a link id and a report id) are bound in the HPKE ``info``
    with the key id, so a sealed value moved to another row fails to open. Output:
    ``0x01 || key id (8 bytes) || HPKE ciphertext`` (as :func:`wrap_for_team`).
    """
    key_id = public.key_id
    ct = _HPKE_SUITE.encrypt(plaintext, public._hpke, info=_frame(label, *parts, key_id))
    return _WRAP_VERSION + bytes.fromhex(key_id) + ct


def open_from_key(
    private: TeamPrivateKey | TeamKeyRing, label: str, parts: tuple[str, ...], sealed: bytes
) -> bytes:
    """Open what :func:`seal_to_key` made (``private`` a key or a :class:`TeamKeyRing`);
    :class:`UnknownKeyId` if it was sealed to another key, :class:`TamperedData` if
    modified, moved or truncated."""
    sealed = bytes(sealed)
    wanted = wrapped_key_id(sealed)
    key = _private_for(private, wanted)
    try:
        return _HPKE_SUITE.decrypt(
            sealed[1 + _KEY_ID_RAW :], key._hpke, info=_frame(label, *parts, wanted)
        )
    except (InvalidTag, ValueError):
        raise TamperedData("sealed value failed authentication") from None


# --------------------------------------------------------------------------- sealed team private key

_TEAM_KEY_FILE_VERSION = 1
_TEAM_KEY_SALT_BYTES = 16


def _passphrase_bytes(passphrase: str) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("passphrase must be a non-empty string")
    # NFC so the same passphrase typed on different keyboards/devices (Arabic, accents)
    # gives the same bytes.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _team_key_aad(version: int, kdf: str, params: KdfParams, salt: bytes, key_id: str) -> bytes:
    return _frame(
        "nazaha/team-private-key",
        str(version),
        kdf,
        str(params.memory_kib),
        str(params.iterations),
        str(params.lanes),
        salt,
        key_id,
    )


def seal_team_private_key(
    key: TeamPrivateKey,
    passphrase: str,
    params: KdfParams = KDF_PRODUCTION,
    floor: KdfParams = KDF_FLOOR,
) -> bytes:
    """Seal the team private key under a passphrase; returns self-describing JSON (UTF-8).

    ``{"v":1,"kdf":"argon2id","params":{...},"salt":b64,"key_id":hex,"sealed":b64}``; the
    AES-GCM AAD covers v, kdf, params, salt and key_id.
    """
    return _seal_recovery(key, key.to_bytes(), _TEAM_KEY_FILE_VERSION, passphrase, params, floor)


def _seal_recovery(
    key: TeamPrivateKey, payload: bytes, version: int, passphrase: str, params: KdfParams, floor: KdfParams
) -> bytes:
    params.check_at_least(floor)
    salt = secrets.token_bytes(_TEAM_KEY_SALT_BYTES)
    wrap_key = argon2id(_passphrase_bytes(passphrase), salt, params, floor)
    aad = _team_key_aad(version, "argon2id", params, salt, key.key_id)
    doc = {
        "v": version,
        "kdf": "argon2id",
        "params": params.to_dict(),
        "salt": base64.b64encode(salt).decode("ascii"),
        "key_id": key.key_id,
        "sealed": base64.b64encode(seal(wrap_key, aad, payload)).decode("ascii"),
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(value.encode("ascii"), validate=True)


def open_team_private_key(
    blob: bytes, passphrase: str, floor: KdfParams = KDF_FLOOR
) -> TeamPrivateKey:
    """Open :func:`seal_team_private_key` output (or a :func:`seal_team_recovery` file:
    only its team key).

    :class:`WeakKdfParameters` if the file's parameters are below ``floor`` (checked before
    deriving); :class:`TamperedData` if the file is malformed; :class:`WrongPassphrase` if the
    structure is intact but authentication fails (wrong passphrase, or edited header fields:
    the two are indistinguishable without the key).
    """
    return _open_recovery_payload(blob, passphrase, floor)[0]


_RECOVERY_WITH_SIGNING_VERSION = 2


def _open_recovery_payload(
    blob: bytes, passphrase: str, floor: KdfParams
) -> tuple[TeamPrivateKey, bytes]:
    try:
        doc = json.loads(bytes(blob).decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        version = doc["v"]
        kdf = doc["kdf"]
        key_id = doc["key_id"]
        if type(version) is not int or version not in (_TEAM_KEY_FILE_VERSION, _RECOVERY_WITH_SIGNING_VERSION):
            raise ValueError("unknown version")
        if kdf != "argon2id":
            raise ValueError("unknown kdf")
        if not isinstance(key_id, str) or len(key_id) != _KEY_ID_HEX:
            raise ValueError("bad key id")
        params = KdfParams.from_dict(doc["params"])
        salt = _b64(doc["salt"])
        sealed = _b64(doc["sealed"])
        if len(salt) < 8:
            raise ValueError("salt too short")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error):
        raise TamperedData("sealed team key file is malformed") from None

    params.check_at_least(floor)  # WeakKdfParameters, before any derivation
    wrap_key = argon2id(_passphrase_bytes(passphrase), salt, params, floor)
    aad = _team_key_aad(version, kdf, params, salt, key_id)
    if len(sealed) < _SEAL_OVERHEAD or sealed[:1] != _SEAL_VERSION:
        raise TamperedData("sealed team key is truncated")
    try:
        raw = open_sealed(wrap_key, aad, sealed)
    except TamperedData:
        raise WrongPassphrase("wrong passphrase, or the key file was modified") from None
    team_bytes = _MLKEM_SEED_BYTES + _X25519_BYTES
    expected = team_bytes + (32 + 8 if version == _RECOVERY_WITH_SIGNING_VERSION else 0)
    if len(raw) != expected:
        raise TamperedData("sealed team key has an invalid payload")
    try:
        key = TeamPrivateKey.from_bytes(raw[:team_bytes])
    except ValueError:
        raise TamperedData("sealed team key has an invalid payload") from None
    if not hmac.compare_digest(key.key_id, key_id):
        raise TamperedData("sealed team key does not match its key id")
    return key, raw[team_bytes:]


# --------------------------------------------------------------------------- receipts

# How a typed receipt is read (digits, spaces, Arabic-Indic digits) is pure text handling
# that the flows need too: it lives in nazaha.flows.receipts and is re-exported here.
_RECEIPT_GROUP = 4


def new_receipt() -> str:
    """A fresh receipt: 20 uniformly random decimal digits (about 66 bits)."""
    return str(secrets.randbelow(10**RECEIPT_DIGITS)).zfill(RECEIPT_DIGITS)


def format_receipt(receipt: str) -> str:
    """``"12345678901234567890"`` -> ``"1234 5678 9012 3456 7890"`` (ASCII digits)."""
    digits = normalize_receipt(receipt)
    if digits is None:
        raise ValueError("not a receipt")
    return " ".join(
        digits[i : i + _RECEIPT_GROUP] for i in range(0, RECEIPT_DIGITS, _RECEIPT_GROUP)
    )


_REPORTER_KEM_SEED_BYTES = _MLKEM_SEED_BYTES + _X25519_BYTES  # 96


@dataclass(frozen=True, repr=False)
class ReporterKeys:
    """Keys derived from a receipt: ``lookup`` is stored to find the report; ``wrap_key``
    wraps its data key; ``kem_seed`` (96 bytes) is the reporter's hybrid key pair, of the
    team key's kind (:meth:`kem_private`), whose public half is stored with the report so
    that new keys can be wrapped for the reporter without the receipt. None of them
    reveals the receipt (testing a guess costs one Argon2id)."""

    lookup: bytes
    wrap_key: bytes
    kem_seed: bytes = b""

    def kem_private(self) -> TeamPrivateKey:
        """The reporter's ML-KEM-768 + X25519 private key (``TeamPrivateKey.from_bytes``
        of :attr:`kem_seed`); ``ValueError`` if these keys carry no seed."""
        if len(self.kem_seed) != _REPORTER_KEM_SEED_BYTES:
            raise ValueError("these reporter keys carry no key pair seed")
        return TeamPrivateKey.from_bytes(self.kem_seed)

    def __repr__(self) -> str:  # never show key material
        return "ReporterKeys(<redacted>)"

    def __reduce__(self):  # keep the keys out of pickles (caches, Redis, crash dumps)
        raise TypeError("ReporterKeys must not be pickled")


def derive_reporter_keys(
    receipt: str, system_salt: bytes, params: KdfParams, floor: KdfParams = KDF_FLOOR
) -> ReporterKeys:
    """master = Argon2id(20 ASCII digits, system_salt); lookup/wrap_key = HKDF-SHA256(master)
    (32 bytes each); kem_seed = HKDF-SHA256(master, "nazaha/receipt/kem/v1", 96 bytes).

    The receipt is normalised first (any accepted input form gives the same keys);
    a malformed receipt raises :class:`WrongReceipt`. Synchronous and slow.
    """
    params.check_at_least(floor)
    digits = normalize_receipt(receipt)
    if digits is None:
        raise WrongReceipt("malformed receipt")
    master = argon2id(digits.encode("ascii"), system_salt, params, floor)
    return ReporterKeys(
        lookup=_hkdf(master, b"nazaha/receipt/lookup/v1"),
        wrap_key=_hkdf(master, b"nazaha/receipt/key/v1"),
        kem_seed=_hkdf(master, b"nazaha/receipt/kem/v1", _REPORTER_KEM_SEED_BYTES),
    )


def _reporter_aad(report_id: str) -> bytes:
    return _frame("nazaha/reporter-key/v1", report_id)


def wrap_for_reporter(data_key: bytes, wrap_key: bytes, report_id: str) -> bytes:
    """Wrap a data key under the receipt-derived ``wrap_key``; AAD binds the report id."""
    return seal(wrap_key, _reporter_aad(report_id), _check_key(data_key, "data key"))


def unwrap_for_reporter(wrapped: bytes, wrap_key: bytes, report_id: str) -> bytes:
    """Recover a data key with the receipt's ``wrap_key``; :class:`WrongReceipt` on failure
    (a wrong receipt and a modified blob are indistinguishable)."""
    try:
        data_key = open_sealed(wrap_key, _reporter_aad(report_id), wrapped)
    except TamperedData:
        raise WrongReceipt("the receipt does not open this report") from None
    if len(data_key) != KEY_BYTES:
        raise WrongReceipt("the receipt does not open this report")
    return data_key


# --------------------------------------------------------------------------- bot key box


class BotKeyBox:
    """AES-256-GCM box under the bot key for bot-only data (FSM drafts, notification links,
    subscriber ids, preferences).

    Each ``purpose`` gets its own HKDF subkey (domain separation, and it spreads the
    random-nonce budget); the AAD binds ``purpose`` and ``context`` (e.g. the storage-key
    pseudonym), so a ciphertext copied to another row or purpose fails to open.
    """

    __slots__ = ("_key", "_subkeys")

    def __init__(self, key: bytes):
        self._key = _check_key(key, "bot key")
        self._subkeys: dict[str, bytes] = {}

    def _subkey(self, purpose: str) -> bytes:
        subkey = self._subkeys.get(purpose)
        if subkey is None:
            subkey = _hkdf(self._key, _frame("nazaha/bot-box/subkey/v1", purpose))
            self._subkeys[purpose] = subkey
        return subkey

    @staticmethod
    def _aad(purpose: str, context: str) -> bytes:
        return _frame("nazaha/bot-box/v1", purpose, context)

    def seal(self, purpose: str, context: str, plaintext: bytes) -> bytes:
        return seal(self._subkey(purpose), self._aad(purpose, context), plaintext)

    def open(self, purpose: str, context: str, sealed: bytes) -> bytes:
        """:class:`TamperedData` on any failure (modified, moved, or another bot key)."""
        return open_sealed(self._subkey(purpose), self._aad(purpose, context), sealed)

    def __repr__(self) -> str:
        return "BotKeyBox(<redacted>)"

    def __reduce__(self):
        raise TypeError("BotKeyBox must not be pickled")


# --------------------------------------------------------------------------- pseudonyms, ids


def _encode_pseudonym_part(part: object) -> bytes:
    # Type-tagged so that e.g. int 5 and str "5" cannot collide, and length-prefixed so
    # ("ab", "c") and ("a", "bc") cannot collide.
    if part is None:
        tag, raw = b"n", b""
    elif isinstance(part, bool):
        tag, raw = b"b", b"1" if part else b"0"
    elif isinstance(part, int):
        tag, raw = b"i", str(part).encode("ascii")
    elif isinstance(part, str):
        tag, raw = b"s", part.encode("utf-8")
    elif isinstance(part, (bytes, bytearray, memoryview)):
        tag, raw = b"y", bytes(part)
    else:
        raise TypeError(f"pseudonym parts must be str, int, bytes, bool or None, not {type(part).__name__}")
    return tag + struct.pack(">I", len(raw)) + raw


def pseudonym(pepper: bytes, *parts: object) -> str:
    """HMAC-SHA256(pepper, canonical encoding of parts) as 64 hex chars.

    Parts are type-tagged: ``pseudonym(p, "fsm", 42)`` differs from ``pseudonym(p, "fsm", "42")``;
    pass Telegram ids as ``int`` consistently.
    """
    if not isinstance(pepper, (bytes, bytearray)) or len(pepper) < 16:
        raise ValueError("pepper must be at least 16 bytes")
    msg = b"nazaha/pseudonym/v1\x00" + b"".join(_encode_pseudonym_part(p) for p in parts)
    return hmac.new(bytes(pepper), msg, hashlib.sha256).hexdigest()


# No 0/O, 1/I/L: designations are read aloud and copied by hand.
DESIGNATION_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_DESIGNATION_LENGTH = 6


def random_designation() -> str:
    """A staff-facing case designation like ``"R-7KQ2MX"``: random, never derived from the
    reporter. Callers must retry on a (rare) uniqueness collision."""
    return "R-" + "".join(secrets.choice(DESIGNATION_ALPHABET) for _ in range(_DESIGNATION_LENGTH))


def new_system_salt() -> bytes:
    """16 random bytes: the deployment-wide salt for receipt derivation."""
    return secrets.token_bytes(16)


# --------------------------------------------------------------------------- chunked blobs
# Appended for the blob store (nazaha/storage/blobs.py): attachments are sealed in chunks
# under the report's data key.  The output of ChunkSealer is byte-for-byte the format of
# seal() (0x01 || nonce || ciphertext+tag), so open_sealed() opens a chunk too; the class
# only avoids re-creating the AES context per chunk and copying the plaintext, which matters
# at 320 chunks per 20 MB file.


def blob_chunk_aad(
    header: bytes,
    report_id: str,
    file_id: str,
    variant: str,
    index: int,
    final: bool,
    length: int,
) -> bytes:
    """AAD of one blob chunk: frame("nazaha/blob-chunk/v1", file header, report id, file id,
    variant, u64 index || u8 final || u32 plaintext length).

    Binding the index and the final flag stops reordering, swapping and truncation at a chunk
    boundary; binding the (random per write) header stops splicing chunks of two blobs.
    """
    if not 0 <= index < 2**64 or not 0 <= length < 2**32:
        raise ValueError("chunk index or length out of range")
    position = struct.pack(">QBI", index, 1 if final else 0, length)
    return _frame("nazaha/blob-chunk/v1", header, report_id, file_id, variant, position)


class ChunkSealer:
    """AES-256-GCM with random nonces for many chunks under one key (format of :func:`seal`).

    Accepts any bytes-like plaintext (a ``memoryview`` of a buffer is not copied).  With
    random 96-bit nonces a key must stay well below 2**32 chunks: at 64 KiB per chunk that is
    256 TiB per report, far beyond a report's evidence.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        self._aead = AESGCM(_check_key(key))

    def seal_parts(self, aad: bytes, plaintext: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """``(0x01 || nonce, ciphertext+tag)``: the two parts of :func:`seal`'s output, so a
        caller writing to a file does not need to join them (one copy less per chunk)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _SEAL_VERSION + nonce, self._aead.encrypt(nonce, plaintext, aad)

    def seal(self, aad: bytes, plaintext: bytes | bytearray | memoryview) -> bytes:
        prefix, body = self.seal_parts(aad, plaintext)
        return prefix + body

    def open(self, aad: bytes, sealed: bytes | bytearray | memoryview) -> bytes:
        """Inverse of :meth:`seal` (and of :func:`seal`); :class:`TamperedData` on any failure."""
        view = memoryview(sealed)
        if len(view) < _SEAL_OVERHEAD or view[:1] != _SEAL_VERSION:
            raise TamperedData("sealed chunk is truncated or of an unknown version")
        try:
            return self._aead.decrypt(
                bytes(view[1 : 1 + _NONCE_BYTES]), view[1 + _NONCE_BYTES :], aad
            )
        except InvalidTag:
            raise TamperedData("sealed chunk failed authentication") from None

    def __repr__(self) -> str:
        return "ChunkSealer(<redacted>)"

    def __reduce__(self):
        raise TypeError("ChunkSealer must not be pickled")


__all__ += ["blob_chunk_aad", "ChunkSealer"]


# --------------------------------------------------------------------------- staff keys
# Each staff member has a key pair of the team key's kind (HPKE, ML-KEM-768+X25519). The
# private half is sealed under a key derived from Argon2id(password) *and* the console
# secret (a file on the console host, outside the database): the console's database plus a
# guessed password opens nothing. The team private key reaches a member as a grant sealed to
# their public key.

_STAFF_KEY_VERSION = 1


def _staff_wrap_key(
    password: str, salt: bytes, console_secret: bytes, user_id: str, params: KdfParams, floor: KdfParams
) -> bytes:
    stretched = argon2id(_passphrase_bytes(password), salt, params, floor)
    return _hkdf(
        stretched + _check_key(console_secret, "console secret"),
        _frame("nazaha/staff-key-wrap/v1", user_id),
    )


def seal_staff_private_key(
    key: TeamPrivateKey,
    password: str,
    console_secret: bytes,
    user_id: str,
    params: KdfParams = KDF_PRODUCTION,
    floor: KdfParams = KDF_FLOOR,
) -> bytes:
    """Seal a staff member's private key; self-describing JSON (UTF-8) like the team key
    file. The AAD binds the version, KDF parameters, salt, key id and ``user_id``."""
    params.check_at_least(floor)
    salt = secrets.token_bytes(_TEAM_KEY_SALT_BYTES)
    wrap_key = _staff_wrap_key(password, salt, console_secret, user_id, params, floor)
    aad = _frame("nazaha/staff-private-key", str(_STAFF_KEY_VERSION), user_id,
                 _team_key_aad(_STAFF_KEY_VERSION, "argon2id", params, salt, key.key_id))
    doc = {
        "v": _STAFF_KEY_VERSION,
        "params": params.to_dict(),
        "salt": base64.b64encode(salt).decode("ascii"),
        "key_id": key.key_id,
        "sealed": base64.b64encode(seal(wrap_key, aad, key.to_bytes())).decode("ascii"),
    }
    return json.dumps(doc).encode("utf-8")


def open_staff_private_key(
    blob: bytes, password: str, console_secret: bytes, user_id: str, floor: KdfParams = KDF_FLOOR
) -> TeamPrivateKey:
    """Open :func:`seal_staff_private_key` output. :class:`WrongPassphrase` for a wrong
    password or console secret (indistinguishable), :class:`TamperedData` if malformed,
    :class:`WeakKdfParameters` below ``floor``. Synchronous and slow (Argon2id)."""
    try:
        doc = json.loads(bytes(blob).decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("v") != _STAFF_KEY_VERSION:
            raise ValueError("unknown version")
        params = KdfParams.from_dict(doc["params"])
        salt = _b64(doc["salt"])
        sealed = _b64(doc["sealed"])
        key_id = doc["key_id"]
        if not isinstance(key_id, str) or len(key_id) != _KEY_ID_HEX or len(salt) < 8:
            raise ValueError("bad header")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error):
        raise TamperedData("sealed staff key is malformed") from None
    params.check_at_least(floor)
    wrap_key = _staff_wrap_key(password, salt, console_secret, user_id, params, floor)
    aad = _frame("nazaha/staff-private-key", str(_STAFF_KEY_VERSION), user_id,
                 _team_key_aad(_STAFF_KEY_VERSION, "argon2id", params, salt, key_id))
    try:
        raw = open_sealed(wrap_key, aad, sealed)
    except TamperedData:
        raise WrongPassphrase("wrong password or console secret") from None
    key = TeamPrivateKey.from_bytes(raw)
    if not hmac.compare_digest(key.key_id, key_id):
        raise TamperedData("sealed staff key does not match its key id")
    return key


def grant_team_key(team_private: TeamPrivateKey, staff_public: TeamPublicKey, user_id: str) -> bytes:
    """The team private key sealed to one staff member's public key (HPKE; ``user_id`` and
    the team key id bound in, so a grant moved to another account fails to open)."""
    return seal_to_key(
        staff_public, "nazaha/team-key-grant/v1", (user_id, team_private.key_id), team_private.to_bytes()
    )


def open_team_key_grant(
    staff_private: TeamPrivateKey, user_id: str, team_key_id: str, sealed: bytes
) -> TeamPrivateKey:
    """Inverse of :func:`grant_team_key`; :class:`TamperedData` / :class:`UnknownKeyId`."""
    raw = open_from_key(staff_private, "nazaha/team-key-grant/v1", (user_id, team_key_id), sealed)
    key = TeamPrivateKey.from_bytes(raw)
    if not hmac.compare_digest(key.key_id, team_key_id):
        raise TamperedData("team key grant does not match its key id")
    return key


class ConsoleSecretBox(BotKeyBox):
    """The same purpose-keyed AES-GCM box as :class:`BotKeyBox`, under the console secret:
    TOTP secrets (purpose ``"totp"``, context the user id)."""

    def __repr__(self) -> str:
        return "ConsoleSecretBox(<redacted>)"


def keyed_hash(console_secret: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 under a subkey of the console secret, hex: how recovery codes and
    invitation tokens are stored (the database alone cannot test guesses)."""
    subkey = _hkdf(_check_key(console_secret, "console secret"), _frame("nazaha/keyed-hash/v1", purpose))
    return hmac.new(subkey, value.encode("utf-8"), hashlib.sha256).hexdigest()


__all__ += [
    "seal_staff_private_key",
    "open_staff_private_key",
    "grant_team_key",
    "open_team_key_grant",
    "ConsoleSecretBox",
    "keyed_hash",
]


# --------------------------------------------------------------------------- audit chain
# The console's audit log (nazaha/services/audit.py) is a hash chain: each entry's hash is
# SHA-256 over a type-tagged, length-prefixed encoding of its fields and the previous hash.
# The chain's head (seq, hash) is authenticated by an HMAC under a subkey of the console
# secret, a key outside the database, and exported to files kept off the host.

AUDIT_GENESIS_HASH = "0" * 64


def audit_entry_hash(
    seq: int,
    at: str,
    actor_id: str | None,
    action: str,
    case_ref: str | None,
    detail: str,
    prev_hash: str,
) -> str:
    """SHA-256 (64 hex chars) of one audit entry: label ``nazaha/audit-entry/v1``, NUL, then
    every part type-tagged and length-prefixed (as :func:`pseudonym`), so that ``None`` and
    ``""`` differ and no two field splits collide. ``at`` is the canonical UTC timestamp text,
    ``detail`` the canonical JSON text. ``TypeError`` for a part of another type."""
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TypeError("seq must be an int")
    for name, value, optional in (
        ("at", at, False),
        ("actor_id", actor_id, True),
        ("action", action, False),
        ("case_ref", case_ref, True),
        ("detail", detail, False),
        ("prev_hash", prev_hash, False),
    ):
        if not (isinstance(value, str) or (optional and value is None)):
            raise TypeError(f"{name} must be a str")
    parts = (seq, at, actor_id, action, case_ref, detail, prev_hash)
    message = b"nazaha/audit-entry/v1\x00" + b"".join(_encode_pseudonym_part(p) for p in parts)
    return hashlib.sha256(message).hexdigest()


def audit_head_mac(console_secret: bytes, seq: int, entry_hash: str) -> str:
    """HMAC-SHA256 (64 hex chars) of a chain head ``(seq, entry_hash)`` under the HKDF
    subkey ``nazaha/audit-head/v1`` of the console secret."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("seq must be a non-negative int")
    subkey = _hkdf(_check_key(console_secret, "console secret"), _frame("nazaha/audit-head-key/v1"))
    message = _frame("nazaha/audit-head/v1", str(seq), entry_hash)
    return hmac.new(subkey, message, hashlib.sha256).hexdigest()


__all__ += ["AUDIT_GENESIS_HASH", "audit_entry_hash", "audit_head_mac"]


# --------------------------------------------------------------------------- case key epochs
# A team-key rotation gives every report a new *case key* (epoch n+1) so that the old team
# key opens nothing written afterwards. The new key is wrapped to the new team key
# (:func:`wrap_for_team` with the epoch), to the reporter's public key (derived from the
# receipt, stored with the report) and *chains* to the previous one: the previous epoch's
# key is sealed under the new one, so whoever holds the newest key reads the whole case,
# while an older key opens nothing newer. See docs/architecture.md, "Team-key rotation".

_REPORTER_CASE_KEY_LABEL = "nazaha/case-key/reporter/v1"


def wrap_case_key_for_reporter(
    case_key: bytes, reporter_public: TeamPublicKey, report_id: str, epoch: int
) -> bytes:
    """HPKE-seal a case key of ``epoch`` (>= 1) to the reporter's public key."""
    return seal_to_key(
        reporter_public, _REPORTER_CASE_KEY_LABEL, (report_id, str(_check_epoch(epoch))),
        _check_key(case_key, "case key"),
    )


def unwrap_case_key_for_reporter(
    sealed: bytes, reporter_private: TeamPrivateKey, report_id: str, epoch: int
) -> bytes:
    """Inverse of :func:`wrap_case_key_for_reporter`; :class:`WrongReceipt` on any failure
    (a wrong receipt and a modified row are indistinguishable)."""
    try:
        key = open_from_key(
            reporter_private, _REPORTER_CASE_KEY_LABEL, (report_id, str(_check_epoch(epoch))), sealed
        )
    except CryptoError:
        raise WrongReceipt("the receipt does not open this case key") from None
    if len(key) != KEY_BYTES:
        raise WrongReceipt("the receipt does not open this case key")
    return key


def _chain_aad(report_id: str, epoch: int) -> bytes:
    return _frame("nazaha/case-key/chain/v1", report_id, str(_check_epoch(epoch)))


def seal_previous_case_key(case_key: bytes, previous_key: bytes, report_id: str, epoch: int) -> bytes:
    """The key of ``epoch - 1`` sealed under the key of ``epoch`` (AES-256-GCM; the report
    id and epoch in the AAD)."""
    return seal(case_key, _chain_aad(report_id, epoch), _check_key(previous_key, "case key"))


def open_previous_case_key(case_key: bytes, sealed: bytes, report_id: str, epoch: int) -> bytes:
    """Inverse of :func:`seal_previous_case_key`; :class:`TamperedData` on any failure."""
    key = open_sealed(case_key, _chain_aad(report_id, epoch), sealed)
    if len(key) != KEY_BYTES:
        raise TamperedData("chained case key has the wrong length")
    return key


# --------------------------------------------------------------------------- team signing key
# The bot accepts a new team public key from the database only with a signature by the team
# signing key (Ed25519) whose public half it has pinned in its data dir. The private half
# lives only in the offline recovery file, next to the team private key.

SIGNING_PUBLIC_BYTES = 32


class TeamSigningKey:
    """The team's Ed25519 signing key (private). :meth:`to_bytes` (32 bytes) exists only to
    feed the recovery file; never store or log it."""

    __slots__ = ("_key",)

    def __init__(self, key: ed25519.Ed25519PrivateKey):
        self._key = key

    @classmethod
    def generate(cls) -> TeamSigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> TeamSigningKey:
        if len(bytes(raw)) != 32:
            raise ValueError("a team signing key is 32 bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw)))

    def to_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def public_bytes(self) -> bytes:
        """The 32-byte public half (what the bot pins)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign_team_public_key(self, public: TeamPublicKey, generation: int, next_signing: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over frame("nazaha/team-public-key/v3", generation,
        team key bytes, next signing public key). ``generation`` (>= 1, one more at each
        rotation) lets a bot refuse an older key that was validly signed once (a rollback);
        ``next_signing`` is the signing key that signs the next rotation, which the bot pins
        instead of this one (so the old recovery file, which holds this key, signs nothing a
        bot accepts any more)."""
        return self._key.sign(_team_public_key_message(public, generation, next_signing))

    def __repr__(self) -> str:
        return "TeamSigningKey(<redacted>)"

    def __reduce__(self):
        raise TypeError("TeamSigningKey must not be pickled")


def _team_public_key_message(public: TeamPublicKey, generation: int, next_signing: bytes) -> bytes:
    if not isinstance(generation, int) or isinstance(generation, bool) or not 1 <= generation < 2**53:
        raise ValueError("a team key generation is an int >= 1")
    if len(bytes(next_signing)) != SIGNING_PUBLIC_BYTES:
        raise ValueError("a signing public key is 32 bytes")
    return _frame("nazaha/team-public-key/v3", str(generation), public.to_bytes(), bytes(next_signing))


def verify_team_public_key(
    signing_public: bytes, public: TeamPublicKey, generation: int, next_signing: bytes, signature: bytes
) -> bool:
    """True iff ``signature`` is the signing key's signature of ``public`` at
    ``generation`` with ``next_signing`` as the next signer; False for a bad signature, a
    malformed key or generation (never raises for untrusted input)."""
    try:
        verifier = ed25519.Ed25519PublicKey.from_public_bytes(bytes(signing_public))
        verifier.verify(bytes(signature), _team_public_key_message(public, generation, next_signing))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def seal_team_recovery(
    key: TeamPrivateKey,
    signing: TeamSigningKey,
    passphrase: str,
    params: KdfParams = KDF_PRODUCTION,
    floor: KdfParams = KDF_FLOOR,
    generation: int = 0,
) -> bytes:
    """The recovery file with the signing key: as :func:`seal_team_private_key` but
    ``"v": 2`` and the sealed payload is the team key (96 bytes), the signing key (32) and
    the key's generation (u64 big-endian: 0 at installation, one more at each rotation),
    sealed so that nobody can change it: the next rotation's generation comes from here."""
    if not isinstance(generation, int) or isinstance(generation, bool) or not 0 <= generation < 2**53:
        raise ValueError("a team key generation is an int in [0, 2**53)")
    return _seal_recovery(
        key, key.to_bytes() + signing.to_bytes() + struct.pack(">Q", generation),
        _RECOVERY_WITH_SIGNING_VERSION, passphrase, params, floor,
    )


@dataclass(frozen=True, repr=False)
class Recovery:
    """An opened recovery file: the team key, the signing key (``None`` in a version 1
    file, made before rotation existed) and the team key's generation (0 there)."""

    team: TeamPrivateKey
    signing: TeamSigningKey | None
    generation: int

    def __reduce__(self):
        raise TypeError("Recovery must not be pickled")


def open_recovery(blob: bytes, passphrase: str, floor: KdfParams = KDF_FLOOR) -> Recovery:
    """Open a recovery file of either version. Errors as :func:`open_team_private_key`."""
    key, extra = _open_recovery_payload(blob, passphrase, floor)
    if not extra:
        return Recovery(key, None, 0)
    generation = struct.unpack(">Q", extra[32:40])[0]
    if generation >= 2**53:
        raise TamperedData("recovery file has an invalid generation")
    return Recovery(key, TeamSigningKey.from_bytes(extra[:32]), generation)


def open_team_recovery(
    blob: bytes, passphrase: str, floor: KdfParams = KDF_FLOOR
) -> tuple[TeamPrivateKey, TeamSigningKey | None]:
    """Open a recovery file of either version: the team key and the signing key (``None``
    in a version 1 file, made before rotation existed). Errors as
    :func:`open_team_private_key`."""
    recovery = open_recovery(blob, passphrase, floor)
    return recovery.team, recovery.signing


__all__ += [
    "wrap_case_key_for_reporter",
    "unwrap_case_key_for_reporter",
    "seal_previous_case_key",
    "open_previous_case_key",
    "SIGNING_PUBLIC_BYTES",
    "TeamSigningKey",
    "verify_team_public_key",
    "seal_team_recovery",
    "open_team_recovery",
    "Recovery",
    "open_recovery",
]


# --------------------------------------------------------------------------- shared volatile state
# What the bot replicas share through Redis (issue 12: drafts, follow-up sessions, counters)
# is named and sealed under a key that exists only in the running bot processes' memory:
# the first replica makes it, later ones receive it from a running one, sealed (HPKE) to a
# key pair each makes at start (nazaha/storage/redis_ring.py). Neither the data dir, the
# environment nor Redis itself ever holds it, so a copy of Redis (a snapshot written by
# mistake, a replica, a dump) opens nothing, even with the bot host's disk. Requests and
# grants carry an HMAC under a key derived from the bot key, so that someone who can only
# write to Redis can neither obtain the key nor hand a replica a key of their own.

_SHARED_EPOCH_BYTES = 8
_RING_TAG_BYTES = 32


class SharedStateKey:
    """The replicas' memory-only key: names (HMAC) and seals (AES-256-GCM) Redis entries.

    ``epoch`` is a public random id (16 hex chars) telling keys apart; ``name(purpose,
    *parts)`` is a 64-hex HMAC-SHA256 (as :func:`pseudonym`) under a subkey, and values are
    sealed with the entry's name as AAD, so a value moved to another name fails to open.
    """

    __slots__ = ("_key", "_names", "_values", "epoch")

    def __init__(self, key: bytes, epoch: str) -> None:
        self._key = _check_key(key, "shared state key")
        if not re.fullmatch(r"[0-9a-f]{16}", epoch):
            raise ValueError("a shared state epoch is 16 lowercase hex characters")
        self.epoch = epoch
        self._names = _hkdf(self._key, _frame("nazaha/shared-state/names/v1", epoch))
        self._values = _hkdf(self._key, _frame("nazaha/shared-state/values/v1", epoch))

    @classmethod
    def generate(cls) -> SharedStateKey:
        return cls(secrets.token_bytes(KEY_BYTES), secrets.token_hex(_SHARED_EPOCH_BYTES))

    def name(self, purpose: str, *parts: object) -> str:
        """The Redis name of ``purpose``'s entry for ``parts`` (Telegram ids as int)."""
        return pseudonym(self._names, purpose, *parts)

    def seal(self, name: str, plaintext: bytes) -> bytes:
        return seal(self._values, _frame("nazaha/shared-state/v1", name), plaintext)

    def open(self, name: str, sealed: bytes) -> bytes:
        """:class:`TamperedData` if modified, moved, or sealed under another key."""
        return open_sealed(self._values, _frame("nazaha/shared-state/v1", name), sealed)

    def __repr__(self) -> str:
        return f"SharedStateKey(epoch={self.epoch}, <redacted>)"

    def __reduce__(self):
        raise TypeError("SharedStateKey must not be pickled")


def ring_auth_key(bot_key: bytes) -> bytes:
    """The key that authenticates key requests and grants between replicas (from the bot
    key: every replica has it, someone with access to Redis alone does not)."""
    return _hkdf(_check_key(bot_key, "bot key"), _frame("nazaha/redis-ring/auth/v1"))


def _ring_tag(auth: bytes, *parts: str | bytes) -> bytes:
    return hmac.new(_check_key(auth, "ring auth key"), _frame("nazaha/redis-ring/tag/v1", *parts), hashlib.sha256).digest()


def ring_request(auth: bytes, member_id: str, public: TeamPublicKey) -> bytes:
    """A replica's request for the shared key: its public key, authenticated."""
    raw = public.to_bytes()
    return raw + _ring_tag(auth, "want", member_id, raw)


def open_ring_request(auth: bytes, member_id: str, request: bytes) -> TeamPublicKey:
    """The requesting replica's public key; :class:`TamperedData` if the request was not
    made with the bot key (or was moved to another member id)."""
    request = bytes(request)
    raw, tag = request[:-_RING_TAG_BYTES], request[-_RING_TAG_BYTES:]
    if len(request) <= _RING_TAG_BYTES or not hmac.compare_digest(tag, _ring_tag(auth, "want", member_id, raw)):
        raise TamperedData("ring request failed authentication")
    try:
        return TeamPublicKey.from_bytes(raw)
    except (ValueError, TypeError):
        raise TamperedData("ring request holds no valid public key") from None


def seal_ring_grant(auth: bytes, shared: SharedStateKey, member_id: str, public: TeamPublicKey) -> bytes:
    """The shared key sealed (HPKE) to a requesting replica, authenticated with ``auth``."""
    body = shared._key + shared.epoch.encode("ascii")
    tag = _ring_tag(auth, "grant", member_id, body)
    return seal_to_key(public, "nazaha/redis-ring/grant/v1", (member_id,), tag + body)


def open_ring_grant(auth: bytes, private: TeamPrivateKey, member_id: str, sealed: bytes) -> SharedStateKey:
    """Open a grant made for ``member_id``; :class:`TamperedData` if it was not made by a
    replica holding the bot key, or not for this member."""
    opened = open_from_key(private, "nazaha/redis-ring/grant/v1", (member_id,), sealed)
    tag, body = opened[:_RING_TAG_BYTES], opened[_RING_TAG_BYTES:]
    if not hmac.compare_digest(tag, _ring_tag(auth, "grant", member_id, body)):
        raise TamperedData("ring grant failed authentication")
    try:
        return SharedStateKey(body[:KEY_BYTES], body[KEY_BYTES:].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise TamperedData("ring grant is malformed") from None


__all__ += [
    "SharedStateKey",
    "ring_auth_key",
    "ring_request",
    "open_ring_request",
    "seal_ring_grant",
    "open_ring_grant",
]
