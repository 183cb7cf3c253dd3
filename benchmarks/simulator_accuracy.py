"""How close the simulator comes: measured vs simulated step time, every family, side by side.

    python -m benchmarks.simulator_accuracy [--steps 12] [--rounds 1] [--data-dir ../shared/datasets]
        [--models gpt_small,resnet20] [--families "backprop g1,ddg g2"] [--device cuda]

For each model (gpt_small on tiny-shakespeare; resnet20 on CIFAR-10 when the data dir has it)
and each configuration this machine holds without oversubscription (1 and 2 workers, one
thread each), the configuration is trained (time per iteration: the steady median in
summary.json) and simulated (`simulate=true`: profiled on this machine, link by gloo ping-pong),
alternating, in one invocation. A profile is one moment of the machine, and a shared machine's
speed drifts (by 15% over minutes here), so each round takes a fresh profile (the benchmark
keeps its profiles in its own cache dir, never the user's) and the simulated step, like the
measured one, is the median over the rounds. Printed per row: measured and predicted step time, the relative
error, and the idle fraction per worker (1 - compute / step) both ways. The goal (issue 16) is a
median absolute error of at most 10% and a worst of at most 20%.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.side_by_side import REPO, time_per_iteration

FAMILIES = {
    "backprop g1": ["algorithm=backprop", "gpus=1"],
    "data_parallel g2": ["algorithm=data_parallel", "gpus=2"],
    "pipeline 1f1b g2": ["algorithm=pipeline", "gpus=2", "algorithm.schedule=1f1b"],
    "pipeline gpipe g2": ["algorithm=pipeline", "gpus=2", "algorithm.schedule=gpipe"],
    "ddg g2": ["algorithm=ddg", "gpus=2"],
    "features_replay g2": ["algorithm=features_replay", "gpus=2"],
    "ouroboros g2": ["algorithm=ouroboros", "gpus=2"],
    "local_critic g2": ["algorithm=local_critic", "gpus=2"],
    "dni g2": ["algorithm=dni", "gpus=2"],
}
MODELS = {
    "gpt_small": ["model=gpt_small", "dataset=tinyshakespeare", "dataset.seq_len=128", "batch_size=32"],
    "resnet20": ["model=resnet20", "dataset=cifar10", "batch_size=64"],
    "gpt2_small": ["model=gpt2_small", "dataset=tinyshakespeare", "dataset.seq_len=1024", "batch_size=16"],  # GPUs
}


def measured_idle(summary: dict) -> list[float] | None:
    compute, step = summary.get("compute_s_per_worker") or [], summary.get("iteration_s_per_worker") or []
    if not compute or any(c is None for c in compute) or any(not s for s in step):
        return None
    return [max(0.0, 1 - c / s) for c, s in zip(compute, step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("MPBENCH_DATA_DIR", str(REPO.parent / "shared" / "datasets")))
    parser.add_argument("--models", default="gpt_small,resnet20")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated names of FAMILIES")
    parser.add_argument("--device", default="auto", help="the runs' device (auto, cpu, cuda)")
    parser.add_argument("--link", default="measured", help="simulator.link (a preset on a one-GPU machine)")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="simulator-accuracy-"))
    common = [f"steps={args.steps}", f"eval_every={args.steps}", "eval_batches=1", "threads_per_worker=1",
              f"data_dir={args.data_dir}", f"cache_dir={cache}", f"device={args.device}",
              f"simulator.link={args.link}"]
    families = {name: FAMILIES[name] for name in args.families.split(",")}

    def fresh_profiles(round_index: int) -> None:
        for kept in (cache / "simulator").glob("profile-*.json"):
            kept.unlink()

    rows = []
    for model in args.models.split(","):
        if model == "resnet20" and not (Path(args.data_dir) / "cifar10-jpg").exists():
            print(f"skipping resnet20: no cifar10-jpg in {args.data_dir}", file=sys.stderr)
            continue
        configs = {f"{model} {name}": MODELS[model] + overrides for name, overrides in families.items()}
        configs.update({f"{name} (simulated)": overrides + ["simulate=true"] for name, overrides in list(configs.items())})
        results = time_per_iteration(configs, common, args.rounds, timing=_timing, before_round=fresh_profiles)
        for name in families:
            measured, simulated = results[f"{model} {name}"], results[f"{model} {name} (simulated)"]
            rows.append((f"{model} {name}", measured["seconds"], simulated["seconds"],
                         measured_idle(measured["summary"]), simulated["summary"]["simulation"]["idle_fraction_per_worker"]))
    print("\n| configuration | measured ms/iter | simulated ms/iter | error | idle measured | idle simulated |")
    print("|---|---|---|---|---|---|")
    errors = []
    for name, measured, simulated, idle_m, idle_s in rows:
        error = (simulated - measured) / measured
        errors.append(abs(error))
        fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs) if xs else "-"  # noqa: E731
        print(f"| {name} | {measured * 1e3:.1f} | {simulated * 1e3:.1f} | {error * 100:+.1f}% | {fmt(idle_m)} | {fmt(idle_s)} |")
    shutil.rmtree(cache, ignore_errors=True)
    if errors:
        print(f"\nabsolute error: median {statistics.median(errors) * 100:.1f}%, worst {max(errors) * 100:.1f}% "
              f"over {len(errors)} configurations (goal: median <= 10%, worst <= 20%)")


def _timing(summary: dict) -> float:
    """A measured run's steady median, or a simulated run's predicted step."""
    return summary["simulation"]["step_s"] if summary.get("simulated") else summary["time_per_iter_median_s"]


if __name__ == "__main__":
    main()
