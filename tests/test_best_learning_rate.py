"""A per-method learning-rate sweep (issue 17, item 5): the report picks each method's best rate,
so methods can be compared each at its own best setting, not only at one shared rate."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from analysis.derive import Metric, best_learning_rates, run_labels
from analysis.load import load_runs
from analysis.report import build_report
from mpbench.records import file_digests
from tests.test_report_damaged import write_run


def _run(algorithm: str, lr: float, seed: int, bpc: float, status: str = "ok") -> dict:
    return {"run": f"{algorithm}_{lr}_{seed}", "algorithm": algorithm, "settings": "k=1", "lr": lr, "gpus": 2,
            "seed": seed, "status": status, "workload": "w", "model": "gpt", "dataset": "tiny",
            "eval_bits_per_char": bpc}


def test_each_method_gets_its_best_rate_by_the_mean_over_seeds():
    runs = pd.DataFrame([_run("ddg", 0.1, 0, 2.0), _run("ddg", 0.1, 1, 2.4), _run("ddg", 0.01, 0, 2.1),
                         _run("ddg", 0.01, 1, 2.1), _run("dni", 0.1, 0, 1.9), _run("dni", 0.01, 0, 2.5),
                         _run("dni", 0.001, 0, 1.0, status="diverged"), _run("backprop", 0.1, 0, 1.5)])
    best = best_learning_rates(runs, Metric("eval_bits_per_char", False)).set_index("method")
    assert list(best.index) == ["ddg", "dni"]  # backprop ran at one rate only
    assert best.loc["ddg", "best lr"] == 0.01 and best.loc["ddg", "seeds at best"] == 2  # 2.1 < mean(2.0, 2.4)
    assert best.loc["dni", "best lr"] == 0.1  # the diverged run at 0.001 is no candidate
    assert best.loc["dni", "learning rates tried"] == "0.01: 2.5, 0.1: 1.9"
    higher = best_learning_rates(runs.rename(columns={"eval_bits_per_char": "eval_accuracy"}),
                                 Metric("eval_accuracy", True)).set_index("method")
    assert higher.loc["ddg", "best lr"] == 0.1 and higher.loc["dni", "best lr"] == 0.01
    # the learning rate enters a run's label only where its method's runs differ in it
    assert run_labels(runs).tolist()[:2] == ["ddg (lr=0.1)", "ddg (lr=0.1)"]
    assert run_labels(runs).tolist()[-1] == "backprop"


def test_the_sweep_report_has_a_best_learning_rate_section(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (algorithm, lr, bpc) in enumerate([("ddg", 0.1, 5.0), ("ddg", 0.01, 4.0), ("backprop", 0.1, 4.5)]):
        run_dir = sweep / f"{i}_{algorithm}"
        summary = write_run(run_dir, algorithm=algorithm, gpus=1 if algorithm == "backprop" else 2, digests=False,
                            changes={"final": {"eval_loss": 3.7, "eval_bits_per_char": bpc}})
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "optimizer": {"name": "adamw", "lr": lr}}))
        (run_dir / "summary.json").write_text(json.dumps({**summary, "digests": file_digests(run_dir)}))
    assert load_runs(sweep).set_index("run").loc["1_ddg", "lr"] == 0.01
    report = build_report(sweep)
    page = report.page.read_text()
    assert "## Each method at its best learning rate" in page and "0.01: 4, 0.1: 5" in page
    best = pd.read_csv(report.directory / "best_learning_rates.csv")
    assert best.to_dict("records") == [{"method": "ddg", "gpus": 2, "learning rates tried": "0.01: 4, 0.1: 5",
                                        "best lr": 0.01, "eval_bits_per_char at best": 4.0, "seeds at best": 1}]
    single = tmp_path / "single"
    write_run(single / "0_ddg")
    assert "best learning rate" not in build_report(single).page.read_text()
