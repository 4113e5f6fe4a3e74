"""Search in decrypted content (fields, thread, notes, file names), with Unicode and Arabic
normalisation; and reading the inbox filter from a query string."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import update

from nazaha.services.casework import (
    DeadlineRules,
    InboxFilter,
    add_note,
    assign,
    normalise_for_search,
    search,
)
from nazaha.storage.cases import CaseService
from nazaha.storage.crypto import KDF_TESTING, TeamPrivateKey
from nazaha.storage.database import create_sessionmaker, write_session
from nazaha.storage.models import ReportField
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.reports import ReportDraft, ReportVault, initialise_system, new_sealing_context
from tests.casework_support import NOW, add_staff, console_store, evidence, make_case

TODAY = dt.date(2026, 3, 2)


@pytest.fixture
async def env(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        sm = create_sessionmaker(engine)
        team = TeamPrivateKey.generate()
        await initialise_system(sm, team.public_key(), KDF_TESTING)
        vault = await ReportVault.load(sm, team.public_key(), kdf_floor=KDF_TESTING)
        yield {
            "sm": sm,
            "team": team,
            "vault": vault,
            "cases": CaseService(sm),
            "admin": await add_staff(sm, "admin", "admin"),
            "alice": await add_staff(sm, "alice", "caseworker"),
            "bob": await add_staff(sm, "bob", "caseworker"),
            "vera": await add_staff(sm, "vera", "volunteer"),
        }


async def find(env, text, viewer="admin", f=None, **kwargs):
    async with env["sm"]() as session:
        return await search(
            session, env[viewer], f or InboxFilter(), text, env["team"], env["vault"], env["cases"], **kwargs
        )


async def test_search_through_a_report_filed_like_the_bot_does(env):
    sm, vault, cases = env["sm"], env["vault"], env["cases"]
    report_id, data_key = new_sealing_context()
    sealed = await vault.seal(
        ReportDraft(
            kind="corruption",
            triage={"category": "bribery", "governorate": "hebron"},
            fields={"description": "طُلِبَت رِشْوَةٌ من المُوَظَّف في مديرية الصحة", "where": "Licensing Office"},
        ),
        report_id=report_id,
        data_key=data_key,
    )
    batch = ReportBatch()
    vault.store(batch, sealed, evidence=[evidence("عقد_الشراء.pdf", caption="صورة الإيصال")])
    await ReportWriter(sm, max_delay=0).commit(batch)
    case = await vault.unlock_with_team(sealed.designation, env["team"])
    follow_up = ReportBatch()
    cases.add_reporter_message(follow_up, case, "The official is called Ahmad Qasem")
    await ReportWriter(sm, max_delay=0).commit(follow_up)
    await cases.add_staff_reply(case, "Could you tell us the date of the payment?")
    async with write_session(sm) as session:
        await add_note(session, env["alice"], case, "Cross-check with the procurement register", now=NOW)
    other, _key = await make_case(sm, env["team"].public_key(), fields={"description": "nothing related"})

    hits = {
        "رشوة": [report_id],  # tashkeel in the report is ignored
        "مديريه الصحه": [report_id],  # ة read as ه
        "licensing office": [report_id],  # case-insensitive, another field
        "QASEM": [report_id],  # the reporter's follow-up message
        "date of the payment": [report_id],  # a staff reply
        "procurement register": [report_id],  # an internal note
        "عقد_الشراء": [report_id],  # a file name
        "الايصال": [report_id],  # a caption; إ read as ا
        "nothing": [other],
        "absent words": [],
        "   ": [],
    }
    for text, expected in hits.items():
        assert await find(env, text) == expected, text


async def test_arabic_and_unicode_normalisation():
    pairs = [
        ("أحمد", "احمد"),
        ("إسلام", "اسلام"),
        ("آمنة", "امنه"),
        ("مدرسة", "مدرسه"),
        ("مستشفى", "مستشفي"),
        ("رشـــــوة", "رشوه"),  # tatweel
        ("عَلِيٌّ", "علي"),  # tashkeel
        ("ٱلقاضي", "القاضي"),  # alef wasla
        ("ﻻ", "لا"),  # lam-alef ligature (NFKC)
        ("٢٠٢٦", "2026"),  # Arabic-Indic digits
        ("۱۲۳", "123"),  # Eastern Arabic-Indic digits
        ("Café", "cafe"),
        ("STRASSE", "straße"),
        ("ｆｕｌｌ", "full"),  # full-width (NFKC)
        ("a\u200fb\u200bc", "abc"),  # bidi mark, zero-width space
        ("two   spaces\n", "two spaces"),
    ]
    for written, typed in pairs:
        assert normalise_for_search(written) == normalise_for_search(typed), (written, typed)
    assert normalise_for_search("رشوة") != normalise_for_search("رشاوى")


async def test_arabic_search_matches_every_written_form(env):
    ids = {}
    for name, text in {
        "hamza": "قابلت المدير أحمد في المكتب",
        "ta_marbuta": "في مدرسةٍ حكومية",
        "alef_maqsura": "بناء المستشفى الجديد",
        "tatweel": "دفع رشـــوة كبيرة",
    }.items():
        ids[name], _key = await make_case(env["sm"], env["team"].public_key(), fields={"description": text})
    assert await find(env, "احمد") == [ids["hamza"]]
    assert await find(env, "مدرسه حكوميه") == [ids["ta_marbuta"]]
    assert await find(env, "المستشفي") == [ids["alef_maqsura"]]
    assert await find(env, "رشوة") == [ids["tatweel"]]
    assert await find(env, "إسلام") == []


async def test_search_respects_access_the_filter_and_the_limit(env):
    sm, team = env["sm"], env["team"]
    days = [dt.date(2026, 1, d) for d in range(1, 6)]
    ids = []
    for day in days:
        report_id, _key = await make_case(sm, team.public_key(), created_on=day, governorate="gaza",
                                          fields={"description": f"common phrase {day}"})
        ids.append(report_id)
    bobs, _key = await make_case(sm, team.public_key(), governorate="nablus", fields={"description": "common phrase"})
    async with write_session(sm) as session:
        await assign(session, env["admin"], [bobs], env["bob"].user_id)
    newest_first = list(reversed(ids))
    assert await find(env, "common phrase", "admin") == [bobs, *newest_first]  # bobs' date is later
    assert await find(env, "common phrase", "alice") == newest_first
    assert await find(env, "common phrase", "vera") == []
    assert await find(env, "common phrase", "admin", InboxFilter(governorate="gaza")) == newest_first
    assert await find(env, "common phrase", "admin", InboxFilter(governorate="gaza"), limit_cases=2) == newest_first[:2]
    # A flag filter uses the given day and rules.
    overdue = await find(env, "common phrase", "admin", InboxFilter(flag="ack_overdue"),
                         today=dt.date(2026, 1, 10), deadlines=DeadlineRules())
    assert overdue == newest_first[3:]  # received 1-2 January (due 8-9 January); the 3rd is due on the 10th


async def test_a_case_that_fails_to_open_is_skipped_without_details(env, caplog):
    sm, team = env["sm"], env["team"]
    good, _key = await make_case(sm, team.public_key(), fields={"description": "secret word"})
    bad, _key = await make_case(sm, team.public_key(), fields={"description": "secret word"})
    async with write_session(sm) as session:
        await session.execute(update(ReportField).where(ReportField.report_id == bad).values(sealed=b"\x01" + b"0" * 40))
    with caplog.at_level(logging.WARNING):
        assert await find(env, "secret word") == [good]
    assert "1 case" in caplog.text and bad not in caplog.text and "secret" not in caplog.text


async def test_search_is_not_for_volunteers_and_needs_the_right_team_key(env):
    report_id, _key = await make_case(env["sm"], env["team"].public_key(), fields={"description": "x marks"})
    assert await find(env, "x marks", "admin") == [report_id]
    assert await find(env, "x marks", "vera") == []
    async with env["sm"]() as session:  # another team's key opens nothing
        assert await search(session, env["admin"], InboxFilter(), "x marks", TeamPrivateKey.generate()) == []


# -- the filter in the query string ---------------------------------------------------------


class MultiDict(dict):
    """Starlette's QueryParams in miniature: repeated keys, ``getlist``."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = list(pairs)
        for key, value in self.pairs:
            self[key] = value

    def getlist(self, key):
        return [value for k, value in self.pairs if k == key]


def test_filter_from_query_round_trip():
    f = InboxFilter(
        designation="r-7k",
        kind="corruption",
        category="bribery",
        service="health",
        sector="ministry",
        governorate="gaza",
        statuses=("received", "in_review"),
        priority="urgent",
        label="Media",
        assignee="me",
        received_from=dt.date(2026, 1, 1),
        received_to=dt.date(2026, 1, 31),
        flag="due_soon",
        unseen_only=True,
        sort="deadline",
        descending=False,
        page=3,
        page_size=25,
    )
    assert f.designation == "R-7K" and f.label == "media"
    assert InboxFilter.from_query(MultiDict(f.to_query())) == f
    assert InboxFilter().to_query() == []
    assert InboxFilter.from_query({}) == InboxFilter()


def test_filter_from_query_ignores_bad_values():
    query = MultiDict(
        [
            ("designation", "R-7K'; DROP"),
            ("kind", "Corruption!"),
            ("status", "received,bogus"),
            ("status", "closed"),
            ("priority", "critical"),
            ("label", "x" * 40),
            ("assignee", "someone"),
            ("received_from", "2026-02-30"),
            ("received_to", "yesterday"),
            ("flag", "late"),
            ("unseen", "maybe"),
            ("sort", "password"),
            ("dir", "sideways"),
            ("page", "-2"),
            ("page_size", "100000"),
            ("governorate", "hebron"),
            ("utm_source", "x"),
        ]
    )
    f = InboxFilter.from_query(query)
    assert f == InboxFilter(statuses=("received", "closed"), governorate="hebron")
    assert InboxFilter.from_query({"page": "٣", "page_size": "10", "dir": "asc", "sort": "age"}) == InboxFilter(
        page_size=10, descending=False, sort="age"
    )
    assert InboxFilter.from_query({"status": ["acknowledged", "referred"]}).statuses == ("acknowledged", "referred")
    with pytest.raises(ValueError):
        InboxFilter(page_size=500)
    with pytest.raises(ValueError):
        InboxFilter(sort="nope")


async def test_several_words_match_in_any_order_and_the_article_is_ignored(env):
    team = env["team"].public_key()
    bribe, _ = await make_case(env["sm"], team, fields={"description": "طلب موظف رشوة في بلدية نابلس"})
    pump, _ = await make_case(env["sm"], team, fields={"description": "The water pump is broken again"})
    other, _ = await make_case(env["sm"], team, fields={"description": "the pump works; the gate is broken"})
    assert await find(env, "رشوة نابلس") == [bribe]
    assert await find(env, "نابلس رشوة") == [bribe]
    assert await find(env, "الرشوة") == [bribe]
    assert await find(env, "والبلدية") == [bribe]
    assert sorted(await find(env, "pump broken")) == sorted([pump, other])
    assert await find(env, "water broken") == [pump]
    assert await find(env, "رشوة الخليل") == []  # every word must be there
