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


def run_config(overrides: list[str], run_dir: Path, cwd: str | Path) -> dict:
    """Run `python run.py *overrides` into `run_dir` and return its summary; RuntimeError naming
    the last line of its error output unless it ends ok (a diverged run's timings are not a speed)."""
    command = [sys.executable, str(REPO / "run.py"), *overrides, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    summary_path = run_dir / "summary.json"
    if result.returncode != 0 or not summary_path.exists():
        raise RuntimeError(f"failed: {result.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "ok":
        raise RuntimeError(f"{summary.get('status')}: {summary.get('reason')}")
    return summary


def mean_step(run_dir: Path, skip: int) -> float | None:
    """The mean step time after the first `skip` steps (metrics.jsonl): unlike the median, it
    charges the rare long steps (a DiLoCo synchronisation every H steps) their share."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [r["step_time_s"] for r in rows if r.get("step_time_s") is not None and r["step"] > skip]
    return statistics.fmean(times) if times else None


def time_per_iteration(configs: dict[str, list[str]], common: list[str], rounds: int,
                       timing=measured_step, before_round=None, mean_after: int | None = None) -> dict[str, dict]:
    """{name: {"seconds": median of `timing(summary)` (the measured step), "summary": last summary}},
    and with `mean_after`, "mean_seconds": the median over rounds of the mean step after that many
    steps. `before_round(index)`, if given, runs before each round."""
    times: dict[str, list[float]] = {name: [] for name in configs}
    means: dict[str, list[float]] = {name: [] for name in configs}
    summaries: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(rounds):
            if before_round is not None:
                before_round(round_index)
            for index, (name, overrides) in enumerate(configs.items()):
                try:
                    run_dir = Path(tmp) / f"config{index}-round{round_index}"
                    summary = run_config([*common, *overrides], run_dir, tmp)
                except RuntimeError as err:
                    raise RuntimeError(f"{name} {err}") from None
                times[name].append(timing(summary))
                if mean_after is not None:
                    means[name].append(mean_step(run_dir, mean_after))
                summaries[name] = summary
                print(f"  round {round_index + 1}/{rounds} {name:<28} {times[name][-1] * 1e3:8.1f} ms/iter",
                      file=sys.stderr, flush=True)
    return {name: {"seconds": statistics.median(values), "all": values, "summary": summaries[name],
                   **({"mean_seconds": statistics.median(means[name])} if mean_after is not None else {})}
            for name, values in times.items()}


def compare_on_gpt_small(configs: dict[str, list[str]], description: str, steps: int = 12,
                         mean_after: int | None = None) -> tuple[dict[str, dict], argparse.Namespace]:
    """The speed benchmarks' common setting: parse --steps (default `steps`) and --rounds, then time
    `configs` on gpt_small with tiny-shakespeare (seq 128, batch 32), one thread per worker."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    common = ["model=gpt_small", "dataset.seq_len=128", "batch_size=32", f"steps={args.steps}",
              f"eval_every={args.steps}", "eval_batches=1", "threads_per_worker=1"]
    return time_per_iteration(configs, common, args.rounds, mean_after=mean_after), args
