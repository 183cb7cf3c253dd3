"""Does staleness cost accuracy? Eval loss of stale-gradient methods with K = 2..5 modules (stages)
against `backprop` after the same number of steps on the same batches (docs/algorithms/stale_gradient.md §10).

    python -m benchmarks.stale_convergence [--steps 300] [--model gpt_mini] [--algorithms ouroboros,ddg,pipedream_2bw]
        [--modules 2,3,4,5] [OVERRIDE ...]

The stale runs use `runtime=emulated` (one process): the updates are those of the workers, so the
curve is the algorithm's and not the machine's. ddg and ouroboros delay module k by K-k updates;
pipedream_2bw delays every stage by one (m = K micro-batches: m changes only the
summation order of the update). async_nesterov is ddg with its Nesterov-corrected optimizer. Default: gpt_mini on tiny-shakespeare, batch 32, AdamW
with warm-up and cosine decay (experiments/optimizer/adamw.yaml).
"""

from __future__ import annotations

import argparse

from benchmarks.side_by_side import time_per_iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model", default="gpt_mini")
    parser.add_argument("overrides", nargs="*", help="more run.py overrides for every run, e.g. optimizer.lr=1e-3")
    parser.add_argument("--algorithms", default="ouroboros", help="comma-separated: ouroboros, ddg, pipedream_2bw, async_nesterov")
    parser.add_argument("--modules", default="2,3,4,5", help="comma-separated K (modules, or 2BW's stages)")
    args = parser.parse_args()
    configs = {"backprop": ["algorithm=backprop"]}
    for name in args.algorithms.split(","):
        for k in map(int, args.modules.split(",")):
            depth = f"algorithm.stages={k}" if name == "pipedream_2bw" else f"algorithm.modules={k}"
            configs[f"{name} K={k}"] = [f"algorithm={name}", "algorithm.runtime=emulated", depth]
    common = [f"model={args.model}", f"steps={args.steps}", f"eval_every={args.steps}", "gpus=1", *args.overrides]
    results = time_per_iteration(configs, common, rounds=1)
    reference = results["backprop"]["summary"]["final"]
    print(f"{args.model}, tiny-shakespeare, {args.steps} steps, batch 32, emulated runtime for the stale runs",
          " ".join(args.overrides))
    print(f"{'run':<20} {'eval loss':>10} {'bits/char':>10} {'vs backprop':>12} {'train loss':>11}")
    for name, result in results.items():
        final = result["summary"]["final"]
        print(f"{name:<20} {final['eval_loss']:10.4f} {final['eval_bits_per_char']:10.4f} "
              f"{final['eval_loss'] - reference['eval_loss']:+12.4f} {final['train_loss']:11.4f}")


if __name__ == "__main__":
    main()
