"""The sweep report (analysis.report), its notebooks and its wandb upload, on tiny real sweeps.

- A 2 algorithms x 2 worker counts sweep writes, without anything else run, the report with every
  figure and the table: one row per run with its status, and a speed-up that equals the time per
  iteration of backprop on 1 worker over the run's, from the records.
- A sweep with a failed run still gets its report, with the failure listed.
- No runs, or no such directory: one error line, exit 2 (runs whose records are incomplete,
  unreadable or damaged are listed in the report: tests/test_report_damaged.py).
- The notebooks run top to bottom on the sweep; wandb (offline) receives the figures and table.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from analysis.report import build_report, log_to_wandb
from tests.cli import REPO, TINY, read_summary, run_cli

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it

FIGURES = ["speedup", "throughput", "convergence_step", "convergence_time", "final_quality", "time_to_target",
           "memory", "time_breakdown"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    sweep = tmp / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=backprop,ddg", "gpus=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert f"report: {sweep / 'report' / 'report.md'}" in result.stdout
    return sweep


def test_the_sweep_ends_with_its_report(sweep):
    report = sweep / "report"
    for name in FIGURES:
        assert (report / f"{name}.png").stat().st_size > 10_000, name  # a drawn figure, not an empty canvas
    page = (report / "report.md").read_text()
    assert all(f"]({name}.png)" in page for name in FIGURES)

    table = pd.read_csv(report / "runs.csv")
    parquet = pd.read_parquet(report / "runs.parquet")  # the same table, typed
    assert list(parquet.columns) == list(table.columns) and list(parquet["status"]) == list(table["status"])
    pd.testing.assert_series_equal(parquet["speedup"], table["speedup"], check_dtype=False)
    runs = {(row.algorithm, row.gpus): row for row in table.itertuples()}
    assert sorted(runs) == [("backprop", 1), ("backprop", 2), ("ddg", 1), ("ddg", 2)]
    assert runs[("backprop", 2)].status == "skipped"  # backprop runs on one worker; listed, not dropped
    assert all(runs[k].status == "ok" for k in [("backprop", 1), ("ddg", 1), ("ddg", 2)])

    def time_per_iter(algorithm, gpus):
        run_dir = next(d for d in sweep.iterdir() if d.name.endswith(f"_{algorithm}_g{gpus}"))
        return read_summary(run_dir)["time_per_iter_median_s"]
    for key in [("ddg", 1), ("ddg", 2)]:  # the suite times no reference beside the points (tests/conftest.py)
        assert runs[key].speedup == pytest.approx(time_per_iter("backprop", 1) / time_per_iter(*key), rel=1e-9)
        assert runs[key].reference_timing == "this sweep, not side by side"
    assert runs[("backprop", 1)].speedup == 1.0
    assert "no reference" not in page
    # The target is the reference's final bits per char + 5%, and backprop reaches it by its end.
    reference_final = runs[("backprop", 1)].final_metric
    assert f"{reference_final * 1.05:.4g}" in page
    assert runs[("backprop", 1)].steps_to_target <= 4


def test_a_failed_run_is_listed_in_its_sweeps_report(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *TINY, "algorithm=backprop", "fault={rank:0,step:2,kind:raise}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 1  # a sweep with a failed run says so
    page = (sweep / "report" / "report.md").read_text()
    assert "**failed**: rank 0 failed at step 2: InjectedFault" in page
    table = pd.read_csv(sweep / "report" / "runs.csv")
    assert list(table["status"]) == ["failed"]


def report_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.report", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_bad_results_directories_give_one_error_line(tmp_path, sweep):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, expected in ((empty, "no runs in"), (tmp_path / "missing", "does not exist")):
        result = report_cli(path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and expected in lines[0] and str(path) in lines[0], result.stderr
        assert not (path / "report").exists()


def test_the_cli_merges_sweeps_into_one_report(tmp_path, sweep):
    out, again = tmp_path / "merged", tmp_path / "again"
    shutil.copytree(sweep, again)
    result = report_cli(sweep, again, "--out", out, "--target", "9.5")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "runs.csv")
    assert len(table) == 8 and table["run"].is_unique
    assert (table.loc[table["status"] == "ok", "steps_to_target"] == 2).all()  # 9.5 bits/char: the first eval
    assert "9.5 (given)" in (out / "report.md").read_text()


@pytest.mark.parametrize("notebook", sorted(p.name for p in (REPO / "analysis" / "notebooks").glob("*.ipynb")))
def test_notebooks_run_top_to_bottom_on_a_sweep(notebook, sweep, tmp_path):
    nb = nbformat.read(REPO / "analysis" / "notebooks" / notebook, as_version=4)
    first = nb.cells[0] if nb.cells[0].cell_type == "code" else nb.cells[1]
    assert first.source.startswith("RESULTS = "), "the results directory is the first code line"
    first.source = f"RESULTS = {str(sweep)!r}" + first.source[first.source.index("\n"):]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    figures = [cell for cell in nb.cells if cell.cell_type == "code" and "plots." in cell.source
               and "breakdown_frame" not in cell.source]
    assert figures, "every notebook draws figures"
    for cell in figures:  # each figure cell shows its figure, drawn (not an empty canvas)
        images = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) == 1 and len(images[0]) > 10_000, cell.source


def test_wandb_receives_the_figures_and_the_table(sweep, tmp_path, monkeypatch):
    report = build_report(sweep, out_dir=tmp_path / "report")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))  # nothing written outside
    log_to_wandb(report, project="mpbench-test", mode="offline", name="report-test")
    media = list((tmp_path / "report" / "wandb").rglob("media/**/*"))
    images = [p.name for p in media if p.suffix == ".png"]
    assert all(any(image.startswith(f"{name}_") for image in images) for name in FIGURES), images
    tables = [p for p in media if p.name.endswith(".table.json")]
    assert len(tables) == 1 and len(json.loads(tables[0].read_text())["data"]) == 4
