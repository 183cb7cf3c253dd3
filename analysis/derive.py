"""What the report computes from the records: speed-up, quality targets and time to target.

- Speed-up of a run = time per iteration of its reference / its own, where the reference is the
  `backprop` run on one worker of the same workload (`analysis.load.WORKLOAD_KEYS`: model, data,
  batch, dtype, threads, device). Every run takes the same global batch per iteration, so this is
  also the ratio of throughputs. Without a reference the speed-up is missing, and the report says so.
- Simulated runs (simulate=true) carry their own speed-up, over backprop on one worker simulated
  from the same profile (`sim_speedup`, analysis/load.py); they are neither references nor have a
  measured speed-up, and they take no part in the measured views below.
- The quality metric is the task's eval metric: bits per character, else perplexity (lower is
  better), else accuracy (higher is better).
- Time to target (MLPerf-style): training time (sum of step times, evaluation excluded) and steps
  until an evaluation first reaches the target. The target is the one given, else the reference's
  final metric relaxed by `margin` (relative: x (1 + margin) for a lower-is-better metric,
  x (1 - margin) for accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

METRICS = (("eval_bits_per_char", False), ("eval_perplexity", False), ("eval_accuracy", True))
REFERENCE = ("backprop", 1)  # algorithm, workers


@dataclass(frozen=True)
class Metric:
    column: str
    higher_is_better: bool

    @property
    def label(self) -> str:
        return {"eval_bits_per_char": "eval bits per character", "eval_perplexity": "eval perplexity",
                "eval_accuracy": "eval accuracy", "eval_loss": "eval loss"}[self.column]

    def reaches(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target


def simulated(runs: pd.DataFrame) -> pd.Series:
    """Per run, whether it is a simulate=true run (False where a frame has no `simulated` column)."""
    if "simulated" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["simulated"].fillna(False).astype(bool)


def measured_ok(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that finished ok and were measured (trained), not simulated."""
    return runs[(runs["status"] == "ok") & ~simulated(runs)]


def quality_metric(runs: pd.DataFrame) -> Metric:
    """The first of bits per char, perplexity, accuracy that the runs report; else eval loss."""
    for column, higher in METRICS:
        if column in runs and runs[column].notna().any():
            return Metric(column, higher)
    return Metric("eval_loss", False)


def with_reference(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus `reference_run` (the matching backprop x 1 run, if the sweep has one that
    finished ok), `speedup`, and the spreads of speed-up and throughput (from the runs' step-time
    interquartile ranges: error bars, not confidence intervals)."""
    out = runs.copy()
    algorithm, workers = REFERENCE
    ok = measured_ok(runs)  # a simulated backprop x 1 measured nothing to compare with
    references = ok[(ok["algorithm"] == algorithm) & (ok["gpus"] == workers)]
    by_workload = {w: r for w, r in references.groupby("workload")}
    by_seed = {key: r for key, r in references.groupby(["workload", "seed"])}  # repeats: each seed its own
    reference_run, speedup = [], []
    for _, run in runs.iterrows():
        match = by_seed.get((run["workload"], run["seed"]), by_workload.get(run["workload"]))
        if match is None:
            reference_run.append(None)
            speedup.append(float("nan"))
            continue
        reference = match.iloc[0]  # one per workload in a sweep; the first if several sweeps are merged
        reference_run.append(reference["run"])
        speedup.append(reference["time_per_iter_median_s"] / run["time_per_iter_median_s"]
                       if run["status"] == "ok" else float("nan"))
    out["reference_run"] = reference_run
    out["speedup"] = pd.to_numeric(pd.Series(speedup, index=out.index), errors="coerce")
    # Spread (an interquartile range) of a ratio of medians: the relative spreads add in quadrature.
    spread = out["time_per_iter_iqr_s"] / out["time_per_iter_median_s"]
    reference_spread = out["reference_run"].map(dict(zip(runs["run"], spread)))
    out["speedup_spread"] = out["speedup"] * (spread ** 2 + reference_spread.fillna(0) ** 2) ** 0.5
    for column in ("samples_per_s", "tokens_per_s"):
        out[f"{column}_spread"] = out[column] * spread
    return out


def targets(runs: pd.DataFrame, metric: Metric, target: float | None, margin: float) -> dict[str, tuple[float, str]]:
    """Per workload: the target value and how it was chosen (one phrase for the report)."""
    chosen = {}
    for workload, group in runs.groupby("workload"):
        if target is not None:
            chosen[workload] = (float(target), f"{metric.label} {target:g} (given)")
            continue
        reference = group[group["run"] == group["reference_run"]]
        if reference.empty or pd.isna(reference.iloc[0].get(metric.column)):
            continue
        final = float(reference.iloc[0][metric.column])
        value = final * (1 - margin) if metric.higher_is_better else final * (1 + margin)
        sign = "-" if metric.higher_is_better else "+"
        chosen[workload] = (value, (f"{metric.label} {value:.4g}: the backprop reference's final "
                                    f"{final:.4g} {sign}{margin:.0%}"))
    return chosen


def with_time_to_target(runs: pd.DataFrame, curves: pd.DataFrame, metric: Metric,
                        chosen: dict[str, tuple[float, str]]) -> pd.DataFrame:
    """`runs` plus `target`, `steps_to_target` and `time_to_target_s` (NaN: never reached)."""
    out = runs.copy()
    target_col, steps_col, time_col = [], [], []
    for _, run in runs.iterrows():
        target = chosen.get(run["workload"], (float("nan"), ""))[0]
        steps = time = float("nan")
        if metric.column in curves and not pd.isna(target):
            evals = curves[(curves["run"] == run["run"]) & curves[metric.column].notna()]
            reached = evals[[metric.reaches(v, target) for v in evals[metric.column]]]
            if not reached.empty:
                steps, time = reached.iloc[0]["step"], reached.iloc[0]["train_time_s"]
        target_col.append(target)
        steps_col.append(steps)
        time_col.append(time)
    out["target"], out["steps_to_target"], out["time_to_target_s"] = target_col, steps_col, time_col
    return out


def run_labels(runs: pd.DataFrame, with_lr: bool = True) -> pd.Series:
    """A short name per run's method: the algorithm, plus the settings (and, `with_lr`, the
    learning rate) in which its runs differ when the sweep holds it with several (e.g.
    `pipeline (schedule=1f1b)`, `ddg (lr=0.01)`), plus the model and dataset when the runs span
    several workloads."""
    settings = [dict(part.split("=", 1) for part in s.split(", ") if "=" in part) if isinstance(s, str) else {}
                for s in runs["settings"]]
    if with_lr and "lr" in runs:
        settings = [{**s, "lr": f"{lr:g}"} if pd.notna(lr) else s for s, lr in zip(settings, runs["lr"])]
    labels = []
    for i, algorithm in enumerate(runs["algorithm"]):
        # A run refused before its config was written (skipped) has no settings to differ in.
        peers = [settings[j] for j, a in enumerate(runs["algorithm"]) if a == algorithm and settings[j]]
        differing = [k for k in settings[i] if len({p.get(k) for p in peers}) > 1]
        label = algorithm if isinstance(algorithm, str) else "(no algorithm)"  # records that name none
        if differing:
            label += " (" + ", ".join(f"{k}={settings[i][k]}" for k in differing) + ")"
        labels.append(label)
    if runs["workload"].nunique() > 1:
        labels = [f"{label} [{m}/{d}]" for label, m, d in zip(labels, runs["model"], runs["dataset"])]
    return pd.Series(labels, index=runs.index)


def with_relative_views(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus two speed-ups beside the one over backprop (HyPar-Flow's views):
    `scaling_over_own_1`, the time per iteration of the same configuration (label) on 1 worker
    over this run's, and `speedup_over_data_parallel`, that of `data_parallel` on as many
    workers over this run's; both within one workload and seed, NaN where the other run is absent."""
    out = runs.copy()
    ok = measured_ok(runs)
    time_of = {(r["label"], r["workload"], r["seed"], r["gpus"]): r["time_per_iter_median_s"] for _, r in ok.iterrows()}
    data_parallel = {(r["workload"], r["seed"], r["gpus"]): r["time_per_iter_median_s"]
                     for _, r in ok[ok["algorithm"] == "data_parallel"].iterrows()}
    own, over_dp = [], []
    for _, run in runs.iterrows():
        mine = run["time_per_iter_median_s"] if run["status"] == "ok" else float("nan")
        own.append(time_of.get((run["label"], run["workload"], run["seed"], 1), float("nan")) / mine)
        over_dp.append(data_parallel.get((run["workload"], run["seed"], run["gpus"]), float("nan")) / mine)
    out["scaling_over_own_1"] = pd.to_numeric(pd.Series(own, index=out.index), errors="coerce")
    out["speedup_over_data_parallel"] = pd.to_numeric(pd.Series(over_dp, index=out.index), errors="coerce")
    return out


def repeats(runs: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Configurations run with several seeds: per label, workers and workload, the number of ok
    runs and the median [min, max] of speed-up, time per iteration and final metric (measured runs)."""
    ok = measured_ok(runs)
    rows = []
    for (label, gpus, _), group in ok.groupby(["label", "gpus", "workload"]):
        if len(group) < 2:
            continue
        row = {"configuration": label, "gpus": gpus, "runs": len(group),
               "seeds": ", ".join(str(int(s)) for s in sorted(group["seed"].dropna()))}
        for column, name in (("speedup", "speedup"), ("time_per_iter_median_s", "time_per_iter_s"),
                             (metric.column, metric.column)):
            values = group[column].dropna() if column in group else pd.Series(dtype=float)
            row[name] = (f"{values.median():.4g} [{values.min():.4g}, {values.max():.4g}]" if not values.empty
                         else None)
        rows.append(row)
    return pd.DataFrame(rows)


def best_learning_rates(runs: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """For each method (algorithm and settings, workers, workload) run at several learning rates:
    the final metric at each (mean over the seeds of its ok measured runs) and the best one, so
    that methods can be compared each at its own best setting rather than at one shared rate."""
    ok = measured_ok(runs)
    if ok.empty or "lr" not in ok or metric.column not in ok:
        return pd.DataFrame()
    ok = ok.assign(method=run_labels(ok, with_lr=False), settings=ok["settings"].fillna(""))
    rows = []
    for (method, gpus, _), group in ok.groupby(["method", "gpus", "workload"], sort=False):
        by_lr = group.groupby("lr")[metric.column].agg(["mean", "count"]).dropna()
        if len(by_lr) < 2:
            continue
        best = by_lr["mean"].idxmax() if metric.higher_is_better else by_lr["mean"].idxmin()
        rows.append({"method": method, "gpus": gpus,
                     "learning rates tried": ", ".join(f"{lr:g}: {r['mean']:.4g}" for lr, r in by_lr.iterrows()),
                     "best lr": best, f"{metric.column} at best": by_lr.loc[best, "mean"],
                     "seeds at best": int(by_lr.loc[best, "count"])})
    return pd.DataFrame(rows)
