"""`pipeline` (every schedule) and `hypar` equal `backprop` on the same global batches (float64).

docs/algorithms/pipeline.md §3 and §5: accumulating m micro-batch gradients, averaging over
replicas and summing the tied embedding's two halves reproduce sequential training.
"""

from __future__ import annotations

import pytest
import torch

from tests.cli import merged_weights, read_summary
from tests.cli import run_to_completion

pytestmark = pytest.mark.slow  # real processes: CI runs it, `pytest -m "not slow"` skips it

COMMON = ["dtype=float64", "steps=5", "batch_size=8", "eval_every=5", "eval_batches=1",
          "save_weights=true", "timeout_s=60", "optimizer=adamw", "optimizer.warmup_steps=2"]
GPT = ["model=gpt_tiny", "dataset.seq_len=16"]  # 4 blocks: embedding, 2 layers, tied head
MLP = ["model=mlp", "model.hidden=[16,16,16]", "dataset=fashion_mnist"]  # 4 blocks, no BN

SCHEDULES = {  # schedule -> (stages_per_worker, microbatches)
    "gpipe": (1, 4), "1f1b": (1, 4), "interleaved_1f1b": (2, 4), "looped_bfs": (2, 4),
    "interleaved_zero_bubble": (2, 4), "zbv_zero_bubble": (2, 4), "dualpipev": (2, 4),
}


def train(tmp_path, name, overrides, env):
    return run_to_completion(tmp_path, name, [*COMMON, *overrides], env)


@pytest.fixture(scope="module")
def references(tmp_path_factory, shared_data_dir):
    tmp = tmp_path_factory.mktemp("backprop")
    env = {"MPBENCH_DATA_DIR": str(shared_data_dir)}
    return {key: train(tmp, key, [*setup, "algorithm=backprop"], env) for key, setup in (("gpt", GPT), ("mlp", MLP))}


def assert_matches(reference_dir, run_dir, workers):
    reference, got = merged_weights(reference_dir, 1), merged_weights(run_dir, workers)
    assert got.keys() == reference.keys()  # every block is held by some worker
    worst = max((got[k] - reference[k]).abs().max().item() for k in reference)
    assert worst <= 1e-9, worst
    # The held-out evaluation, forwarded stage to stage, scores the same model the same way.
    expected, final = read_summary(reference_dir)["final"], read_summary(run_dir)["final"]
    assert final.keys() == expected.keys()
    for metric, value in expected.items():
        assert final[metric] == pytest.approx(value, abs=1e-9), metric


@pytest.mark.parametrize("model", ["gpt", "mlp"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_schedule_equals_backprop(schedule, model, references, tmp_path, shared_data_dir):
    v, m = SCHEDULES[schedule]
    setup = GPT if model == "gpt" else MLP
    run_dir = train(tmp_path, schedule, [*setup, "algorithm=pipeline", "gpus=2", f"algorithm.schedule={schedule}",
                                         f"algorithm.stages_per_worker={v}", f"algorithm.microbatches={m}"],
                    {"MPBENCH_DATA_DIR": str(shared_data_dir)})
    assert_matches(references[model], run_dir, 2)


@pytest.mark.parametrize("model", ["gpt", "mlp"])
@pytest.mark.parametrize("partitions,replicas", [(2, 1), (1, 2), (2, 2)])
def test_hypar_equals_backprop(partitions, replicas, model, references, tmp_path, shared_data_dir):
    setup = GPT if model == "gpt" else MLP
    run_dir = train(tmp_path, "hypar", [*setup, "algorithm=hypar", f"gpus={partitions * replicas}",
                                        f"algorithm.partitions={partitions}", "algorithm.microbatches=2"],
                    {"MPBENCH_DATA_DIR": str(shared_data_dir)})
    assert_matches(references[model], run_dir, partitions * replicas)


def test_tied_embedding_copies_stay_bit_identical(tmp_path):
    run_dir = train(tmp_path, "tied", [*GPT, "algorithm=pipeline", "gpus=2", "steps=8"], None)
    first = torch.load(run_dir / "weights" / "rank0.pt", weights_only=True)
    last = torch.load(run_dir / "weights" / "rank1.pt", weights_only=True)
    embedding, projection = first["blocks.0.token.weight"], last["blocks.3.proj.weight"]
    assert torch.equal(embedding, projection)
    facts = read_summary(run_dir)["algorithm_facts_per_worker"]
    assert [f["stages_here"] for f in facts] == [[0], [1]]
    assert facts[0]["analytic_bubble"] == pytest.approx(1 / 9)  # p=2, m=8: (p-1)/(m+p-1)
    assert 0 < facts[0]["measured_bubble"] < 1
    assert facts[0]["pipeline_bytes_sent"] > 0


def test_profile_balanced_split_is_recorded_and_still_exact(references, tmp_path):
    run_dir = train(tmp_path, "profile", [*GPT, "algorithm=pipeline", "gpus=2", "algorithm.balance=profile",
                                          "algorithm.microbatches=2"], None)
    assert_matches(references["gpt"], run_dir, 2)
    facts = read_summary(run_dir)["algorithm_facts_per_worker"]
    assert facts[0]["blocks_per_stage"] == facts[1]["blocks_per_stage"]  # every worker uses rank 0's split
    assert sum(facts[0]["blocks_per_stage"]) == 4 and len(facts[0]["profiled_block_seconds"]) == 4


def test_batchnorm_sees_each_microbatch_once(tmp_path, shared_data_dir):
    """The stages get their metadata up front (stage_examples): torch's own inference would run
    each stage's forward on the first step in train mode (on uninitialised tensors after the
    first stage), leaving one batch too many in BatchNorm's count and, at random, NaN in its
    running statistics."""
    steps, m = 2, 4
    run_dir = train(tmp_path, "bn", ["model=resnet20", "model.depth=8", "dataset=cifar10", "dtype=float32",
                                     f"steps={steps}", f"eval_every={steps}", "algorithm=pipeline", "gpus=2",
                                     f"algorithm.microbatches={m}"], {"MPBENCH_DATA_DIR": str(shared_data_dir)})
    state = merged_weights(run_dir, 2)
    counts = {k: int(v) for k, v in state.items() if k.endswith("num_batches_tracked")}
    assert len(counts) > 2 and set(counts.values()) == {steps * m}, counts
    assert all(torch.isfinite(v).all() for k, v in state.items() if "running_" in k)


@pytest.mark.parametrize("case", ["pipeline 1f1b", "pipeline zbv_zero_bubble", "hypar 2x2"])
def test_clipped_run_equals_clipped_backprop(case, references, tmp_path, shared_data_dir):
    """optimizer.clip_norm is one global norm over the stages of every worker (the tied embedding
    counted once): a clipped pipeline equals clipped backprop; the clip is active."""
    env, clip = {"MPBENCH_DATA_DIR": str(shared_data_dir)}, ["optimizer.clip_norm=0.05"]
    reference = train(tmp_path, "backprop", [*GPT, *clip, "algorithm=backprop"], env)
    algorithm, how = case.split()
    if algorithm == "hypar":
        setup, workers = ["algorithm=hypar", "gpus=4", "algorithm.partitions=2", "algorithm.microbatches=2"], 4
    else:
        v, m = SCHEDULES[how]
        setup, workers = ["algorithm=pipeline", "gpus=2", f"algorithm.schedule={how}", f"algorithm.stages_per_worker={v}",
                          f"algorithm.microbatches={m}"], 2
    assert_matches(reference, train(tmp_path, "clipped", [*GPT, *clip, *setup], env), workers)
    unclipped, clipped = merged_weights(references["gpt"], 1), merged_weights(reference, 1)
    assert max((unclipped[k] - clipped[k]).abs().max().item() for k in clipped) > 1e-6


def test_the_stage_methods_timed_here_still_exist():
    """TimedStage wraps these PipelineStage methods; a torch upgrade that renames one must fail here."""
    from torch.distributed.pipelining import PipelineStage
    for name in ("forward_one_chunk", "backward_one_chunk", "backward_weight_one_chunk",
                 "get_fwd_send_ops", "get_bwd_send_ops"):
        assert callable(getattr(PipelineStage, name, None)), name
