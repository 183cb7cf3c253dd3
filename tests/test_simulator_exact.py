"""The simulator against closed forms and published numbers: pipeline bubbles, exactly.

Every flush is simulated from per-stage costs by algorithms.simulated.pipeline_bubbles.flush,
with the pipeline plan's own task builder, on the one discrete-event engine
(mpbench.simulate.engine); nothing is profiled, nothing is trained.
"""

import pytest

from algorithms.simulated.pipeline_bubbles import flush, zb_h1, zb_h2
from algorithms.simulated.pipelines import rank_of_stage, torch_actions
from mpbench.simulate.engine import ScheduleDeadlock, Task, simulate

SIZES = [(p, m) for p in (2, 4, 8) for m in (p, 2 * p, 4 * p)]


def stages_on(ranks: int, per_rank: int, v_shaped: bool = False) -> list[int]:
    return [rank_of_stage(s, ranks, v_shaped) for s in range(ranks * per_rank)]


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p, m", SIZES)
@pytest.mark.parametrize("f, b, w", [(1, 1, 0), (1, 0.5, 0.5), (1, 2, 0)])
def test_gpipe_and_1f1b_bubble_is_p_minus_1_over_m_plus_p_minus_1(schedule, p, m, f, b, w):
    """GPipe (Huang et al. 2019) and 1F1B (Narayanan et al. 2019), no comm: (p-1)/(m+p-1)."""
    result = flush(torch_actions(schedule, p, 1, m), stages_on(p, 1), f, b, w, c=0.0)
    assert result.bubble == pytest.approx((p - 1) * (f + b + w), rel=1e-12)
    assert result.bubble_rate == pytest.approx((p - 1) / (m + p - 1), rel=1e-12)
    assert result.steady_bubble_rate == pytest.approx(result.bubble_rate, rel=1e-12)  # rank 0 starts and ends the flush


@pytest.mark.parametrize("v", [2, 3, 4])
@pytest.mark.parametrize("p, m", SIZES + [(4, 5), (4, 10), (8, 9), (8, 18)])
def test_interleaved_1f1b_is_megatrons_formula_whenever_m_is_at_least_p(p, m, v):
    """Megatron's interleaved 1F1B (Narayanan et al., SC 2021, §2.2): (p-1)/(v*m + p-1).

    torch's order reaches it for every m >= p it accepts, multiples of p or not (m = p+1, 2p+2)."""
    result = flush(torch_actions("interleaved_1f1b", p, v, m), stages_on(p, v), 1.0, 1.0, 0.0)
    assert result.bubble_rate == pytest.approx((p - 1) / (v * m + p - 1), rel=1e-12)


@pytest.mark.parametrize("p, v, m", [(4, 2, 2), (4, 3, 3), (8, 2, 4), (8, 3, 1), (3, 3, 2)])
def test_interleaved_1f1b_with_fewer_microbatches_than_ranks(p, v, m):
    """m < p: each of the v-1 chunk boundaries also waits p-m slots for microbatch 0 to come round
    the ring, so the bubble is (p-1 + (v-1)(p-m)) slots of one chunk's f+b, not Megatron's (p-1)."""
    f, b = 1.0, 1.0
    result = flush(torch_actions("interleaved_1f1b", p, v, m), stages_on(p, v), f, b, 0.0)
    assert result.bubble == pytest.approx((p - 1 + (v - 1) * (p - m)) * (f + b), rel=1e-12)
    assert result.bubble_rate > (p - 1) / (v * m + p - 1)


@pytest.mark.parametrize("p, m", SIZES)
def test_zbv_beats_1f1b_and_is_zero_bubble_in_steady_state(p, m):
    """ZB-V (Qi et al., "Pipeline Parallelism with Controllable Memory", 2024) with T_F = T_B = T_W
    per chunk and no comm. One isolated flush still pays the fill of the V, (p-1) T_F (the last rank
    waits for p-1 forwards); with m >= 2p nothing else idles, so per iteration, once consecutive
    iterations overlap, the bubble is 0. Either way far below 1F1B's (p-1)(F+B+W) on the same
    model (a rank's two chunks: F = 2 T_F, ...)."""
    chunk = 1.0
    zbv = flush(torch_actions("zbv_zero_bubble", p, 2, m), stages_on(p, 2, v_shaped=True), chunk, chunk, chunk)
    one_f_one_b = flush(torch_actions("1f1b", p, 1, m), stages_on(p, 1), 2 * chunk, 2 * chunk, 2 * chunk)
    assert zbv.busy == one_f_one_b.busy
    assert zbv.bubble < one_f_one_b.bubble == pytest.approx((p - 1) * 6 * chunk)
    if m >= 2 * p:
        assert zbv.bubble == pytest.approx((p - 1) * chunk, rel=1e-12)
        assert zbv.steady_bubble == pytest.approx(0.0, abs=1e-12)


# Qi et al., "Zero Bubble Pipeline Parallelism" (ICLR 2024), bubble-rate table (../shared/docs/PAPER_TABLES.md §5),
# f, b, w, c in µs. The paper computed every column with T_comm = c (its efficiency.py), 1F1B's and ZB-H1's too:
# their closed forms (p-1)(f+b+w) and (p-1)(f+b-w) are the c = 0 case; only ZB-H2's includes c.
PAPER_ROWS = [
    # p,  n,     f,     b,     w,   c,   1F1B,  ZB-H1,  ZB-H2
    (8, 24, 18522, 18086, 9337, 601, 0.2431, 0.1585, 0.1083),
    (8, 32, 18513, 18086, 9331, 626, 0.1985, 0.1242, 0.0837),
    (8, 64, 18546, 18097, 9321, 762, 0.1240, 0.0674, 0.0444),
    (8, 24, 29718, 29444, 19927, 527, 0.2347, 0.1323, 0.0698),
    (16, 48, 11347, 11248, 8132, 377, 0.2552, 0.1397, 0.0672),
    (32, 96, 10419, 10207, 7715, 408, 0.2646, 0.1421, 0.0641),
]


@pytest.mark.parametrize("p, n, f, b, w, c, rate_1f1b, rate_h1, rate_h2", PAPER_ROWS)
def test_zero_bubble_paper_table(p, n, f, b, w, c, rate_1f1b, rate_h1, rate_h2):
    """Bubble rate = bubble / (n(f+b+w) + bubble), to the table's 4 printed decimals."""
    ranks = stages_on(p, 1)
    one_f_one_b = flush(torch_actions("1f1b", p, 1, n), ranks, f, b, w, c)
    h1 = flush(zb_h1(p, n), ranks, f, b, w, c)
    h2 = flush(zb_h2(p, n), ranks, f, b, w, c)
    for result in (one_f_one_b, h1, h2):
        assert set(result.busy.values()) == {n * (f + b + w)}
    assert abs(one_f_one_b.bubble_rate - rate_1f1b) <= 5e-5
    assert abs(h1.bubble_rate - rate_h1) <= 5e-5
    # ZB-H2's flush is a parallelogram: the paper counts each rank from its first action (steady state)
    assert abs(h2.steady_bubble_rate - rate_h2) <= 5e-5


@pytest.mark.parametrize("p, n, f, b, w, c", [row[:6] for row in PAPER_ROWS])
def test_zero_bubble_closed_forms(p, n, f, b, w, c):
    """§3.1: 1F1B (p-1)(T_F+T_B+T_W) and ZB-H1 (p-1)(T_F+T_B-T_W) without comm;
    ZB-H2 (p-1)(T_F+T_B+2T_comm-2T_W) with it, in the steady-state measure."""
    ranks = stages_on(p, 1)
    assert flush(torch_actions("1f1b", p, 1, n), ranks, f, b, w, 0).bubble == (p - 1) * (f + b + w)
    assert flush(zb_h1(p, n), ranks, f, b, w, 0).bubble == (p - 1) * (f + b - w)
    assert flush(zb_h2(p, n), ranks, f, b, w, c).steady_bubble == (p - 1) * (f + b + 2 * c - 2 * w)


def test_zb_h1_keeps_1f1b_warm_up_and_h2_doubles_it():
    """Forwards before rank r's first backward: p - r (1F1B's peak memory) in ZB-H1, 2(p-r) - 1 in ZB-H2."""
    p, n = 4, 12
    for schedule, expected in ((zb_h1, lambda r: p - r), (zb_h2, lambda r: 2 * (p - r) - 1)):
        for rank, actions in schedule(p, n).items():
            kinds = [kind for kind, _, _ in actions]
            assert kinds.index("I") == expected(rank)
            assert sorted(a for a in actions if a[0] == "W") == [("W", rank, i) for i in range(n)]


def test_flush_with_an_impossible_order_deadlocks():
    """Rank 0 runs its backward before the forward the backward depends on."""
    order = {0: [("B", 0, 0), ("F", 0, 0)], 1: [("F", 1, 0), ("B", 1, 0)]}
    with pytest.raises(ScheduleDeadlock):
        flush(order, [0, 1], 1.0, 1.0, 0.0)


def test_engine_cycle_raises_schedule_deadlock():
    a = Task("a", (0, "compute"), 1.0, "forward", needs=(("b", 0.0),))
    b = Task("b", (1, "compute"), 1.0, "forward", needs=(("a", 0.0),))
    with pytest.raises(ScheduleDeadlock):
        simulate({(0, "compute"): [a], (1, "compute"): [b]})


def test_engine_group_starts_every_member_when_the_last_is_ready():
    """A collective starts on all its members together, at the latest member's readiness."""
    lanes = {
        (0, "compute"): [Task("x0", (0, "compute"), 1.0, "forward"),
                         Task("ar0", (0, "compute"), 2.0, "allreduce", group="ar")],
        (1, "compute"): [Task("x1", (1, "compute"), 5.0, "forward"),
                         Task("ar1", (1, "compute"), 2.0, "allreduce", group="ar")],
        (2, "compute"): [Task("ar2", (2, "compute"), 2.0, "allreduce", needs=(("x0", 3.0),), group="ar")],
    }
    timeline = simulate(lanes)
    assert timeline.start["ar0"] == timeline.start["ar1"] == timeline.start["ar2"] == 5.0
    assert timeline.end["ar0"] == timeline.end["ar1"] == timeline.end["ar2"] == 7.0
