"""The Gantt chart of one simulated step: every part visible, messages drawn, a capped chart says so."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import LineCollection

from algorithms.data_parallel import DataParallelSettings
from algorithms.pipeline import PipelineSettings
from mpbench.simulate import gantt
from mpbench.simulate.simulation import run_plan
from tests.test_simulator_plans import FakeCosts, setup


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Draw a chart and keep its figure for inspection (instead of closing it)."""
    figures, close = [], plt.close
    monkeypatch.setattr(gantt.plt, "close", figures.append)

    def draw(simulated, title="chart"):
        path = gantt.draw_gantt(simulated, title, tmp_path / "gantt.png")
        assert path.stat().st_size > 0
        return figures[-1]
    yield draw
    for figure in figures:
        close(figure)


def messages_drawn(figure) -> list:
    return [segment for c in figure.axes[0].collections if isinstance(c, LineCollection) for segment in c.get_segments()]


def test_a_pipelines_messages_are_drawn_from_sender_to_receiver(drawn):
    ran = run_plan(setup("pipeline", 4, PipelineSettings(schedule="1f1b", microbatches=8), FakeCosts(blocks_n=4)))
    figure = drawn(ran)
    sent, lines = gantt.messages(ran, {0, 1, 2, 3}), messages_drawn(figure)
    assert sent and len(lines) == len(sent)
    label = {row: tick.get_text() for row, tick in enumerate(figure.axes[0].get_yticklabels())}
    for (t0, y0), (t1, y1) in lines:
        sender, receiver = int(label[round(y0)][1:]), int(label[round(y1)][1:])  # compute rows, "w<i>"
        assert t1 >= t0 and abs(sender - receiver) == 1  # between neighbouring stages, never back in time
    assert "message" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]


def test_data_parallel_sends_no_point_to_point_message(drawn):
    ran = run_plan(setup("data_parallel", 2, DataParallelSettings(), FakeCosts(per_row=True)))
    assert gantt.messages(ran, {0, 1}) == [] and messages_drawn(drawn(ran)) == []


def test_the_overhead_has_a_colour_of_its_own(drawn):
    ran = run_plan(setup("backprop", 1, None, FakeCosts(overhead=0.5)))
    figure = drawn(ran)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "overhead" in legend
    assert gantt.COLOURS["overhead"] not in {c for k, c in gantt.COLOURS.items() if k != "overhead"}


def test_a_one_worker_chart_is_not_clipped(drawn):
    figure = drawn(run_plan(setup("backprop", 1, None, FakeCosts())), title="backprop, 1 workers, gpt")
    figure.canvas.draw()
    box, renderer = figure.bbox, figure.canvas.get_renderer()
    ax = figure.axes[0]
    for text in (ax.title, ax.xaxis.label, *ax.get_xticklabels()):
        extent = text.get_window_extent(renderer)
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, text.get_text()


def test_a_capped_chart_says_how_many_workers_it_shows(drawn):
    many = run_plan(setup("data_parallel", 40, DataParallelSettings(), FakeCosts(per_row=True)))
    figure = drawn(many)
    assert "first 32 of 40 workers shown" in figure.axes[0].get_title()
    assert len([t for t in figure.axes[0].get_yticklabels() if "comm" not in t.get_text()]) == 32
    few = run_plan(setup("data_parallel", 4, DataParallelSettings(), FakeCosts(per_row=True)))
    assert "shown" not in drawn(few).axes[0].get_title()
