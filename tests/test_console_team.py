"""The Team page and the people on a case, over HTTP (from a new administrator's trial):
each action names whom it changed; a new one-time link is shown once after a redirect and
never put in an address; a member waiting for the team key is not told to sign in again; a
removed member is named as such wherever their cases still carry their name, and their
cases can be listed to reassign them; nobody shares a case with, or recuses, themself; the
assignment form starts from the current assignee."""

from __future__ import annotations

import re

from sqlalchemy import func, select, update

from nazaha.storage.console_models import AuditEntry, CaseRecusal, CaseShare, CaseState, StaffUser
from tests.casework_support import make_case
from tests.console_support import csrf_of, enrol
from tests.test_console_cases import invite, world  # noqa: F401 - the fixture

LINK = re.compile(r'id="invitation-link">([^<]+)<')


def english(browser, page: str) -> None:
    answer = browser.post("/locale", data={"csrf": csrf_of(browser.get(page).text), "locale": "en", "back": "/"})
    assert answer.status_code == 303


def notice(html: str) -> str:
    found = re.search(r'<(p|div) class="notice[^"]*" role="status" id="done-notice">(.*?)</\1>', html, re.S)
    assert found, "no notice"
    return found.group(2)


def select_options(html: str, action: str) -> list[tuple[str, bool, str]]:
    """(value, selected, text) of the select in the form posting to ``action``."""
    form = re.search(rf'action="{re.escape(action)}".*?</select>', html, re.S)
    assert form, f"no form for {action}"
    return [(v, bool(s.strip()), t) for v, s, t in re.findall(r'<option value="([^"]*)"\s*(selected)?\s*>([^<]*)</option>', form.group(0))]


async def user_id_of(w, username: str) -> str:
    async with w.console.sessionmaker() as session:
        return await session.scalar(select(StaffUser.id).where(StaffUser.username == username))


async def test_a_refused_invitation_keeps_the_name_and_role_typed_and_says_user_names_are_latin(world):
    """The trial typed an Arabic user name: it was refused (user names are Latin: typed at
    sign-in), and the form came back empty with the role reset to Caseworker."""
    w = world
    admin = w.admin_browser
    english(admin, "/users")
    page = admin.get("/users").text
    assert "no Arabic letters" in page and 'aria-describedby="username-hint"' in page
    refused = admin.post("/users/invite", data={"csrf": csrf_of(page), "username": "هدى <b>", "role": "admin"})
    assert refused.status_code == 400
    card = refused.text[refused.text.index("Invite someone"):]
    assert 'id="invite-error"' in card and "Latin letters" in card
    # What was typed comes back, escaped; the role chosen stays chosen.
    assert re.search(r'<input name="username"[^>]* value="هدى &lt;b&gt;"[^>]* aria-invalid="true"', card)
    assert re.findall(r'<option value="([a-z]+)" selected>', card) == ["admin"]
    async with w.console.sessionmaker() as session:
        assert await session.scalar(select(StaffUser.id).where(StaffUser.role == "admin", StaffUser.state == "invited")) is None
    # The same form, corrected, invites.
    invited = admin.post("/users/invite", data={"csrf": csrf_of(refused.text), "username": "huda", "role": "admin"})
    assert invited.status_code == 303 and invited.headers["location"] == "/users"


async def test_team_actions_name_the_member_and_links_show_once_after_a_redirect(world):
    w = world
    admin = w.admin_browser
    english(admin, "/users")
    await make_case(w.console.sessionmaker, w.public, designation="R-TEAM22")

    # Invite: a redirect (a refresh re-sends nothing), the link on the next page only.
    invited = admin.post("/users/invite", data={"csrf": csrf_of(admin.get("/users").text), "username": "huda", "role": "caseworker"})
    assert invited.status_code == 303 and invited.headers["location"] == "/users"
    page = admin.get("/users").text
    link = LINK.search(page).group(1)
    token = link.rsplit("/", 1)[1]
    assert "<bdi>huda</bdi> is invited." in page
    again = admin.get("/users").text
    assert LINK.search(again) is None and token not in again and "is invited" not in again
    # A refused invitation is answered on the page, the form keeping what was typed and chosen.
    refused = admin.post("/users/invite", data={"csrf": csrf_of(again), "username": "huda", "role": "volunteer"})
    assert refused.status_code == 400 and "This user name is taken." in refused.text
    assert re.search(r'<input name="username"[^>]* value="huda"', refused.text)
    assert re.search(r'<option value="volunteer" selected>', refused.text)

    # Enrolled, not granted yet: the case page says to ask, not to sign in again.
    huda = w.browser()
    enrol(huda, link, w.clock)
    english(huda, "/cases")
    waiting = huda.get("/cases/R-TEAM22")
    assert waiting.status_code == 409
    assert "sign in again" not in waiting.text.replace("no need to sign in again", "")
    assert "reload this page: there is no need to sign in again" in waiting.text

    # Grant: the notice names the member, escaped.
    huda_id = await user_id_of(w, "huda")
    async with w.console.sessionmaker.begin() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == huda_id).values(username="huda<i>x</i>"))
    granted = admin.post(f"/users/{huda_id}/grant", data={"csrf": csrf_of(again)})
    assert granted.status_code == 303 and granted.headers["location"] == f"/users?done=granted&member={huda_id}"
    page = admin.get(granted.headers["location"]).text
    assert notice(page).startswith("<bdi>huda&lt;i&gt;x&lt;/i&gt;</bdi> now holds the team key and can open reports")
    assert "<i>x</i>" not in page
    async with w.console.sessionmaker.begin() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == huda_id).values(username="huda"))
    # ... and the same browser opens the case at its next request.
    assert huda.get("/cases/R-TEAM22").status_code == 200

    # The export right, given and taken back.
    allowed = admin.post(f"/users/{huda_id}/export", data={"csrf": csrf_of(page), "export": "1"})
    assert allowed.headers["location"] == f"/users?done=export_allowed&member={huda_id}"
    assert notice(admin.get(allowed.headers["location"]).text) == "<bdi>huda</bdi> may now export the inbox."
    stopped = admin.post(f"/users/{huda_id}/export", data={"csrf": csrf_of(page), "export": "0"})
    assert stopped.headers["location"] == f"/users?done=export_stopped&member={huda_id}"
    assert notice(admin.get(stopped.headers["location"]).text) == "<bdi>huda</bdi> may no longer export the inbox."
    # A made-up member id names nobody.
    assert 'id="done-notice"' not in admin.get("/users?done=granted&member=" + "0" * 32).text

    # Reset: a redirect too; the new link shown once, naming whose account it is.
    reset = admin.post(f"/users/{huda_id}/reset", data={"csrf": csrf_of(page)})
    assert reset.status_code == 303 and reset.headers["location"] == "/users"
    page = admin.get("/users").text
    new_link = LINK.search(page).group(1)
    assert new_link != link and "The account of <bdi>huda</bdi> was reset" in page
    assert LINK.search(admin.get("/users").text) is None
    # The links never reached an address or the audit log.
    async with w.console.sessionmaker() as session:
        details = " ".join(str(d) for d in (await session.scalars(select(AuditEntry.detail))).all())
    assert token not in details and new_link.rsplit("/", 1)[1] not in details


async def test_a_removed_assignee_is_named_and_their_cases_can_be_found_and_reassigned(world):
    w = world
    admin = w.admin_browser
    sm = w.console.sessionmaker
    for designation in ("R-GONE22", "R-GONE33", "R-STAY22"):
        await make_case(sm, w.public, designation=designation)
    huda = await invite(w, "huda", "caseworker")
    huda_id = await user_id_of(w, "huda")
    english(admin, "/users")
    page = admin.get("/cases/R-GONE22").text
    for designation in ("R-GONE22", "R-GONE33"):
        assert admin.post(f"/cases/{designation}/assign", data={"csrf": csrf_of(page), "assignee": huda_id}).status_code == 303
    # The assignment form starts from the current assignee.
    assert [(v, t) for v, selected, t in select_options(admin.get("/cases/R-GONE22").text, "/cases/R-GONE22/assign") if selected] == [(huda_id, "huda")]
    assert huda.post("/cases/R-GONE22/note", data={"csrf": csrf_of(huda.get("/cases/R-GONE22").text), "body": "met the clerk"}).status_code == 303

    removed = admin.post(f"/users/{huda_id}/remove", data={"csrf": csrf_of(admin.get("/users").text)})
    assert removed.headers["location"] == f"/users?done=removed&member={huda_id}"
    team = admin.get(removed.headers["location"]).text
    said = notice(team)
    assert "<bdi>huda</bdi> was removed" in said
    assert "2 cases are still assigned to them: reassign them to someone else." in said
    assert f'<a href="/cases?assignee={huda_id}" id="removed-cases">List the cases of <bdi>huda</bdi></a>' in said
    assert 'id="rotate-after-removal"' in said

    # The case page names her, marked removed: as the assignee and as a note's author.
    case = admin.get("/cases/R-GONE22").text
    assert re.search(r'<p id="assignee"><span class="removed-member"><bdi>huda</bdi> \(removed\)</span></p>', case)
    assert re.search(r'<li class="note"><span class="meta"><span class="removed-member"><bdi>huda</bdi> \(removed\)</span>', case)
    assert "<bdi>?</bdi>" not in case
    # The assignment form keeps her selected (not "Nobody"); sending it unchanged changes nothing.
    assert [(v, t) for v, selected, t in select_options(case, "/cases/R-GONE22/assign") if selected] == [(huda_id, "huda (removed)")]
    assert admin.post("/cases/R-GONE22/assign", data={"csrf": csrf_of(case), "assignee": huda_id}).headers["location"] == "/cases/R-GONE22?done=1"
    async with sm() as session:
        assert set((await session.scalars(select(CaseState.assignee_id).where(CaseState.assignee_id.is_not(None)))).all()) == {huda_id}

    # The inbox names her so, and its Assignee filter offers her to list her cases.
    inbox = admin.get("/cases").text
    row = re.search(r"R-GONE22</bdi></a></td>.*?</tr>", inbox, re.S).group(0)
    assert '<span class="removed-member"><bdi>huda</bdi> (removed)</span>' in row
    filter_form = re.search(r'<form method="get" action="/cases".*?</form>', inbox, re.S).group(0)
    assert re.search(rf'<option value="{huda_id}"\s*>huda \(removed\)</option>', filter_form)
    hers = admin.get("/cases", params={"assignee": huda_id}).text
    assert "R-GONE22" in hers and "R-GONE33" in hers and "R-STAY22" not in hers
    assert re.search(rf'<option value="{huda_id}"\s*selected\s*>huda \(removed\)</option>', hers)

    # Reassigned (in bulk, from that list): the Team page counts nothing more to do.
    me = await user_id_of(w, "admin")
    moved = admin.post("/cases/bulk", data={"csrf": csrf_of(hers), "action": "assign", "assignee": me, "case": ["R-GONE22", "R-GONE33"]})
    assert "skipped=0" in moved.headers["location"]
    team = admin.get(f"/users?done=removed&member={huda_id}").text
    assert "<bdi>huda</bdi> was removed" in team and 'id="removed-cases"' not in team
    # The filter on her still names her while it is applied, and no longer offers her otherwise.
    assert re.search(rf'<option value="{huda_id}"\s*selected\s*>huda \(removed\)</option>', admin.get("/cases", params={"assignee": huda_id}).text)
    assert huda_id not in re.search(r'<form method="get" action="/cases".*?</form>', admin.get("/cases").text, re.S).group(0)


async def test_nobody_shares_a_case_with_or_recuses_themself(world):
    w = world
    admin = w.admin_browser
    sm = w.console.sessionmaker
    rid, _ = await make_case(sm, w.public, designation="R-SELF22")
    huda = await invite(w, "huda", "caseworker")
    await invite(w, "omar", "caseworker")
    admin_id, huda_id, omar_id = [await user_id_of(w, name) for name in ("admin", "huda", "omar")]

    page = admin.get("/cases/R-SELF22").text
    assert [v for v, _, _ in select_options(page, "/cases/R-SELF22/share")] == [huda_id, omar_id]
    assert [v for v, _, _ in select_options(page, "/cases/R-SELF22/recuse")] == [huda_id, omar_id]
    csrf = csrf_of(page)
    # Refused on the server too.
    for action in ("share", "recuse"):
        answer = admin.post(f"/cases/R-SELF22/{action}", data={"csrf": csrf, "user": admin_id})
        assert answer.headers["location"] == "/cases/R-SELF22?error=invalid"
    assert admin.post("/cases/R-SELF22/assign", data={"csrf": csrf, "assignee": huda_id}).status_code == 303

    # The assignee shares with others only.
    page = huda.get("/cases/R-SELF22").text
    assert [v for v, _, _ in select_options(page, "/cases/R-SELF22/share")] == [omar_id]
    answer = huda.post("/cases/R-SELF22/share", data={"csrf": csrf_of(page), "user": huda_id})
    assert answer.headers["location"] == "/cases/R-SELF22?error=invalid"
    assert huda.post("/cases/R-SELF22/share", data={"csrf": csrf_of(page), "user": omar_id}).status_code == 303
    assert 'action="/cases/R-SELF22/share"' not in huda.get("/cases/R-SELF22").text  # nobody left to add
    # An admin's recusal list leaves out whoever is recused already.
    assert admin.post("/cases/R-SELF22/recuse", data={"csrf": csrf, "user": omar_id}).status_code == 303
    assert [v for v, _, _ in select_options(admin.get("/cases/R-SELF22").text, "/cases/R-SELF22/recuse")] == [huda_id]
    async with sm() as session:
        assert (await session.scalar(select(func.count()).select_from(CaseShare).where(CaseShare.user_id.in_([admin_id, huda_id])))) == 0
        assert (await session.scalars(select(CaseRecusal.user_id).where(CaseRecusal.report_id == rid))).all() == [omar_id]
