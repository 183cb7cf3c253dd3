"""The profiler: what it measures of each block, what it keeps on disk (one profile, frozen, for
every point of a sweep), and how it fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpbench.blocks import BlockModel
from mpbench.errors import ConfigError
from mpbench.optim import make_optimizer
from mpbench.config import OptimizerSpec
from mpbench.simulate.costs import Profiler


def small_model() -> BlockModel:
    torch.manual_seed(0)
    return BlockModel([nn.Sequential(nn.Linear(32, 64), nn.ReLU()), nn.Linear(64, 64), nn.Linear(64, 5)],
                      task="classification")


def profiler(model, store=None, **options) -> Profiler:
    inputs, targets = torch.randn(16, 32), torch.randint(0, 5, (16,))
    return Profiler(model, inputs, targets, lambda params: make_optimizer(params, OptimizerSpec(name="adamw")),
                    repeats=3, store=store, **options)


def test_each_block_has_times_and_bytes():
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    costs = profiler(model).blocks(16)
    assert len(costs) == 3
    for c, block in zip(costs, model.blocks):
        assert c.forward_s > 0 and c.backward_s > 0 and c.optimizer_s > 0
        assert c.backward_input_s >= 0 and c.backward_weight_s >= 0
        assert c.parameter_bytes == sum(p.numel() * 4 for p in block.parameters())
    assert costs[0].output_bytes == 16 * 64 * 4 and costs[1].output_bytes == 16 * 64 * 4
    assert costs[0].kept_bytes > 0  # ReLU's output and the block's input, saved for the backward
    # the profile leaves the model as it found it: same weights, no gradients
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_a_batch_larger_than_the_rows_profiled_is_extrapolated_linearly():
    inputs, targets = torch.randn(8, 32), torch.randint(0, 5, (8,))
    capped = Profiler(small_model(), inputs, targets, lambda params: make_optimizer(params, OptimizerSpec(name="adamw")),
                      repeats=3, batch_size=64)
    at_8, at_32, at_64, at_100 = capped.blocks(8), capped.blocks(32), capped.blocks(64), capped.blocks(100)
    assert capped.rows_timed == [8]  # nothing above the rows it holds is timed
    for a, b, c, d in zip(at_8, at_32, at_64, at_100):
        assert b.forward_s == pytest.approx(4 * a.forward_s) and c.backward_s == pytest.approx(8 * a.backward_s)
        assert b.output_bytes == 4 * a.output_bytes and c.kept_bytes == 8 * a.kept_bytes
        assert c.optimizer_s == a.optimizer_s and c.parameter_bytes == a.parameter_bytes  # per step, not per row
        assert d == c  # no more than the run's batch
    head = capped.head("probe", lambda: nn.Linear(64, 5), 0, lambda m, h, t: nn.functional.cross_entropy(m(h), t))
    assert head == capped.head("probe", None, 0, None)  # timed once, on the 8 rows held
    assert head.forward_s == pytest.approx(8 * capped._heads["'probe'"].forward_s)


def test_a_faster_worker_divides_every_compute_time_and_nothing_else(tmp_path):
    store = tmp_path / "profile.json"
    here = profiler(small_model(), store, trainer_step=lambda: 0.002)
    costs, overhead = here.blocks(16), here.step_overhead_s()
    assert overhead == pytest.approx(0.002)
    faster = profiler(small_model(), store)  # the same kept profile, read as workers 4 times as fast
    faster.worker_speed = 4.0
    for a, b in zip(costs, faster.blocks(16)):
        assert b.forward_s == pytest.approx(a.forward_s / 4) and b.backward_weight_s == pytest.approx(a.backward_weight_s / 4)
        assert b.optimizer_s == pytest.approx(a.optimizer_s / 4) and b.check_s == pytest.approx(a.check_s / 4)
        assert (b.output_bytes, b.kept_bytes, b.parameter_bytes) == (a.output_bytes, a.kept_bytes, a.parameter_bytes)
    assert faster.step_overhead_s() == pytest.approx(overhead / 4)


def test_the_trainer_checks_each_blocks_weights_and_a_block_without_any_costs_nothing():
    torch.manual_seed(0)
    model = BlockModel([nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 5)], task="classification")
    costs = profiler(model).blocks(16)
    assert costs[0].check_s > 0 and costs[2].check_s > 0 and costs[1].check_s == 0.0


def test_a_disturbed_timing_is_taken_again_at_once_then_flagged_and_never_retaken_by_a_later_point(tmp_path, monkeypatch):
    import mpbench.simulate.costs as costs
    busy = {"interference": "other processes used 1.0 cores meanwhile"}
    monkeypatch.setattr(costs, "load_record", lambda before, after, spread: busy)
    taken = []
    real_profile = Profiler._profile
    monkeypatch.setattr(Profiler, "_profile", lambda self, rows: taken.append(rows) or real_profile(self, rows))
    store = tmp_path / "profile.json"
    first = profiler(small_model(), store, retake_disturbed=True)
    first.blocks(16)
    assert taken == [16, 16]  # the base, once more at once
    assert first.record()["entries"]["whole step"]["disturbed"] == busy["interference"]
    assert first.interference.startswith("profile timings disturbed (optimizer: other processes used 1.0 cores")
    assert "3 more of the 4 it used" in first.interference  # the first one's cause and a count of the others
    busy = {"interference": None}  # a quiet machine: a later point of the sweep still reads the flagged timings
    taken.clear()
    second = profiler(small_model(), store, retake_disturbed=True)
    assert second.blocks(16) == first.blocks(16) and taken == []
    assert second.id == first.id and second.interference == first.interference
    second.blocks(8)  # a size first needed now: timed (quietly) and added, the base untouched
    assert taken == [8] and second.id == first.id
    entries = second.record()["entries"]
    assert entries["rows 8"]["disturbed"] is None and entries["rows 16"]["disturbed"]


def test_a_size_first_needed_by_a_later_point_is_scaled_to_the_bases_moment(tmp_path, monkeypatch):
    store = tmp_path / "profile.json"
    anchor = iter([0.010, 0.030])  # the base's anchor, then the later point's: a machine 3x slower
    monkeypatch.setattr(Profiler, "_time_anchor", lambda self: next(anchor))
    first = profiler(small_model(), store)
    first.blocks(16)
    later = profiler(small_model(), store)
    costs = later.blocks(8)
    assert later.record()["entries"]["rows 8"]["scaled_by"] == pytest.approx(1 / 3)
    raw = later._blocks[8]  # kept as timed: the reader sees the timing and the factor
    for c, r in zip(costs, raw):
        assert c.forward_s == pytest.approx(r.forward_s * later.compute_scale() / 3)
    assert later.record()["entries"]["rows 16"]["scaled_by"] == 1.0  # the base is the reference
    first_size_8 = profiler(small_model(), store).blocks(8)  # a third point reads it, times nothing
    assert first_size_8 == costs


def test_points_that_run_at_once_take_the_base_once(tmp_path, monkeypatch):
    store = tmp_path / "profile.json"
    early, late = profiler(small_model(), store), profiler(small_model(), store)  # both found no profile
    early.blocks(16)

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again")
    monkeypatch.setattr(Profiler, "_profile", no_timing)
    monkeypatch.setattr(Profiler, "_time_whole_step", no_timing)
    assert late.blocks(16) == early.blocks(16) and late.id == early.id  # the kept one stands


def test_a_kept_profile_is_read_back_without_timing_again(tmp_path, monkeypatch):
    store = tmp_path / "profile.json"
    first = profiler(small_model(), store)
    costs, scale = first.blocks(8), first.compute_scale()
    assert store.exists()

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again")
    monkeypatch.setattr(Profiler, "_profile", no_timing)
    monkeypatch.setattr(Profiler, "_time_whole_step", no_timing)
    second = profiler(small_model(), store)
    assert second.blocks(8) == costs and second.compute_scale() == scale and second.id == first.id


def test_a_damaged_or_foreign_profile_is_refused_in_one_line(tmp_path):
    store = tmp_path / "profile.json"
    profiler(small_model(), store, workload={"model": "a"}).blocks(16)
    with pytest.raises(ConfigError, match="another workload .*differs in model"):
        profiler(small_model(), store, workload={"model": "b"})
    store.write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        profiler(small_model(), store)
    assert "cannot be read" in str(caught.value) and "\n" not in str(caught.value)


def test_the_whole_step_ties_the_parts_together():
    p = profiler(small_model(), trainer_step=lambda: 0.001)
    scale = p.compute_scale()
    assert scale > 0
    parts = sum(c.forward_s + c.backward_s + c.optimizer_s for c in p.blocks(16))
    assert parts == pytest.approx(p._whole_step_s, rel=1e-9)  # scaled parts make the whole, either way
    assert p.step_overhead_s() == pytest.approx(0.001)  # the trainer's own work, not the residual


def test_batchnorm_statistics_and_random_streams_are_left_as_found():
    """balance=profile times worker 0's own model: its BatchNorm statistics and dropout draws
    must be those of a run that did not profile."""
    torch.manual_seed(0)
    model = BlockModel([nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.Dropout(0.5)), nn.Linear(64, 5)],
                       task="classification")
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    p = profiler(model)
    rng = torch.get_rng_state()
    p.blocks(16), p.compute_scale(), p.blocks(8)
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_profile_that_cannot_be_taken_is_one_line():
    class OutOfMemory(nn.Module):
        def forward(self, x):
            raise RuntimeError("CUDA out of memory. Tried to allocate 80 GiB\nmore details")

    model = BlockModel([nn.Linear(32, 8), OutOfMemory()], task="classification")
    with pytest.raises(ConfigError) as caught:
        profiler(model).blocks(16)
    message = str(caught.value)
    assert "\n" not in message and "out of memory" in message and "could not be taken" in message
