"""The report's answer first: per worker count, each method's speed-up over backprop, the quality
it lost against backprop, its time to target, and which of those differences exceed the noise.

Noise, as the records allow it:
- a speed-up's error bar is `speedup_spread` (analysis/derive.py: step-time spreads and the
  reference's drift over its sweep); with several seeds, also the range over them. A speed-up is
  resolved when its whole error bar lies on one side of 1;
- quality lost with several seeds: their mean, and a 95% t-interval of the mean (the difference
  to backprop is paired by seed: each seed's run against backprop of that seed). Resolved when
  the interval excludes 0;
- with one seed there is no seed spread to judge by: a difference under the one-seed floor
  (ONE_SEED_FLOOR, measured for this suite's default workload, docs/results.md) is not
  resolvable, and one above it is reported as such, to be confirmed with more seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.derive import Metric, simulated

# Two-sided 95% quantiles of Student's t, by the number of seeds (n - 1 degrees of freedom).
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}

# With one seed, quality differences smaller than this decide nothing: relative to the
# reference's final value for losses and bits per character (two standard deviations of
# backprop's final bits per character over five seeds, 4.9% each: docs/results.md, "How much one
# seed can tell"), for perplexity the same in nats (exp(0.1 x 2.2) - 1); in accuracy, a fraction:
# two points, the floor the paper tables use (analysis/paper/claims.py).
ONE_SEED_FLOOR = {"eval_bits_per_char": 0.10, "eval_perplexity": 0.25, "eval_loss": 0.10, "eval_accuracy": 0.02}
RELATIVE_FLOOR = {"eval_bits_per_char", "eval_perplexity", "eval_loss"}
UNITS = {"eval_bits_per_char": "bits/char", "eval_perplexity": "perplexity", "eval_loss": "loss",
         "eval_accuracy": "accuracy"}
DECIMALS = {"eval_bits_per_char": 3, "eval_perplexity": 2, "eval_loss": 3, "eval_accuracy": 4}


@dataclass(frozen=True)
class Summary:
    table: pd.DataFrame  # one row per worker count and method (the page shows it as Markdown)
    statements: list[str]  # plain sentences: what exceeds the noise, what does not, what to run next


def one_seed_floor(metric: Metric, reference_final: float | None) -> float | None:
    floor = ONE_SEED_FLOOR[metric.column]
    if metric.column not in RELATIVE_FLOOR:
        return floor
    return None if reference_final is None or pd.isna(reference_final) else floor * abs(reference_final)


def _interval(values: pd.Series) -> float | None:
    """Half-width of the 95% t-interval of the mean of `values` (None with fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    return T95.get(n, 1.96) * float(values.std(ddof=1)) / math.sqrt(n)


def _speed(group: pd.DataFrame) -> tuple[float, float, float] | None:
    """(speed-up, low, high): the median over seeds and an error bar covering each seed's."""
    runs = group.dropna(subset=["speedup"])
    if runs.empty:
        return None
    half = runs["speedup_spread"].fillna(0) / 2
    return float(runs["speedup"].median()), float((runs["speedup"] - half).min()), float((runs["speedup"] + half).max())


def _quality(group: pd.DataFrame, metric: Metric, finals: dict) -> tuple[float, float | None, int, float | None] | None:
    """(mean quality lost, half-width of its interval, seeds, one-seed floor) or None."""
    lost = group["quality_lost"].dropna() if "quality_lost" in group else pd.Series(dtype=float)
    if lost.empty:
        return None
    reference = group["reference_run"].dropna()
    floor = one_seed_floor(metric, finals.get(reference.iloc[0]) if not reference.empty else None)
    return float(lost.mean()), _interval(lost), len(lost), floor


def _verdicts(label: str, gpus: int, speed, quality, unit: str, same: float) -> tuple[str, list[str]]:
    """A short verdict for the table, and sentences for the statements; quality differences
    under `same` (half the last decimal shown) are no difference."""
    name = f"{label} x{gpus}"
    words, sentences = [], []
    if speed is not None:
        value, low, high = speed
        if low > gpus:
            words.append("implausible speed-up")
            sentences.append(f"**Implausible:** {name} is {value:.2f}x over backprop on 1 worker, more than linear beyond "
                             f"its spread [{low:.2f}, {high:.2f}]: the run and its reference saw different machine states")
        elif low > 1:
            words.append("faster")
        elif high < 1:
            words.append("slower")
        else:
            words.append("speed within noise")
    if quality is not None:
        mean, interval, seeds, floor = quality
        worse = "worse" if mean > 0 else "better"
        if interval is not None and abs(mean) < same and interval < same:
            words.append("same quality")  # e.g. local learning with one group: backprop's computation
            sentences.append(f"{name}: the same final {unit} as backprop over {seeds} seeds")
        elif interval is not None:
            resolved = abs(mean) > interval
            words.append(f"{worse} quality" if resolved else "quality within noise")
            sentences.append(f"{name}: {abs(mean):.3g} {unit} {worse} than backprop over {seeds} seeds "
                             f"(95% interval ±{interval:.2g}): " + ("beyond the noise" if resolved else "within the noise"))
        elif floor is not None and abs(mean) > floor:
            words.append(f"{worse} quality (one seed)")
            sentences.append(f"{name}: {abs(mean):.3g} {unit} {worse} than backprop with one seed, above the one-seed "
                             f"floor {floor:.2g}: likely real; confirm with `seed=0,1,2`")
        else:
            words.append("quality not resolvable (one seed)")
    return ", ".join(words), sentences


def _number(value, spec: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, spec)


def summarise(runs: pd.DataFrame, metric: Metric) -> Summary:
    """The summary of `runs` (analysis.report.analyse's frame: with reference, speed-up,
    quality_lost and time to target)."""
    unit = UNITS[metric.column]
    ok = runs[(runs["status"] == "ok") & (runs["reference_role"] != "timing")]
    finals = dict(zip(runs["run"], runs[metric.column])) if metric.column in runs else {}
    rows, sentences, floors, one_seed = [], [], set(), False
    for (gpus, label, _), group in ok.groupby(["gpus", "label", "workload"], sort=True):
        measured = group[~simulated(group)]
        speed = _speed(measured)
        quality = _quality(measured, metric, finals)
        if not measured.empty and (measured["run"] == measured["reference_run"]).all():
            verdict, said = "the reference", []  # backprop x 1 against itself
        else:
            verdict, said = _verdicts(label, int(gpus), speed, quality, unit, 0.5 * 10 ** -DECIMALS[metric.column])
        sentences += said
        if quality is not None and quality[1] is None and verdict != "the reference":
            one_seed = True
            if quality[3] is not None:
                floors.add(quality[3])
        simulated_speedup = group["sim_speedup"].dropna()
        to_target = measured["time_to_target_s"].dropna() if "time_to_target_s" in measured else pd.Series(dtype=float)
        has_target = "target" in measured and measured["target"].notna().any()
        rows.append({
            "workers": int(gpus), "method": label,
            "structure": next((s for s in group.get("structure", pd.Series(dtype=object)).dropna()), ""),
            "seeds": len(measured) or None,
            "speed-up": "" if speed is None else f"{speed[0]:.2f}x [{speed[1]:.2f}, {speed[2]:.2f}]",
            "speed-up (simulated)": f"{simulated_speedup.median():.2f}x" if not simulated_speedup.empty else "",
            f"quality lost ({unit})": "" if quality is None else (
                f"{quality[0]:+.{DECIMALS[metric.column]}f}"
                + (f" ±{quality[1]:.{DECIMALS[metric.column]}f}" if quality[1] is not None else " (one seed)")),
            "time to target (s)": (f"{to_target.median():.1f}" if not to_target.empty
                                   else "not reached" if has_target else ""),
            "verdict": verdict,
        })
    table = pd.DataFrame(rows)
    statements = []
    if one_seed:
        floor = f" under {min(floors):.2g} {unit}" if floors else ""
        share = ONE_SEED_FLOOR[metric.column]
        statements.append(f"One seed: quality differences{floor} are not resolvable; run `seed=0,1,2` to resolve them "
                          f"(the one-seed floor: " + (f"{share:.0%} of the reference's value" if metric.column in
                                                      RELATIVE_FLOOR else f"{share:g}") + ", docs/results.md).")
    statements += sentences
    return Summary(table, statements)
