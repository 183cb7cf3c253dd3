"""The stale-gradient family through run.py, float64 on CPU with gloo (docs/algorithms/stale_gradient.md §11).

- K = 1 is `backprop`, bit for bit (also with clipping).
- The workers (`runtime=distributed`) take the same updates as the one-process emulations
  (`runtime=emulated`: the FIFO of gradient blocks for S, the serialised workers for H and R),
  for the linear and the ring placement, on an MLP and on a GPT whose embedding is tied.
- S, H and R are different algorithms: their trajectories differ.
- Each module keeps K-k+1 batches; S and H keep their graphs, R only the inputs; S holds K-k
  weight copies between iterations.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.cli import merged_weights, read_summary, run_cli
from tests.cli import run_to_completion

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it

COMMON = ["dtype=float64", "steps=8", "batch_size=8", "eval_every=4", "eval_batches=1",
          "save_weights=true", "timeout_s=60", "optimizer=adamw", "optimizer.warmup_steps=2"]
MODELS = {
    "gpt": ["model=gpt_tiny", "dataset.seq_len=16"],  # 4 blocks: embedding, 2 layers, tied head
    "mlp": ["model=mlp", "model.hidden=[16,16,16]", "dataset=fashion_mnist"],  # 4 blocks
}
CASES = [(model, semantics, K) for model in MODELS for semantics in "SHR" for K in (2, 3)] + [("gpt", "S", 4)]


def train(tmp_path, name, overrides, env):
    return run_to_completion(tmp_path, name, [*COMMON, *overrides], env)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def env(shared_data_dir):
    return {"MPBENCH_DATA_DIR": str(shared_data_dir)}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory, env):
    """One-process references, one per (model, semantics, K); placement does not change the updates.
    One multirun per model (CI time: one interpreter start for all its runs)."""
    tmp = tmp_path_factory.mktemp("emulated")
    references = {}
    for model in MODELS:
        sweep = tmp / model
        modules = sorted({K for m, _, K in CASES if m == model})
        result = run_cli(["-m", *COMMON, *MODELS[model], "algorithm=ddg", "gpus=1", "algorithm.runtime=emulated",
                          "algorithm.semantics=S,H,R", f"algorithm.modules={','.join(map(str, modules))}",
                          "report.add_reference=false", f"hydra.sweep.dir={sweep}"], cwd=tmp, env=env)
        assert result.returncode == 0, result.stderr
        for run_dir in (d for d in sweep.iterdir() if (d / "summary.json").exists()):
            assert read_summary(run_dir)["status"] == "ok"
            config = yaml.safe_load((run_dir / "config.yaml").read_text())["algorithm"]
            references[(model, config["semantics"], config["modules"])] = run_dir
    assert set(CASES) <= set(references)
    return references


@pytest.mark.parametrize("placement", ["linear", "ring"])
@pytest.mark.parametrize("model,semantics,K", CASES)
def test_workers_equal_the_emulation(model, semantics, K, placement, emulated, tmp_path, env):
    workers = K if placement == "linear" else K - 1
    algorithm = "ddg" if placement == "linear" else "ouroboros"
    run_dir = train(tmp_path, "distributed", [*MODELS[model], f"algorithm={algorithm}", f"gpus={workers}",
                                              f"algorithm.semantics={semantics}"], env)
    reference = merged_weights(emulated[(model, semantics, K)], 1)
    assert max_difference(merged_weights(run_dir, workers), reference) <= 1e-10
    expected, final = read_summary(emulated[(model, semantics, K)])["final"], read_summary(run_dir)["final"]
    assert final["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-10)  # staged evaluation

    facts = read_summary(run_dir)["algorithm_facts_per_worker"]
    assert all(f["modules"] == K and f["placement"] == placement for f in facts)
    per_module = {m["module"]: m for f in facts for m in f["per_module"]}
    assert sorted(per_module) == list(range(K))
    for k, m in per_module.items():  # 0-based k: delay K-1-k, K-k batches kept (docs §6: K-k+1, 1-based)
        assert m["delay"] == K - 1 - k
        assert m["stored_batches_peak"] == K - k
        fresh = k == K - 1
        if semantics == "R" and not fresh:
            assert m["saved_activation_elements_per_batch"] == 0  # inputs only
        else:
            assert m["saved_activation_elements_per_batch"] > 0 and m["input_elements_per_batch"] > 0  # a graph
        assert m["stashed_weight_versions"] == (K - 1 - k if semantics == "S" and not fresh else 0)
    if placement == "ring":  # worker 1 holds K + 1 batches: K of module 1 and one of module K
        assert sum(m["stored_batches_peak"] for m in facts[0]["per_module"]) == K + 1


@pytest.mark.parametrize("model", ["gpt"])  # the MLP's K=1 path is the same code (and CI time is short)
def test_one_module_is_backprop_bit_for_bit(model, tmp_path, env):
    setup = [*MODELS[model], "gpus=1", "optimizer.clip_norm=0.05", "optimizer.weight_decay=0.1"]
    reference = merged_weights(train(tmp_path, "backprop", [*setup, "algorithm=backprop"], env), 1)
    single = merged_weights(train(tmp_path, "ddg", [*setup, "algorithm=ddg"], env), 1)
    assert all(torch.equal(single[k], reference[k]) for k in reference)
    # The clip is active: without it the trajectory is another one.
    unclipped = merged_weights(train(tmp_path, "unclipped", [*MODELS[model], "gpus=1", "algorithm=backprop",
                                                            "optimizer.weight_decay=0.1"], env), 1)
    assert max_difference(unclipped, reference) > 1e-6


@pytest.mark.parametrize("model", list(MODELS))
def test_semantics_give_different_trajectories(model, emulated):
    weights = {s: merged_weights(emulated[(model, s, 3)], 1) for s in "SHR"}
    for a, b in (("S", "H"), ("S", "R"), ("H", "R")):
        assert max_difference(weights[a], weights[b]) > 1e-9, (a, b)
