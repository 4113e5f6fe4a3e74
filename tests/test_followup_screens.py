"""The follow-up view: the workflow's status in words, withdrawals, and their confirmations."""

from __future__ import annotations

import datetime as dt

import pytest

from nazaha.bot.app import build_i18n
from nazaha.flows import followup_flow as fu
from nazaha.flows.report_flow import At, Back, Choose
from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.storage.cases import OUTCOMES, STATUSES

I18N = build_i18n()
LRI, PDI = "\u2066", "\u2069"
DAY = dt.date(2026, 12, 1)


def render(locale: str, fn, *args, **kwargs):
    with I18N.context(), I18N.use_locale(locale):
        return fn(*args, **kwargs)


def view(status="in_review", outcome=None, locale="en", **kwargs) -> screens.Screen:
    return render(locale, screens.case_view, status, outcome, [], 0, **kwargs)


def buttons(screen: screens.Screen) -> dict[str, str]:
    return {b.text: b.callback_data for row in screen.keyboard.inline_keyboard for b in row}


def test_every_status_and_outcome_is_said_in_words():
    expected = {
        ("received", None): "Received: waiting to be read by a caseworker.",
        ("acknowledged", None): "Acknowledged: a caseworker has read it.",
        ("in_review", None): "In review: the caseworkers are looking into it.",
        ("referred", None): "Referred: passed to the competent authority.",
        ("action_taken", None): "Action taken: the caseworkers have acted on it.",
        ("closed", "substantiated"): "Closed: the facts were confirmed.",
        ("closed", "not_substantiated"): "Closed: the facts could not be confirmed.",
        ("closed", "out_of_scope"): "Closed: this is outside what the coalition can act on.",
        ("closed", "insufficient_information"): "Closed: there was not enough information to act on.",
        ("closed", None): "Closed.",  # closed before outcomes were required
    }
    # Every code of the storage has its words (a new code cannot be forgotten here).
    assert {s for s, _ in expected} == set(STATUSES)
    assert {o for _, o in expected if o} == set(OUTCOMES)
    for (status, outcome), words in expected.items():
        assert render("en", screens.status_line, status, outcome) == words
        text = view(status, outcome).text
        assert text.splitlines()[1] == words
        assert status not in words and (outcome is None or outcome not in words)  # no raw code


def test_every_status_and_outcome_has_arabic_words():
    """Passes once i18n-ar.po is merged into the catalogs (`make catalogs`)."""
    for status, outcome in [(s, None) for s in STATUSES] + [("closed", o) for o in OUTCOMES]:
        english = render("en", screens.status_line, status, outcome)
        arabic = render("ar", screens.status_line, status, outcome)
        assert arabic != english and "_" not in arabic and ":" not in arabic, (status, outcome)


def test_an_unknown_code_is_shown_rather_than_hidden():
    assert render("en", screens.status_line, "suspended", None) == "suspended"


def test_withdrawals_are_shown_with_isolated_days():
    text = view(contact_withdrawn_on=DAY, withdrawn_on=DAY).text
    assert f"You withdrew this report on {LRI}2026-12-01{PDI}." in text
    assert f"You withdrew your contact details on {LRI}2026-12-01{PDI}: they were deleted." in text
    complaint = view(withdrawn_on=DAY, complaint=True).text
    assert "You withdrew this complaint on" in complaint and "contact details" not in complaint
    plain = view().text
    assert "withdrew" not in plain
    # Once closed, the caseworkers no longer have to decide how to close it.
    closed = view("closed", "not_substantiated", withdrawn_on=DAY).text
    assert f"You withdrew this report on {LRI}2026-12-01{PDI}." in closed
    assert "decide how to close" not in closed


def test_withdraw_buttons_are_offered_only_when_they_can_act():
    full = buttons(view(has_contact=True))
    assert full["🗑 Withdraw my contact details"] == cb.choose("case", "withdraw_contact")
    assert full["↩️ Withdraw this report"] == cb.choose("case", "withdraw_report")
    assert "↩️ Withdraw this complaint" in buttons(view(complaint=True))
    # No contact details on file: nothing to withdraw.
    assert "🗑 Withdraw my contact details" not in buttons(view(has_contact=False))
    # Withdrawn already, or closed: the report cannot be withdrawn (again).
    assert "↩️ Withdraw this report" not in buttons(view(withdrawn_on=DAY, has_contact=True))
    assert "↩️ Withdraw this report" not in buttons(view("closed", "substantiated"))
    # Replying and reading stay open after a withdrawal.
    withdrawn = buttons(view(withdrawn_on=DAY))
    assert "✉️ Reply to the caseworkers" in withdrawn and "🔄 Refresh" in withdrawn
    for data in full.values():
        assert isinstance(cb.parse(data), Choose)


@pytest.mark.parametrize("locale", ["en", "ar"])
def test_confirmations_ask_first_with_buttons_stamped_with_their_step(locale):
    for step, screen in (
        ("withdraw_contact", render(locale, screens.confirm_withdraw_contact)),
        ("withdraw_report", render(locale, screens.confirm_withdraw_report)),
        ("withdraw_report", render(locale, screens.confirm_withdraw_report, complaint=True)),
    ):
        yes, no = [cb.parse(b.callback_data) for row in screen.keyboard.inline_keyboard for b in row]
        assert yes == At(step, fu.Confirm()) and no == At(step, Back())
        assert step == str(fu.FStep(step))
    en = render("en", screens.confirm_withdraw_report, complaint=True).text
    assert en.startswith("Withdraw this complaint?") and "report" not in en


def test_withdrawal_notices_name_what_was_withdrawn():
    from nazaha.flows.report_flow import Kind

    assert render("en", screens.notice, "contact_withdrawn", {}) == "Done: your contact details were deleted."
    assert "this complaint" in render("en", screens.notice, "report_withdrawn", {}, Kind.COMPLAINT)
    assert "this report" in render("en", screens.notice, "report_withdrawn", {}, Kind.CORRUPTION)


def test_confirm_needs_a_step_to_act_and_forgeries_are_refused():
    assert cb.parse(cb.nav("confirm", "withdraw_contact")) == At("withdraw_contact", fu.Confirm())
    assert cb.parse("n:confirm:WITHDRAW") is None
    # A bare "confirm" parses, but the flow never acts on it (see test_followup_flow).
    assert cb.parse("n:confirm") == fu.Confirm()
