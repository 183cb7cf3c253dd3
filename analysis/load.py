"""Results on disk -> tidy pandas DataFrames.

- `load_runs(path)`: one row per run. `path` is a run directory, a sweep directory or the whole
  results root: every directory below it that holds a summary.json is one run. A directory with
  config.yaml but no summary.json is a run that never finished (killed, or still running) and
  appears with status `incomplete`, so nothing silently disappears from a table.
- `load_curves(runs)`: one row per recorded step of those runs (metrics.jsonl).
- `load_workers(runs)`: one row per worker of those runs: peak memory, traffic, time per
  iteration and its breakdown where the algorithm reports one.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import pandas as pd

COLUMNS = ["run", "status", "reason", "algorithm", "settings", "model", "dataset", "gpus", "threads_per_worker",
           "device_type", "oversubscribed", "steps", "steps_completed", "batch_size", "seed", "dtype",
           "train_loss", "eval_loss", "time_per_iter_median_s", "samples_per_s", "tokens_per_s",
           "peak_memory_bytes_max", "bytes_sent_total", "wall_time_s", "workload", "git_commit", "path"]

# What makes two runs' times comparable: the same model, data, batch, number format and worker
# size. The reference for a run's speed-up is `backprop` on one worker of the same workload.
WORKLOAD_KEYS = ("model", "dataset", "batch_size", "dtype", "threads_per_worker", "device")


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
    config = _config(run_dir)
    if config is not None:
        algorithm = {k: v for k, v in (config.get("algorithm") or {}).items() if k != "name"}
        row["settings"] = ", ".join(f"{k}={v}" for k, v in algorithm.items()) or None
        row["workload"] = json.dumps({k: config.get(k) for k in WORKLOAD_KEYS}, sort_keys=True)
    return row


def _config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError as err:
        raise ResultsError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None


def _in_job_order(run_dir: Path) -> tuple:
    """Sweep runs are named <job number>_...: 2_ddg_g2 before 10_local_critic_g2."""
    number, _, rest = run_dir.name.partition("_")
    return (str(run_dir.parent), int(number) if number.isdigit() else -1, rest if number.isdigit() else run_dir.name)


def load_runs(path: str | Path) -> pd.DataFrame:
    root = Path(path)
    if not root.is_dir():
        raise ResultsError(f"results directory {root} does not exist")
    rows = []
    run_dirs = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob("config.yaml")
                                                                if p.parent.name != ".hydra"}
    for run_dir in sorted(run_dirs, key=_in_job_order):
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


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every recorded step of `runs`: run, step, train_loss, lr, step_time_s, eval_* on
    evaluation steps, and train_time_s, the training time so far (the sum of step times;
    evaluation excluded)."""
    frames = []
    for _, run in runs.iterrows():
        path = Path(run["path"]) / "metrics.jsonl"
        if not path.exists():
            continue
        try:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ResultsError(f"{path} is not valid JSON lines ({err.msg})") from None
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["train_time_s"] = frame["step_time_s"].cumsum()
        frame.insert(0, "run", run["run"])
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "step", "train_loss", "train_time_s"])
    return pd.concat(frames, ignore_index=True)


def load_workers(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per worker of each run that left a summary: rank, peak_memory_bytes and
    baseline_memory_bytes (the process before data and model were built), bytes_sent, and per
    iteration (steady medians, mpbench/parallel/clock.py): iteration_s (inside train_step),
    wait_s (blocked on communication) and compute_s (where the algorithm marks computation)."""
    rows = []
    for _, run in runs.iterrows():
        path = Path(run["path"]) / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        memory = summary.get("peak_memory_bytes_per_worker") or []
        baseline = summary.get("baseline_memory_bytes_per_worker") or []
        sent = summary.get("bytes_sent_per_worker") or []
        iteration = summary.get("iteration_s_per_worker") or []
        compute = summary.get("compute_s_per_worker") or []
        wait = summary.get("wait_s_per_worker") or []
        facts = summary.get("algorithm_facts_per_worker") or []
        for rank in range(len(memory)):
            f = (facts[rank] if rank < len(facts) else None) or {}  # where records before the clock kept them

            def at(values: list, old_key: str):
                return values[rank] if rank < len(values) else f.get(old_key)
            rows.append({"run": run["run"], "rank": rank, "peak_memory_bytes": memory[rank],
                         "baseline_memory_bytes": baseline[rank] if rank < len(baseline) else None,
                         "bytes_sent": sent[rank] if rank < len(sent) else None,
                         "iteration_s": iteration[rank] if rank < len(iteration) else None,
                         "compute_s": at(compute, "compute_s_per_iter"), "wait_s": at(wait, "wait_s_per_iter")})
    return pd.DataFrame(rows, columns=["run", "rank", "peak_memory_bytes", "baseline_memory_bytes", "bytes_sent",
                                       "iteration_s", "compute_s", "wait_s"])
