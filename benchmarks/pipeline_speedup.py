"""Synchronous model parallelism vs backprop: `pipeline` (1F1B, 2 stages, m=8) and `hypar`
(2 partitions x 1 replica with m=8; 1 partition x 2 replicas with m=1), each against `backprop`
on one worker.

    python -m benchmarks.pipeline_speedup [--steps 12] [--rounds 2]

gpt_small on tiny-shakespeare (seq 128, batch 32), one thread per worker, all runs alternating in
one invocation. Prints each speed-up beside its analytic ideal: p*m/(m+p-1) for a p-stage pipeline
with m micro-batches (docs/algorithms/pipeline.md §2), R for R replicas (before all-reduce cost),
and the measured bubble per worker beside the analytic one.
"""

from __future__ import annotations

from benchmarks.side_by_side import compare_on_gpt_small

M = 8
CONFIGS = {
    "backprop (1 worker)": ["algorithm=backprop", "gpus=1"],
    "pipeline 1f1b p=2 m=8": ["algorithm=pipeline", "gpus=2", "algorithm.schedule=1f1b", f"algorithm.microbatches={M}"],
    "hypar 2x1 (gpipe, m=8)": ["algorithm=hypar", "gpus=2", "algorithm.partitions=2", f"algorithm.microbatches={M}"],
    # One partition: each replica is a single stage, so micro-batching would only shrink the matmuls.
    "hypar 1x2 (m=1)": ["algorithm=hypar", "gpus=2", "algorithm.partitions=1", "algorithm.microbatches=1"],
}
IDEAL = {"backprop (1 worker)": 1.0, "pipeline 1f1b p=2 m=8": 2 * M / (M + 1),
         "hypar 2x1 (gpipe, m=8)": 2 * M / (M + 1), "hypar 1x2 (m=1)": 2.0}


def main() -> None:
    results, args = compare_on_gpt_small(CONFIGS, __doc__.splitlines()[0])
    reference = results["backprop (1 worker)"]["seconds"]
    print(f"gpt_small, tiny-shakespeare, batch 32 x 128 tokens, 1 thread per worker, {args.steps} steps, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'configuration':<28} {'ms/iter':>9} {'speed-up':>9} {'ideal':>7}  bubble measured / analytic per worker")
    for name, result in results.items():
        facts = result["summary"].get("algorithm_facts_per_worker") or []
        bubbles = ", ".join(
            f"{f['measured_bubble']:.2f}/{f['analytic_bubble']:.2f}" if f.get("analytic_bubble") is not None
            else f"{f['measured_bubble']:.2f}/-" for f in facts if f and "measured_bubble" in f)
        print(f"{name:<28} {result['seconds'] * 1e3:9.1f} {reference / result['seconds']:8.2f}x "
              f"{IDEAL[name]:6.2f}x  {bubbles}")


if __name__ == "__main__":
    main()
