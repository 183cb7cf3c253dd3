"""Worker 0's metrics path: metrics.jsonl always, Weights & Biases as one optional extra sink.

Both receive the same rows. wandb runs offline unless the logger config says otherwise, and
keeps its files inside the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpbench.config import LoggerSpec
from mpbench.records import MetricsFile


class MetricsLog:
    def __init__(self, run_dir: Path, logger: LoggerSpec, run_name: str, config: dict):
        self.file = MetricsFile(Path(run_dir) / "metrics.jsonl")
        self.wandb_run = None
        if logger.name == "wandb":
            self.wandb_run = _start_wandb(Path(run_dir), logger, run_name, config)

    def log(self, row: dict) -> None:
        self.file.append(row)
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["step"])

    def flush(self) -> None:
        self.file.flush()

    def finish(self, summary: dict) -> None:
        self.file.flush()
        if self.wandb_run is not None:
            flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
            flat.update({f"final/{k}": v for k, v in summary.get("final", {}).items()})
            self.wandb_run.summary.update(flat)
            self.wandb_run.finish()


def _start_wandb(run_dir: Path, logger: LoggerSpec, run_name: str, config: dict):
    import wandb

    wandb_dir = run_dir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    # Keep every file wandb writes (runs, cache, settings) inside the run directory.
    for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data")):
        os.environ[var] = str(wandb_dir / sub)
    return wandb.init(project=logger.project, mode=logger.mode, dir=str(wandb_dir), name=run_name,
                      config=config, reinit="finish_previous")
