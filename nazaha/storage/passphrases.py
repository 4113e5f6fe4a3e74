"""One strength check for every passphrase or password a person chooses.

The team passphrase (typed at ``nazaha init`` or read from ``--passphrase-file``) and,
later, staff passwords all go through :func:`check_passphrase`; a value read from a file is
checked exactly like a typed one (:func:`read_passphrase_file`).

A passphrase is refused, in this order, if it is

* shorter than :data:`MIN_LENGTH` (12) characters after NFC normalisation
  (:class:`PassphraseTooShort`);
* in the common-password list shipped with the project, ``common_passwords.txt`` (the top
  10,000 of zxcvbn's list, see ``tools/extract_common_passwords.py``), compared
  case-insensitively, with and without its spaces (:class:`CommonPassphrase`);
* rated below :data:`MIN_SCORE` (3 of 0..4) by the zxcvbn estimator, with and without its
  spaces (zxcvbn does not match dictionary words across spaces, an attacker does), on the
  first :data:`ESTIMATE_CHARS` (72) characters, zxcvbn's own limit
  (:class:`GuessablePassphrase`).

All three are :class:`WeakPassphrase` (a ``ValueError``) whose ``str()`` is a plain English
sentence for an operator, with zxcvbn's advice where it has some. The passphrase itself
never appears in a message.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

__all__ = [
    "MIN_LENGTH",
    "MIN_SCORE",
    "ESTIMATE_CHARS",
    "WeakPassphrase",
    "PassphraseTooShort",
    "CommonPassphrase",
    "GuessablePassphrase",
    "check_passphrase",
    "read_passphrase_file",
]

MIN_LENGTH = 12
MIN_SCORE = 3
ESTIMATE_CHARS = 72


class WeakPassphrase(ValueError):
    """The passphrase is refused; ``str(exc)`` says why (never repeats the passphrase)."""


class PassphraseTooShort(WeakPassphrase):
    pass


class CommonPassphrase(WeakPassphrase):
    pass


class GuessablePassphrase(WeakPassphrase):
    """zxcvbn rated it below :data:`MIN_SCORE`; ``score`` is its rating (0..4)."""

    def __init__(self, message: str, score: int) -> None:
        super().__init__(message)
        self.score = score


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    text = files("nazaha.storage").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


# Words an attacker of this project tries first: places, the project, the roles, the
# coalition's vocabulary (zxcvbn treats them as known, like a dictionary word).
LOCAL_WORDS = (
    "nazaha", "palestine", "falastin", "filastin", "jerusalem", "alquds", "quds", "gaza",
    "ramallah", "nablus", "hebron", "khalil", "jenin", "tulkarm", "qalqilya", "bethlehem",
    "jericho", "salfit", "tubas", "rafah", "khanyounis", "admin", "administrator",
    "caseworker", "volunteer", "coalition", "aman", "integrity", "corruption", "password",
)


def check_passphrase(passphrase: str, *, user_inputs: Iterable[str] = (), min_score: int = MIN_SCORE) -> None:
    """Return ``None`` if ``passphrase`` is strong enough, else raise :class:`WeakPassphrase`.

    ``user_inputs`` are words the estimator should treat as known to an attacker (a user
    name, the project's name).
    """
    from zxcvbn import zxcvbn

    if not isinstance(passphrase, str):
        raise TypeError("passphrase must be a string")
    text = unicodedata.normalize("NFC", passphrase)
    if len(text) < MIN_LENGTH:
        raise PassphraseTooShort(
            f"the passphrase is too short: at least {MIN_LENGTH} characters are needed"
        )
    folded = text.casefold()
    common = _common_passwords()
    if folded.strip() in common or "".join(folded.split()) in common:
        raise CommonPassphrase(
            "the passphrase is in a list of common passwords that attackers try first"
        )
    known = [*LOCAL_WORDS, *user_inputs]
    candidates = (text, "".join(text.split()))
    rating = min(
        (zxcvbn(c[:ESTIMATE_CHARS], user_inputs=known) for c in candidates),
        key=lambda r: r["score"],
    )
    score = int(rating["score"])
    if score < min_score:
        feedback = rating["feedback"]
        advice = [feedback.get("warning") or "", *feedback.get("suggestions", [])]
        detail = " ".join(a for a in advice if a)
        raise GuessablePassphrase(
            "the passphrase is too easy to guess"
            + (f" ({detail})" if detail else "")
            + "; a few uncommon words, or a longer phrase, will do",
            score,
        )


def read_passphrase_file(path: str | Path) -> str:
    """Read a passphrase chosen in a file (UTF-8; one trailing newline and surrounding
    spaces removed) and check it like a typed one.

    Raises ``OSError`` if the file cannot be read, ``UnicodeDecodeError`` if it is not
    UTF-8 and :class:`WeakPassphrase` if the passphrase is refused.
    """
    passphrase = Path(path).read_text(encoding="utf-8").strip()
    check_passphrase(passphrase)
    return passphrase
