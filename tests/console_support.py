"""Helpers for console tests: a console app on a fresh data dir with cheap KDFs, a clock the
test moves, and TOTP codes computed from the enrolment page."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
from fastapi.testclient import TestClient

from nazaha.bot.settings import Settings

PASSPHRASE = "olive lantern mends a copper kite at dusk"
STAFF_PASSWORD = "quiet harbour lamps glow over basalt"


class MovableClock:
    """An injectable UTC clock: ``clock()`` reads it, ``advance(seconds=...)`` moves it."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def console_settings(data_dir: Path, **extra) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        console_dir=data_dir.parent / "console",
        kdf_profile="testing",
        demo=True,  # recovery file in the data dir, as the demo keeps it
        **extra,
    )


_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


_LINK = re.compile(r'id="invitation-link">([^<]+)<')


def invitation_link_after(client: TestClient, answer) -> str:
    """The one-time link an invitation or a reset made: the POST answers with a redirect to
    the Team page (never the link in the address), whose next view shows it once."""
    assert answer.status_code == 303 and answer.headers["location"] == "/users", answer.text
    match = _LINK.search(client.get("/users").text)
    assert match, "no invitation link on the Team page"
    return match.group(1)


def totp_secret_of(html: str) -> str:
    match = _SECRET.search(html)
    assert match, "no TOTP secret on the enrolment page"
    return match.group(1).replace(" ", "")


def totp_code(secret: str, clock: MovableClock) -> str:
    return pyotp.TOTP(secret).at(clock())


_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_EXTENDED_ARABIC_INDIC = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def arabic_digits(code: str, *, extended: bool = False, spaced: bool = False) -> str:
    """``code`` as a phone set to Arabic types it: Arabic-Indic digits (٠-٩), or with
    ``extended`` the Extended ones (۰-۹, Persian/Urdu keyboards); ``spaced``: "٥٧٩ ٩٤١"."""
    out = code.translate(_EXTENDED_ARABIC_INDIC if extended else _ARABIC_INDIC)
    return f"{out[:3]} {out[3:]}" if spaced else out


@dataclass
class Member:
    username: str
    password: str
    totp_secret: str
    recovery_codes: list[str] = field(default_factory=list)


def enrol(client: TestClient, link: str, clock: MovableClock, *, team_passphrase: str | None = None,
          password: str = STAFF_PASSWORD, typed: Callable[[str], str] = str) -> Member:
    """Enrol through the invitation ``link``; ``typed``: how the member types the first
    authenticator code (e.g. :func:`arabic_digits`)."""
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path)
    assert page.status_code == 200
    form = {"csrf": csrf_of(page.text), "password": password, "password_again": password}
    if team_passphrase is not None:
        form["team_passphrase"] = team_passphrase
    answer = client.post("/" + path, data=form)
    assert answer.status_code == 303, answer.text
    page = client.get("/enrol")
    secret = totp_secret_of(page.text)
    codes = re.findall(r"<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>", page.text)
    assert len(codes) == 10
    qr = client.get("/enrol/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    done = client.post("/enrol", data={"csrf": csrf_of(page.text), "code": typed(totp_code(secret, clock))})
    assert done.status_code == 303, done.text
    return Member(username="", password=password, totp_secret=secret, recovery_codes=codes)


def login(client: TestClient, username: str, password: str, code: str):
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": username, "password": password, "code": code})
