"""Noise is visible: each run's step-time spread and the machine's load are recorded, runs that
were likely disturbed are flagged, and repeats are summarised as median and range."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.derive import Metric, repeats, with_reference, with_relative_views
from mpbench.machine_load import Snapshot, load_record
from mpbench.parallel.clock import steady_iqr


def test_the_spread_is_the_interquartile_range_of_the_steady_steps():
    assert steady_iqr([9.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0)  # first step left out
    assert steady_iqr([1.0]) is None


def test_interference_is_flagged_by_spread_steal_or_other_processes():
    def at(t, busy, steal, total, own):
        return Snapshot(t, 1.0, busy, steal, total, own)
    quiet = load_record(at(0, 100, 1, 1000, 5), at(10, 120, 1.1, 1040, 24), spread=0.05)
    assert quiet["interference"] is None and quiet["other_cpu_cores"] == pytest.approx(0.1)
    assert quiet["cpu_steal_fraction"] == pytest.approx(0.1 / 40)
    noisy = load_record(at(0, 100, 0, 1000, 5), at(10, 130, 4, 1040, 15), spread=0.5)
    assert noisy["interference"] == ("step times spread 50% of their median; 10% of CPU time stolen; "
                                     "other processes used 2.0 cores meanwhile")
    torchrun = load_record(at(0, 100, 0, 1000, 5), at(10, 130, 0, 1040, 5), spread=None, own_children=False)
    assert torchrun["other_cpu_cores"] is None and torchrun["interference"] is None
    unknown = load_record(Snapshot(0), Snapshot(1), None)
    assert unknown["interference"] is None and unknown["cpu_steal_fraction"] is None


def _run(name, algorithm, gpus, seed, median, iqr=0.0):
    return {"run": name, "algorithm": algorithm, "label": algorithm, "gpus": gpus, "seed": seed, "status": "ok",
            "workload": "w", "computation": f"w, seed {seed}", "timing_key": "w", "timing_order": None,
            "timed_point": None, "reference_role": None, "sweep": "sweep", "time_per_iter_median_s": median,
            "time_per_iter_iqr_s": iqr,
            "samples_per_s": 1 / median, "tokens_per_s": None, "eval_accuracy": 0.5 + seed / 10}


def test_speedups_over_backprop_own_one_worker_and_data_parallel_with_spreads():
    runs = pd.DataFrame([_run("bp", "backprop", 1, 0, 1.0, 0.1), _run("dp1", "data_parallel", 1, 0, 1.2),
                         _run("dp2", "data_parallel", 2, 0, 0.8), _run("dd1", "ddg", 1, 0, 1.0),
                         _run("dd2", "ddg", 2, 0, 0.4, 0.04)])
    out = with_relative_views(with_reference(runs)).set_index("run")
    assert out.loc["dd2", "speedup"] == pytest.approx(2.5)
    assert out.loc["dd2", "scaling_over_own_1"] == pytest.approx(2.5)
    assert out.loc["dd2", "speedup_over_data_parallel"] == pytest.approx(2.0)
    assert out.loc["dd1", "speedup_over_data_parallel"] == pytest.approx(1.2)
    assert out.loc["dd2", "speedup_spread"] == pytest.approx(2.5 * (0.1 ** 2 + 0.1 ** 2) ** 0.5)
    assert out.loc["dp2", "speedup_spread"] == pytest.approx(1.25 * 0.1)  # the reference's spread alone


def test_repeats_are_median_and_range_per_configuration():
    runs = pd.DataFrame([_run("bp0", "backprop", 1, 0, 1.0), _run("bp1", "backprop", 1, 1, 2.0),
                         _run("d0", "ddg", 2, 0, 0.5), _run("d1", "ddg", 2, 1, 0.5), _run("d2", "ddg", 2, 2, 2.0),
                         _run("once", "dni", 2, 0, 1.0)])
    table = repeats(with_reference(runs), Metric("eval_accuracy", True)).set_index("configuration")
    assert list(table.index) == ["backprop", "ddg"]  # dni ran once
    assert table.loc["ddg", "runs"] == 3 and table.loc["ddg", "seeds"] == "0, 1, 2"
    assert table.loc["ddg", "time_per_iter_s"] == "0.5 [0.5, 2]"
    assert table.loc["ddg", "speedup"] == "3 [2, 4]"  # each seed against its own reference; seed 2 has none
