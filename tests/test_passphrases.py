"""Tests for nazaha.storage.passphrases: one strength check, typed or from a file."""

from __future__ import annotations

import pytest

from nazaha.storage.passphrases import (
    CommonPassphrase,
    GuessablePassphrase,
    PassphraseTooShort,
    WeakPassphrase,
    check_passphrase,
    read_passphrase_file,
)

GOOD = "olive lantern mends a copper kite at dusk"


@pytest.mark.parametrize(
    "passphrase, error",
    [
        ("", PassphraseTooShort),
        ("Tr0ub4dor&3", PassphraseTooShort),  # 11 characters, however mixed
        ("1qaz2wsx3edc", CommonPassphrase),  # in the shipped list
        ("QAZWSXEDCRFV", CommonPassphrase),  # case does not matter
        ("qazwsx edcrfv", CommonPassphrase),  # nor spaces
        ("aaaaaaaaaaaaaaaa", GuessablePassphrase),  # long but a repeat
        ("passwordpassword", GuessablePassphrase),
        ("nazaha nazaha 2024", GuessablePassphrase),  # the project's own name
        ("green apple pie", GuessablePassphrase),  # spaces do not hide common words
    ],
)
def test_weak_passphrases_refused(passphrase, error):
    with pytest.raises(error) as caught:
        check_passphrase(passphrase)
    assert isinstance(caught.value, WeakPassphrase) and isinstance(caught.value, ValueError)
    if passphrase:
        assert passphrase not in str(caught.value)


def test_guessable_carries_score_and_advice():
    with pytest.raises(GuessablePassphrase) as caught:
        check_passphrase("aaaaaaaaaaaaaaaa")
    assert caught.value.score < 3
    assert "too easy to guess" in str(caught.value)


@pytest.mark.parametrize(
    "passphrase", [GOOD, "كلمة سر الفريق في الخزنة الزرقاء", "x" * 4 + "Qm7!vR2#pL9@wZ" + "y" * 200]
)
def test_good_passphrases_accepted(passphrase):
    assert check_passphrase(passphrase) is None


def test_user_inputs_count_as_known():
    check_passphrase("khalidi samira")
    with pytest.raises(GuessablePassphrase):
        check_passphrase("khalidi samira", user_inputs=["samira", "khalidi"])


def test_a_file_is_checked_like_typing(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(GOOD + "\n", encoding="utf-8")
    assert read_passphrase_file(good) == GOOD
    for text, error in (("pw\n", PassphraseTooShort), ("  1qaz2wsx3edc \n", CommonPassphrase),
                        ("aaaaaaaaaaaaaaaa", GuessablePassphrase)):
        bad = tmp_path / "bad.txt"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(error):
            read_passphrase_file(bad)
    with pytest.raises(OSError):
        read_passphrase_file(tmp_path / "missing.txt")
