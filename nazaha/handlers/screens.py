"""What the user sees: localized texts and keyboards for menus, questions and notices.

Pure presentation: no state, no I/O. Every function is called inside an i18n context
(the update's locale), and all reporter-written text is shown as plain text, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers.labels import CHOICE_LABELS, FIELD_LABELS, QUESTIONS

# Shown in their own language whatever the user's locale, as language pickers do.
LANGUAGE_NAMES = {"ar": "العربية", "en": "English"}
# A review longer than this shows the description in messages of its own.
REVIEW_INLINE_DESCRIPTION = 2500


@dataclass(frozen=True)
class Screen:
    text: str
    keyboard: InlineKeyboardMarkup | None = None


def _keyboard(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=str(label), callback_data=data) for label, data in row]
            for row in rows
        ]
    )


# ---- menu -----------------------------------------------------------------------------


def main_menu_keyboard() -> InlineKeyboardMarkup:
    return _keyboard(
        [
            [(_("🛡 Report corruption"), cb.menu("report"))],
            [(_("📝 Complain about a public service"), cb.menu("complaint"))],
            [(_("🔎 Follow up with my receipt"), cb.menu("followup"))],
            [(_("📚 Learn about corruption"), cb.menu("learn"))],
            [(_("🔒 Safety and privacy"), cb.menu("safety"))],
            [(_("🌐 Language"), cb.menu("language"))],
        ]
    )


def welcome() -> Screen:
    return Screen(
        _(
            "Welcome to Nazaha (Integrity).\n\n"
            "Here you can report suspected corruption or complain about a public "
            "service, anonymously. We never store your Telegram name, username or "
            "account number with what you tell us.\n\n"
            "What would you like to do?"
        ),
        main_menu_keyboard(),
    )


def main_menu() -> Screen:
    return Screen(_("What would you like to do?"), main_menu_keyboard())


def language_picker() -> Screen:
    return Screen(
        _("Choose your language:"),
        _keyboard([[(LANGUAGE_NAMES[code], cb.language(code))] for code in cb.LANGUAGES]),
    )


def language_set() -> str:
    # Rendered in the newly chosen language, so each catalog names its own language
    # (the Arabic one says "Arabic was chosen").
    return _("Language set to English.")


def coming_soon(item: str) -> Screen:
    if item == "followup":
        text = _(
            "Following up with your receipt is coming very soon. Keep your receipt "
            "safe: you will be able to use it here to read replies and add information."
        )
    else:
        text = _(
            "Awareness content about corruption, its costs and your rights is coming "
            "soon. Thank you for your patience."
        )
    return Screen(text, main_menu_keyboard())


def safety_text(high_risk_contact: str | None) -> str:
    text = _(
        "Your safety comes first.\n\n"
        "What we keep: your answers, encrypted so that only the coalition's "
        "caseworkers can read them, and you with your receipt. The computer that runs "
        "this bot cannot read them back.\n"
        "What we do not keep: your Telegram name, username, account number or phone "
        "number. Nothing you write is kept in our logs.\n\n"
        "• Do not write your own name or details that point to you, unless you choose "
        "to share them in confidence.\n"
        "• Telegram itself knows the phone number of your account. If that is a risk "
        "for you, use an account that is not linked to you, and delete this chat after "
        "you have finished.\n"
        "• Unfinished reports are deleted after 24 hours without activity."
    )
    if high_risk_contact:
        text += "\n\n" + _(
            "If you are at high risk, use this safer channel instead: {contact}"
        ).format(contact=high_risk_contact)
    return text


def safety_screen(high_risk_contact: str | None) -> Screen:
    return Screen(
        safety_text(high_risk_contact),
        _keyboard([[(_("⬅️ Main menu"), cb.menu("menu"))]]),
    )


# ---- the report flow ------------------------------------------------------------------


def _nav_row(*actions: str) -> list[tuple[str, str]]:
    labels = {
        "back": _("⬅️ Back"),
        "cancel": _("✖️ Cancel"),
        "done": _("✅ Done"),
    }
    return [(labels[a], cb.nav(a)) for a in actions]


def question(draft: flow.Draft, high_risk_contact: str | None = None) -> list[Screen]:
    """The screen(s) for the draft's current step."""
    step = draft.step
    if step is flow.Step.SAFETY:
        return [
            Screen(
                safety_text(high_risk_contact),
                _keyboard(
                    [
                        [(_("I understand, continue"), cb.nav("continue"))],
                        _nav_row("cancel"),
                    ]
                ),
            )
        ]
    if step is flow.Step.REVIEW:
        return review(draft)
    if step is flow.Step.CONFIRM_CANCEL:
        return [
            Screen(
                _("Discard this report? Everything you wrote will be deleted."),
                _keyboard(
                    [
                        [(_("Yes, discard it"), cb.confirm_cancel(True))],
                        [(_("No, continue"), cb.confirm_cancel(False))],
                    ]
                ),
            )
        ]
    name = str(step)
    text = str(QUESTIONS[name])
    if step in flow.CHOICES:
        rows = [
            [(CHOICE_LABELS[name][value], cb.choose(name, value))]
            for value in flow.CHOICES[step]
        ]
        rows.append(_nav_row("back", "cancel"))
        return [Screen(text, _keyboard(rows))]
    if step is flow.Step.DESCRIPTION:
        if draft.parts:
            text += "\n\n" + ngettext(
                "You have written {count} character so far.",
                "You have written {count} characters so far.",
                draft.description_length,
            ).format(count=draft.description_length)
        return [Screen(text, _keyboard([_nav_row("done"), _nav_row("back", "cancel")]))]
    if step is flow.Step.CONTACT_PHONE:
        return [
            Screen(
                text,
                _keyboard([[(_("Skip"), cb.nav("done"))], _nav_row("back", "cancel")]),
            )
        ]
    return [Screen(text, _keyboard([_nav_row("back", "cancel")]))]


def _answer_label(field: str, value: str) -> str:
    labels = CHOICE_LABELS.get(field)
    if labels is not None and value in labels:
        return str(labels[value])
    return value


def review(draft: flow.Draft) -> list[Screen]:
    answers = draft.answers
    screens: list[Screen] = []
    description = answers.get("description", "")
    long_description = len(description) > REVIEW_INLINE_DESCRIPTION
    if long_description:
        screens.append(Screen(_("Your description:") + "\n\n" + description))
    lines = [_("Please check your report before you send it:"), ""]
    for field in flow.EDITABLE[draft.kind]:
        label = str(FIELD_LABELS[field])
        if field == "description":
            value = _("(shown above)") if long_description else description
            lines.append(f"{label}:\n{value}")
        else:
            lines.append(f"{label}: {_answer_label(field, answers.get(field, ''))}")
        if field == "contact" and answers.get("contact") == "share":
            for detail in flow.CONTACT_DETAILS:
                if detail in answers:
                    lines.append(f"{FIELD_LABELS[detail]}: {answers[detail]}")
    rows = [
        [(_("✏️ Edit: {field}").format(field=FIELD_LABELS[field]), cb.edit(field))]
        for field in flow.EDITABLE[draft.kind]
    ]
    rows.append([(_("📨 Send the report"), cb.nav("submit"))])
    rows.append(_nav_row("back", "cancel"))
    screens.append(Screen("\n".join(lines), _keyboard(rows)))
    return screens


def notice(code: str, params: dict[str, int]) -> str:
    if code == "help":
        return _(
            "You are in the middle of a report; your draft is kept. Answer the question "
            "below, tap Back to go back, or send /cancel to stop."
        )
    if code == "use_buttons":
        return _("Please choose one of the buttons below.")
    if code == "button_expired":
        return button_expired()
    if code == "text_expected":
        return _(
            "Please send text here. Photos, stickers, voice notes and locations cannot "
            "be used at this step."
        )
    if code == "description_part":
        total = params["total"]
        return ngettext(
            "Received ({count} character so far). Send more, or tap Done.",
            "Received ({count} characters so far). Send more, or tap Done.",
            total,
        ).format(count=total)
    if code == "description_too_short":
        minimum = params["minimum"]
        return ngettext(
            "That is too short to act on: please write at least {minimum} character.",
            "That is too short to act on: please write at least {minimum} characters.",
            minimum,
        ).format(minimum=minimum) + " " + _("Add more, then tap Done.")
    if code == "description_too_long":
        return ngettext(
            "That message was not added: a report can hold at most {limit} characters, "
            "and only {count} character is left. Send a shorter message, or tap Done.",
            "That message was not added: a report can hold at most {limit} characters, "
            "and only {count} characters are left. Send a shorter message, or tap Done.",
            params["remaining"],
        ).format(limit=params["limit"], count=params["remaining"])
    if code == "name_too_long":
        return _("Please keep the name under {limit} characters.").format(
            limit=params["limit"]
        )
    if code == "phone_invalid":
        return _(
            "That does not look like a phone number. Write the digits (for example "
            "0599 123 456), or tap Skip."
        )
    if code == "stays_anonymous":
        return _("Understood: your report stays anonymous.")
    return _("Please choose one of the buttons below.")


def button_expired() -> str:
    return _("This button has expired.")


def in_progress() -> str:
    return _(
        "You already have a report in progress. Finish it below, or tap Cancel to "
        "discard it."
    )


def discarded() -> Screen:
    return Screen(_("Your draft was deleted. Nothing was sent."), main_menu_keyboard())


def draft_expired(hours: int) -> str:
    return ngettext(
        "Your unfinished report was deleted after {count} hour without activity, to "
        "protect you. You can start again from the menu.",
        "Your unfinished report was deleted after {count} hours without activity, to "
        "protect you. You can start again from the menu.",
        hours,
    ).format(count=hours)


def receipt(formatted_receipt: str) -> str:
    return _(
        "Your report has been received and encrypted. Thank you for your courage.\n\n"
        "Your receipt number:\n\n{receipt}\n\n"
        "Keep it safe and private: it is the only way to follow up on your report, "
        "read the caseworkers' replies and add information. Anyone who has it can read "
        "your report. Write it down somewhere only you can reach, then you may delete "
        "this chat. We cannot recover a lost receipt."
    ).format(receipt=formatted_receipt)


def something_went_wrong() -> str:
    return _(
        "Sorry, something went wrong on our side. Your draft is kept: please try "
        "again in a moment."
    )


def slow_down() -> str:
    return _("You are sending messages very quickly. Please wait a moment.")


def no_report_in_progress() -> Screen:
    return Screen(
        _("There is no report in progress. Choose what you would like to do:"),
        main_menu_keyboard(),
    )


def help_text() -> Screen:
    return Screen(
        _(
            "Nazaha lets you report corruption or complain about a public service "
            "anonymously.\n\n"
            "/start – main menu\n/report – report corruption\n"
            "/complaint – complain about a public service\n/cancel – stop the current "
            "report\n/safety – safety and privacy\n/language – change the language"
        ),
        main_menu_keyboard(),
    )
