"""Small-cell suppression for published statistics (printed pages, CSV files, charts).

A count from 1 to ``min_cell - 1`` can point at a reporter, so wherever figures leave the
screen it is shown as ``"<5"`` (with ``min_cell`` 5). Hiding it alone is not enough: each
table is a breakdown of the same cases, so its total is known (from any other table of the
page, e.g. by kind) and a single hidden cell would be the total minus the cells shown.
Hence **complementary suppression**: while the hidden cells of a table could take only one
set of values given what is shown (one hidden cell; or all hidden at their least possible
values), the smallest count still shown is hidden too, as ``"x"`` ("withheld so that a small
count cannot be worked out"). The totals themselves stay exact. Zero is shown: it points at
nobody.

Awareness figures follow the same rule on screen (:func:`breakdown`): a survey's or a quiz's
answers per option, a campaign's opens per day. Below ``min_cell`` in all, neither the
total nor any part is shown, not even whether it is 0: one open of a link given to one
person, one answer to a survey sent to a handful, would tell what that person did.
"""

from __future__ import annotations

from collections.abc import Sequence

SMALL = "<{k}"
WITHHELD = "x"


def _pinned(small: int, withheld: int, hidden_sum: int, k: int) -> bool:
    """Whether ``small`` cells in 1..k-1 and ``withheld`` cells >= k adding up to
    ``hidden_sum`` could take only one set of values."""
    cells = small + withheld
    if cells == 0:
        return False
    if cells == 1:
        return True
    least = small + withheld * k
    if hidden_sum == least:
        return True
    return withheld == 0 and hidden_sum == small * (k - 1)


def suppress(counts: Sequence[int], min_cell: int) -> list[int | str]:
    """The published form of one table's ``counts``: each an int, ``"<k"`` (a small count)
    or ``"x"`` (a count withheld as a complement). ``min_cell`` <= 1 suppresses nothing."""
    k = int(min_cell)
    shown: list[int | str] = list(counts)
    if k <= 1:
        return shown
    small = [i for i, n in enumerate(counts) if 0 < n < k]
    for i in small:
        shown[i] = SMALL.format(k=k)
    withheld: list[int] = []
    hidden_sum = sum(counts[i] for i in small)
    while _pinned(len(small), len(withheld), hidden_sum, k):
        candidates = [i for i, n in enumerate(counts) if n > 0 and isinstance(shown[i], int)]
        if not candidates:
            break  # everything is hidden already
        i = min(candidates, key=lambda j: (counts[j], j))
        shown[i] = WITHHELD
        withheld.append(i)
        hidden_sum += counts[i]
    return shown


def breakdown(counts: Sequence[int], min_cell: int) -> tuple[int | None, list[int | str]]:
    """A breakdown shown with its exact total (answers per option, opens per day):
    ``(total, suppress(counts, min_cell))``, or ``(None, [])`` while the total is under
    ``min_cell`` (nothing of it is shown: a count of 0 would tell the others apart)."""
    total = sum(counts)
    if int(min_cell) > 1 and total < int(min_cell):
        return None, []
    return total, suppress(counts, min_cell)


def suppress_one(count: int, min_cell: int) -> int | str:
    """A count published on its own (not part of a table that adds up)."""
    return SMALL.format(k=min_cell) if 0 < count < min_cell else count


__all__ = ["SMALL", "WITHHELD", "breakdown", "suppress", "suppress_one"]
