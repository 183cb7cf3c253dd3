"""Yang et al., "Ouroboros" (NeurIPS 2019): `ouroboros_k`, the K-sweep that stands in for the
tables the paper does not print (docs/algorithms/stale_gradient.md).

Rows are K = 1 (backprop) to 5 modules, plus the staleness semantics H and R at K = 3 (S is the
default). Columns: tiny-shakespeare bits per character and WikiText-2 perplexity (final, held
out; trained in one process, runtime=emulated), and the speed-up over data parallelism at the
workers K modules take in a ring (K - 1): measured where this machine holds them without
oversubscription (2 workers, one thread each), simulated (simulate=true, from this machine's
profile) at 2 and 4, each in its own column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.paper.claims import FAILS, HOLDS, UNRESOLVED, Claim, Verdict, all_of, ordered
from analysis.paper.registry import Ours, PaperTable, register
from analysis.paper.runs import Point, final_metric, mean_std, run_points, timed

PRESET = "ouroboros_k"
KS = (1, 2, 3, 4, 5)
SEMANTICS_AT = 3  # K of the S / H / R ablation
BPC, PPL = "tiny-shakespeare bits per char", "WikiText-2 perplexity"
SPEEDUP, SIM_SPEEDUP = "speed-up over data parallel", "speed-up over data parallel, simulated"
WIKITEXT = ("dataset=wikitext2", "batch_size=16", "dataset.seq_len=32")  # a 33k-word softmax: fewer tokens per step


@dataclass(frozen=True)
class Scale:
    steps: int  # tiny-shakespeare
    wikitext_steps: int
    wikitext_ks: tuple[int, ...]
    seeds: tuple[int, ...]
    timed_steps: int = 30  # the measured speed-up: a median over these steps
    measured_workers: tuple[int, ...] = (2,)
    simulated_workers: tuple[int, ...] = (2, 4)


SCALES = {"quick": Scale(1000, 150, (1, 3, 5), (0,)),
          "full": Scale(20000, 5000, KS, (0, 1, 2), measured_workers=(2,), simulated_workers=(2, 3, 4))}


def label(k: int, semantics: str = "S") -> str:
    return "K=1 (backprop)" if k == 1 else f"K={k}" + ("" if semantics == "S" else f", {semantics}")


def trained(k: int, steps: int, semantics: str = "S", dataset: tuple[str, ...] = ()) -> Point:
    method = ("algorithm=backprop",) if k == 1 else \
        ("algorithm=ouroboros", f"algorithm.modules={k}", f"algorithm.semantics={semantics}", "algorithm.runtime=emulated")
    run = f"k{k}_{semantics.lower()}_{'wikitext2' if dataset else 'shakespeare'}"
    return Point(label(k, semantics), (*method, *dataset, f"steps={steps}", f"eval_every={steps}"), run=run)


ROWS = [(k, "S") for k in KS] + [(SEMANTICS_AT, "H"), (SEMANTICS_AT, "R")]  # (K, semantics)


def points(s: Scale) -> tuple[list[Point], list[Point], list[Point]]:
    shakespeare = [trained(k, s.steps, semantics) for k, semantics in ROWS]
    wikitext = [trained(k, s.wikitext_steps, dataset=WIKITEXT) for k in s.wikitext_ks]
    speed = [timed(f"{a} on {w} workers", a, w, s.timed_steps, simulate) for simulate in (False, True)
             for w in (s.simulated_workers if simulate else s.measured_workers) for a in ("data_parallel", "ouroboros")]
    return shakespeare, wikitext, speed


def _means(runs_dir: Path, pts: list[Point], seeds: list[int], column: str) -> tuple[dict[str, float | None], list[str]]:
    values, missing = final_metric(runs_dir, pts, seeds, column)
    return {p.label: mean_std(values[p.label])[0] for p in pts}, missing


def table(scale: str, results: Path) -> Ours:
    s = SCALES[scale]
    seeds = list(s.seeds)
    runs_dir = results / f"runs-{scale}"
    shakespeare, wikitext, speed = points(s)
    commands = run_points(PRESET, shakespeare + wikitext + speed, [], seeds, runs_dir)
    bpc, missing = _means(runs_dir, shakespeare, seeds, "eval_bits_per_char")
    ppl, missing_ppl = _means(runs_dir, wikitext, seeds, "eval_perplexity")
    step, missing_step = _means(runs_dir, [p for p in speed if "measured" in p.label], seeds, "time_per_iter_median_s")
    sim, missing_sim = _means(runs_dir, [p for p in speed if "simulated" in p.label], seeds, "sim_step_s")
    rows = []
    for k, semantics in ROWS:
        name, workers = label(k, semantics), k - 1
        row = {"configuration": name, BPC: bpc[name], PPL: ppl.get(name), SPEEDUP: None, SIM_SPEEDUP: None}
        if semantics == "S" and k > 1:  # the speed-up is the default configuration's
            row[SPEEDUP] = _ratio(step.get(f"data_parallel on {workers} workers, measured"),
                                  step.get(f"ouroboros on {workers} workers, measured"))
            row[SIM_SPEEDUP] = _ratio(sim.get(f"data_parallel on {workers} workers, simulated"),
                                      sim.get(f"ouroboros on {workers} workers, simulated"))
        rows.append(row)
    note = (f"a 4-layer, d 64 Transformer (the paper: Transformer-XL), tiny-shakespeare {s.steps} steps of 32 x 64 "
            f"characters, WikiText-2 {s.wikitext_steps} steps of 16 x 32 words at K = {', '.join(map(str, s.wikitext_ks))}, "
            f"{len(seeds)} seed(s); speed-up = data parallel's time per iteration over Ouroboros's on the same workers, "
            f"measured on this machine's CPU cores (one thread per worker, {s.timed_steps} steps) and simulated from its "
            f"profile (mpbench/simulate), never in one column")
    return Ours(pd.DataFrame(rows), how={BPC: "measured", PPL: "measured", SPEEDUP: "measured", SIM_SPEEDUP: "simulated"},
                scale_note=note, commands=commands, missing=missing + missing_ppl + missing_step + missing_sim)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


# Bits per char and perplexity of one seed: a gap under these decides nothing.
BPC_NOISE, PPL_RELATIVE_NOISE = 0.05, 0.05


def _column(ours: pd.DataFrame, column: str) -> dict[str, float | None]:
    return {r["configuration"]: (None if pd.isna(r[column]) else float(r[column])) for _, r in ours.iterrows()}


def comparable_accuracy(column: str, tolerance: Callable[[float], float]) -> Callable[..., Verdict]:
    """Every K (semantics S) at most backprop's number plus the noise (lower is better): "comparable
    or better accuracy"; holds if every K does, fails if any does not."""
    def check(paper, ours: pd.DataFrame) -> Verdict:
        values = _column(ours, column)
        bp = values.get(label(1))
        ks = {name: v for name, v in values.items() if name != label(1) and "," not in name and v is not None}
        if bp is None or not ks:
            return Verdict(UNRESOLVED, f"{column}: backprop or every Ouroboros run is missing")
        verdicts = [ordered({label(1): bp, name: v}, noise=tolerance(bp), or_equal=True) for name, v in ks.items()]
        return all_of(verdicts)
    return check


def faster_than_data_parallel(column: str) -> Callable[..., Verdict]:
    def check(paper, ours: pd.DataFrame) -> Verdict:
        values = {k: v for k, v in _column(ours, column).items() if v is not None}
        if not values:
            return Verdict(UNRESOLVED, f"no {column}")
        slower = {k: v for k, v in values.items() if v <= 1.0}
        shown = ", ".join(f"{k} {v:.3g}x" for k, v in values.items())
        return Verdict(FAILS if slower else HOLDS, shown)
    return check


register(PaperTable(
    name="ouroboros_k",
    title="Ouroboros: accuracy against K, the staleness semantics, and the speed-up over data parallelism",
    comparison="the paper's optimizer for every K (no per-method tuning); speed-up measured and simulated, "
               "in separate columns",
    budgets={"quick": "4-layer d 64 Transformer: 7 tiny-shakespeare runs of 1000 steps, 3 WikiText-2 runs of 150 steps, "
                      "2 timed and 4 simulated runs, 1 seed: about 20 minutes on 2 CPU cores",
             "full": "the same model, 20k and 5k steps, every K on both datasets, 3 seeds: hours on 2 CPU cores "
                     "(not run here)"},
    ours=table,
    claims=(Claim("comparable or better accuracy than backprop: every K's bits per char at most backprop's + 0.05 "
                  "(tiny-shakespeare)", comparable_accuracy(BPC, lambda bp: BPC_NOISE)),
            Claim("comparable or better accuracy than backprop: every K's perplexity at most backprop's + 5% (WikiText-2)",
                  comparable_accuracy(PPL, lambda bp: PPL_RELATIVE_NOISE * bp)),
            Claim("faster than data parallelism on the same workers (measured)", faster_than_data_parallel(SPEEDUP)),
            Claim("faster than data parallelism on the same workers (simulated)", faster_than_data_parallel(SIM_SPEEDUP))),
))
