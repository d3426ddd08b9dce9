"""The dashboard's server-drawn bar charts: scale, bar geometry, labels."""

import pytest

from staging.admin.charts import Segment, nice_ceiling, nice_ceiling_bytes, stacked_bar_chart


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (120, 200), (0.3, 0.5)]
)
def test_the_scale_tops_at_a_round_number(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_byte_scales_top_at_round_binary_units():
    assert nice_ceiling_bytes(180 * 1024**2) == 200 * 1024**2
    assert nice_ceiling_bytes(3 * 1024**3) == 5 * 1024**3


def test_bars_stack_bottom_up_in_proportion_to_their_values():
    chart = stacked_bar_chart(
        title="t",
        columns=[("00:00", [Segment(2, "a", "done"), Segment(3, "b", "failed")]), ("01:00", [])],
        legend=[],
        height=120,
    )

    plot = chart.plot_bottom - chart.plot_top
    first, second = chart.bars
    assert (first.css_class, second.css_class) == ("a", "b")
    assert first.height == pytest.approx(plot * 2 / 5, abs=0.1)
    assert second.y + second.height == pytest.approx(first.y, abs=0.1)
    assert second.title == "00:00: 3 failed"
    assert [label for _, label in chart.y_ticks] == ["0", "2.5", "5"]
    assert chart.total == "5"


def test_a_scale_of_one_job_shows_no_half_tick():
    chart = stacked_bar_chart(
        title="t",
        columns=[("00:00", [Segment(1, "a", "x")])],
        legend=[],
        value_format=lambda v: f"{v:,.0f}",
    )

    assert [label for _, label in chart.y_ticks] == ["0", "1"]
