"""Belilovsky, Eickenberg, Oyallon, "Decoupled Greedy Learning of CNNs" (ICML 2020): DGL against
backprop, DNI and cDNI on a small CIFAR-10 CNN (`dgl_dni_cnn`), from the authors' released logs
(eugenium/DGL, `dni_comparisons/`).

Every method trains models/dgl_cnn.py with the authors' recipe (Adam 3e-5, batch 256;
experiments/experiment/paper/dgl_dni_cnn.yaml), the local methods in one process (their emulated
runtime: the same updates as the workers). The splits follow the authors' scripts: DGL has three
modules, the last being conv 3 and the classifier (`dgl`, groups=3, balance [1,1,2]); DNI puts a
synthesizer after each of the three conv layers and trains the classifier on the true loss
(`dni`, groups=4), cDNI the same with label-conditioned synthesizers. Where the logs are silent:
the synthesizers step with the model's learning rate (3e-5: the authors step both with one Adam)
and are as wide as the network at every scale, like the auxiliary classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.paper.claims import Claim, all_of, close, noise, ordered
from analysis.paper.registry import Ours, PaperTable, register
from analysis.paper.runs import Point, final_metric, mean_std, run_points

PRESET = "dgl_dni_cnn"
STEPS_PER_EPOCH = 196  # 50k training images at batch 256, the last batch smaller (the authors' loader)
EVAL_IMAGES = 10_000  # eval_batches=40 of 256 in the preset: the whole test set


def points(width: int) -> list[Point]:
    """The table's rows; the synthesizers are as wide as the network (`width`)."""
    dni = ("algorithm=dni", "algorithm.groups=4", "algorithm.balance=[1,1,1,1]", "algorithm.runtime=emulated",
           "algorithm.synthesizer_lr=3e-5", f"algorithm.synthesizer_width={width}")
    return [Point("BP", ("algorithm=backprop",)),
            Point("DGL", ("algorithm=dgl", "algorithm.groups=3", "algorithm.balance=[1,1,2]",
                          "algorithm.runtime=emulated")),
            Point("cDNI", (*dni, "algorithm.conditioned=true")),
            Point("DNI", dni)]


@dataclass(frozen=True)
class Scale:
    """How far the runs are from the paper's (128 filters, 1500 to 2000 epochs, one run each)."""

    width: int
    steps: int
    seeds: tuple[int, ...]

    def overrides(self) -> list[str]:
        return [f"model.width={self.width}", f"steps={self.steps}", f"eval_every={self.steps}"]

    def note(self) -> str:
        return (f"{self.width} filters (the paper: 128), {self.steps} iterations = {self.steps / STEPS_PER_EPOCH:.3g} "
                f"epochs (the paper: 1500 for DGL, 2000 for the others), {len(self.seeds)} seed(s) (mean ± std; the "
                f"paper: one run), final accuracy on all {EVAL_IMAGES} test images")


SCALES = {"quick": Scale(32, 400, (0,)), "full": Scale(128, 1500 * STEPS_PER_EPOCH, (0, 1, 2))}


def table(scale: str, results: Path) -> Ours:
    s = SCALES[scale]
    runs_dir = results / f"runs-{scale}"
    rows_points = points(s.width)
    commands = run_points(PRESET, rows_points, s.overrides(), list(s.seeds), runs_dir)
    values, missing = final_metric(runs_dir, rows_points, list(s.seeds), "eval_accuracy", scale=100.0)
    rows = [{"method": label, "test accuracy (%)": mean_std(v)[0], "std": mean_std(v)[1]}
            for label, v in values.items()]
    return Ours(pd.DataFrame(rows), how="measured", scale_note=s.note(), commands=commands, missing=missing)


def accuracy(ours: pd.DataFrame, *methods: str) -> dict[str, float | None]:
    def one(method: str) -> float | None:
        row = ours[ours["method"] == method]
        value = None if row.empty else row["test accuracy (%)"].iloc[0]
        return None if value is None or pd.isna(value) else float(value)
    return {m: one(m) for m in methods}


def dgl_near_bp(paper, ours: pd.DataFrame):
    """The paper's gap is 0.58 points (DGL above); within the run-to-run noise counts as equal."""
    return close(*accuracy(ours, "DGL", "BP").values(), tolerance=noise(ours["std"]))


def cdni_below_bp_and_dgl(paper, ours: pd.DataFrame):
    return all_of([ordered(accuracy(ours, "BP", "cDNI"), noise=noise(ours["std"])),
                   ordered(accuracy(ours, "DGL", "cDNI"), noise=noise(ours["std"]))])


def dni_below_cdni(paper, ours: pd.DataFrame):
    return ordered(accuracy(ours, "cDNI", "DNI"), noise=noise(ours["std"]))


register(PaperTable(
    name="dgl_dni_cnn",
    title="Decoupled Greedy Learning vs backprop, DNI and cDNI: the 3-layer CIFAR-10 CNN",
    comparison="reduced width and length, one recipe for every method (the authors': Adam 3e-5), final test accuracy",
    budgets={"quick": "32 filters, 400 iterations (about 2 epochs), 1 seed: about 7 minutes on 2 CPU cores",
             "full": "128 filters, 1500 epochs, 3 seeds (mean ± std): days on one GPU (not run here)"},
    ours=table,
    claims=(Claim("DGL about as accurate as BP (within the noise)", dgl_near_bp),
            Claim("cDNI below BP and DGL (each gap above the noise)", cdni_below_bp_and_dgl),
            Claim("DNI below cDNI (by more than the noise)", dni_below_cdni)),
))
