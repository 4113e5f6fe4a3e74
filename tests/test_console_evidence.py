"""A case's evidence and its referral export in the console, over HTTP: the clean copy
inline and as an attachment with a safe name, PDFs as page images (cached per session), the
original only by an audited POST with CSRF, 403 for volunteers on every such URL, 409
without the team key, and the ZIP's content (choices, redactions)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from nazaha.admin.app import create_app
from nazaha.admin.bootstrap import first_admin_invitation
from nazaha.bot.app import blob_root, kdf_floor
from nazaha.bot.setup import initialise
from nazaha.services import audit
from nazaha.storage import pdf_pages
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import CaseService, EvidenceRecord
from nazaha.storage.database import create_engine, create_sessionmaker
from nazaha.storage.keyfiles import KeyPaths, load_team_public_key
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.reports import ReportDraft, ReportVault, UnlockedCase, new_sealing_context
from nazaha.storage.scrub import scrub_image
from tests.console_support import PASSPHRASE, MovableClock, console_settings, csrf_of, invitation_link_after, totp_code
from tests.test_console_auth import STAFF_PASSWORD, enrol, login

BASE = "https://testserver"
NASTY_NAME = '../../etc/passwd"; <script>.pdf'
ARABIC_NAME = "صورة المكتب.jpg"
SECRET_NAME = "Ahmad Saleh"
CONTACT_NAME = "Mona Haddad"
CONTACT_PHONE = "+970599000111"
REPORTER_SAYS = "I have one more document <b>about the tender</b>"
STAFF_SAYS = "Thank you, we are looking into it."


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x013B] = "Reporter Full Name"  # Artist
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (31.0, 54.0, 13.0), "E", (35.0, 12.0, 34.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def two_page_pdf() -> bytes:
    pages = [Image.new("RGB", (200, 100), (10, 90, 200)), Image.new("RGB", (100, 200), (90, 200, 10))]
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return out.getvalue()


class Case:
    """The stored report: designation, files by number, originals and clean copies."""

    def __init__(self, designation: str, records: list[EvidenceRecord], originals: list[bytes], clean: bytes):
        self.designation = designation
        self.records = records
        self.originals = originals
        self.clean = clean

    def url(self, number: int, action: str) -> str:
        return f"/cases/{self.designation}/evidence/{self.records[number - 1].id}/{action}"


async def store_case(settings) -> Case:
    engine = create_engine(settings.effective_database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        public = load_team_public_key(KeyPaths.for_data_dir(settings.data_dir))
        vault = await ReportVault.load(sessionmaker, public, kdf_floor=kdf_floor(settings))
        blobs = BlobStore(blob_root(settings), durable=False)
        report_id, data_key = new_sealing_context()
        photo, pdf, text = jpeg_with_gps(), two_page_pdf(), "plain notes".encode()
        clean = scrub_image(photo).data
        records = []
        for content, kind, name, mime, clean_copy in (
            (photo, "document", ARABIC_NAME, "image/jpeg", clean),
            (pdf, "document", NASTY_NAME, "application/pdf", None),
            (text, "document", "notes.txt", "text/plain", None),
        ):
            file_id = hashlib.sha256(content).hexdigest()[:32]
            info = await blobs.write_bytes(data_key, report_id, file_id, "original", content)
            if clean_copy:
                await blobs.write_bytes(data_key, report_id, file_id, "clean", clean_copy)
            records.append(EvidenceRecord(
                id=file_id, kind=kind, size_bytes=info.size, has_clean_copy=clean_copy is not None,
                flagged=None, file_name=name, mime_type=mime, forward_origin=None, sha256=info.sha256,
                caption="caption by the reporter" if clean_copy else None,
            ))
        draft = ReportDraft(
            kind="corruption",
            triage={"category": "bribery", "governorate": "hebron"},
            fields={
                "when": "last_month",
                "description": f"The clerk {SECRET_NAME} asked for 500 shekels.",
                "contact": "share",
                "contact_name": CONTACT_NAME,
                "contact_phone": CONTACT_PHONE,
            },
        )
        sealed = await vault.seal(draft, report_id=report_id, data_key=data_key)
        writer = ReportWriter(sessionmaker, max_delay=0)
        batch = ReportBatch(bot_id=None, update_id=None)
        vault.store(batch, sealed, evidence=records)
        await writer.commit(batch)
        case = UnlockedCase(report_id, sealed.designation, "corruption", "received", None, sealed.created_on, data_key)
        cases = CaseService(sessionmaker)
        batch = ReportBatch(bot_id=None, update_id=None)
        cases.add_reporter_message(batch, case, REPORTER_SAYS)
        await writer.commit(batch)
        await cases.add_staff_reply(case, STAFF_SAYS)
    finally:
        await engine.dispose()
    return Case(sealed.designation, records, [photo, pdf, text], clean)


@pytest.fixture
async def world(tmp_path):
    settings = console_settings(tmp_path / "var")
    await initialise(settings, passphrase=PASSPHRASE)
    link = await first_admin_invitation(settings, KeyPaths.for_data_dir(settings.data_dir).team_recovery)
    case = await store_case(settings)
    return settings, link, case


@pytest.fixture
def console(world):
    settings, link, case = world
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    clients = []

    def browser() -> TestClient:
        client = TestClient(app, base_url=BASE, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    admin_browser = browser()
    admin = enrol(admin_browser, link, clock, team_passphrase=PASSPHRASE)
    yield app, clock, browser, admin_browser, admin, case
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def audited(monkeypatch):
    """The evidence and export entries appended to the audit log, as (action, detail);
    every call still goes to the real audit.append."""
    calls = []
    real = audit.append
    ours = {audit.EVIDENCE_DOWNLOAD, audit.EVIDENCE_ORIGINAL, audit.EXPORT}

    async def recording(session, **kwargs):
        if kwargs["action"] in ours:
            calls.append((kwargs["action"], kwargs.get("detail")))
        return await real(session, **kwargs)

    monkeypatch.setattr(audit, "append", recording)
    return calls


@pytest.fixture
def spawned(monkeypatch):
    """How many PDF render workers were started."""
    count = []
    real = pdf_pages._spawn

    async def counting(argv):
        count.append(1)
        return await real(argv)

    monkeypatch.setattr(pdf_pages, "_spawn", counting)
    return count


def invite(admin_browser: TestClient, username: str, role: str) -> str:
    page = admin_browser.get("/users")
    answer = admin_browser.post("/users/invite", data={"csrf": csrf_of(page.text), "username": username, "role": role})
    return invitation_link_after(admin_browser, answer)


def assert_safe_attachment(response, expected_name: str) -> None:
    disposition = response.headers["content-disposition"]
    assert disposition == f"attachment; filename=\"{expected_name}\"; filename*=UTF-8''{expected_name}"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert disposition.isascii() and ".." not in disposition and "passwd" not in disposition and "<" not in disposition


# --------------------------------------------------------------------------- evidence


async def test_clean_copy_inline_and_as_a_safely_named_attachment(console, audited):
    app, clock, browser, admin_browser, admin, case = console
    page = admin_browser.get(f"/cases/{case.designation}/evidence")
    assert page.status_code == 200
    # The reporter's names are shown escaped and isolated, never as markup.
    assert "<bdi>../../etc/passwd&#34;; &lt;script&gt;.pdf</bdi>" in page.text
    assert "<script>.pdf" not in page.text
    assert f"<bdi>{ARABIC_NAME}</bdi>" in page.text
    assert f'src="{case.url(1, "view")}"' in page.text and 'loading="lazy"' in page.text

    # The photo's clean copy inline: our JPEG, without EXIF or GPS.
    shown = admin_browser.get(case.url(1, "view"))
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["content-disposition"].startswith("inline; filename=\"")
    assert shown.content == case.clean and shown.content != case.originals[0]
    with Image.open(io.BytesIO(shown.content)) as image:
        assert not image.getexif() and "exif" not in image.info
    assert b"Reporter Full Name" not in shown.content
    # Nothing else is shown inline.
    assert admin_browser.get(case.url(2, "view")).status_code == 404
    assert admin_browser.get(case.url(3, "view")).status_code == 404

    downloaded = admin_browser.get(case.url(1, "download"))
    assert downloaded.status_code == 200 and downloaded.content == case.clean
    assert_safe_attachment(downloaded, f"{case.designation}-1.jpg")
    assert audited == [(audit.EVIDENCE_DOWNLOAD, {"item": 1})]
    # A file without a metadata-free copy has no plain download: only the audited original.
    assert admin_browser.get(case.url(2, "download")).status_code == 404
    assert admin_browser.get(case.url(3, "download")).status_code == 404
    assert len(audited) == 1


async def test_original_only_by_an_audited_post_with_csrf(console, audited):
    app, clock, browser, admin_browser, admin, case = console
    page = admin_browser.get(f"/cases/{case.designation}/evidence")
    assert f'action="{case.url(2, "original")}"' in page.text
    assert admin_browser.get(case.url(2, "original")).status_code == 405
    assert admin_browser.post(case.url(2, "original"), data={}).status_code == 403
    assert admin_browser.post(case.url(2, "original"), data={"csrf": "0" * 64}).status_code == 403
    assert audited == []

    csrf = csrf_of(page.text)
    for number, extension in ((1, ".jpg"), (2, ".pdf"), (3, ".txt")):
        answer = admin_browser.post(case.url(number, "original"), data={"csrf": csrf})
        assert answer.status_code == 200
        assert answer.content == case.originals[number - 1]
        assert_safe_attachment(answer, f"{case.designation}-{number}-original{extension}")
    assert b"Reporter Full Name" in admin_browser.post(case.url(1, "original"), data={"csrf": csrf}).content
    assert [a for a, _ in audited] == [audit.EVIDENCE_ORIGINAL] * 4
    assert audited[1] == (audit.EVIDENCE_ORIGINAL, {"item": 2})


async def test_pdf_pages_render_once_per_session_and_expire(console, spawned):
    app, clock, browser, admin_browser, admin, case = console
    page = admin_browser.get(f"/cases/{case.designation}/evidence")
    assert page.status_code == 200
    assert f'src="{case.url(2, "pages")}/1.png"' in page.text
    assert f'src="{case.url(2, "pages")}/2.png"' in page.text
    assert f"{case.url(2, 'pages')}/3.png" not in page.text
    assert len(spawned) == 1  # the PDF, rendered to know its pages; the text file is not a PDF
    sizes = []
    for n in (1, 2):
        png = admin_browser.get(f"{case.url(2, 'pages')}/{n}.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png.content)) as image:
            sizes.append(image.size)
    assert sizes[0][0] > sizes[0][1] and sizes[1][0] < sizes[1][1]  # landscape, then portrait
    assert admin_browser.get(f"{case.url(2, 'pages')}/3.png").status_code == 404
    assert admin_browser.get(f"{case.url(1, 'pages')}/1.png").status_code == 404  # an image
    assert admin_browser.get(f"{case.url(3, 'pages')}/1.png").status_code == 404  # not a PDF
    assert len(spawned) == 1  # served from this session's cache

    # Another session renders for itself; after a few minutes the pages are gone.
    clock.advance(seconds=60)
    other = browser()
    assert login(other, "admin", STAFF_PASSWORD, totp_code(admin.totp_secret, clock)).status_code == 303
    assert other.get(f"{case.url(2, 'pages')}/2.png").status_code == 200
    assert len(spawned) == 2
    clock.advance(minutes=6)
    admin_browser.get("/users")
    assert admin_browser.get(f"{case.url(2, 'pages')}/1.png").status_code == 200
    assert len(spawned) == 3


# --------------------------------------------------------------------------- access


def _all_routes(routes):
    """Routes, including those of included routers (FastAPI keeps those as a branch with
    the ``original_router``; our routers have no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _all_routes(inner.routes)
        else:
            yield route


def case_urls(app, case: Case) -> list[tuple[str, str]]:
    """Every evidence and export URL of the app (from its routes, so none is forgotten)."""
    urls = []
    for route in _all_routes(app.routes):
        path = getattr(route, "path", "")
        if not path.startswith("/cases/{designation}/") or not ("/evidence" in path or "/export" in path):
            continue
        url = (path.replace("{designation}", case.designation)
               .replace("{evidence_id}", case.records[1].id).replace("{page}", "1"))
        for method in route.methods:
            if method in ("GET", "POST"):
                urls.append((method, url))
    return urls


async def test_volunteers_get_403_and_members_without_the_key_409(console, audited):
    app, clock, browser, admin_browser, admin, case = console
    urls = case_urls(app, case)
    assert len(urls) >= 7
    volunteer_browser = browser()
    enrol(volunteer_browser, invite(admin_browser, "vera", "volunteer"), clock)
    csrf = csrf_of(volunteer_browser.get("/login").text)
    for method, url in urls:
        answer = volunteer_browser.request(method, url, data={"csrf": csrf} if method == "POST" else None)
        assert answer.status_code == 403, (method, url)

    # An administrator not yet granted the team key: a clear page, no file.
    newcomer = browser()
    enrol(newcomer, invite(admin_browser, "nadia", "admin"), clock)
    for method, url in urls:
        body = {"csrf": csrf_of(newcomer.get("/users").text)} if method == "POST" else None
        answer = newcomer.request(method, url, data=body)
        assert answer.status_code == 409, (method, url)
        assert "must grant you access" in answer.text or "منح" in answer.text
    assert audited == []
    # An unknown case.
    assert admin_browser.get("/cases/R-ZZZZZZ/evidence").status_code == 404


async def test_a_case_the_member_may_not_see_is_403(console, monkeypatch):
    app, clock, browser, admin_browser, admin, case = console
    from nazaha.admin.routes import evidence

    async def nobody(console, staff, report_id):
        return False

    monkeypatch.setattr(evidence, "_may_see", nobody)
    csrf = csrf_of(admin_browser.get("/users").text)
    for method, url in case_urls(app, case):
        answer = admin_browser.request(method, url, data={"csrf": csrf} if method == "POST" else None)
        assert answer.status_code == 403, (method, url)


# --------------------------------------------------------------------------- export


def export_form_data(page_text: str, **overrides) -> dict:
    """The form as a browser would send it: the checked boxes and every pre-filled text."""
    data = {"csrf": csrf_of(page_text), "version": re.search(r'name="version" value="([0-9a-f]+)"', page_text).group(1)}
    for name in re.findall(r'<input type="checkbox" name="(\w+)" value="1" checked>', page_text):
        data[name] = "1"
    import html

    for name, text in re.findall(r'<textarea name="([^"]+)"[^>]*>\n?(.*?)</textarea>', page_text, re.S):
        data[name] = html.unescape(text)  # (the parser drops one newline after the tag)
    for name, text in re.findall(r'<input name="(n:[0-9a-f]+)"[^>]*value="([^"]*)"', page_text):
        data[name] = html.unescape(text)
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


async def test_export_zip_leaves_out_contact_and_originals_and_applies_redactions(console, audited, monkeypatch):
    app, clock, browser, admin_browser, admin, case = console
    form = admin_browser.get(f"/cases/{case.designation}/export")
    assert form.status_code == 200
    assert SECRET_NAME in form.text and CONTACT_NAME in form.text and REPORTER_SAYS.replace("<", "&lt;").replace(">", "&gt;") in form.text
    assert '<input type="checkbox" name="contact" value="1" >' in form.text
    assert '<input type="checkbox" name="originals" value="1" >' in form.text
    description_key = "a:description"
    data = export_form_data(form.text, **{description_key: "The clerk [name withheld] asked for 500 shekels."})
    answer = admin_browser.post(f"/cases/{case.designation}/export", data=data)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == (
        f"attachment; filename=\"{case.designation}-referral.zip\"; filename*=UTF-8''{case.designation}-referral.zip")
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(archive.namelist())
    d = case.designation
    assert names == {"case.html", f"evidence/{d}-1.jpg", f"evidence/{d}-2-page-1.png", f"evidence/{d}-2-page-2.png"}
    assert archive.read(f"evidence/{d}-1.jpg") == case.clean
    document = archive.read("case.html").decode()
    assert 'dir="rtl"' in document and 'lang="ar"' in document  # the member's language
    assert "[name withheld]" in document and SECRET_NAME not in document
    assert CONTACT_NAME not in document and CONTACT_PHONE not in document
    assert "&lt;b&gt;about the tender&lt;/b&gt;" in document and STAFF_SAYS in document
    assert "&lt;script&gt;.pdf" in document and "<script" not in document
    assert case.records[0].sha256 not in document  # hashes only come with originals
    assert audited == [(audit.EXPORT, {"contact": False, "originals": False})]

    # Chosen: contact details and originals.
    data = export_form_data(admin_browser.get(f"/cases/{d}/export").text, contact="1", originals="1")
    answer = admin_browser.post(f"/cases/{d}/export", data=data)
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    document = archive.read("case.html").decode()
    assert CONTACT_NAME in document and CONTACT_PHONE in document and SECRET_NAME in document
    assert archive.read(f"evidence/originals/{d}-1-original.jpg") == case.originals[0]
    assert archive.read(f"evidence/originals/{d}-2-original.pdf") == case.originals[1]
    assert archive.read(f"evidence/originals/{d}-3-original.txt") == case.originals[2]
    assert case.records[1].sha256 in document
    assert audited[-1] == (audit.EXPORT, {"contact": True, "originals": True})

    # Nothing but the answers, a message removed: no files at all.
    thread_keys = [k for k in data if k.startswith("m:")]
    data = export_form_data(admin_browser.get(f"/cases/{d}/export").text, thread=None, evidence=None,
                            **{thread_keys[0]: ""})
    archive = zipfile.ZipFile(io.BytesIO(admin_browser.post(f"/cases/{d}/export", data=data).content))
    assert archive.namelist() == ["case.html"]
    assert REPORTER_SAYS not in archive.read("case.html").decode()


async def test_export_refuses_stale_forms_missing_csrf_and_oversize(console, audited, monkeypatch):
    app, clock, browser, admin_browser, admin, case = console
    form = admin_browser.get(f"/cases/{case.designation}/export")
    data = export_form_data(form.text)
    assert admin_browser.post(f"/cases/{case.designation}/export", data={**data, "csrf": "0" * 64}).status_code == 403
    stale = admin_browser.post(f"/cases/{case.designation}/export", data={**data, "version": "0" * 32})
    assert stale.status_code == 409 and ("changed" in stale.text or "تغيّرت" in stale.text)
    from nazaha.services import referral_export

    monkeypatch.setattr(referral_export, "MAX_EXPORT_BYTES", 1000)
    too_large = admin_browser.post(f"/cases/{case.designation}/export", data=data)
    assert too_large.status_code == 413
    assert audited == []
