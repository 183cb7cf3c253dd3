"""Local Critic Training vs backprop: `local_critic` with 2 groups on 2 workers, synchronous and
pipelined (delay 1), against `backprop` on one worker, on gpt_small (tiny-shakespeare) and
resnet20 (CIFAR-10).

    python -m benchmarks.local_critic_speedup [--steps 12] [--rounds 2] [--workloads gpt_small resnet20]
                                              [--data-dir ../shared/datasets]

One thread per worker, all runs alternating in one invocation. Beside each speed-up stands the
bound for the synchronous schedule (docs/algorithms/local_learning.md §12): with N equal groups, forward F and
backward 2F each, an iteration takes N*F + 2F against backprop's 3*N*F, i.e. 3N/(N+2) = 1.5x for
N = 2 (critic cost and communication ignored). The pipelined variant (§5) removes the wait for the
critic's target, so an iteration tends to max_i(F_i + B_i + C_i) = 3F: up to N x.

That synchronous bound assumes a group waits for its critic's target before its own backward.
Here a worker runs its group's backward first and waits only before the critic's step, so the
synchronous run can beat 3N/(N+2) whenever F_{i+1} <= C_i + B_i; the last column shows how far
each run is from being compute bound (backprop / the slowest worker's compute per iteration).
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
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    configs = {}
    for workload in args.workloads:
        setup = WORKLOADS[workload]
        configs[f"{workload} backprop"] = [*setup, "algorithm=backprop", "gpus=1"]
        configs[f"{workload} local_critic N={GROUPS}"] = [*setup, "algorithm=local_critic", f"gpus={GROUPS}"]
        configs[f"{workload} pipelined d=1"] = [*setup, "algorithm=local_critic", f"gpus={GROUPS}",
                                                "algorithm.pipelined=true", "algorithm.delay=1"]
    common = [f"steps={args.steps}", f"eval_every={args.steps}", "eval_batches=1", "threads_per_worker=1",
              f"data_dir={args.data_dir.resolve()}"]
    results = time_per_iteration(configs, common, args.rounds)
    bounds = {"local_critic": 3 * GROUPS / (GROUPS + 2), "pipelined": float(GROUPS)}
    print(f"1 thread per worker, {args.steps} steps, median of {args.rounds} alternating rounds")
    print("compute = median time per iteration in forward, backward and loss computations, per worker;")
    print("compute-bound speed-up = backprop / the slowest worker's compute (what removing every wait gives)")
    print(f"{'configuration':<28} {'ms/iter':>8} {'speed-up':>9} {'bound':>10} {'compute (ms)':>14} "
          f"{'compute-bound':>13}")
    for workload in args.workloads:
        reference = results[f"{workload} backprop"]["seconds"]
        for name in (f"{workload} backprop", f"{workload} local_critic N={GROUPS}", f"{workload} pipelined d=1"):
            seconds = results[name]["seconds"]
            bound = next((b for key, b in bounds.items() if key in name), None)
            compute = [c for c in results[name]["summary"].get("compute_s_per_worker") or [] if c is not None]
            shown = f"{bound:9.2f}x" if bound else "         -"
            per_worker = ", ".join(f"{c * 1e3:.0f}" for c in compute) if compute else "-"
            compute_bound = f"{reference / max(compute):12.2f}x" if compute else "            -"
            print(f"{name:<28} {seconds * 1e3:8.1f} {reference / seconds:8.2f}x {shown} {per_worker:>14} {compute_bound}")


if __name__ == "__main__":
    main()
