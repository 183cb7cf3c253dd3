"""The report and the sweep-end summary on results that are incomplete, unreadable or damaged.

Records written by hand (no training): a sweep holding two good runs beside a killed run, an
empty run directory, summaries of the wrong shape, a metrics.jsonl changed after its run ended
(digests), one truncated without digests, and config.yaml files that are not a mapping. Every run
is listed with its status and a reason naming the file; nothing raises; the report is written
from the runs that can be read, also when there are none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from analysis.load import load_curves, load_runs, load_workers, summary_problem
from analysis.report import build_report
from analysis.sweep_callback import SweepSummary, run_lines
from mpbench.records import file_digests

REPO = Path(__file__).resolve().parents[1]


def config(algorithm: str, gpus: int) -> dict:
    return {"algorithm": {"name": algorithm, "placement": "linear"}, "model": {"name": "gpt", "n_layer": 2},
            "dataset": {"name": "tinyshakespeare", "seq_len": 64}, "gpus": gpus, "device": "auto",
            "threads_per_worker": 1, "steps": 4, "batch_size": 8, "seed": 0, "dtype": "float32"}


def metrics(time_per_step: float) -> str:
    rows = [{"step": s, "train_loss": 4.0 - 0.1 * s, "lr": 0.001, "step_time_s": time_per_step} for s in range(1, 5)]
    for row in rows[1::2]:
        row.update(eval_loss=row["train_loss"] + 0.1, eval_bits_per_char=(row["train_loss"] + 0.1) * 1.44)
    return "".join(json.dumps(r) + "\n" for r in rows)


def summary(algorithm: str, gpus: int, time_per_step: float) -> dict:
    """As mpbench.launch.compose_summary writes it, shortened."""
    def workers(value) -> list:
        return [value] * gpus
    return {"status": "ok", "reason": None, "algorithm": algorithm, "model": "gpt", "dataset": "tinyshakespeare",
            "gpus": gpus, "steps": 4, "batch_size": 8, "seed": 0, "dtype": "float32", "device_type": "cpu",
            "threads_per_worker": 1, "oversubscribed": False, "steps_completed": 4,
            "final": {"train_loss": 3.6, "eval_loss": 3.7, "eval_bits_per_char": 5.3},
            "time_per_iter_median_s": time_per_step, "samples_per_s": 8 / time_per_step,
            "algorithm_facts_per_worker": workers({"modules": gpus}),
            "peak_memory_bytes_per_worker": workers(400 * 2**20),
            "baseline_memory_bytes_per_worker": workers(350 * 2**20),
            "iteration_s_per_worker": workers(time_per_step), "compute_s_per_worker": workers(time_per_step / 2),
            "wait_s_per_worker": workers(0.0), "bytes_sent_per_worker": workers(1000),
            "environment": {"git": {"commit": "abc", "dirty": False}}, "wall_time_s": 1.0}


def write_run(run_dir: Path, algorithm: str = "ddg", gpus: int = 2, time_per_step: float = 0.05,
              digests: bool = True, changes: dict | None = None) -> dict:
    """A finished run's records; `changes` are applied to its summary."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config(algorithm, gpus)))
    (run_dir / "metrics.jsonl").write_text(metrics(time_per_step))
    record = {**summary(algorithm, gpus, time_per_step), **(changes or {})}
    if digests:
        record["digests"] = file_digests(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(record))
    return record


def killed(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config("ddg", 2)))


def with_summary(text: str | bytes):
    def write(run_dir: Path) -> None:
        killed(run_dir)
        path = run_dir / "summary.json"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return write


def with_record(**changes):
    return lambda run_dir: write_run(run_dir, changes=changes)


def changed_metrics(run_dir: Path) -> None:
    write_run(run_dir)  # with digests
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train_lo')


def truncated_metrics(run_dir: Path) -> None:
    write_run(run_dir, digests=False)
    text = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text(text[:-30])


def with_config(text: str):
    def write(run_dir: Path) -> None:
        write_run(run_dir, digests=False)
        (run_dir / "config.yaml").write_text(text)
    return write


WRONG = summary("ddg", 2, 0.05)
# run directory -> (how it is written, its status, what its reason says)
BROKEN = {
    "2_ddg_g2": (killed, "incomplete", "no summary.json"),
    "3_ddg_g2": (lambda d: d.mkdir(parents=True), "incomplete", "empty directory"),
    "4_ddg_g2": (with_summary("[1, 2]"), "unreadable", "summary.json is a list, not a JSON object"),
    "5_ddg_g2": (with_summary('"ok"'), "unreadable", "summary.json is a string, not a JSON object"),
    "6_ddg_g2": (with_summary('{"algorithm": "ddg", "gpus": 2}'), "unreadable", "summary.json has no status"),
    "7_ddg_g2": (with_record(final=[3.7]), "unreadable", "summary.json: final is a list, not an object"),
    "8_ddg_g2": (with_record(bytes_sent_per_worker=[1000]), "unreadable",
                 "summary.json: bytes_sent_per_worker has 1 entries for 2 workers"),
    "9_ddg_g2": (with_record(peak_memory_bytes_per_worker=[1, "2"]), "unreadable",
                 "summary.json: peak_memory_bytes_per_worker[1] is a string, not a number"),
    "10_ddg_g2": (with_record(time_per_iter_median_s="0.05"), "unreadable",
                  "summary.json: time_per_iter_median_s is a string, not a number"),
    "11_ddg_g2": (with_record(status=3), "unreadable", "summary.json: status is an integer"),
    "12_ddg_g2": (with_record(gpus="2"), "unreadable", "summary.json: gpus is a string, not an integer"),
    "13_ddg_g2": (with_record(final={"eval_loss": "3.7"}), "unreadable", "summary.json: final.eval_loss is a string"),
    "14_ddg_g2": (with_record(environment=[]), "unreadable", "summary.json: environment is a list"),
    "15_ddg_g2": (with_summary(b'{"status": "ok", "reason": "\xff\xfe"}'), "unreadable", "summary.json is not UTF-8"),
    "16_ddg_g2": (with_summary('{"status": "ok", '), "unreadable", "summary.json is not valid JSON"),
    "17_ddg_g2": (changed_metrics, "damaged", "metrics.jsonl changed since the run ended"),
    "18_ddg_g2": (with_config("algorithm: [unclosed\n"), "unreadable", "config.yaml is not valid YAML"),
    "19_ddg_g2": (with_config("- a list\n"), "unreadable", "config.yaml is a list, not a mapping"),
    "20_ddg_g2": (with_config("algorithm: ddg\n"), "unreadable", "config.yaml: algorithm is a string, not a mapping"),
}


def make_broken(sweep: Path) -> None:
    for name, (write, _, _) in BROKEN.items():
        write(sweep / name)


@pytest.fixture
def sweep(tmp_path) -> Path:
    sweep = tmp_path / "sweep"
    write_run(sweep / "0_backprop_g1", "backprop", 1, time_per_step=0.1)
    write_run(sweep / "1_ddg_g2", "ddg", 2, time_per_step=0.05)
    write_run(sweep / "21_ddg_g1", "ddg", 1, digests=False,
              changes={"final": {}, "time_per_iter_median_s": None})  # ok, no numbers
    truncated_metrics(sweep / "22_ddg_g2")  # ok, but its curves cannot be read
    make_broken(sweep)
    files = sweep / "1_ddg_g2" / "wandb" / "offline-run-1" / "files"  # logger=wandb: not a run of its own
    files.mkdir(parents=True)
    (files / "config.yaml").write_text("wandb_version: 1\n")
    return sweep


def test_every_run_is_listed_with_its_status_and_a_reason_naming_the_file(sweep):
    runs = load_runs(sweep).set_index("run")
    expected = {name: (status, reason) for name, (_, status, reason) in BROKEN.items()}
    expected |= {name: ("ok", None) for name in ("0_backprop_g1", "1_ddg_g2", "21_ddg_g1", "22_ddg_g2")}
    assert sorted(runs.index) == sorted(expected)
    for name, (status, reason) in expected.items():
        assert runs.loc[name, "status"] == status, (name, runs.loc[name, "reason"])
        if reason:
            assert reason in runs.loc[name, "reason"], (name, runs.loc[name, "reason"])
    assert runs.loc["17_ddg_g2", "reason"].endswith("; its summary says ok")
    # What could be read stays in the row: the config of a killed run, the summary of a damaged one.
    assert runs.loc["2_ddg_g2", ["algorithm", "gpus", "batch_size"]].tolist() == ["ddg", 2, 8]
    assert runs.loc["17_ddg_g2", "time_per_iter_median_s"] == 0.05
    assert runs.loc["1_ddg_g2", "peak_memory_bytes_max"] == 400 * 2**20
    assert runs.loc["1_ddg_g2", "eval_bits_per_char"] == 5.3
    assert runs["time_per_iter_median_s"].dtype == float


def test_curves_and_workers_come_only_from_readable_records(sweep):
    runs = load_runs(sweep)
    notes: list[str] = []
    curves = load_curves(runs, notes)
    assert set(curves["run"]) == {"0_backprop_g1", "1_ddg_g2", "21_ddg_g1"}  # not the damaged 17_ddg_g2
    assert len(notes) == 1 and notes[0].startswith("curves of `22_ddg_g2` left out: metrics.jsonl line 4 is not valid JSON")
    training_time = curves.groupby("run")["train_time_s"].max().to_dict()
    assert training_time == pytest.approx({"0_backprop_g1": 0.4, "1_ddg_g2": 0.2, "21_ddg_g1": 0.2})
    workers = load_workers(runs)
    assert sorted(set(workers["run"])) == ["0_backprop_g1", "1_ddg_g2", "21_ddg_g1", "22_ddg_g2"]
    assert len(workers) == 1 + 2 + 1 + 2


def test_the_report_is_written_and_lists_every_run(sweep):
    report = build_report(sweep)
    table = pd.read_csv(sweep / "report" / "runs.csv")
    assert len(table) == len(BROKEN) + 4 and table["run"].is_unique
    statuses = dict(zip(table["run"], table["status"]))
    assert all(statuses[name] == status for name, (_, status, _) in BROKEN.items())
    page = report.page.read_text()
    for name, (_, status, reason) in BROKEN.items():
        assert f"- `{name}`: **{status}**: " in page and reason.replace("|", "\\|") in page, name
    assert all(path.stat().st_size > 0 for path in report.figures.values())
    assert any("22_ddg_g2" in w and "metrics.jsonl" in w for w in report.warnings)
    assert any(w.startswith(f"{len(BROKEN)} runs have no usable records") for w in report.warnings)
    speedup = dict(zip(table["run"], table["speedup"]))
    assert speedup["1_ddg_g2"] == pytest.approx(2.0)  # from the readable runs alone


def report_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.report", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_writes_the_report_without_a_traceback(sweep):
    result = report_cli(sweep)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"report: {sweep / 'report' / 'report.md'}" in result.stdout
    assert "note: curves of `22_ddg_g2` left out" in result.stdout


def test_a_tree_of_broken_runs_only_still_gets_its_report(tmp_path):
    results = tmp_path / "results"
    make_broken(results / "sweeps" / "a")
    killed(results / "runs" / "killed_single_run")
    result = report_cli(results)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    table = pd.read_csv(results / "report" / "runs.csv")
    assert len(table) == len(BROKEN) + 1
    assert set(table["status"]) == {"incomplete", "unreadable", "damaged"}
    page = (results / "report" / "report.md").read_text()
    assert "**incomplete**: no summary.json" in page and "**damaged**: metrics.jsonl" in page


def test_no_runs_at_all_is_one_error_line(tmp_path):
    empty = tmp_path / "empty"
    (empty / "nothing_here").mkdir(parents=True)  # directories, but no run: not a sweep
    for path, expected in ((empty, "no runs in"), (tmp_path / "missing", "does not exist")):
        result = report_cli(path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and expected in lines[0] and str(path) in lines[0], result.stderr
        assert not (path / "report").exists()


def test_the_sweep_end_summary_prints_every_status(sweep, capsys):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": {"name": "local"},
                               "report": {"target": None, "target_margin": 0.05,
                                                                             "add_reference": False}})
    SweepSummary().on_multirun_end(config)  # no failed run: no exit status
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "eval_loss=3.7000" in lines["1_ddg_g2"] and "50.0 ms/iter" in lines["1_ddg_g2"]
    assert "eval_loss=n/a" in lines["21_ddg_g1"] and "n/a ms/iter" in lines["21_ddg_g1"]
    for name, (_, status, reason) in BROKEN.items():
        assert f"{status}" in lines[name] and reason in lines[name], lines[name]
    assert f"report: {sweep / 'report' / 'report.md'}" in out
    assert (sweep / "report" / "runs.csv").exists()


def test_run_lines_handle_missing_values():
    runs = pd.DataFrame([{"run": "a", "status": "ok", "reason": float("nan"), "eval_loss": float("nan"),
                          "time_per_iter_median_s": None},
                         {"run": "b", "status": "unreadable", "reason": float("nan"), "eval_loss": None,
                          "time_per_iter_median_s": None}])
    assert run_lines(runs) == ["  a                                ok        eval_loss=n/a       n/a ms/iter",
                               "  b                                unreadable",
                               "  1 ok, 1 unreadable"]


@pytest.mark.parametrize("record, problem", [
    ({"status": "ok", "final": {"status": "failed"}}, "final holds 'status'"),
    ({"status": ""}, "status is a string, not a non-empty string"),
    ({"status": "ok", "gpus": 2, "iteration_s_per_worker": [0.1, 0.1], "wait_s_per_worker": [0.1]},
     "wait_s_per_worker has 1 entries for 2 workers"),
    ({"status": "ok", "iteration_s_per_worker": [0.1, 0.1], "wait_s_per_worker": [0.1]},
     "the per-worker lists differ in length"),
    ({"status": "ok", "algorithm_facts_per_worker": [{"compute_s_per_iter": "1"}]},
     "algorithm_facts_per_worker[0].compute_s_per_iter is a string"),
    ({"status": "ok", "oversubscribed": "no"}, "oversubscribed is a string, not true or false"),
    ({"status": "ok", "gpus": True}, "gpus is true/false, not an integer"),
])
def test_summary_shapes(record, problem):
    assert problem in summary_problem(record)


def test_a_good_summary_has_no_problem():
    assert summary_problem(summary("ddg", 2, 0.05)) is None
    assert summary_problem({"status": "skipped", "reason": "r", "algorithm": "backprop", "gpus": 2}) is None
