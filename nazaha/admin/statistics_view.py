"""The statistics page's tables, charts (SVG, by pygal) and CSV files, from
:class:`nazaha.services.statistics.Statistics`.

* **Tables** carry both the exact count (shown on screen, a small one marked) and its
  published form (nazaha.services.disclosure: ``"<5"``, ``"x"``), which the print stylesheet
  shows instead.
* **Charts** are for publication: they draw the published figures, in the table's order
  (first row at the top). A suppressed row ("<5", "x") is left out of the chart, never drawn as
  an empty bar (which reads as zero), and a line under the chart says how many rows are left
  out and that the table has them. A table with nothing left to draw has no chart: the page
  says why (no case of it in the range; every count below the threshold; a small count and
  its complements withheld; withheld because the counts by kind are). pygal renders them
  with JavaScript off (``js=[]``); what pygal still writes for its
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
# Why a table has no chart (ChartTable.no_chart_reason); SMALL_COUNT and COMPLEMENT as above.
NO_CASES = "none"  # no case of the table in the range
KIND_WITHHELD = "kind"  # a table of one kind of case, withheld with the counts by kind


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
    # The cases of the range (every kind); for a table of one kind of case withheld because
    # the counts by kind are (its cells all "x"), why it has no chart: KIND_WITHHELD, or the
    # reason its own counts would have given (SMALL_COUNT, COMPLEMENT) had they been published.
    cases: int | None = None
    withheld_why: str | None = None

    @property
    def drawn(self) -> list[Cell]:
        """The rows the chart draws, in the table's order: those published as a number. A
        suppressed row is left out (an empty bar would read as zero)."""
        return [c for c in self.cells if isinstance(c.published, int)]

    @property
    def left_out(self) -> int:
        """How many rows of the table the chart leaves out (suppressed: "<5" or "x")."""
        return sum(1 for c in self.cells if not isinstance(c.published, int))

    @property
    def drawable(self) -> bool:
        """Whether the chart has a bar to draw: a published count above zero. Otherwise the
        page shows a line saying why (:attr:`no_chart_reason`) instead of an empty chart."""
        return any(c.published > 0 for c in self.drawn)

    @property
    def no_chart_reason(self) -> str | None:
        """Why there is no chart (None: there is one): :data:`NO_CASES`, :data:`KIND_WITHHELD`,
        :data:`COMPLEMENT` (a small count, and counts withheld so that it cannot be worked out)
        or :data:`SMALL_COUNT` (every count above zero is small)."""
        if self.drawable:
            return None
        if not self.total:
            return NO_CASES
        if self.withheld_why:
            return self.withheld_why
        if any(c.reason == COMPLEMENT for c in self.cells):
            return COMPLEMENT
        return SMALL_COUNT

    @property
    def no_chart_text(self) -> str | None:
        """The page's line instead of the chart, saying what is true (None: there is a chart)."""
        reason = self.no_chart_reason
        if reason is None:
            return None
        if reason == NO_CASES:
            if not self.cases or self.name in _ALL_CASE_TABLES:
                return i18n.gettext("No cases in this range.")
            return {
                "category": i18n.gettext("No corruption reports in this range."),
                "sector": i18n.gettext("No corruption reports in this range."),
                "service": i18n.gettext("No service complaints in this range."),
                "outcome": i18n.gettext("No case received in this range is closed."),
            }[self.name]
        if reason == KIND_WITHHELD:
            if self.name == "service":
                return i18n.gettext(
                    "No chart: these counts are withheld, because together they give the number of service "
                    "complaints, which is withheld (see “Cases by kind”). The figures are in the table.")
            return i18n.gettext(
                "No chart: these counts are withheld, because together they give the number of corruption "
                "reports, which is withheld (see “Cases by kind”). The figures are in the table.")
        if reason == COMPLEMENT:
            small = sum(1 for c in self.cells if 0 < c.count < self.min_cell)
            return i18n.ngettext(
                "No chart: one count here is below %(k)s, and the others are withheld so that it cannot be "
                "worked out from the total. The figures are in the table.",
                "No chart: %(num)d counts here are below %(k)s, and the others are withheld so that they cannot "
                "be worked out from the total. The figures are in the table.",
                small, k=self.min_cell)
        return i18n.gettext("No chart: every count here is below %(k)s. The figures are in the table.",
                            k=self.min_cell)

    @property
    def left_out_text(self) -> str | None:
        """The line under a chart that leaves rows out (None: it leaves none out)."""
        if not self.left_out:
            return None
        return i18n.ngettext(
            "%(num)d row is not drawn: its count is below %(k)s or withheld (see the table).",
            "%(num)d rows are not drawn: their counts are below %(k)s or withheld (see the table).",
            self.left_out, k=self.min_cell)

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
    total = sum(n for _, n in pairs)
    withheld_why = None
    if name in _ONE_KIND_TABLES and total and _kind_withheld(stats, min_cell):
        # These tables split one kind of case (categories and institutions: corruption
        # reports; services: complaints): their sums would give back the kind counts the
        # kind table withholds, so nothing of them is published.
        if any(isinstance(shown, int) and shown > 0 for shown in published):
            withheld_why = KIND_WITHHELD
        else:  # no chart with its own counts either: that reason is the first
            withheld_why = COMPLEMENT if WITHHELD in published else SMALL_COUNT
        published = ["x" if n else 0 for _, n in pairs]
    cells = [
        Cell("" if code is None else str(code), label(code), n, shown)
        for (code, n), shown in zip(pairs, published, strict=True)
    ]
    return ChartTable(name, _title(name), cells, total, min_cell, cases=stats.total, withheld_why=withheld_why)


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
    """The chart of ``table`` as a standalone SVG document: the published figures only, the
    rows in the table's order; the suppressed rows are left out and a line under the chart
    says so."""
    import pygal
    from pygal.style import Style

    rtl = locale in i18n.RTL
    style = Style(
        font_family=FONT, background="#ffffff", plot_background="#ffffff", colors=("#0b6e4f",),
        label_font_size=13, major_label_font_size=13, value_font_size=12, title_font_size=15, no_data_font_size=16,
    )
    vertical = table.name == "month"
    drawn = table.drawn if table.drawable else []
    if not vertical:
        drawn = drawn[::-1]  # pygal draws a horizontal chart's first bar at the bottom
    caption = table.left_out_text if table.drawable else None
    rows = max(1, len(drawn))
    height = 360 if vertical else min(900, 90 + 34 * rows)
    chart = (pygal.Bar if vertical else pygal.HorizontalBar)(
        js=[], style=style, show_legend=False, truncate_label=-1, print_values=True,
        width=720, height=height + (CAPTION_HEIGHT if caption else 0), title=_isolated(table.title, rtl),
        no_prefix=False, x_label_rotation=45 if vertical else 0, margin=12,
        margin_bottom=12 + (CAPTION_HEIGHT if caption else 0),
        no_data_text=_isolated(
            i18n.gettext("Not drawn: the counts are small or withheld (see the table)") if table.total
            else i18n.gettext("No cases"), rtl
        ),
    )
    chart.x_labels = [cell.label if vertical else _isolated(cell.label, rtl) for cell in drawn]
    if drawn:
        chart.add(table.title, [cell.published for cell in drawn])
    svg = clean_svg(chart.render())
    return _with_caption(svg, caption, rtl) if caption else svg


CAPTION_HEIGHT = 26


def _with_caption(svg: bytes, caption: str, rtl: bool) -> bytes:
    """``svg`` (a pygal chart with room left at the bottom) with ``caption`` written there,
    from the start of the line in the reading direction."""
    root = ET.fromstring(svg)
    width, height = (float(v) for v in root.get("viewBox", "0 0 720 360").split()[2:])
    element = ET.SubElement(root, f"{{{SVG_NS}}}text", {
        "x": f"{width - 12 if rtl else 12:g}", "y": f"{height - 14:g}", "font-size": "12",
        "text-anchor": "end" if rtl else "start", "fill": "#5b6475", "font-family": FONT, "class": "left-out",
    })
    element.text = _isolated(caption, rtl)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


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


__all__ = ["CHARTS", "COMPLEMENT", "FEW_CASES", "KIND_WITHHELD", "NO_CASES", "SMALL_COUNT", "Cell", "ChartTable",
           "Figure", "chart_csv", "chart_svg", "chart_table", "clean_svg", "timeliness", "timeliness_csv"]
