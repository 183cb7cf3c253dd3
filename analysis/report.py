"""The sweep report: figures, a table of every run and a Markdown page embedding them.

    python -m analysis.report <sweep dir> [<more dirs> --out <dir>] [--target 1.9] [--margin 0.05]

writes into `<sweep dir>/report/` (or `--out`):

    report.md           the page: what was run, the reference and target, the table, the figures
    runs.csv, runs.parquet   the table, one row per run (failed and diverged runs included, and
                             incomplete, unreadable or damaged records: analysis/load.py);
                             simulated numbers only in the sim_* columns, headed "(simulated)" on the page
    best_learning_rates.csv  where the runs tried several learning rates per method: the best of each
    speedup.png, throughput.png, convergence_step.png, convergence_time.png,
    final_quality.png, time_to_target.png, memory.png, time_breakdown.png

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
from analysis.derive import (REFERENCE, Metric, best_learning_rates, measured_ok, quality_metric, repeats, run_labels,
                             simulated, targets, with_reference, with_relative_views, with_time_to_target)
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
from mpbench.records import atomic_write_text

DEFAULT_MARGIN = 0.05
TABLE_COLUMNS = ["run", "reference_role", "algorithm", "settings", "lr", "gpus", "threads_per_worker", "oversubscribed",
                 "status", "reason", "simulated", "final_metric", "eval_loss", "time_per_iter_ms", "speedup", "speedup_spread",
                 "scaling_over_own_1", "speedup_over_data_parallel", "interference", "steps_to_target",
                 "time_to_target_s", "peak_memory_mib_max",
                 # Simulated numbers (analysis/load.py): headed "(simulated)" on the page.
                 "sim_time_per_iter_ms", "sim_speedup", "sim_samples_per_s", "sim_idle_fraction",
                 "sim_peak_memory_mib_max"]
SIMULATED_PREFIX = "sim_"


@dataclass
class Report:
    directory: Path
    page: Path
    table: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
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
    table = runs.assign(final_metric=runs.get(metric.column),
                        time_per_iter_ms=runs["time_per_iter_median_s"] * 1e3,
                        peak_memory_mib_max=runs["peak_memory_bytes_max"] / plots.MIB,
                        sim_time_per_iter_ms=runs["sim_step_s"] * 1e3,
                        sim_peak_memory_mib_max=runs["sim_peak_memory_bytes"] / plots.MIB)
    return table[[c for c in TABLE_COLUMNS if c in table]].reset_index(drop=True)


@dataclass
class Analysis:
    """Everything the figures are drawn from (what the notebooks work with)."""

    runs: pd.DataFrame  # one row per run, with reference_run, speedup, label, target, time to target
    curves: pd.DataFrame  # one row per recorded step
    workers: pd.DataFrame  # one row per worker
    metric: Metric
    target_text: str  # how the target was chosen, per workload ("" if there is none)
    notes: list[str] = field(default_factory=list)  # what could not be read (curves left out)


def analyse(paths: list[Path] | Path | str, target: float | None = None, margin: float = DEFAULT_MARGIN) -> Analysis:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    runs = with_reference(load_sweeps(paths))
    runs["label"] = run_labels(runs)
    runs = with_relative_views(runs)
    metric = quality_metric(runs)
    notes: list[str] = []
    curves = load_curves(runs, notes)
    chosen = targets(runs, metric, target, margin)
    runs = with_time_to_target(runs, curves, metric, chosen)
    return Analysis(runs, curves, load_workers(runs), metric, "; ".join(sorted({t for _, t in chosen.values()})),
                    notes)


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
    report = Report(out_dir, out_dir / "report.md", tidy_table(a.runs, a.metric),
                    warnings=_warnings(a.runs) + a.notes)
    figures = {
        "speedup": plots.speedup(a.runs),
        "throughput": plots.throughput(a.runs),
        "convergence_step": plots.convergence(a.runs, a.curves, a.metric, x="step"),
        "convergence_time": plots.convergence(a.runs, a.curves, a.metric, x="train_time_s"),
        "final_quality": plots.final_quality(a.runs, a.metric),
        "time_to_target": plots.time_to_target(a.runs, a.target_text),
        "memory": plots.memory(a.runs, a.workers),
        "time_breakdown": plots.time_breakdown(a.runs, a.workers),
    }
    for name, figure in figures.items():
        report.figures[name] = out_dir / f"{name}.png"
        _write_atomically(report.figures[name], lambda path, figure=figure: figure.savefig(path, dpi=110, format="png"))
    atomic_write_text(out_dir / "runs.csv", report.table.to_csv(index=False))
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
                     f"with the same model, data, batch, dtype and threads that finished ok, so their speed-up "
                     f"and default target are missing; add `algorithm={algorithm} gpus={workers}` to the sweep")
    supplied = runs[runs["reference_role"].notna()]
    if not supplied.empty:
        reused = supplied[supplied["reference_role"] == "reused"]
        notes.append(f"the sweep lacked its `{algorithm}` x {workers} reference: {len(supplied) - len(reused)} added "
                     f"(run after the sweep), {len(reused)} reused from the results tree (measured at another time; "
                     f"see references/*/reference.json); marked in the table's `reference_role`")
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
                                     "dotted: ideal linear scaling; dashed with x markers: simulated (a simulated "
                                     "step over backprop on 1 worker simulated from the same profile).")),
            ("throughput", "Throughput", ("Training samples (or tokens) per second from the median time per iteration; "
                                          "dashed with x markers: simulated.")),
            ("convergence_step", "Convergence per step", "The eval metric at each evaluation, one panel per worker count."),
            ("convergence_time", "Convergence in time", "The same against training time (evaluation excluded)."),
            ("final_quality", "Final quality", "The last evaluation of each run: what staleness or local losses cost."),
            ("time_to_target", "Time to target", "Training time until an evaluation first reaches the target."),
            ("memory", "Peak memory", "Per worker."),
            ("time_breakdown", "Time breakdown", ("Per worker and iteration: compute, communication wait and the rest "
                                                  "(idle, pipeline bubble, or waits the algorithm does not attribute).")))


def _page(paths: list[Path], a: Analysis, report: Report) -> str:
    runs, metric, target_text = a.runs, a.metric, a.target_text
    counts = runs["status"].value_counts().to_dict()
    lines = ["# mpbench report", "",
             "Results: " + ", ".join(f"`{p}`" for p in paths), "",
             f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
             f"Quality metric: {metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better).",
             f"Target: {target_text or 'none (no reference and no report.target)'}.", ""]
    lines += [f"> **Note:** {w}" for w in report.warnings]
    bad = runs[~runs["status"].isin(["ok"])]
    if not bad.empty:
        lines += ["", "## Runs that did not finish ok", ""]
        lines += [f"- `{r['run']}`: **{r['status']}**: {_fmt(r['reason']) or 'no reason given'}" for _, r in bad.iterrows()]
    lines += ["", "## All runs", "", markdown_table(report.table), "",
              "Table as `runs.csv` and `runs.parquet` beside this page."]
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
        lines += ["", f"## {title}", "", text, "", f"![{title}]({report.figures[name].name})"]
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
