"""Qi et al., "Zero Bubble Pipeline Parallelism" (ICLR 2024): the bubble-rate table, by the simulator.

Every cell is one simulated flush (algorithms/simulated/pipeline_bubbles.py) of the schedule on
the paper's published per-stage costs: 1F1B in torch's own order, ZB-H1 and ZB-H2 as the paper
draws them (§3.1). Nothing is trained or profiled, so both scales are the same seconds-long run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from algorithms.simulated.pipeline_bubbles import flush, zb_h1, zb_h2
from algorithms.simulated.pipelines import torch_actions
from analysis.paper.claims import HOLDS, Claim, Verdict, equal_to_paper, ordered
from analysis.paper.registry import Ours, PaperTable, load_published, register

SCHEDULES = {"1F1B": lambda p, n: torch_actions("1f1b", p, 1, n), "ZB-H1": zb_h1, "ZB-H2": zb_h2}


def bubble_rates(p: int, n: int, f: float, b: float, w: float, c: float) -> dict[str, float]:
    """The three schedules' bubble rates on p ranks (stage r on rank r). ZB-H2's flush is a
    parallelogram, which the paper counts per rank from its first action (the steady state)."""
    rates = {}
    for name, schedule in SCHEDULES.items():
        result = flush(schedule(p, n), list(range(p)), f, b, w, c)
        rates[name] = result.steady_bubble_rate if name == "ZB-H2" else result.bubble_rate
    return rates


def every_row_ordered(ours: pd.DataFrame) -> Verdict:
    verdicts = [ordered({"1F1B": r["1F1B"], "ZB-H1": r["ZB-H1"], "ZB-H2": r["ZB-H2"]}, noise=0.0)
                for _, r in ours.iterrows()]
    failing = [v for v in verdicts if v.status != HOLDS]
    return failing[0] if failing else Verdict(HOLDS, f"all {len(verdicts)} rows")


def ours(scale: str, results: Path) -> Ours:
    published = load_published("zero_bubble_rates")
    rows = [{**dict(zip(published.key, key)), **bubble_rates(*key)}
            for key in published.rows[published.key].itertuples(index=False)]
    return Ours(pd.DataFrame(rows), how="simulated",
                scale_note="the paper's own costs, simulated by mpbench's discrete-event engine: the same scale")


register(PaperTable(
    name="zero_bubble_rates",
    title="Zero-bubble pipeline schedules: bubble rates of 1F1B, ZB-H1, ZB-H2",
    comparison="exact: the simulator on the published costs",
    budgets={"quick": "seconds (simulated, nothing trained)", "full": "the same as quick"},
    ours=ours,
    claims=(Claim("Every bubble rate is the paper's, within half a unit of its 4th printed decimal",
                  equal_to_paper(["1F1B", "ZB-H1", "ZB-H2"], decimals=4)),
            Claim("On every row ZB-H2 < ZB-H1 < 1F1B", lambda paper, ours: every_row_ordered(ours))),
))
