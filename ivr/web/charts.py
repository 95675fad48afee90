"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, no fonts to fetch.

Pure functions from numbers to SVG text, so the dashboard works on a machine with no
internet and the charts can be tested without a browser. Every bar carries its number in
a `data-count` attribute, for tests and for anyone who copies the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family='DejaVu Sans, Verdana, Arial, sans-serif'"
BAR = "#2563eb"
BAR_QUIET = "#c7d2fe"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"


@dataclass(frozen=True)
class Stage:
    """One row of a funnel: its key (for data attributes), its label and its count."""

    key: str
    label: str
    count: int


def nice_ceiling(value: int, ticks: int = 4) -> tuple[int, int]:
    """Return an axis top at or above `value` and its tick step, both round numbers."""
    if value <= ticks:
        return ticks, 1
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = int(step)
    return step * math.ceil(value / step), step


def hour_bars(counts: Sequence[int], *, busiest_label: str = "", width: int = 960) -> str:
    """Draw calls per hour: one bar an hour (24 of them), hours under, numbers on top."""
    if len(counts) != 24:
        raise ValueError(f"an hour chart needs 24 counts, got {len(counts)}")
    height, left, right, top, bottom = 280, 44, 12, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    axis_top, step = nice_ceiling(max(counts))
    slot = plot_w / 24
    bar_w = slot * 0.72
    busiest = max(counts)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='100%' role='img' class='chart' {FONT}>",
        f"<title>{escape(busiest_label)}</title>" if busiest_label else "",
    ]
    for tick in range(0, axis_top + 1, step):
        y = top + plot_h - plot_h * tick / axis_top
        parts.append(
            f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' "
            f"stroke='{GRID}' stroke-width='1'/>"
            f"<text x='{left - 8}' y='{y + 4:.1f}' text-anchor='end' font-size='12' "
            f"fill='{MUTED}'>{tick}</text>"
        )
    for hour, count in enumerate(counts):
        x = left + slot * hour + (slot - bar_w) / 2
        h = plot_h * count / axis_top
        y = top + plot_h - h
        colour = BAR if count and count == busiest else BAR_QUIET if not count else "#60a5fa"
        parts.append(
            f"<rect class='bar' data-hour='{hour}' data-count='{count}' x='{x:.1f}' "
            f"y='{y:.1f}' width='{bar_w:.1f}' height='{max(h, 0):.1f}' rx='3' fill='{colour}'>"
            f"<title>{hour:02d}:00–{hour:02d}:59: {count}</title></rect>"
        )
        if count:
            parts.append(
                f"<text x='{x + bar_w / 2:.1f}' y='{y - 6:.1f}' text-anchor='middle' "
                f"font-size='13' font-weight='bold' fill='{INK}'>{count}</text>"
            )
        parts.append(
            f"<text x='{x + bar_w / 2:.1f}' y='{height - bottom + 18}' text-anchor='middle' "
            f"font-size='12' fill='{MUTED}'>{hour:02d}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def funnel(stages: Sequence[Stage], *, width: int = 620) -> str:
    """Draw a funnel: one bar a stage, as wide as its count, with the share of the first."""
    row, label_w, gap = 58, 215, 12
    height = row * len(stages) + 8
    first = stages[0].count if stages else 0
    widest = max((stage.count for stage in stages), default=0) or 1
    bar_space = width - label_w - 130
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='100%' role='img' class='chart' {FONT}>"
    ]
    previous: int | None = None
    for index, stage in enumerate(stages):
        y = 4 + row * index
        w = bar_space * stage.count / widest
        share = f"{100 * stage.count / first:.0f}%" if first else "—"
        shade = _shade(index, len(stages))
        lost = (
            f"<tspan font-size='13' font-weight='normal' fill='#b45309' dx='10'>"
            f"−{previous - stage.count}</tspan>"
            if previous is not None and previous > stage.count
            else ""
        )
        parts.append(
            f"<g class='stage' data-stage='{escape(stage.key)}' data-count='{stage.count}'>"
            f"<text x='{label_w - 14}' y='{y + row / 2 + 5:.1f}' text-anchor='end' "
            f"font-size='15' fill='{INK}'>{escape(stage.label)}</text>"
            f"<rect x='{label_w}' y='{y + gap / 2:.1f}' width='{max(w, 2):.1f}' "
            f"height='{row - gap}' rx='5' fill='{shade}'/>"
            f"<text x='{label_w + max(w, 2) + 10:.1f}' y='{y + row / 2 + 6:.1f}' "
            f"font-size='18' font-weight='bold' fill='{INK}'>{stage.count}"
            f"<tspan font-size='13' font-weight='normal' fill='{MUTED}' dx='8'>{share}</tspan>"
            f"{lost}</text></g>"
        )
        previous = stage.count
    parts.append("</svg>")
    return "".join(parts)


def _shade(index: int, count: int) -> str:
    """Return the blue of a funnel row: darker further down, where the answer is."""
    light, dark = (147, 197, 253), (29, 78, 216)
    t = index / max(count - 1, 1)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(light, dark, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"
