"""English is the source language: its catalog repeats each msgid (called by `make catalogs`).

Keeping a complete English catalog lets the i18n tests treat both languages alike and
lets a copy editor change English wording without touching the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po


def fill(path: Path) -> int:
    with path.open("rb") as f:
        catalog = read_po(f, locale="en")
    filled = 0
    for message in catalog:
        if not message.id:
            continue
        wanted = tuple(message.id) if isinstance(message.id, tuple) else message.id
        if message.string != wanted and not any(message.string if isinstance(message.string, tuple) else [message.string]):
            message.string = wanted
            filled += 1
        message.flags.discard("fuzzy")
    with path.open("wb") as f:
        write_po(f, catalog, width=88, sort_output=True, include_lineno=False)
    return filled


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "nazaha/locales/en/LC_MESSAGES/nazaha.po")
    print(f"filled {fill(target)} English messages in {target}")
