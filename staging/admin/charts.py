"""Bar charts drawn on the server as SVG geometry (templates/admin/staging/chart.html renders
it): the dashboard works without any script or network access."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Segment:
    value: float
    css_class: str
    label: str


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css_class: str
    title: str


@dataclass
class Chart:
    title: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    plot_left: int
    plot_right: int
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    total: str = ""


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (1 for 0)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def nice_ceiling_bytes(value: float) -> float:
    """A round number of KiB, MiB, GiB... (1, 2 or 5 times a power of ten of the unit); a
    thousand of a unit is one of the next ("1.0 MB", not the wider "1000.0 KB")."""
    unit = 1
    while value >= 1000 * unit and unit < 1024**5:
        unit *= 1024
    ceiling = nice_ceiling(value / unit)
    if ceiling >= 1000 and unit < 1024**5:
        return 1024 * unit
    return ceiling * unit


# Tick labels are drawn 12 units high; room for the widest character and a gap to the axis.
TICK_FONT_SIZE = 12
TICK_CHAR_WIDTH = 7.5
TICK_GAP = 6


def stacked_bar_chart(
    *,
    title: str,
    columns: Sequence[tuple[str, Sequence[Segment]]],
    legend: Sequence[tuple[str, str]],
    value_format: Callable[[float], str] = lambda v: f"{v:g}",
    ceiling: Callable[[float], float] = nice_ceiling,
    label_every: int = 3,
    width: int = 600,
    height: int = 220,
) -> Chart:
    """One stacked bar per column (label, segments bottom-up), a y axis from 0 to a round
    maximum with three ticks, and every ``label_every``-th column labelled."""
    peak = max((sum(s.value for s in segments) for _, segments in columns), default=0)
    top = ceiling(peak)
    ticks: list[tuple[float, str]] = []
    for fraction in (0, 0.5, 1):
        label = value_format(top * fraction)
        if all(label != existing for _, existing in ticks):  # a half may round to a neighbour
            ticks.append((fraction, label))
    widest = max(len(label) for _, label in ticks)
    chart = Chart(
        title=title,
        width=width,
        height=height,
        # The top tick's label is centred on the top line: half its height above, and a margin.
        plot_top=TICK_FONT_SIZE,
        plot_bottom=height - 24,
        # Wide enough for the widest tick label ("500.0 MB"), so none is cut at the left edge.
        plot_left=max(48, math.ceil(widest * TICK_CHAR_WIDTH) + TICK_GAP + 2),
        plot_right=width - 8,
        legend=list(legend),
    )
    plot_height = chart.plot_bottom - chart.plot_top
    slot = (chart.plot_right - chart.plot_left) / max(len(columns), 1)
    for fraction, label in ticks:
        y = chart.plot_bottom - fraction * plot_height
        chart.y_ticks.append((round(y, 1), label))
    grand_total = 0.0
    for index, (label, segments) in enumerate(columns):
        x = chart.plot_left + index * slot + slot * 0.15
        base = chart.plot_bottom
        for segment in segments:
            if segment.value <= 0:
                continue
            grand_total += segment.value
            bar_height = segment.value / top * plot_height
            base -= bar_height
            chart.bars.append(
                Bar(
                    x=round(x, 1),
                    y=round(base, 1),
                    width=round(slot * 0.7, 1),
                    height=round(bar_height, 1),
                    css_class=segment.css_class,
                    title=f"{label}: {value_format(segment.value)} {segment.label}",
                )
            )
        if index % label_every == 0:
            chart.x_labels.append((round(x + slot * 0.35, 1), label))
    chart.total = value_format(grand_total)
    return chart
