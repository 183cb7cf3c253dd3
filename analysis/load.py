"""Results on disk -> tidy pandas DataFrames.

- `load_runs(path)`: one row per run. `path` is a run directory, a sweep directory or the whole
  results root. A run directory is one that holds what a run leaves (summary.json, config.yaml,
  metrics.jsonl, workers/ or Hydra's .hydra/), or an empty directory beside such run directories
  (a job that left nothing). Nothing silently disappears from a table: besides the statuses a
  run records itself (ok, failed, diverged, interrupted, skipped), a run can be
  - `incomplete`: no summary.json (killed, or still running);
  - `unreadable`: its summary.json or config.yaml cannot be read, or has not the shape a run
    writes (`reason` names the file and what is wrong);
  - `damaged`: its summary is fine, but the files it vouches for no longer match its digests
    (`mpbench.records.records_problem`).
- `load_curves(runs)`: one row per recorded step of those runs (metrics.jsonl).

A `simulate=true` run (mpbench/simulate/records.py) is an ordinary ok run that trained nothing:
no metrics.jsonl, no measured numbers, `simulated` true. Simulated numbers, its own or those a
measured run carries beside its measurements (its `simulation` section), go only into the `sim_`
columns (SIMULATED_COLUMNS), and measured ones never do, so no table or figure takes one for the other.
- `load_workers(runs)`: one row per worker of those runs: peak memory, traffic, time per
  iteration and its breakdown where the algorithm reports one.

Every record is read through one checked path (`read_summary`, `read_config`, `read_curves`), which
returns what it read or why it cannot be used, and never raises for a file's contents.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mpbench.records import records_problem

COLUMNS = ["run", "status", "reason", "algorithm", "settings", "model", "dataset", "gpus", "threads_per_worker",
           "device_type", "oversubscribed", "steps", "steps_completed", "batch_size", "seed", "dtype",
           "train_loss", "eval_loss", "time_per_iter_median_s", "time_per_iter_iqr_s", "interference",
           "samples_per_s", "tokens_per_s", "lr",
           "peak_memory_bytes_max", "bytes_sent_total", "wall_time_s", "workload", "git_commit", "reference_role",
           "simulated", "sim_step_s", "sim_speedup", "sim_samples_per_s", "sim_tokens_per_s", "sim_idle_fraction",
           "sim_peak_memory_bytes", "sim_unavailable", "memory_measure", "structure", "sweep", "computation",
           "timing_key", "timing_order", "timed_point", "path"]
# Where a sweep keeps the reference runs it added, and its references' timing runs (analysis/reference.py).
REFERENCES = "references"
# references/timing_<n>_before_<point>, references/timing_<n>_end: the reference timed before the
# sweep's point <n>, and after its last point.
TIMING_PREFIX = "timing_"
TIMING_NAME = re.compile(rf"{TIMING_PREFIX}(\d+)_(?:before_(.+)|end)$")
# A directory Hydra made for a multirun holds this file: its runs were timed within one sweep.
SWEEP_MARK = "multirun.yaml"

# What makes two runs' times comparable: the same model, data, batch, number format and worker
# size. The reference for a run's speed-up is `backprop` on one worker of the same workload.
WORKLOAD_KEYS = ("model", "dataset", "batch_size", "dtype", "threads_per_worker", "device")
# What a reference must share with a run besides its workload: every key that changes the
# computation or its target (the optimizer with its schedule, the steps the schedule spans, the
# seed, the evaluation set, the number format of the blocks), so that a backprop run at another
# learning rate is never a run's reference.
COMPUTATION_KEYS = (*WORKLOAD_KEYS, "optimizer", "steps", "seed", "eval_batches", "autocast", "compile")

# Statuses the reader gives a run whose records are missing or cannot be used; the others are the
# run's own (summary.json).
INCOMPLETE, UNREADABLE, DAMAGED = "incomplete", "unreadable", "damaged"
RUN_MARKS = ("summary.json", "config.yaml", "metrics.jsonl", "workers", ".hydra")

# The shape of summary.json (null is always accepted: a skipped or failed run leaves most out).
TEXT, INTEGER, NUMBER, FLAG, OBJECT = "a string", "an integer", "a number", "true or false", "an object"
SUMMARY_FIELDS = {"status": TEXT, "reason": TEXT, "algorithm": TEXT, "model": TEXT, "dataset": TEXT,
                  "device_type": TEXT, "dtype": TEXT, "gpus": INTEGER, "threads_per_worker": INTEGER,
                  "steps": INTEGER, "steps_completed": INTEGER, "batch_size": INTEGER, "seed": INTEGER,
                  "oversubscribed": FLAG, "time_per_iter_median_s": NUMBER, "samples_per_s": NUMBER,
                  "tokens_per_s": NUMBER, "wall_time_s": NUMBER, "final": OBJECT, "environment": OBJECT,
                  "time_per_iter_iqr_s": NUMBER, "interference": TEXT, "simulated": FLAG, "simulation": OBJECT,
                  "memory_measure": TEXT}
# The shape of a summary's `simulation` section (mpbench.simulate.simulation_record); per worker: lists of numbers.
SIMULATION_FIELDS = {"step_s": NUMBER, "speedup": NUMBER, "samples_per_s": NUMBER, "tokens_per_s": NUMBER,
                     "reference_step_s": NUMBER, "unavailable": TEXT}
SIMULATION_PER_WORKER = ("busy_s_per_worker", "comm_s_per_worker", "idle_s_per_worker", "idle_fraction_per_worker",
                         "peak_memory_bytes_per_worker", "overhead_s_per_worker")
PER_WORKER = {"peak_memory_bytes_per_worker": NUMBER, "baseline_memory_bytes_per_worker": NUMBER,
              "iteration_s_per_worker": NUMBER, "compute_s_per_worker": NUMBER, "wait_s_per_worker": NUMBER,
              "bytes_sent_per_worker": NUMBER, "algorithm_facts_per_worker": OBJECT}
OLD_FACTS = ("compute_s_per_iter", "wait_s_per_iter")  # per-iteration times, where records before the clock kept them
# What a run's config.yaml contributes to its row (an incomplete run has nothing else).
CONFIG_FIELDS = {"algorithm": ("algorithm", "name"), "model": ("model", "name"), "dataset": ("dataset", "name"),
                 "gpus": ("gpus",), "threads_per_worker": ("threads_per_worker",), "steps": ("steps",),
                 "batch_size": ("batch_size",), "seed": ("seed",), "dtype": ("dtype",)}
NUMERIC_COLUMNS = ["gpus", "threads_per_worker", "steps", "steps_completed", "batch_size", "seed", "lr",
                   "time_per_iter_median_s", "time_per_iter_iqr_s", "samples_per_s", "tokens_per_s",
                   "peak_memory_bytes_max",
                   "bytes_sent_total", "wall_time_s"]
# Simulated numbers (from a summary's `simulation` section): never measured ones.
SIMULATED_COLUMNS = ["sim_step_s", "sim_speedup", "sim_samples_per_s", "sim_tokens_per_s", "sim_idle_fraction",
                     "sim_peak_memory_bytes"]


class ResultsError(ValueError):
    """A results directory that cannot be read: one line naming the path."""


def _is(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == TEXT:
        return isinstance(value, str)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == FLAG:
        return isinstance(value, bool)
    return isinstance(value, dict)


def _shape(value: Any) -> str:
    """What a JSON/YAML value is, for a message."""
    if isinstance(value, bool):
        return "true/false"
    for kind, name in ((str, "a string"), (int, "an integer"), (float, "a number"), (list, "a list"),
                       (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _wrong(where: str, value: Any, kind: str) -> str:
    return f"{where} is {_shape(value)}, not {kind}"


def summary_problem(summary: Any) -> str | None:
    """What keeps a parsed summary.json from being read as a run summary; None if nothing does.

    A summary is a JSON object with a string `status`; the fields the tables use have their types
    (SUMMARY_FIELDS; null is accepted); `final` maps train_*/eval_* names to numbers; each
    per-worker list holds one entry per worker (`gpus`), numbers (or objects for the algorithm's
    facts) or null."""
    if not isinstance(summary, dict):
        return f"summary.json is {_shape(summary)}, not a JSON object"
    if "status" not in summary:
        return "summary.json has no status"
    if not isinstance(summary["status"], str) or not summary["status"]:
        return _wrong("summary.json: status", summary["status"], "a non-empty string")
    for key, kind in SUMMARY_FIELDS.items():
        if not _is(kind, summary.get(key)):
            return _wrong(f"summary.json: {key}", summary[key], kind)
    for key, value in (summary.get("final") or {}).items():
        if not key.startswith(("train_", "eval_")):
            return f"summary.json: final holds {key!r} (only train_* and eval_* metrics)"
        if not _is(NUMBER, value):
            return _wrong(f"summary.json: final.{key}", value, NUMBER)
    git = (summary.get("environment") or {}).get("git")
    if not _is(OBJECT, git) or not _is(TEXT, (git or {}).get("commit")):
        return "summary.json: environment.git is not an object with a commit string"
    workers, lengths = summary.get("gpus"), set()
    for key, kind in PER_WORKER.items():
        values = summary.get(key)
        if values is None:
            continue
        problem = _per_worker_problem(f"summary.json: {key}", values, workers, kind)
        if problem:
            return problem
        lengths.add(len(values))
        for rank, value in enumerate(values):
            for old in OLD_FACTS if kind == OBJECT else ():
                if not _is(NUMBER, (value or {}).get(old)):
                    return _wrong(f"summary.json: {key}[{rank}].{old}", value[old], NUMBER)
    if len(lengths) > 1:
        return "summary.json: the per-worker lists differ in length"
    return _simulation_problem(summary.get("simulation") or {}, workers)


def _simulation_problem(simulation: dict, workers: Any) -> str | None:
    """What is wrong with the shape of a summary's `simulation` section; None if nothing."""
    for key, kind in SIMULATION_FIELDS.items():
        if not _is(kind, simulation.get(key)):
            return _wrong(f"summary.json: simulation.{key}", simulation[key], kind)
    for key in SIMULATION_PER_WORKER:
        values = simulation.get(key)
        problem = None if values is None else _per_worker_problem(f"summary.json: simulation.{key}", values,
                                                                  workers, NUMBER)
        if problem:
            return problem
    return None


def _per_worker_problem(where: str, values: Any, workers: Any, kind) -> str | None:
    """What is wrong with a per-worker list: not a list, not one entry per worker, a wrong entry."""
    if not isinstance(values, list):
        return _wrong(where, values, "a list")
    if workers is not None and len(values) != workers:
        return f"{where} has {len(values)} entries for {workers} workers"
    for rank, value in enumerate(values):
        if not _is(kind, value):
            return _wrong(f"{where}[{rank}]", value, kind)
    return None


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, why the file cannot be read as text)."""
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"{path.name} is not UTF-8 text (byte {err.start})"
    except OSError as err:
        return None, f"{path.name} cannot be read ({err.strerror or err})"


def read_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """The run's summary.json: (summary, None) if it is a run summary (`summary_problem`);
    (None, why not) if it cannot be read or has the wrong shape; (None, None) if there is none."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None, None
    text, problem = _read_text(path)
    if problem:
        return None, problem
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"summary.json is not valid JSON ({err.msg}: line {err.lineno} column {err.colno})"
    problem = summary_problem(summary)
    return (None, problem) if problem else (summary, None)


def read_config(run_dir: Path) -> tuple[dict | None, str | None]:
    """The run's config.yaml: (config, None), (None, why it cannot be used) or (None, None) if
    there is none. A config is a mapping whose algorithm, model and dataset are mappings."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return None, None
    text, problem = _read_text(path)
    if problem:
        return None, problem
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return None, f"config.yaml is not valid YAML ({str(err).splitlines()[0]})"
    if not isinstance(config, dict):
        return None, f"config.yaml is {_shape(config)}, not a mapping"
    for key in ("algorithm", "model", "dataset"):
        if not _is(OBJECT, config.get(key)):
            return None, _wrong(f"config.yaml: {key}", config[key], "a mapping")
    for column, keys in CONFIG_FIELDS.items():
        value = _get(config, keys)
        if not _is(SUMMARY_FIELDS[column], value):
            return None, _wrong(f"config.yaml: {'.'.join(keys)}", value, SUMMARY_FIELDS[column])
    return config, None


def _get(config: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config


def read_curves(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The run's metrics.jsonl as a frame (one row per step, plus train_time_s, the training time
    so far): (frame, None), (None, why it cannot be read), or (None, None) if it is absent or
    empty. Each line is a JSON object with a numeric step and step_time_s, all values numbers or null."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None, None
    text, problem = _read_text(path)
    if problem:
        return None, problem
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return None, f"metrics.jsonl line {number} is not valid JSON ({err.msg})"
        if not isinstance(row, dict):
            return None, f"metrics.jsonl line {number} is {_shape(row)}, not a JSON object"
        for key in ("step", "step_time_s"):
            if row.get(key) is None:
                return None, f"metrics.jsonl line {number} has no {key}"
        for key, value in row.items():
            if not _is(NUMBER, value):
                return None, _wrong(f"metrics.jsonl line {number}: {key}", value, NUMBER)
        rows.append(row)
    if not rows:
        return None, None
    frame = pd.DataFrame(rows)
    frame["train_time_s"] = frame["step_time_s"].cumsum()
    return frame, None


def _reference_role(run_dir: Path) -> str | None:
    """For a run a sweep supplied itself under references/: `added` (a reference it ran),
    `timing` (its reference timed beside a point) or `reused` (copied from another sweep by
    earlier versions, with a reference.json); None for the sweep's own runs."""
    if run_dir.parent.name != REFERENCES:
        return None
    if TIMING_NAME.match(run_dir.name):
        return "timing"
    return "reused" if (run_dir / "reference.json").exists() else "added"


def _timing_place(run_dir: Path) -> tuple[int | None, str | None]:
    """(its place in the sweep's order, the point it was timed before) of a timing run."""
    match = TIMING_NAME.match(run_dir.name) if run_dir.parent.name == REFERENCES else None
    return (int(match.group(1)), match.group(2)) if match else (None, None)


def _sweep_of(run_dir: Path) -> str | None:
    """The multirun directory a run was timed in (its parent, or the sweep of references/), or
    None for a single run: runs of one sweep were timed minutes apart, by one command."""
    sweep = run_dir.parent.parent if run_dir.parent.name == REFERENCES else run_dir.parent
    return str(sweep) if (sweep / SWEEP_MARK).exists() else None


def _identity(config: dict, keys: tuple[str, ...]) -> str:
    return json.dumps({k: config.get(k) for k in keys}, sort_keys=True, default=str)


def _timing_identity(config: dict) -> str:
    """What a step's time depends on: the workload, the number format of the blocks, and what
    the optimizer does per step; not the seed, the learning rate or its schedule, which change
    values, not costs (runs of a sweep over seeds time alike)."""
    optimizer = config.get("optimizer") if isinstance(config.get("optimizer"), dict) else {}
    work = {"name": optimizer.get("name"), "weight_decay": bool(optimizer.get("weight_decay")),
            "momentum": bool(optimizer.get("momentum")), "nesterov": bool(optimizer.get("nesterov")),
            "clipped": optimizer.get("clip_norm") is not None}
    return json.dumps({**{k: config.get(k) for k in (*WORKLOAD_KEYS, "autocast", "compile")}, "optimizer": work},
                      sort_keys=True, default=str)


# Facts (algorithm_facts_per_worker, rank 0) that say how a run was split, in the order shown.
STRUCTURE_FACTS = (("schedule", "{}"), ("modules", "K={}"), ("groups", "groups={}"), ("partitions", "partitions={}"),
                   ("replicas", "replicas={}"), ("stages", "stages={}"), ("microbatches", "m={}"),
                   ("inner_steps", "H={}"))
SPLIT_FACTS = ("blocks_per_module", "blocks_per_group", "blocks_per_stage")


def structure(facts: dict | None) -> str | None:
    """The resolved structure of a run from its rank 0 facts, e.g. `K=2, split 3+3` or
    `1f1b, stages=2, m=8, split 3+3` (None where the algorithm records none). One replica, and
    partitions as many as stages, go without saying."""
    if not isinstance(facts, dict):
        return None
    shown = {key: value for key, value in facts.items() if value is not None and not isinstance(value, (dict, list))}
    if shown.get("replicas") == 1:
        del shown["replicas"]
    if shown.get("partitions") == shown.get("stages"):
        shown.pop("partitions", None)
    parts = [form.format(shown[key]) for key, form in STRUCTURE_FACTS if key in shown]
    split = next((facts[key] for key in SPLIT_FACTS if isinstance(facts.get(key), list)), None)
    if split and len(split) > 1:
        parts.append("split " + "+".join(str(n) for n in split))
    return ", ".join(parts) or None


def read_run(run_dir: Path) -> dict:
    """The row of one run directory (COLUMNS, plus the final metrics). Never raises for what the
    files hold: a run whose records cannot be used gets status incomplete, unreadable or damaged
    and a reason naming the file."""
    run_dir = Path(run_dir)
    summary, summary_trouble = read_summary(run_dir)
    config, config_trouble = read_config(run_dir)
    row = dict.fromkeys(COLUMNS)
    row.update(run=run_dir.name, path=str(run_dir), reference_role=_reference_role(run_dir), sweep=_sweep_of(run_dir))
    row["timing_order"], row["timed_point"] = _timing_place(run_dir)
    if summary is not None:
        row.update({key: summary.get(key) for key in COLUMNS if key in SUMMARY_FIELDS})
        row.update(summary.get("final") or {})
        memory = [m for m in summary.get("peak_memory_bytes_per_worker") or [] if m is not None]
        sent = [b for b in summary.get("bytes_sent_per_worker") or [] if b is not None]
        row["peak_memory_bytes_max"] = max(memory) if memory else None
        row["bytes_sent_total"] = sum(sent) if sent else None
        row["git_commit"] = ((summary.get("environment") or {}).get("git") or {}).get("commit")
        row.update(_simulated_columns(summary.get("simulation") or {}))
        row["structure"] = structure(((summary.get("algorithm_facts_per_worker") or [None])[0]))
    if config is not None:
        for column, keys in CONFIG_FIELDS.items():
            if row[column] is None:
                row[column] = _get(config, keys)
        lr = _get(config, ("optimizer", "lr"))
        row["lr"] = lr if _is(NUMBER, lr) else None  # a learning-rate sweep's axis (analysis/derive.py)
        algorithm = {k: v for k, v in (config.get("algorithm") or {}).items() if k != "name"}
        row["settings"] = ", ".join(f"{k}={v}" for k, v in algorithm.items()) or None
        row["workload"] = _identity(config, WORKLOAD_KEYS)
        row["computation"] = _identity(config, COMPUTATION_KEYS)
        row["timing_key"] = _timing_identity(config)
    # A simulate=true run says so in its summary; one it refused (skipped) or that left none, in its config.
    row["simulated"] = bool((summary or {}).get("simulated") or (config or {}).get("simulate"))
    if summary is None and summary_trouble is None:
        left = "empty directory: the run left no records" if not any(run_dir.iterdir()) else \
            "no summary.json (killed, or still running)"
        row.update(status=INCOMPLETE, reason="; ".join(filter(None, [left, config_trouble])))
    elif summary_trouble:
        row.update(status=UNREADABLE, reason=summary_trouble)
    elif damage := _records_problem(run_dir, summary):
        row.update(status=DAMAGED, reason=f"{damage}; its summary says {summary['status']}")
    elif config_trouble:
        row.update(status=UNREADABLE, reason=config_trouble)
    return row


def _simulated_columns(simulation: dict) -> dict:
    """The sim_ columns of a summary's `simulation` section (all None where it has none)."""
    idle = [f for f in simulation.get("idle_fraction_per_worker") or [] if f is not None]
    memory = [m for m in simulation.get("peak_memory_bytes_per_worker") or [] if m is not None]
    return {"sim_step_s": simulation.get("step_s"), "sim_speedup": simulation.get("speedup"),
            "sim_samples_per_s": simulation.get("samples_per_s"), "sim_tokens_per_s": simulation.get("tokens_per_s"),
            "sim_idle_fraction": sum(idle) / len(idle) if idle else None,
            "sim_peak_memory_bytes": max(memory) if memory else None,
            "sim_unavailable": simulation.get("unavailable")}


def _records_problem(run_dir: Path, summary: dict) -> str | None:
    try:
        return records_problem(run_dir, summary)
    except OSError as err:
        return f"the records summary.json vouches for cannot be read ({err})"


def _is_run(directory: Path) -> bool:
    return any((directory / mark).exists() for mark in RUN_MARKS)


def _subdirectories(directory: Path) -> list[Path]:
    """Where runs may be below `directory`: not hidden (.hydra), not wandb's own files, no links."""
    return sorted(p for p in directory.iterdir()
                  if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name != "wandb")


def run_directories(root: Path) -> list[Path]:
    """Every run directory at or below `root`; a run's own subdirectories are not searched."""
    if _is_run(root):
        return [root]
    children = _subdirectories(root)
    runs = [c for c in children if _is_run(c)]
    found = list(runs)
    for child in children:
        if child in runs:
            continue
        if runs and child.name != "report" and not any(child.iterdir()):
            found.append(child)  # an empty directory among runs: a job that left nothing
        else:
            found += run_directories(child)
    return found


def _in_job_order(run_dir: Path) -> tuple:
    """Sweep runs are named <job number>_...: 2_ddg_g2 before 10_local_critic_g2."""
    number, _, rest = run_dir.name.partition("_")
    return (str(run_dir.parent), int(number) if number.isdigit() else -1, rest if number.isdigit() else run_dir.name)


def load_runs(path: str | Path) -> pd.DataFrame:
    root = Path(path)
    if not root.is_dir():
        raise ResultsError(f"results directory {root} does not exist")
    rows = [read_run(run_dir) for run_dir in sorted(run_directories(root), key=_in_job_order)]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    # Checked numbers or null: numeric columns, also where every run left them null.
    numeric = NUMERIC_COLUMNS + SIMULATED_COLUMNS + [c for c in frame if c.startswith(("train_", "eval_"))]
    frame[numeric] = frame[numeric].apply(pd.to_numeric)  # with the final metrics
    frame["simulated"] = frame["simulated"].astype(bool)
    return frame


def _readable(run: pd.Series) -> bool:
    """Whether a run's records may be used beyond its row (curves, workers)."""
    return run["status"] not in (UNREADABLE, DAMAGED)


def load_curves(runs: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
    """Every recorded step of `runs`: run, step, train_loss, lr, step_time_s, eval_* on
    evaluation steps, and train_time_s, the training time so far (the sum of step times;
    evaluation excluded). Unreadable and damaged runs are left out; so is a metrics.jsonl that
    cannot be read, with a line saying so appended to `notes` if given."""
    frames = []
    for _, run in runs.iterrows():
        if not _readable(run):
            continue
        frame, problem = read_curves(Path(run["path"]))
        if problem and notes is not None:
            notes.append(f"curves of `{run['run']}` left out: {problem}")
        if frame is not None:
            frame.insert(0, "run", run["run"])
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "step", "train_loss", "train_time_s"])
    return pd.concat(frames, ignore_index=True)


def load_workers(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per worker of each run that left a readable summary: rank, peak_memory_bytes and
    baseline_memory_bytes (the process before data and model were built), bytes_sent, and per
    iteration (steady medians, mpbench/parallel/clock.py): iteration_s (inside train_step),
    wait_s (blocked on communication) and compute_s (where the algorithm marks computation).
    Simulated numbers per worker, from a simulate=true run or a measured run's simulated twin,
    are in their own `sim_` columns: step_s, busy_s, overhead_s, comm_s, idle_s, peak_memory_bytes."""
    rows = []
    for _, run in runs.iterrows():
        if not _readable(run):
            continue
        summary, _ = read_summary(Path(run["path"]))
        if summary is None:
            continue
        memory = summary.get("peak_memory_bytes_per_worker") or []
        simulation = summary.get("simulation") or {}
        sim = {key: simulation.get(f"{key}_per_worker") or [] for key in SIMULATED_PER_WORKER}
        workers = max([len(memory), *map(len, sim.values())])
        lists = {key: summary.get(key) or [None] * len(memory) for key in PER_WORKER}  # checked: one entry per worker
        for rank in range(workers):
            row = {"run": run["run"], "rank": rank, **{f"sim_{key}": _at(values, rank) for key, values in sim.items()},
                   "sim_step_s": simulation.get("step_s") if any(sim.values()) else None}
            if rank < len(memory):
                old = lists["algorithm_facts_per_worker"][rank] or {}  # where records before the clock kept these times
                row.update({"peak_memory_bytes": memory[rank],
                            "baseline_memory_bytes": lists["baseline_memory_bytes_per_worker"][rank],
                            "bytes_sent": lists["bytes_sent_per_worker"][rank],
                            "iteration_s": lists["iteration_s_per_worker"][rank],
                            "compute_s": lists["compute_s_per_worker"][rank] if summary.get("compute_s_per_worker")
                            else old.get("compute_s_per_iter"),
                            "wait_s": lists["wait_s_per_worker"][rank] if summary.get("wait_s_per_worker")
                            else old.get("wait_s_per_iter")})
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["run", "rank", *WORKER_NUMBERS])
    frame[WORKER_NUMBERS] = frame[WORKER_NUMBERS].apply(pd.to_numeric)
    return frame


# The simulation's per-worker lists that load_workers reads (as sim_<name>), and every number column of its frame.
SIMULATED_PER_WORKER = ("busy_s", "overhead_s", "comm_s", "idle_s", "peak_memory_bytes")
WORKER_NUMBERS = ["peak_memory_bytes", "baseline_memory_bytes", "bytes_sent", "iteration_s", "compute_s", "wait_s",
                  "sim_step_s", *(f"sim_{key}" for key in SIMULATED_PER_WORKER)]


def _at(values: list, index: int):
    return values[index] if index < len(values) else None
