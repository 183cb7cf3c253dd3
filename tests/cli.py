"""Run `run.py` as a user would, in a subprocess, and read what it left on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# Small and fast: a 2-layer GPT on the shipped tiny-shakespeare, 4 steps (experiments/experiment/smoke.yaml).
TINY = ["experiment=smoke"]


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300,
            launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    command = (launcher or [sys.executable]) + [str(REPO / "run.py"), *args]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_to_completion(tmp_path: Path, name: str, args: list[str], env: dict | None = None) -> Path:
    """Run run.py with `args` into `tmp_path/name`; the run must succeed. Returns its directory."""
    run_dir = tmp_path / name
    result = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert read_summary(run_dir)["status"] == "ok"
    return run_dir


def merged_weights(run_dir: Path, workers: int) -> dict:
    """The whole model's state from the workers' weight files (save_weights=true); a tensor held
    by two workers (a tied embedding) must agree exactly."""
    merged = {}
    for rank in range(workers):
        for name, value in torch.load(run_dir / "weights" / f"rank{rank}.pt", weights_only=True).items():
            if name in merged:
                assert torch.equal(merged[name], value), f"copies of {name} differ"
            merged[name] = value
    return merged


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """run.py in the background, in its own session (signals go to it alone)."""
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `path` exists; the process must still be running meanwhile."""
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)
