"""Trainer overhead: `backprop` through the full harness against a bare PyTorch loop.

    python -m benchmarks.trainer_overhead [--model gpt_mini] [--steps 40] [--rounds 5]

Both train the same model (identical initial weights) on the same batches with the same
optimizer, one thread, in one process. They alternate, round by round, so that machine noise hits
both alike; each round ends with one evaluation on both sides (the harness always evaluates at the
end). The harness side includes everything a real run does on worker 0 except the progress bar:
batch fetch, LR schedule, the algorithm object, metrics rows and their atomic flush.
Prints time per iteration of each and the median ratio harness/bare (goal: at most 1.03).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import models  # noqa: F401 (registers the models)
from algorithms.backprop import Backprop
from mpbench.algorithm import BuildContext, Worker
from mpbench.config import run_spec_from
from mpbench.data import load_dataset
from mpbench.metrics_log import MetricsLog
from mpbench.optim import make_optimizer
from mpbench.trainer import Trainer
from mpbench.transport import Transport

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"


def harness_seconds(model, data, spec, steps: int, out_dir: Path) -> float:
    worker = Worker(0, 1, torch.device("cpu"), torch.float32, Transport(0, 1, spec.timeout_s))
    example = data.train_batch(0, spec.batch_size)[0]
    algorithm = Backprop(BuildContext(model, worker, spec.optimizer, spec.algorithm_settings, example))
    sink = MetricsLog(out_dir, spec.logger, "bench", {})
    trainer = Trainer(algorithm, data, worker, optimizer=spec.optimizer, steps=steps,
                      batch_size=spec.batch_size, eval_every=steps, eval_batches=1, metrics_sink=sink)
    started = time.perf_counter()
    trainer.run()
    return time.perf_counter() - started


def bare_seconds(model, data, spec, steps: int) -> float:
    optimizer = make_optimizer(model.parameters(), spec.optimizer)
    eval_x, eval_y = data.eval_batches(spec.batch_size, 1)[0]
    started = time.perf_counter()
    for step in range(steps):
        inputs, targets = data.train_batch(step, spec.batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        loss.item()
    with torch.no_grad():
        model.eval()
        model.eval_totals(model(eval_x), eval_y)
        model.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt_mini")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        spec = run_spec_from(compose("config", overrides=[f"model={args.model}", "algorithm=backprop"]))
    data = load_dataset(spec.dataset, spec.dataset_settings, spec.data_path, spec.seed, cache_dir=spec.cache_path)
    torch.manual_seed(spec.seed)
    initial = spec.build_model(spec.model_settings, data.info)

    ratios, harness_times, bare_times = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds + 1):
            harness = harness_seconds(copy.deepcopy(initial), data, spec, args.steps, Path(tmp)) / args.steps
            bare = bare_seconds(copy.deepcopy(initial), data, spec, args.steps) / args.steps
            if round_index == 0:
                continue  # warm-up round: allocator, first-touch of the data
            harness_times.append(harness)
            bare_times.append(bare)
            ratios.append(harness / bare)
    print(f"model={args.model} batch_size={spec.batch_size} steps/round={args.steps} rounds={args.rounds} threads=1")
    print(f"bare PyTorch loop : {statistics.median(bare_times) * 1e3:8.2f} ms/iter (median of rounds)")
    print(f"mpbench harness   : {statistics.median(harness_times) * 1e3:8.2f} ms/iter (median of rounds)")
    print(f"ratio harness/bare: {statistics.median(ratios):.3f} (median; per round: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; goal <= 1.03)")


if __name__ == "__main__":
    main()
