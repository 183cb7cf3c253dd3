"""What the report computes from the records: speed-up, quality targets and time to target.

- Speed-up of a run = time per iteration of its reference / its own, where the reference is the
  `backprop` run on one worker of the same computation (`analysis.load.COMPUTATION_KEYS`: model,
  data, batch, dtype, threads, device, optimizer and its schedule, steps, seed, evaluation set),
  timed in the run's own sweep where it can be (`with_reference`). Every run takes the same
  global batch per iteration, so this is also the ratio of throughputs. Without a reference the
  speed-up is missing, and the report says so.
- Simulated runs (simulate=true) carry their own speed-up, over backprop on one worker simulated
  from the same profile (`sim_speedup`, analysis/load.py); they are neither references nor have a
  measured speed-up, and they take no part in the measured views below.
- The quality metric is the task's eval metric: bits per character, else perplexity (lower is
  better), else accuracy (higher is better); `quality_lost` is a run's final metric against its
  reference's.
- Time to target (MLPerf-style): training time (sum of step times, evaluation excluded) and steps
  until the eval metric first reaches the target (TO_TARGET_METHOD). The target is the one
  given, else the reference's final metric relaxed by `margin` (relative: x (1 + margin) for a
  lower-is-better metric, x (1 - margin) for accuracy).
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


def references(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that can be a reference: measured `backprop` x 1 runs that finished ok (not a
    timing run, which ran fewer steps: analysis/reference.py)."""
    algorithm, workers = REFERENCE
    ok = measured_ok(runs)
    return ok[(ok["algorithm"] == algorithm) & (ok["gpus"] == workers) & (ok["reference_role"] != "timing")]


def _reference_of(run: pd.Series, candidates: pd.DataFrame) -> pd.Series | None:
    """The run's reference: a candidate of the same computation (analysis.load.COMPUTATION_KEYS),
    preferably timed in the run's own sweep, and there preferably run by the sweep itself."""
    same = candidates[candidates["computation"] == run["computation"]]
    if same.empty:
        return None
    ranked = same.assign(other_sweep=[not _same_sweep(run, c) for _, c in same.iterrows()],
                         supplied=same["reference_role"].notna())
    return ranked.sort_values(["other_sweep", "supplied"], kind="stable").iloc[0]


def _same_sweep(run: pd.Series, other: pd.Series) -> bool:
    return isinstance(run.get("sweep"), str) and run.get("sweep") == other.get("sweep")


@dataclass(frozen=True)
class Bracket:
    """The reference's time per iteration beside a point: the mean of its timings just before
    and just after the point (analysis/reference.py), and its relative spread."""

    seconds: float
    spread: float  # the larger of the timings' step-time spreads and their difference over their mean
    timings: int


def brackets(runs: pd.DataFrame) -> dict[str, Bracket]:
    """Per point of a sweep: the reference timed right before it (`timing_<n>_before_<point>`)
    and the next timing of the same cost (`timing_key`: the seed and learning rate change none)
    after it, in the same sweep."""
    timing = runs[(runs["reference_role"] == "timing") & (runs["status"] == "ok")
                  & runs["time_per_iter_median_s"].notna()]
    out = {}
    for _, before in timing[timing["timed_point"].notna()].iterrows():
        later = timing[(timing["sweep"] == before["sweep"]) & (timing["timing_key"] == before["timing_key"])
                       & (timing["timing_order"] > before["timing_order"])].sort_values("timing_order")
        around = [before] + ([later.iloc[0]] if not later.empty else [])
        times = [t["time_per_iter_median_s"] for t in around]
        mean = sum(times) / len(times)
        spread = max([_relative_iqr(t) for t in around] + [(max(times) - min(times)) / mean])
        out[(before["sweep"], before["timed_point"])] = Bracket(mean, spread, len(times))
    return out


def _relative_iqr(run: pd.Series) -> float:
    iqr, median = run.get("time_per_iter_iqr_s"), run.get("time_per_iter_median_s")
    return float(iqr / median) if pd.notna(iqr) and pd.notna(median) and median else 0.0


def with_reference(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus its reference and speed-up over it:

    - `reference_run`: the `backprop` x 1 run of the same computation (model, data, batch,
      dtype, threads, device, optimizer and schedule, steps, seed, evaluation set), preferably
      from the run's own sweep; none if no such run finished ok: a reference at another learning
      rate or seed is never used. Its final metric is the run's target and quality baseline;
    - `speedup`: the reference's time per iteration over the run's. Side by side where the sweep
      timed the reference beside the run (`brackets`): the mean of the timings just before and
      after it; else the reference run's own time;
    - `reference_timing`: `side by side` (timed just before and after the run), `this sweep, not
      side by side` (the reference's own run, minutes away), or `another moment` (another
      sweep, or single runs), which the figures mark;
    - `speedup_spread`: an error bar, not a confidence interval: the step-time spreads of the run
      and of the reference timings, and the difference between the timings around it, relative,
      added in quadrature;
    - `speedup_implausible`: more than linear beyond the spread (speed-up - spread / 2 > workers),
      which on one machine means the reference and the run saw different machines."""
    out = runs.copy()
    candidates = references(runs)
    beside = brackets(runs)
    reference_run, provenance, speedup, spread = [], [], [], []
    for _, run in runs.iterrows():
        reference = None if simulated_row(run) else _reference_of(run, candidates)
        bracket = beside.get((run.get("sweep"), run["run"])) if not simulated_row(run) else None
        reference_run.append(None if reference is None else reference["run"])
        if reference is not None and reference["run"] == run["run"]:
            ratio, relative, where = 1.0, _relative_iqr(run), "the reference itself"  # by definition
        elif bracket is not None:
            ratio, relative = bracket.seconds / run["time_per_iter_median_s"], bracket.spread
            where = "side by side" + ("" if bracket.timings == 2 else " (timed before it only)")
        elif reference is not None:
            ratio, relative = reference["time_per_iter_median_s"] / run["time_per_iter_median_s"], _relative_iqr(reference)
            where = "this sweep, not side by side" if _same_sweep(run, reference) and \
                reference["reference_role"] != "reused" else "another moment"
        else:
            provenance.append(None)
            speedup.append(float("nan"))
            spread.append(float("nan"))
            continue
        ratio = ratio if run["status"] == "ok" else float("nan")
        provenance.append(where)
        speedup.append(ratio)
        spread.append(ratio * (_relative_iqr(run) ** 2 + relative ** 2) ** 0.5)
    out["reference_run"] = reference_run
    out["reference_timing"] = provenance
    out["speedup"] = pd.to_numeric(pd.Series(speedup, index=out.index), errors="coerce")
    out["speedup_spread"] = pd.to_numeric(pd.Series(spread, index=out.index), errors="coerce")
    out["speedup_implausible"] = (out["speedup"] - out["speedup_spread"].fillna(0) / 2) > out["gpus"]
    relative = out["time_per_iter_iqr_s"] / out["time_per_iter_median_s"]
    for column in ("samples_per_s", "tokens_per_s"):
        out[f"{column}_spread"] = out[column] * relative
    return out


def simulated_row(run: pd.Series) -> bool:
    value = run.get("simulated")
    return bool(value) if value is not None and not pd.isna(value) else False


def targets(runs: pd.DataFrame, metric: Metric, target: float | None, margin: float) -> dict[str, tuple[float, str]]:
    """Per computation (analysis.load.COMPUTATION_KEYS): the target value and how it was chosen
    (one phrase for the report). Without a given target, the reference's final metric relaxed
    by `margin`: a run has a target only where it has a reference."""
    chosen = {}
    for computation, group in runs.groupby("computation"):
        if target is not None:
            chosen[computation] = (float(target), f"{metric.label} {target:g} (given)")
            continue
        reference = group[group["run"] == group["reference_run"]]
        if reference.empty or pd.isna(reference.iloc[0].get(metric.column)):
            continue
        final = float(reference.iloc[0][metric.column])
        value = final * (1 - margin) if metric.higher_is_better else final * (1 + margin)
        sign = "-" if metric.higher_is_better else "+"
        chosen[computation] = (value, (f"{metric.label} {value:.4g}: the backprop reference's final "
                                       f"{final:.4g} {sign}{margin:.0%}"))
    return chosen


# How steps and time to target are read off the evaluations, for the figure and the page.
TO_TARGET_METHOD = ("interpolated linearly between the last evaluation that missed the target and the first that "
                    "reached it (training time at that step from the step times); reached at the first evaluation: "
                    "that evaluation's step, an upper bound")


def crossing(evals: pd.DataFrame, column: str, metric: Metric, target: float) -> float | None:
    """The step at which `column` first reaches `target` (TO_TARGET_METHOD); None if never."""
    previous = None
    for _, row in evals.iterrows():
        if metric.reaches(row[column], target):
            if previous is None or row[column] == previous[column]:
                return float(row["step"])
            share = (target - previous[column]) / (row[column] - previous[column])
            return float(previous["step"] + share * (row["step"] - previous["step"]))
        previous = row
    return None


def with_time_to_target(runs: pd.DataFrame, curves: pd.DataFrame, metric: Metric,
                        chosen: dict[str, tuple[float, str]]) -> pd.DataFrame:
    """`runs` plus `target`, `steps_to_target` and `time_to_target_s` (NaN: never reached),
    by TO_TARGET_METHOD: finer than the evaluation interval."""
    out = runs.copy()
    target_col, steps_col, time_col = [], [], []
    for _, run in runs.iterrows():
        target = chosen.get(run.get("computation"), (float("nan"), ""))[0]
        steps = time = float("nan")
        if metric.column in curves and not pd.isna(target):
            mine = curves[curves["run"] == run["run"]].sort_values("step")
            step = crossing(mine[mine[metric.column].notna()], metric.column, metric, target)
            if step is not None:
                steps = step
                time = float(pd.Series(mine["train_time_s"].values, index=mine["step"].values)
                             .reindex(sorted({*mine["step"], step})).interpolate("index").loc[step])
        target_col.append(target)
        steps_col.append(steps)
        time_col.append(time)
    out["target"], out["steps_to_target"], out["time_to_target_s"] = target_col, steps_col, time_col
    return out


def with_quality_lost(runs: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """`runs` plus `quality_lost`: how much worse the run's final metric is than its reference's
    (same computation, so same seed), in the metric's units; negative: better than backprop."""
    out = runs.copy()
    final = dict(zip(runs["run"], runs[metric.column])) if metric.column in runs else {}
    lost = []
    for _, run in runs.iterrows():
        mine, theirs = final.get(run["run"]), final.get(run["reference_run"])
        if run["status"] != "ok" or mine is None or theirs is None or pd.isna(mine) or pd.isna(theirs):
            lost.append(float("nan"))
        else:
            lost.append(theirs - mine if metric.higher_is_better else mine - theirs)
    out["quality_lost"] = pd.to_numeric(pd.Series(lost, index=out.index), errors="coerce")
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
    workers over this run's; both within one computation (workload, optimizer, steps, seed), NaN
    where the other run is absent."""
    out = runs.copy()
    ok = measured_ok(runs)
    time_of = {(r["label"], r["computation"], r["gpus"]): r["time_per_iter_median_s"] for _, r in ok.iterrows()}
    data_parallel = {(r["computation"], r["gpus"]): r["time_per_iter_median_s"]
                     for _, r in ok[ok["algorithm"] == "data_parallel"].iterrows()}
    own, over_dp = [], []
    for _, run in runs.iterrows():
        mine = run["time_per_iter_median_s"] if run["status"] == "ok" else float("nan")
        own.append(time_of.get((run["label"], run["computation"], 1), float("nan")) / mine)
        over_dp.append(data_parallel.get((run["computation"], run["gpus"]), float("nan")) / mine)
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
