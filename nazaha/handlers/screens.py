"""What the user sees: localized texts and keyboards for menus, questions and notices.

Pure presentation: no state, no I/O. Every function is called inside an i18n context
(the update's locale), and all reporter-written text is shown as plain text, exactly.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n import ngettext

from nazaha.flows import report_flow as flow
from nazaha.handlers import callbacks as cb
from nazaha.handlers.labels import (
    CHOICE_LABELS,
    EVIDENCE_KIND_LABELS,
    FIELD_LABELS,
    NOTIFY_QUESTION_COMPLAINT,
    QUESTIONS,
)

# Shown in their own language whatever the user's locale, as language pickers do.
LANGUAGE_NAMES = {"ar": "العربية", "en": "English"}
# Locales written right to left: their "back" arrow points right.
RTL_LOCALES = frozenset({"ar"})
# Unicode directional isolates (UAX #9): a run inside them is laid out on its own and
# cannot be reordered with the Arabic around it ("0599 123 456" stays in that order).
LRI, FSI, PDI = "\u2066", "\u2068", "\u2069"
# A keyboard row holds this many buttons when all its labels are at most this long.
GRID_COLUMNS = ((12, 3), (24, 2))
# A review longer than this shows the description in messages of its own.
REVIEW_INLINE_DESCRIPTION = 2500
# Captions are shown in review up to this many characters each (10 files fit a message).
REVIEW_CAPTION_CHARS = 300


@dataclass(frozen=True)
class Screen:
    """``entities``: bold, italic and links of ``text`` (UTF-16 offsets); a screen with
    entities is sent with them, never with parse_mode, and is kept within one message.
    ``protect``: the screen shows what a reporter wrote (or the case thread), so it is sent
    with Telegram's ``protect_content``: it cannot be forwarded or saved."""

    text: str
    keyboard: InlineKeyboardMarkup | None = None
    entities: tuple[MessageEntity, ...] = ()
    protect: bool = False


def _keyboard(rows: list[list[tuple[str, str]]], *, reuse: bool = True) -> InlineKeyboardMarkup:
    """An inline keyboard. The same labels and data give the same (never modified) object:
    building one took longer than the rest of a step (docs/benchmarks.md). Keyboards with
    per-draft data (file ids) pass ``reuse=False`` so they are not kept in memory."""
    frozen = tuple(tuple((str(label), data) for label, data in row) for row in rows)
    return _shared_keyboard(frozen) if reuse else _build_keyboard(frozen)


def ltr(value: object) -> str:
    """``value`` as a left-to-right run (phone, receipt, command, date, file name, URL,
    e-mail) isolated from the text around it: ``LRI + value + PDI``. One line only."""
    return f"{LRI}{value}{PDI}"


def isolate(value: object) -> str:
    """A value the user typed (direction unknown, e.g. a name), isolated with its own
    direction taken from its first strong letter: ``FSI + value + PDI``. One line only."""
    return f"{FSI}{value}{PDI}"


def is_rtl() -> bool:
    """Whether the current locale is written right to left."""
    try:
        return get_i18n().current_locale in RTL_LOCALES
    except LookupError:
        return False


def back_arrow() -> str:
    """An arrow pointing back in reading order: right in Arabic, left in English."""
    return "➡️" if is_rtl() else "⬅️"


def grid(buttons: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Buttons in rows of 3 or 2 when every label is short (GRID_COLUMNS), else one a row,
    so that a long list (17 governorates) fits on a phone screen without scrolling."""
    longest = max((len(str(label)) for label, _data in buttons), default=0)
    columns = next((n for limit, n in GRID_COLUMNS if longest <= limit), 1)
    return [buttons[i:i + columns] for i in range(0, len(buttons), columns)]


def _build_keyboard(rows: tuple[tuple[tuple[str, str], ...], ...]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=data) for label, data in row]
            for row in rows
        ]
    )


_shared_keyboard = functools.lru_cache(maxsize=512)(_build_keyboard)


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
            "You can also learn about corruption and your rights: /learn.\n\n"
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


def safety_text(high_risk_contact: str | None) -> str:
    text = _(
        "Your safety comes first.\n\n"
        "What we keep: your answers, encrypted so that only the coalition's "
        "caseworkers can read them, and you with your receipt. The computer that runs "
        "this bot cannot read them back.\n"
        "What we do not keep: your Telegram name, username, account number or phone "
        "number. Nothing you write is kept in our logs. One exception: if you subscribe "
        "to awareness messages, the bot keeps this chat's id to send them, apart from any "
        "report, until you send /stop.\n\n"
        "• Do not write your own name or details that point to you, unless you choose "
        "to share them in confidence.\n"
        "• Telegram itself knows the phone number of your account. If that is a risk "
        "for you, use an account that is not linked to you, and delete this chat after "
        "you have finished.\n"
        "• Telegram keeps this chat on its own servers until you delete it.\n"
        "• Unfinished reports are kept only in the bot's memory, never on disk: they are "
        "deleted after 24 hours without activity, and lost if the service restarts."
    )
    if high_risk_contact:
        text += "\n\n" + _(
            "If you are at high risk, use this safer channel instead: {contact}"
        ).format(contact=ltr(high_risk_contact))
    return text


def safety_screen(high_risk_contact: str | None) -> Screen:
    return Screen(
        safety_text(high_risk_contact),
        _keyboard([[(main_menu_label(), cb.menu("menu"))]]),
    )


# ---- the report flow ------------------------------------------------------------------


def main_menu_label() -> str:
    return f"{back_arrow()} " + _("Main menu")


def _nav_row(*actions: str, step: str | None = None) -> list[tuple[str, str]]:
    """Navigation buttons; ``step``: the step they act on (stale presses have expired)."""
    labels = {
        "back": f"{back_arrow()} " + _("Back"),
        "cancel": _("✖️ Cancel"),
        "done": _("✅ Done"),
    }
    return [(labels[a], cb.nav(a, step)) for a in actions]


def question(draft: flow.Draft, high_risk_contact: str | None = None) -> list[Screen]:
    """The screen(s) for the draft's current step."""
    step = draft.step
    if step is flow.Step.SAFETY:
        return [
            Screen(
                safety_text(high_risk_contact),
                _keyboard(
                    [
                        [(_("I understand, continue"), cb.nav("continue", "safety"))],
                        _nav_row("cancel", step="safety"),
                    ]
                ),
            )
        ]
    if step is flow.Step.REVIEW:
        return review(draft)
    if step is flow.Step.CONFIRM_CANCEL:
        return [
            Screen(
                _("Discard this complaint? Everything you wrote will be deleted.")
                if draft.kind is flow.Kind.COMPLAINT
                else _("Discard this report? Everything you wrote will be deleted."),
                _keyboard(
                    [
                        [(_("Yes, discard it"), cb.confirm_cancel(True))],
                        [(_("No, continue"), cb.confirm_cancel(False))],
                    ]
                ),
            )
        ]
    if step is flow.Step.CONFIRM_REPLACE:
        return [confirm_replace(draft.description_length)]
    if step is flow.Step.CONFIRM_NUMBER:
        return [confirm_number()]
    name = str(step)
    text = str(QUESTIONS[name])
    if step is flow.Step.NOTIFY and draft.kind is flow.Kind.COMPLAINT:
        text = str(NOTIFY_QUESTION_COMPLAINT)
    if step in flow.CHOICES:
        rows = grid(
            [(str(CHOICE_LABELS[name][value]), cb.choose(name, value)) for value in flow.CHOICES[step]]
        )
        rows.append(_nav_row("back", "cancel", step=name))
        return [Screen(text, _keyboard(rows))]
    if step is flow.Step.DESCRIPTION:
        return description_question(draft, text + "\n\n" + voice_description_hint())
    if step is flow.Step.EVIDENCE:
        if draft.evidence:
            text += "\n\n" + evidence_count(len(draft.evidence))
        return [Screen(text, _keyboard([_nav_row("done", step=name), _nav_row("back", "cancel", step=name)]))]
    if step is flow.Step.CONTACT_PHONE:
        return [
            Screen(
                text,
                _keyboard([[(_("Skip"), cb.nav("done", name))], _nav_row("back", "cancel", step=name)]),
            )
        ]
    return [Screen(text, _keyboard([_nav_row("back", "cancel", step=name)]))]


def description_question(draft: flow.Draft, text: str) -> list[Screen]:
    """The description question; when editing, the current text first (kept, added to)."""
    name = str(flow.Step.DESCRIPTION)
    rows = [_nav_row("done", step=name)]
    if draft.parts:
        rows.append([(_("🗑 Replace it and start again"), cb.nav("replace", name))])
    rows.append(_nav_row("back", "cancel", step=name))
    if draft.editing and draft.parts:
        current = Screen(_("Your description so far:") + "\n\n" + "\n\n".join(draft.parts), protect=True)
        hint = _(
            "Send more messages to add to it, then tap Done. To write it again from the "
            "beginning, tap Replace."
        )
        return [current, Screen(hint, _keyboard(rows))]
    if draft.parts:
        text += "\n\n" + ngettext(
            "You have written {count} character so far.",
            "You have written {count} characters so far.",
            draft.description_length,
        ).format(count=draft.description_length)
    return [Screen(text, _keyboard(rows))]


def confirm_replace(length: int) -> Screen:
    name = str(flow.Step.CONFIRM_REPLACE)
    return Screen(
        ngettext(
            "Delete the description you wrote ({count} character) and write it again?",
            "Delete the description you wrote ({count} characters) and write it again?",
            length,
        ).format(count=length),
        _keyboard(
            [
                [(_("Yes, delete it"), cb.nav("drop", name))],
                [(_("No, keep it"), cb.nav("keep", name))],
            ]
        ),
    )


def confirm_number() -> Screen:
    name = str(flow.Step.CONFIRM_NUMBER)
    return Screen(
        _(
            "Your message contains a number that looks like a receipt. A receipt stored "
            "inside a report could link you to your other reports. Keep the number in "
            "your text?"
        ),
        _keyboard(
            [
                [(_("Remove the number"), cb.nav("drop_number", name))],
                [(_("Keep it"), cb.nav("keep_number", name))],
                _nav_row("cancel", step=name),
            ]
        ),
    )


def _answer_label(field: str, value: str) -> str:
    labels = CHOICE_LABELS.get(field)
    if labels is not None and value in labels:
        return str(labels[value])
    return value


def review(draft: flow.Draft) -> list[Screen]:
    answers = draft.answers
    screens: list[Screen] = []
    description = shown_description(answers.get("description", ""))
    long_description = len(description) > REVIEW_INLINE_DESCRIPTION
    if long_description:
        screens.append(Screen(_("Your description:") + "\n\n" + description, protect=True))
    complaint = draft.kind is flow.Kind.COMPLAINT
    lines = [
        _("Please check your complaint before you send it:")
        if complaint
        else _("Please check your report before you send it:"),
        "",
    ]
    for field in flow.EDITABLE[draft.kind]:
        label = str(FIELD_LABELS[field])
        if field == "description":
            value = _("(shown above)") if long_description else description
            lines.append(f"{label}:\n{value}")
        elif field == "evidence":
            lines.append(f"{label}: {evidence_count(len(draft.evidence))}")
            files = evidence_lines(draft.evidence)
            if long_description and any(item.caption for item in draft.evidence):
                screens.append(Screen("\n".join(files), protect=True))
            else:
                lines.extend(files)
        else:
            lines.append(f"{label}: {_answer_label(field, answers.get(field, ''))}")
        if field == "contact" and answers.get("contact") == "share":
            for detail in flow.CONTACT_DETAILS:
                if detail in answers:
                    # The phone is a left-to-right run; the name may be in either script.
                    shown = ltr if detail == "contact_phone" else isolate
                    lines.append(f"{FIELD_LABELS[detail]}: {shown(answers[detail])}")
    rows = grid(
        [
            (_("✏️ Edit: {field}").format(field=FIELD_LABELS[field]), cb.edit(field))
            for field in flow.EDITABLE[draft.kind]
        ]
    )
    rows += grid(
        [
            (
                _("🗑 Remove file {number} ({size})").format(number=number, size=file_size(item.size)),
                cb.remove(item.id),
            )
            for number, item in enumerate(draft.evidence, start=1)
        ]
    )
    send = _("📨 Send the complaint") if complaint else _("📨 Send the report")
    rows.append([(send, cb.nav("submit", "review"))])
    rows.append(_nav_row("back", "cancel", step="review"))
    screens.append(Screen("\n".join(lines), _keyboard(rows, reuse=not draft.evidence), protect=True))
    return screens


def voice_description_hint() -> str:
    return _(
        "If typing is hard, you can send a voice note instead. A voice can identify "
        "you: caseworkers get a voice-reduced copy."
    )


def shown_description(description: str) -> str:
    """The description as the reporter reads it: the voice-note marker in their language."""
    if description.endswith(flow.VOICE_DESCRIPTION):
        return description.removesuffix(flow.VOICE_DESCRIPTION) + _("[described in a voice note]")
    return description


def voice_warning() -> str:
    return _(
        "A voice can identify the person speaking. We keep your recording encrypted as you "
        "sent it; caseworkers listen to a voice-reduced copy with a lower pitch. Reduced "
        "is not anonymous: someone who knows your voice may still recognise it. You can "
        "remove the recording on the review screen before you send."
    )


def followup_voice_warning() -> str:
    """Said before a follow-up recording is sent: there, each file is stored at once."""
    return _(
        "A voice can identify the person speaking. Recordings you send here are added to "
        "your report at once; caseworkers listen to a voice-reduced copy with a lower "
        "pitch, which someone who knows your voice may still recognise."
    )


def evidence_lines(items: tuple[flow.EvidenceItem, ...]) -> list[str]:
    """One line per file (number, kind, size), with its caption, shortened, under it."""
    lines = []
    for number, item in enumerate(items, start=1):
        kind = EVIDENCE_KIND_LABELS.get(item.kind, item.kind)
        name = f" {isolate(item.file_name)}" if item.file_name else ""
        lines.append(f"{ltr(f'{number}.')} {kind}{name} · {file_size(item.size)}")
        if item.caption:
            # One line, isolated: the user's text keeps its own direction.
            caption = " ".join(item.caption.split())
            if len(caption) > REVIEW_CAPTION_CHARS:
                caption = caption[:REVIEW_CAPTION_CHARS] + "…"
            lines.append("   " + _("Caption: {caption}").format(caption=isolate(caption)))
    return lines


def evidence_count(count: int) -> str:
    if count == 0:
        return _("no files")
    return ngettext("{count} file", "{count} files", count).format(count=count)


def file_size(size: int) -> str:
    if size >= 1024 * 1024:
        return _("{size} MB").format(size=f"{size / (1024 * 1024):.1f}")
    return _("{size} KB").format(size=max(1, round(size / 1024)))


# Notices that end with "or tap Done", and the step that Done finishes.
DONE_AFTER_NOTICE = {
    "description_part": flow.Step.DESCRIPTION,
    "caption_as_description": flow.Step.DESCRIPTION,
    "evidence_added": flow.Step.EVIDENCE,
    "evidence_flagged": flow.Step.EVIDENCE,
    "voice_flagged": flow.Step.EVIDENCE,
}


def notice_screen(code: str, params: dict[str, int], kind: flow.Kind | None = None) -> Screen:
    """A notice, with a Done button under those that end with "or tap Done" (while the user
    writes the description or sends evidence), so nobody has to scroll up to the question
    to finish."""
    step = DONE_AFTER_NOTICE.get(code)
    keyboard = _keyboard([_nav_row("done", step=str(step))]) if step is not None else None
    return Screen(notice(code, params, kind), keyboard)


def conversation_notice(code: str, params: dict[str, int]) -> str | None:
    """Notices about edits, replacing the description and receipts typed in the wrong
    place; ``None`` for other codes."""
    if code == "receipt_in_report":
        return _(
            "That looks like a receipt number, so it was deleted from this chat and not "
            "added to your report. To follow up a report you sent, finish or cancel this "
            "one, then choose Follow up."
        )
    if code == "number_removed":
        return _("The number was removed; the rest of your message was kept.")
    if code == "description_cleared":
        return _("Your description was deleted. Write it again, then tap Done.")
    if code == "edit_description":
        return _("Your edit was applied: the description now uses the corrected message.")
    if code == "edit_name":
        return _("Your edit was applied: the name you gave was corrected.")
    if code == "edit_phone":
        return _("Your edit was applied: the phone number was corrected.")
    if code == "edit_phone_invalid":
        return _(
            "Your edit was not applied: it does not look like a phone number. The "
            "number you gave before is kept."
        )
    if code == "edit_too_long":
        return _(
            "Your edit was not applied: a report can hold at most {limit} characters."
        ).format(limit=params["limit"])
    if code == "edit_has_receipt":
        return _(
            "Your edit was not applied: it contains a number that looks like a receipt. "
            "Your earlier text is kept."
        )
    if code == "receipt_in_followup":
        return _(
            "That looks like a receipt number, so it was deleted from this chat and not "
            "sent to the caseworkers."
        )
    if code == "reply_discarded":
        return _("Your kept message was not sent, and it was deleted.")
    if code == "edit_not_used":
        return _("That edited message is not part of your answers, so nothing changed.")
    return None


def edit_after_sending() -> str:
    return _(
        "A report that was sent cannot be changed, and edits to your messages are not "
        "read. To add a correction, choose Follow up, enter your receipt and reply to "
        "the caseworkers."
    )


def receipt_deleted() -> Screen:
    return Screen(
        _(
            "That looks like a receipt number, so it was deleted from this chat for your "
            "safety. To follow up a report, tap the button below and type it there."
        ),
        _keyboard([[(_("🔎 Follow up with my receipt"), cb.menu("followup"))]]),
    )


def notice(code: str, params: dict[str, int], kind: flow.Kind | None = None) -> str:
    """The text of a flow notice. ``kind`` names the draft's kind where the text says
    "report" or "complaint"."""
    text = conversation_notice(code, params)
    if text is not None:
        return text
    if code == "help":
        return _(
            "You are in the middle of a report; your draft is kept. Answer the question "
            "below, tap Back to go back, or send /cancel to stop."
        )
    if code == "help_buttons":  # the question has no Back button (a confirmation)
        return _(
            "You are in the middle of a report; your draft is kept. Please answer the "
            "question below with one of its buttons."
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
    if code == "description_text_or_voice":
        return _(
            "Please write the description here, or send a voice note. Photos and other "
            "files can be added at the next step."
        )
    if code == "voice_warning":
        return voice_warning()
    if code == "voice_description_kept":
        return _(
            "Your voice note is saved and encrypted as your description. It is also "
            "listed with your files."
        )
    if code == "description_voice_removed":
        return _(
            "That voice note was your description. Please describe what happened again, "
            "in writing or in a new voice note."
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
        return phone_invalid(params)
    if code == "stays_anonymous":
        if kind is flow.Kind.COMPLAINT:
            return _("Understood: your complaint stays anonymous.")
        return _("Understood: your report stays anonymous.")
    if code in ("evidence_added", "evidence_flagged", "voice_flagged", "evidence_removed"):
        count = params["count"]
        text = ngettext(
            "Saved and encrypted. You have added {count} file.",
            "Saved and encrypted. You have added {count} files.",
            count,
        ).format(count=count)
        if code == "evidence_removed":
            text = ngettext(
                "File removed. {count} file remains.",
                "File removed. {count} files remain.",
                count,
            ).format(count=count)
        if code == "evidence_flagged":
            text += " " + _(
                "This file could not be read as an image: it is kept as it is, without "
                "a cleaned copy, so it may still carry hidden details about you."
            )
        if code == "voice_flagged":
            text += " " + _(
                "This recording could not be read: it is kept as it is, without a "
                "voice-reduced copy, so caseworkers would hear your own voice."
            )
        if params.get("captioned"):
            text += " " + _(
                "The text you wrote under the file is kept with it, encrypted, and shown "
                "on the review screen."
            )
        if params.get("failed"):
            failed = params["failed"]
            text += " " + ngettext(
                "A file could not be received: please send it again.",
                "Some files could not be received: please send them again.",
                failed,
            )
        if code != "evidence_removed":
            text += " " + _("Send more, or tap Done.")
        return text
    if code == "files_at_description":
        files = params["files"]
        return ngettext(
            "The file was not added yet: files are added at the next step. Finish your "
            "description and tap Done, then send the file again.",
            "The files were not added yet: files are added at the next step. Finish your "
            "description and tap Done, then send the files again.",
            files,
        )
    if code == "caption_as_description":
        total = params["total"]
        text = ngettext(
            "The text you wrote under the files was added to your description ({count} "
            "character so far).",
            "The text you wrote under the files was added to your description ({count} "
            "characters so far).",
            total,
        ).format(count=total)
        files = params["files"]
        return text + " " + ngettext(
            "The file itself is added at the next step: tap Done when your description "
            "is complete, then send it again.",
            "The files themselves are added at the next step: tap Done when your "
            "description is complete, then send them again.",
            files,
        )
    if code == "file_too_big":
        return _(
            "This file is larger than {limit} MB, the most Telegram lets us receive. It "
            "was not added. Try a shorter video or a compressed file, or describe it in "
            "words."
        ).format(limit=params.get("limit_mb", 20))
    if code == "evidence_too_many":
        return _(
            "You have reached the limit of {limit} files for one report. Remove one from "
            "the review screen to add another."
        ).format(limit=params["limit"])
    if code == "evidence_too_large":
        return _(
            "Together your files would exceed {limit} MB, the limit for one report. "
            "Remove a file or send a smaller one."
        ).format(limit=params["limit_mb"])
    if code == "document_warning":
        return _(
            "Note: files sent as documents can carry the author's name, the device or "
            "the place where they were made. We remove what we can from images; for "
            "other files, check them before sending if you can."
        )
    if code == "forward_warning":
        return _(
            "Note: a forwarded message can reveal who originally sent it. We keep that "
            "information encrypted with your report."
        )
    if code == "location_refused":
        return _(
            "For your safety we do not accept locations: a location can point to you. "
            "Please describe the place in words instead."
        )
    if code == "evidence_unsupported":
        return _(
            "This kind of message cannot be added as evidence. Send photos, documents, "
            "voice notes, audio or video, or tap Done."
        )
    if code == "evidence_expected":
        return _(
            "Please send files here, or tap Done. To add text, go back to the "
            "description."
        )
    if code == "download_failed":
        return _("Sorry, this file could not be received. Please try sending it again.")
    if code == "receipt_unknown":
        return _(
            "This receipt number was not found. Check the 20 digits and try again."
        )
    if code == "receipt_throttled":
        return _(
            "Too many attempts. For the safety of all reporters, please try again in an "
            "hour."
        )
    if code == "receipt_expected":
        return _("Please type your receipt number (20 digits).")
    if code == "notifications_stopped":
        return _("Done: this report will send no more notifications.")
    if code == "contact_withdrawn":
        return _("Done: your contact details were deleted.")
    if code == "report_withdrawn":
        if kind is flow.Kind.COMPLAINT:
            return _("Done: you withdrew this complaint, and it will send no notifications.")
        return _("Done: you withdrew this report, and it will send no notifications.")
    if code == "reply_sent":
        return _("Your message was sent to the caseworkers, encrypted.")
    if code == "reply_too_long":
        return _("Please keep a message under {limit} characters, or send several.").format(
            limit=params["limit"]
        )
    if code == "followup_help":
        return _(
            "You are following up on a report. Use the buttons below, or send /cancel to "
            "end the session."
        )
    return _("Please choose one of the buttons below.")


PHONE_EXAMPLE = "0599 123 456"


def phone_invalid(params: dict[str, int]) -> str:
    """Why a phone number was refused, and an example. ``params``: ``letters`` (1 if it
    holds something other than digits, spaces, ``()-.`` and a leading ``+``), ``digits``
    (how many digits), ``minimum`` and ``maximum`` (digits a phone number may have)."""
    if params.get("letters"):
        reason = _(
            "A phone number can hold only digits, spaces and a + at the start, so this "
            "one was not saved."
        )
    elif params.get("digits", 0) < params.get("minimum", flow.PHONE_MIN_DIGITS):
        reason = _(
            "This number is too short to be a phone number (at least {minimum} digits), "
            "so it was not saved."
        ).format(minimum=params.get("minimum", flow.PHONE_MIN_DIGITS))
    else:
        reason = _(
            "This number is too long to be a phone number (at most {maximum} digits), so "
            "it was not saved."
        ).format(maximum=params.get("maximum", flow.PHONE_MAX_DIGITS))
    return reason + " " + _(
        "Write it again, for example {example}, or tap Skip."
    ).format(example=ltr(PHONE_EXAMPLE))


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


def receipt(formatted_receipt: str, *, complaint: bool = False) -> str:
    if complaint:
        text = _(
            "Your complaint has been received and encrypted. Thank you for speaking up.\n\n"
            "Your receipt number:\n\n{receipt}\n\n"
            "Keep it safe and private: it is the only way to follow up on your complaint, "
            "read the caseworkers' replies and add information. Anyone who has it can read "
            "your complaint. Write it down somewhere only you can reach, then you may delete "
            "this chat: Telegram keeps it on its own servers until you do. We cannot recover "
            "a lost receipt."
        )
        then = _(
            "What happens next: the coalition acknowledges your complaint within 7 days, and "
            "gives you feedback on it within 3 months. Follow up with your receipt to read "
            "their replies."
        )
    else:
        text = _(
            "Your report has been received and encrypted. Thank you for your courage.\n\n"
            "Your receipt number:\n\n{receipt}\n\n"
            "Keep it safe and private: it is the only way to follow up on your report, "
            "read the caseworkers' replies and add information. Anyone who has it can read "
            "your report. Write it down somewhere only you can reach, then you may delete "
            "this chat: Telegram keeps it on its own servers until you do. We cannot recover "
            "a lost receipt."
        )
        then = _(
            "What happens next: the coalition acknowledges your report within 7 days, and "
            "gives you feedback on it within 3 months. Follow up with your receipt to read "
            "their replies."
        )
    return text.format(receipt=ltr(formatted_receipt)) + "\n\n" + then


def receipt_keyboard() -> InlineKeyboardMarkup:
    """Under a receipt: delete it from the chat once it is written down (whoever holds the
    bot's token could read it there, and so could anyone holding the phone)."""
    return _keyboard([[(_("🗑 I wrote it down: delete it from this chat"), cb.delete_receipt())]])


def receipt_deleted_from_chat() -> str:
    """The short notice over the chat once the receipt message is deleted (200 characters
    at most: Telegram's limit for a button's answer)."""
    return _("The receipt was deleted from this chat. Keep the copy you wrote down safe.")


def chat_cleared(what: str, *, complaint: bool = False) -> str:
    """Said once the bot deleted, for the user's safety, the messages a conversation left
    in the chat (only if Telegram deleted some). ``what``: "sent" (a report or complaint was
    just stored; its receipt stays above), "discarded" (a draft), "expired" (a draft that
    expired), "followup" (a follow-up session ended)."""
    if what == "sent":
        return (
            _(
                "For your safety, the messages of this complaint (what you wrote and the "
                "summary) were deleted from this chat. Your complaint was received: only "
                "the receipt above stays here."
            )
            if complaint
            else _(
                "For your safety, the messages of this report (what you wrote and the "
                "summary) were deleted from this chat. Your report was received: only the "
                "receipt above stays here."
            )
        )
    if what == "discarded":
        return _("For your safety, the messages you wrote for it were deleted from this chat too.")
    if what == "expired":
        return _("For your safety, the messages you wrote for it were deleted from this chat.")
    return _("For your safety, the messages of this follow-up were deleted from this chat.")


def receipt_waiting() -> Screen:
    """Told at the next contact after a receipt could not be delivered."""
    return Screen(
        _(
            "Your last report was received and stored, but its receipt could not be "
            "delivered to you: Telegram could not be reached at that moment.\n\n"
            "You can see the receipt once, within 15 minutes of sending the report. Tap "
            "the button below, then write it down somewhere only you can reach."
        ),
        _keyboard([[(_("🧾 Show my receipt"), cb.show_receipt())]]),
    )


def receipt_gone() -> str:
    return _(
        "This receipt is no longer available: it is shown only once, and only within "
        "15 minutes of sending the report. We cannot recover a lost receipt."
    )


def after_submission() -> Screen:
    return Screen(
        _(
            "When you have written your receipt down somewhere safe, you can erase this "
            "conversation from your phone."
        ),
        _keyboard(
            [
                [(_("🧹 Erase this conversation"), cb.wipe())],
                [(main_menu_label(), cb.menu("menu"))],
            ]
        ),
    )


def wipe_confirm(*, files: int | None, session: bool) -> Screen:
    """Asked before /wipe or the erase button deletes anything: ``files`` is the number of
    files of an unfinished report (None: no report in progress); ``session`` is True while
    a follow-up session is open."""
    parts = [_("Erase this conversation?")]
    if files is not None:
        # No count: Arabic singular and dual forms carry no numeral, and the files are
        # listed on the report's own screens.
        parts.append(
            _(
                "Your unfinished report will be discarded, with the files you added to it. "
                "Nothing of it will be sent."
            )
            if files
            else _("Your unfinished report will be discarded. Nothing of it will be sent.")
        )
    if session:
        parts.append(_("Your follow-up session will end."))
    parts.append(
        _(
            "Every message of this chat that Telegram still lets the bot delete (those of "
            "the last 48 hours) will be deleted, including any receipt shown here. If you "
            "have a receipt, write it down somewhere only you can reach before you erase: "
            "we cannot recover a lost receipt."
        )
    )
    # Said to everyone: whether this chat subscribed is not looked up to ask.
    parts.append(_("If you subscribed to awareness messages, your subscription ends too."))
    return Screen(
        "\n\n".join(parts),
        _keyboard(
            [
                [(_("🧹 Yes, erase everything"), cb.wipe(True))],
                [(_("No, keep it"), cb.wipe(False))],
            ]
        ),
    )


def wiped() -> Screen:
    return Screen(
        _(
            "This conversation was erased from the chat. Telegram lets the bot delete "
            "messages only for 48 hours: to remove anything older, and this chat itself, "
            "open the chat menu and choose \"Delete chat\"."
        )
        + "\n\n"
        + _("Your subscription to awareness messages, if you had one, has ended too."),
        main_menu_keyboard(),
    )


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


# The commands /help lists, in order, with what each does.
HELP_COMMANDS = (
    ("/start", __("main menu")),
    ("/report", __("report corruption")),
    ("/complaint", __("complain about a public service")),
    ("/followup", __("follow up with your receipt")),
    ("/cancel", __("stop the current report")),
    ("/learn", __("learn about corruption")),
    ("/subscribe", __("awareness messages by topic")),
    ("/stop", __("stop awareness messages")),
    ("/safety", __("safety and privacy")),
    ("/language", __("change the language")),
    ("/wipe", __("erase this conversation")),
    ("/forget", __("how to stop notifications")),
)


def command_line(command: str, description: str) -> str:
    """One line of /help. Left to right: "/start – main menu". Right to left the line
    starts with its (Arabic) description and the command comes after it, isolated, so that
    the line is laid out right to left: "القائمة الرئيسية — ⁦/start⁩"."""
    if is_rtl():
        return f"{description} — {ltr(command)}"
    return f"{command} – {description}"


def help_text() -> Screen:
    lines = [command_line(command, str(description)) for command, description in HELP_COMMANDS]
    return Screen(
        _(
            "Nazaha lets you report corruption or complain about a public service "
            "anonymously, and learn about corruption and your rights."
        )
        + "\n\n"
        + "\n".join(lines),
        main_menu_keyboard(),
    )


# ---- follow-up ------------------------------------------------------------------------

# The workflow's statuses and closing outcomes (nazaha.storage.cases), in words the
# reporter reads; no noun, so that each fits a report and a complaint alike.
STATUS_LABELS = {
    "received": __("Received: waiting to be read by a caseworker."),
    "acknowledged": __("Acknowledged: a caseworker has read it."),
    "in_review": __("In review: the caseworkers are looking into it."),
    "referred": __("Referred: passed to the competent authority."),
    "action_taken": __("Action taken: the caseworkers have acted on it."),
    # Closed before outcomes were required (migration 0004 invents none).
    "closed": __("Closed."),
}
CLOSED_LABELS = {
    "substantiated": __("Closed: the facts were confirmed."),
    "not_substantiated": __("Closed: the facts could not be confirmed."),
    "out_of_scope": __("Closed: this is outside what the coalition can act on."),
    "insufficient_information": __("Closed: there was not enough information to act on."),
}


def status_line(status: str, outcome: str | None) -> str:
    """The case's status (and, once closed, its outcome) in words; an unknown code is
    shown as it is rather than hidden."""
    if status == "closed" and outcome in CLOSED_LABELS:
        return str(CLOSED_LABELS[outcome])
    return str(STATUS_LABELS.get(status, status))


def _followup_keyboard(
    notifying: bool = False,
    *,
    has_contact: bool = False,
    can_withdraw: bool = False,
    complaint: bool = False,
) -> InlineKeyboardMarkup:
    rows = [
        [(_("✉️ Reply to the caseworkers"), cb.choose("case", "reply"))],
        [(_("📎 Add evidence"), cb.choose("case", "evidence"))],
        [(_("🔄 Refresh"), cb.choose("case", "refresh"))],
    ]
    if notifying:
        rows.append([(_("🔕 Stop notifications"), cb.choose("case", "stop_notify"))])
    if has_contact:
        rows.append(
            [(_("🗑 Withdraw my contact details"), cb.choose("case", "withdraw_contact"))]
        )
    if can_withdraw:
        label = _("↩️ Withdraw this complaint") if complaint else _("↩️ Withdraw this report")
        rows.append([(label, cb.choose("case", "withdraw_report"))])
    rows.append([(_("🚪 End the session"), cb.choose("case", "end"))])
    return _keyboard(rows)


def ask_receipt() -> Screen:
    return Screen(
        _(
            "Please type your receipt number (20 digits; spaces and Arabic digits are "
            "fine). For your safety, the bot deletes the message with your receipt as soon "
            "as it has read it."
        ),
        _keyboard([_nav_row("cancel", step="receipt")]),
    )


def case_view(
    status: str,
    outcome: str | None,
    thread: list[tuple[str, str, str]],
    evidence: int,
    *,
    notifying: bool = False,
    complaint: bool = False,
    has_contact: bool = False,
    contact_withdrawn_on: dt.date | None = None,
    withdrawn_on: dt.date | None = None,
) -> Screen:
    """``thread``: (direction, day, body) in order. ``has_contact``: the report still holds
    contact details (offers to withdraw them); ``contact_withdrawn_on`` / ``withdrawn_on``:
    the days the reporter withdrew them / the report, shown in words."""
    lines = [_("Your complaint") if complaint else _("Your report"), status_line(status, outcome)]
    if withdrawn_on is not None and status == "closed":
        text = (
            _("You withdrew this complaint on {day}.")
            if complaint
            else _("You withdrew this report on {day}.")
        )
        lines.append(text.format(day=ltr(withdrawn_on.isoformat())))
    elif withdrawn_on is not None:
        text = (
            _(
                "You withdrew this complaint on {day}. The caseworkers decide how to close "
                "it; you can still read their replies here."
            )
            if complaint
            else _(
                "You withdrew this report on {day}. The caseworkers decide how to close "
                "it; you can still read their replies here."
            )
        )
        lines.append(text.format(day=ltr(withdrawn_on.isoformat())))
    if contact_withdrawn_on is not None:
        lines.append(
            _("You withdrew your contact details on {day}: they were deleted.").format(
                day=ltr(contact_withdrawn_on.isoformat())
            )
        )
    lines.append(_("Evidence: {files}").format(files=evidence_count(evidence)))
    lines.append("")
    if not thread:
        lines.append(_("No messages yet. The caseworkers will reply here."))
    for direction, day, body in thread:
        who = _("Caseworker") if direction == "staff" else _("You")
        lines.append(f"— {who} · {ltr(day)}\n{body}\n")
    if notifying:
        lines.append(_("Update notifications are on for this report."))
    keyboard = _followup_keyboard(
        notifying,
        has_contact=has_contact,
        can_withdraw=withdrawn_on is None and status != "closed",
        complaint=complaint,
    )
    return Screen("\n".join(lines), keyboard, protect=True)


def confirm_withdraw_contact() -> Screen:
    name = "withdraw_contact"
    return Screen(
        _(
            "Withdraw your contact details? The name and phone number you gave will be "
            "deleted for good, and the caseworkers will no longer be able to reach you "
            "through them. What you wrote in your description or your messages stays as "
            "it is."
        ),
        _keyboard(
            [
                [(_("Yes, delete them"), cb.nav("confirm", name))],
                [(_("No, keep them"), cb.nav("back", name))],
            ]
        ),
    )


def confirm_withdraw_report(*, complaint: bool = False) -> Screen:
    name = "withdraw_report"
    text = (
        _(
            "Withdraw this complaint? The caseworkers will see that you withdrew it and "
            "decide how to close it; what you sent stays with them. You can still follow "
            "up here and read their replies. If you asked for update notifications, they "
            "will stop. This cannot be undone."
        )
        if complaint
        else _(
            "Withdraw this report? The caseworkers will see that you withdrew it and "
            "decide how to close it; what you sent stays with them. You can still follow "
            "up here and read their replies. If you asked for update notifications, they "
            "will stop. This cannot be undone."
        )
    )
    return Screen(
        text,
        _keyboard(
            [
                [(_("Yes, withdraw it"), cb.nav("confirm", name))],
                [(_("No, do not withdraw"), cb.nav("back", name))],
            ]
        ),
    )


def ask_reply() -> Screen:
    return Screen(
        _(
            "Write your message to the caseworkers. It is encrypted; do not write your "
            "name unless you want them to know it."
        ),
        _keyboard([_nav_row("back", "cancel", step="reply")]),
    )


def ask_followup_evidence() -> Screen:
    return Screen(
        _(
            "Send photos, documents, voice notes, audio or video, then tap Done. Files are "
            "encrypted as soon as they arrive."
        )
        + "\n\n"
        + followup_voice_warning(),
        _keyboard([_nav_row("done", step="evidence"), _nav_row("cancel", step="evidence")]),
    )


def session_ended() -> Screen:
    return Screen(
        _("The follow-up session has ended. You can erase this conversation now."),
        _keyboard(
            [
                [(_("🧹 Erase this conversation"), cb.wipe())],
                [(main_menu_label(), cb.menu("menu"))],
            ]
        ),
    )


def session_expired(minutes: int) -> str:
    return ngettext(
        "Your follow-up session was closed after {count} minute of silence, to protect "
        "you. Enter your receipt again to continue.",
        "Your follow-up session was closed after {count} minutes of silence, to protect "
        "you. Enter your receipt again to continue.",
        minutes,
    ).format(count=minutes)


def session_closed(minutes: int, kept: str) -> str:
    """The session closed after the silence; ``kept``: "reply", "files" or ""."""
    text = session_expired(minutes)
    if kept == "reply":
        text += "\n\n" + _(
            "The message you just wrote is kept in memory, not sent yet. After you enter "
            "your receipt, you will be asked to confirm the report it goes to."
        )
    elif kept == "files":
        text += "\n\n" + _(
            "The file you just sent was not saved. After you enter your receipt, tap "
            "Add evidence and send it again."
        )
    return text


def confirm_pending_reply(text: str) -> Screen:
    return Screen(
        _("Send this message to the caseworkers of the report shown above?")
        + "\n\n"
        + text,
        _keyboard(
            [
                [(_("✉️ Send it"), cb.choose("confirm_reply", "send"))],
                [(_("🗑 Do not send it"), cb.choose("confirm_reply", "discard"))],
            ]
        ),
        protect=True,
    )


def update_notification() -> Screen:
    return Screen(
        _(
            "There is an update on your report. Choose Follow up and enter your receipt "
            "to read it."
        ),
        _keyboard([[(_("🔎 Follow up with my receipt"), cb.menu("followup"))]]),
    )


def forgotten() -> Screen:
    return Screen(
        _(
            "For your safety, this bot cannot tell which reports notify this chat: "
            "notifications are tied to the report, not to your account. To stop them, "
            "choose Follow up, enter the receipt of the report and tap \"Stop notifications\". "
            "Erasing this conversation does not stop them either."
        ),
        main_menu_keyboard(),
    )


def service_restarted() -> str:
    """After a restart, to anyone whose first message since then is not a command: the bot
    does not know who was in the middle of something (handlers/restart_notice.py), so the
    text says "if"."""
    return _(
        "The service was restarted recently. If you were in the middle of a report or a "
        "follow-up when it restarted, it was lost: for your safety, unfinished reports "
        "and open follow-up sessions are kept only in the bot's memory, never on disk. "
        "Please start again. If you had just sent a report and did not get a receipt, it "
        "may have been received without the receipt reaching you: if you have no receipt "
        "for it, send it again. Reports you sent before are safe, and their receipts "
        "still work."
    )
