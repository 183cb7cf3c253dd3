"""Local Critic Training vs backprop: `local_critic` with 2 groups on 2 workers against `backprop`
on one worker, on gpt_small (tiny-shakespeare) and resnet20 (CIFAR-10).

    python -m benchmarks.local_critic_speedup [--steps 12] [--rounds 2] [--data-dir ../shared/datasets]

One thread per worker, all runs alternating in one invocation. Beside each speed-up stands the
spec's bound for the synchronous schedule (local_critic.md §6): with N equal groups, forward F and
backward 2F each, an iteration takes N*F + 2F against backprop's 3*N*F, i.e. 3N/(N+2) = 1.5x for
N = 2 (critic cost and communication ignored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.side_by_side import REPO, time_per_iteration

GROUPS = 2
WORKLOADS = {
    "gpt_small": ["model=gpt_small", "dataset.seq_len=128", "batch_size=32"],
    "resnet20": ["model=resnet20", "dataset=cifar10", "batch_size=128", "optimizer=sgd"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    configs = {}
    for workload, setup in WORKLOADS.items():
        configs[f"{workload} backprop"] = [*setup, "algorithm=backprop", "gpus=1"]
        configs[f"{workload} local_critic N={GROUPS}"] = [*setup, "algorithm=local_critic", f"gpus={GROUPS}"]
    common = [f"steps={args.steps}", f"eval_every={args.steps}", "eval_batches=1", "threads_per_worker=1",
              f"data_dir={args.data_dir.resolve()}"]
    results = time_per_iteration(configs, common, args.rounds)
    bound = 3 * GROUPS / (GROUPS + 2)
    print(f"1 thread per worker, {args.steps} steps, median of {args.rounds} alternating rounds")
    print(f"{'configuration':<28} {'ms/iter':>8} {'speed-up':>9} {'bound':>6}")
    for workload in WORKLOADS:
        reference = results[f"{workload} backprop"]["seconds"]
        for name in (f"{workload} backprop", f"{workload} local_critic N={GROUPS}"):
            seconds = results[name]["seconds"]
            shown = f"{bound:5.2f}x" if "local_critic" in name else "     -"
            print(f"{name:<28} {seconds * 1e3:8.1f} {reference / seconds:8.2f}x {shown}")


if __name__ == "__main__":
    main()
