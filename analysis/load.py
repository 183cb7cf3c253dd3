"""Results on disk -> one tidy pandas DataFrame, one row per run.

`load_runs(path)` accepts a run directory, a sweep directory or the whole results root: every
directory below it that holds a summary.json is one run. A directory with config.yaml but no
summary.json is a run that never finished (killed, or still running) and appears with status
`incomplete`, so nothing silently disappears from a table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["run", "status", "reason", "algorithm", "model", "dataset", "gpus", "threads_per_worker",
           "device_type", "oversubscribed", "steps", "steps_completed", "batch_size", "seed", "dtype",
           "train_loss", "eval_loss", "time_per_iter_median_s", "samples_per_s", "tokens_per_s",
           "peak_memory_bytes_max", "bytes_sent_total", "wall_time_s", "git_commit", "path"]


class ResultsError(ValueError):
    """A results directory that cannot be read: one line naming the path."""


def _row(run_dir: Path, summary: dict) -> dict:
    row = {key: summary.get(key) for key in COLUMNS}
    row.update(run=run_dir.name, path=str(run_dir))
    for key, value in (summary.get("final") or {}).items():
        row[key] = value
    memory = [m for m in summary.get("peak_memory_bytes_per_worker") or [] if m is not None]
    sent = [b for b in summary.get("bytes_sent_per_worker") or [] if b is not None]
    row["peak_memory_bytes_max"] = max(memory) if memory else None
    row["bytes_sent_total"] = sum(sent) if sent else None
    row["git_commit"] = ((summary.get("environment") or {}).get("git") or {}).get("commit")
    return row


def load_runs(path: str | Path) -> pd.DataFrame:
    root = Path(path)
    if not root.is_dir():
        raise ResultsError(f"results directory {root} does not exist")
    rows = []
    run_dirs = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob("config.yaml")
                                                                if p.parent.name != ".hydra"}
    for run_dir in sorted(run_dirs):
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            rows.append(_row(run_dir, {"status": "incomplete", "reason": "no summary.json"}))
            continue
        try:
            summary = json.loads(summary_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"{summary_path} is not valid JSON ({err.msg if hasattr(err, 'msg') else err})") from None
        rows.append(_row(run_dir, summary))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    return frame
