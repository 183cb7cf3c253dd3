"""Simulated runs in the tables, the report and the sweep-end summary.

Records written by hand (no training, no profiling): a measured sweep (backprop x 1, ddg x 2, an
oversubscribed ddg x 4 carrying a simulated twin, one whose twin was unavailable) beside
simulate=true runs, and a sweep of simulate=true runs only. Simulated numbers stay in the sim_
columns and on their own dashed "(simulated)" lines; measured ones never go there; a sweep of
simulated runs needs no measured reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import plots, reference
from analysis.load import load_runs, summary_problem
from analysis.report import analyse, build_report
from analysis.sweep_callback import run_lines
from mpbench.records import file_digests
from tests.test_report_damaged import config, write_run


def simulation(gpus: int, step_s: float, speedup: float) -> dict:
    """A summary's `simulation` section, as mpbench.simulate.simulation_record writes it, shortened."""
    return {"simulated": True, "step_s": step_s, "samples_per_s": 8 / step_s, "tokens_per_s": 8 * 64 / step_s,
            "reference_step_s": step_s * speedup, "speedup": speedup,
            "busy_s_per_worker": [step_s * 0.75] * gpus, "comm_s_per_worker": [0.0] * gpus,
            "idle_s_per_worker": [step_s * 0.25] * gpus,
            "idle_fraction_per_worker": [0.1 * (r + 1) for r in range(gpus)],
            "peak_memory_bytes_per_worker": [1000 * (r + 1) for r in range(gpus)],
            "link": {"latency_s": 1e-4, "bytes_per_s": 1e9, "source": "preset"},
            "profiled_on": {"device": "cpu", "threads": 1, "dtype": "float32", "rows_timed": [8]},
            "gantt": "gantt.png"}


def write_simulated(run_dir: Path, algorithm: str, gpus: int, step_s: float, speedup: float) -> None:
    """A simulate=true run's records (mpbench/simulate/records.py): config, summary, gantt; no metrics."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config(algorithm, gpus), "simulate": True}))
    (run_dir / "gantt.png").write_bytes(b"png")
    record = {"status": "ok", "reason": None, "simulated": True, "algorithm": algorithm, "model": "gpt",
              "dataset": "tinyshakespeare", "gpus": gpus, "steps": 4, "batch_size": 8, "seed": 0,
              "dtype": "float32", "device_type": "cpu", "threads_per_worker": 1, "oversubscribed": gpus > 2,
              "simulation": simulation(gpus, step_s, speedup),
              "environment": {"git": {"commit": "abc", "dirty": False}}, "wall_time_s": 0.5,
              "digests": file_digests(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(record))


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A measured sweep with simulated twins, and simulate=true runs beside it."""
    sweep = tmp_path / "mixed"
    write_run(sweep / "0_backprop_g1", "backprop", 1, time_per_step=0.1)
    write_run(sweep / "1_ddg_g2", "ddg", 2, time_per_step=0.05)
    write_run(sweep / "2_ddg_g4", "ddg", 4, time_per_step=0.2,
              changes={"oversubscribed": True, "simulation": simulation(4, 0.03, 3.0)})
    write_run(sweep / "3_ddg_g4", "ddg", 4, time_per_step=0.2, changes={
        "oversubscribed": True, "seed": 1, "simulation": {"simulated": True, "unavailable": "no plan for it"}})
    write_simulated(sweep / "4_backprop_g1", "backprop", 1, step_s=0.5, speedup=1.0)  # no measured reference
    write_simulated(sweep / "5_ddg_g2", "ddg", 2, step_s=0.3, speedup=1.7)
    return sweep


@pytest.fixture
def simulated_only(tmp_path) -> Path:
    sweep = tmp_path / "simulated"
    for number, gpus in enumerate((1, 2, 4)):
        write_simulated(sweep / f"{number}_ddg_g{gpus}", "ddg", gpus, step_s=0.1 / gpus ** 0.5, speedup=gpus ** 0.5)
    (sweep / "3_ddg_g8").mkdir()
    (sweep / "3_ddg_g8" / "summary.json").write_text(json.dumps(
        {"status": "skipped", "reason": "too few blocks", "algorithm": "ddg", "gpus": 8}))
    return sweep


MEASURED = ["time_per_iter_median_s", "samples_per_s", "tokens_per_s", "peak_memory_bytes_max"]
SIMULATED = ["sim_step_s", "sim_speedup", "sim_samples_per_s", "sim_idle_fraction", "sim_peak_memory_bytes"]


def test_simulated_numbers_stay_in_the_sim_columns(mixed):
    runs = load_runs(mixed).set_index("run")
    assert (runs["status"] == "ok").all(), runs["reason"]  # a simulated run is complete without metrics.jsonl
    assert runs["simulated"].dtype == bool
    assert runs["simulated"].to_dict() == {"0_backprop_g1": False, "1_ddg_g2": False, "2_ddg_g4": False,
                                           "3_ddg_g4": False, "4_backprop_g1": True, "5_ddg_g2": True}
    simulated = runs.loc["5_ddg_g2"]
    assert simulated[MEASURED].isna().all() and pd.isna(simulated["eval_loss"])
    assert simulated[SIMULATED].tolist() == pytest.approx([0.3, 1.7, 8 / 0.3, 0.15, 2000])
    assert runs.loc["1_ddg_g2", SIMULATED].isna().all()  # measured, no twin
    twin = runs.loc["2_ddg_g4"]  # measured, with its simulated twin beside
    assert twin["time_per_iter_median_s"] == 0.2 and twin["peak_memory_bytes_max"] == 400 * 2**20
    assert twin[SIMULATED].tolist() == pytest.approx([0.03, 3.0, 8 / 0.03, 0.25, 4000])
    assert runs.loc["3_ddg_g4", SIMULATED].isna().all()
    assert runs.loc["3_ddg_g4", "sim_unavailable"] == "no plan for it"


def test_the_measured_speedup_uses_only_measured_runs(mixed):
    runs = analyse(mixed).runs.set_index("run")
    assert runs.loc["1_ddg_g2", "reference_run"] == "0_backprop_g1"  # never the simulated backprop x 1
    assert pd.isna(runs.loc["5_ddg_g2", "reference_run"])  # a simulated run's reference is simulated with it
    assert runs.loc["1_ddg_g2", "speedup"] == pytest.approx(2.0)
    assert runs.loc["2_ddg_g4", "speedup"] == pytest.approx(0.5) and runs.loc["2_ddg_g4", "sim_speedup"] == 3.0
    assert pd.isna(runs.loc["5_ddg_g2", "speedup"]) and runs.loc["5_ddg_g2", "sim_speedup"] == 1.7
    assert pd.isna(runs.loc["5_ddg_g2", "scaling_over_own_1"])


def speedup_lines(runs: pd.DataFrame) -> dict[str, tuple[list, list]]:
    """The labelled lines of the speed-up figure: label -> (x, y)."""
    ax = plots.speedup(runs).axes[0]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_the_speedup_figure_draws_simulated_beside_measured_never_joined(mixed):
    lines = speedup_lines(analyse(mixed).runs)
    assert lines["ddg"] == ([2, 4, 4], pytest.approx([2.0, 0.5, 0.5]))  # measured, the oversubscribed ones too
    assert lines["ddg (simulated)"] == ([2, 4], pytest.approx([1.7, 3.0]))  # the simulate=true run and the twin
    assert lines["backprop (simulated)"] == ([1], [1.0])
    ax = plots.speedup(analyse(mixed).runs).axes[0]
    simulated = [line for line in ax.get_lines() if line.get_label().endswith("(simulated)")]
    assert all(line.get_linestyle() == "--" and line.get_marker() == "x" for line in simulated)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "ddg (simulated)" in legend and any("oversubscribed" in text for text in legend)
    assert "dashed, x: simulated" in ax.get_title()


def test_a_simulated_sweep_draws_only_simulated_lines(simulated_only):
    runs = analyse(simulated_only).runs
    lines = speedup_lines(runs)
    assert set(lines) == {"ideal (linear)", "ddg (simulated)"}
    assert lines["ddg (simulated)"][0] == [1, 2, 4]
    ax = plots.speedup(runs).axes[0]
    assert "Simulated" in ax.get_title() and "simulated" in ax.get_ylabel()
    assert "simulated" in plots.throughput(runs).axes[0].get_title().lower()


def test_the_report_heads_simulated_columns_and_leaves_measured_ones_empty(mixed):
    report = build_report(mixed)
    table = pd.read_csv(mixed / "report" / "runs.csv").set_index("run")
    assert table.loc["5_ddg_g2", ["time_per_iter_ms", "speedup", "peak_memory_mib_max"]].isna().all()
    assert table.loc["5_ddg_g2", "sim_time_per_iter_ms"] == pytest.approx(300)
    assert table.loc["5_ddg_g2", "simulated"] and not table.loc["2_ddg_g4", "simulated"]
    assert table.loc["2_ddg_g4", "time_per_iter_ms"] == pytest.approx(200)
    page = report.page.read_text()
    assert "| speed-up (simulated) |" in page and "| ms/iter (simulated) |" in page
    assert "| sim_" not in page
    assert all(path.stat().st_size > 0 for path in report.figures.values())
    assert any("2 runs are simulated" in w for w in report.warnings)
    assert any("`3_ddg_g4` has no simulated speed-up" in w and "no plan for it" in w for w in report.warnings)
    assert any(w.startswith("2 measured runs are oversubscribed") for w in report.warnings)
    assert not any(w.startswith("no reference") for w in report.warnings)


def test_a_simulated_sweep_gets_its_report_without_a_reference(simulated_only, monkeypatch):
    def must_not_run(*args):
        raise AssertionError("a simulated sweep needs no measured reference")
    monkeypatch.setattr(reference, "run_backprop", must_not_run)
    assert reference.missing_computations(load_runs(simulated_only)) == set()
    assert reference.ensure_references(simulated_only, ["simulate=true", "algorithm=ddg", "gpus=1,2,4"]) == []
    assert reference.time_after_last_point(simulated_only) == []
    assert not (simulated_only / "references").exists()
    report = build_report(simulated_only)
    assert not any("reference" in w for w in report.warnings if "simulated" not in w), report.warnings


def test_a_measured_run_still_needs_its_measured_reference(mixed):
    runs = load_runs(mixed)
    assert reference.missing_computations(runs) == set()
    measured_reference = runs["run"] == "0_backprop_g1"
    assert reference.missing_computations(runs[~measured_reference]) == set(runs["computation"])  # the simulated one is none
    assert "simulate=true" not in reference.reference_overrides(["simulate=true", "model.n_layer=2"])


def test_the_sweep_end_lines_say_simulated(mixed):
    lines = {line.split()[0]: line for line in run_lines(analyse(mixed).runs)[:-1]}
    assert "simulated, nothing trained: 300.0 ms/iter, speed-up 1.70x (simulated)" in lines["5_ddg_g2"]
    assert "eval_loss=" not in lines["5_ddg_g2"]
    assert "200.0 ms/iter" in lines["2_ddg_g4"] and "[simulated speed-up 3.00x]" in lines["2_ddg_g4"]
    assert "simulated" not in lines["1_ddg_g2"]


def test_every_line_of_a_simulated_sweep_says_simulated(simulated_only):
    lines = run_lines(load_runs(simulated_only))
    assert all("simulated, nothing trained" in line for line in lines[:3])
    assert "skipped" in lines[3] and lines[-1] == "  3 ok, 1 skipped"


@pytest.mark.parametrize("section, problem", [
    ({"step_s": "1"}, "simulation.step_s is a string, not a number"),
    ({"speedup": None, "idle_fraction_per_worker": 0.1}, "simulation.idle_fraction_per_worker is a number, not a list"),
    ({"peak_memory_bytes_per_worker": [1]}, "simulation.peak_memory_bytes_per_worker has 1 entries for 2 workers"),
    ({"unavailable": 3}, "simulation.unavailable is an integer, not a string"),
])
def test_simulation_section_shapes(section, problem):
    assert problem in summary_problem({"status": "ok", "gpus": 2, "simulated": True, "simulation": section})


def test_a_good_simulated_summary_has_no_problem():
    record = {"status": "ok", "gpus": 2, "simulated": True, "simulation": simulation(2, 0.1, 1.5)}
    assert summary_problem(record) is None
