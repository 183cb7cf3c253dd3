"""Decoupled backprop vs backprop and a synchronous pipeline: `ddg` (K=2 on 2 workers) and
`ouroboros` (gpus=2: K=3 on 2 workers, modules 1 and 3 on worker 1), each against `backprop` on
one worker and `pipeline` 1F1B on 2 workers.

    python -m benchmarks.stale_gradient_speedup [--steps 12] [--rounds 2]

gpt_small on tiny-shakespeare (seq 128, batch 32), one thread per worker, all runs alternating in
one invocation. Beside each speed-up stands its critical-path bound (docs/algorithms/stale_gradient.md §10):
the forward stays locked, so an iteration takes at least the busiest worker's compute (its
modules' forward and backward, measured in the same run) plus its transfers, here estimated at
2 GB/s per direction (gloo on loopback, shared/docs/MEASUREMENTS.md).
"""

from __future__ import annotations

from benchmarks.side_by_side import compare_on_gpt_small

GLOO_BYTES_PER_S = 2e9
CONFIGS = {
    "backprop (1 worker)": ["algorithm=backprop", "gpus=1"],
    "ddg K=2 (2 workers)": ["algorithm=ddg", "gpus=2"],
    "ouroboros K=3 (2 workers)": ["algorithm=ouroboros", "gpus=2"],
    "pipeline 1f1b p=2 m=8": ["algorithm=pipeline", "gpus=2", "algorithm.schedule=1f1b", "algorithm.microbatches=8"],
}


def critical_path_s(summary: dict, steps: int) -> float | None:
    """max over workers of (compute per iteration + bytes sent per iteration / bandwidth)."""
    compute = summary.get("compute_s_per_worker") or []
    if not compute or any(c is None for c in compute):
        return None
    sent = summary["bytes_sent_per_worker"]
    return max(c + b / steps / GLOO_BYTES_PER_S for c, b in zip(compute, sent))


def main() -> None:
    results, args = compare_on_gpt_small(CONFIGS, __doc__.splitlines()[0])
    reference = results["backprop (1 worker)"]["seconds"]
    pipeline = results["pipeline 1f1b p=2 m=8"]["seconds"]
    print(f"gpt_small, tiny-shakespeare, batch 32 x 128 tokens, 1 thread per worker, {args.steps} steps, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'configuration':<27} {'ms/iter':>8} {'vs backprop':>12} {'vs pipeline':>12} {'bound':>7}  "
          f"compute ms/iter per worker")
    for name, result in results.items():
        seconds = result["seconds"]
        bound = critical_path_s(result["summary"], args.steps)
        per_worker = ", ".join(f"{c * 1e3:.0f}" for c in result["summary"].get("compute_s_per_worker") or []
                               if c is not None)
        bound_text = f"{reference / bound:6.2f}x" if bound else "      -"
        print(f"{name:<27} {seconds * 1e3:8.1f} {reference / seconds:11.2f}x {pipeline / seconds:11.2f}x "
              f"{bound_text}  {per_worker}")


if __name__ == "__main__":
    main()
