"""Callback data: what each button carries, and reading it back safely.

Formats (all ASCII, well under Telegram's 64-byte limit):
``f:<step>:<value>`` choose an option · ``n:<action>:<step>`` navigate (back, cancel, done,
continue, submit, replace, drop, keep, keep_number, drop_number, confirm), acting only at the step of
the message the button is under (``flow.At``; ``n:<action>`` without a step acts anywhere) ·
``e:<field>`` edit from review · ``x:<yes|no>`` confirm discarding · ``m:<item>`` main menu ·
``l:<ar|en>`` language · ``r:<evidence id>`` remove a file · ``w:chat`` ask to wipe this
chat, ``w:yes``/``w:no`` the answer ·
``s:receipt`` show a receipt that could not be delivered · ``s:delete`` delete the receipt
message this button is under. Anything else (old versions, forged data) parses to ``None`` and
gets "this button has expired".
"""

from __future__ import annotations

from dataclasses import dataclass

from nazaha.flows import followup_flow as fu
from nazaha.flows import report_flow as flow

MENU_ITEMS = ("report", "complaint", "followup", "learn", "safety", "language", "menu")
LANGUAGES = ("ar", "en")

_NAVIGATION = {
    "back": flow.Back(),
    "cancel": flow.Cancel(),
    "done": flow.Done(),
    "continue": flow.Continue(),
    "submit": flow.Submit(),
    "replace": flow.Replace(),
    "drop": flow.ConfirmReplace(drop=True),
    "keep": flow.ConfirmReplace(drop=False),
    "keep_number": flow.KeepNumber(keep=True),
    "drop_number": flow.KeepNumber(keep=False),
    # "Yes" under a follow-up confirmation (withdrawing contact details or the report).
    "confirm": fu.Confirm(),
}
_STEP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


@dataclass(frozen=True)
class MenuAction:
    item: str


@dataclass(frozen=True)
class LanguageChoice:
    locale: str


@dataclass(frozen=True)
class RemoveEvidence:
    item_id: str


@dataclass(frozen=True)
class Wipe:
    """``confirm``: None asks first (what will be lost), True erases, False keeps."""

    confirm: bool | None = None


@dataclass(frozen=True)
class ShowReceipt:
    pass


@dataclass(frozen=True)
class DeleteReceipt:
    """Delete the receipt message the button is under (the user wrote it down)."""


Parsed = (
    flow.Event | fu.Confirm | MenuAction | LanguageChoice | RemoveEvidence | Wipe | ShowReceipt
    | DeleteReceipt
)


def command_of(text: str | None) -> str:
    """``"/report"`` for "/report", "/REPORT@nazaha_bot extra"; "" for anything else."""
    if not text or not text.startswith("/"):
        return ""
    return text.split(maxsplit=1)[0].split("@")[0].lower()


def choose(step: str, value: str) -> str:
    return f"f:{step}:{value}"


def nav(action: str, step: str | None = None) -> str:
    """A navigation button; with ``step`` it acts only while that step is current."""
    assert action in _NAVIGATION
    return f"n:{action}:{step}" if step else f"n:{action}"


def edit(field: str) -> str:
    return f"e:{field}"


def confirm_cancel(discard: bool) -> str:
    return "x:yes" if discard else "x:no"


def menu(item: str) -> str:
    assert item in MENU_ITEMS
    return f"m:{item}"


def language(locale: str) -> str:
    assert locale in LANGUAGES
    return f"l:{locale}"


def remove(item_id: str) -> str:
    return f"r:{item_id}"


def wipe(confirm: bool | None = None) -> str:
    return {None: "w:chat", True: "w:yes", False: "w:no"}[confirm]


def show_receipt() -> str:
    return "s:receipt"


def delete_receipt() -> str:
    return "s:delete"


def parse(data: str | None) -> Parsed | None:
    if not data or len(data) > 64:
        return None
    prefix, _, rest = data.partition(":")
    if prefix == "f":
        step, sep, value = rest.partition(":")
        return flow.Choose(step, value) if sep and step and value else None
    if prefix == "n":
        action, sep, step = rest.partition(":")
        event = _NAVIGATION.get(action)
        if event is None or not sep:
            return event
        return flow.At(step, event) if step and set(step) <= _STEP_CHARS else None
    if prefix == "e":
        return flow.Edit(rest) if rest else None
    if prefix == "x" and rest in ("yes", "no"):
        return flow.ConfirmCancel(discard=rest == "yes")
    if prefix == "m" and rest in MENU_ITEMS:
        return MenuAction(rest)
    if prefix == "l" and rest in LANGUAGES:
        return LanguageChoice(rest)
    if prefix == "r" and len(rest) == 32 and all(c in "0123456789abcdef" for c in rest):
        return RemoveEvidence(rest)
    if data == "w:chat":
        return Wipe()
    if prefix == "w" and rest in ("yes", "no"):
        return Wipe(confirm=rest == "yes")
    if data == "s:receipt":
        return ShowReceipt()
    if data == "s:delete":
        return DeleteReceipt()
    return None
