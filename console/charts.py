"""Score histograms as inline SVG: drawn on the server, so the page needs no script and no library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Bar:
    """One bin of a histogram as drawn."""

    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


def histogram_svg(edges: Sequence[float], counts: Sequence[int], title: str, css_class: str,
                  width: int = 360, height: int = 160) -> str:
    """An SVG bar chart of a histogram (``len(edges) == len(counts) + 1``), with a title for screen readers."""
    left, bottom, top = 30, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    n = len(counts)
    peak = max(counts, default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css_class)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{peak}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>']
    if n:
        bar_w = plot_w / n
        for i, count in enumerate(counts):
            h = plot_h * count / peak
            x, y = left + i * bar_w, top + plot_h - h
            parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" class="bar">'
                         f"<title>{edges[i]:g}–{edges[i + 1]:g}: {count}</title></rect>")
        step = max(1, n // 6)
        for i in range(0, n + 1, step):
            parts.append(f'<text x="{left + i * bar_w:.1f}" y="{height - 8}" class="tick" text-anchor="middle">{edges[i]:g}</text>')
    parts.append("</svg>")
    return "".join(parts)
