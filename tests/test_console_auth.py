"""Console accounts over HTTP: invitation → password → TOTP enrolment → login, replayed
codes, throttling with one answer, CSRF, cookies and security headers, reset and removal."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.setup import initialise
from nazaha.storage.keyfiles import KeyPaths
from tests.console_support import (
    PASSPHRASE,
    enrol,
    login,
    STAFF_PASSWORD,
    MovableClock,
    arabic_digits,
    console_settings,
    csrf_of,
    invitation_link_after,
    totp_code,
)

BASE = "https://testserver"  # __Host- cookies are Secure: the test client sends them over https only


@pytest.fixture
async def setup(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    return settings, link


@pytest.fixture
def client_factory(setup):
    settings, _ = setup
    clock = MovableClock()
    clients = []
    app = create_app(settings, clock=clock)

    def make() -> TestClient:
        # Each client is a browser of its own (its own cookies) on the same console process.
        client = TestClient(app, base_url=BASE, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    make.clock = clock
    yield make
    for client in clients:
        client.__exit__(None, None, None)


async def test_first_admin_enrols_and_logs_in(setup, client_factory):
    settings, link = setup
    client = client_factory()
    clock = client_factory.clock
    # A link preview (GET) consumes nothing: the link still works afterwards.
    path = "/" + link.split("/", 3)[3]
    assert client.get(path).status_code == 200
    assert client.get(path).status_code == 200
    admin = enrol(client, link, clock, team_passphrase=PASSPHRASE)
    home = client.get("/users")
    assert home.status_code == 200 and "admin" in home.text
    # The link is used up.
    assert client_factory().get(path).status_code == 404

    # A new browser logs in with password and TOTP; the same code a second time fails.
    other = client_factory()
    clock.advance(seconds=60)
    code = totp_code(admin.totp_secret, clock)
    ok = login(other, "admin", STAFF_PASSWORD, code)
    assert ok.status_code == 303 and ok.headers["location"] == "/cases"
    replay = login(client_factory(), "admin", STAFF_PASSWORD, code)
    assert replay.status_code == 401

    # A recovery code works once.
    third = client_factory()
    assert login(third, "admin", STAFF_PASSWORD, admin.recovery_codes[0]).status_code == 303
    assert login(client_factory(), "admin", STAFF_PASSWORD, admin.recovery_codes[0]).status_code == 401


async def test_codes_typed_in_arabic_indic_digits_work_at_enrolment_and_sign_in(setup, client_factory):
    """A phone set to Arabic types ٥٧٩٩٤١ (or ۵۷۹۹۴۱ on a Persian/Urdu keyboard), often with
    a space: the authenticator's code and a recovery code are read as their ASCII digits at
    enrolment and at sign-in, not refused as a wrong code (which counts toward the pause)."""
    _, link = setup
    clock = client_factory.clock
    admin = enrol(client_factory(), link, clock, team_passphrase=PASSPHRASE,
                  typed=lambda code: arabic_digits(code, spaced=True))
    clock.advance(seconds=60)
    code = totp_code(admin.totp_secret, clock)
    assert login(client_factory(), "admin", STAFF_PASSWORD, arabic_digits(code, extended=True)).status_code == 303
    # Read as the same code: used once, whichever digits typed it.
    assert login(client_factory(), "admin", STAFF_PASSWORD, code).status_code == 401
    clock.advance(seconds=60)
    code = totp_code(admin.totp_secret, clock)
    assert login(client_factory(), "admin", STAFF_PASSWORD, "\u2066" + arabic_digits(code, spaced=True) + "\u2069").status_code == 303
    # A recovery code with its digits typed in Arabic-Indic and its letters in lower case.
    recovery = next(c for c in admin.recovery_codes if any(ch.isdigit() for ch in c))
    assert login(client_factory(), "admin", STAFF_PASSWORD, arabic_digits(recovery).lower()).status_code == 303
    assert login(client_factory(), "admin", STAFF_PASSWORD, recovery).status_code == 401  # used up
    # A wrong code stays wrong in any digits, and other characters are not read as digits.
    clock.advance(seconds=60)
    code = totp_code(admin.totp_secret, clock)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert login(client_factory(), "admin", STAFF_PASSWORD, arabic_digits(wrong)).status_code == 401
    assert login(client_factory(), "admin", STAFF_PASSWORD, code[:5] + "x" + code[5:]).status_code == 401
    assert login(client_factory(), "admin", STAFF_PASSWORD, arabic_digits(code)).status_code == 303


@pytest.mark.parametrize("weak", ["Palestine2024!", "Ramallah@2023", "caseworker2024", "Admin@Nazaha1"])
async def test_guessable_staff_passwords_are_refused(setup, client_factory, weak):
    _, link = setup
    client = client_factory()
    path = "/" + link.split("/", 3)[3]
    page = client.get(path)
    answer = client.post(path, data={"csrf": csrf_of(page.text), "password": weak, "password_again": weak, "team_passphrase": PASSPHRASE})
    assert answer.status_code == 400


async def test_the_console_database_alone_cannot_test_password_guesses(setup, client_factory):
    from sqlalchemy import select

    from nazaha.storage.console_models import StaffUser
    from nazaha.storage.crypto import KDF_TESTING, verify_password

    _, link = setup
    client = client_factory()
    enrol(client, link, client_factory.clock, team_passphrase=PASSPHRASE)
    async with client.app.state.console.sessionmaker() as session:
        stored = await session.scalar(select(StaffUser.password_hash))
    # The hash is of the password keyed with the console secret: the right password alone fails.
    assert stored and not verify_password(STAFF_PASSWORD, stored, floor=KDF_TESTING)


async def test_wrong_team_passphrase_and_weak_password_are_refused(setup, client_factory):
    _, link = setup
    client = client_factory()
    path = "/" + link.split("/", 3)[3]
    page = client.get(path)
    weak = client.post(path, data={"csrf": csrf_of(page.text), "password": "password1234", "password_again": "password1234", "team_passphrase": PASSPHRASE})
    assert weak.status_code == 400
    wrong = client.post(path, data={"csrf": csrf_of(page.text), "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD, "team_passphrase": "not the passphrase at all"})
    assert wrong.status_code == 400
    assert client.get(path).status_code == 200  # still usable


async def test_failures_look_alike_and_are_throttled(setup, client_factory):
    _, link = setup
    client = client_factory()
    clock = client_factory.clock
    admin = enrol(client, link, clock, team_passphrase=PASSPHRASE)
    unknown = login(client_factory(), "nobody", STAFF_PASSWORD, "123456")
    wrong = login(client_factory(), "admin", "wrong password entirely", totp_code(admin.totp_secret, clock))

    def body(response) -> str:
        return re.sub(r'value="(admin|nobody|[0-9a-f]{64})"', "", response.text)

    assert unknown.status_code == wrong.status_code == 401
    assert body(unknown) == body(wrong)
    for _ in range(10):  # the per-account limit (10 in 15 minutes), the one above counted too
        login(client_factory(), "admin", "wrong password entirely", "000000")
    clock.advance(seconds=90)
    throttled = login(client_factory(), "admin", STAFF_PASSWORD, totp_code(admin.totp_secret, clock))
    assert throttled.status_code == 401 and body(throttled) == body(unknown)


async def test_csrf_cookies_and_headers(setup, client_factory):
    _, link = setup
    client = client_factory()
    page = client.get("/login")
    for name in ("content-security-policy", "x-content-type-options", "referrer-policy", "cache-control"):
        assert name in page.headers
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-") and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    # A cross-site form post carries our cookies (browsers do for top-level POST only with
    # SameSite=None, but a same-site attacker page could) yet no token: refused.
    refused = client.post("/login", data={"username": "admin", "password": STAFF_PASSWORD, "code": "000000"})
    assert refused.status_code == 403
    missing = client_factory().get("/nothing-here")
    assert missing.status_code == 404 and "content-security-policy" in missing.headers


async def test_idle_timeout_reset_grant_and_removal(setup, client_factory):
    settings, link = setup
    client = client_factory()
    clock = client_factory.clock
    admin = enrol(client, link, clock, team_passphrase=PASSPHRASE)
    assert client.get("/users").status_code == 200
    clock.advance(minutes=31)
    assert client.get("/users").status_code == 303  # idle: back to the login page

    # The admin logs in again, invites a caseworker, who enrols; the admin grants the key.
    admin_browser = client_factory()
    clock.advance(seconds=60)
    assert login(admin_browser, "admin", STAFF_PASSWORD, totp_code(admin.totp_secret, clock)).status_code == 303
    page = admin_browser.get("/users")
    invited = admin_browser.post("/users/invite", data={"csrf": csrf_of(page.text), "username": "huda", "role": "caseworker"})
    caseworker_link = invitation_link_after(admin_browser, invited)
    worker_browser = client_factory()
    worker = enrol(worker_browser, caseworker_link, clock)
    assert worker_browser.get("/users").status_code == 403  # not an admin
    state = worker_browser.app.state.console
    [worker_session] = [s for s in state.sessions._sessions.values() if s.identity.username == "huda"]
    assert worker_session.team_private is None  # not granted yet

    page = admin_browser.get("/users")
    worker_id = re.search(r'action="/users/([0-9a-f]{32})/grant"', page.text).group(1)
    assert admin_browser.post(f"/users/{worker_id}/grant", data={"csrf": csrf_of(page.text)}).status_code == 303
    clock.advance(seconds=60)
    relogin = client_factory()
    assert login(relogin, "huda", STAFF_PASSWORD, totp_code(worker.totp_secret, clock)).status_code == 303
    granted = [s for s in relogin.app.state.console.sessions._sessions.values() if s.identity.username == "huda"]
    assert granted and granted[-1].team_private is not None

    # Removing the member ends their sessions and destroys their key.
    page = admin_browser.get("/users")
    assert admin_browser.post(f"/users/{worker_id}/remove", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert relogin.get("/").headers["location"] == "/login"
    clock.advance(seconds=60)
    assert login(client_factory(), "huda", STAFF_PASSWORD, totp_code(worker.totp_secret, clock)).status_code == 401


async def test_console_exports_an_audit_head_that_verifies(setup, client_factory):
    from nazaha.admin.app import export_audit_head
    from nazaha.services import audit

    settings, link = setup
    client = client_factory()
    enrol(client, link, client_factory.clock, team_passphrase=PASSPHRASE)
    console = client.app.state.console
    await export_audit_head(console)
    head = audit.latest_exported_head(settings.effective_console_dir / audit.HEADS_DIR)
    assert head is not None and head.seq >= 2  # enrolment and the key grant
    result = await audit.verify(console.sessionmaker, console.console_secret, head)
    assert result.ok


async def test_language_switch_returns_to_the_page_and_never_elsewhere(setup, client_factory):
    client = client_factory()
    page = client.get("/login?bye=1")
    assert 'lang="ar" dir="rtl"' in page.text  # Arabic first
    answer = client.post("/locale", data={"csrf": csrf_of(page.text), "locale": "en", "back": "/login?bye=1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login?bye=1"
    english = client.get("/login")
    assert 'lang="en" dir="ltr"' in english.text
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = client.post("/locale", data={"csrf": csrf_of(english.text), "locale": "ar", "back": evil})
        assert answer.headers["location"] == "/"


async def test_requests_from_other_sites_reach_only_sign_in_and_invitations(setup, client_factory):
    _, link = setup
    client = client_factory()
    enrol(client, link, client_factory.clock, team_passphrase=PASSPHRASE)
    other_port = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    for path in ("/cases", "/users", "/audit", "/cases/R-AAAAAA/evidence/" + "0" * 32 + "/download"):
        answer = client.get(path, headers=other_port)
        assert answer.status_code == 403 and "content-security-policy" in answer.headers
    link_from_mail = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert client.get("/login", headers=link_from_mail).status_code == 200
    assert client.get("/" + link.split("/", 3)[3], headers=link_from_mail).status_code in (200, 404)
    assert client.get("/cases", headers=link_from_mail).status_code == 403
    assert client.get("/cases", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


async def test_first_admin_is_told_what_they_can_do_and_invite_admin_says_why_it_makes_none(setup, client_factory, capsys):
    """Nobody can reset the first administrator's account: their invitation page says what
    helps instead (a second administrator, the recovery codes, `nazaha invite-admin` while
    nobody holds the team key), and `nazaha invite-admin` says why it makes no link once an
    administrator holds the key."""
    from nazaha.bot.cli import ADMIN_EXISTS, build_parser, cmd_invite_admin

    settings, _ = setup
    args = build_parser().parse_args(["invite-admin", "--key-file", str(KeyPaths.for_data_dir(settings.data_dir).team_recovery)])
    # Before the first administrator enrols: a new link (the earlier one no longer works).
    await cmd_invite_admin(settings, args)
    link = re.search(r"^  (http://\S+/invite/\S+)$", capsys.readouterr().out, re.M).group(1)
    client = client_factory()
    page = client.get("/" + link.split("/", 3)[3], headers={"accept-language": "en"}).text
    assert "an administrator resets your account" not in page
    assert "nobody can reset your account yet: once you are in, invite a second administrator on the Team page" in page
    assert "they do not replace the password" in page
    assert '<code dir="ltr">nazaha invite-admin --key-file</code> with the team recovery file prints a new one' in page
    enrol(client, link, client_factory.clock, team_passphrase=PASSPHRASE)

    # Once an administrator holds the team key: one line saying why, exit status 1.
    with pytest.raises(SystemExit) as refused:
        await cmd_invite_admin(settings, args)
    assert refused.value.code == ADMIN_EXISTS and "\n" not in ADMIN_EXISTS
    assert "administrator already holds the team key" in ADMIN_EXISTS
    assert "/invite/" not in capsys.readouterr().out
    # Without the recovery file at hand, the same reason (not "--key-file is needed").
    elsewhere = build_parser().parse_args(["invite-admin", "--key-file", str(settings.data_dir / "absent.key")])
    with pytest.raises(SystemExit, match="already holds the team key"):
        await cmd_invite_admin(settings, elsewhere)

    # Any other member's invitation keeps the usual advice.
    page = client.get("/users")
    invited = client.post("/users/invite", data={"csrf": csrf_of(page.text), "username": "huda", "role": "admin"})
    other = client_factory().get("/" + invitation_link_after(client, invited).split("/", 3)[3], headers={"accept-language": "en"}).text
    assert "if you forget it, an administrator resets your account" in other and "invite-admin" not in other
