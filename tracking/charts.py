"""Charts drawn on the server as inline SVG: no script, no CDN, nothing to load.

Each chart is an `<svg role="img">` with an aria-label summing it up, axes with
labels, and a `<title>` on every bar or point, which browsers show as a tooltip
and screen readers read. Colours come from the site's stylesheet through the
classes `series-0`, `series-1`... (see klubpost.css), so charts follow the site.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 56  # room for the axes' labels
MAX_X_LABELS = 6


@dataclass(frozen=True)
class Series:
    """One named row of values (None: no value at that point)."""

    name: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _number(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:,.0f}"


class _Canvas:
    """Maps data to the plot area and collects the SVG elements."""

    def __init__(self, count: int, top: float) -> None:
        self.count, self.top = max(count, 1), top
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM
        self.parts: list[str] = []

    def x(self, index: float) -> float:
        return LEFT + self.plot_w * index / self.count

    def y(self, value: float) -> float:
        return TOP + self.plot_h * (1 - value / self.top)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def axes(self, labels: Sequence[str], fmt: Callable[[float], str]) -> None:
        for tick in (0, self.top / 2, self.top):
            y = self.y(tick)
            self.add(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                f'y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{escape(fmt(tick))}</text>'
            )
        step = max(1, math.ceil(len(labels) / MAX_X_LABELS))
        for index in range(0, len(labels), step):
            x = self.x(index + 0.5)
            self.add(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(_short(labels[index]))}</text>'
            )
        self.add(
            f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
            f'y1="{self.y(0):.1f}" y2="{self.y(0):.1f}"/>'
        )

    def legend(self, series: Sequence[Series]) -> None:
        x = LEFT
        for index, one in enumerate(series):
            self.add(
                f'<rect class="series-{index}" x="{x}" y="{HEIGHT - 22}" '
                f'width="12" height="12"/><text class="legend" x="{x + 16}" '
                f'y="{HEIGHT - 12}">{escape(one.name)}</text>'
            )
            x += 28 + 8 * len(one.name)

    def svg(self, title: str, summary: str) -> Markup:
        label = f"{title}. {summary}" if summary else title
        return Markup(
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(label)}</title>"
            f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>'
            + "".join(self.parts)
            + "</svg>"
        )


def _short(label: str) -> str:
    # Axis labels have little room: a bucket's time, or a subject's start.
    return label if len(label) <= 16 else label[:15] + "…"


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    summary: str = "",
    ticks: Sequence[str] | None = None,
) -> Markup:
    """Stacked bars, one per label; each series a colour, bottom to top.

    `labels` name each bar in its tooltip; `ticks`, if given, are the shorter
    names written under the axis.
    """
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))] or [0]
    canvas = _Canvas(len(labels), nice_ceiling(max(totals)))
    canvas.axes(ticks or labels, _number)
    gap = 0.15 if len(labels) < 60 else 0
    width = canvas.plot_w / canvas.count * (1 - 2 * gap)
    for index, label in enumerate(labels):
        base = 0.0
        for number, one in enumerate(series):
            value = one.values[index] or 0
            if value <= 0:
                continue
            top, bottom = canvas.y(base + value), canvas.y(base)
            canvas.add(
                f'<rect class="bar series-{number}" '
                f'x="{canvas.x(index + gap):.1f}" y="{top:.1f}" '
                f'width="{width:.1f}" height="{bottom - top:.1f}">'
                f"<title>{escape(label)}: {escape(one.name)} "
                f"{_number(value)}</title></rect>"
            )
            base += value
    canvas.legend(series)
    return canvas.svg(title, summary)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    summary: str = "",
    percent: bool = False,
    ticks: Sequence[str] | None = None,
) -> Markup:
    """Lines with a dot per value; None leaves a gap. `percent`: 0.25 is 25 %.

    `ticks`, if given, are shorter labels written under the axis.
    """
    values = [v for s in series for v in s.values if v is not None] or [0]
    canvas = _Canvas(len(labels), nice_ceiling(max(values)))
    fmt = (lambda v: f"{v * 100:.3g} %") if percent else _number
    canvas.axes(ticks or labels, fmt)
    for number, one in enumerate(series):
        points = [
            (canvas.x(i + 0.5), canvas.y(v), labels[i], v)
            for i, v in enumerate(one.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _l, _v in points)
            canvas.add(f'<polyline class="line series-{number}" points="{path}"/>')
        for x, y, label, value in points:
            canvas.add(
                f'<circle class="dot series-{number}" cx="{x:.1f}" cy="{y:.1f}" '
                f'r="4"><title>{escape(label)}: {escape(one.name)} '
                f"{escape(fmt(value))}</title></circle>"
            )
    canvas.legend(series)
    return canvas.svg(title, summary)
