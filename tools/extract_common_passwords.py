"""Write nazaha/storage/common_passwords.txt from the `zxcvbn` package's password list.

zxcvbn (Dropbox's strength estimator, Python port on PyPI, MIT licence) ships frequency
lists; its ``passwords`` list is ordered from most to least common (it was built from
leaked-password corpora). We keep the first ``COUNT`` entries, lower-cased, one a line,
after a header line naming the source, so that the check does not depend on the
package's internals at run time.

Usage: python tools/extract_common_passwords.py [COUNT]
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

COUNT = 10_000
TARGET = Path(__file__).resolve().parent.parent / "nazaha" / "storage" / "common_passwords.txt"


def main(count: int = COUNT) -> None:
    seen: dict[str, None] = {}
    for word in FREQUENCY_LISTS["passwords"]:
        seen.setdefault(word.strip().lower(), None)
        if len(seen) >= count:
            break
    header = (
        f"# The {len(seen)} most common passwords, most common first, from the 'passwords' "
        f"frequency list of the zxcvbn {version('zxcvbn')} package on PyPI (MIT licence); "
        "written by tools/extract_common_passwords.py."
    )
    TARGET.write_text(header + "\n" + "\n".join(w for w in seen if w) + "\n", encoding="utf-8")
    print(f"wrote {len(seen)} entries to {TARGET}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else COUNT)
