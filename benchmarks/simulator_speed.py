"""How long the simulator takes for 64 workers of every algorithm (goal: under 10 s each).

    python -m benchmarks.simulator_speed [--workers 64]

A GPT of 64 Transformer blocks (66 blocks with the embedding and the head, small widths) on
tiny-shakespeare, batch 256, is profiled once; then each algorithm is simulated at `--workers`
workers from that profile and the wall time of the simulation alone (plan, engine, read-out) is
printed beside the simulated step and speed-up. Profiling (the blocks at each batch size a
configuration needs, its local heads) is done by a first, untimed call, and its time printed apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "data_parallel": [],
    "pipeline 1f1b": ["algorithm=pipeline", "algorithm.schedule=1f1b", "algorithm.microbatches=128"],
    "pipeline gpipe": ["algorithm=pipeline", "algorithm.schedule=gpipe", "algorithm.microbatches=128"],
    "hypar 16x4": ["algorithm=hypar", "algorithm.partitions=16", "algorithm.microbatches=16"],
    "ddg": ["algorithm=ddg"],
    "features_replay": ["algorithm=features_replay"],
    "ouroboros": ["algorithm=ouroboros", "algorithm.modules=65"],
    "local_critic": ["algorithm=local_critic"],
    "dni": ["algorithm=dni"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import torch
    from hydra import compose, initialize_config_dir

    import run
    from mpbench.config import run_spec_from
    from mpbench.data import load_dataset
    from mpbench.simulate import PRESETS, profiler_for, simulate_spec

    common = ["model=gpt_tiny", "model.n_layer=64", "batch_size=256", "dataset.seq_len=32", "simulate=true",
              f"gpus={args.workers}"]

    def spec_of(overrides):
        with initialize_config_dir(config_dir=run.CONFIG_DIR, version_base="1.3"):
            return run_spec_from(compose(config_name="config", overrides=common + overrides))

    base = spec_of(["algorithm=data_parallel"])
    data = load_dataset(base.dataset, base.dataset_settings, base.data_path, base.seed, cache_dir=base.cache_path)
    started = time.perf_counter()
    profiler = profiler_for(base, data, torch.device("cpu"), 1)
    profiler.blocks(base.batch_size)
    print(f"profile of {len(profiler.model.blocks)} blocks at {base.batch_size} rows: "
          f"{time.perf_counter() - started:.1f} s (each other batch size is timed on first use)")
    print(f"\n| algorithm ({args.workers} workers) | simulation wall s | simulated ms/iter | simulated speed-up |")
    print("|---|---|---|---|")
    for name, overrides in CONFIGS.items():
        spec = spec_of(overrides)
        simulate_spec(spec, profiler, PRESETS["nvlink4"])  # times what this configuration needs (not counted)
        started = time.perf_counter()
        ran, reference = simulate_spec(spec, profiler, PRESETS["nvlink4"])
        wall = time.perf_counter() - started
        print(f"| {name} | {wall:.2f} | {ran.step_s * 1e3:.2f} | {reference.step_s / ran.step_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
