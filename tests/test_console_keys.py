"""The admin page for team-key rotation (/keys) over HTTP, on a real console: the offline
recovery file in, the new one out (opens with the new passphrase, same signing key); the
re-keying runs in the background until every report is under the new key; the admin and a
caseworker granted before keep opening cases (the caseworker's session follows the new
grant without signing in again); the old grants are gone. Refusals (wrong passphrase,
another key's file, a version-1 file, weak or mismatched new passphrases) change nothing.
Resuming an unfinished rotation; 403 for caseworkers and volunteers; the Team page's
removal notice points to /keys; the audit page names both steps."""

from __future__ import annotations

import asyncio
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.admin.sessions import SESSION_COOKIE
from nazaha.bot.setup import initialise
from nazaha.services.key_rotation import rotation_state, start_rotation
from nazaha.storage.console_models import KeyRotation, StaffUser, TeamKeyGrant
from nazaha.storage.crypto import (
    KDF_TESTING,
    CryptoError,
    TeamPrivateKey,
    TeamSigningKey,
    open_team_recovery,
    seal_team_private_key,
    seal_team_recovery,
)
from nazaha.storage.database import write_lock_for
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from nazaha.storage.models import Report, SystemSetting
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.reports import ReportDraft, ReportVault
from nazaha.storage.team_key import SETTING_TEAM_KEY_ID
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
NEW_PASSPHRASE = "saffron ledger drifts past the quiet mill"


@pytest.fixture
async def world(tmp_path):
    # Housekeeping stays out of the way (its automatic resume has its own test).
    settings = console_settings(tmp_path / "var", notify_interval_seconds=3600)
    await initialise(settings, passphrase=PASSPHRASE)
    paths = KeyPaths.for_data_dir(settings.data_dir)
    link = await first_admin_invitation(settings, paths.team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    clients: list[TestClient] = []

    def browser() -> TestClient:
        client = TestClient(app, base_url=BASE, follow_redirects=False, headers={"Accept-Language": "en"})
        client.__enter__()
        clients.append(client)
        return client

    admin_browser = browser()
    admin = enrol(admin_browser, link, clock, team_passphrase=PASSPHRASE)

    class World:
        pass

    w = World()
    w.settings, w.clock, w.app, w.console = settings, clock, app, app.state.console
    w.public = load_team_public_key(paths)
    w.recovery = paths.team_recovery.read_bytes()
    w.browser, w.admin_browser, w.admin = browser, admin_browser, admin
    yield w
    for client in clients:
        client.__exit__(None, None, None)


async def invite(w, username: str, role: str) -> TestClient:
    """Invite, enrol, grant (not volunteers) and sign in a member; their browser."""
    page = w.admin_browser.get("/users")
    answer = w.admin_browser.post("/users/invite", data={"csrf": csrf_of(page.text), "username": username, "role": role})
    link = invitation_link_after(w.admin_browser, answer)
    member = enrol(w.browser(), link, w.clock)
    page = w.admin_browser.get("/users")
    grant = re.search(rf'id="member-{username}".*?action="(/users/[0-9a-f]{{32}}/grant)"', page.text, re.S)
    if grant:
        assert w.admin_browser.post(grant.group(1), data={"csrf": csrf_of(page.text)}).status_code == 303
    w.clock.advance(seconds=60)
    fresh = w.browser()
    assert login(fresh, username, STAFF_PASSWORD, totp_code(member.totp_secret, w.clock)).status_code == 303
    return fresh


async def store_reports(w) -> dict[str, str]:
    """Two reports filed as the bot does (with the reporter's public key: re-keyed into a
    new epoch) and two written straight into the tables without it (only re-wrapped).
    Returns designation -> a text of the report."""
    sm = w.console.sessionmaker
    vault = await ReportVault.load(sm, w.public, kdf_floor=KDF_TESTING)
    texts, w.receipts = {}, {}
    for text in ("The permit clerk asked for 300 shekels", "رشوة في دائرة الترخيص في نابلس"):
        sealed = await vault.seal(ReportDraft(kind="corruption", triage={"category": "bribery"}, fields={"description": text}))
        batch = ReportBatch()
        vault.store(batch, sealed)
        await ReportWriter(sm, max_delay=0).commit(batch)
        texts[sealed.designation] = text
        w.receipts[sealed.designation] = sealed.receipt
    for designation, text in (("R-OLDAAA", "an old report about tender rigging"), ("R-OLDBBB", "an old complaint about a clinic")):
        await make_case(sm, w.public, designation=designation, fields={"description": text},
                        messages=[("reporter", f"follow-up on {designation}", False)])
        texts[designation] = text
    w.vault = vault
    return texts


def rotate_form(w, recovery: bytes, *, passphrase: str = PASSPHRASE, new: str = NEW_PASSPHRASE,
                again: str | None = None, confirm: bool = True, filename: str = "team-recovery.key"):
    b = w.admin_browser
    page = b.get("/keys")
    data = {"csrf": csrf_of(page.text), "passphrase": passphrase, "new_passphrase": new,
            "new_passphrase_again": new if again is None else again}
    if confirm:
        data["confirm"] = "1"
    return b.post("/keys/rotate", data=data, files={"recovery_file": (filename, recovery, "application/octet-stream")})


async def wait_until_finished(w, rounds: int = 2000):
    """Poll the rotation's row (bounded): the background run commits batch by batch."""
    for _ in range(rounds):
        async with w.console.sessionmaker() as session:
            state = await rotation_state(session)
        if state is not None and state.finished:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError("the rotation did not finish")


async def current_key_id(w) -> str:
    async with w.console.sessionmaker() as session:
        return bytes(await session.scalar(select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID))).decode()


def held_key_ids(w, browser: TestClient) -> set[str]:
    session = w.console.sessions.get(browser.cookies.get(SESSION_COOKIE))
    return set(session.team_private.key_ids)


async def test_rotation_from_the_page(world):
    w = world
    texts = await store_reports(w)
    carla = await invite(w, "carla", "caseworker")
    some = next(iter(texts))
    assert carla.get(f"/cases/{some}").status_code == 200
    old_id = w.public.key_id
    old_key, old_signing = open_team_recovery(w.recovery, PASSPHRASE, KDF_TESTING)

    page = w.admin_browser.get("/keys")
    assert page.status_code == 200
    assert f'id="current-key-id">{old_id}<' in page.text
    assert 'id="rotate"' in page.text and 'http-equiv="refresh"' not in page.text
    assert "destroy the old one" in page.text and "offline" in page.text

    prepared = rotate_form(w, w.recovery)
    assert prepared.status_code == 303 and prepared.headers["location"] == "/keys", prepared.text
    # Prepared, nothing changed yet: the new recovery file must be stored first.
    assert await current_key_id(w) == old_id
    page = w.admin_browser.get("/keys")
    assert 'id="rotation-prepared"' in page.text and 'id="rotate"' not in page.text
    refused = w.admin_browser.post("/keys/start", data={"csrf": csrf_of(page.text), "stored": "1"})
    assert refused.status_code == 400 and "Download the new recovery file first" in refused.text
    answer = w.admin_browser.post("/keys/recovery-file", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    disposition = answer.headers["content-disposition"]
    match = re.fullmatch(r'attachment; filename="nazaha-team-recovery-([0-9a-f]+)\.key"', disposition)
    assert match, disposition
    new_id = match.group(1)
    assert new_id != old_id
    new_key, new_signing = open_team_recovery(answer.content, NEW_PASSPHRASE, KDF_TESTING)
    assert new_key.key_id == new_id
    # The new file holds a new signing key: the one the bots pin after this rotation.
    assert new_signing is not None and new_signing.public_bytes() != old_signing.public_bytes()
    with pytest.raises(CryptoError):
        open_team_recovery(answer.content, PASSPHRASE, KDF_TESTING)
    assert w.admin_browser.post("/keys/recovery-file", data={"csrf": csrf_of(page.text)}).content == answer.content
    assert await current_key_id(w) == old_id
    page = w.admin_browser.get("/keys")
    unconfirmed = w.admin_browser.post("/keys/start", data={"csrf": csrf_of(page.text)})
    assert unconfirmed.status_code == 400 and "stored offline" in unconfirmed.text
    started = w.admin_browser.post("/keys/start", data={"csrf": csrf_of(page.text), "stored": "1"})
    assert started.status_code == 303 and started.headers["location"] == "/keys?started=1"
    # The demo keeps its recovery file (and passphrase) in its data dir: kept current.
    paths = KeyPaths.for_data_dir(w.settings.data_dir)
    assert paths.team_recovery.read_bytes() == answer.content
    assert await current_key_id(w) == new_id  # published for the bots at once
    async with w.console.sessionmaker() as session:
        published_next = await session.scalar(
            select(SystemSetting.value).where(SystemSetting.name == "team_next_signing_key"))
    assert bytes(published_next) == new_signing.public_bytes()

    state = await wait_until_finished(w)
    assert (state.old_key_id, state.new_key_id, state.reports_total) == (old_id, new_id, 4)
    sm = w.console.sessionmaker
    async with sm() as session:
        keys = dict((await session.execute(select(Report.designation, Report.team_key_id))).all())
        epochs = dict((await session.execute(select(Report.designation, Report.key_epoch))).all())
        grants = (await session.execute(
            select(StaffUser.username, TeamKeyGrant.team_key_id).join(StaffUser, StaffUser.id == TeamKeyGrant.user_id)
        )).all()
    assert set(keys.values()) == {new_id}
    # Filed with the reporter's public key: a new case key (epoch 1); the older rows: re-wrapped.
    assert {d: epochs[d] for d in texts} == {**{d: 1 for d in w.receipts}, "R-OLDAAA": 0, "R-OLDBBB": 0}
    assert sorted(grants) == [("admin", new_id), ("carla", new_id)]  # the old grants are gone

    for designation, text in texts.items():
        for browser in (w.admin_browser, carla):
            case_page = browser.get(f"/cases/{designation}")
            assert case_page.status_code == 200, designation
            assert text in case_page.text
    # Both sessions hold the new key only now; the caseworker never signed in again.
    assert held_key_ids(w, w.admin_browser) == {new_id}
    assert held_key_ids(w, carla) == {new_id}
    # The reporter's receipt still opens their report (down the chain of case keys); the
    # old team key opens no re-keyed report.
    for designation, receipt in w.receipts.items():
        opened = await w.vault.open_with_receipt(receipt)
        assert opened.fields["description"] == texts[designation]
        with pytest.raises(CryptoError):
            await w.vault.unlock_with_team(designation, old_key)
    # Replying still works after the rotation.
    case_page = w.admin_browser.get("/cases/R-OLDAAA")
    assert w.admin_browser.post("/cases/R-OLDAAA/reply", data={"csrf": csrf_of(case_page.text), "body": "We are on it."}).status_code == 303
    assert "We are on it." in carla.get("/cases/R-OLDAAA").text

    page = w.admin_browser.get("/keys")
    assert f'id="current-key-id">{new_id}<' in page.text
    assert 'id="rotation-progress"' not in page.text and 'http-equiv="refresh"' not in page.text
    assert re.search(r'id="last-rotation"><bdi dir="ltr">\d{4}-\d\d-\d\d \d\d:\d\d UTC<', page.text)
    # The old recovery file is of no use for another rotation.
    again = rotate_form(w, w.recovery)
    assert again.status_code == 400 and "holds another team key" in again.text
    # The new file (its signing key is the one published for the bots) prepares the next one.
    following = rotate_form(w, answer.content, passphrase=NEW_PASSPHRASE, new=PASSPHRASE)
    assert following.status_code == 303, following.text
    page = w.admin_browser.get("/keys")
    assert w.admin_browser.post("/keys/cancel", data={"csrf": csrf_of(page.text)}).status_code == 303

    audit_page = w.admin_browser.get("/audit")
    assert "Team-key rotation started" in audit_page.text and "Team-key rotation finished" in audit_page.text
    assert f"new_key={new_id}" in audit_page.text


async def test_refusals_change_nothing(world):
    w = world
    await store_reports(w)
    sm = w.console.sessionmaker
    old_id = w.public.key_id
    another = seal_team_recovery(TeamPrivateKey.generate(), TeamSigningKey.generate(), PASSPHRASE, KDF_TESTING, KDF_TESTING)
    current, _signing = open_team_recovery(w.recovery, PASSPHRASE, KDF_TESTING)
    version_one = seal_team_private_key(current, PASSPHRASE, KDF_TESTING, KDF_TESTING)
    # The current key with a signing key other than the one pinned in the data dir.
    other_signing = seal_team_recovery(current, TeamSigningKey.generate(), PASSPHRASE, KDF_TESTING, KDF_TESTING)
    cases = [
        (dict(recovery=w.recovery, passphrase="not the team passphrase at all"), "does not open this recovery file"),
        (dict(recovery=another), "holds another team key, not the current one"),
        (dict(recovery=version_one), "nazaha keys rotate"),
        (dict(recovery=other_signing), "not the one the bot trusts"),
        (dict(recovery=b"", filename=""), "Choose the current recovery file"),
        (dict(recovery=b"{not a recovery file"), "not a team recovery file"),
        (dict(recovery=b"x" * (64 * 1024 + 1)), "too large"),
        (dict(recovery=w.recovery, new="short one"), "too short"),
        (dict(recovery=w.recovery, new="1qaz2wsx3edc"), "common passwords"),
        (dict(recovery=w.recovery, new="abcabcabcabcabcabc"), "too easy to guess"),
        (dict(recovery=w.recovery, again=NEW_PASSPHRASE + "!"), "two new passphrases are not the same"),
    ]
    for kwargs, message in cases:
        answer = rotate_form(w, **kwargs)
        assert answer.status_code == 400, (message, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html")
        error = re.search(r'id="keys-error">(.*?)</p>', answer.text, re.S).group(1)
        assert message in error, (message, error)
        assert NEW_PASSPHRASE not in answer.text and PASSPHRASE not in answer.text
    assert await current_key_id(w) == old_id
    async with sm() as session:
        assert await session.scalar(select(func.count()).select_from(KeyRotation)) == 0
        assert set((await session.scalars(select(Report.team_key_id))).all()) == {old_id}
        assert set((await session.scalars(select(TeamKeyGrant.team_key_id))).all()) == {old_id}
    assert held_key_ids(w, w.admin_browser) == {old_id}

    # Prepared, downloaded, then cancelled: nothing changed, and the form is back.
    assert rotate_form(w, w.recovery).status_code == 303
    page = w.admin_browser.get("/keys")
    assert w.admin_browser.post("/keys/recovery-file", data={"csrf": csrf_of(page.text)}).status_code == 200
    assert w.admin_browser.post("/keys/cancel", data={"csrf": csrf_of(page.text)}).headers["location"] == "/keys"
    page = w.admin_browser.get("/keys")
    assert 'id="rotate"' in page.text and 'id="rotation-prepared"' not in page.text
    assert w.admin_browser.post("/keys/start", data={"csrf": csrf_of(page.text), "stored": "1"}).headers["location"] == "/keys"
    assert await current_key_id(w) == old_id
    async with sm() as session:
        assert await session.scalar(select(func.count()).select_from(KeyRotation)) == 0


async def test_only_admins_and_the_removal_notice(world):
    w = world
    carla = await invite(w, "carla", "caseworker")
    vera = await invite(w, "vera", "volunteer")
    for browser in (carla, vera):
        assert browser.get("/keys").status_code == 403
        csrf = csrf_of(browser.get("/awareness" if browser is vera else "/cases").text)
        for action in ("resume", "start", "cancel", "recovery-file"):
            assert browser.post(f"/keys/{action}", data={"csrf": csrf, "stored": "1"}).status_code == 403
        answer = browser.post("/keys/rotate", data={"csrf": csrf, "passphrase": PASSPHRASE, "new_passphrase": NEW_PASSPHRASE,
                                                     "new_passphrase_again": NEW_PASSPHRASE, "confirm": "1"},
                              files={"recovery_file": ("r.key", w.recovery, "application/octet-stream")})
        assert answer.status_code == 403
    assert await current_key_id(w) == w.public.key_id
    # The menu shows the page to admins only.
    assert 'href="/keys"' in w.admin_browser.get("/users").text
    assert 'href="/keys"' not in carla.get("/cases").text

    page = w.admin_browser.get("/users")
    user_id = re.search(r'id="member-vera".*?action="/users/([0-9a-f]{32})/remove"', page.text, re.S).group(1)
    removed = w.admin_browser.post(f"/users/{user_id}/remove", data={"csrf": csrf_of(page.text)})
    assert removed.status_code == 303 and removed.headers["location"] == f"/users?done=removed&member={user_id}"
    notice = w.admin_browser.get(removed.headers["location"]).text
    assert re.search(r'class="notice warn".*?rotation.*?<a href="/keys" id="rotate-after-removal">', notice, re.S)


async def test_resume_an_interrupted_rotation(world):
    w = world
    texts = await store_reports(w)
    omar = await invite(w, "omar", "admin")
    sm = w.console.sessionmaker
    old_key, signing = open_team_recovery(w.recovery, PASSPHRASE, KDF_TESTING)
    new_key = TeamPrivateKey.generate()
    # Started elsewhere (a console that stopped right after step 1).
    await start_rotation(sm, old_key, signing, new_key, TeamSigningKey.generate(),
                         console_secret=w.console.console_secret, generation=0, actor_id=None, now=w.clock())
    # Omar's old grant is gone (say, granted again after the start): he cannot resume.
    async with sm.begin() as session:
        omar_id = await session.scalar(select(StaffUser.id).where(StaffUser.username == "omar"))
        await session.execute(delete(TeamKeyGrant).where(TeamKeyGrant.user_id == omar_id, TeamKeyGrant.team_key_id == old_key.key_id))

    page = omar.get("/keys")
    assert 'id="rotation-progress"' in page.text and 'action="/keys/resume"' in page.text
    assert 'id="rotate"' not in page.text and 'http-equiv="refresh"' not in page.text
    assert 'id="rekey-count">0 / 4<' in page.text
    refused = omar.post("/keys/resume", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 400 and "does not hold the old team key" in refused.text
    # A new rotation is refused while this one is unfinished (nothing opened or changed).
    blocked = rotate_form(w, w.recovery)
    assert blocked.status_code == 400 and "already under way" in blocked.text

    # The first admin's session follows both grants (no new sign-in) and resumes. The
    # database's write lock is held a moment so that the page is seen while the run waits.
    lock = write_lock_for(w.console.engine)
    portal = w.admin_browser.portal
    portal.call(lock.acquire)
    try:
        page = w.admin_browser.get("/keys")
        assert held_key_ids(w, w.admin_browser) == {old_key.key_id, new_key.key_id}
        resumed = w.admin_browser.post("/keys/resume", data={"csrf": csrf_of(page.text)})
        assert resumed.status_code == 303 and resumed.headers["location"] == "/keys?resumed=1"
        running = w.admin_browser.get("/keys?resumed=1")
        assert '<meta http-equiv="refresh" content="5">' in running.text
        assert "A rotation is running" in running.text and 'action="/keys/resume"' not in running.text
        # One run at a time: resuming again only shows the page.
        assert w.admin_browser.post("/keys/resume", data={"csrf": csrf_of(running.text)}).headers["location"] == "/keys"
    finally:
        portal.call(lock.release)
    state = await wait_until_finished(w)
    assert state.new_key_id == new_key.key_id
    async with sm() as session:
        assert set((await session.scalars(select(Report.team_key_id))).all()) == {new_key.key_id}
        assert set((await session.scalars(select(TeamKeyGrant.team_key_id))).all()) == {new_key.key_id}
    for designation, text in texts.items():
        assert text in w.admin_browser.get(f"/cases/{designation}").text
    assert held_key_ids(w, w.admin_browser) == {new_key.key_id}
    done = w.admin_browser.get("/keys")
    assert 'http-equiv="refresh"' not in done.text and f'id="current-key-id">{new_key.key_id}<' in done.text
    after = w.admin_browser.post("/keys/resume", data={"csrf": csrf_of(done.text)})
    assert after.status_code == 400 and "no unfinished rotation" in after.text


async def test_housekeeping_resumes_a_rotation_a_restart_cut_short(world):
    from nazaha.admin.routes.keys import resume_if_interrupted

    w = world
    texts = await store_reports(w)
    old_key, signing = open_team_recovery(w.recovery, PASSPHRASE, KDF_TESTING)
    new_key = TeamPrivateKey.generate()
    async with w.console.sessionmaker() as session:
        admin_id = await session.scalar(select(StaffUser.id).where(StaffUser.username == "admin"))
    # Started from this console's page (a rotation the command started is the command's to resume).
    await start_rotation(w.console.sessionmaker, old_key, signing, new_key, TeamSigningKey.generate(),
                         console_secret=w.console.console_secret, generation=0, actor_id=admin_id, now=w.clock())
    # Nobody signed in holds the old key: nothing to resume with.
    w.console.sessions.close_all()
    # In the app's own event loop, as its housekeeping runs (the run is a task there).
    portal = w.admin_browser.portal
    assert not portal.call(resume_if_interrupted, w.console)
    # The admin signs in again: the session opens both grants, and housekeeping resumes.
    w.clock.advance(seconds=60)
    fresh = w.browser()
    assert login(fresh, "admin", STAFF_PASSWORD, totp_code(w.admin.totp_secret, w.clock)).status_code == 303
    assert held_key_ids(w, fresh) == {old_key.key_id, new_key.key_id}
    assert portal.call(resume_if_interrupted, w.console)
    assert not portal.call(resume_if_interrupted, w.console)  # one run at a time
    state = await wait_until_finished(w)
    assert state.new_key_id == new_key.key_id
    for designation in texts:
        assert fresh.get(f"/cases/{designation}").status_code == 200
    assert held_key_ids(w, fresh) == {new_key.key_id}
