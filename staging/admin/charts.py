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
    """A round number of KiB, MiB, GiB... (1, 2 or 5 times a power of ten of the unit)."""
    unit = 1
    while value >= 1000 * unit and unit < 1024**5:
        unit *= 1024
    return nice_ceiling(value / unit) * unit


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
    chart = Chart(
        title=title,
        width=width,
        height=height,
        plot_top=10,
        plot_bottom=height - 24,
        plot_left=64,
        plot_right=width - 8,
        legend=list(legend),
    )
    peak = max((sum(s.value for s in segments) for _, segments in columns), default=0)
    top = ceiling(peak)
    plot_height = chart.plot_bottom - chart.plot_top
    slot = (chart.plot_right - chart.plot_left) / max(len(columns), 1)
    for fraction in (0, 0.5, 1):
        label = value_format(top * fraction)
        if any(label == existing for _, existing in chart.y_ticks):
            continue  # a half that rounds to a neighbour (a scale of 0 to 1 job)
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
