"""Run several configurations through run.py, alternating, and compare their time per iteration.

Shared by the speed benchmarks. Each configuration runs `rounds` times, interleaved with the
others (A B C A B C ...) so that slow phases of a shared machine hit all of them; the figure is
the median over rounds of each run's median time per iteration (summary.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measured_step(summary: dict) -> float:
    return summary["time_per_iter_median_s"]


def time_per_iteration(configs: dict[str, list[str]], common: list[str], rounds: int,
                       timing=measured_step, before_round=None) -> dict[str, dict]:
    """{name: {"seconds": median of `timing(summary)` (the measured step), "summary": last summary}}.
    `before_round(index)`, if given, runs before each round."""
    times: dict[str, list[float]] = {name: [] for name in configs}
    summaries: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(rounds):
            if before_round is not None:
                before_round(round_index)
            for index, (name, overrides) in enumerate(configs.items()):
                run_dir = Path(tmp) / f"config{index}-round{round_index}"
                command = [sys.executable, str(REPO / "run.py"), *common, *overrides, f"hydra.run.dir={run_dir}"]
                result = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
                summary_path = run_dir / "summary.json"
                if result.returncode != 0 or not summary_path.exists():
                    raise RuntimeError(f"{name} failed: {result.stderr.strip().splitlines()[-1:]}")
                summary = json.loads(summary_path.read_text())
                if summary.get("status") != "ok":  # a diverged run's timings are not a speed
                    raise RuntimeError(f"{name}: {summary.get('status')}: {summary.get('reason')}")
                times[name].append(timing(summary))
                summaries[name] = summary
                print(f"  round {round_index + 1}/{rounds} {name:<28} {times[name][-1] * 1e3:8.1f} ms/iter",
                      file=sys.stderr, flush=True)
    return {name: {"seconds": statistics.median(values), "all": values, "summary": summaries[name]}
            for name, values in times.items()}


def compare_on_gpt_small(configs: dict[str, list[str]], description: str) -> tuple[dict[str, dict], argparse.Namespace]:
    """The speed benchmarks' common setting: parse --steps and --rounds, then time `configs` on
    gpt_small with tiny-shakespeare (seq 128, batch 32), one thread per worker."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    common = ["model=gpt_small", "dataset.seq_len=128", "batch_size=32", f"steps={args.steps}",
              f"eval_every={args.steps}", "eval_batches=1", "threads_per_worker=1"]
    return time_per_iteration(configs, common, args.rounds), args
