"""Checkpoints: every worker's training state at one step, saved together and loaded safely.

    <run dir>/checkpoints/step<s>/rank<r>.pt   one worker's state at the end of step s
    <run dir>/checkpoints/step<s>/complete     written by rank 0 once every worker has saved

A step counts only once `complete` exists; then every other step's directory is removed, so a
run keeps one checkpoint. Files are written under a temporary name and renamed into place, and
read with `torch.load(weights_only=True)`, so a checkpoint holds tensors and plain data only and
loading one runs no pickled code.

What a worker's state holds is the algorithm's business (`Algorithm.state_dict`): weights,
buffers, optimizer states and whatever it keeps between steps. The trainer adds the RNG states,
the step, and on rank 0 the metrics recorded so far. The data position is the step itself:
batch t is a pure function of the seed and t.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import torch

from mpbench.errors import ConfigError
from mpbench.records import atomic_write_text

class CheckpointError(ConfigError):
    """A checkpoint that cannot be used; said in one line naming the file."""


class CheckpointWriteError(RuntimeError):
    """A worker's state could not be saved (disk full, quota, I/O error); the run fails."""


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f"step{step}"


def latest_complete_step(run_dir: Path) -> int | None:
    """The last step whose checkpoint every worker finished writing; None if there is none."""
    steps = [int(d.name[4:]) for d in checkpoints_dir(run_dir).glob("step*")
             if d.name[4:].isdigit() and (d / "complete").exists()]
    return max(steps, default=None)


def save_worker_state(run_dir: Path, step: int, rank: int, state: dict) -> None:
    path = step_dir(run_dir, step) / f"rank{rank}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    except Exception as err:  # a full disk, a quota: no partial file may stay behind
        partial.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # when no other worker saved into it
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointWriteError(f"cannot write checkpoint {path} ({first}; {free / 2**20:.0f} MiB free there); "
                                   f"the previous checkpoint is kept") from None


def mark_complete(run_dir: Path, step: int) -> None:
    """Rank 0, after every worker has saved: step `step` becomes the run's checkpoint."""
    atomic_write_text(step_dir(run_dir, step) / "complete", f"{step}\n")
    for other in checkpoints_dir(run_dir).glob("step*"):
        if other.name != f"step{step}":
            shutil.rmtree(other, ignore_errors=True)


def load_worker_state(run_dir: Path, step: int, rank: int) -> dict:
    path = step_dir(run_dir, step) / f"rank{rank}.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({first[:200]}); delete "
                              f"{path.parent} to start over, or run without resume=true") from None


def verify_checkpoint(run_dir: Path, workers: int) -> int | None:
    """The step to resume from, after checking that every worker's file loads; None: start anew."""
    step = latest_complete_step(run_dir)
    for partial in checkpoints_dir(run_dir).glob("step*"):  # steps never marked complete: garbage
        if partial.name != f"step{step}":
            shutil.rmtree(partial, ignore_errors=True)
    if step is not None:
        for rank in range(workers):
            load_worker_state(run_dir, step, rank)
    return step


def discard_checkpoints(run_dir: Path) -> None:
    shutil.rmtree(checkpoints_dir(run_dir), ignore_errors=True)
