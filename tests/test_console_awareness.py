"""The awareness side of the console over HTTP: composing a broadcast, its preview (exactly
the text, entities and buttons the sender sends), submission, approval by a second person,
rejection with a note, tests to the member's own linked chat, pause/resume/cancel and
progress; the library; surveys and quiz results with small cells hidden; campaign links and
QR codes; image uploads re-encoded without metadata; and volunteers kept away from cases."""

from __future__ import annotations

import datetime as dt
import io
import os
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete, func, select, update

from nazaha.admin.app import console_routes, create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.awareness import staff_chats
from nazaha.awareness.broadcast_message import build_message
from nazaha.awareness.markup import preview_html
from nazaha.bot.setup import initialise
from nazaha.storage.awareness_models import (
    AwarenessItem,
    AwarenessItemText,
    AwarenessTopic,
    AwarenessTopicText,
    Broadcast,
    BroadcastImage,
    BroadcastOutbox,
    BroadcastTestSend,
    Campaign,
    CampaignDay,
    QuizCount,
    StaffChat,
    Subscriber,
    SubscriberTopic,
    Survey,
    SurveyAnswerMarker,
    SurveyCount,
    biased,
)
from nazaha.storage.console_models import AuditEntry, AwarenessMember, StaffUser
from nazaha.storage.crypto import BotKeyBox
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from tests.casework_support import make_case
from tests.console_support import PASSPHRASE, MovableClock, console_settings, csrf_of, enrol
from tests.test_console_cases import invite

BASE = "https://testserver"
BOT = "nazaha_test_bot"
TODAY = dt.date(2026, 11, 30)


@pytest.fixture
async def world(tmp_path):
    settings = console_settings(tmp_path / "var", bot_username=BOT, publication_chat_ids=[-1001234567890])
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    clients: list[TestClient] = []

    def browser() -> TestClient:
        client = TestClient(app, base_url=BASE, follow_redirects=False, headers={"Accept-Language": "en"})
        client.__enter__()
        clients.append(client)
        return client

    admin_browser = browser()
    enrol(admin_browser, link, clock, team_passphrase=PASSPHRASE)
    english(admin_browser)

    class World:
        pass

    w = World()
    w.settings, w.clock, w.app, w.console = settings, clock, app, app.state.console
    w.sm = w.console.sessionmaker
    w.browser, w.admin_browser = browser, admin_browser
    await seed_topics(w.sm)
    yield w
    for client in clients:
        client.__exit__(None, None, None)


def english(browser: TestClient) -> None:
    page = browser.get("/awareness")
    answer = browser.post("/locale", data={"csrf": csrf_of(page.text), "locale": "en", "back": "/awareness"})
    assert answer.status_code == 303


async def member(w, username: str, role: str) -> TestClient:
    client = await invite(w, username, role)
    english(client)
    return client


async def seed_topics(sm) -> None:
    """The topics the tests use (`nazaha init` has loaded the content files' already)."""
    async with sm.begin() as session:
        for position, (code, en, ar) in enumerate((("forms", "Forms of corruption", "أشكال الفساد"),
                                                   ("rights", "Your rights", "حقوقك"))):
            if await session.get(AwarenessTopic, code) is not None:
                continue
            session.add(AwarenessTopic(code=code, position=position, origin="file"))
            await session.flush()
            session.add(AwarenessTopicText(topic=code, language="en", title=en, summary=""))
            session.add(AwarenessTopicText(topic=code, language="ar", title=ar, summary=""))


async def number_of(w, username: str) -> int | None:
    async with w.sm() as session:
        return await session.scalar(
            select(AwarenessMember.number).join(StaffUser, StaffUser.id == AwarenessMember.user_id)
            .where(StaffUser.username == username)
        )


async def broadcast_row(w, broadcast_id: int) -> Broadcast:
    async with w.sm() as session:
        return await session.get(Broadcast, broadcast_id)


def compose(client: TestClient, *, files=None, **fields) -> int:
    """Post the compose form; the id of the broadcast it redirects to."""
    page = client.get("/awareness/broadcasts/new")
    assert page.status_code == 200
    data = {"csrf": csrf_of(page.text), "name": "Weekly", "language": ["ar", "en"],
            "body_ar": "نص عربي", "body_en": "English text", **fields}
    answer = client.post("/awareness/broadcasts", data=data, files=files)
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/awareness/broadcasts/(\d+)", answer.headers["location"])
    assert found, answer.headers["location"]
    return int(found.group(1))


def revision_of(html: str) -> str | None:
    """The revision the page's approve and reject forms carry (None: no such form)."""
    found = set(re.findall(r'<input type="hidden" name="revision" value="([^"]*)">', html))
    assert len(found) <= 1, found
    return found.pop() if found else None


def act(client: TestClient, broadcast_id: int, action: str, **fields):
    """Post ``action`` as the broadcast page does, with the revision its forms carry."""
    page = client.get(f"/awareness/broadcasts/{broadcast_id}")
    data = {"csrf": csrf_of(page.text), **fields}
    if action in ("approve", "reject") and "revision" not in data and revision_of(page.text):
        data["revision"] = revision_of(page.text)
    return client.post(f"/awareness/broadcasts/{broadcast_id}/{action}", data=data)


def open_survey_via_http(client: TestClient, *, en=("Would you report corruption?", "Yes\nNo\nNot sure"),
                         ar=("هل تبلغ عن الفساد؟", "نعم\nلا\nلست متأكدًا")) -> int:
    page = client.get("/awareness/surveys/new")
    answer = client.post("/awareness/surveys", data={
        "csrf": csrf_of(page.text), "question_en": en[0], "options_en": en[1],
        "question_ar": ar[0], "options_ar": ar[1], "closes_on": "2026-12-31",
    })
    assert answer.status_code == 303, answer.text
    survey_id = int(re.search(r"/awareness/surveys/(\d+)", answer.headers["location"]).group(1))
    page = client.get(f"/awareness/surveys/{survey_id}")
    opened = client.post(f"/awareness/surveys/{survey_id}/open", data={"csrf": csrf_of(page.text)})
    assert opened.headers["location"].endswith("done=open"), opened.headers["location"]
    return survey_id


def bubble_text(html: str, language: str) -> str:
    found = re.search(rf'<article class="card preview" id="preview-{language}">.*?<div class="tg-text">(.*?)</div>', html, re.S)
    assert found, f"no preview of {language}"
    return found.group(1)


def buttons_of(html: str, language: str) -> list[str]:
    found = re.search(rf'id="preview-{language}">(.*?)</article>', html, re.S)
    assert found
    return re.findall(r'<span class="tg-button">([^<]*)</span>', found.group(1))


# ------------------------------------------------------------------------ the broadcast flow


async def test_compose_preview_submit_and_only_a_second_person_approves(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    survey_id = open_survey_via_http(vera)
    body_en = "**Know** your *rights*: see [AMAN](https://www.aman-palestine.org) & ask <why>."
    body_ar = "**اعرف** حقوقك: [أمان](https://www.aman-palestine.org)"
    broadcast_id = compose(
        vera, name="Rights week", body_en=body_en, body_ar=body_ar, topic=["rights"], to_channel="1",
        survey=str(survey_id), send_date="2026-12-02", send_time="18:30",
    )
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}")
    assert page.status_code == 200
    # The preview is build_message's text, entities and buttons, exactly.
    expected_en = build_message(body_en, "en", survey_code=(await survey_code(w, survey_id)), survey_options=("Yes", "No", "Not sure"))
    assert bubble_text(page.text, "en") == preview_html(expected_en.formatted)
    assert bubble_text(page.text, "en").startswith("<b>Know</b> your <i>rights</i>: see "
                                                   '<a href="https://www.aman-palestine.org" rel="noopener noreferrer nofollow">AMAN</a>'
                                                   " &amp; ask &lt;why&gt;.")
    assert buttons_of(page.text, "en") == [label for row in expected_en.buttons for label, _ in row] == ["Yes", "No", "Not sure", "Unsubscribe"]
    assert buttons_of(page.text, "ar")[:3] == ["نعم", "لا", "لست متأكدًا"]
    assert re.search(r'id="preview-ar">\s*<h3>[^<]*</h3>\s*<div class="tg-chat" lang="ar" dir="rtl">', page.text)
    assert f"{expected_en.formatted.length} / 4096" in page.text
    # Stored in UTC: 18:30 in Palestine on 2 December (winter time, UTC+2) is 16:30 UTC.
    row = await broadcast_row(w, broadcast_id)
    assert row.send_at == dt.datetime(2026, 12, 2, 16, 30, tzinfo=dt.timezone.utc)
    assert (row.status, row.topics, row.languages, row.to_channel) == ("draft", "rights", "ar,en", True)
    assert "2026-12-02 18:30" in page.text

    # Submit; the volunteer cannot approve (not an admin).
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    assert (await broadcast_row(w, broadcast_id)).status == "submitted"
    assert act(vera, broadcast_id, "approve").status_code == 403
    assert 'id="approve-button"' not in vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    # Not editable while waiting.
    assert "error=not_editable" in vera.get(f"/awareness/broadcasts/{broadcast_id}/edit").headers["location"]

    # An admin's own broadcast needs another admin.
    admin = w.admin_browser
    own = compose(admin, name="Admin's own")
    assert act(admin, own, "submit").status_code == 303
    refused = act(admin, own, "approve")
    assert refused.headers["location"].endswith("error=own_broadcast")
    assert (await broadcast_row(w, own)).status == "submitted"
    assert "another administrator must approve it" in admin.get(refused.headers["location"]).text

    # The admin approves the volunteer's broadcast.
    listing = admin.get("/awareness/broadcasts").text
    assert f'id="broadcast-{broadcast_id}"' in listing and f'id="broadcast-{own}"' in listing
    assert act(admin, broadcast_id, "approve").headers["location"].endswith("done=approved")
    row = await broadcast_row(w, broadcast_id)
    assert row.status == "approved" and row.approved_by == await number_of(w, "admin") != row.author_id
    assert row.approved_at == w.clock()
    seen = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert re.search(r'id="broadcast-status">Approved, scheduled<', seen)
    # A second admin approves the first admin's.
    omar = await member(w, "omar", "admin")
    assert act(omar, own, "approve").headers["location"].endswith("done=approved")
    assert (await broadcast_row(w, own)).status == "approved"

    # The volunteer's list shows only her own.
    mine = vera.get("/awareness/broadcasts").text
    assert f'id="broadcast-{broadcast_id}"' in mine and f'id="broadcast-{own}"' not in mine
    assert vera.get(f"/awareness/broadcasts/{own}").status_code == 404

    # Audited, content-free.
    async with w.sm() as session:
        entries = (await session.execute(select(AuditEntry.action, AuditEntry.detail))).all()
    actions = [a for a, _ in entries]
    for action in ("broadcast_change", "broadcast_submit", "broadcast_approve", "survey_change"):
        assert action in actions
    details = " ".join(d for _, d in entries)
    assert f'"broadcast":{broadcast_id}' in details
    assert "Know" not in details and "Rights week" not in details and "AMAN" not in details


def test_schedules_are_palestine_time_with_its_summer_time():
    from nazaha.awareness.schedule import ScheduleError, palestine_parts, parse_send_at

    summer = parse_send_at("2026-07-01", "12:00")
    winter = parse_send_at("2026-01-15", "12:00")
    assert summer == dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.timezone.utc)  # UTC+3
    assert winter == dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)  # UTC+2
    assert palestine_parts(summer) == ("2026-07-01", "12:00")
    assert parse_send_at("", "") is None
    for date, time in (("2026-07-01", ""), ("", "12:00"), ("tomorrow", "noon")):
        with pytest.raises(ScheduleError):
            parse_send_at(date, time)


async def survey_code(w, survey_id: int) -> str:
    async with w.sm() as session:
        return (await session.get(Survey, survey_id)).code


async def test_reject_with_a_note_the_author_reads_then_edits_and_submits_again(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    soon = w.clock() + dt.timedelta(hours=2, minutes=10)  # Palestine time in winter is UTC+2: ten minutes ahead
    broadcast_id = compose(vera, name="Draft <b>one</b>", send_date=soon.strftime("%Y-%m-%d"), send_time=soon.strftime("%H:%M"))
    assert act(vera, broadcast_id, "submit").status_code == 303
    admin = w.admin_browser
    assert 'id="send-at-past"' not in admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    w.clock.advance(minutes=20)  # (less than the console's idle timeout)
    assert 'id="send-at-past"' in admin.get(f"/awareness/broadcasts/{broadcast_id}").text  # approved now: sent at once
    assert act(admin, broadcast_id, "reject", note="  ").headers["location"].endswith("error=note")
    note = "Cite the law <script>alert(1)</script> please"
    assert act(admin, broadcast_id, "reject", note=note).headers["location"].endswith("done=rejected")
    row = await broadcast_row(w, broadcast_id)
    assert row.status == "rejected" and row.review_note == note
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert "Cite the law &lt;script&gt;alert(1)&lt;/script&gt; please" in page and "<script>alert" not in page
    assert "Sent back" in page and "Draft &lt;b&gt;one&lt;/b&gt;" in page
    # The author edits (the note shows on the form) and submits again.
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    assert form.status_code == 200 and "Cite the law &lt;script&gt;" in form.text
    saved = vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Draft two", "language": ["en"], "body_en": "Better, with the law.",
    })
    assert saved.status_code == 303
    row = await broadcast_row(w, broadcast_id)
    assert (row.name, row.languages, row.status) == ("Draft two", "en", "rejected")
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    # Withdrawn back to a draft by its author.
    assert act(vera, broadcast_id, "withdraw").headers["location"].endswith("done=withdrawn")
    assert (await broadcast_row(w, broadcast_id)).status == "draft"


def palestine(moment: dt.datetime) -> dict[str, str]:
    """The date and time fields of ``moment`` (UTC) in Palestine's winter time (UTC+2)."""
    local = moment + dt.timedelta(hours=2)
    return {"send_date": local.strftime("%Y-%m-%d"), "send_time": local.strftime("%H:%M")}


async def test_an_approval_applies_only_to_the_content_the_admin_read(world):
    """The trial: the author took her broadcast back, changed it and submitted it again while
    the administrator's page was open; the administrator's Approve approved a text they had
    never seen. Now the forms carry the revision they showed, and a changed one is refused."""
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, name="Meeting", body_en="Meet us on Monday.", body_ar="نلتقي يوم الاثنين.")
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    admin = w.admin_browser
    opened = admin.get(f"/awareness/broadcasts/{broadcast_id}").text  # the administrator reads Monday
    read = revision_of(opened)
    assert read and re.fullmatch(r"[0-9a-f]{64}", read) and "Meet us on Monday." in opened
    assert len(re.findall(rf'name="revision" value="{read}"', opened)) == 2  # approve and send back
    # Meanwhile the author takes it back, changes it and submits it again.
    assert act(vera, broadcast_id, "withdraw").headers["location"].endswith("done=withdrawn")
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    saved = vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Meeting", "language": ["ar", "en"],
        "body_en": "Meet us on Tuesday.", "body_ar": "نلتقي يوم الثلاثاء.",
    })
    assert saved.status_code == 303
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    # The administrator's Approve, from the page read before: refused, nothing approved.
    token = csrf_of(opened)
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": token, "revision": read})
    assert answer.headers["location"].endswith("error=changed")
    shown = admin.get(answer.headers["location"]).text
    assert "This broadcast changed since you opened it; review it again." in shown
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/reject", data={"csrf": token, "revision": read, "note": "Fine"})
    assert answer.headers["location"].endswith("error=changed")
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": token})  # no revision at all
    assert answer.headers["location"].endswith("error=changed")
    row = await broadcast_row(w, broadcast_id)
    assert (row.status, row.approved_by) == ("submitted", None)
    # Reviewed again (the page shows Tuesday and its new revision): approved.
    assert "Meet us on Tuesday." in shown and revision_of(shown) not in (None, read)
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": token, "revision": revision_of(shown)})
    assert answer.headers["location"].endswith("done=approved")
    assert (await broadcast_row(w, broadcast_id)).status == "approved"


def links_listed(html: str, list_id: str) -> list[str]:
    """The addresses a link list shows (its text, tags removed), in order."""
    found = re.search(rf'<ul class="links" id="{list_id}">(.*?)</ul>', html, re.S)
    assert found, list_id
    return [re.sub(r"<[^>]+>", "", a) for a in re.findall(r'<bdi dir="ltr" class="address">(.*?)</bdi>', found.group(1))]


async def test_the_reviewer_sees_where_every_link_leads_and_what_changed(world):
    """The trial: a volunteer took her submitted broadcast back, changed only a link's address
    to https://evil.example.com/login and submitted it again; the preview shows only a
    link's words, so the administrator's reloaded page looked the same. Now the review card
    and each preview list every link with its whole address (the host in bold), and the
    refusal says what changed."""
    w = world
    vera = await member(w, "vera", "volunteer")
    body_en = "Report it: [the coalition site](https://www.aman-palestine.org/report) or [<b>us</b>](http://e.org)."
    body_ar = "بلّغ: [موقع الائتلاف](https://www.aman-palestine.org/ar/report)"
    broadcast_id = compose(vera, name="Links", body_en=body_en, body_ar=body_ar)
    # The author sees them under the preview too.
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert links_listed(page, "links-en") == ["https://www.aman-palestine.org/report", "http://e.org"]
    assert 'id="review-links"' not in page  # not a reviewer
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    admin = w.admin_browser
    opened = admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    review = re.search(r'<section class="card" id="review">.*?</section>', opened, re.S).group(0)
    assert links_listed(review, "review-links-en") == ["https://www.aman-palestine.org/report", "http://e.org"]
    assert links_listed(review, "review-links-ar") == ["https://www.aman-palestine.org/ar/report"]
    # The host in bold; the address left to right inside Arabic; the words escaped, as text.
    assert ('<bdi dir="ltr" class="address">https://<strong class="host">www.aman-palestine.org</strong>/ar/report</bdi>'
            in review)
    assert "<bdi>&lt;b&gt;us&lt;/b&gt;</bdi>" in review and "<b>us</b>" not in review.replace("<bdi><b>us</b>", "")
    assert links_listed(opened, "links-ar") == ["https://www.aman-palestine.org/ar/report"]  # beside the preview

    # Meanwhile the author changes only the address of a link, and submits it again.
    assert act(vera, broadcast_id, "withdraw").headers["location"].endswith("done=withdrawn")
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    evil = body_en.replace("https://www.aman-palestine.org/report", "https://evil.example.com/login")
    assert vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Links", "language": ["ar", "en"], "body_en": evil, "body_ar": body_ar,
    }).status_code == 303
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    parts = re.search(r'name="parts" value="([^"]*)"', opened).group(1)
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve",
                        data={"csrf": csrf_of(opened), "revision": revision_of(opened), "parts": parts})
    assert answer.headers["location"] == f"/awareness/broadcasts/{broadcast_id}?error=changed&changed=links_en"
    shown = admin.get(answer.headers["location"]).text
    said = re.sub(r"\s+", " ", re.search(r'id="action-error">(.*?)</p>', shown, re.S).group(1))
    assert "This broadcast changed since you opened it; review it again." in said
    assert "What changed: the links of the English text (their words or where they lead)." in said
    # The reloaded page, which looked identical before, now shows where the link leads.
    assert links_listed(shown, "review-links-en")[0] == "https://evil.example.com/login"
    assert '<strong class="host">evil.example.com</strong>' in shown
    assert act(vera, broadcast_id, "withdraw").status_code == 303  # (the author's own page is unaffected)
    # A send-back from the old page is refused the same way; the text and the time changed.
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Links", "language": ["ar", "en"], "body_en": body_en,
        "body_ar": "نص آخر", **palestine(w.clock() + dt.timedelta(days=1)),
    })
    act(vera, broadcast_id, "submit")
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/reject",
                        data={"csrf": csrf_of(opened), "revision": revision_of(opened), "parts": parts, "note": "No"})
    assert answer.headers["location"].endswith("error=changed&changed=text_ar.links_ar.time")
    said = admin.get(answer.headers["location"]).text
    assert re.search(r"What changed: the Arabic text, the links of the Arabic text \(their words or where they lead\), "
                     r"the time to send it\.", said)
    # Without parts (a page from before), or forged ones: the plain refusal, nothing else.
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": csrf_of(opened), "revision": revision_of(opened)})
    assert answer.headers["location"].endswith("?error=changed")
    forged = admin.get(f"/awareness/broadcasts/{broadcast_id}?error=changed&changed=text_en.<script>.image").text
    assert 'id="changed-parts"' in forged and "<script>" not in forged
    assert (await broadcast_row(w, broadcast_id)).status == "submitted"


async def test_addresses_that_hide_where_they_lead_are_shown_as_browsers_read_them(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    body = ("[aman](https://www.aman-palestine.org@evil.example.com/x) "
            "[aman](https://аman-palestine.org/) [aman](https://evil.example.com\\@www.aman-palestine.org)")
    broadcast_id = compose(vera, language=["en"], body_en=body)
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    hosts = re.findall(r'<strong class="host">([^<]*)</strong>', re.search(r'id="links-en">.*?</ul>', page, re.S).group(0))
    # The site opened is after the last "@" (what comes before is a user name browsers do not visit);
    # a lookalike letter (a Cyrillic "а") is in its xn-- form, and flagged.
    assert hosts == ["evil.example.com", "аman-palestine.org".encode("idna").decode(), "www.aman-palestine.org"]
    assert hosts[1].startswith("xn--")
    assert page.count('class="flag soon international"') == 1


async def test_a_review_of_a_broadcast_no_longer_waiting_says_why(world):
    """The trial: approving a broadcast its author had taken back said only "This cannot be
    done in the broadcast's present status"."""
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera)
    act(vera, broadcast_id, "submit")
    admin = w.admin_browser
    opened = admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    act(vera, broadcast_id, "withdraw")
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": csrf_of(opened), "revision": revision_of(opened)})
    assert answer.headers["location"].endswith("error=taken_back")
    assert ("Its author took it back to change it; it will come back for approval when resubmitted."
            in admin.get(answer.headers["location"]).text)
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/reject", data={"csrf": csrf_of(opened), "revision": revision_of(opened), "note": "x"})
    assert answer.headers["location"].endswith("error=taken_back")
    act(vera, broadcast_id, "submit")
    opened = admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert act(admin, broadcast_id, "approve").headers["location"].endswith("done=approved")
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/approve", data={"csrf": csrf_of(opened), "revision": revision_of(opened)})
    assert answer.headers["location"].endswith("error=already_approved")
    assert "It is already approved" in admin.get(answer.headers["location"]).text
    act(vera, broadcast_id, "cancel")
    answer = admin.post(f"/awareness/broadcasts/{broadcast_id}/reject", data={"csrf": csrf_of(opened), "revision": revision_of(opened), "note": "x"})
    assert answer.headers["location"].endswith("error=already_cancelled")


async def test_the_preview_warns_when_the_text_does_not_ask_the_survey_s_question(world):
    """The trial: citizens got Yes/No buttons without a question. The warning does not stop
    the broadcast (the text may ask it in other words)."""
    w = world
    vera = await member(w, "vera", "volunteer")
    survey_id = open_survey_via_http(vera, en=("Would you <report> corruption?", "Yes\nNo"), ar=("هل تبلغ عن الفساد؟", "نعم\nلا"))
    broadcast_id = compose(vera, survey=str(survey_id), body_en="Corruption costs us all.",
                           body_ar="الفساد يكلفنا جميعا.\n\n**هَلْ  تبلغ عن الفساد**؟")  # vowel marks, spaces, bold: still asked
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    notice = re.search(r'id="survey-question-en">(.*?)</p>', page, re.S).group(1)
    assert "The text does not ask the survey's question (“\u2068Would you &lt;report&gt; corruption?\u2069”)" in notice
    assert 'id="survey-question-ar"' not in page
    assert 'id="submit-button"' in page  # a warning only
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    assert 'id="survey-question-en"' in w.admin_browser.get(f"/awareness/broadcasts/{broadcast_id}").text  # the reviewer sees it too
    act(vera, broadcast_id, "withdraw")
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Weekly", "language": ["en"], "survey": str(survey_id),
        "body_en": "Corruption costs us all.\n\nWould you <report> corruption",
    })
    assert 'id="survey-question-en"' not in vera.get(f"/awareness/broadcasts/{broadcast_id}").text


async def test_approving_after_the_time_set_says_it_sends_now_and_asks_to_confirm_or_reschedule(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    soon = w.clock() + dt.timedelta(minutes=10)
    late, rescheduled = (compose(vera, name=name, **palestine(soon)) for name in ("Late", "Rescheduled"))
    draft = compose(vera, name="Still a draft", **palestine(soon))
    for broadcast_id in (late, rescheduled):
        assert act(vera, broadcast_id, "submit").headers["location"].endswith("done=submitted")
    admin = w.admin_browser
    opened = admin.get(f"/awareness/broadcasts/{late}").text  # before the time: a plain Approve
    assert 'id="approve-button"' in opened and 'id="send-at-past"' not in opened
    w.clock.advance(minutes=20)  # the time passes before the administrator decides

    # The Approve of the page opened before: refused, with what approving now would do.
    answer = admin.post(f"/awareness/broadcasts/{late}/approve", data={"csrf": csrf_of(opened), "revision": revision_of(opened)})
    assert answer.headers["location"].endswith("error=send_at_passed")
    assert (await broadcast_row(w, late)).status == "submitted"
    page = admin.get(answer.headers["location"]).text
    assert "The scheduled time has passed: approving sends it now." in page
    assert 'id="approve-button"' not in page and 'id="approve-now-button"' in page and 'id="approve-later-button"' in page
    assert re.search(r'id="approve-now-button" data-confirm="[^"]+"', page)
    listing = admin.get("/awareness/broadcasts").text
    row_html = re.search(rf'<tr id="broadcast-{late}".*?</tr>', listing, re.S).group(0)
    assert "time passed: approving sends it now" in row_html

    # Confirmed: approved, sent at once (the time set is kept: the sender starts it now).
    answer = act(admin, late, "approve", send_now="1")
    assert answer.headers["location"].endswith("done=approved_now")
    assert "Approved: its time has passed, so it is sent now." in admin.get(answer.headers["location"]).text
    row = await broadcast_row(w, late)
    assert (row.status, row.send_at) == ("approved", soon.replace(second=0, microsecond=0))

    # Or a new time: not one already past, nor half a one; then approved for it.
    past = palestine(w.clock() - dt.timedelta(minutes=5))
    answer = act(admin, rescheduled, "approve", **past)
    assert "error=new_time" in answer.headers["location"]
    # The form keeps what was typed (the trial: a refused time cleared both fields).
    kept = admin.get(answer.headers["location"]).text
    assert "give a date and a time still ahead" in kept
    assert f'name="send_date" required dir="ltr" value="{past["send_date"]}"' in kept
    assert f'name="send_time" required dir="ltr" value="{past["send_time"]}"' in kept
    half = act(admin, rescheduled, "approve", send_date="2026-12-01").headers["location"]
    assert "error=new_time" in half and 'value="2026-12-01"' in admin.get(half).text
    # Only a date and a time are put back in the form.
    forged = admin.get(f"/awareness/broadcasts/{rescheduled}?error=new_time&send_date=%22%3E%3Cscript%3E&send_time=1").text
    assert "<script>" not in forged and 'name="send_date" required dir="ltr" value=""' in forged
    # Its author's page says the time has passed too (only the list said so).
    assert 'id="author-send-at-past"' in vera.get(f"/awareness/broadcasts/{rescheduled}").text
    assert (await broadcast_row(w, rescheduled)).status == "submitted"
    tomorrow = (w.clock() + dt.timedelta(days=1)).replace(second=0, microsecond=0)
    assert act(admin, rescheduled, "approve", **palestine(tomorrow)).headers["location"].endswith("done=approved")
    row = await broadcast_row(w, rescheduled)
    assert (row.status, row.send_at) == ("approved", tomorrow)
    async with w.sm() as session:
        details = (await session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "broadcast_approve"))).all()
    assert sorted(details) == sorted([f'{{"broadcast":{late},"send_now":true}}', f'{{"broadcast":{rescheduled},"rescheduled":true}}'])

    # The author of a draft whose time has passed is told to choose a new one before submitting.
    page = vera.get(f"/awareness/broadcasts/{draft}").text
    assert 'id="submit-button"' not in page and "The time set to send it has passed" in page
    assert act(vera, draft, "submit").headers["location"].endswith("error=send_at_past")
    assert (await broadcast_row(w, draft)).status == "draft"


async def test_an_approved_broadcast_waiting_for_its_time_can_be_paused_or_cancelled(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, **palestine(w.clock() + dt.timedelta(days=1)))
    act(vera, broadcast_id, "submit")
    assert act(w.admin_browser, broadcast_id, "approve").headers["location"].endswith("done=approved")
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert 'id="pause-button"' in page and 'id="cancel-button"' in page
    assert 'id="pause-button"' in vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    assert act(vera, broadcast_id, "pause").headers["location"].endswith("done=paused")
    row = await broadcast_row(w, broadcast_id)
    assert (row.status, row.started_at) == ("paused", None)
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert 'id="resume-button">' in page and 'id="resume-send-at-past"' not in page  # its time is ahead
    # Resumed before it started: approved again, waiting for its time (the sender starts it then).
    assert act(w.admin_browser, broadcast_id, "resume").headers["location"].endswith("done=resumed")
    assert (await broadcast_row(w, broadcast_id)).status == "approved"
    assert re.search(r'id="broadcast-status">Approved, scheduled<', vera.get(f"/awareness/broadcasts/{broadcast_id}").text)
    # Paused again and its time passes: resuming says it sends it now, and asks.
    act(vera, broadcast_id, "pause")
    w.clock.advance(minutes=25)
    async with w.sm.begin() as session:
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(send_at=w.clock() - dt.timedelta(minutes=1)))
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert 'id="resume-send-at-past"' in page and re.search(r'id="resume-button" data-confirm="[^"]+"', page)
    assert act(vera, broadcast_id, "cancel").headers["location"].endswith("done=cancelled")
    assert (await broadcast_row(w, broadcast_id)).status == "cancelled"
    async with w.sm() as session:
        details = (await session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "broadcast_state"))).all()
    assert [d.replace(f'{{"broadcast":{broadcast_id},', "{") for d in details] == [
        '{"status":"paused"}', '{"status":"approved"}', '{"status":"paused"}', '{"status":"cancelled"}']


async def test_an_admin_takes_their_own_broadcast_back_and_never_sends_it_back_to_themselves(world):
    w = world
    admin = w.admin_browser
    own = compose(admin, name="Admin's own")
    draft = admin.get(f"/awareness/broadcasts/{own}").text
    assert "invite one on the Team page" in re.search(r'id="second-person">(.*?)</p>', draft, re.S).group(1)
    assert act(admin, own, "submit").headers["location"].endswith("done=submitted")
    page = admin.get(f"/awareness/broadcasts/{own}").text
    assert 'id="reject-button"' not in page and 'id="approve-button"' not in page and 'id="review"' not in page
    assert 'id="withdraw-button"' in page and 'id="own-broadcast"' in page
    # The only administrator: told to invite another (the trial: "another administrator must
    # approve it", with no one else to do it).
    own_hint = re.search(r'id="own-broadcast">(.*?)</p>', page, re.S).group(1)
    assert "There is no other active administrator yet:" in own_hint and '<a href="/users">invite one on the Team page</a>' in own_hint
    refused = admin.get(act(admin, own, "approve").headers["location"]).text
    assert "another administrator must approve it" in refused and 'class="no-other-admin"' in refused
    answer = act(admin, own, "reject", note="Oops")
    assert answer.headers["location"].endswith("error=own_rejection")
    assert "take it back to change it" in admin.get(answer.headers["location"]).text
    assert (await broadcast_row(w, own)).status == "submitted"
    assert act(admin, own, "withdraw").headers["location"].endswith("done=withdrawn")
    # Another administrator reviews it: both buttons, no "take back".
    act(admin, own, "submit")
    omar = await member(w, "omar", "admin")
    page = omar.get(f"/awareness/broadcasts/{own}").text
    assert 'id="approve-button"' in page and 'id="reject-button"' in page and 'id="withdraw-button"' not in page
    page = admin.get(f"/awareness/broadcasts/{own}").text
    assert 'id="own-broadcast"' in page and "no-other-admin" not in page  # now there is one


async def test_over_long_text_and_bad_links_cannot_be_submitted(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, language=["en"], body_en="a" * 4097)
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert re.search(r'class="tg-length over" id="length-en">.*?4097 / 4096', page, re.S)
    assert "Too long for Telegram: at most 4096 characters here." in page
    assert 'id="cannot-submit"' in page and 'id="submit-button"' not in page
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("error=problems")
    assert (await broadcast_row(w, broadcast_id)).status == "draft"

    link = compose(vera, language=["en"], body_en="[click](javascript:alert(1)) here")
    page = vera.get(f"/awareness/broadcasts/{link}").text
    assert "A link does not start with https://" in page and 'href="javascript' not in page
    assert act(vera, link, "submit").headers["location"].endswith("error=problems")

    # Refusals that keep what was typed: no language, a missing body, a past time.
    form = vera.get("/awareness/broadcasts/new")
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "body_en": "kept <i>text</i>"})
    assert refused.status_code == 400 and "Choose at least one language." in refused.text
    assert "kept &lt;i&gt;text&lt;/i&gt;" in refused.text
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "language": ["ar", "en"], "body_en": "only English"})
    assert refused.status_code == 400 and "Write the text of every language you chose." in refused.text
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "language": ["en"], "body_en": "t",
                                                       "send_date": "2026-11-29", "send_time": "10:00"})
    assert refused.status_code == 400 and "already past" in refused.text
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "language": ["en"], "body_en": "t",
                                                       "send_date": "2026-12-29"})
    assert refused.status_code == 400 and "both a date and a time" in refused.text
    # No CSRF token: refused.
    assert vera.post("/awareness/broadcasts", data={"name": "x", "language": ["en"], "body_en": "t"}).status_code == 403


def jpeg_with_exif() -> bytes:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Ltd"  # Make
    exif[0x013B] = "Fadi the photographer"  # Artist
    exif[0x8825] = {1: "N", 2: (31.0, 54.0, 0.0), 3: "E", 4: (35.0, 12.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, comment=b"secret comment")
    data = out.getvalue()
    assert b"SpyCam" in data and Image.open(io.BytesIO(data)).getexif()
    return data


def png_with_alpha() -> bytes:
    image = Image.new("RGBA", (40, 30), (0, 0, 255, 128))
    out = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


async def test_image_upload_is_reencoded_without_metadata_and_non_images_are_refused(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, language=["en"], body_en="With a picture.",
                           files={"image": ("holiday.jpg", jpeg_with_exif(), "image/jpeg")})
    async with w.sm() as session:
        stored = await session.get(BroadcastImage, broadcast_id)
    assert stored.mime_type == "image/jpeg"
    with Image.open(io.BytesIO(stored.content)) as clean:
        assert clean.format == "JPEG" and clean.size == (64, 48)
        assert not clean.getexif() and "comment" not in clean.info and "exif" not in clean.info
    for secret in (b"SpyCam", b"Fadi", b"secret comment"):
        assert secret not in stored.content
    served = vera.get(f"/awareness/broadcasts/{broadcast_id}/image")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg" and served.content == stored.content
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert f'<img src="/awareness/broadcasts/{broadcast_id}/image"' in page
    assert "Caption length" in page and "/ 1024" in page

    # A PNG with transparency and text chunks becomes a plain JPEG too.
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    answer = vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Weekly", "language": ["en"], "body_en": "x" * 1100,
    }, files={"image": ("logo.png", png_with_alpha(), "image/png")})
    assert answer.status_code == 303
    async with w.sm() as session:
        stored = await session.get(BroadcastImage, broadcast_id)
    with Image.open(io.BytesIO(stored.content)) as clean:
        assert clean.format == "JPEG" and clean.mode == "RGB" and set(clean.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}
    assert b"someone" not in stored.content
    # With an image the text is a caption: 1,100 characters are too many.
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert "1100 / 1024" in page and "Too long for Telegram: at most 1024 characters here." in page
    assert act(vera, broadcast_id, "submit").headers["location"].endswith("error=problems")
    # Removing the image makes it a text again (4,096).
    form = vera.get(f"/awareness/broadcasts/{broadcast_id}/edit")
    assert vera.post(f"/awareness/broadcasts/{broadcast_id}", data={
        "csrf": csrf_of(form.text), "name": "Weekly", "language": ["en"], "body_en": "x" * 1100, "remove_image": "1",
    }).status_code == 303
    assert "1100 / 4096" in vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert vera.get(f"/awareness/broadcasts/{broadcast_id}/image").status_code == 404

    # Not an image, too big: refused with a clear message, nothing saved.
    form = vera.get("/awareness/broadcasts/new")
    before = await count(w, Broadcast)
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "language": ["en"], "body_en": "t"},
                        files={"image": ("report.jpg", b"%PDF-1.7 not really a picture", "image/jpeg")})
    assert refused.status_code == 400 and "Only JPEG, PNG and WebP images can be used" in refused.text
    refused = vera.post("/awareness/broadcasts", data={"csrf": csrf_of(form.text), "name": "x", "language": ["en"], "body_en": "t"},
                        files={"image": ("huge.jpg", b"\xff" * (10 * 1024 * 1024 + 1), "image/jpeg")})
    assert refused.status_code == 400 and "larger than 10 MB" in refused.text
    assert await count(w, Broadcast) == before


async def count(w, model) -> int:
    async with w.sm() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


# ------------------------------------------------------------------- linked chat and tests


PEPPER = os.urandom(32)


def the_bot(w) -> staff_chats.StaffChatLinks:
    """What the bot does on /start l_<code> (the console's tests play the bot)."""
    return staff_chats.StaffChatLinks(w.sm, BotKeyBox(os.urandom(32)), PEPPER)


def link_code_of(page: str) -> str:
    return re.search(r'<code id="telegram-start">/start l_([A-Za-z0-9_-]+)</code>', page).group(1)


def type_code(client: TestClient, code: str):
    page = client.get("/awareness").text
    return client.post("/awareness/telegram/confirm", data={"csrf": csrf_of(page), "code": code})


def another_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def link_telegram(w, client: TestClient, chat_id: int, first_name: str = "Vera") -> None:
    """Link my Telegram, the chat opens the link, the member types the bot's code."""
    page = client.get("/awareness").text
    assert client.post("/awareness/telegram/link", data={"csrf": csrf_of(page)}).status_code == 303
    code = await the_bot(w).start_confirmation(link_code_of(client.get("/awareness").text), chat_id, first_name, now=w.clock())
    assert type_code(client, code).headers["location"] == "/awareness?done=linked#telegram"


async def test_link_my_telegram_needs_the_bot_s_code_typed_back_then_tests_go_to_the_linked_chat(world):
    """Replaces test_link_my_telegram_then_tests_go_to_the_linked_chat: opening the link
    no longer links; the code the bot sends to the chat must be typed here."""
    w = world
    vera = await member(w, "vera", "volunteer")
    page = vera.get("/awareness").text
    assert 'id="telegram-link-button"' in page
    answer = vera.post("/awareness/telegram/link", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303 and answer.headers["location"] == "/awareness#telegram"
    page = vera.get("/awareness").text
    link = re.search(r'id="telegram-link" rel="noopener noreferrer"><bdi dir="ltr">([^<]+)<', page).group(1)
    assert link.startswith(f"https://t.me/{BOT}?start=l_")
    code = link.split("start=l_", 1)[1]
    assert '<svg width="' in page and 'class="segno"' in page  # the QR code, inline
    assert link_code_of(page) == code  # typed in the chat, as in the sandbox
    assert 'id="telegram-confirm"' in page and 'id="code-waiting"' not in page
    async with w.sm() as session:
        link_id = await session.scalar(select(StaffUser.chat_link_id).where(StaffUser.username == "vera"))
        assert link_id and await session.get(StaffChat, link_id) is None
    # A code typed before any chat opened the link counts nothing and keeps the link.
    assert type_code(vera, "123456").headers["location"] == "/awareness?error=confirm_none#confirm-error"
    assert link_code_of(vera.get("/awareness").text) == code

    broadcast_id = compose(vera)
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert 'id="test-button"' not in page and "Link your own Telegram chat first" in page
    assert act(vera, broadcast_id, "test").headers["location"].endswith("error=not_linked")

    # The chat opens the link (as on /start l_<code>): it gets a code, and is not linked.
    confirmation = await the_bot(w).start_confirmation(code, 700_000_123, "Vera <b>", now=w.clock())
    page = vera.get("/awareness").text
    assert 'id="code-waiting"' in page and 'id="telegram-linked"' not in page
    assert not await staff_chats.is_linked(w.sm, link_id)
    answer = type_code(vera, another_code(confirmation))
    assert answer.headers["location"] == "/awareness?error=confirm_wrong&left=4#confirm-error"
    page = vera.get(answer.headers["location"]).text
    assert "That is not the code the bot sent. You can try 4 more times." in page
    # The refusal sits in the Telegram section, just above the code's form (the page opens
    # at it), not at the top of the page; the field names it.
    telegram = page[page.index('<section class="card" id="telegram">'):]
    assert page.count('id="confirm-error"') == 1 and 'id="confirm-error"' in telegram
    between = telegram[telegram.index('id="confirm-error"'):telegram.index('id="telegram-confirm"')]
    assert between.count("<p") == 0 and 'aria-describedby="confirm-error"' in telegram
    assert not await staff_chats.is_linked(w.sm, link_id)
    # Typed as a phone set to Arabic types it: Arabic-Indic digits, with a space.
    typed = confirmation.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert type_code(vera, typed[:3] + " " + typed[3:]).headers["location"] == "/awareness?done=linked#telegram"
    page = vera.get("/awareness").text
    assert 'id="telegram-linked"' in page and code not in page and 'id="telegram-link"' not in page
    # The first name Telegram gave the bot, shown as text; sealed in the console's store.
    assert re.search(r'id="telegram-name">.*<bdi>Vera &lt;b&gt;</bdi>', page)
    assert 'id="telegram-unlink-button"' in page and "Unlink my Telegram" in page
    async with w.sm() as session:
        stored = await session.scalar(select(StaffUser.chat_name).where(StaffUser.username == "vera"))
        details = " ".join((await session.scalars(select(AuditEntry.detail))).all())
        actions = (await session.scalars(select(AuditEntry.action).where(AuditEntry.action == "staff_chat_confirm"))).all()
    assert stored and "Vera" not in stored
    # The codes are nowhere but the page and the chat: not in the audit log, not in the database.
    assert code not in details and confirmation not in details and len(actions) == 2
    assert '"outcome":"wrong"' in details.replace(" ", "") and '"outcome":"linked"' in details.replace(" ", "")

    assert act(vera, broadcast_id, "test").headers["location"].endswith("done=test_queued")
    async with w.sm() as session:
        rows = (await session.execute(select(BroadcastTestSend.language, BroadcastTestSend.link_id, BroadcastTestSend.state)
                                      .where(BroadcastTestSend.broadcast_id == broadcast_id))).all()
    assert sorted(rows) == [("ar", link_id, "queued"), ("en", link_id, "queued")]
    assert act(vera, broadcast_id, "test").headers["location"].endswith("error=test_pending")
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert re.findall(r'<td class="test-state">([^<]+)</td>', page) == ["Queued", "Queued"]
    assert 'id="tests-waiting"' in page
    # The sender handles them: the page shows the results once, then the rows are gone
    # (the bot's database keeps no history of tests); the session remembers them.
    async with w.sm.begin() as session:
        await session.execute(update(BroadcastTestSend).where(BroadcastTestSend.language == "en").values(state="sent"))
        await session.execute(update(BroadcastTestSend).where(BroadcastTestSend.language == "ar").values(state="failed"))
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert sorted(re.findall(r'<td class="test-state">([^<]+)</td>', page)) == ["Failed", "Sent"]
    assert await count(w, BroadcastTestSend) == 0
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert sorted(re.findall(r'<td class="test-state">([^<]+)</td>', page)) == ["Failed", "Sent"]
    assert 'id="tests-waiting"' not in page

    # Unlink my Telegram: the bot's row goes, and so do the link id and the name.
    page = vera.get("/awareness").text
    assert vera.post("/awareness/telegram/unlink", data={"csrf": csrf_of(page)}).status_code == 303
    async with w.sm() as session:
        assert await session.get(StaffChat, link_id) is None
        row = (await session.execute(select(StaffUser.chat_link_id, StaffUser.chat_name).where(StaffUser.username == "vera"))).one()
        assert tuple(row) == (None, None)
    assert 'id="telegram-link-button"' in vera.get("/awareness").text

    # Without the bot's user name no link is made, and the page says why.
    w.console.settings = w.console.settings.model_copy(update={"bot_username": None})
    page = vera.get("/awareness").text
    assert "NAZAHA_BOT_USERNAME" in page and 'id="telegram-link-button"' not in page
    refused = vera.post("/awareness/telegram/link", data={"csrf": csrf_of(page)})
    assert "error=no_bot_username" in refused.headers["location"]


async def test_a_chat_that_opened_someone_s_link_is_not_linked_without_the_code(world):
    """A volunteer hands their link to a citizen (or it leaks): the citizen's chat gets a
    code, and guessing it is limited; an expired code links nothing either."""
    w = world
    vera = await member(w, "vera", "volunteer")
    page = vera.get("/awareness").text
    vera.post("/awareness/telegram/link", data={"csrf": csrf_of(page)})
    citizen = await the_bot(w).start_confirmation(link_code_of(vera.get("/awareness").text), 700_000_555, "Citizen", now=w.clock())
    async with w.sm() as session:
        link_id = await session.scalar(select(StaffUser.chat_link_id).where(StaffUser.username == "vera"))
    left = [type_code(vera, another_code(citizen)).headers["location"] for _ in range(5)]
    assert left[:4] == [f"/awareness?error=confirm_wrong&left={n}#confirm-error" for n in (4, 3, 2, 1)]
    assert left[4] == "/awareness?error=confirm_locked#confirm-error"
    page = vera.get(left[4]).text
    assert "Too many wrong codes: nothing was linked." in page
    # No code's form any more: the notice opens the Telegram section, beside "Link my Telegram".
    assert page.index('id="telegram"') < page.index('id="confirm-error"') < page.index('id="telegram-link-button"')
    # Even the right code is refused now, and the member starts again.
    assert type_code(vera, citizen).headers["location"] == "/awareness?error=confirm_expired#confirm-error"
    assert not await staff_chats.is_linked(w.sm, link_id) and await count(w, StaffChat) == 0
    assert 'id="telegram-link-button"' in vera.get("/awareness").text

    # Expired: ten minutes after the bot sent it, the right code links nothing.
    page = vera.get("/awareness").text
    vera.post("/awareness/telegram/link", data={"csrf": csrf_of(page)})
    code = await the_bot(w).start_confirmation(link_code_of(vera.get("/awareness").text), 700_000_556, "Vera", now=w.clock())
    w.clock.advance(seconds=staff_chats.CONFIRM_TTL.total_seconds() + 1)
    assert type_code(vera, code).headers["location"] == "/awareness?error=confirm_expired#confirm-error"
    assert "The code or the link has expired" in vera.get("/awareness?error=confirm_expired").text
    assert await count(w, StaffChat) == 0
    async with w.sm() as session:
        details = " ".join((await session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "staff_chat_confirm"))).all())
    assert details.count("wrong") == 4 and details.count("locked") == 1 and details.count("expired") == 1


async def test_tests_are_refused_for_a_broadcast_that_cannot_be_sent_and_are_limited(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    await link_telegram(w, vera, 700_000_321)
    too_long = compose(vera, language=["en"], body_en="a" * 4097)
    page = vera.get(f"/awareness/broadcasts/{too_long}").text
    assert 'id="cannot-test"' in page and 'id="test-button"' not in page
    assert act(vera, too_long, "test").headers["location"].endswith("error=problems")
    # A survey without a text in one of the broadcast's languages: the submission's check.
    survey_id = open_survey_via_http(w.admin_browser, ar=("", ""))
    no_arabic = compose(vera, survey=str(survey_id))
    assert act(vera, no_arabic, "test").headers["location"].endswith("error=problems")
    assert act(vera, no_arabic, "submit").headers["location"].endswith("error=problems")
    assert await count(w, BroadcastTestSend) == 0

    # At most three tests of a broadcast a minute (the sender deletes handled rows; here
    # the test plays it), then a clear refusal; a minute later, again.
    broadcast_id = compose(vera)

    async def handled() -> None:
        async with w.sm.begin() as session:
            await session.execute(delete(BroadcastTestSend))

    for _ in range(3):
        assert act(vera, broadcast_id, "test").headers["location"].endswith("done=test_queued")
        await handled()
    refused = act(vera, broadcast_id, "test").headers["location"]
    assert refused.endswith("error=test_rate_broadcast") and await count(w, BroadcastTestSend) == 0
    assert "tested several times in the last minute" in vera.get(refused).text
    w.clock.advance(seconds=61)
    assert act(vera, broadcast_id, "test").headers["location"].endswith("done=test_queued")
    await handled()
    # And at most so many a member an hour, whatever the broadcast.
    w.console.services["test_send_limits"].per_member = 5
    other = compose(vera)
    assert act(vera, other, "test").headers["location"].endswith("done=test_queued")
    await handled()
    refused = act(vera, other, "test").headers["location"]
    assert refused.endswith("error=test_rate_member")
    assert "You asked for many tests in the last hour." in vera.get(refused).text


async def test_a_removed_member_s_chat_is_unlinked(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    await link_telegram(w, vera, 700_000_124)
    assert await count(w, StaffChat) == 1
    async with w.sm() as session:
        vera_id = await session.scalar(select(StaffUser.id).where(StaffUser.username == "vera"))
    page = w.admin_browser.get("/users").text
    assert w.admin_browser.post(f"/users/{vera_id}/remove", data={"csrf": csrf_of(page)}).status_code == 303
    assert await count(w, StaffChat) == 0


# --------------------------------------------------------------- delivery and its controls


async def add_outbox(w, broadcast_id: int, states: list[str]) -> list[int]:
    """Play the sender: an outbox row per state, each with a subscriber of its own (none
    for "left": that subscriber is gone). Returns the subscribers' ids."""
    made = []
    async with w.sm.begin() as session:
        for state in states:
            subscriber_id = None
            if state != "left":
                subscriber = Subscriber(chat_key=os.urandom(32).hex(), sealed_chat=b"x", language="ar",
                                        active=True, joined_on=TODAY)
                session.add(subscriber)
                await session.flush()
                subscriber_id = subscriber.id
                made.append(subscriber_id)
            session.add(BroadcastOutbox(broadcast_id=broadcast_id, subscriber_id=subscriber_id, state=state))
    return made


def summary_of(page: str) -> str:
    found = re.search(r'id="delivery-summary">([^<]*)<', page)
    assert found, "no delivery summary"
    return found.group(1)


async def test_progress_pause_resume_and_cancel(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, to_channel="1")
    act(vera, broadcast_id, "submit")
    act(w.admin_browser, broadcast_id, "approve")
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    # Approved: waiting for the sender. It reloads the page itself, without any notice's query.
    assert f'<meta http-equiv="refresh" content="5; url=/awareness/broadcasts/{broadcast_id}/progress">' in page
    # The sender starts: outbox rows per recipient.
    states = ["sent"] * 5 + ["queued"] * 4 + ["failed", "blocked", "blocked", "in_doubt", "sending", "skipped", "left"]
    await add_outbox(w, broadcast_id, states)
    async with w.sm.begin() as session:
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(
            status="sending", started_at=w.clock(), channel_state="sent"))
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    counts = dict(re.findall(r'id="count-([a-z_]+)"><strong><bdi dir="ltr">(\d+)</bdi>', page))
    assert counts == {"total": "16", "queued": "4", "sending": "1", "sent": "5", "failed": "1", "blocked": "2",
                      "in_doubt": "1", "skipped": "1", "left": "1"}
    assert '<meta http-equiv="refresh"' in page and 'id="channel-state">Sent<' in page
    assert summary_of(page) == ("Sending: 5 delivered, 5 still to send, 2 blocked, 1 failed, 1 in doubt, "
                                "1 left before it was sent, 1 not sent (cancelled).")
    started = (w.clock() + dt.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")  # Palestine time in winter: UTC+2
    assert f'<dd><bdi dir="ltr">{started}</bdi></dd>' in page
    listing = vera.get("/awareness/broadcasts").text
    assert "5 / 16" in listing
    # The list says when sending started (it said "when approved" for a broadcast sent long ago).
    row_html = re.search(rf'<tr id="broadcast-{broadcast_id}".*?</tr>', listing, re.S).group(0)
    assert f'<bdi dir="ltr">{started}</bdi> <span class="muted">sending started</span>' in row_html
    assert "when approved" not in row_html

    assert act(vera, broadcast_id, "pause").headers["location"].endswith("done=paused")
    assert (await broadcast_row(w, broadcast_id)).status == "paused"
    assert act(vera, broadcast_id, "pause").headers["location"].endswith("error=transition")
    assert act(w.admin_browser, broadcast_id, "resume").headers["location"].endswith("done=resumed")
    assert (await broadcast_row(w, broadcast_id)).status == "sending"
    # Paused and resumed from the Progress page: back to the Progress page, which says so.
    for action, code, words in (("pause", "paused", "Paused: nothing more is sent"), ("resume", "resumed", "Resumed.")):
        page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
        assert re.search(rf'action="/awareness/broadcasts/{broadcast_id}/{action}" class="inline">'
                         r'<input type="hidden" name="csrf" value="[^"]+"><input type="hidden" name="back" value="progress">', page)
        answer = vera.post(f"/awareness/broadcasts/{broadcast_id}/{action}", data={"csrf": csrf_of(page), "back": "progress"})
        assert answer.headers["location"] == f"/awareness/broadcasts/{broadcast_id}/progress?done={code}"
        assert words in re.search(r'id="action-done">(.*?)</p>', vera.get(answer.headers["location"]).text, re.S).group(1)
    again = vera.post(f"/awareness/broadcasts/{broadcast_id}/resume", data={"csrf": csrf_of(page), "back": "progress"})
    assert again.headers["location"] == f"/awareness/broadcasts/{broadcast_id}/progress?error=transition"
    assert 'id="action-error"' in vera.get(again.headers["location"]).text
    assert (await broadcast_row(w, broadcast_id)).status == "sending"
    # Another volunteer can neither see nor change it.
    nora = await member(w, "nora", "volunteer")
    assert nora.get(f"/awareness/broadcasts/{broadcast_id}/progress").status_code == 404
    assert nora.post(f"/awareness/broadcasts/{broadcast_id}/pause", data={"csrf": csrf_of(nora.get("/awareness").text)}).status_code == 404
    assert act(vera, broadcast_id, "cancel").headers["location"].endswith("done=cancelled")
    async with w.sm() as session:
        left = dict((await session.execute(select(BroadcastOutbox.state, func.count()).where(
            BroadcastOutbox.broadcast_id == broadcast_id).group_by(BroadcastOutbox.state))).all())
    assert left["queued"] == 4  # the sender skips them (the console only reads the outbox)
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    assert '<meta http-equiv="refresh"' not in page
    assert summary_of(page).startswith("Cancelled: 5 delivered, 1 still to send, 2 blocked, 1 failed, ")
    assert summary_of(page).endswith(", 5 not sent (cancelled).")  # the 4 queued: the sender skips them
    assert act(vera, broadcast_id, "resume").headers["location"].endswith("error=transition")


async def test_the_progress_page_says_what_happened_and_leavers_change_no_figure(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    broadcast_id = compose(vera, topic=["rights"], send_date="2026-12-02", send_time="18:30")
    act(vera, broadcast_id, "submit")
    act(w.admin_browser, broadcast_id, "approve")
    # The audience now: two chose "rights", one chose nothing (everything); "forms" only is not in it.
    async with w.sm.begin() as session:
        for topics in (("rights",), ("rights", "forms"), (), ("forms",)):
            subscriber = Subscriber(chat_key=os.urandom(32).hex(), sealed_chat=b"x", language="en",
                                    active=True, joined_on=TODAY)
            session.add(subscriber)
            await session.flush()
            session.add_all(SubscriberTopic(subscriber_id=subscriber.id, topic=t) for t in topics)
    # Approved, not started: when it starts and whom it would reach, not "0 / 0".
    expected = ("Not started; scheduled for \u20682026-12-02 18:30\u2069 (Palestine time). "
                "3 subscribers would receive it if it started now.")
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    assert summary_of(page) == expected
    overview = vera.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert summary_of(overview) == expected and "0 / 0" not in overview
    async with w.sm.begin() as session:  # its time has come: the sender starts it within seconds
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(
            send_at=w.clock() - dt.timedelta(minutes=1)))
    assert summary_of(vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text) == (
        "Not started yet; sending begins within a few seconds. 3 subscribers would receive it if it started now.")

    # The sender ran it: some blocked the bot, one refusal.
    recipients = await add_outbox(w, broadcast_id, ["sent"] * 5 + ["blocked"] * 2 + ["failed"])
    async with w.sm.begin() as session:
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(
            status="done", started_at=w.clock(), finished_at=w.clock()))
    finished = "Finished: 5 delivered, 2 blocked, 1 failed."
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    assert summary_of(page) == finished
    assert re.search(r'id="progress-status">Finished<', page) and "Sent to everyone" not in page
    figures = dict(re.findall(r'id="count-([a-z_]+)"><strong><bdi dir="ltr">(\d+)</bdi>', page))
    assert summary_of(vera.get(f"/awareness/broadcasts/{broadcast_id}").text) == finished

    # Recipients leave afterwards (/stop, /wipe, a block seen by a later broadcast): the
    # figures are those of the broadcast, not of today's subscribers.
    async with w.sm.begin() as session:
        await session.execute(delete(Subscriber).where(Subscriber.id.in_(recipients[:6])))
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text
    assert summary_of(page) == finished
    assert dict(re.findall(r'id="count-([a-z_]+)"><strong><bdi dir="ltr">(\d+)</bdi>', page)) == figures
    assert figures["total"] == "8" and "5 / 8" in vera.get("/awareness/broadcasts").text
    # In Arabic the counts are joined as Arabic joins a list.
    page = vera.get(f"/awareness/broadcasts/{broadcast_id}/progress", headers={"Accept-Language": "ar"})
    vera.post("/locale", data={"csrf": csrf_of(page.text), "locale": "ar", "back": "/awareness"})
    assert "، و" in summary_of(vera.get(f"/awareness/broadcasts/{broadcast_id}/progress").text)


def test_delivery_summary_words_each_case():
    from nazaha.admin import i18n
    from nazaha.admin.broadcast_summary import delivery_summary

    i18n.set_locale("en")
    now = dt.datetime(2026, 11, 30, 9, tzinfo=dt.timezone.utc)

    def say(status, progress=None, *, started=True, send_at=None, audience=None):
        return delivery_summary(status, progress or {}, started_at=now if started else None, send_at=send_at,
                                audience=audience, now=now)

    assert say("draft", started=False, audience=0) == (
        "Not started: a broadcast is sent only once an administrator has approved it. "
        "0 subscribers would receive it if it started now.")
    assert say("approved", started=False, audience=1) == (
        "Not started yet; sending begins within a few seconds. 1 subscriber would receive it if it started now.")
    assert say("cancelled", started=False) == "Cancelled before sending started: nothing was sent."
    assert say("paused", {"sent": 1, "queued": 2}) == "Paused: 1 delivered, 2 still to send."
    assert say("sending", {"sent": 3, "sending": 1, "in_doubt": 1}) == "Sending: 3 delivered, 1 still to send, 1 in doubt."
    assert say("done", {"sent": 4, "left": 1}) == "Finished: 4 delivered, 0 blocked, 0 failed, 1 left before it was sent."
    assert say("done") == "Finished: no subscriber was in its audience."
    assert say("cancelled", {"sent": 2, "queued": 3, "skipped": 1}) == "Cancelled: 2 delivered, 4 not sent (cancelled)."


def _arabic_figure(n: int, zero: str, one: str, two: str, word: str) -> str:
    """An Arabic count as the catalog words it: its own words for 0, 1 and 2, then the
    number (isolated) with the noun in the case Arabic grammar gives 3-10, 11-99 and 100."""
    noun = "مشتركين" if 3 <= n % 100 <= 10 else "مشتركًا" if 11 <= n % 100 <= 99 else "مشترك"
    return {0: zero, 1: one, 2: two}.get(n) or f"{word} \u2066{n}\u2069 {noun}"


def _delivered(n: int) -> str:
    return _arabic_figure(n, "لم تصل إلى أحد", "وصلت إلى مشترك واحد", "وصلت إلى مشتركَين", "وصلت إلى")


def _to_send(n: int) -> str:
    return _arabic_figure(n, "لم يبقَ أحد", "بقي مشترك واحد", "بقي مشتركان", "بقي")


def _blocked(n: int) -> str:
    return _arabic_figure(n, "لم يحظر البوتَ أحد", "حظر البوتَ مشترك واحد", "حظر البوتَ مشتركان", "حظر البوتَ")


def _failed(n: int) -> str:
    return _arabic_figure(n, "لم يتعذّر الإرسال إلى أحد", "تعذّر الإرسال إلى مشترك واحد",
                          "تعذّر الإرسال إلى مشتركَين", "تعذّر الإرسال إلى")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 11, 100])  # Arabic's six plural forms
def test_the_arabic_delivery_summary_says_each_figure_once(n):
    """The trial read "قيد الإرسال: لم تصل إلى أحد، وبقي مشتركان، وبقي مشتركان.": Babel joined
    two items with Arabic's "start" and then its "end" list pattern (Arabic's data have no
    pattern for two), so the second figure came twice. Uses the compiled Arabic catalog."""
    from nazaha.admin import i18n
    from nazaha.admin.broadcast_summary import delivery_summary

    assert i18n.translations("ar").ugettext("Sending: %(figures)s.") == "قيد الإرسال: %(figures)s.", \
        "the Arabic catalog is not compiled (pybabel compile -D nazaha -d nazaha/locales)"
    now = dt.datetime(2026, 11, 30, 9, tzinfo=dt.timezone.utc)
    other = {0: 2, 1: 0, 2: 11, 3: 1, 11: 100, 100: 3}[n]  # the other figure, another form

    def say(status, progress):
        return delivery_summary(status, progress, started_at=now, send_at=None, audience=None, now=now)

    i18n.set_locale("ar")
    try:
        assert say("sending", {"sent": n, "queued": other}) == f"قيد الإرسال: {_delivered(n)}، و{_to_send(other)}."
        assert say("sending", {"sent": other, "sending": n}) == f"قيد الإرسال: {_delivered(other)}، و{_to_send(n)}."
        assert say("paused", {"sent": n, "queued": n}) == f"متوقفة مؤقتًا: {_delivered(n)}، و{_to_send(n)}."
        assert say("done", {"sent": n, "blocked": other, "failed": 1}) == (
            f"انتهت: {_delivered(n)}، و{_blocked(other)}، و{_failed(1)}.")
        assert say("done", {"sent": other, "blocked": n, "failed": n}) == (
            f"انتهت: {_delivered(other)}، و{_blocked(n)}، و{_failed(n)}.")
    finally:
        i18n.set_locale("en")
    # English is unchanged: two figures, then three.
    assert say("sending", {"sent": 2, "queued": 1}) == "Sending: 2 delivered, 1 still to send."
    assert say("done", {"sent": 2, "failed": 1}) == "Finished: 2 delivered, 0 blocked, 1 failed."


# ------------------------------------------------------------------------- volunteers


async def test_a_volunteer_reaches_no_case_url_and_the_menu_shows_only_awareness(world):
    w = world
    await make_case(w.sm, load_team_public_key(KeyPaths.for_data_dir(w.settings.data_dir)), designation="R-VOLNT2")
    vera = await member(w, "vera", "volunteer")
    assert vera.get("/").headers["location"] == "/awareness"
    page = vera.get("/awareness").text
    nav = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', page, re.S).group(1)
    assert re.findall(r'href="([^"]+)"', nav) == ["/awareness"]
    for area in ("/awareness/broadcasts", "/awareness/library", "/awareness/surveys", "/awareness/campaigns"):
        assert vera.get(area).status_code == 200, area
    # Every case, evidence, referral, statistics and admin URL answers 403.
    prefixes = ("/cases", "/templates", "/users", "/audit", "/retention", "/statistics", "/keys")
    routes = [(m, p) for m, p in console_routes(w.app) if p.startswith(prefixes)]
    assert len(routes) > 30
    token = csrf_of(page)
    for method, route in routes:
        path = re.sub(r"\{designation\}", "R-VOLNT2", route)
        path = re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "x" * 32, path)
        answer = vera.request(method, path, data={"csrf": token})
        assert answer.status_code == 403, (method, route, answer.status_code)
    # Admin-only awareness actions too.
    for method, path in (("GET", "/awareness/library/items/new"), ("GET", "/awareness/library/topics/new"),
                         ("POST", "/awareness/library/topics"), ("POST", "/awareness/library/items"),
                         ("POST", "/awareness/broadcasts/1/approve"), ("POST", "/awareness/broadcasts/1/reject")):
        assert vera.request(method, path, data={"csrf": token}).status_code == 403, path
    # A caseworker composes too, and sees Awareness beside the cases.
    huda = await member(w, "huda", "caseworker")
    nav = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', huda.get("/awareness").text, re.S).group(1)
    assert "/cases" in nav and "/awareness" in nav
    assert compose(huda) > 0


# ----------------------------------------------------------------------- surveys, quizzes


def result_cells(html: str, table: str) -> list[tuple[str, str]]:
    body = re.search(rf'<table class="grid stats-table" id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table}"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S):
        label = re.search(r"<bdi>([^<]*)</bdi>", row).group(1)
        cells = re.findall(r'<td class="num[^"]*"[^>]*>(.*?)</td>', row, re.S)
        rows.append((label, re.sub(r"<[^>]+>", "", cells[0]).strip()))
    return rows


async def set_counts(w, survey_id: int, counts: list[int]) -> None:
    """As the bot's batches leave them (the rows were made when the survey opened)."""
    async with w.sm.begin() as session:
        for option, value in enumerate(counts):
            await session.execute(update(SurveyCount).where(SurveyCount.survey_id == survey_id, SurveyCount.option == option)
                                  .values(biased_count=biased(value)))


async def test_survey_results_hide_cells_under_five_and_their_complement(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    survey_id = open_survey_via_http(vera)
    async with w.sm() as session:  # opening made a row per option, at 0, in option order
        made = (await session.execute(select(SurveyCount.option, SurveyCount.count).where(SurveyCount.survey_id == survey_id)
                                      .order_by(SurveyCount.option))).all()
    assert [tuple(r) for r in made] == [(0, 0), (1, 0), (2, 0)]
    assert "Fewer than 5 answers so far" in vera.get(f"/awareness/surveys/{survey_id}").text
    await set_counts(w, survey_id, [2, 1, 0])
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    assert 'id="results-table-few"' in page and "Fewer than 5 answers so far" in page
    assert 'id="results-table"' not in page
    assert "fewer than 5" in vera.get("/awareness/surveys").text  # the list hides the total too

    # One small cell would be the total minus the others: the smallest other is withheld.
    await set_counts(w, survey_id, [3, 0, 9])
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    assert result_cells(page, "results-table") == [("Yes", "fewer than 5"), ("No", "0"),
                                                   ("Not sure", "withheld (it would reveal a small number)")]
    assert re.search(r"<tfoot>.*?12.*?</tfoot>", page, re.S)
    assert ">9<" not in page and ">3<" not in page

    await set_counts(w, survey_id, [7, 6, 0])
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    assert result_cells(page, "results-table") == [("Yes", "7"), ("No", "6"), ("Not sure", "0")]
    assert "53.8%" in page and "46.2%" in page

    # Closing deletes the "already answered" markers.
    async with w.sm.begin() as session:
        session.add(SurveyAnswerMarker(marker="a" * 64, survey_id=survey_id, expires_at=w.clock() + dt.timedelta(hours=2)))
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    closed = vera.post(f"/awareness/surveys/{survey_id}/close", data={"csrf": csrf_of(page)})
    assert closed.headers["location"].endswith("done=closed")
    assert await count(w, SurveyAnswerMarker) == 0
    async with w.sm() as session:
        assert (await session.get(Survey, survey_id)).status == "closed"
    # A closed survey is not offered to a broadcast.
    assert f'<option value="{survey_id}"' not in vera.get("/awareness/broadcasts/new").text

    # Validation: different numbers of answers per language; a single answer.
    form = vera.get("/awareness/surveys/new")
    refused = vera.post("/awareness/surveys", data={"csrf": csrf_of(form.text), "question_en": "Q?", "options_en": "a\nb\nc",
                                                    "question_ar": "س؟", "options_ar": "أ\nب"})
    assert refused.status_code == 400 and "same answers, in the same order" in refused.text
    refused = vera.post("/awareness/surveys", data={"csrf": csrf_of(form.text), "question_en": "Q?", "options_en": "only one"})
    assert refused.status_code == 400 and "2 to 8 answers" in refused.text


async def test_quiz_results_show_the_summed_counts_and_hide_small_cells(world):
    w = world
    async with w.sm.begin() as session:
        item = AwarenessItem(code="quiz-bribe", topic="forms", kind="quiz", position=1, origin="file", published=True, updated_on=TODAY)
        session.add(item)
        await session.flush()
        item_id = item.id
        session.add(AwarenessItemText(item_id=item_id, language="en", title="Is a gift to an official a bribe?",
                                      options="Always\nIt depends\nNever", correct_option=1, body="It depends on why."))
        # The bot's batches, summed over every poll sent for the item (in any language).
        for option, value in enumerate((3, 0, 1)):
            session.add(QuizCount(item_id=item_id, option=option, biased_count=biased(value)))
    vera = await member(w, "vera", "volunteer")
    page = vera.get(f"/awareness/library/items/{item_id}").text
    assert "Fewer than 5 answers so far" in page
    async with w.sm.begin() as session:
        for option, more in enumerate((10, 3, 0)):
            await session.execute(update(QuizCount).where(QuizCount.item_id == item_id, QuizCount.option == option)
                                  .values(biased_count=QuizCount.biased_count + more))
    page = vera.get(f"/awareness/library/items/{item_id}").text
    assert result_cells(page, "quiz-table") == [("Always", "13"), ("It depends", "fewer than 5"), ("Never", "fewer than 5")]
    assert re.search(r"<tfoot>.*?17.*?</tfoot>", page, re.S)
    assert 'class="correct"' in page and "It depends on why." in page


# ---------------------------------------------------------------------------- campaigns


async def test_the_campaign_target_menu_groups_each_topic_with_its_articles(world):
    """The menu was 10 topics, then 38 "— article" lines: now one group per topic, the
    topic itself first; a refused form keeps the article chosen."""
    from nazaha.awareness.library_editor import campaign_targets

    w = world
    vera = await member(w, "vera", "volunteer")
    page = vera.get("/awareness/campaigns").text
    menu = re.search(r'<select name="target" required>(.*?)</select>', page, re.S).group(1)
    groups = re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', menu, re.S)
    assert re.sub(r'<optgroup label="[^"]+">.*?</optgroup>', "", menu, flags=re.S).strip() == ""  # nothing outside
    async with w.sm() as session:
        targets = await campaign_targets(session)
    topics = [t for t, kind, _ in targets if kind == "topic"]
    assert len(groups) == len(topics) >= 2
    articles = 0
    for (label, options), topic in zip(groups, topics, strict=True):
        values = re.findall(r'<option value="([^"]+)"', options)
        assert values[0] == topic and f"The whole topic: {label}<" in options
        assert values[1:] == [t for t, kind, of in targets if kind == "item" and of == topic]
        articles += len(values) - 1
    assert articles == len(targets) - len(topics) > 0
    article = next(t for t, kind, _ in targets if kind == "item")
    refused = vera.post("/awareness/campaigns", data={"csrf": csrf_of(page), "name": "", "code": "", "target": article})
    assert refused.status_code == 400
    assert re.findall(r'<option value="([^"]+)" selected>', refused.text) == [article]


def opens_by_day(page: str) -> list[tuple[str, str]]:
    """The campaign page's opens per day: (day, the count or the words hiding it)."""
    table = re.search(r'<table class="grid stats-table" id="campaign-days">(.*?)</table>', page, re.S)
    rows = re.findall(r'<tr(?: id="campaign-earlier")?><td>(?:<bdi dir="ltr">)?([^<]+)(?:</bdi>)?</td><td class="num">'
                      r'(?:<bdi dir="ltr">|<span class="small-cell">)([^<]+)<', table.group(1)) if table else []
    return [(day, count.strip()) for day, count in rows]


async def test_campaign_opens_under_5_are_hidden_as_survey_answers_are(world):
    """One open of a link given to one person told whether they opened it: under 5 opens in
    all nothing is shown (not even 0); a day under 5 is hidden, with another withheld where
    it could be worked out from the total."""
    w = world
    vera = await member(w, "vera", "volunteer")
    page = vera.get("/awareness/campaigns").text
    created = vera.post("/awareness/campaigns", data={"csrf": csrf_of(page), "name": "For Samir only", "code": "samir", "target": "rights"})
    campaign_id = int(re.search(r"/awareness/campaigns/(\d+)", created.headers["location"]).group(1))

    def cell_in_list() -> str:
        row = re.search(rf'<tr id="campaign-{campaign_id}">(.*?)</tr>', vera.get("/awareness/campaigns").text, re.S).group(1)
        return re.sub(r"<[^>]+>", "", re.findall(r'<td class="num">(.*?)</td>', row, re.S)[0]).strip()

    for opens in (0, 1, 4):
        async with w.sm.begin() as session:
            await session.execute(delete(CampaignDay).where(CampaignDay.campaign_id == campaign_id))
            if opens:
                session.add(CampaignDay(campaign_id=campaign_id, day=TODAY, biased_opens=biased(opens)))
        page = vera.get(f"/awareness/campaigns/{campaign_id}").text
        assert 'id="campaign-few"' in page and 'id="campaign-days"' not in page, opens
        assert re.search(r'id="campaign-total"><span class="small-cell">fewer than 5<', page), opens
        assert cell_in_list() == "fewer than 5", opens
        assert "a link given to one person must not tell whether they opened it" in page
    # 19 in all: the day with 3 is hidden, and the day with 7 withheld (19 - 7 - 9 would tell it).
    async with w.sm.begin() as session:
        await session.execute(delete(CampaignDay).where(CampaignDay.campaign_id == campaign_id))
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY, biased_opens=biased(3)))
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY - dt.timedelta(days=1), biased_opens=biased(7)))
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY - dt.timedelta(days=2), biased_opens=biased(9)))
    page = vera.get(f"/awareness/campaigns/{campaign_id}").text
    assert re.search(r'id="campaign-total"><bdi dir="ltr">19<', page) and cell_in_list() == "19"
    assert opens_by_day(page) == [("2026-11-30", "fewer than 5"), ("2026-11-29", "withheld (it would reveal a small number)"),
                                  ("2026-11-28", "9")]


async def test_campaign_link_qr_code_opens_and_deactivation(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    page = vera.get("/awareness/campaigns").text
    created = vera.post("/awareness/campaigns", data={"csrf": csrf_of(page), "name": "Birzeit posters", "code": "birzeit-2026", "target": "rights"})
    assert created.status_code == 303
    campaign_id = int(re.search(r"/awareness/campaigns/(\d+)", created.headers["location"]).group(1))
    page = vera.get(created.headers["location"]).text
    assert f'<a href="https://t.me/{BOT}?start=c_birzeit-2026"' in page
    assert re.search(r'<figure class="qr" id="campaign-qr"><svg width="\d+" height="\d+" class="segno">', page)
    png = vera.get(f"/awareness/campaigns/{campaign_id}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert 'filename="campaign-birzeit-2026.png"' in png.headers["content-disposition"]
    with Image.open(io.BytesIO(png.content)) as image:
        assert min(image.size) >= 300  # big enough for a poster

    # Opens, as the bot counts them per day (a day's row is made for every active campaign:
    # days without opens are not listed).
    async with w.sm.begin() as session:
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY - dt.timedelta(days=2), biased_opens=biased(0)))
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY - dt.timedelta(days=1), biased_opens=biased(3)))
        session.add(CampaignDay(campaign_id=campaign_id, day=TODAY, biased_opens=biased(2)))
    page = vera.get(f"/awareness/campaigns/{campaign_id}").text
    assert re.search(r'id="campaign-total"><bdi dir="ltr">5<', page)
    # Each day's count is under 5: hidden, as a survey's small answers are.
    assert opens_by_day(page) == [("2026-11-30", "fewer than 5"), ("2026-11-29", "fewer than 5")]
    listing = vera.get("/awareness/campaigns").text
    assert f"https://t.me/{BOT}?start=c_birzeit-2026" in listing

    # Refusals: a bad code, a taken code, an unknown target; an empty code makes one.
    for fields, message in (({"code": "with space"}, "1 to 30 Latin letters"), ({"code": "birzeit-2026"}, "This code is taken"),
                            ({"target": "nowhere"}, "Choose what the link opens")):
        data = {"csrf": csrf_of(listing), "name": "Another", "code": "", "target": "forms", **fields}
        refused = vera.post("/awareness/campaigns", data=data)
        assert refused.status_code == 400 and message in refused.text, fields
    made = vera.post("/awareness/campaigns", data={"csrf": csrf_of(listing), "name": "Random", "code": "", "target": "forms"})
    assert made.status_code == 303
    async with w.sm() as session:
        codes = (await session.scalars(select(Campaign.code))).all()
    assert len(codes) == 2 and all(re.fullmatch(r"[A-Za-z0-9_-]{1,30}", c) for c in codes)

    off = vera.post(f"/awareness/campaigns/{campaign_id}/active", data={"csrf": csrf_of(page), "active": "0"})
    assert off.headers["location"].endswith("done=deactivated")
    async with w.sm() as session:
        assert (await session.get(Campaign, campaign_id)).active is False
    assert 'id="campaign-state">inactive<' in vera.get(f"/awareness/campaigns/{campaign_id}").text


# ------------------------------------------------------------------------------ library


async def test_library_admins_edit_volunteers_read(world):
    w = world
    admin = w.admin_browser
    page = admin.get("/awareness/library/items/new?topic=forms&kind=article")
    assert page.status_code == 200
    body = "A **bribe** is *any* advantage. See [the law](https://example.org/law)."
    saved = admin.post("/awareness/library/items", data={
        "csrf": csrf_of(page.text), "topic": "forms", "kind": "article", "code": "what-is-a-bribe", "published": "1",
        "title_en": "What is a bribe?", "body_en": body, "sources_en": "Law No. 1 of 2005 (art. 1)",
        "title_ar": "", "body_ar": "",
    })
    assert saved.status_code == 303, saved.text
    item_id = int(re.search(r"/items/(\d+)", saved.headers["location"]).group(1))
    async with w.sm() as session:
        item = await session.get(AwarenessItem, item_id)
        assert (item.origin, item.code, item.published, item.kind) == ("console", "what-is-a-bribe", True, "article")
    vera = await member(w, "vera", "volunteer")
    page = vera.get(f"/awareness/library/items/{item_id}").text
    assert "<b>What is a bribe?</b><br>\n<br>\nA <b>bribe</b> is <i>any</i> advantage." in page
    assert "advantage. See <a href=\"https://example.org/law\" rel=\"noopener noreferrer nofollow\">the law</a>.<br>\n<br>\nSources:<br>\n• Law No. 1 of 2005 (art. 1)" in page
    assert 'id="edit-item"' not in page
    assert vera.get(f"/awareness/library/items/{item_id}/edit").status_code == 403

    # Too long, and a quiz with too many answers: refused with the language named.
    form = admin.get(f"/awareness/library/items/{item_id}/edit")
    refused = admin.post(f"/awareness/library/items/{item_id}", data={
        "csrf": csrf_of(form.text), "topic": "forms", "published": "1", "title_en": "Long", "body_en": "x" * 4100})
    assert refused.status_code == 400 and "longer than one Telegram message" in refused.text
    form = admin.get("/awareness/library/items/new?topic=forms&kind=quiz")
    refused = admin.post("/awareness/library/items", data={
        "csrf": csrf_of(form.text), "topic": "forms", "kind": "quiz", "correct": "1",
        "title_en": "Which?", "options_en": "\n".join(str(i) for i in range(11))})
    assert refused.status_code == 400 and "2 to 10 answers" in refused.text
    quiz = admin.post("/awareness/library/items", data={
        "csrf": csrf_of(form.text), "topic": "forms", "kind": "quiz", "correct": "2", "published": "1",
        "title_en": "Which is wasta?", "options_en": "A fee\nA favour for a relative\nA tax", "body_en": "Favouritism.",
        "title_ar": "ما الواسطة؟", "options_ar": "رسوم\nمحاباة قريب\nضريبة", "body_ar": "المحاباة."})
    assert quiz.status_code == 303
    # A file item edited in the console is the console's from then on.
    async with w.sm.begin() as session:
        filed = AwarenessItem(code="from-file", topic="rights", kind="article", position=1, origin="file", published=True, updated_on=TODAY)
        session.add(filed)
        await session.flush()
        filed_id = filed.id
        session.add(AwarenessItemText(item_id=filed_id, language="en", title="Your right to know", body="Ask."))
    page = admin.get(f"/awareness/library/items/{filed_id}").text
    assert admin.post(f"/awareness/library/items/{filed_id}/publish", data={"csrf": csrf_of(page), "published": "0"}).status_code == 303
    async with w.sm() as session:
        filed = await session.get(AwarenessItem, filed_id)
        assert (filed.published, filed.origin) == (False, "console")
    # A new topic.
    page = admin.get("/awareness/library/topics/new")
    made = admin.post("/awareness/library/topics", data={"csrf": csrf_of(page.text), "code": "youth_groups",
                                                        "title_en": "Youth groups", "title_ar": "مجموعات الشباب"})
    assert made.status_code == 303
    listing = vera.get("/awareness/library").text
    assert 'id="topic-youth_groups"' in listing and "Youth groups" in listing and "What is a bribe?" in listing


def test_the_console_accepts_every_item_of_the_content_files():
    """What the console checks (Telegram's limits, the article as one message) agrees with
    the content files the bot starts from: each of their items could be saved as it is."""
    import tomllib
    from pathlib import Path

    from nazaha.awareness import library_editor as library

    locales = Path(__file__).resolve().parent.parent / "nazaha" / "locales"
    checked = 0
    for language in ("ar", "en"):
        for path in sorted((locales / language / "awareness").glob("*.toml")):
            with path.open("rb") as f:
                doc = tomllib.load(f)
            assert len(doc["topic"]["title"]) <= library.TOPIC_TITLE_MAX, path
            for item in doc.get("item", []):
                if item["kind"] == "article":
                    text = library.ItemText(item["title"], item["body"], sources="\n".join(item["sources"]))
                else:
                    text = library.ItemText(item["title"], item["explanation"], tuple(item["options"]), item["correct"],
                                            "\n".join(item["sources"]))
                assert library.checked_texts(item["kind"], {language: text}), (path.name, item["code"])
                checked += 1
    assert checked > 20


async def test_what_staff_write_is_shown_as_text_everywhere(world):
    w = world
    script, image, link = "<script>window.x=1</script>", '<img src=x onerror="window.x=1">', "javascript:window.x=1"
    admin = w.admin_browser
    vera = await member(w, "vera", "volunteer")
    survey_id = open_survey_via_http(vera, en=(f"Q {image}?", f"yes {script}\nno"), ar=("", ""))
    broadcast_id = compose(vera, name=f"N {script}", language=["en"], body_en=f"**b** {image} [x]({link}) {script}",
                           survey=str(survey_id))
    page = w.admin_browser.get("/awareness/library/topics/new")
    assert admin.post("/awareness/library/topics", data={"csrf": csrf_of(page.text), "code": "xss",
                                                        "title_en": f"T {image}"[:40]}).status_code == 303
    listing = vera.get("/awareness/campaigns").text
    made = vera.post("/awareness/campaigns", data={"csrf": csrf_of(listing), "name": f"C {script}", "code": "", "target": "xss"})
    campaign_id = int(re.search(r"/awareness/campaigns/(\d+)", made.headers["location"]).group(1))
    pages = [vera.get(path).text for path in (
        f"/awareness/broadcasts/{broadcast_id}", "/awareness/broadcasts", f"/awareness/broadcasts/{broadcast_id}/edit",
        f"/awareness/broadcasts/{broadcast_id}/progress", f"/awareness/surveys/{survey_id}", "/awareness/surveys",
        "/awareness/library", "/awareness/campaigns", f"/awareness/campaigns/{campaign_id}", "/awareness/broadcasts/new")]
    for html in pages:
        assert "<script>window" not in html and "<img src=x" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;window.x=1&lt;/script&gt;" in pages[0] and "&lt;img src=x onerror=" in pages[0]
    assert "yes &lt;script&gt;" in pages[0]  # the survey's answer on its button


async def test_surveys_past_their_last_day_are_closed_by_the_daily_pass(world):
    from nazaha.admin.app import close_due_surveys

    w = world
    async with w.sm.begin() as session:
        for code, closes_on in (("due", TODAY - dt.timedelta(days=1)), ("today", TODAY), ("none", None)):
            survey = Survey(code=code, status="open", author_id=1, created_on=TODAY - dt.timedelta(days=9), closes_on=closes_on)
            session.add(survey)
            await session.flush()
            session.add(SurveyAnswerMarker(marker=code.ljust(64, "0"), survey_id=survey.id, expires_at=w.clock() + dt.timedelta(hours=1)))
    assert await close_due_surveys(w.console) == 1
    async with w.sm() as session:
        statuses = dict((await session.execute(select(Survey.code, Survey.status))).all())
        markers = (await session.scalars(select(SurveyAnswerMarker.marker))).all()
    assert statuses == {"due": "closed", "today": "open", "none": "open"}
    assert sorted(m[:5].rstrip("0") for m in markers) == ["none", "today"]
