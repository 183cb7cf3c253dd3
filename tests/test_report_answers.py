"""The report answers "which algorithm, at what cost" from matched references (issue 28).

Records written by hand (no training), as the runs write them:
- a reference matches a run on every key that changes the computation or the target: a backprop
  run at another learning rate or seed is never a reference, and a reference timed in another
  sweep is marked, in the table and the figure;
- a reference timed again at the sweep's end is timed by the mean of its timings, and their
  range widens every speed-up's error bar over it;
- a speed-up above the worker count beyond its error bar is flagged: table, figure, summary;
- the summary says, per worker count and method, speed-up, quality lost and time to target, and
  which differences exceed the noise (one seed: a floor; several: a t-interval);
- time to target is interpolated between evaluations;
- simulated runs draw their predicted memory and time in the per-worker figures, large runs show
  a labelled subset of their workers, empty figures are left out with a reason, Gantt charts linked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import plots
from analysis.derive import Metric, crossing
from analysis.load import SWEEP_MARK
from analysis.report import analyse, build_report
from mpbench.records import file_digests
from tests.test_report_damaged import summary
from tests.test_report_simulated import write_simulated

ADAMW = {"name": "adamw", "lr": 0.003, "schedule": "cosine"}


def write(run_dir: Path, algorithm: str, gpus: int, step_s: float, *, lr: float = 0.003, seed: int = 0,
          steps: int = 4, bpc: float = 5.3, iqr: float = 0.0, curve: list[float] | None = None) -> None:
    """A finished measured run: config (with its optimizer), metrics and summary."""
    run_dir.mkdir(parents=True)
    config = {"algorithm": {"name": algorithm}, "model": {"name": "gpt", "n_layer": 2},
              "dataset": {"name": "tinyshakespeare", "seq_len": 64}, "gpus": gpus, "device": "auto",
              "threads_per_worker": 1, "steps": steps, "batch_size": 8, "seed": seed, "dtype": "float32",
              "optimizer": {**ADAMW, "lr": lr}, "eval_batches": 2}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    curve = curve or [bpc + 1.0, bpc]  # bits per char at steps 2 and 4
    rows = [{"step": s, "train_loss": 4.0, "lr": lr, "step_time_s": step_s} for s in range(1, steps + 1)]
    for value, row in zip(curve, rows[1::2]):
        row.update(eval_loss=value * 0.69, eval_bits_per_char=value)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = {**summary(algorithm, gpus, step_s), "seed": seed, "steps": steps, "time_per_iter_iqr_s": iqr,
              "final": {"train_loss": 4.0, "eval_loss": curve[-1] * 0.69, "eval_bits_per_char": curve[-1]}}
    record["digests"] = file_digests(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(record))


def sweep_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / SWEEP_MARK).write_text("hydra: {}\n")  # what Hydra leaves in a multirun's directory
    return path


def test_a_reference_at_another_learning_rate_or_seed_is_never_used(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.1, lr=0.01)
    write(sweep / "1_backprop_g1", "backprop", 1, 0.1, seed=1)
    write(sweep / "2_data_parallel_g2", "data_parallel", 2, 0.02)
    runs = analyse(sweep).runs.set_index("run")
    assert pd.isna(runs.loc["2_data_parallel_g2", "reference_run"])
    assert pd.isna(runs.loc["2_data_parallel_g2", "speedup"]) and pd.isna(runs.loc["2_data_parallel_g2", "target"])
    write(sweep / "3_backprop_g1", "backprop", 1, 0.1)  # the same computation: now it has its reference
    runs = analyse(sweep).runs.set_index("run")
    assert runs.loc["2_data_parallel_g2", "reference_run"] == "3_backprop_g1"
    assert runs.loc["2_data_parallel_g2", "speedup"] == pytest.approx(5.0)


def test_a_speedup_is_over_the_reference_timed_just_before_and_after_the_run(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.30)  # its own run, minutes away: not the speed-up's reference
    write(sweep / "1_ddg_g2", "ddg", 2, 0.06)
    write(sweep / "2_ddg_g2", "ddg", 2, 0.05, seed=1)
    timings = sweep / "references"
    write(timings / "timing_001_before_1_ddg_g2", "backprop", 1, 0.10, steps=20)
    write(timings / "timing_002_before_2_ddg_g2", "backprop", 1, 0.14, steps=20, seed=1)  # times alike: brackets 1
    write(timings / "timing_003_end", "backprop", 1, 0.12, steps=20, seed=1)
    a = analyse(sweep)
    runs = a.runs.set_index("run")
    assert not runs.index.str.startswith("timing_").any()  # they time the reference; they are no method of the sweep
    first, second = runs.loc["1_ddg_g2"], runs.loc["2_ddg_g2"]
    assert first["reference_run"] == "0_backprop_g1" and first["reference_timing"] == "side by side"
    assert first["speedup"] == pytest.approx(0.12 / 0.06)
    assert first["speedup_spread"] == pytest.approx(2.0 * 0.04 / 0.12)  # the two timings' difference over their mean
    assert pd.isna(second["reference_run"])  # seed 1 has no full reference run, yet its speed is measured
    assert second["speedup"] == pytest.approx(0.13 / 0.05) and second["reference_timing"] == "side by side"
    assert runs.loc["0_backprop_g1", "speedup"] == 1.0
    page = build_report(sweep).page.read_text()
    assert "- speed-ups side by side: 2 runs" in page
    assert "3 timing runs (`references/timing_*`), 3 ok, 100.0 to 140.0 ms/iter" in page


def test_a_speedup_without_timings_beside_it_is_over_the_references_own_run_and_drawn_as_a_square(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.10)
    write(sweep / "1_ddg_g2", "ddg", 2, 0.05)
    runs = analyse(sweep).runs.set_index("run")
    assert runs.loc["1_ddg_g2", "speedup"] == pytest.approx(2.0)
    assert runs.loc["1_ddg_g2", "reference_timing"] == "this sweep, not side by side"
    ax = plots.speedup(analyse(sweep).runs).axes[0]
    assert [list(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "s"] == [[2]]


def test_a_reference_from_another_sweep_is_marked_in_the_table_and_figure(tmp_path):
    first, second = sweep_dir(tmp_path / "first"), sweep_dir(tmp_path / "second")
    write(first / "0_backprop_g1", "backprop", 1, 0.1)
    write(second / "0_ddg_g2", "ddg", 2, 0.05)
    runs = analyse([first, second]).runs.set_index("run")
    merged = runs.loc["second/0_ddg_g2"]
    assert merged["reference_run"] == "first/0_backprop_g1" and merged["reference_timing"] == "another moment"
    ax = plots.speedup(analyse([first, second]).runs).axes[0]
    squares = [line for line in ax.get_lines() if line.get_marker() == "s"]
    assert [list(line.get_xdata()) for line in squares] == [[2]]
    assert any("not timed" in text.get_text() for text in ax.get_legend().get_texts())


def test_a_speedup_above_the_worker_count_is_flagged_everywhere(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.153, iqr=0.003)
    write(sweep / "1_data_parallel_g1", "data_parallel", 1, 0.100, iqr=0.002)  # 1.53x on one worker
    write(sweep / "2_data_parallel_g2", "data_parallel", 2, 0.080, iqr=0.040)  # 1.9x, a wide bar: plausible
    report = build_report(sweep)
    table = pd.read_csv(sweep / "report" / "runs.csv").set_index("run")
    assert table.loc["1_data_parallel_g1", "speedup_implausible"]
    assert not table.loc["2_data_parallel_g2", "speedup_implausible"]
    assert not table.loc["0_backprop_g1", "speedup_implausible"]
    implausible = [s for s in report.summary.statements if s.startswith("**Implausible:**")]
    assert len(implausible) == 1 and "data_parallel x1 is 1.53x" in implausible[0]
    ax = plots.speedup(analyse(sweep).runs).axes[0]
    rings = [line for line in ax.get_lines() if line.get_markeredgecolor() == "red"]
    assert [list(line.get_xdata()) for line in rings] == [[1]]
    assert any("1.53x > 1 workers" in text.get_text() for text in ax.texts)


def test_time_to_target_is_interpolated_between_evaluations():
    evals = pd.DataFrame({"step": [100, 200, 300], "bpc": [3.0, 2.6, 2.2]})
    lower = Metric("eval_bits_per_char", False)
    assert crossing(evals.rename(columns={"bpc": "m"}), "m", lower, 2.5) == pytest.approx(225)
    assert crossing(evals.rename(columns={"bpc": "m"}), "m", lower, 3.1) == 100  # at the first: an upper bound
    assert crossing(evals.rename(columns={"bpc": "m"}), "m", lower, 2.0) is None
    accuracy = pd.DataFrame({"step": [10, 20], "m": [0.4, 0.8]})
    assert crossing(accuracy, "m", Metric("eval_accuracy", True), 0.5) == pytest.approx(12.5)


def test_the_time_to_target_comes_from_the_step_times_at_the_crossing(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.1, curve=[6.0, 5.0])
    write(sweep / "1_ddg_g2", "ddg", 2, 0.2, curve=[6.0, 5.2])  # target 5.25 between its evals at 2 and 4
    runs = analyse(sweep).runs.set_index("run")
    assert runs.loc["1_ddg_g2", "steps_to_target"] == pytest.approx(2 + 2 * (6.0 - 5.25) / 0.8)
    assert runs.loc["1_ddg_g2", "time_to_target_s"] == pytest.approx(0.2 * runs.loc["1_ddg_g2", "steps_to_target"])


def test_the_summary_says_what_one_seed_cannot_resolve_and_what_it_can(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write(sweep / "0_backprop_g1", "backprop", 1, 0.1, bpc=3.40)
    write(sweep / "1_data_parallel_g2", "data_parallel", 2, 0.06, bpc=3.4001)
    write(sweep / "2_local_critic_g2", "local_critic", 2, 0.05, bpc=3.03)  # 0.37 bits/char better
    report = build_report(sweep)
    table = report.summary.table.set_index(["workers", "method"])
    assert table.loc[(2, "data_parallel"), "quality lost (bits/char)"] == "+0.000 (one seed)"
    assert table.loc[(2, "local_critic"), "quality lost (bits/char)"] == "-0.370 (one seed)"
    assert table.loc[(2, "local_critic"), "speed-up"].startswith("2.00x")
    assert "quality not resolvable (one seed)" in table.loc[(2, "data_parallel"), "verdict"]
    assert table.loc[(1, "backprop"), "verdict"] == "the reference"
    assert "better quality (one seed)" in table.loc[(2, "local_critic"), "verdict"]
    statements = " ".join(report.summary.statements)
    assert "One seed: quality differences under 0.34 bits/char are not resolvable; run `seed=0,1,2`" in statements
    assert "local_critic x2: 0.37 bits/char better than backprop with one seed" in statements
    page = report.page.read_text()
    assert page.index("## Summary") < page.index("## Runs")
    assert (sweep / "report" / "summary.csv").exists()


def test_the_summary_resolves_differences_over_seeds(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    for seed, (reference, worse, near) in enumerate([(3.40, 3.50, 3.41), (3.42, 3.53, 3.41), (3.44, 3.53, 3.45)]):
        write(sweep / f"{4 * seed}_backprop_g1", "backprop", 1, 0.1, seed=seed, bpc=reference)
        write(sweep / f"{4 * seed + 1}_ddg_g2", "ddg", 2, 0.06, seed=seed, bpc=worse)
        write(sweep / f"{4 * seed + 2}_dni_g2", "dni", 2, 0.07, seed=seed, bpc=near)
        write(sweep / f"{4 * seed + 3}_local_critic_g1", "local_critic", 1, 0.1, seed=seed, bpc=reference)
    report = build_report(sweep)
    table = report.summary.table.set_index(["workers", "method"])
    assert table.loc[(2, "ddg"), "seeds"] == 3
    assert table.loc[(2, "ddg"), "quality lost (bits/char)"].startswith("+0.100 ±")
    assert "worse quality" in table.loc[(2, "ddg"), "verdict"]
    assert "quality within noise" in table.loc[(2, "dni"), "verdict"]
    assert "same quality" in table.loc[(1, "local_critic"), "verdict"]
    statements = " ".join(report.summary.statements)
    assert "ddg x2: 0.1 bits/char worse than backprop over 3 seeds" in statements and "One seed" not in statements


def test_simulated_runs_draw_their_memory_and_time_and_large_runs_say_what_is_shown(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    write_simulated(sweep / "0_ddg_g2", "ddg", 2, step_s=0.3, speedup=1.7)
    write_simulated(sweep / "1_ddg_g64", "ddg", 64, step_s=0.05, speedup=10.0)
    a = analyse(sweep)
    memory = plots.memory(a.runs, a.workers).axes[0]
    labels = [t.get_text() for t in memory.get_yticklabels()]
    assert len(labels) == 2 + 8 and all("(simulated)" in label for label in labels)
    assert "ddg x64 (simulated)  rank 63  (8 of 64 workers shown)" in labels
    assert all(patch.get_hatch() for patch in memory.patches)  # hatched: simulated
    breakdown = plots.time_breakdown(a.runs, a.workers)
    legend = [t.get_text() for t in breakdown.legends[0].get_texts()]
    assert any(text.startswith("simulated: busy") for text in legend)
    assert any(text.startswith("simulated: idle") for text in legend)
    report = build_report(sweep)
    assert {"convergence_step", "convergence_time", "final_quality"} <= set(report.omitted)
    assert "nothing was trained" in report.omitted["convergence_step"]
    assert not (sweep / "report" / "convergence_step.png").exists()
    page = report.page.read_text()
    assert "## Figures left out" in page and "- Convergence per step: every run" in page
    assert "- [ddg x64](../1_ddg_g64/gantt.png)" in page
    assert {"speedup", "memory", "time_breakdown"} <= set(report.figures)


def test_the_speedup_axes_are_logarithmic_over_a_wide_worker_range(tmp_path):
    sweep = sweep_dir(tmp_path / "sweep")
    for number, gpus in enumerate((1, 4, 16, 64)):
        write_simulated(sweep / f"{number}_ddg_g{gpus}", "ddg", gpus, step_s=0.1 / gpus, speedup=gpus * 0.8)
    ax = plots.speedup(analyse(sweep).runs).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    narrow = sweep_dir(tmp_path / "narrow")
    write_simulated(narrow / "0_ddg_g2", "ddg", 2, step_s=0.1, speedup=1.5)
    assert plots.speedup(analyse(narrow).runs).axes[0].get_yscale() == "linear"
