"""A schematic tile map of the 16 Palestinian governorates for the statistics page: one
square-cornered tile per governorate on a grid laid out roughly north to south (the West
Bank's eleven on the east, the Gaza Strip's five on the west), shaded by the number of cases.

Schematic and not to scale, and says so: no map tiles are fetched and no geographic shape is
drawn. It is built here as plain SVG (rectangles and text, presentation attributes only: no
script, no style element, nothing referred to outside it) and served as its own image, as the
pygal charts are (nazaha.admin.routes.statistics). It draws the **published** figures of the
governorate table (:func:`nazaha.admin.statistics_view.chart_table`): a suppressed count is
a grey tile reading "<5" or "x", never shaded by its value, and the table beside the map
carries the numbers. "Prefer not to say" and "not given" have no tile; they are in the table.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nazaha.admin import i18n
from nazaha.admin.labels import choice_label
from nazaha.admin.statistics_view import FONT, SVG_NS, ChartTable, _isolated
from nazaha.flows.choices import GOVERNORATES

# (column, row) of each governorate's tile: columns from west (0) to east, rows from north (0)
# to south. Gaza Strip: one column, from North Gaza to Rafah; West Bank: three columns from
# Tulkarm and Qalqilya in the west to Tubas and Jericho & al-Aghwar in the Jordan valley.
GAZA_STRIP = ("north_gaza", "gaza", "deir_al_balah", "khan_yunis", "rafah")
WEST_BANK = ("jenin", "tubas", "tulkarm", "nablus", "qalqilya", "salfit", "ramallah", "jericho", "jerusalem",
             "bethlehem", "hebron")
TILES: dict[str, tuple[float, int]] = {
    "jenin": (2.5, 0),
    "tulkarm": (1.5, 1), "nablus": (2.5, 1), "tubas": (3.5, 1),
    "qalqilya": (1.5, 2), "salfit": (2.5, 2),
    "ramallah": (2.5, 3), "jericho": (3.5, 3),
    "jerusalem": (2.5, 4),
    "bethlehem": (2.5, 5),
    "hebron": (2.5, 6),
    "north_gaza": (0, 4),
    "gaza": (0, 5),
    "deir_al_balah": (0, 6),
    "khan_yunis": (0, 7),
    "rafah": (0, 8),
}

TILE_W, TILE_H, GAP = 150, 58, 6
LEFT, TOP = 16, 92
WIDTH = LEFT * 2 + int(4.5 * TILE_W)
# Shades for published counts (light to dark); a count withheld and zero have their own.
SHADES = ("#d6efe3", "#9fd8bd", "#5bb590", "#1f8a63", "#0b5e43")
WITHHELD_FILL, ZERO_FILL, STROKE, INK, MUTED = "#e7ecf3", "#ffffff", "#8a94a6", "#1d2433", "#5b6475"


def _bins(values: list[int]) -> list[tuple[int, int, str]]:
    """Ranges of whole numbers of equal width from the least of ``values`` to the greatest
    (inclusive), as many as there are different values up to five, each with its shade
    (spread from light to dark)."""
    if not values:
        return []
    low, top = min(values), max(values)
    count = min(len(SHADES), len(set(values)))
    span = top - low + 1
    edges = [low + (span * i) // count for i in range(count + 1)]
    shades = [SHADES[(len(SHADES) - 1) * i // max(1, count - 1)] for i in range(count)] if count > 1 else [SHADES[-1]]
    return [(edges[i], edges[i + 1] - 1, shades[i]) for i in range(count)]


def _shade(value: int, bins: list[tuple[int, int, str]]) -> tuple[str, str]:
    """Fill and text colour of a tile showing ``value`` (a published count above zero)."""
    fill = next((shade for first, last, shade in bins if first <= value <= last), SHADES[-1])
    return fill, ("#ffffff" if SHADES.index(fill) >= 3 else INK)


def _text(parent: ET.Element, x: float, y: float, text: str, *, size: int = 13, weight: str = "400",
          anchor: str = "middle", fill: str = INK) -> ET.Element:
    element = ET.SubElement(parent, f"{{{SVG_NS}}}text", {
        "x": f"{x:g}", "y": f"{y:g}", "font-size": str(size), "font-weight": weight, "text-anchor": anchor,
        "fill": fill, "font-family": FONT,
    })
    element.text = text
    return element


def _rect(parent: ET.Element, x: float, y: float, w: float, h: float, fill: str, **extra: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{SVG_NS}}}rect", {
        "x": f"{x:g}", "y": f"{y:g}", "width": f"{w:g}", "height": f"{h:g}", "rx": "4", "fill": fill,
        "stroke": STROKE, "stroke-width": "1", **extra,
    })


def map_svg(table: ChartTable, locale: str) -> bytes:
    """The tile map of the governorate table ``table`` (published figures only) as a
    standalone SVG document."""
    if table.name != "governorate":
        raise ValueError("the map shows the governorate table")
    rtl = locale in i18n.RTL
    published = {cell.code: cell.published for cell in table.cells}
    shown = [v for code, v in published.items() if code in TILES and isinstance(v, int) and v > 0]
    bins = _bins(shown)
    rows = max(row for _, row in TILES.values()) + 1
    legend_top = TOP + rows * (TILE_H + GAP) + 14
    height = legend_top + 78
    title = i18n.gettext("Cases by governorate: schematic map")
    root = ET.Element(f"{{{SVG_NS}}}svg", {
        "width": str(WIDTH), "height": str(height), "viewBox": f"0 0 {WIDTH} {height}", "role": "img",
    })
    ET.SubElement(root, f"{{{SVG_NS}}}title").text = _isolated(title, rtl)
    _rect(root, 0, 0, WIDTH, height, "#ffffff", stroke="none", rx="0")
    _text(root, WIDTH / 2, 26, _isolated(title, rtl), size=15)
    _text(root, WIDTH / 2, 46, _isolated(i18n.gettext("Schematic, not to scale: north at the top"), rtl),
          size=12, fill=MUTED)
    _text(root, LEFT + TILE_W / 2, TOP - 12, _isolated(i18n.gettext("Gaza Strip"), rtl), size=12, weight="700",
          fill=MUTED)
    _text(root, LEFT + 2.5 * TILE_W + GAP, TOP - 12, _isolated(i18n.gettext("West Bank"), rtl), size=12,
          weight="700", fill=MUTED)
    for code in GOVERNORATES:
        if code not in TILES:
            continue
        column, row = TILES[code]
        x, y = LEFT + column * TILE_W + (GAP if column else 0), TOP + row * (TILE_H + GAP)
        value = published.get(code, 0)
        group = ET.SubElement(root, f"{{{SVG_NS}}}g", {"data-code": code})
        if isinstance(value, str):
            fill, ink = WITHHELD_FILL, INK
            _rect(group, x, y, TILE_W - GAP, TILE_H, fill, **{"stroke-dasharray": "4 3"})
        elif value == 0:
            fill, ink = ZERO_FILL, MUTED
            _rect(group, x, y, TILE_W - GAP, TILE_H, fill)
        else:
            fill, ink = _shade(value, bins)
            _rect(group, x, y, TILE_W - GAP, TILE_H, fill)
        middle = x + (TILE_W - GAP) / 2
        _text(group, middle, y + 23, _isolated(choice_label("governorate", code), rtl), size=12, fill=ink)
        _text(group, middle, y + 45, f"\u2066{value}\u2069" if rtl else str(value), size=16, weight="700", fill=ink)
    # The key: zero and the shades' ranges on one line; withheld, and what has no tile, below.
    # It starts where the reading does: at the left in English, at the right in Arabic (each
    # swatch before its words, the ranges from the least), under the map.
    def at(x: float, width: float = 0) -> float:
        return WIDTH - x - width if rtl else x

    anchor = "end" if rtl else "start"
    x = LEFT
    for fill, label in ((ZERO_FILL, "0"), *((shade, f"{first}" if first == last else f"{first}–{last}")
                                            for first, last, shade in bins)):
        _rect(root, at(x, 22), legend_top, 22, 16, fill)
        _text(root, at(x + 28), legend_top + 13, f"\u2066{label}\u2069" if rtl else label, size=12, anchor=anchor,
              fill=MUTED)
        x += 28 + 8 * len(label) + 22
    _rect(root, at(LEFT, 22), legend_top + 26, 22, 16, WITHHELD_FILL, **{"stroke-dasharray": "4 3"})
    _text(root, at(LEFT + 28), legend_top + 39,
          _isolated(i18n.gettext("withheld (“<%(k)s” or “x”)", k=table.min_cell), rtl), size=12, anchor=anchor,
          fill=MUTED)
    elsewhere = i18n.gettext("“Prefer not to say” and “not given” are in the table.")
    _text(root, at(LEFT), legend_top + 66, _isolated(elsewhere, rtl), size=12, anchor=anchor, fill=MUTED)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


__all__ = ["GAZA_STRIP", "TILES", "WEST_BANK", "map_svg"]
