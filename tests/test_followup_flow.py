"""Unit and property tests of the pure follow-up state machine."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nazaha.flows import followup_flow as fu
from nazaha.flows.report_flow import (
    At, Attach, Back, Cancel, Choose, Done, EvidenceItem, EvidenceLimits, FetchFailed, Help, NonText, Stored,
    Text,
)

CASE = {"report_id": "ab" * 16, "data_key": "secret"}


def run(session, *events, limits=EvidenceLimits()):
    effects = ()
    for event in events:
        t = fu.step(session, event, limits)
        session, effects = t.session, t.effects
    return session, effects


def codes(effects):
    return [e.code for e in effects if isinstance(e, fu.Notice)]


def opened():
    s, _ = run(fu.start().session, fu.Unlocked(CASE, evidence_count=1, evidence_bytes=500))
    return s


def test_receipt_text_is_checked_by_the_handler_then_case_opens():
    s = fu.start().session
    t = fu.step(s, Text("1234 5678 9012 3456 7890"))
    assert t.session == s and t.effects == (fu.TryReceipt("1234 5678 9012 3456 7890"),)
    s2, eff = run(s, fu.Unlocked(CASE))
    assert s2.step is fu.FStep.CASE and s2.case == CASE and eff == (fu.ShowCase(),)


def test_unknown_receipt_asks_again_and_throttled_ends():
    s = fu.start().session
    again, eff = run(s, fu.UnlockFailed("unknown"))
    assert again == s and codes(eff) == ["receipt_unknown"]
    gone, eff = run(s, fu.UnlockFailed("throttled"))
    assert gone is None and codes(eff) == ["receipt_throttled"] and isinstance(eff[-1], fu.End)
    same, eff = run(s, NonText("sticker"))
    assert same == s and codes(eff) == ["receipt_expected"]


def test_reply_goes_to_the_thread_and_back_to_the_case():
    s, eff = run(opened(), Choose("case", "reply"))
    assert s.step is fu.FStep.REPLY
    s, eff = run(s, Text("\u200fYes, I have the invoice."))
    assert s.step is fu.FStep.CASE
    # Stored with the case, the typed message leaves the chat (DeleteTyped).
    assert eff == (
        fu.SendReply("\u200fYes, I have the invoice."), fu.DeleteTyped(), fu.Notice("reply_sent"), fu.ShowCase()
    )
    s, eff = run(s, Choose("case", "reply"), Text("x" * (fu.REPLY_MAX + 1)))
    assert s.step is fu.FStep.REPLY and codes(eff) == ["reply_too_long"]


def test_add_evidence_with_limits_and_save():
    limits = EvidenceLimits(max_file_bytes=100, max_files=2, max_total_bytes=1000)
    s, _ = run(opened(), Choose("case", "evidence"))
    t = fu.step(s, Attach("photo", 50), limits)
    assert t.effects == (fu.FetchEvidence(Attach("photo", 50)),)
    assert codes(fu.step(s, Attach("photo", 101), limits).effects) == ["file_too_big"]
    item = EvidenceItem(id="c" * 32, kind="photo", size=50)
    s, eff = run(s, Stored(item, CASE), limits=limits)
    assert eff[0] == fu.SaveEvidence(item) and s.evidence_count == 2
    assert codes(fu.step(s, Attach("photo", 1), limits).effects) == ["evidence_too_many"]
    assert codes(fu.step(s, NonText("location"), limits).effects) == ["location_refused"]
    s, eff = run(s, Done())
    assert s.step is fu.FStep.CASE and eff == (fu.ShowCase(),)


def test_end_and_cancel_close_the_session():
    for event in (Choose("case", "end"), Cancel()):
        s, eff = run(opened(), event)
        assert s is None and eff == (fu.End(),)


def test_withdrawing_contact_details_asks_first_then_withdraws_and_shows_the_case():
    s, eff = run(opened(), Choose("case", "withdraw_contact"))
    assert s.step is fu.FStep.WITHDRAW_CONTACT and s.case == CASE
    assert eff == (fu.Ask(fu.FStep.WITHDRAW_CONTACT),)  # nothing withdrawn yet
    assert fu.Session.from_dict(s.to_dict()) == s
    back, eff = run(s, At("withdraw_contact", fu.Confirm()))
    assert back.step is fu.FStep.CASE and back.case == CASE
    assert eff == (fu.WithdrawContact(), fu.Notice("contact_withdrawn"), fu.ShowCase())


def test_withdrawing_the_report_asks_first_then_withdraws_and_shows_the_case():
    s, eff = run(opened(), Choose("case", "withdraw_report"))
    assert s.step is fu.FStep.WITHDRAW_REPORT and eff == (fu.Ask(fu.FStep.WITHDRAW_REPORT),)
    back, eff = run(s, At("withdraw_report", fu.Confirm()))
    assert back.step is fu.FStep.CASE
    assert eff == (fu.WithdrawReport(), fu.Notice("report_withdrawn"), fu.ShowCase())


def test_no_keeps_everything_and_goes_back_to_the_case():
    for action in ("withdraw_contact", "withdraw_report"):
        s, _ = run(opened(), Choose("case", action))
        for no in (At(action, Back()), Back()):
            back, eff = run(s, no)
            assert back == opened() and eff == (fu.ShowCase(),)


def test_a_confirmation_acts_only_at_its_own_step():
    # "Yes" under an old question, once the session moved on, withdraws nothing.
    for action in ("withdraw_contact", "withdraw_report"):
        s, eff = run(opened(), At(action, fu.Confirm()))
        assert s == opened() and codes(eff) == ["button_expired"] and fu.ShowCase() in eff
    asking, _ = run(opened(), Choose("case", "withdraw_report"))
    s, eff = run(asking, At("withdraw_contact", fu.Confirm()))
    assert s == asking and codes(eff) == ["button_expired"]
    assert eff[-1] == fu.Ask(fu.FStep.WITHDRAW_REPORT)
    # "Yes" without its step is never enough.
    s, eff = run(asking, fu.Confirm())
    assert s == asking and codes(eff) == ["button_expired"]
    # A case button tapped under the confirmation is stale too; typing asks for the buttons.
    s, eff = run(asking, Choose("case", "reply"))
    assert s == asking and codes(eff) == ["button_expired"]
    s, eff = run(asking, Text("yes"))
    assert s == asking and codes(eff) == ["use_buttons"] and eff[-1] == fu.Ask(fu.FStep.WITHDRAW_REPORT)
    assert not any(isinstance(e, (fu.WithdrawContact, fu.WithdrawReport)) for e in eff)


def test_cancel_and_expiry_during_a_confirmation_withdraw_nothing():
    asking, _ = run(opened(), Choose("case", "withdraw_contact"))
    gone, eff = run(asking, Cancel())
    assert gone is None and eff == (fu.End(),)
    t = fu.expired(asking, At("withdraw_contact", fu.Confirm()))
    assert t.session == fu.Session(fu.FStep.RECEIPT)
    assert t.effects == (fu.SessionClosed(""), fu.Ask(fu.FStep.RECEIPT))


def test_session_serialisation():
    s = opened()
    assert fu.Session.from_dict(s.to_dict()) == s
    assert fu.Session.from_dict({"v": 9}) is None


events = st.one_of(
    st.builds(Text, st.text(max_size=30)),
    st.builds(NonText, st.sampled_from(["sticker", "location"])),
    st.builds(Choose, st.sampled_from(["case", "x"]), st.sampled_from(list(fu.ACTIONS) + ["bogus"])),
    st.just(Done()), st.just(Back()), st.just(Help()),
    st.builds(Attach, st.sampled_from(["photo", "document", "sticker"]), st.integers(0, 30 * 2**20)),
    st.builds(lambda: Stored(EvidenceItem(id="d" * 32, kind="photo", size=10), CASE)),
    st.builds(FetchFailed, st.sampled_from(["too_big", "failed"])),
    st.builds(fu.Unlocked, st.just(CASE)),
    st.builds(fu.UnlockFailed, st.sampled_from(["unknown", "malformed", "throttled"])),
    st.just(fu.Confirm()),
    st.builds(
        At,
        st.sampled_from(["case", "withdraw_contact", "withdraw_report", "reply"]),
        st.sampled_from([fu.Confirm(), Back(), Done()]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_random_inputs_never_crash_and_keep_the_case_until_the_end(seq):
    session = fu.start().session
    for event in seq:
        t = fu.step(session, event)
        assert t.effects
        # A withdrawal happens only when "Yes" is tapped under its own question.
        for effect, step in ((fu.WithdrawContact(), "withdraw_contact"), (fu.WithdrawReport(), "withdraw_report")):
            if effect in t.effects:
                assert session.step == step and event == At(step, fu.Confirm())
        if t.session is None:
            assert isinstance(t.effects[-1], fu.End)
            session = fu.start().session
            continue
        if session.case:
            assert t.session.case == session.case  # an open case stays open until End
        assert fu.Session.from_dict(t.session.to_dict()) == t.session
        session = t.session


def test_follow_up_recordings_are_warned_about_in_the_question_not_after():
    from nazaha.flows.report_flow import Attach as _Attach
    session = fu.Session(fu.FStep.EVIDENCE, {"key_ref": "r"})
    t = fu.step(session, _Attach("voice", 4000, None, "audio/ogg"))
    assert [e.code for e in t.effects if isinstance(e, fu.Notice)] == []
    assert isinstance(t.effects[-1], fu.FetchEvidence)
