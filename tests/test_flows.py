"""Unit and property tests of the pure report/complaint state machine."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nazaha.flows import choices
from nazaha.flows.report_flow import (
    CHOICES,
    DESCRIPTION_MAX,
    DESCRIPTION_MIN,
    VOICE_DESCRIPTION,
    OPTIONAL_STEPS,
    QUESTIONS,
    Ask,
    Attach,
    Back,
    Cancel,
    Choose,
    ConfirmCancel,
    Continue,
    DeleteEvidence,
    Discarded,
    Done,
    Draft,
    Edit,
    EvidenceItem,
    EvidenceLimits,
    Fetch,
    FetchFailed,
    Help,
    Kind,
    NonText,
    Notice,
    Remove,
    SafetyRead,
    Step,
    Stored,
    Submit,
    SubmitReport,
    Text,
    normalize_phone,
    split_answers,
    start,
    step,
)

LONG = "The head of procurement took a cash payment to award the tender."


def run(draft, *events):
    effects = ()
    for event in events:
        t = step(draft, event)
        draft, effects = t.draft, t.effects
    return draft, effects


def notices(effects):
    return [e.code for e in effects if isinstance(e, Notice)]


def corruption_at_review(contact="anonymous"):
    d = start(Kind.CORRUPTION, safety_seen=True).draft
    d, _ = run(
        d,
        Choose("category", "bribery"),
        Choose("sector", "ministry"),
        Choose("governorate", "hebron"),
        Choose("when", "last_month"),
        Text(LONG),
        Done(),
        Done(),  # no evidence
        Choose("contact", contact),
    )
    if contact == "anonymous":
        d, _ = run(d, Choose("notify", "none"))
    return d


def test_safety_notice_first_then_first_question():
    t = start(Kind.CORRUPTION, safety_seen=False)
    assert t.draft.step is Step.SAFETY and t.effects == (Ask(Step.SAFETY),)
    t2 = step(t.draft, Continue())
    assert t2.draft.step is Step.CATEGORY
    assert SafetyRead() in t2.effects and Ask(Step.CATEGORY) in t2.effects
    assert start(Kind.COMPLAINT, safety_seen=True).draft.step is Step.SERVICE


def test_corruption_flow_every_step_to_submit():
    d = corruption_at_review()
    assert d.step is Step.REVIEW
    assert d.answers == {
        "category": "bribery",
        "sector": "ministry",
        "governorate": "hebron",
        "when": "last_month",
        "description": LONG,
        "contact": "anonymous",
        "notify": "none",
    }
    t = step(d, Submit())
    assert t.draft is None
    assert t.effects == (SubmitReport(Kind.CORRUPTION, dict(d.answers)),)
    assert "evidence" not in d.answers


def test_complaint_flow_with_contact_details_after_consent():
    d = start(Kind.COMPLAINT, safety_seen=True).draft
    d, eff = run(
        d,
        Choose("service", "water_electricity"),
        Choose("governorate", "gaza"),
        Text("No water in our street for three weeks now, nobody answers."),
        Done(),
        Done(),
        Choose("contact", "share"),
    )
    assert d.step is Step.CONSENT
    d, _ = run(d, Choose("consent", "agree"))
    assert d.step is Step.CONTACT_NAME
    d, _ = run(d, Text("Samir"))
    assert d.step is Step.CONTACT_PHONE
    d, eff = run(d, Text("0599 ١٢٣ ٤٥٦"))
    assert d.step is Step.NOTIFY
    d, eff = run(d, Choose("notify", "chat"))
    assert d.step is Step.REVIEW
    assert d.answers["contact_name"] == "Samir"
    assert d.answers["contact_phone"] == "0599 ١٢٣ ٤٥٦"
    triage, sealed = split_answers(Kind.COMPLAINT, d.answers)
    assert triage == {"service": "water_electricity", "governorate": "gaza"}
    assert "contact_name" in sealed and "consent" not in sealed and "notify" not in sealed


def test_declining_consent_keeps_reporter_anonymous():
    d = corruption_at_review("share")
    assert d.step is Step.CONSENT
    d, eff = run(d, Choose("consent", "decline"))
    assert d.step is Step.NOTIFY and d.answers["contact"] == "anonymous"
    assert "stays_anonymous" in notices(eff)


def test_phone_is_optional_and_validated():
    d, _ = run(corruption_at_review("share"), Choose("consent", "agree"), Text("Name"))
    d2, eff = run(d, Text("call me"))
    assert d2.step is Step.CONTACT_PHONE and "phone_invalid" in notices(eff)
    d3, _ = run(d, Done())
    assert d3.step is Step.NOTIFY and "contact_phone" not in d3.answers
    assert normalize_phone("+970 59-123-4567") == "+970591234567"
    assert normalize_phone("٠٥٩٩١٢٣٤٥٦") == "0599123456"
    assert normalize_phone("12") is None


def test_description_too_short_asks_for_more_and_keeps_parts():
    d, _ = run(start(Kind.COMPLAINT, safety_seen=True).draft, Choose("service", "health"), Choose("governorate", "jenin"))
    d, eff = run(d, Text("short"), Done())
    assert d.step is Step.DESCRIPTION
    assert "description_too_short" in notices(eff)
    assert d.parts == ("short",)
    d, _ = run(d, Text("x" * DESCRIPTION_MIN), Done())
    assert d.answers["description"] == "short\n\n" + "x" * DESCRIPTION_MIN


def test_description_cap_is_explained_never_cut():
    d, _ = run(start(Kind.COMPLAINT, safety_seen=True).draft, Choose("service", "health"), Choose("governorate", "jenin"))
    d, _ = run(d, *[Text("a" * 4096)] * 4)
    before = d
    d, eff = run(d, Text("b" * 4096))
    assert d == before  # not appended, not truncated
    assert eff[0] == Notice("description_too_long", {"limit": DESCRIPTION_MAX, "remaining": DESCRIPTION_MAX - 4 * 4096})
    d, _ = run(d, Text("b" * (DESCRIPTION_MAX - 4 * 4096)), Done())
    assert len(d.answers["description"]) == DESCRIPTION_MAX + 2 * 4


def test_description_text_is_kept_exactly():
    weird = "\u200fرشوة\u200b in \x07 the \u202e office " + "\u0000" + "z" * 40
    d, _ = run(start(Kind.COMPLAINT, safety_seen=True).draft, Choose("service", "health"), Choose("governorate", "jenin"), Text(weird), Done())
    assert d.answers["description"] == weird


def test_back_walks_to_previous_question_and_keeps_answers():
    d = corruption_at_review()
    d, _ = run(d, Back())
    assert d.step is Step.NOTIFY
    d, _ = run(d, Back())
    assert d.step is Step.CONTACT
    d, _ = run(d, Back())
    assert d.step is Step.EVIDENCE
    d, _ = run(d, Back(), Back())
    assert d.step is Step.WHEN
    assert d.answers["description"] == LONG and d.answers["category"] == "bribery"
    d, _ = run(d, Back(), Back(), Back())
    assert d.step is Step.CATEGORY
    d, eff = run(d, Back())
    assert d.step is Step.CONFIRM_CANCEL  # leaving asks first


def test_back_in_contact_subflow():
    d, _ = run(corruption_at_review("share"), Choose("consent", "agree"), Text("N"), Text("0599123456"), Choose("notify", "none"))
    assert d.step is Step.REVIEW
    assert [run(d, *[Back()] * n)[0].step for n in (1, 2, 3, 4, 5)] == [
        Step.NOTIFY, Step.CONTACT_PHONE, Step.CONTACT_NAME, Step.CONSENT, Step.CONTACT
    ]


def test_edit_from_review_returns_to_review_and_changes_only_that_field():
    d = corruption_at_review()
    d, eff = run(d, Edit("governorate"))
    assert d.step is Step.GOVERNORATE and d.editing
    d, _ = run(d, Choose("governorate", "nablus"))
    assert d.step is Step.REVIEW and not d.editing
    assert d.answers["governorate"] == "nablus" and d.answers["sector"] == "ministry"


def test_edit_description_done_without_text_keeps_old():
    d, _ = run(corruption_at_review(), Edit("description"), Done())
    assert d.step is Step.REVIEW and d.answers["description"] == LONG
    # Issue 8: new text adds to the description; replacing it asks first
    # (tests/test_flows_conversation.py).
    d, _ = run(d, Edit("description"), Text("A completely new description of the events."), Done())
    assert d.answers["description"] == LONG + "\n\nA completely new description of the events."


def test_edit_back_returns_to_review_unchanged():
    d = corruption_at_review()
    d2, _ = run(d, Edit("when"), Back())
    assert d2.step is Step.REVIEW and d2.answers == d.answers


def test_edit_contact_from_share_to_anonymous_drops_details():
    d, _ = run(corruption_at_review("share"), Choose("consent", "agree"), Text("N"), Text("0599123456"), Choose("notify", "chat"))
    d, _ = run(d, Edit("contact"), Choose("contact", "anonymous"))
    assert d.step is Step.REVIEW
    assert "contact_name" not in d.answers and "contact_phone" not in d.answers
    assert d.answers["notify"] == "chat"


def test_cancel_asks_then_discards_or_resumes():
    d = corruption_at_review()
    asked, eff = run(d, Cancel())
    assert asked.step is Step.CONFIRM_CANCEL and eff == (Ask(Step.CONFIRM_CANCEL),)
    resumed, _ = run(asked, ConfirmCancel(False))
    assert resumed.step is Step.REVIEW and resumed.answers == d.answers
    gone, eff = run(asked, ConfirmCancel(True))
    assert gone is None and eff == (Discarded(),)


def test_bad_input_keeps_state():
    d = start(Kind.CORRUPTION, safety_seen=True).draft
    for event, code in [
        (NonText("sticker"), "use_buttons"),
        (Text("bribery"), "use_buttons"),
        (Choose("category", "not-a-category"), "button_expired"),
        (Choose("governorate", "hebron"), "button_expired"),  # a button from another step
        (Submit(), "button_expired"),
        (Edit("category"), "button_expired"),
    ]:
        t = step(d, event)
        assert t.draft == d, event
        assert notices(t.effects) == [code]
    d2, _ = run(d, Choose("category", "other"), Choose("sector", "other"), Choose("governorate", "undisclosed"), Choose("when", "ongoing"))
    t = step(d2, NonText("photo"))
    assert t.draft == d2 and notices(t.effects) == ["description_text_or_voice"]
    t = step(d2, Help())
    assert t.draft == d2 and notices(t.effects) == ["help"]


def test_every_choice_code_fits_callback_data():
    for step_name, values in CHOICES.items():
        for value in values:
            assert len(f"f:{step_name}:{value}".encode()) <= 64
    assert len(choices.GOVERNORATES) == 17


def test_draft_serialisation_round_trip_and_rejects_garbage():
    d, _ = run(corruption_at_review("share"), Choose("consent", "agree"), Cancel())
    assert Draft.from_dict(d.to_dict()) == d
    assert Draft.from_dict({"v": 2}) is None
    assert Draft.from_dict({"v": 1, "kind": "x"}) is None
    assert Draft.from_dict({**d.to_dict(), "answers": {"a": 1}}) is None


# ---- evidence ------------------------------------------------------------------------

def at_evidence(kind=Kind.CORRUPTION):
    d = corruption_at_review() if kind is Kind.CORRUPTION else None
    d, _ = run(d, Edit("evidence"))
    assert d.step is Step.EVIDENCE and d.editing
    return d


def item(n: int, size: int = 1000, flagged=None) -> EvidenceItem:
    return EvidenceItem(id=f"{n:032x}", kind="photo", size=size, flagged=flagged)


CTX = {"report_id": "ab" * 16, "data_key": "k"}


def test_attach_asks_the_handler_to_fetch_with_warnings():
    d = at_evidence()
    t = step(d, Attach("photo", 2000))
    assert t.draft == d and t.effects == (Fetch(Attach("photo", 2000)),)
    t = step(d, Attach("document", 2000, "scan.pdf", "application/pdf", forwarded=True))
    assert notices(t.effects) == ["document_warning", "forward_warning"]
    assert isinstance(t.effects[-1], Fetch)


def test_stored_items_accumulate_and_show_in_submit():
    d = at_evidence()
    d, eff = run(d, Stored(item(1), CTX))
    assert notices(eff) == ["evidence_added"] and eff[0].params == {"count": 1}
    d, eff = run(d, Stored(item(2, flagged="corrupt_image"), {"report_id": "other", "data_key": "x"}))
    assert notices(eff) == ["evidence_flagged"]
    assert d.context == CTX  # the first context stays: every blob is under one data key
    d, _ = run(d, Stored(item(2), CTX))  # a repeated Stored changes nothing
    assert len(d.evidence) == 2
    d, _ = run(d, Done())
    assert d.step is Step.REVIEW
    t = step(d, Submit())
    assert t.effects[0].evidence == (item(1), item(2, flagged="corrupt_image"))
    assert t.effects[0].context == CTX


def test_evidence_limits_are_explained():
    limits = EvidenceLimits(max_file_bytes=100, max_files=2, max_total_bytes=150)
    d = at_evidence()
    assert notices(step(d, Attach("video", 101), limits).effects) == ["file_too_big"]
    d, _ = run(d, Stored(item(1, 80), CTX))
    assert notices(step(d, Attach("video", 80), limits).effects) == ["evidence_too_large"]
    d, _ = run(d, Stored(item(2, 10), CTX))
    assert notices(step(d, Attach("photo", 1), limits).effects) == ["evidence_too_many"]
    assert notices(step(d, FetchFailed("too_big"), limits).effects) == ["file_too_big"]


def test_bad_input_at_evidence_step():
    d = at_evidence()
    assert notices(step(d, NonText("location")).effects) == ["location_refused"]
    assert notices(step(d, NonText("sticker")).effects) == ["evidence_unsupported"]
    assert notices(step(d, Attach("sticker", 10)).effects) == ["evidence_unsupported"]
    assert notices(step(d, Text("see photo")).effects) == ["evidence_expected"]
    # Files elsewhere are refused like any non-text input.
    desc, _ = run(d, Back(), Edit("description"))
    assert notices(step(desc, Attach("photo", 10)).effects) == ["description_text_or_voice"]


def test_remove_item_from_review_deletes_its_blob():
    d, _ = run(at_evidence(), Stored(item(1), CTX), Stored(item(2), CTX), Done())
    t = step(d, Remove(item(1).id))
    assert t.effects[0] == DeleteEvidence(item(1).id)
    assert t.draft.evidence == (item(2),) and t.draft.step is Step.REVIEW
    assert notices(step(t.draft, Remove(item(1).id)).effects) == ["button_expired"]


# ---- property test ---------------------------------------------------------------------

step_names = [str(s) for s in Step]
values = sorted({v for vs in CHOICES.values() for v in vs} | {"bogus"})
events = st.one_of(
    st.builds(Choose, st.sampled_from(step_names), st.sampled_from(values)),
    st.builds(Text, st.text(max_size=60)),
    st.builds(Text, st.just(LONG)),
    st.builds(NonText, st.sampled_from(["sticker", "photo", "location", "voice"])),
    st.just(Done()),
    st.just(Continue()),
    st.just(Back()),
    st.just(Cancel()),
    st.builds(ConfirmCancel, st.booleans()),
    st.builds(Edit, st.sampled_from(step_names + ["nope"])),
    st.just(Submit()),
    st.just(Help()),
    st.builds(Attach, st.sampled_from(["photo", "document", "voice", "sticker"]), st.integers(0, 30 * 2**20)),
    st.builds(lambda n: Stored(item(n), CTX), st.integers(0, 3)),
    st.builds(lambda n: Stored(item(n), CTX, as_description=True), st.integers(0, 3)),
    st.builds(lambda n: Remove(item(n).id), st.integers(0, 3)),
    st.builds(FetchFailed, st.sampled_from(["too_big", "failed"])),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(Kind)), st.booleans(), st.lists(events, max_size=60))
def test_random_inputs_never_crash_or_lose_confirmed_answers(kind, safety_seen, seq):
    draft = start(kind, safety_seen=safety_seen).draft
    for event in seq:
        t = step(draft, event)
        assert t.effects or isinstance(event, Stored), "every event gets an answer"
        if t.draft is None:
            # Only an explicit submit or a confirmed discard ends a draft.
            assert isinstance(t.effects[0], (SubmitReport, Discarded))
            if isinstance(t.effects[0], SubmitReport):
                assert dict(t.effects[0].answers) == dict(draft.answers)
                assert t.effects[0].evidence == draft.evidence
                assert all(str(s) in draft.answers for s in QUESTIONS[kind] if s not in OPTIONAL_STEPS)
            draft = start(kind, safety_seen=True).draft
            continue
        new = t.draft
        assert Draft.from_dict(new.to_dict()) == new
        # Evidence leaves a draft only through an explicit Remove of that item.
        removed = {i.id for i in draft.evidence} - {i.id for i in new.evidence}
        assert not removed or (isinstance(event, Remove) and removed == {event.item_id})
        for key, value in draft.answers.items():
            if new.answers.get(key) == value:
                continue
            # A confirmed answer may change only by answering its own question again,
            # or be dropped as part of switching the contact preference, or (the
            # description) when the voice note it consisted of is removed.
            if key == "description" and isinstance(event, Remove) and event.item_id == draft.description_voice:
                continue
            editing_field = draft.step in (Step(key) if key in step_names else None, Step.CONSENT, Step.CONTACT, Step.CONTACT_PHONE)
            assert editing_field, (key, draft.step, event)
        draft = new


# ---- voice notes ------------------------------------------------------------------------


def voice_item(n: int, flagged=None) -> EvidenceItem:
    return EvidenceItem(id=f"{n:032x}", kind="voice", size=4000, mime_type="audio/ogg", flagged=flagged)


def at_description():
    d = start(Kind.COMPLAINT, safety_seen=True).draft
    d, _ = run(d, Choose("service", "other"), Choose("governorate", "undisclosed"))
    assert d.step is Step.DESCRIPTION
    return d


def test_first_recording_of_a_draft_is_warned_about_once():
    d = at_evidence()
    voice = Attach("voice", 4000, None, "audio/ogg")
    t = step(d, voice)
    assert notices(t.effects) == ["voice_warning"] and t.effects[-1] == Fetch(voice)
    assert t.draft.voice_warned and Draft.from_dict(t.draft.to_dict()) == t.draft
    again = step(t.draft, Attach("audio", 9000, "memo.mp3", "audio/mpeg"))
    assert notices(again.effects) == [] and isinstance(again.effects[-1], Fetch)
    # Audio sent as a document is a recording too; the warning comes before the fetch.
    doc = step(d, Attach("document", 9000, "تسجيل.m4a", "application/octet-stream"))
    assert notices(doc.effects) == ["voice_warning", "document_warning"]
    # A refused recording is not warned about and does not use up the warning.
    big = step(d, Attach("voice", 30 * 2**20))
    assert notices(big.effects) == ["file_too_big"] and not big.draft.voice_warned
    d, eff = run(t.draft, Stored(voice_item(1, flagged="corrupt_audio"), CTX))
    assert notices(eff) == ["voice_flagged"]


def test_voice_note_as_description_with_the_same_warning():
    d, _ = run(at_description(), Text("At the clinic"))
    voice = Attach("voice", 4000, None, "audio/ogg")
    t = step(d, voice)
    assert notices(t.effects) == ["voice_warning"]
    assert t.effects[-1] == Fetch(voice, as_description=True)
    d, eff = run(t.draft, Stored(voice_item(1), CTX, as_description=True))
    assert notices(eff) == ["voice_description_kept"] and d.step is Step.EVIDENCE
    assert d.answers["description"] == "At the clinic\n\n" + VOICE_DESCRIPTION
    assert d.evidence == (voice_item(1),) and d.description_voice == voice_item(1).id
    d, _ = run(d, Done(), Choose("contact", "anonymous"), Choose("notify", "none"))
    t = step(d, Submit())
    assert t.effects[0].answers["description"].endswith(VOICE_DESCRIPTION)
    assert t.effects[0].evidence == (voice_item(1),)


def test_removing_the_description_voice_note_asks_for_the_description_again():
    d, _ = run(at_description(), Text("At the clinic"), Stored(voice_item(1), CTX, as_description=True),
               Done(), Choose("contact", "anonymous"), Choose("notify", "none"))
    assert d.step is Step.REVIEW
    t = step(d, Remove(voice_item(1).id))
    assert notices(t.effects) == ["evidence_removed", "description_voice_removed"]
    assert t.draft.step is Step.DESCRIPTION and t.draft.editing
    assert "description" not in t.draft.answers and t.draft.parts == ("At the clinic",)
    d, _ = run(t.draft, Text(LONG), Done())
    assert d.step is Step.REVIEW and d.answers["description"] == "At the clinic\n\n" + LONG


def test_other_files_at_the_description_step_are_refused():
    d = at_description()
    for attach in (Attach("photo", 10), Attach("document", 10, "scan.pdf", "application/pdf"), Attach("video", 10)):
        t = step(d, attach)
        assert t.draft == d and notices(t.effects) == ["description_text_or_voice"]
