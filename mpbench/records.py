"""The files a run leaves behind, written atomically.

    <run dir>/config.yaml     the fully resolved config
    <run dir>/metrics.jsonl   one JSON object per step: step, train_loss, lr, step_time_s, and
                              eval_* on evaluation steps
    <run dir>/summary.json    status (ok | failed | diverged | interrupted | skipped), final
                              metrics, timings, memory and traffic per worker, environment, and
                              the digests of the files it vouches for (`records_problem`)
    <run dir>/workers/rank<r>.json   each worker's own report, merged into summary.json

Every file is written to a temporary name in the same directory and renamed into place, so a
crash leaves either the old or the new file, never half of one. A run without summary.json did
not finish (it was killed, or is still running).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mpbench.host_memory import host_allocator_policy


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a quota: say which file, and leave no temporary behind
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


# The files a summary vouches for: their SHA-256 is stored in summary.json when the run ends, so
# that resume and the report can tell a finished run from one whose records changed since.
DIGESTED_FILES = ("config.yaml", "metrics.jsonl")


def file_digests(run_dir: Path) -> dict[str, str]:
    """SHA-256 of each of DIGESTED_FILES that exists in `run_dir`."""
    return {name: hashlib.sha256((Path(run_dir) / name).read_bytes()).hexdigest()
            for name in DIGESTED_FILES if (Path(run_dir) / name).exists()}


def records_problem(run_dir: Path, summary: Any) -> str | None:
    """Why the records of `run_dir` cannot be trusted as `summary` describes them; None if they can.

    `summary` is the parsed summary.json. A summary that is not a JSON object with a status, or
    whose `digests` do not match the files beside it (truncated, edited, missing), is damaged.
    Summaries written before digests existed are trusted as they are."""
    if not isinstance(summary, dict) or not isinstance(summary.get("status"), str):
        return "summary.json is not a run summary (a JSON object with a status)"
    digests = summary.get("digests")
    if digests is None:
        return None
    if not isinstance(digests, dict):
        return "summary.json has malformed digests"
    for name, expected in digests.items():
        path = Path(run_dir) / str(name)
        if not path.exists():
            return f"{name} is missing (summary.json vouches for it)"
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            return f"{name} changed since the run ended (it does not match the digest in summary.json)"
    return None


def worker_report_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "workers" / f"rank{rank}.json"


class MetricsFile:
    """metrics.jsonl, kept in memory and rewritten atomically at each flush (evals, the end)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []

    def append(self, row: dict) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))


def git_commit(repo: Path, besides: tuple[str, ...] = ()) -> dict:
    """The commit the code ran at, and whether the tree had uncommitted changes (`besides`: paths,
    relative to `repo`, whose changes do not count, e.g. the file the caller is writing)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    excluded = [f":(exclude){path}" for path in besides]
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_record(repo: Path) -> dict:
    import hydra
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "hydra": hydra.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "host_allocator": host_allocator_policy(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "git": git_commit(repo),
    }


def result_line(run_dir: Path, summary: dict) -> str:
    """One line for the console: status, final metric, speed, and where the records are."""
    status = summary["status"]
    if status != "ok":
        return f"{status}: {summary.get('reason')} -> {run_dir}"
    simulation = summary.get("simulation") or {}
    if summary.get("simulated"):
        return (f"ok (simulated, nothing trained): {simulation['step_s'] * 1e3:.1f} ms/iter, speed-up "
                f"{simulation['speedup']:.2f}x over backprop on 1 worker -> {run_dir}")
    final = summary.get("final", {})
    metric = next((f"{k}={final[k]:.4f}" for k in ("eval_bits_per_char", "eval_perplexity", "eval_accuracy")
                   if k in final), "")
    return (f"ok: eval_loss={final.get('eval_loss', float('nan')):.4f} {metric} "
            f"{summary.get('time_per_iter_median_s', float('nan')) * 1e3:.1f} ms/iter"
            + (f" (simulated: {simulation['step_s'] * 1e3:.1f} ms/iter)" if "step_s" in simulation else "")
            + f" -> {run_dir}")
