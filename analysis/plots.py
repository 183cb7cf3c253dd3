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
from matplotlib.ticker import NullLocator, ScalarFormatter

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
    styles, drawn, hollow, marked = _styles(runs), False, False, set()
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
        marked |= _mark_doubtful(ax, group, column, c)
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
    if _wide(runs):
        ax.set_xscale("log", base=2)  # 1 ... 64 workers: evenly spaced doublings, not a crowd at the left
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(workers, [f"{w:g}" for w in workers])
    handles, _ = ax.get_legend_handles_labels()
    if hollow:
        handles.append(OVERSUBSCRIBED)
    handles += [DOUBTFUL[kind] for kind in sorted(marked)]
    if handles:
        ax.legend(handles=handles, fontsize=8)
    ax.grid(alpha=0.3)
    return drawn


IMPLAUSIBLE, ELSEWHERE = "implausible", "elsewhere"
DOUBTFUL = {IMPLAUSIBLE: Line2D([], [], marker="o", linestyle="none", markersize=13, markerfacecolor="none",
                                markeredgecolor="red", markeredgewidth=1.5,
                                label="red ring: faster than linear beyond its\nerror bar (implausible)"),
            ELSEWHERE: Line2D([], [], marker="s", linestyle="none", markersize=9, markerfacecolor="none",
                              markeredgecolor="0.2", label="square: reference not timed\nbeside the run")}


def _mark_doubtful(ax, group: pd.DataFrame, column: str, c) -> set[str]:
    """Red rings on implausible speed-ups, squares where the reference was not timed beside the
    run (analysis/derive.py: with_reference); the kinds drawn."""
    if column != "speedup":
        return set()
    drawn = set()
    implausible = group[group["speedup_implausible"].fillna(False).astype(bool)] if "speedup_implausible" in group \
        else group.iloc[0:0]
    if not implausible.empty:
        ax.plot(implausible["gpus"], implausible[column], **_style(DOUBTFUL[IMPLAUSIBLE]))
        for _, run in implausible.iterrows():
            ax.annotate(f"{run[column]:.2f}x > {run['gpus']:g} workers", (run["gpus"], run[column]), fontsize=7,
                        color="red", textcoords="offset points", xytext=(6, 6))
        drawn.add(IMPLAUSIBLE)
    elsewhere = group[[not_beside(t) for t in group["reference_timing"]]] if "reference_timing" in group \
        else group.iloc[0:0]
    if not elsewhere.empty:
        ax.plot(elsewhere["gpus"], elsewhere[column], **{**_style(DOUBTFUL[ELSEWHERE]), "markeredgecolor": c})
        drawn.add(ELSEWHERE)
    return drawn


def not_beside(reference_timing) -> bool:
    """Whether a speed-up's reference was timed away from its run (analysis/derive.py)."""
    return isinstance(reference_timing, str) and not reference_timing.startswith(("side by side", "the reference"))


def _style(handle: Line2D) -> dict:
    return {"marker": handle.get_marker(), "linestyle": "none", "markersize": handle.get_markersize(),
            "markerfacecolor": "none", "markeredgecolor": handle.get_markeredgecolor(),
            "markeredgewidth": handle.get_markeredgewidth()}


def _wide(runs: pd.DataFrame) -> bool:
    """Whether the worker counts span 16x or more (then both axes of a scaling plot are log2)."""
    workers = sorted(runs["gpus"].dropna().unique())
    return bool(workers) and workers[-1] >= 16 * max(workers[0], 1)


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
    if _wide(runs):  # 1 ... 64 workers: a speed-up of 3 would fill 5% of a linear axis
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
    _scaling_titles(ax, runs, "sim_speedup", ("speed-up over backprop on 1 worker (x)", "speed-up"),
                    "same global batch; bars: step-time IQR")
    return fig


def throughput(runs: pd.DataFrame) -> Figure:
    tokens = _any(runs, "tokens_per_s") or _any(runs, "sim_tokens_per_s")
    column = "tokens_per_s" if tokens else "samples_per_s"
    fig, ax = _figure(7, 4.5)
    _points_vs_workers(ax, runs, column, f"sim_{column}")
    if _wide(runs):
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
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
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # 175.9 steps, not 0.06 + 1.759e2
        ax.set_ylim(bottom=0)  # from zero: 175.94 and 175.97 steps are the same, not a fall across the axis
    ok = measured_ok(runs)  # a simulated run trained nothing: it did not miss the target
    missed = ok[ok["time_to_target_s"].isna()] if "time_to_target_s" in ok else ok.iloc[0:0]
    subtitle = f"target: {target_text}" if target_text else "no target"
    if not missed.empty and target_text:
        subtitle += "\nnot reached: " + ", ".join(f"{r['label']} x{r['gpus']}" for _, r in missed.iterrows())
    fig.suptitle(f"Time to quality vs workers (interpolated between evaluations)\n{subtitle}", fontsize=10)
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


# A run with more workers shows its first and last few in the per-worker figures, and says so.
MOST_WORKERS_SHOWN = 8


def shown_ranks(ranks: list[int]) -> list[int]:
    """All ranks, or the first and last MOST_WORKERS_SHOWN / 2 (a pipeline's ends differ most)."""
    ranks = sorted(ranks)
    if len(ranks) <= MOST_WORKERS_SHOWN:
        return ranks
    half = MOST_WORKERS_SHOWN // 2
    return ranks[:half] + ranks[-half:]


def _per_worker_rows(ax, runs: pd.DataFrame, frame: pd.DataFrame, draw) -> None:
    """One horizontal bar per worker, grouped by run (by label, then workers; a simulated run's
    rows say so); `draw(y, row)` draws the bar of one row of `frame` at height y."""
    def name(r) -> str:
        extra = " (simulated)" if bool(r.get("simulated")) else (
            " (oversubscribed)" if oversubscribed(r.get("oversubscribed")) else "")
        return f"{r['label']} x{r['gpus']:g}{extra}"
    names = {r["run"]: name(r) for _, r in runs.iterrows()}
    order = [r for r in runs.sort_values(["label", "gpus", "simulated"])["run"] if r in set(frame["run"])]
    y, ticks, labels = 0, [], []
    for run in order:
        mine = frame[frame["run"] == run]
        shown = shown_ranks(list(mine["rank"].astype(int)))
        for _, w in mine[mine["rank"].isin(shown)].sort_values("rank").iterrows():
            draw(y, w)
            ticks.append(y)
            labels.append(f"{names[run]}  rank {int(w['rank'])}")
            y += 1
        if len(shown) < len(mine):
            labels[-1] += f"  ({len(shown)} of {len(mine)} workers shown)"
        y += 0.5
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def _rows_shown(frame: pd.DataFrame) -> int:
    return sum(min(len(group), MOST_WORKERS_SHOWN) for _, group in frame.groupby("run"))


SIMULATED_HATCH = "///"


def memory_frame(runs: pd.DataFrame, workers: pd.DataFrame) -> pd.DataFrame:
    """Per worker of `runs`: `training_bytes`, the measured peak above the process baseline, or
    for a simulate=true run the simulated peak (weights, gradients, optimizer state, stashes,
    kept activations: no runtime to subtract), with `simulated` saying which."""
    frame = workers[workers["run"].isin(runs["run"])].copy()
    is_simulated = frame["run"].map(dict(zip(runs["run"], simulated(runs)))).fillna(False).astype(bool)
    measured = frame["peak_memory_bytes"] - frame["baseline_memory_bytes"].fillna(0)
    frame["training_bytes"] = measured.where(~is_simulated, frame["sim_peak_memory_bytes"])
    frame["simulated"] = is_simulated
    return frame.dropna(subset=["training_bytes"])


def memory(runs: pd.DataFrame, workers: pd.DataFrame) -> Figure:
    """Peak memory of each worker of each run above the process baseline (what the process held
    before data and model were built: interpreter, PyTorch, gloo; on CUDA about nothing). On CPU
    the peak is the worker process's own peak resident set, on CUDA the peak allocated
    (mpbench/worker_memory.py). A simulate=true run's bars, hatched, are its simulated peaks."""
    shown = memory_frame(_ok(runs), workers)
    fig, ax = _figure(8, 0.45 * max(4, _rows_shown(shown)) + 1)
    algorithm = dict(zip(runs["run"], runs["algorithm"]))

    def bar(y, w):
        ax.barh(y, w["training_bytes"] / MIB, color=colour(algorithm[w["run"]]),
                hatch=SIMULATED_HATCH if w["simulated"] else None, edgecolor="white" if w["simulated"] else None)
        ax.text(w["training_bytes"] / MIB, y, f" {w['training_bytes'] / MIB:.1f}", va="center", fontsize=7)
    _per_worker_rows(ax, runs, shown, bar)
    ax.set_xlim(left=0)
    measured = shown[~shown["simulated"]]
    device = runs["device_type"].dropna().iloc[0] if runs["device_type"].notna().any() else "cpu"
    what = "peak allocated (CUDA)" if device == "cuda" else "the worker's own peak resident set"
    baseline = measured["baseline_memory_bytes"].dropna()
    ax.set_xlabel(f"peak memory above the process baseline (MiB; {what})"
                  + ("; hatched: simulated" if shown["simulated"].any() else ""))
    ax.set_title("Peak memory per worker: data, model, optimizer, activations, buffers"
                 + (f"\n(baseline not shown: {baseline.median() / MIB:.0f} MiB per worker, median)"
                    if not baseline.empty else ""), fontsize=10)
    return fig


BREAKDOWN = (("compute_s", "compute (forward and backward)", "#4c72b0"),
             ("wait_s", "communication wait", "#dd8452"),
             ("other_s", "rest: waits not attributed, idle or bubble, optimizer step", "#c44e52"),
             ("unsplit_s", "whole iteration (the algorithm reports no breakdown)", "#b0b0b0"),
             ("sim_busy_s", "simulated: busy (compute, optimizer, local modules)", "#4c72b0"),
             ("sim_overhead_s", "simulated: per-step overhead", "#8c8c3c"),
             ("sim_comm_s", "simulated: on the communication lane", "#dd8452"),
             ("sim_idle_s", "simulated: idle (waiting, bubble)", "#e8e8e8"))


def breakdown_frame(workers: pd.DataFrame) -> pd.DataFrame:
    """Per worker: compute, wait, the rest of the iteration (`other_s`), or the whole iteration
    as `unsplit_s` when the algorithm reports no compute time; a simulated worker keeps its
    sim_ parts (busy, overhead, idle; communication overlaps them on its own lane)."""
    out = workers.copy()
    has_compute = out["compute_s"].notna()
    wait = out["wait_s"].fillna(0.0)
    out["other_s"] = (out["iteration_s"] - out["compute_s"] - wait).clip(lower=0).where(has_compute)
    out["wait_s"] = wait.where(has_compute)
    out["unsplit_s"] = out["iteration_s"].where(~has_compute)
    return out


def time_breakdown(runs: pd.DataFrame, workers: pd.DataFrame) -> Figure:
    """Where each worker's iteration goes: compute, communication wait and the rest (idle,
    pipeline bubble, or waits the algorithm does not attribute), in ms per iteration. A
    simulate=true run's workers, hatched: simulated busy, per-step overhead and idle time, and
    beside them (a thin bar) the time on their communication lane, which overlaps the rest."""
    ok = _ok(runs)
    is_simulated = workers["run"].map(dict(zip(ok["run"], simulated(ok)))).fillna(False).astype(bool)
    measured = workers[workers["run"].isin(ok["run"]) & ~is_simulated & workers["iteration_s"].notna()]
    predicted = workers[workers["run"].isin(ok["run"]) & is_simulated & workers["sim_busy_s"].notna()]
    frame = pd.concat([breakdown_frame(measured), predicted], ignore_index=True)
    fig, ax = _figure(8, 0.45 * max(4, _rows_shown(frame)) + 1.5)
    used = set()

    def stacked(y, w):
        left = 0.0
        for column, name, c in BREAKDOWN:
            if column == "sim_comm_s" or column not in w or pd.isna(w[column]) or w[column] <= 0:
                continue
            hatch = SIMULATED_HATCH if column.startswith("sim_") else None
            ax.barh(y, w[column] * 1e3, left=left, color=c, hatch=hatch, edgecolor="white" if hatch else None)
            used.add(name)
            left += w[column] * 1e3
        if pd.notna(w.get("sim_comm_s")) and w["sim_comm_s"] > 0:
            ax.barh(y + 0.3, w["sim_comm_s"] * 1e3, height=0.2, color=dict((k, c) for k, _, c in BREAKDOWN)["sim_comm_s"])
            used.add(dict((k, n) for k, n, _ in BREAKDOWN)["sim_comm_s"])
    _per_worker_rows(ax, ok, frame, stacked)
    ax.set_xlabel("time per iteration (ms; measured: median inside the algorithm's step; simulated: one steady step)")
    ax.set_title("Time breakdown per worker")
    if used:
        handles = [Patch(facecolor=c, label=name, hatch=SIMULATED_HATCH if key.startswith("sim_") else None,
                         edgecolor="white") for key, name, c in BREAKDOWN if name in used]
        fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=2)
    return fig


def left_out(runs: pd.DataFrame, workers: pd.DataFrame, curves: pd.DataFrame, metric: Metric,
             target_text: str) -> dict[str, str]:
    """The report's figures that would be empty axes, each with why (one line on the page)."""
    ok = _ok(runs)
    measured = measured_ok(runs)
    trained = curves["run"].isin(measured["run"]) & curves[metric.column].notna() if metric.column in curves \
        else pd.Series(False, index=curves.index)
    why = {}
    if not (_any(runs, "speedup") or _any(runs, "sim_speedup")):
        why["speedup"] = ("no speed-up: no run has a backprop reference on 1 worker of the same computation, and none "
                          "is simulated")
    if not any(_any(runs, c) for c in ("samples_per_s", "tokens_per_s", "sim_samples_per_s", "sim_tokens_per_s")):
        why["throughput"] = "no run finished ok with a time per iteration, measured or simulated"
    if not trained.any():
        reason = ("every run that finished ok is simulated: nothing was trained" if _all_simulated(runs)
                  else f"no run that finished ok recorded an evaluation ({metric.label})")
        why["convergence_step"] = why["convergence_time"] = why["final_quality"] = reason
    if "convergence_step" not in why and not _any(measured, metric.column):
        why["final_quality"] = f"no measured run recorded a final {metric.label}"
    if not target_text:
        why["time_to_target"] = ("no target: no backprop reference of the same computation finished ok, and no "
                                 "report.target was given" if "convergence_step" not in why else why["convergence_step"])
    elif not _any(measured, "time_to_target_s"):
        why["time_to_target"] = f"no run reached the target ({target_text})"
    if memory_frame(ok, workers).empty:
        why["memory"] = "no run that finished ok recorded its workers' memory, measured or simulated"
    mine = workers[workers["run"].isin(ok["run"])]
    if not (mine["iteration_s"].notna().any() or mine["sim_busy_s"].notna().any()):
        why["time_breakdown"] = "no run that finished ok recorded its workers' time per iteration, measured or simulated"
    return why
