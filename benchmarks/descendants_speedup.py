"""The 2026 descendants beside their ancestors at 2 workers: `pipedream_2bw` (against `pipeline`
1F1B, which flushes), `async_nesterov` (against `ddg`, the same pipeline with another optimizer)
and `diloco` (against `data_parallel`: one parameter all-reduce every H steps instead of a
gradient all-reduce every step), each against `backprop` on one worker.

    python -m benchmarks.descendants_speedup [--steps 16] [--rounds 2]

gpt_small on tiny-shakespeare (seq 128, batch 32), one thread per worker, all runs alternating in
one invocation. Time per iteration is the mean step after the first 4 (so DiLoCo's synchronising
steps, one in H = 4, count their share; the median would skip them). Bytes are what the busiest
worker sent per step: the transport's count plus what torch's pipeline schedules sent.
"""

from __future__ import annotations

from benchmarks.side_by_side import compare_on_gpt_small

WARM_UP_STEPS = 4
CONFIGS = {
    "backprop (1 worker)": ["algorithm=backprop", "gpus=1"],
    "data_parallel": ["algorithm=data_parallel", "gpus=2"],
    "diloco 1x2, H=4": ["algorithm=diloco", "gpus=2", "algorithm.inner_steps=4", "algorithm.microbatches=1"],
    "pipeline 1f1b, m=8": ["algorithm=pipeline", "gpus=2", "algorithm.schedule=1f1b", "algorithm.microbatches=8"],
    "pipedream_2bw, m=8": ["algorithm=pipedream_2bw", "gpus=2", "algorithm.microbatches=8"],
    "ddg K=2": ["algorithm=ddg", "gpus=2"],
    "async_nesterov K=2": ["algorithm=async_nesterov", "gpus=2"],
}
ANCESTOR = {"diloco 1x2, H=4": "data_parallel", "pipedream_2bw, m=8": "pipeline 1f1b, m=8",
            "async_nesterov K=2": "ddg K=2"}


def sent_bytes(summary: dict) -> list[int]:
    """Per worker: what the transport counted plus the activations and errors torch's pipeline
    schedules send themselves (`pipeline_bytes_sent`: pipeline, hypar, diloco)."""
    facts = summary.get("algorithm_facts_per_worker") or [{}] * len(summary["bytes_sent_per_worker"])
    return [(b or 0) + (f or {}).get("pipeline_bytes_sent", 0) for b, f in zip(summary["bytes_sent_per_worker"], facts)]


def main() -> None:
    results, args = compare_on_gpt_small(CONFIGS, __doc__.splitlines()[0], steps=16, mean_after=WARM_UP_STEPS)
    seconds = {name: result["mean_seconds"] for name, result in results.items()}
    reference = seconds["backprop (1 worker)"]
    print(f"gpt_small, tiny-shakespeare, batch 32 x 128 tokens, 1 thread per worker, {args.steps} steps "
          f"(mean of steps {WARM_UP_STEPS + 1}-{args.steps}), median of {args.rounds} alternating rounds")
    print(f"{'configuration':<22} {'ms/iter':>8} {'vs backprop':>12} {'vs ancestor':>12} {'MB sent/step':>13}")
    for name, result in results.items():
        ancestor = ANCESTOR.get(name)
        versus = f"{seconds[ancestor] / seconds[name]:11.2f}x" if ancestor else f"{'':>12}"
        sent = max(sent_bytes(result["summary"])) / args.steps / 1e6
        print(f"{name:<22} {seconds[name] * 1e3:8.1f} {reference / seconds[name]:11.2f}x {versus} {sent:13.2f}")


if __name__ == "__main__":
    main()
