"""The plans on made-up costs, against step times and memory worked out by hand.

A fake profile gives every block the same f, b, w and bytes, so each family's steady step and
peak memory follow from its schedule alone (docs/simulator.md says what each plan models).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from algorithms.data_parallel import DataParallelSettings
from algorithms.diloco import DiLoCoSettings
from algorithms.pipeline import PipelineSettings
from algorithms.stale_gradient.family import StaleGradientSettings
from algorithms.stale_gradient.pipedream_2bw import PipeDream2BWSettings
from mpbench.simulate.costs import BlockCost
from mpbench.simulate.link import Link
from mpbench.simulate.plan import Setup
from mpbench.simulate.simulation import iterations_for, run_plan

FREE = Link(0.0, float("inf"), "test: free")


@dataclass
class FakeCosts:
    """Every block: f forward, b backward-input, w backward-weight, o optimizer (seconds), at any rows."""

    blocks_n: int = 8
    f: float = 1.0
    b: float = 1.0
    w: float = 1.0
    o: float = 0.0
    kept: int = 100
    params: int = 1000
    overhead: float = 0.0  # the trainer's own work per step
    check: float = 0.0  # the trainer's finiteness check of one block's weights
    per_row: bool = False  # costs proportional to the rows (a shard of B/N costs 1/N)
    batch: int = 64

    def blocks(self, rows: int) -> tuple[BlockCost, ...]:
        scale = rows / self.batch if self.per_row else 1.0
        return tuple(BlockCost(self.f * scale, self.b * scale, self.w * scale, self.o, 10, self.kept, self.params,
                               self.check) for _ in range(self.blocks_n))

    def step_overhead_s(self) -> float:
        return self.overhead


def setup(algorithm: str, workers: int, settings, costs: FakeCosts, link: Link = FREE, state_copies: int = 2) -> Setup:
    base = Setup(algorithm=algorithm, workers=workers, batch_size=costs.batch, element_bytes=4, settings=settings,
                 costs=costs, model=None, link=link, state_copies=state_copies, iterations=0)
    return Setup(**{**base.__dict__, "iterations": iterations_for(base)})


def test_backprop_is_the_sum_of_its_parts():
    costs = FakeCosts(o=0.5, overhead=0.25)
    ran = run_plan(setup("backprop", 1, None, costs))
    assert ran.step_s == pytest.approx(8 * (1 + 1 + 1 + 0.5) + 0.25)
    assert ran.idle_s == [pytest.approx(0.0)]
    # weights, gradients and Adam's two moments, plus every block's kept activations at the peak
    assert ran.peak_memory_bytes == [8 * 1000 * 4 + 8 * 100]


def test_the_overhead_is_apart_from_the_compute_and_each_worker_checks_the_weights_it_holds():
    costs = FakeCosts(o=0.5, overhead=0.25, check=0.125)
    ran = run_plan(setup("backprop", 1, None, costs))
    assert ran.busy_s == [pytest.approx(8 * (1 + 1 + 1 + 0.5))]  # the plan's compute only
    assert ran.overhead_s == [pytest.approx(0.25 + 8 * 0.125)]
    assert ran.step_s == pytest.approx(ran.busy_s[0] + ran.overhead_s[0]) and ran.idle_s == [pytest.approx(0.0)]
    # a 4-stage pipeline: each worker checks its own 2 blocks; data parallelism: every replica all 8
    staged = run_plan(setup("pipeline", 4, PipelineSettings(schedule="gpipe", microbatches=4), costs))
    assert staged.overhead_s == [pytest.approx(0.25 + 2 * 0.125)] * 4
    replicas = run_plan(setup("data_parallel", 4, DataParallelSettings(), costs))
    assert replicas.overhead_s == [pytest.approx(0.25 + 8 * 0.125)] * 4
    for run in (staged, replicas):
        for busy, overhead, idle in zip(run.busy_s, run.overhead_s, run.idle_s):
            assert busy + overhead + idle == pytest.approx(run.step_s)


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_data_parallel_on_a_free_link_divides_the_compute(workers):
    costs = FakeCosts(per_row=True)
    ran = run_plan(setup("data_parallel", workers, DataParallelSettings(), costs))
    assert ran.step_s == pytest.approx(8 * 3 / workers)


def test_data_parallel_all_reduce_overlaps_the_backward_but_the_last_bucket_does_not():
    # 8 blocks of 1 MB of parameters: 1 MiB first bucket (block 7 alone), then 25 MB buckets.
    costs = FakeCosts(params=1 << 20, per_row=True)
    link = Link(0.0, float(1 << 20), "test: 1 MiB/s")  # 2 workers: an all-reduce of n bytes takes n / β
    ran = run_plan(setup("data_parallel", 2, DataParallelSettings(bucket_cap_mb=25.0), costs, link))
    compute = 8 * 3 / 2
    # Bucket 0 (block 7, 1 s to reduce) starts after block 7's backward (at 4 + 1 s) and ends
    # while blocks 6..0 run theirs; bucket 1 (blocks 6..0, 7 s) starts when block 0's ends.
    assert ran.step_s == pytest.approx(compute + 7.0)
    assert ran.comm_s[0] == pytest.approx(1.0 + 7.0, abs=1e-3)  # (+ the 32-byte loss reduction)


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 16)])
def test_gpipe_and_1f1b_flush_in_m_plus_p_minus_1_slots(p, m):
    costs = FakeCosts(blocks_n=p, per_row=False)
    for schedule in ("gpipe", "1f1b"):
        settings = PipelineSettings(schedule=schedule, microbatches=m)
        ran = run_plan(setup("pipeline", p, settings, costs))
        slot = 1 + 2  # f + (b + w) per stage and microbatch
        assert ran.step_s == pytest.approx((m + p - 1) * slot), schedule
        assert ran.idle_fraction[0] == pytest.approx((p - 1) / (m + p - 1)), schedule


def test_ddg_overlaps_the_delayed_backward_with_the_next_forward():
    # K = 2 modules of 4 blocks: worker 1 runs F1(t), B1(t); worker 0 F0(t+1), B0(t) in the meantime.
    costs = FakeCosts(blocks_n=8)
    ran = run_plan(setup("ddg", 2, StaleGradientSettings(placement="linear", semantics="S"), costs))
    per_module = 4 * 3.0
    assert ran.step_s == pytest.approx(per_module)  # half of backprop's 24 s


def test_stale_semantics_cost_and_memory():
    costs = FakeCosts(blocks_n=8)
    s_run = run_plan(setup("ddg", 2, StaleGradientSettings(semantics="S"), costs))
    r_run = run_plan(setup("features_replay", 2, StaleGradientSettings(semantics="R"), costs))
    # R replays module 0's forward in its delayed backward: worker 0 does 4 more seconds
    assert r_run.step_s == pytest.approx(s_run.step_s + 4.0)
    held = 4 * 1000 * 4  # module of 4 blocks: weights, gradients, two Adam moments
    # S keeps two batches of module 0 (delay 1), each its activations and a weight copy
    assert s_run.peak_memory_bytes[0] == held + 2 * (4 * 100 + 4 * 1000)
    # R keeps only module 0's input (the model's input: 0 bytes here) per batch
    assert r_run.peak_memory_bytes[0] == held


def test_ouroboros_ring_puts_the_first_and_last_module_on_worker_0():
    costs = FakeCosts(blocks_n=9)
    ran = run_plan(setup("ouroboros", 2, StaleGradientSettings(placement="ring"), costs))
    assert ran.timeline.workers == [0, 1]
    labels = {t.label for t in ran.timeline.on(0)}
    assert {"F0", "F2", "B0", "B2"} <= labels


def test_a_slower_link_never_makes_a_step_faster():
    costs = FakeCosts(blocks_n=8, per_row=True)
    settings = PipelineSettings(schedule="1f1b", microbatches=8)
    times = [run_plan(setup("pipeline", 4, settings, costs, Link(latency, 1e9, "test"))).step_s
             for latency in (0.0, 0.01, 0.1)]
    assert times == sorted(times) and times[0] < times[-1]


@pytest.mark.parametrize("H", [1, 4])
def test_diloco_charges_each_step_one_H_th_of_its_parameter_all_reduce(H):
    # 2 replicas of one worker, 8 blocks of 1 MiB: a 2-worker all-reduce of n bytes takes n / β = 8 s.
    costs = FakeCosts(params=1 << 20, per_row=True)
    link = Link(0.0, float(1 << 20), "test: 1 MiB/s")
    ran = run_plan(setup("diloco", 2, DiLoCoSettings(partitions=1, microbatches=1, inner_steps=H), costs, link))
    assert ran.step_s == pytest.approx(8 * 3 / 2 + 8.0 / H, abs=1e-3)


@pytest.mark.parametrize("p,m", [(2, 4), (4, 4), (4, 8)])
def test_pipedream_2bw_never_flushes_so_a_step_is_m_slots(p, m):
    # Equal stages, free link: after the first iteration each stage runs m forwards and m
    # backwards per step back to back, where 1F1B with a flush takes m + p - 1 slots.
    costs = FakeCosts(blocks_n=p, per_row=False)
    ran = run_plan(setup("pipedream_2bw", p, PipeDream2BWSettings(microbatches=m), costs))
    assert ran.step_s == pytest.approx(m * 3.0)
    assert ran.idle_fraction[0] == pytest.approx(0.0, abs=1e-9)
