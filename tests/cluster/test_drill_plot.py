"""The drill's --plot: every panel has a legend that names answered and failed probes
and the recovery marks, and sits clear of the plotted data (matplotlib lays the
figure out for real; the drill's results are built here, not measured)."""

from __future__ import annotations

import matplotlib
import pytest
from matplotlib.colors import to_rgba
from pacestack.cluster import drill
from pacestack.cluster.drill import cli

matplotlib.use("Agg")


def _scenario(name: str, probes: tuple[str, ...], down: tuple[float, float],
              detected: float, services: float | None) -> drill.ScenarioResult:
    """Answers every 0.1 s from 2 s before the fault to 25 s after it, failing in ``down``."""
    points = [(round(i / 10, 1), not down[0] <= i / 10 < down[1]) for i in range(-20, 250)]
    return drill.ScenarioResult(
        name=name, victim="controller01", detection_s=detected, services_s=services,
        timeline={"writes": points, "probes": {p: points for p in probes},
                  "t0": 100.0, "t_back": 118.0})


@pytest.fixture
def report() -> drill.DrillReport:
    return drill.DrillReport(run_id="plot", seconds=60.0, token_ms=1000, monitor_interval_s=5,
                             scenarios=[
        _scenario("node-crash", ("keystone", "neutron-server", "vip"), (0.0, 6.2), 2.1, 9.5),
        _scenario("kill-service", ("keystone",), (0.0, 0.0), 1.0, 3.2),  # nothing failed
        _scenario("partition", ("keystone", "neutron-server"), (0.5, 24.9), 3.0, None)])


def test_each_panel_has_a_legend_clear_of_the_data(report, tmp_path):
    fig = cli.timeline_figure(report)
    fig.canvas.draw()  # the real layout: constrained layout places panels and legends
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(panels) == 3
    figure_box = fig.bbox
    for ax in panels:
        legend = ax.get_legend()
        assert legend is not None, ax.get_title(loc="left")
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels[:2] == ["answered", "failed"], labels
        assert {"fault", "detected"} <= set(labels)
        colors = [to_rgba(h.get_color()) for h in legend.legend_handles[:2]]
        assert colors == [to_rgba(cli.ANSWERED), to_rgba(cli.FAILED)]
        box = legend.get_window_extent(renderer)
        # no panel's plotting area (where every probe's row and mark is drawn) under it
        for other in panels:
            assert not box.overlaps(other.get_window_extent(renderer)), \
                (ax.get_title(loc="left"), other.get_title(loc="left"))
        # and all of it on the page
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1
        assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1
    png = cli.plot(report, tmp_path / "timeline.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
