"""What a researcher sees when a multirun ends: one line per run, the report, and where they are.

A Hydra callback, configured in experiments/config.yaml. Runs that failed or diverged are listed,
never dropped. The report (`analysis.report`, the same code as `python -m analysis.report <sweep
dir>`) is written into <sweep dir>/report, and with logger=wandb also logged to wandb. The sweep
exits with status 1 if any run failed, 2 if no point of the grid was valid, so scripts and CI
notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mpbench.config import ReportSpec, settings_from


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Imported when a sweep ends: Hydra builds this callback for every run, which need not load pandas.
        from analysis.load import load_runs

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        runs = load_runs(sweep_dir)
        print(f"\nsweep finished: {len(runs)} runs in {sweep_dir}")
        if runs.empty:
            raise SystemExit(2)
        for _, run in runs.iterrows():
            line = f"  {run['run']:<32} {run['status']:<9}"
            if run["status"] == "ok":
                line += f" eval_loss={run['eval_loss']:.4f}  {run['time_per_iter_median_s'] * 1e3:8.1f} ms/iter"
            else:
                line += f" {run['reason']}"
            print(line)
        counts = runs["status"].value_counts().to_dict()
        print("  " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        print(f"results: {sweep_dir}  (load with analysis.load.load_runs)")
        _write_report(config, sweep_dir)
        if counts.get("failed"):
            raise SystemExit(1)
        if counts.get("skipped") == len(runs):
            raise SystemExit(2)


def _write_report(config: DictConfig, sweep_dir: Path) -> None:
    from analysis.load import ResultsError
    from analysis.report import build_report, log_to_wandb

    # Checked when the sweep started (run.py), so this cannot fail here.
    spec = settings_from(ReportSpec, OmegaConf.to_container(config.report, resolve=True) or {}, "report")
    try:
        report = build_report(sweep_dir, target=spec.target, margin=spec.target_margin)
    except ResultsError as err:
        print(f"report: not written: {err}")
        return
    for warning in report.warnings:
        print(f"note: {warning}")
    print(f"report: {report.page}")
    if config.logger.name == "wandb":
        log_to_wandb(report, project=config.logger.project, mode=config.logger.mode, name=f"report-{sweep_dir.name}")
