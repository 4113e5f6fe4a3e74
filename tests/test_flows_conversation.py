"""Issue 8, "the conversation keeps what the user gave it": the pure parts of the flows."""

from __future__ import annotations

from nazaha.flows import followup_flow as fu
from nazaha.flows.report_flow import (
    Ask,
    At,
    ConfirmReplace,
    DeleteMessage,
    Done,
    Edit,
    Edited,
    KeepNumber,
    Kind,
    Notice,
    Replace,
    Step,
    Text,
    contains_receipt,
    is_receipt,
    start,
    step,
    strip_receipts,
)
from nazaha.handlers import callbacks as cb

LONG = "The head of procurement took a cash payment to award the tender."
RECEIPT = "1234 5678 9012 3456 7890"


def run(draft, *events):
    effects = ()
    for event in events:
        t = step(draft, event)
        draft, effects = t.draft, t.effects
    return draft, effects


def notices(effects):
    return [e.code for e in effects if isinstance(e, Notice)]


def at_description():
    d = start(Kind.COMPLAINT, safety_seen=True).draft
    d, _ = run(d, cb.parse(cb.choose("service", "health")),
               cb.parse(cb.choose("governorate", "hebron")))
    assert d.step is Step.DESCRIPTION
    return d


def at_review():
    d, _ = run(at_description(), Text(LONG, 11), At("description", Done()), At("evidence", Done()),
               cb.parse(cb.choose("contact", "share")), cb.parse(cb.choose("consent", "agree")),
               Text("Fatima", 12), Text("0599 123 456", 13), cb.parse(cb.choose("notify", "none")))
    assert d.step is Step.REVIEW
    return d


def test_nav_buttons_carry_their_step_within_64_bytes():
    data = cb.nav("done", "description")
    assert data == "n:done:description" and cb.parse(data) == At("description", Done())
    assert len(cb.nav("drop_number", "confirm_number").encode()) <= 64
    assert cb.parse("n:done:DESCRIPTION!") is None
    assert cb.parse("n:done") == Done()  # unstamped buttons act anywhere (old data)


def test_done_twice_under_the_description_does_not_skip_the_evidence_step():
    d, _ = run(at_description(), Text(LONG, 5))
    press = cb.parse(cb.nav("done", "description"))
    d, _ = run(d, press)
    assert d.step is Step.EVIDENCE
    d, effects = run(d, press)  # the same button again
    assert d.step is Step.EVIDENCE
    assert notices(effects) == ["button_expired"] and Ask(Step.EVIDENCE) in effects


def test_editing_the_description_shows_it_and_adds_to_it():
    d, _ = run(at_review(), Edit("description"))
    assert d.step is Step.DESCRIPTION and d.editing and d.parts == (LONG,)
    d, _ = run(d, Text("Also, the clerk was present.", 20), At("description", Done()))
    assert d.step is Step.REVIEW
    assert d.answers["description"] == LONG + "\n\nAlso, the clerk was present."


def test_replacing_the_description_asks_first():
    d, _ = run(at_review(), Edit("description"), At("description", Replace()))
    assert d.step is Step.CONFIRM_REPLACE and d.parts == (LONG,)
    kept, _ = run(d, At("confirm_replace", ConfirmReplace(drop=False)))
    assert kept.step is Step.DESCRIPTION and kept.parts == (LONG,)
    d, effects = run(d, At("confirm_replace", ConfirmReplace(drop=True)))
    assert d.step is Step.DESCRIPTION and d.parts == () and notices(effects) == ["description_cleared"]
    d, _ = run(d, Text("A completely new description of the events.", 21), At("description", Done()))
    assert d.answers["description"] == "A completely new description of the events."


def test_edits_before_submission_update_the_answer_they_gave():
    d, _ = run(at_description(), Text(LONG, 5), Text("Ahmad Saleh took the money himself.", 6))
    d, effects = run(d, Edited(6, "The manager took the money himself."))
    assert d.parts == (LONG, "The manager took the money himself.")
    assert notices(effects) == ["edit_description"]
    d, _ = run(d, At("description", Done()), At("evidence", Done()))
    d, effects = run(d, Edited(5, "The head of procurement took a payment."))
    assert d.answers["description"].startswith("The head of procurement took a payment.\n\n")
    assert notices(effects) == ["edit_description"] and d.step is Step.CONTACT


def test_edits_of_contact_details_and_of_other_messages():
    d = at_review()
    d, effects = run(d, Edited(12, "Fatima A."))
    assert d.answers["contact_name"] == "Fatima A." and notices(effects) == ["edit_name"]
    d, effects = run(d, Edited(13, "not a phone"))
    assert d.answers["contact_phone"] == "0599 123 456" and notices(effects) == ["edit_phone_invalid"]
    d, effects = run(d, Edited(13, "0599 654 321"))
    assert d.answers["contact_phone"] == "0599 654 321" and notices(effects) == ["edit_phone"]
    before = d
    d, effects = run(d, Edited(999, "something else"))
    assert d == before and notices(effects) == ["edit_not_used"]
    d, effects = run(d, Edited(11, f"paid, receipt {RECEIPT}"))
    assert d.answers == before.answers and notices(effects) == ["edit_has_receipt"]


def test_receipt_shapes():
    for text in (RECEIPT, "12345678901234567890", "١٢٣٤ ٥٦٧٨ ٩٠١٢ ٣٤٥٦ ٧٨٩٠", "\u200f۱۲۳۴-۵۶۷۸-۹۰۱۲-۳۴۵۶-۷۸۹۰"):
        assert is_receipt(text) and contains_receipt(f"my receipt: {text}.")
    for text in ("0599 123 456", "1" * 21, "1" * 19, "invoice 2024 total 1500"):
        assert not is_receipt(text) and not contains_receipt(text)
    assert strip_receipts(f"paid {RECEIPT} cash") == "paid … cash"


def test_a_receipt_alone_is_deleted_and_never_stored():
    d = at_description()
    d2, effects = run(d, Text("\u200f" + RECEIPT, 7))
    assert d2 == d
    assert effects[0] == DeleteMessage(7) and notices(effects) == ["receipt_in_report"]


def test_a_receipt_inside_the_description_is_kept_only_if_the_user_agrees():
    d, _ = run(at_description(), Text(f"{LONG} My old receipt was {RECEIPT}.", 8))
    assert d.step is Step.CONFIRM_NUMBER and d.parts == ()
    removed, effects = run(d, At("confirm_number", KeepNumber(keep=False)))
    assert removed.step is Step.DESCRIPTION and removed.parts == (f"{LONG} My old receipt was ….",)
    assert DeleteMessage(8) in effects and "number_removed" in notices(effects)
    kept, _ = run(d, At("confirm_number", KeepNumber(keep=True)))
    assert kept.parts == (f"{LONG} My old receipt was {RECEIPT}.",)


def test_follow_up_stale_buttons_and_receipt_as_reply():
    s = fu.Session(fu.FStep.EVIDENCE, {"key_ref": "r"})
    t = fu.step(s, cb.parse(cb.nav("done", "reply")))
    assert t.session == s and notices(t.effects) == ["button_expired"]
    t = fu.step(s, cb.parse(cb.nav("done", "evidence")))
    assert t.session.step is fu.FStep.CASE
    reply = fu.Session(fu.FStep.REPLY, {"key_ref": "r"})
    t = fu.step(reply, Text(RECEIPT))
    assert t.session == reply and fu.DeleteTyped() in t.effects
    assert not any(isinstance(e, fu.SendReply) for e in t.effects)


def test_follow_up_reply_after_expiry_is_kept_and_confirmed():
    s = fu.Session(fu.FStep.REPLY, {"key_ref": "r"})
    t = fu.expired(s, Text("The invoice number is 4411."))
    assert t.session == fu.Session(fu.FStep.RECEIPT, pending_reply="The invoice number is 4411.")
    assert fu.SessionClosed("reply") in t.effects
    t = fu.step(t.session, fu.Unlocked({"key_ref": "r2"}))
    assert t.session.step is fu.FStep.CONFIRM_REPLY
    assert t.effects == (fu.ShowCase(), fu.Ask(fu.FStep.CONFIRM_REPLY))
    sent = fu.step(t.session, cb.parse(cb.choose("confirm_reply", "send")))
    assert fu.SendReply("The invoice number is 4411.") in sent.effects
    assert sent.session.step is fu.FStep.CASE and sent.session.pending_reply == ""
    dropped = fu.step(t.session, cb.parse(cb.choose("confirm_reply", "discard")))
    assert not any(isinstance(e, fu.SendReply) for e in dropped.effects)
    files = fu.expired(fu.Session(fu.FStep.EVIDENCE, {"key_ref": "r"}), fu.Attach("photo", 10))
    assert fu.SessionClosed("files") in files.effects and files.session.pending_reply == ""
