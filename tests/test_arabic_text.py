"""Arabic and right-to-left: plural forms, directional isolates, arrows, wording, keyboards.

Every message with a count is rendered for n = 0, 1, 2, 3, 11 and 100 in both languages.
"""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from nazaha.bot.app import LOCALES_DIR, build_i18n
from nazaha.flows import report_flow as flow
from nazaha.handlers import screens

I18N = build_i18n()
COUNTS = (0, 1, 2, 3, 11, 100)
LRI, FSI, PDI = "\u2066", "\u2068", "\u2069"


def render(locale: str, fn, *args, **kwargs):
    with I18N.context(), I18N.use_locale(locale):
        return fn(*args, **kwargs)


def draft(kind=flow.Kind.CORRUPTION, step=flow.Step.REVIEW, **kw) -> flow.Draft:
    answers = {
        "category": "bribery", "sector": "ministry", "service": "health", "governorate": "gaza",
        "when": "ongoing", "description": "x" * 40, "contact": "share", "notify": "none",
        "contact_name": "Mona", "contact_phone": "0599 123 456",
    }
    return flow.Draft(kind=kind, step=step, answers=answers, **kw)


def evidence(n: int) -> tuple[flow.EvidenceItem, ...]:
    # 5 KB: the review lists each file with its size, a number that is not the count.
    return tuple(flow.EvidenceItem(id=f"e{i}", kind="photo", size=5 * 1024) for i in range(n))


# Every message with a count, as the user sees it: n -> text.
COUNTED = {
    "evidence_count": lambda n: screens.evidence_count(n),
    "evidence_added": lambda n: screens.notice("evidence_added", {"count": n}),
    "evidence_removed": lambda n: screens.notice("evidence_removed", {"count": n}),
    "description_part": lambda n: screens.notice("description_part", {"total": n}),
    "description_too_short": lambda n: screens.notice("description_too_short", {"minimum": n}),
    "description_too_long": lambda n: screens.notice(
        "description_too_long", {"limit": 20000, "remaining": n}),
    "written_so_far": lambda n: screens.question(
        flow.Draft(kind=flow.Kind.CORRUPTION, step=flow.Step.DESCRIPTION, parts=("x" * n,)))[0].text
        if n else screens.ngettext(  # an empty part is never kept; render the same message
            "You have written {count} character so far.",
            "You have written {count} characters so far.", 0).format(count=0),
    "draft_expired": lambda n: screens.draft_expired(n),
    "session_expired": lambda n: screens.session_expired(n),
    "case_view_evidence": lambda n: screens.case_view("received", None, [], n).text,
    "review_evidence": lambda n: screens.review(draft(evidence=evidence(n)))[-1].text,
}
# The noun each message counts, in Arabic: singular and dual carry no numeral.
ARABIC_ONE = ("ملفًا واحدًا", "ملف واحد", "حرفًا واحدًا", "حرف واحد", "ساعة واحدة", "دقيقة واحدة")
ARABIC_TWO = ("ملفين", "ملفان", "حرفين", "حرفان", "ساعتين", "دقيقتين")


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_every_count_reads_right_in_arabic(name):
    texts = {n: render("ar", COUNTED[name], n) for n in COUNTS}
    numeral = re.compile(r"(?<![\d.])(\d+)(?![\d.])")
    for n, text in texts.items():
        numbers = {int(x) for x in numeral.findall(text)} - {20000}
        if n in (1, 2):
            assert n not in numbers, (n, text)  # "ملفًا واحدًا", not "1 ملف"
            words = ARABIC_ONE if n == 1 else ARABIC_TWO
            assert any(w in text for w in words), (n, text)
        elif n in (3, 11, 100):
            assert n in numbers, (n, text)
    # 3-10 use the plural (ملفات، أحرف...), 11-99 the accusative singular (ملفًا، حرفًا...),
    # 100+ the genitive singular: at least four different wordings over the six counts.
    assert len({re.sub(r"\d+", "N", t) for t in texts.values()}) >= 4, texts


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_every_count_reads_right_in_english(name):
    for n in COUNTS:
        text = render("en", COUNTED[name], n)
        if name in ("evidence_count", "case_view_evidence", "review_evidence") and n == 0:
            assert "no files" in text
            continue
        assert re.search(rf"(?<!\d){n}(?!\d)", text), (n, text)
        assert not re.search(r"\b1 (file|character|hour|minute)s\b", text), text
        assert not re.search(r"\b(?:[02-9]|\d\d+) (file|character|hour|minute)\b(?! is)", text) or n == 1, text


def test_evidence_count_example_from_the_issue():
    assert render("ar", screens.evidence_count, 2) == "ملفان"
    assert render("ar", screens.notice, "evidence_added", {"count": 1}).endswith("أضفت حتى الآن ملفًا واحدًا. أرسل المزيد، أو اضغط «انتهيت».")
    assert "الأدلة: ملفان" in render("ar", lambda: screens.case_view("received", None, [], 2).text)


# ---- directional isolates ------------------------------------------------------------------


def _arabic_catalog():
    with (LOCALES_DIR / "ar" / "LC_MESSAGES" / "nazaha.po").open("rb") as f:
        return read_po(f, locale="ar")


LTR_RUNS = (
    re.compile(r"/[a-z]+"),  # commands
    re.compile(r"\d+(?:[ \-./]\d+)+"),  # phone numbers, dates, receipts with separators
    re.compile(r"[\w.-]+@[\w.-]+"),  # e-mail addresses
    re.compile(r"https?://\S+"),
    re.compile(r"\+"),
)


def _outside_isolates(text: str) -> str:
    return re.sub(f"[{LRI}{FSI}][^{PDI}]*{PDI}", "", text)


def test_left_to_right_runs_in_arabic_translations_are_isolated():
    for message in _arabic_catalog():
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in strings:
            rest = _outside_isolates(text)
            for pattern in LTR_RUNS:
                assert not pattern.search(rest), (pattern.pattern, text)


def test_values_the_bot_formats_are_isolated():
    assert screens.ltr("0599 123 456") == f"{LRI}0599 123 456{PDI}"
    assert screens.isolate("منى") == f"{FSI}منى{PDI}"
    review = render("ar", screens.review, draft())[-1].text
    assert f"{LRI}0599 123 456{PDI}" in review
    assert f"{FSI}Mona{PDI}" in review
    receipt = render("ar", screens.receipt, "1234 5678 9012 3456 7890")
    assert f"{LRI}1234 5678 9012 3456 7890{PDI}" in receipt
    thread = render("ar", lambda: screens.case_view("received", None, [("staff", "2026-11-30", "ok")], 0).text)
    assert f"{LRI}2026-11-30{PDI}" in thread
    safety = render("ar", screens.safety_text, "https://example.org/safe")
    assert f"{LRI}https://example.org/safe{PDI}" in safety
    help_text = render("ar", screens.help_text).text
    for command in ("/start", "/report", "/wipe", "/language"):
        assert f"{LRI}{command}{PDI}" in help_text


# ---- arrows, wording, keyboards -----------------------------------------------------------


def _labels(screen: screens.Screen) -> list[str]:
    return [b.text for row in screen.keyboard.inline_keyboard for b in row]


def test_back_arrow_points_back_in_each_language():
    d = draft(step=flow.Step.WHEN)
    ar_labels = _labels(render("ar", screens.question, d)[0])
    en_labels = _labels(render("en", screens.question, d)[0])
    assert "➡️ رجوع" in ar_labels and not any("⬅️" in x for x in ar_labels)
    assert "⬅️ Back" in en_labels
    assert _labels(render("ar", screens.safety_screen, None)) == ["➡️ القائمة الرئيسية"]


def test_a_complaint_is_called_a_complaint():
    complaint = draft(kind=flow.Kind.COMPLAINT)
    review = render("ar", screens.review, complaint)[-1]
    assert "شكواك" in review.text and "بلاغك" not in review.text
    assert "📨 إرسال الشكوى" in _labels(review)
    en = render("en", screens.review, complaint)[-1]
    assert "your complaint" in en.text and "📨 Send the complaint" in _labels(en)
    cancel = render("ar", screens.question, draft(kind=flow.Kind.COMPLAINT, step=flow.Step.CONFIRM_CANCEL))[0]
    assert "الشكوى" in cancel.text and "البلاغ" not in cancel.text
    assert "شكواك" in render("ar", screens.notice, "stays_anonymous", {}, flow.Kind.COMPLAINT)
    assert "your report" in render("en", screens.notice, "stays_anonymous", {}, flow.Kind.CORRUPTION)


def test_arabic_wording_fixes():
    catalog = {m.id: m.string for m in _arabic_catalog() if m.id and isinstance(m.id, str)}
    share = catalog["Share my contact details in confidence with the caseworkers"]
    assert share.count("مع") == 1
    too_short = render("ar", screens.notice, "description_too_short", {"minimum": 30})
    assert "ولا يكفي للعمل عليه" not in too_short and "30 حرفًا" in too_short
    # No English-style colon joining two clauses in the messages that had one.
    for msgid in ("Acknowledged: a caseworker has read it.",
                  "Done: this report will send no more notifications.",
                  "Stay anonymous: I will follow up with my receipt"):
        assert ":" not in catalog[msgid], msgid


def test_phone_refusal_says_why_and_gives_an_example():
    for text, reason in (("0599", "short"), ("0599 123 456 789 012 345", "long"), ("call me", "letters")):
        transition = flow.step(draft(step=flow.Step.CONTACT_PHONE), flow.Text(text))
        notice = next(e for e in transition.effects if isinstance(e, flow.Notice))
        assert notice.code == "phone_invalid"
        for locale in ("ar", "en"):
            said = render(locale, screens.notice, notice.code, dict(notice.params))
            assert f"{LRI}0599 123 456{PDI}" in said, said
        english = render("en", screens.notice, notice.code, dict(notice.params))
        assert {"short": "too short", "long": "too long", "letters": "only digits"}[reason] in english


def test_long_keyboards_use_columns():
    governorates = render("ar", screens.question, draft(step=flow.Step.GOVERNORATE))[0]
    assert len(governorates.keyboard.inline_keyboard) <= 10  # 17 choices + back/cancel
    for locale in ("ar", "en"):
        review = render(locale, screens.review, draft(evidence=evidence(3)))[-1]
        assert len(review.keyboard.inline_keyboard) <= 10, locale  # was 14 rows
        categories = render(locale, screens.question, draft(step=flow.Step.CATEGORY))[0]
        # Long labels stay one a row.
        assert all(len(row) == 1 for row in categories.keyboard.inline_keyboard[:-1])


def test_done_button_under_received_so_far():
    screen = render("ar", screens.notice_screen, "description_part", {"total": 40})
    assert _labels(screen) == ["✅ انتهيت"]
    assert render("en", screens.notice_screen, "use_buttons", {}).keyboard is None
    # After evidence too ("Send more, or tap Done"): Done finishes the evidence step.
    for code in ("evidence_added", "evidence_flagged", "voice_flagged"):
        screen = render("en", screens.notice_screen, code, {"count": 1})
        assert screen.text.endswith("Send more, or tap Done."), code
        assert [b.callback_data for row in screen.keyboard.inline_keyboard for b in row] == ["n:done:evidence"]
    assert render("en", screens.notice_screen, "evidence_removed", {"count": 0}).keyboard is None
