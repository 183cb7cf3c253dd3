"""Run `run.py` as a user would, in a subprocess, and read what it left on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Small and fast: a 2-layer GPT on the shipped tiny-shakespeare.
TINY = ["model=gpt_tiny", "dataset.seq_len=32", "batch_size=8", "steps=4", "eval_every=2",
        "eval_batches=2", "timeout_s=60"]


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
