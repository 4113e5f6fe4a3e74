"""The inbox and the case page over HTTP: filters and search, opening a case, replying,
changing status, notes, labels, assignment; volunteers get 403 on every case URL (listed
from the app's routes); a caseworker cannot open another's unshared case."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from nazaha.admin.app import console_routes, create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.setup import initialise
from nazaha.storage.cases import CaseService
from nazaha.storage.console_models import AuditEntry
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from nazaha.storage.models import CaseMessage, Report
from tests.casework_support import make_case
from tests.console_support import (
    PASSPHRASE,
    STAFF_PASSWORD,
    MovableClock,
    console_settings,
    csrf_of,
    enrol,
    invitation_link_after,
    login,
    totp_code,
)

BASE = "https://testserver"


@pytest.fixture
async def world(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    clients: list[TestClient] = []

    def browser() -> TestClient:
        client = TestClient(app, base_url=BASE, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    admin_browser = browser()
    admin = enrol(admin_browser, link, clock, team_passphrase=PASSPHRASE)
    console = app.state.console
    public = load_team_public_key(KeyPaths.for_data_dir(settings.data_dir))

    class World:
        pass

    w = World()
    w.settings, w.clock, w.app, w.console, w.public = settings, clock, app, console, public
    w.browser, w.admin_browser, w.admin = browser, admin_browser, admin
    yield w
    for client in clients:
        client.__exit__(None, None, None)


async def invite(w, username: str, role: str):
    page = w.admin_browser.get("/users")
    answer = w.admin_browser.post("/users/invite", data={"csrf": csrf_of(page.text), "username": username, "role": role})
    link = invitation_link_after(w.admin_browser, answer)
    member_browser = w.browser()
    member = enrol(member_browser, link, w.clock)
    page = w.admin_browser.get("/users")
    grant = re.search(rf'id="member-{username}".*?action="(/users/[0-9a-f]{{32}}/grant)"', page.text, re.S)
    if grant:
        assert w.admin_browser.post(grant.group(1), data={"csrf": csrf_of(page.text)}).status_code == 303
    w.clock.advance(seconds=60)
    fresh = w.browser()
    assert login(fresh, username, STAFF_PASSWORD, totp_code(member.totp_secret, w.clock)).status_code == 303
    return fresh


async def test_inbox_case_reply_status_and_notes(world):
    w = world
    sm = w.console.sessionmaker
    rid, _ = await make_case(sm, w.public, designation="R-ABCDEF", fields={"description": "رشوة في دائرة الترخيص", "contact_name": "Samir"},
                             messages=[("reporter", "more: the clerk's name is Fadi", False)])
    await make_case(sm, w.public, designation="R-GHJKMN", kind="complaint", category=None, service="health", sector=None,
                    fields={"description": "the clinic is closed on weekdays"})
    b = w.admin_browser
    inbox = b.get("/cases")
    assert inbox.status_code == 200 and "R-ABCDEF" in inbox.text and "R-GHJKMN" in inbox.text
    only_complaints = b.get("/cases?kind=complaint")
    assert "R-GHJKMN" in only_complaints.text and "R-ABCDEF" not in only_complaints.text
    # Search in the decrypted content (Arabic, with a hamza-free spelling).
    found = b.get("/cases", params={"q": "رشوه"})
    assert "R-ABCDEF" in found.text and "R-GHJKMN" not in found.text
    found = b.get("/cases", params={"q": "fadi"})
    assert "R-ABCDEF" in found.text and "R-GHJKMN" not in found.text

    page = b.get("/cases/R-ABCDEF")
    assert page.status_code == 200
    assert "رشوة في دائرة الترخيص" in page.text and "Samir" in page.text and "the clerk&#39;s name is Fadi" in page.text
    async with sm() as session:
        assert (await session.scalar(select(CaseMessage.read_by_staff).where(CaseMessage.report_id == rid))) is True

    csrf = csrf_of(page.text)
    assert b.post("/cases/R-ABCDEF/reply", data={"csrf": csrf, "body": "Thank you, we are looking into it."}).status_code == 303
    assert b.post("/cases/R-ABCDEF/note", data={"csrf": csrf, "body": "called the ministry"}).status_code == 303
    assert b.post("/cases/R-ABCDEF/status", data={"csrf": csrf, "status": "acknowledged"}).status_code == 303
    assert b.post("/cases/R-ABCDEF/labels/add", data={"csrf": csrf, "label": "permits"}).status_code == 303
    # Not allowed from "acknowledged" straight back to "received": a message, no change.
    bad = b.post("/cases/R-ABCDEF/status", data={"csrf": csrf, "status": "received"})
    assert "error=transition" in bad.headers["location"]
    page = b.get("/cases/R-ABCDEF")
    assert "Thank you, we are looking into it." in page.text and "called the ministry" in page.text
    assert "permits" in page.text
    async with sm() as session:
        assert (await session.scalar(select(Report.status).where(Report.id == rid))) == "acknowledged"
        actions = list((await session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))).all())
    for action in ("case_view", "reply", "note", "status_change", "label"):
        assert action in actions
    # The reply is in the thread the reporter reads.
    vault = w.console.services["vault"]
    case = await vault.unlock_with_team("R-ABCDEF", w.console.sessions.team_key_holder())
    thread = await CaseService(sm).thread(case)
    assert [m.direction for m in thread] == ["reporter", "staff"]

    # Closing needs an outcome; then the case can be reopened.
    csrf = csrf_of(page.text)
    no_outcome = b.post("/cases/R-ABCDEF/status", data={"csrf": csrf, "status": "closed"})
    assert "error=" in no_outcome.headers["location"]
    assert b.post("/cases/R-ABCDEF/status", data={"csrf": csrf, "status": "closed", "outcome": "substantiated"}).status_code == 303
    assert b.post("/cases/R-ABCDEF/reopen", data={"csrf": csrf}).status_code == 303
    async with sm() as session:
        assert (await session.scalar(select(Report.status).where(Report.id == rid))) == "in_review"


async def test_caseworker_sees_only_what_is_theirs_and_volunteer_nothing(world):
    w = world
    sm = w.console.sessionmaker
    await make_case(sm, w.public, designation="R-MMMMMM")
    huda = await invite(w, "huda", "caseworker")
    omar = await invite(w, "omar", "caseworker")
    vol = await invite(w, "vera", "volunteer")
    page = w.admin_browser.get("/cases/R-MMMMMM")
    csrf = csrf_of(page.text)
    huda_id = re.search(r'<option value="([0-9a-f]{32})"[^>]*>huda<', page.text).group(1)
    assert w.admin_browser.post("/cases/R-MMMMMM/assign", data={"csrf": csrf, "assignee": huda_id}).status_code == 303
    assert huda.get("/cases/R-MMMMMM").status_code == 200
    assert omar.get("/cases/R-MMMMMM").status_code == 403
    assert "R-MMMMMM" not in omar.get("/cases").text
    # Shared with omar: he can open it; revoked: he cannot.
    omar_id = re.search(r'<option value="([0-9a-f]{32})"[^>]*>omar<', page.text).group(1)
    assert w.admin_browser.post("/cases/R-MMMMMM/share", data={"csrf": csrf, "user": omar_id}).status_code == 303
    assert omar.get("/cases/R-MMMMMM").status_code == 200
    assert w.admin_browser.post("/cases/R-MMMMMM/unshare", data={"csrf": csrf, "user": omar_id}).status_code == 303
    assert omar.get("/cases/R-MMMMMM").status_code == 403

    # Every case, decrypt and export URL answers 403 to a volunteer: listed from the routes.
    routes = [(m, p) for m, p in console_routes(w.app) if p.startswith(("/cases", "/templates", "/users", "/audit", "/retention"))]
    assert len(routes) > 20
    token = csrf_of(vol.get("/cases").text)  # a valid token: what refuses is the role
    for method, route in routes:
        path = re.sub(r"\{designation\}", "R-MMMMMM", route)
        path = re.sub(r"\{[a-z_]+\}", "x" * 32, path)
        answer = vol.request(method, path, data={"csrf": token})
        assert answer.status_code == 403, (method, route, answer.status_code)


async def test_bulk_actions_change_what_they_can_and_count_the_rest(world):
    w = world
    sm = w.console.sessionmaker
    await make_case(sm, w.public, designation="R-BULK22")
    await make_case(sm, w.public, designation="R-BULK33")
    await make_case(sm, w.public, designation="R-BULK44", status="closed", outcome="out_of_scope")
    b = w.admin_browser
    page = b.get("/cases")
    csrf = csrf_of(page.text)
    me = re.search(r'name="assignee"><option value="">[^<]*</option>\s*<option value="([0-9a-f]{32})"', page.text).group(1)
    cases = ["R-BULK22", "R-BULK33", "R-BULK44"]
    done = b.post("/cases/bulk", data={"csrf": csrf, "action": "status", "status": "acknowledged", "case": cases})
    assert done.status_code == 303 and "skipped=1" in done.headers["location"]
    notice = re.search(r'<p class="notice" role="status">([^<]+)</p>', b.get(done.headers["location"]).text)
    plain = b.post("/cases/bulk", data={"csrf": csrf, "action": "label", "label": "x", "case": cases[:1]})
    assert "skipped=0" in plain.headers["location"]
    plain_notice = re.search(r'<p class="notice" role="status">([^<]+)</p>', b.get(plain.headers["location"]).text)
    assert notice and plain_notice and notice.group(1) != plain_notice.group(1)  # the skipped case is mentioned
    async with sm() as session:
        statuses = dict((await session.execute(select(Report.designation, Report.status))).all())
    assert statuses == {"R-BULK22": "acknowledged", "R-BULK33": "acknowledged", "R-BULK44": "closed"}
    assert b.post("/cases/bulk", data={"csrf": csrf, "action": "assign", "assignee": me, "case": cases[:2]}).status_code == 303
    assert b.post("/cases/bulk", data={"csrf": csrf, "action": "label", "label": "batch", "case": cases[:2]}).status_code == 303
    mine = b.get("/cases", params={"assignee": "me"}).text
    assert "R-BULK22" in mine and "R-BULK33" in mine and "R-BULK44" not in mine
    labelled = b.get("/cases", params={"label": "batch"}).text
    assert "R-BULK22" in labelled and "R-BULK44" not in labelled


async def test_audit_page_names_actions_members_and_cases(world):
    w = world
    await make_case(w.console.sessionmaker, w.public, designation="R-AUDT22")
    b = w.admin_browser
    b.get("/cases/R-AUDT22")
    page = b.get("/users")
    b.post("/users/invite", data={"csrf": csrf_of(page.text), "username": "nadia", "role": "caseworker"})
    b.post("/locale", data={"csrf": csrf_of(page.text), "locale": "en", "back": "/audit"})
    log = b.get("/audit")
    assert log.status_code == 200
    assert "<td>Case opened</td>" in log.text and "<td>case_view</td>" not in log.text  # words, not codes
    assert "/cases/R-AUDT22" in log.text  # the case reference resolves to its designation
    assert "nadia" in log.text  # the invited member is named
    assert "=None" not in log.text


async def test_destroyed_keys_leave_no_copy_in_the_console_files(world):
    """The first admin's bootstrap copy of the team key, and a removed member's sealed key
    and grant, are gone from console.db and its WAL (secure_delete + checkpoint)."""
    from nazaha.storage.console_db import console_db_path
    from nazaha.storage.console_models import StaffUser, TeamKeyGrant

    w = world
    recovery = KeyPaths.for_data_dir(w.settings.data_dir).team_recovery.read_bytes()
    sealed_b64 = re.search(rb'"sealed": "([^"]+)"', recovery).group(1)
    store = console_db_path(w.settings.effective_console_dir)

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))

    assert sealed_b64[:40] not in files()  # deleted at the first admin's enrolment
    await invite(w, "rana", "caseworker")
    async with w.console.sessionmaker() as session:
        user = await session.scalar(select(StaffUser).where(StaffUser.username == "rana"))
        grant = await session.scalar(select(TeamKeyGrant.sealed).where(TeamKeyGrant.user_id == user.id))
        private_blob = bytes(user.sealed_private_key)
    assert grant and private_blob[:60] in files()
    page = w.admin_browser.get("/users")
    assert w.admin_browser.post(f"/users/{user.id}/remove", data={"csrf": csrf_of(page.text)}).status_code == 303
    blob = files()
    assert private_blob[20:80] not in blob and bytes(grant)[20:80] not in blob


async def test_a_reset_member_enrols_again_and_is_granted_again(world):
    """Forgotten password or lost phone: the admin resets, the member enrols with a new link
    and a new password, is granted the key again; the old password no longer works."""
    from nazaha.storage.console_models import StaffUser

    w = world
    await make_case(w.console.sessionmaker, w.public, designation="R-RSET22")
    await invite(w, "samar", "caseworker")
    async with w.console.sessionmaker() as session:
        user_id = await session.scalar(select(StaffUser.id).where(StaffUser.username == "samar"))
    page = w.admin_browser.get("/users")
    reset = w.admin_browser.post(f"/users/{user_id}/reset", data={"csrf": csrf_of(page.text)})
    link = invitation_link_after(w.admin_browser, reset)
    w.clock.advance(seconds=60)
    assert login(w.browser(), "samar", STAFF_PASSWORD, "000000").status_code == 401  # no way in now
    new_password = "amber orchards hum beneath slow granite tides"
    member = enrol(w.browser(), link, w.clock, password=new_password)
    page = w.admin_browser.get("/users")
    grant = re.search(r'id="member-samar".*?action="(/users/[0-9a-f]{32}/grant)"', page.text, re.S).group(1)
    assert w.admin_browser.post(grant, data={"csrf": csrf_of(page.text)}).status_code == 303
    w.clock.advance(seconds=60)
    fresh = w.browser()
    assert login(fresh, "samar", STAFF_PASSWORD, totp_code(member.totp_secret, w.clock)).status_code == 401
    w.clock.advance(seconds=60)
    assert login(fresh, "samar", new_password, totp_code(member.totp_secret, w.clock)).status_code == 303
    assert fresh.get("/cases/R-RSET22").status_code == 200  # the team key works again
