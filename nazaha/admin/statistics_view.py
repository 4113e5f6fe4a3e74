"""The statistics page's tables, charts (SVG, by pygal) and CSV files, from
:class:`nazaha.services.statistics.Statistics`.

* **Tables** carry both the exact count (shown on screen, a small one marked) and its
  published form (nazaha.services.disclosure: ``"<5"``, ``"x"``), which the print stylesheet
  shows instead.
* **Charts** are for publication: they draw the published figures (a suppressed cell has no
  bar). pygal renders them with JavaScript off (``js=[]``); what pygal still writes for its
  script (a ``<script>`` with its configuration) and its comments (links to pygal.org) are
  removed, so the SVG has no script and refers to nothing outside itself. Text stays SVG
  text, shaped by the browser; an Arabic label is wrapped in RIGHT-TO-LEFT ISOLATE … POP
  DIRECTIONAL ISOLATE so that it reads right to left inside the chart's left-to-right
  layout (axes and anchors as pygal places them).
* **CSV** (UTF-8 with a byte-order mark, so that spreadsheet programs show Arabic): the
  published figures, one row per cell.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from nazaha.admin import i18n
from nazaha.admin.labels import choice_label, kind_label, outcome_label, status_label
from nazaha.services.disclosure import WITHHELD, suppress, suppress_one
from nazaha.services.statistics import Statistics, iter_dimension

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
FONT = '"Noto Sans Arabic", "Noto Naskh Arabic", "Segoe UI", Tahoma, "DejaVu Sans", sans-serif'


def _title(name: str) -> str:
    titles = {
        "kind": i18n.gettext("Cases by kind"),
        "category": i18n.gettext("Corruption reports by category"),
        "service": i18n.gettext("Service complaints by service"),
        "sector": i18n.gettext("Corruption reports by institution"),
        "governorate": i18n.gettext("Cases by governorate"),
        "month": i18n.gettext("Cases by month received"),
        "status": i18n.gettext("Cases by status now"),
        "outcome": i18n.gettext("Outcomes of closed cases"),
    }
    return titles[name]


CHARTS = ("kind", "category", "service", "sector", "governorate", "month", "status", "outcome")


def _labeller(name: str) -> Callable[[Any], str]:
    not_given = i18n.gettext("Not given")
    if name == "kind":
        return kind_label
    if name == "status":
        return status_label
    if name == "outcome":
        return outcome_label
    if name == "month":
        return str
    return lambda code: not_given if code is None else choice_label(name, code)


# Why a figure is not published as it is (the page says which, with one marker on screen):
SMALL_COUNT = "small"  # a count from 1 to min_cell - 1, published as "<5"
COMPLEMENT = "withheld"  # a count withheld so that a small one cannot be worked out: "x"
FEW_CASES = "few"  # a median or percentile of fewer than min_cell cases: "x"


def _reason(published: int | str | None) -> str | None:
    if isinstance(published, str):
        return COMPLEMENT if published == WITHHELD else SMALL_COUNT
    return None


@dataclasses.dataclass(frozen=True)
class Cell:
    code: str
    label: str
    count: int
    published: int | str

    @property
    def small(self) -> bool:
        return self.published != self.count

    @property
    def reason(self) -> str | None:
        return _reason(self.published)


@dataclasses.dataclass(frozen=True)
class ChartTable:
    name: str
    title: str
    cells: list[Cell]
    total: int
    min_cell: int = 5

    @property
    def drawable(self) -> bool:
        """Whether the chart has a bar to draw: a published count above zero. Otherwise (no
        case in the range, or every count suppressed) the page shows a line of text instead
        of an empty chart."""
        return any(isinstance(c.published, int) and c.published > 0 for c in self.cells)

    @property
    def total_reason(self) -> str | None:
        """Why the total is not published as it is: a small count (also when withheld as
        "x" for being below the threshold), or withheld as a complement."""
        if self.published_total == self.total:
            return None
        return SMALL_COUNT if 0 < self.total < self.min_cell else COMPLEMENT

    @property
    def published_total(self) -> int | str:
        """The total as published. A table of every case (kind, governorate, month, status)
        totals the cases received, published anyway; any other table's total (one kind's
        categories, closed cases' outcomes) is withheld ("x") when one of its cells is (the
        total and the other cells would give it back) or when it is below the threshold."""
        if self.name in _ALL_CASE_TABLES:
            return suppress_one(self.total, self.min_cell)
        if self.total < self.min_cell or any(c.published != c.count for c in self.cells):
            return "x" if self.total else 0
        return self.total


def chart_table(stats: Statistics, name: str, min_cell: int) -> ChartTable:
    """One chart's cells, in the order of the statistics (``ValueError``: unknown name)."""
    if name not in CHARTS:
        raise ValueError(f"unknown chart {name!r}")
    label = _labeller(name)
    pairs = list(iter_dimension(stats, name))
    published = suppress([n for _, n in pairs], min_cell)
    if name in _ONE_KIND_TABLES and _kind_withheld(stats, min_cell):
        # These tables split one kind of case (categories and institutions: corruption
        # reports; services: complaints): their sums would give back the kind counts the
        # kind table withholds, so nothing of them is published.
        published = ["x" if n else 0 for _, n in pairs]
    cells = [
        Cell("" if code is None else str(code), label(code), n, shown)
        for (code, n), shown in zip(pairs, published, strict=True)
    ]
    return ChartTable(name, _title(name), cells, sum(n for _, n in pairs), min_cell)


_ONE_KIND_TABLES = frozenset({"category", "service", "sector"})
_ALL_CASE_TABLES = frozenset({"kind", "governorate", "month", "status"})


def _kind_withheld(stats: Statistics, min_cell: int) -> bool:
    counts = [n for _, n in iter_dimension(stats, "kind")]
    return any(shown != n for shown, n in zip(suppress(counts, min_cell), counts))


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the overview: its exact ``value`` (shown on screen), its ``published``
    form (printed and in the CSV) and, when they differ, the ``reason`` (:data:`SMALL_COUNT`,
    :data:`COMPLEMENT`, :data:`FEW_CASES`)."""

    label: str
    value: int | None
    published: int | str | None
    reason: str | None = None

    @property
    def small(self) -> bool:
        return self.reason is not None


def timeliness(stats: Statistics, min_cell: int) -> list[Figure]:
    """The cases received; median and 90th percentile of the days to acknowledge and to
    close, each after the number of cases it is computed from (withheld, "x", when that is
    from 1 to ``min_cell - 1``: one case's duration would point at it, as a small count
    does); and the overdue counts. Counts from 1 to ``min_cell - 1`` are published "<5"."""

    def count(label: str, value: int) -> Figure:
        shown = suppress_one(value, min_cell)
        return Figure(label, value, shown, _reason(shown) if shown != value else None)

    figures: list[Figure] = [count(i18n.gettext("Cases received"), stats.total)]
    for durations, count_label, median_label, p90_label in (
        (stats.days_to_acknowledge, i18n.gettext("Cases acknowledged"),
         i18n.gettext("Days to acknowledge, median"), i18n.gettext("Days to acknowledge, 90th percentile")),
        (stats.days_to_close, i18n.gettext("Cases closed"),
         i18n.gettext("Days to close, median"), i18n.gettext("Days to close, 90th percentile")),
    ):
        few = 0 < durations.count < min_cell
        figures.append(count(count_label, durations.count))
        for label, value in ((median_label, durations.median), (p90_label, durations.p90)):
            figures.append(Figure(label, value, WITHHELD, FEW_CASES) if few else Figure(label, value, value))
    figures.append(count(i18n.gettext("Acknowledgements overdue"), stats.ack_overdue))
    figures.append(count(i18n.gettext("Feedback overdue"), stats.feedback_overdue))
    return figures


def _isolated(text: str, rtl: bool) -> str:
    return f"\u2067{text}\u2069" if rtl else text


def chart_svg(table: ChartTable, locale: str) -> bytes:
    """The chart of ``table`` as a standalone SVG document (published figures only)."""
    import pygal
    from pygal.style import Style

    rtl = locale in i18n.RTL
    style = Style(
        font_family=FONT, background="#ffffff", plot_background="#ffffff", colors=("#0b6e4f",),
        label_font_size=13, major_label_font_size=13, value_font_size=12, title_font_size=15, no_data_font_size=18,
    )
    chart_type = pygal.Bar if table.name == "month" else pygal.HorizontalBar
    rows = max(1, len(table.cells))
    height = 360 if table.name == "month" else min(900, 90 + 34 * rows)
    chart = chart_type(
        js=[], style=style, show_legend=False, truncate_label=-1, print_values=True,
        width=720, height=height, title=_isolated(table.title, rtl), no_prefix=False,
        x_label_rotation=45 if table.name == "month" else 0, margin=12,
        no_data_text=_isolated(
            i18n.gettext("Too few cases to draw") if table.total else i18n.gettext("No cases"), rtl
        ),
    )
    chart.x_labels = [_isolated(cell.label, rtl) if table.name != "month" else cell.label for cell in table.cells]
    values = [cell.published if isinstance(cell.published, int) else None for cell in table.cells]
    if table.drawable:
        chart.add(table.title, values)
    return clean_svg(chart.render())


def clean_svg(svg: bytes) -> bytes:
    """pygal's SVG without ``<script>`` elements, comments or links (``xlink:href``/``href``
    attributes pointing anywhere)."""
    root = ET.fromstring(svg)  # comments are dropped by the parser
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script"):
                parent.remove(child)
    for element in root.iter():
        for attribute in list(element.attrib):
            if attribute.endswith("href"):
                del element.attrib[attribute]
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def chart_csv(table: ChartTable) -> bytes:
    """The published figures of ``table``: UTF-8 with a byte-order mark."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    # The value's name (e.g. a governorate), not a case label: its own msgid and context.
    writer.writerow([i18n.gettext("Code"), i18n.pgettext("statistics column", "Name"), i18n.gettext("Cases")])
    for cell in table.cells:
        writer.writerow([cell.code, cell.label, cell.published])
    writer.writerow(["", i18n.gettext("Total"), table.published_total])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def timeliness_csv(figures: list[Figure]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([i18n.gettext("Figure"), i18n.gettext("Value")])
    for figure in figures:
        writer.writerow([figure.label, "" if figure.published is None else figure.published])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


__all__ = ["CHARTS", "COMPLEMENT", "FEW_CASES", "SMALL_COUNT", "Cell", "ChartTable", "Figure", "chart_csv",
           "chart_svg", "chart_table", "clean_svg", "timeliness", "timeliness_csv"]
