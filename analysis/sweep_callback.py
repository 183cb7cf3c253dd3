"""What a researcher sees when a multirun ends: one line per run, the report, and where they are.

A Hydra callback, configured in experiments/config.yaml. Runs that failed or diverged, and runs
whose records are incomplete, unreadable or damaged, are listed, never dropped. The report
(`analysis.report`, the same code as `python -m analysis.report <sweep dir>`) is written into
<sweep dir>/report, and with logger=wandb also logged to wandb. The sweep exits with status 1 if
any run failed, 2 if no point of the grid was valid, so scripts and CI notice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mpbench.config import ReportSpec, settings_from
from mpbench.errors import ConfigError


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, spec: str, scale: float = 1.0) -> str:
    return "n/a" if _missing(value) else format(value * scale, spec)


def run_lines(runs) -> list[str]:
    """The console lines for the runs of `analysis.load.load_runs`: one per run (its status, and
    its eval loss and time per iteration if it is ok, else its reason), then the counts. A
    simulated run (simulate=true) says so and shows its simulated time and speed-up instead; a
    measured run with a simulated twin (oversubscribed) shows that speed-up after its own, labelled."""
    lines = []
    for _, run in runs.iterrows():
        line = f"  {run['run']!s:<32} {run['status']!s:<9}"
        if run["status"] == "ok" and not _missing(run.get("simulated")) and bool(run.get("simulated")):
            line += (f" simulated, nothing trained: {_number(run.get('sim_step_s'), '.1f', 1e3)} ms/iter, "
                     f"speed-up {_number(run.get('sim_speedup'), '.2f')}x (simulated)")
        elif run["status"] == "ok":
            line += (f" eval_loss={_number(run.get('eval_loss'), '.4f')}"
                     f"  {_number(run['time_per_iter_median_s'], '.1f', 1e3):>8} ms/iter")
            if not _missing(run.get("sim_speedup")):
                line += f"  [simulated speed-up {_number(run['sim_speedup'], '.2f')}x]"
        elif not _missing(run["reason"]):
            line += f" {run['reason']}"
        if not _missing(run.get("interference")):
            line += f"  [interference? {run['interference']}]"
        lines.append(line)
    counts = runs["status"].value_counts().to_dict()
    lines.append("  " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return lines


class SweepSummary(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Before each measured point of a multirun, time its backprop reference (analysis/reference.py)."""
        if config.hydra.mode != RunMode.MULTIRUN or config.get("simulate") is not False:
            return
        if config.algorithm.get("name") == "backprop":
            return  # a reference itself (on more workers it is refused)
        try:
            spec = settings_from(ReportSpec, OmegaConf.to_container(config.report, resolve=True) or {}, "report")
        except ConfigError:
            return  # the run itself will refuse it, in one line
        if not (spec.add_reference and spec.retime_steps):
            return
        from analysis.reference import time_before_point  # pandas: only in sweeps that time references

        time_before_point(Path(config.hydra.sweep.dir).resolve(), Path(config.hydra.runtime.output_dir),
                          int(config.hydra.job.num), list(config.hydra.overrides.task), spec.retime_steps)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Imported when a sweep ends: Hydra builds this callback for every run, which need not load pandas.
        from analysis.load import load_runs
        from analysis.reference import ensure_references, time_after_last_point

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        # Checked when the sweep started (run.py), so this cannot fail here.
        spec = settings_from(ReportSpec, OmegaConf.to_container(config.report, resolve=True) or {}, "report")
        if spec.add_reference:
            for line in time_after_last_point(sweep_dir):
                print(line, flush=True)
            for line in ensure_references(sweep_dir, list(config.hydra.overrides.task)):
                print(line, flush=True)
        runs = load_runs(sweep_dir)
        print(f"\nsweep finished: {len(runs)} runs in {sweep_dir}")
        if runs.empty:
            raise SystemExit(2)
        print("\n".join(run_lines(runs)))
        print(f"results: {sweep_dir}  (load with analysis.load.load_runs)")
        _write_report(config, sweep_dir, spec)
        counts = runs["status"].value_counts().to_dict()
        if counts.get("failed"):
            raise SystemExit(1)
        if counts.get("skipped") == len(runs):
            raise SystemExit(2)


def _write_report(config: DictConfig, sweep_dir: Path, spec: ReportSpec) -> None:
    from analysis.load import ResultsError
    from analysis.report import build_report, log_to_wandb

    try:
        report = build_report(sweep_dir, target=spec.target, margin=spec.target_margin)
    except ResultsError as err:
        print(f"report: not written: {err}")
        return
    for warning in report.warnings:
        print(f"note: {warning}")
    for statement in report.summary.statements:
        print(("warning: " if statement.startswith("**Implausible") else "summary: ") + statement.replace("**", ""))
    print(f"report: {report.page}")
    if config.logger.name == "wandb":
        log_to_wandb(report, project=config.logger.project, mode=config.logger.mode, name=f"report-{sweep_dir.name}")
