"""The dashboard's SVG charts: well-formed, one bar an hour, numbers carried in data-count."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ivr.web import charts

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("top", "axis", "step"),
    [(0, 4, 1), (3, 4, 1), (6, 6, 2), (7, 8, 2), (13, 15, 5), (95, 100, 50), (101, 150, 50)],
)
def test_axis_tops_are_round(top: int, axis: int, step: int) -> None:
    assert charts.nice_ceiling(top) == (axis, step)


def test_hour_bars_draw_24_bars_with_their_counts() -> None:
    counts = [0] * 24
    counts[9], counts[18] = 7, 3
    root = ET.fromstring(charts.hour_bars(counts, busiest_label="<b>&"))
    bars = root.findall(f"{SVG}rect")
    assert [int(bar.get("data-count", "")) for bar in bars] == counts
    assert [int(bar.get("data-hour", "")) for bar in bars] == list(range(24))
    heights = {int(bar.get("data-hour", "")): float(bar.get("height", "")) for bar in bars}
    assert heights[9] > heights[18] > heights[0] == 0
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert "7" in texts and "00" in texts and "23" in texts
    assert root.findtext(f"{SVG}title") == "<b>&"  # escaped in the SVG, read back as text


def test_hour_bars_need_24_hours() -> None:
    with pytest.raises(ValueError, match="24"):
        charts.hour_bars([1, 2, 3])


def test_the_funnel_shows_each_stage_its_share_and_the_loss() -> None:
    stages = [charts.Stage("a", "Все <звонки>", 20), charts.Stage("b", "Дошли", 5)]
    root = ET.fromstring(charts.funnel(stages))
    groups = root.findall(f"{SVG}g")
    assert [(g.get("data-stage"), g.get("data-count")) for g in groups] == [("a", "20"), ("b", "5")]
    text = " ".join("".join(g.itertext()) for g in groups)
    assert "Все <звонки>" in text and "100%" in text and "25%" in text and "−15" in text


def test_an_empty_funnel_has_no_shares() -> None:
    root = ET.fromstring(charts.funnel([charts.Stage("a", "Все", 0)]))
    assert "—" in "".join(root.itertext())
