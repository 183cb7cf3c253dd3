"""The sweep report: figures, a table of every run and a Markdown page embedding them.

    python -m analysis.report <sweep dir> [<more dirs> --out <dir>] [--target 1.9] [--margin 0.05]

writes into `<sweep dir>/report/` (or `--out`):

    report.md           the page: the summary (speed-up, quality lost, time to target per worker
                        count and method, and what exceeds the noise: analysis/summary.py), the
                        references and target, a table of the runs, the figures, the Gantt charts
    runs.csv, runs.parquet   the full table, one row per run (failed and diverged runs included, and
                             incomplete, unreadable or damaged records: analysis/load.py);
                             simulated numbers only in the sim_* columns, headed "(simulated)" on the page
    summary.csv         the summary table
    best_learning_rates.csv  where the runs tried several learning rates per method: the best of each
    speedup.png, throughput.png, convergence_step.png, convergence_time.png,
    final_quality.png, time_to_target.png, memory.png, time_breakdown.png: those with something
                        to show (the page says why one is left out)

The Hydra callback at the end of a multirun (`analysis.sweep_callback.SweepSummary`) calls `build_report`
on the sweep directory; several sweeps, or a whole results tree, can be merged from here.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.derive import (REFERENCE, TO_TARGET_METHOD, Metric, best_learning_rates, measured_ok, quality_metric,
                             repeats, run_labels, simulated, targets, with_quality_lost, with_reference,
                             with_relative_views, with_time_to_target)
from analysis.load import (
    DAMAGED,
    INCOMPLETE,
    RUN_MARKS,
    UNREADABLE,
    ResultsError,
    load_curves,
    load_runs,
    load_workers,
)
from analysis.summary import Summary, summarise
from mpbench.records import atomic_write_text

DEFAULT_MARGIN = 0.05
TABLE_COLUMNS = ["run", "reference_role", "label", "algorithm", "structure", "settings", "lr", "seed", "gpus",
                 "threads_per_worker", "oversubscribed", "status", "reason", "simulated", "final_metric", "quality_lost",
                 "eval_loss", "time_per_iter_ms", "reference_run", "reference_timing", "speedup", "speedup_spread",
                 "speedup_implausible", "scaling_over_own_1", "speedup_over_data_parallel", "interference",
                 "steps_to_target", "time_to_target_s", "peak_memory_mib_max", "memory_measure",
                 # Simulated numbers (analysis/load.py): headed "(simulated)" on the page.
                 "sim_time_per_iter_ms", "sim_speedup", "sim_samples_per_s", "sim_idle_fraction",
                 "sim_peak_memory_mib_max"]
SIMULATED_PREFIX = "sim_"


# The page's table: what a reader compares, and the resolved structure (K, groups, split, schedule,
# microbatches); every other column stays in runs.csv and runs.parquet.
PAGE_COLUMNS = {"run": "run", "label": "method", "gpus": "workers", "structure": "structure", "status": "status",
                "final_metric": "final metric", "time_per_iter_ms": "ms/iter", "speedup": "speed-up",
                "peak_memory_mib_max": "peak MiB", "sim_time_per_iter_ms": "sim_ms/iter"}


@dataclass
class Report:
    directory: Path
    page: Path
    table: pd.DataFrame
    summary: Summary
    figures: dict[str, Path] = field(default_factory=dict)
    omitted: dict[str, str] = field(default_factory=dict)  # figure -> why it is not drawn
    warnings: list[str] = field(default_factory=list)


def load_sweeps(paths: list[Path]) -> pd.DataFrame:
    """The runs under every path; run names are made unique by their sweep when merging."""
    frames = []
    names = [Path(p).name for p in paths]
    prefixes = names if len(set(names)) == len(names) else [str(p) for p in paths]
    for path, prefix in zip(paths, prefixes):
        runs = load_runs(path)
        if len(paths) > 1:
            runs["run"] = [f"{prefix}/{r}" for r in runs["run"]]
        frames.append(runs)
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if runs.empty:
        where = ", ".join(str(p) for p in paths)
        raise ResultsError(f"no runs in {where}: no directory below it holds any of {', '.join(RUN_MARKS)}")
    return runs


def tidy_table(runs: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    table = runs.assign(final_metric=runs.get(metric.column), settings=runs["settings"].map(_set_settings),
                        time_per_iter_ms=runs["time_per_iter_median_s"] * 1e3,
                        peak_memory_mib_max=runs["peak_memory_bytes_max"] / plots.MIB,
                        sim_time_per_iter_ms=runs["sim_step_s"] * 1e3,
                        sim_peak_memory_mib_max=runs["sim_peak_memory_bytes"] / plots.MIB)
    return table[[c for c in TABLE_COLUMNS if c in table]].reset_index(drop=True)


def _set_settings(settings) -> str | None:
    """A run's algorithm settings without the ones left unset (null: the algorithm resolves
    them, and `structure` shows what it chose)."""
    if not isinstance(settings, str):
        return settings
    return ", ".join(p for p in settings.split(", ") if not p.endswith("=None")) or None


@dataclass
class Analysis:
    """Everything the figures are drawn from (what the notebooks work with)."""

    runs: pd.DataFrame  # one row per run, with reference_run, speedup, label, target, time to target
    curves: pd.DataFrame  # one row per recorded step
    workers: pd.DataFrame  # one row per worker
    metric: Metric
    target_text: str  # how the target was chosen, per workload ("" if there is none)
    notes: list[str] = field(default_factory=list)  # what could not be read (curves left out)
    timing_runs: pd.DataFrame | None = None  # the references timed again (references/timing_*): not methods


def analyse(paths: list[Path] | Path | str, target: float | None = None, margin: float = DEFAULT_MARGIN) -> Analysis:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    loaded = with_reference(load_sweeps(paths))
    timing = loaded["reference_role"] == "timing"  # they time a reference; they are no method of the sweep
    runs, timing_runs = loaded[~timing].reset_index(drop=True), loaded[timing].reset_index(drop=True)
    runs["label"] = run_labels(runs)
    runs = with_relative_views(runs)
    metric = quality_metric(runs)
    notes: list[str] = []
    curves = load_curves(runs, notes)
    chosen = targets(runs, metric, target, margin)
    runs = with_quality_lost(with_time_to_target(runs, curves, metric, chosen), metric)
    return Analysis(runs, curves, load_workers(runs), metric, "; ".join(sorted({t for _, t in chosen.values()})),
                    notes, timing_runs)


def build_report(paths: list[Path] | Path | str, out_dir: Path | None = None, target: float | None = None,
                 margin: float = DEFAULT_MARGIN) -> Report:
    """Read the runs under `paths`, write the figures, tables and report.md into `out_dir`
    (default: `<path>/report` for one path) and return what was written."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if out_dir is None:
        if len(paths) != 1:
            raise ResultsError("merging several results directories needs --out <dir> for the report")
        out_dir = paths[0] / "report"
    a = analyse(paths, target, margin)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, out_dir / "report.md", tidy_table(a.runs, a.metric), summarise(a.runs, a.metric),
                    warnings=_warnings(a.runs) + a.notes)
    report.omitted = plots.left_out(a.runs, a.workers, a.curves, a.metric, a.target_text)
    draw = {
        "speedup": lambda: plots.speedup(a.runs),
        "throughput": lambda: plots.throughput(a.runs),
        "convergence_step": lambda: plots.convergence(a.runs, a.curves, a.metric, x="step"),
        "convergence_time": lambda: plots.convergence(a.runs, a.curves, a.metric, x="train_time_s"),
        "final_quality": lambda: plots.final_quality(a.runs, a.metric),
        "time_to_target": lambda: plots.time_to_target(a.runs, a.target_text),
        "memory": lambda: plots.memory(a.runs, a.workers),
        "time_breakdown": lambda: plots.time_breakdown(a.runs, a.workers),
    }
    for name, figure in draw.items():
        stale = out_dir / f"{name}.png"
        if name in report.omitted:
            stale.unlink(missing_ok=True)  # a figure of an earlier report of this directory would mislead
            continue
        report.figures[name] = stale
        _write_atomically(stale, lambda path, figure=figure(): figure.savefig(path, dpi=110, format="png"))
    atomic_write_text(out_dir / "runs.csv", report.table.to_csv(index=False))
    atomic_write_text(out_dir / "summary.csv", report.summary.table.to_csv(index=False))
    best = best_learning_rates(a.runs, a.metric)
    if not best.empty:
        atomic_write_text(out_dir / "best_learning_rates.csv", best.to_csv(index=False))
    _write_atomically(out_dir / "runs.parquet", lambda path: report.table.to_parquet(path, index=False))
    atomic_write_text(report.page, _page(paths, a, report))  # last: a page means a complete report
    return report


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    write(partial)
    os.replace(partial, path)


def _warnings(runs: pd.DataFrame) -> list[str]:
    algorithm, workers = REFERENCE
    notes = []
    finished = measured_ok(runs)  # a simulated run brings its own (simulated) reference
    missing = finished[finished["reference_run"].isna()]
    if not missing.empty:
        notes.append(f"no reference: {len(missing)} of {len(finished)} finished runs have no `{algorithm}` run on {workers} worker "
                     f"of the same computation (model, data, batch, dtype, threads, optimizer and schedule, steps, "
                     f"seed, evaluation set) that finished ok, so their speed-up and default target are missing; "
                     f"add `algorithm={algorithm} gpus={workers}` to the sweep")
    supplied = runs[runs["reference_role"].notna()]
    if not supplied.empty:
        reused = supplied[supplied["reference_role"] == "reused"]
        notes.append(f"the sweep lacked its `{algorithm}` x {workers} reference: {len(supplied) - len(reused)} added "
                     f"(run after the sweep)" + (f", {len(reused)} reused from the results tree by an earlier version "
                                                 f"(see references/*/reference.json)" if len(reused) else "")
                     + "; marked in the table's `reference_role`")
    away = finished[[plots.not_beside(t) for t in finished["reference_timing"]]]
    if not away.empty:
        where = ", ".join(f"{n} {w}" for w, n in sorted(away["reference_timing"].value_counts().items()))
        notes.append(f"{len(away)} runs have a speed-up over a reference not timed beside them ({where}): drawn as "
                     f"squares; the machine's speed drifts over minutes, so compare them with care (a sweep with "
                     f"report.retime_steps > 0 times the reference before and after each point)")
    unusable = runs[runs["status"].isin([INCOMPLETE, UNREADABLE, DAMAGED])]
    if not unusable.empty:
        counts = unusable["status"].value_counts().to_dict()
        notes.append(f"{len(unusable)} runs have no usable records ("
                     + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                     + "): listed in the table with the reason, left out of the figures")
    noisy = runs[runs["interference"].notna()]
    if not noisy.empty:
        notes.append(f"{len(noisy)} runs may have been disturbed by other work on the machine, so treat their "
                     f"timings with care: " + "; ".join(f"`{r['run']}`: {r['interference']}" for _, r in noisy.iterrows()))
    over = runs[runs["oversubscribed"].eq(True) & ~simulated(runs)]  # a column of bools and None
    if not over.empty:
        twins = over["sim_speedup"].notna().sum()
        notes.append(f"{len(over)} measured runs are oversubscribed (workers x threads > cores): their timings are CPU "
                     f"artefacts, drawn hollow" + (f"; {twins} of them have a simulated speed-up beside (dashed)"
                                                  if twins else ""))
    for _, run in runs[runs["sim_unavailable"].notna()].iterrows():
        notes.append(f"`{run['run']}` has no simulated speed-up beside its measured one: {run['sim_unavailable']}")
    simulated_runs = runs[simulated(runs) & (runs["status"] == "ok")]
    if not simulated_runs.empty:
        notes.append(f"{len(simulated_runs)} runs are simulated (simulate=true): nothing was trained; their step time "
                     f"and speed-up come from profiled costs, over `{algorithm}` x {workers} simulated from the same "
                     f"profile (the table's (simulated) columns, dashed lines with x markers)")
    return notes


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def header(column: str) -> str:
    """A table column as a reader sees it: simulated numbers say so (sim_speedup -> speedup (simulated))."""
    if column.startswith(SIMULATED_PREFIX):
        return f"{column.removeprefix(SIMULATED_PREFIX)} (simulated)"
    return column


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(header, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


SECTIONS = (("speedup", "Speed-up", ("Time per iteration of the backprop reference on 1 worker divided by the run's; "
                                     "dotted: ideal linear scaling; red rings: more than linear beyond the error bar "
                                     "(implausible); squares: a reference not timed beside the run; dashed with x "
                                     "markers: simulated (a simulated step over backprop on 1 worker simulated from "
                                     "the same profile).")),
            ("throughput", "Throughput", ("Training samples (or tokens) per second from the median time per iteration; "
                                          "dashed with x markers: simulated.")),
            ("convergence_step", "Convergence per step", "The eval metric at each evaluation, one panel per worker count."),
            ("convergence_time", "Convergence in time", "The same against training time (evaluation excluded)."),
            ("final_quality", "Final quality", "The last evaluation of each run: what staleness or local losses cost."),
            ("time_to_target", "Time to target", f"Training time and steps until the eval metric reaches the target, "
                                                 f"{TO_TARGET_METHOD}."),
            ("memory", "Peak memory", ("Per worker, above its baseline (measured: the worker process's own peak; "
                                       "hatched: simulated, the state and activations the simulator charges).")),
            ("time_breakdown", "Time breakdown", ("Per worker and iteration: compute, communication wait and the rest "
                                                  "(idle, pipeline bubble, or waits the algorithm does not attribute); "
                                                  "hatched: simulated (busy, per-step overhead, communication, idle).")))


def page_table(table: pd.DataFrame) -> pd.DataFrame:
    """The page's table (PAGE_COLUMNS): at most ten columns, the rest in runs.csv."""
    shown = table[[c for c in PAGE_COLUMNS if c in table]].rename(columns=PAGE_COLUMNS)
    return shown.dropna(axis=1, how="all")


def _gantt_links(runs: pd.DataFrame, out_dir: Path) -> list[str]:
    """One Markdown link per simulated step drawn (a run's gantt.png), relative to the page."""
    links = []
    for _, run in runs[runs["status"] == "ok"].sort_values(["label", "gpus"]).iterrows():
        chart = Path(run["path"]) / "gantt.png"
        if chart.exists():
            where = os.path.relpath(chart, out_dir)
            links.append(f"- [{run['label']} x{run['gpus']:g}]({where})" + (" (oversubscribed run's simulated twin)"
                                                                          if not bool(run["simulated"]) else ""))
    return links


def _reference_lines(a: Analysis) -> list[str]:
    """Which reference each computation used, and the reference's timings beside the points."""
    runs = a.runs
    lines = []
    for reference, group in runs.dropna(subset=["reference_run"]).groupby("reference_run"):
        row = runs[runs["run"] == reference]
        role = row.iloc[0]["reference_role"] if not row.empty else None
        how = {"added": "added at the sweep's end", "reused": "reused from another sweep"}.get(role, "in the grid")
        ms = f", {_fmt(row.iloc[0]['time_per_iter_median_s'] * 1e3)} ms/iter" if not row.empty else ""
        lines.append(f"- `{reference}` ({how}{ms}): the quality baseline and target of {len(group)} runs")
    for where, n in sorted(runs["reference_timing"].dropna().value_counts().items()):
        if where != "the reference itself":
            lines.append(f"- speed-ups {where}: {n} run{'s' if n != 1 else ''}")
    timing = a.timing_runs if a.timing_runs is not None else pd.DataFrame()
    if not timing.empty:
        ok = timing[timing["status"] == "ok"]
        ms = ok["time_per_iter_median_s"] * 1e3
        lines.append(f"- the reference timed beside the points: {len(timing)} timing runs (`references/timing_*`), "
                     f"{len(ok)} ok" + (f", {ms.min():.1f} to {ms.max():.1f} ms/iter" if not ok.empty else ""))
        lines += [f"  - `{r['run']}`: **{r['status']}**: {_fmt(r['reason'])}" for _, r in timing.iterrows()
                  if r["status"] != "ok"]
    return lines


def _page(paths: list[Path], a: Analysis, report: Report) -> str:
    runs, metric, target_text = a.runs, a.metric, a.target_text
    counts = runs["status"].value_counts().to_dict()
    lines = ["# mpbench report", "",
             "Results: " + ", ".join(f"`{p}`" for p in paths), "",
             f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
             f"Quality metric: {metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better).",
             f"Target: {target_text or 'none (no reference and no report.target)'}.", ""]
    if not report.summary.table.empty:
        lines += ["## Summary", "",
                  "Per worker count and method: speed-up over backprop on 1 worker [error bar], the final "
                  f"{metric.label} lost against backprop of the same computation (positive: worse; ± a 95% interval "
                  "over seeds), the training time to target, and what exceeds the noise (`summary.csv`).", "",
                  markdown_table(report.summary.table), ""]
        lines += [f"- {statement}" for statement in report.summary.statements]
    references = _reference_lines(a)
    if references:
        lines += ["", "## References", ""] + references
    lines += [""] + [f"> **Note:** {w}" for w in report.warnings]
    bad = runs[~runs["status"].isin(["ok"])]
    if not bad.empty:
        lines += ["", "## Runs that did not finish ok", ""]
        lines += [f"- `{r['run']}`: **{r['status']}**: {_fmt(r['reason']) or 'no reason given'}" for _, r in bad.iterrows()]
    lines += ["", "## Runs", "", markdown_table(page_table(report.table)), "",
              "Every column (settings, spreads, reference, time to target, memory, simulated numbers) in `runs.csv` "
              "and `runs.parquet` beside this page."]
    repeated = repeats(runs, metric)
    if not repeated.empty:
        lines += ["", "## Repeats", "", "Configurations run with several seeds: median [min, max].", "",
                  markdown_table(repeated)]
    best = best_learning_rates(runs, metric)
    if not best.empty:
        lines += ["", "## Each method at its best learning rate", "",
                  f"Methods this sweep ran at several learning rates, with the final {metric.label} at each (mean "
                  "over seeds): compare them at each one's best, not at one shared rate. Also "
                  "`best_learning_rates.csv`.", "", markdown_table(best)]
    for name, title, text in SECTIONS:
        if name in report.figures:
            lines += ["", f"## {title}", "", text, "", f"![{title}]({report.figures[name].name})"]
    if report.omitted:
        lines += ["", "## Figures left out", ""]
        lines += [f"- {dict((n, t) for n, t, _ in SECTIONS)[name]}: {why}" for name, why in report.omitted.items()]
    gantt = _gantt_links(runs, report.directory)
    if gantt:
        lines += ["", "## Simulated steps (Gantt charts)", "",
                  "One steady step of each simulated configuration, per worker (docs/simulator.md).", ""] + gantt
    return "\n".join(lines) + "\n"


def log_to_wandb(report: Report, project: str, mode: str, name: str) -> None:
    """The report's figures as images and its table as a wandb Table, in one wandb run (files kept
    under the report directory)."""
    import wandb

    run = wandb.init(project=project, mode=mode, dir=str(report.directory), name=name, job_type="report",
                     reinit="finish_previous")
    run.log({name: wandb.Image(str(path)) for name, path in report.figures.items()})
    run.log({"runs": wandb.Table(dataframe=report.table.astype(object).where(report.table.notna(), None))})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep or results directories (merged)")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: <path>/report)")
    parser.add_argument("--target", type=float, default=None, help="eval-metric target for time to quality")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="relaxation of the reference's final metric when no target is given")
    args = parser.parse_args(argv)
    try:
        report = build_report(args.paths, args.out, args.target, args.margin)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"note: {warning}")
    print(f"report: {report.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
