"""The report's figures. Each function takes the tidy frames of `analysis.load` (runs with the
columns `analysis.derive` adds, and a `label` per run) and returns a matplotlib Figure; the
notebooks call the same functions.

Conventions kept in every figure: one colour per algorithm, the same in every plot and every
sweep (its place in ALGORITHMS below, a table of names tested equal to the registered ones, so
that the report reads records without importing any training code); points measured with more workers x threads
than cores are drawn hollow and named "oversubscribed" in the legend, so that a CPU artefact is
not read as an algorithm's scaling; simulated numbers (simulate=true runs, and the simulated twin
of an oversubscribed measured run) are their own dashed lines with x markers, labelled
"(simulated)", never joined to measured points; failed runs are absent from the curves but listed in
the report's table.
"""

from __future__ import annotations

import zlib

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from analysis.derive import Metric, measured_ok, simulated

# Figures are made without pyplot: no GUI backend, no global figure list; `Figure.savefig` draws
# with Agg, and a notebook shows a returned Figure (after %matplotlib inline).
PALETTE = matplotlib.colormaps["tab20"].colors
# Every registered algorithm, by family (tests/test_imports.py checks it against the registry).
ALGORITHMS = ("backprop", "data_parallel", "pipeline", "hypar", "diloco", "ddg", "features_replay", "ouroboros",
              "pipedream_2bw", "async_nesterov", "local_critic", "critic_training", "dgl", "dni", "sub_model_backprop")
LINESTYLES = ("-", "--", ":", "-.")
MIB = 2 ** 20
OVERSUBSCRIBED = Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="0.3",
                        label="hollow: oversubscribed\n(workers x threads > cores)")


def colour(algorithm: str):
    """The algorithm's colour in every figure: tab20's strong tones first, then its light ones;
    a name that is not in ALGORITHMS gets one after theirs; none (records that name no algorithm), grey."""
    if not isinstance(algorithm, str):
        return "0.5"
    known = ALGORITHMS
    index = known.index(algorithm) if algorithm in known else len(known) + zlib.crc32(algorithm.encode()) % 8
    return PALETTE[(2 * index) % 20 + (index // 10) % 2]


def oversubscribed(value) -> bool:
    """The record's flag (True, False, or missing for a run that never started)."""
    return value is not None and not pd.isna(value) and bool(value)


def _styles(runs: pd.DataFrame) -> dict[str, tuple]:
    """Per label: (colour of its algorithm, line style distinguishing variants of one algorithm)."""
    styles, variants = {}, {}
    for label, algorithm in sorted(set(zip(runs["label"], runs["algorithm"]))):
        n = variants.setdefault(algorithm, [])
        n.append(label)
        styles[label] = (colour(algorithm), LINESTYLES[(len(n) - 1) % len(LINESTYLES)])
    return styles


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def _points_vs_workers(ax, runs: pd.DataFrame, column: str, simulated_column: str | None = None) -> bool:
    """One line per label over gpus; hollow markers where oversubscribed; error bars of the
    step-time spread where `<column>_spread` is known. With `simulated_column`, the simulated
    numbers in it are a second, dashed line per label ("<label> (simulated)"). True if any point."""
    styles, drawn, hollow = _styles(runs), False, False
    for label, group in _ok(runs).groupby("label"):
        c, ls = styles[label]
        if simulated_column is not None and simulated_column in group:
            points = group.dropna(subset=[simulated_column]).sort_values("gpus")
            if not points.empty:
                ax.plot(points["gpus"], points[simulated_column], color=c, linestyle="--", marker="x", markersize=7,
                        label=f"{label} (simulated)")
                drawn = True
        group = group.dropna(subset=[column]).sort_values("gpus")
        if group.empty:
            continue
        ax.plot(group["gpus"], group[column], color=c, linestyle=ls, marker="o", markersize=7, label=label)
        if f"{column}_spread" in group and group[f"{column}_spread"].notna().any():
            ax.errorbar(group["gpus"], group[column], yerr=group[f"{column}_spread"].fillna(0) / 2, fmt="none",
                        ecolor=c, capsize=3, linewidth=1)
        over = group[[oversubscribed(v) for v in group["oversubscribed"]]]
        if not over.empty:
            hollow = True
            ax.plot(over["gpus"], over[column], color=c, marker="o", markersize=7, markerfacecolor="white",
                    linestyle="none")
        drawn = True
    ax.set_xlabel("workers (gpus)")
    workers = sorted(runs["gpus"].dropna().unique())
    if workers and workers[-1] >= 16 * max(workers[0], 1):
        ax.set_xscale("log", base=2)  # 1 ... 64 workers: evenly spaced doublings, not a crowd at the left
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(workers, [f"{w:g}" for w in workers])
    handles, _ = ax.get_legend_handles_labels()
    if hollow:
        handles.append(OVERSUBSCRIBED)
    if handles:
        ax.legend(handles=handles, fontsize=8)
    ax.grid(alpha=0.3)
    return drawn


def _all_simulated(runs: pd.DataFrame) -> bool:
    """Whether every run that finished ok is a simulate=true run (nothing measured to show)."""
    ok = _ok(runs)
    return not ok.empty and bool(simulated(ok).all())


def _any(runs: pd.DataFrame, column: str) -> bool:
    return column in runs and bool(_ok(runs)[column].notna().any())


def _scaling_titles(ax, runs: pd.DataFrame, simulated_column: str, what: tuple[str, str], measured_note: str) -> None:
    """Axis label and title of a figure against workers (`what`: the y label, the quantity's
    name): "simulated" where every point is, and a note on the dashed simulated lines where they
    stand beside measured ones."""
    if _all_simulated(runs):
        ax.set_ylabel(f"simulated {what[0]}")
        ax.set_title(f"Simulated {what[1]} vs workers (from profiled costs; nothing trained)")
        return
    ax.set_ylabel(what[0])
    dashed = "\n(dashed, x: simulated from profiled costs)" if _any(runs, simulated_column) else ""
    ax.set_title(f"{what[1][0].upper()}{what[1][1:]} vs workers ({measured_note}){dashed}")


def _figure(width: float, height: float, columns: int = 1, **subplots):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, columns, **subplots)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, wrap=True,
            bbox={"facecolor": "white", "edgecolor": "0.6"})


def speedup(runs: pd.DataFrame) -> Figure:
    """Speed-up over backprop on one worker (time per iteration), with the ideal linear line;
    the simulated speed-up (over backprop on one worker simulated from the same profile) dashed."""
    fig, ax = _figure(7, 4.5)
    workers = sorted(runs["gpus"].dropna().unique())
    ax.plot(workers, workers, color="0.5", linestyle=":", linewidth=1, label="ideal (linear)")
    if not _points_vs_workers(ax, runs, "speedup", "sim_speedup"):
        _note(ax, "no speed-up: the sweep has no backprop run on 1 worker\nof the same workload to compare with")
    _scaling_titles(ax, runs, "sim_speedup", ("speed-up over backprop on 1 worker (x)", "speed-up"),
                    "same global batch; bars: step-time IQR")
    return fig


def throughput(runs: pd.DataFrame) -> Figure:
    tokens = _any(runs, "tokens_per_s") or _any(runs, "sim_tokens_per_s")
    column = "tokens_per_s" if tokens else "samples_per_s"
    fig, ax = _figure(7, 4.5)
    _points_vs_workers(ax, runs, column, f"sim_{column}")
    unit = "tokens/s" if column == "tokens_per_s" else "samples/s"
    _scaling_titles(ax, runs, f"sim_{column}", (f"training throughput ({unit})", "throughput"),
                    f"{unit}, median time per iteration")
    return fig


def final_quality(runs: pd.DataFrame, metric: Metric) -> Figure:
    fig, ax = _figure(7, 4.5)
    _points_vs_workers(ax, runs, metric.column)
    better = "higher" if metric.higher_is_better else "lower"
    ax.set_ylabel(f"final {metric.label} ({better} is better)")
    ax.set_title("Final quality vs workers: the cost of staleness or local losses")
    return fig


def time_to_target(runs: pd.DataFrame, target_text: str) -> Figure:
    """Training time and steps until an evaluation first reached the target, against workers."""
    fig, (left, right) = _figure(11, 4.5, 2)
    for ax, column, unit in ((left, "time_to_target_s", "training time to target (s)"),
                             (right, "steps_to_target", "steps to target")):
        if not _points_vs_workers(ax, runs, column):
            _note(ax, "no run reached the target" if target_text else
                  "no target: the sweep has no backprop\nreference on 1 worker; set report.target")
        ax.set_ylabel(unit)
    ok = measured_ok(runs)  # a simulated run trained nothing: it did not miss the target
    missed = ok[ok["time_to_target_s"].isna()] if "time_to_target_s" in ok else ok.iloc[0:0]
    subtitle = f"target: {target_text}" if target_text else "no target"
    if not missed.empty and target_text:
        subtitle += "\nnot reached: " + ", ".join(f"{r['label']} x{r['gpus']}" for _, r in missed.iterrows())
    fig.suptitle(f"Time to quality vs workers\n{subtitle}", fontsize=10)
    return fig


def convergence(runs: pd.DataFrame, curves: pd.DataFrame, metric: Metric, x: str = "step") -> Figure:
    """The eval metric against step (x="step") or training time (x="train_time_s"), one panel per
    worker count, one colour per algorithm; the backprop reference on 1 worker, faint, in every
    panel for comparison. Simulated runs have no curves (nothing trained) and are left out."""
    ok = measured_ok(runs)
    workers = sorted(ok["gpus"].unique()) or [1]
    fig, axes = _figure(4.5 * len(workers) + 1, 4.2, len(workers), sharex=True, sharey=True, squeeze=False)
    styles = _styles(runs)
    evals = curves.dropna(subset=[metric.column]) if metric.column in curves else \
        pd.DataFrame(columns=["run", x, metric.column])  # no run evaluated
    references = set(ok["reference_run"].dropna()) if "reference_run" in ok else set()
    for ax, n in zip(axes[0], workers):
        for reference in sorted(references):
            points = evals[evals["run"] == reference]
            if n != 1:
                ax.plot(points[x], points[metric.column], color="0.6", linewidth=1, linestyle="--",
                        label="backprop x1 (reference)")
        for _, run in ok[ok["gpus"] == n].sort_values("label").iterrows():
            points = evals[evals["run"] == run["run"]]
            c, ls = styles[run["label"]]
            over = oversubscribed(run.get("oversubscribed"))
            ax.plot(points[x], points[metric.column], color=c, linestyle=ls, marker="o", markersize=3,
                    markerfacecolor="white" if over else c, label=run["label"] + (" (oversubscribed)" if over else ""))
        ax.set_title(f"{n} worker{'s' if n > 1 else ''}")
        ax.set_xlabel("step" if x == "step" else "training time (s, evaluation excluded)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better)")
    fig.suptitle(f"Convergence: {metric.label} vs {'step' if x == 'step' else 'training time'}")
    return fig


def _per_worker_rows(ax, runs: pd.DataFrame, frame: pd.DataFrame, draw) -> None:
    """One horizontal bar per worker, grouped by run (by label, then workers); `draw(y, row)`
    draws the bar of one row of `frame` at height y."""
    names = {r["run"]: f"{r['label']} x{r['gpus']}" + (" (oversubscribed)" if oversubscribed(r.get("oversubscribed")) else "")
             for _, r in runs.iterrows()}
    order = [r for r in runs.sort_values(["label", "gpus"])["run"] if r in set(frame["run"])]
    y, ticks, labels = 0, [], []
    for run in order:
        for _, w in frame[frame["run"] == run].sort_values("rank").iterrows():
            draw(y, w)
            ticks.append(y)
            labels.append(f"{names[run]}  rank {int(w['rank'])}")
            y += 1
        y += 0.5
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def memory(runs: pd.DataFrame, workers: pd.DataFrame) -> Figure:
    """Peak memory of each worker of each run above the process baseline (what the process held
    before data and model were built: interpreter, PyTorch, gloo; on CUDA about nothing). On CPU
    the peak is the process's peak resident set, on CUDA the peak allocated."""
    shown = workers[workers["run"].isin(runs["run"]) & workers["peak_memory_bytes"].notna()].copy()
    shown["training_bytes"] = shown["peak_memory_bytes"] - shown["baseline_memory_bytes"].fillna(0)
    fig, ax = _figure(8, 0.45 * max(4, len(shown)) + 1)
    algorithm = dict(zip(runs["run"], runs["algorithm"]))

    def bar(y, w):
        ax.barh(y, w["training_bytes"] / MIB, color=colour(algorithm[w["run"]]))
        ax.text(w["training_bytes"] / MIB, y, f" {w['training_bytes'] / MIB:.1f}", va="center", fontsize=7)
    _per_worker_rows(ax, runs, shown, bar)
    ax.set_xlim(left=0)
    if not shown.empty and (shown["training_bytes"] < MIB).all():
        _note(ax, "every worker stayed within 1 MiB of its baseline:\nthe model, data and activations are tiny")
    device = runs["device_type"].dropna().iloc[0] if runs["device_type"].notna().any() else "cpu"
    what = "peak allocated (CUDA)" if device == "cuda" else "peak resident set"
    baseline = shown["baseline_memory_bytes"].dropna()
    ax.set_xlabel(f"peak memory above the process baseline (MiB; {what})")
    ax.set_title("Peak memory per worker: data, model, optimizer, activations, buffers"
                 + (f"\n(baseline not shown: {baseline.median() / MIB:.0f} MiB per worker, median)"
                    if not baseline.empty else ""), fontsize=10)
    return fig


BREAKDOWN = (("compute_s", "compute (forward and backward)", "#4c72b0"),
             ("wait_s", "communication wait", "#dd8452"),
             ("other_s", "rest: waits not attributed, idle or bubble, optimizer step", "#c44e52"),
             ("unsplit_s", "whole iteration (the algorithm reports no breakdown)", "#b0b0b0"))


def breakdown_frame(workers: pd.DataFrame) -> pd.DataFrame:
    """Per worker: compute, wait, the rest of the iteration (`other_s`), or the whole iteration
    as `unsplit_s` when the algorithm reports no compute time."""
    out = workers.copy()
    has_compute = out["compute_s"].notna()
    wait = out["wait_s"].fillna(0.0)
    out["other_s"] = (out["iteration_s"] - out["compute_s"] - wait).clip(lower=0).where(has_compute)
    out["wait_s"] = wait.where(has_compute)
    out["unsplit_s"] = out["iteration_s"].where(~has_compute)
    return out


def time_breakdown(runs: pd.DataFrame, workers: pd.DataFrame) -> Figure:
    """Where each worker's iteration goes: compute, communication wait and the rest (idle,
    pipeline bubble, or waits the algorithm does not attribute), in ms per iteration."""
    frame = breakdown_frame(workers[workers["run"].isin(_ok(runs)["run"]) & workers["iteration_s"].notna()])
    fig, ax = _figure(8, 0.45 * max(4, len(frame)) + 1.5)
    used = set()

    def stacked(y, w):
        left = 0.0
        for column, name, c in BREAKDOWN:
            if pd.notna(w[column]) and w[column] > 0:
                ax.barh(y, w[column] * 1e3, left=left, color=c)
                used.add(name)
                left += w[column] * 1e3
    _per_worker_rows(ax, _ok(runs), frame, stacked)
    ax.set_xlabel("time per iteration inside the algorithm's step (ms, median)")
    ax.set_title("Time breakdown per worker")
    if used:
        handles = [Patch(color=c, label=name) for _, name, c in BREAKDOWN if name in used]
        fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=2)
    return fig
