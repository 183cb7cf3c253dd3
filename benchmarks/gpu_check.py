"""The GPU check: the CUDA path's equivalence, its MFU, and the simulator on CUDA, in one run.

    bash benchmarks/gpu_check.sh [out_dir]       (a machine with a CUDA device; under 8 minutes)
    python -m benchmarks.gpu_check --part mfu    (one part: equivalence, mfu or simulator)

1. Equivalence spot-checks on CUDA in float64 (gpt_tiny, tiny-shakespeare, 6 steps, SGD):
   data_parallel on 1 GPU (DDP over NCCL) and pipeline with one stage, each against backprop;
   the final weights must agree to 1e-10 (printed: the largest difference, 0 when bit-identical).
2. MFU of backprop at model=gpt2_small (sequence 1024): float32, bf16 autocast, bf16 autocast
   with torch.compile, and bf16 weights (dtype=bfloat16) with torch.compile; tokens/s, model TFLOP/s, MFU and peak memory from the summary
   (mpbench/flops.py counts the FLOPs, the peak table names the device's).
3. The simulator on CUDA: benchmarks.simulator_accuracy for backprop on one GPU, gpt_small and
   gpt2_small (measured and simulated step side by side).

Prints one markdown table per part and writes gpu_check.json into the output directory. A part
that fails is reported as failed and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks.side_by_side import REPO, run_config

TOLERANCE = 1e-10
EQUIVALENCE = {
    "data_parallel": ["algorithm=data_parallel"],
    "pipeline, 1 stage": ["algorithm=pipeline", "algorithm.schedule=gpipe"],
}
PRECISIONS = {
    "float32": [],
    "bf16 autocast": ["autocast=true"],
    "bf16 autocast + compile": ["autocast=true", "compile=true"],
    "bf16 weights + compile": ["dtype=bfloat16", "compile=true"],
}


def max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two weight files' tensors (inf if their names differ)."""
    if a.keys() != b.keys():
        return float("inf")
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a.values(), [b[k] for k in a]))


def equivalence(tmp: Path, device: str = "cuda") -> list[dict]:
    common = ["model=gpt_tiny", "dataset=tinyshakespeare", "dataset.seq_len=64", "batch_size=8", "steps=6",
              "eval_every=6", "eval_batches=1", "dtype=float64", f"device={device}", "gpus=1", "optimizer=sgd",
              "optimizer.lr=0.1", "save_weights=true"]
    reference_dir = tmp / "backprop"
    run_config([*common, "algorithm=backprop"], reference_dir, tmp)
    reference = torch.load(reference_dir / "weights" / "rank0.pt")
    rows = []
    for name, overrides in EQUIVALENCE.items():
        run_dir = tmp / name.replace(" ", "_").replace(",", "")
        summary = run_config([*common, *overrides], run_dir, tmp)
        difference = max_difference(reference, torch.load(run_dir / "weights" / "rank0.pt"))
        rows.append({"algorithm": name, "backend": summary.get("backend"), "max_abs_difference": difference,
                     "equal": difference <= TOLERANCE})
    print(f"\n| on {device}, float64, vs backprop | backend | largest weight difference | within 1e-10 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['algorithm']} | {r['backend']} | {r['max_abs_difference']:.3g} | {r['equal']} |")
    if not all(r["equal"] for r in rows):
        raise AssertionError(f"a {device} run differs from backprop beyond 1e-10")
    return rows


def mfu(tmp: Path, steps: int, batch_size: int, precisions: dict[str, list[str]]) -> list[dict]:
    common = ["algorithm=backprop", "model=gpt2_small", "dataset=tinyshakespeare", "dataset.seq_len=1024",
              f"batch_size={batch_size}", f"steps={steps}", f"eval_every={steps}", "eval_batches=1",
              "device=cuda", "gpus=1", "optimizer=adamw", "optimizer.lr=3e-4"]
    rows = []
    for name, overrides in precisions.items():
        started = time.time()
        s = run_config([*common, *overrides], tmp / name.replace(" ", "_").replace("+", "and"), tmp)
        rows.append({"precision": name, "ms_per_iter": s["time_per_iter_median_s"] * 1e3,
                     "tokens_per_s": s["tokens_per_s"], "model_tflops_per_s": s.get("model_tflops_per_s"),
                     "mfu": s.get("mfu"), "peak_memory_gib": s["peak_memory_bytes_per_worker"][0] / 2**30,
                     "final_train_loss": s["final"]["train_loss"], "wall_s": time.time() - started,
                     "device": (s["environment"].get("cuda_devices") or ["?"])[0]})
    print(f"\n| backprop, gpt2_small, batch {batch_size} x 1024 | ms/iter | tokens/s | model TFLOP/s | MFU | "
          f"peak GiB | train loss | run wall s |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu_text = "-" if r["mfu"] is None else f"{r['mfu'] * 100:.1f}%"
        tflops = "-" if r["model_tflops_per_s"] is None else f"{r['model_tflops_per_s']:.1f}"
        print(f"| {r['precision']} | {r['ms_per_iter']:.1f} | {r['tokens_per_s']:,.0f} | "
              f"{tflops} | {mfu_text} | {r['peak_memory_gib']:.1f} | "
              f"{r['final_train_loss']:.3f} | {r['wall_s']:.0f} |")
    return rows


def simulator(tmp: Path) -> str:
    command = [sys.executable, "-m", "benchmarks.simulator_accuracy", "--device", "cuda", "--families", "backprop g1",
               "--models", "gpt_small,gpt2_small", "--link", "nvlink4", "--steps", "12", "--data-dir", str(REPO / "data")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"simulator_accuracy failed: {result.stderr.strip().splitlines()[-3:]}")
    print(result.stdout)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="where gpu_check.json goes")
    parser.add_argument("--part", action="append", choices=["equivalence", "mfu", "simulator"],
                        help="run only these parts (repeatable); default: all")
    parser.add_argument("--steps", type=int, default=30, help="steps of each MFU run")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences of 1024 tokens per MFU step")
    parser.add_argument("--precision", action="append", choices=list(PRECISIONS),
                        help="MFU runs of only these precisions (repeatable); default: all")
    parser.add_argument("--cpu", action="store_true", help="the equivalence part on the CPU (a dry run of the script)")
    args = parser.parse_args()
    if args.cpu and args.part != ["equivalence"]:
        sys.exit("gpu_check: --cpu runs the equivalence part only; add --part equivalence")
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run it on a machine with one (benchmarks/gpu_check.sh)")
    chosen = {name: PRECISIONS[name] for name in (args.precision or PRECISIONS)}
    parts = {"equivalence": lambda tmp: equivalence(tmp, "cpu" if args.cpu else "cuda"), "mfu": lambda tmp: mfu(tmp, args.steps, args.batch_size, chosen),
             "simulator": simulator}
    results = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"gpu_check on {results['device']}, torch {results['torch']}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.part or list(parts):
            started = time.time()
            try:
                results[name] = parts[name](Path(tmp))
            except Exception as err:  # noqa: BLE001 - report the part as failed, run the others
                failed.append(name)
                results[name] = {"failed": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
                print(f"\n{name}: FAILED: {type(err).__name__}: {err}", flush=True)
            print(f"[{name}: {time.time() - started:.0f} s]", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
