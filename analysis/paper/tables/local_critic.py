"""Lee, Hsieh, Lee, "Local Critic Training" (TNNLS 2022): its tables.

`lc_table1` trains every method of Table 1 (and DGL beside them) with the paper's recipe
(experiments/experiment/paper/local_critic.yaml) at a reduced width and length (`LC_SCALES`), in
one process per run (the methods' emulated runtime: the same updates as the workers), and
compares final test accuracy, the paper's claims judged against the run-to-run noise. Its
machinery (the scales, the runs directory every LC table shares, accuracy rows, the noise) serves
the other LC tables too (local_critic_ablations.py).

`lc_table5` counts LC(3)'s sub-models as the local_critic algorithm builds them for the `lc3`
preset (the paper's network, critics after conv 2, 5 and 8), by the paper's counting rule
(algorithms/local_learning/exits.py). Counting needs no training: both scales are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from algorithms.local_learning.local_critic import LocalCritic, LocalCriticSettings
from analysis.paper.claims import Claim, close, equal_to_paper, noise, ordered
from analysis.paper.registry import Ours, PaperTable, register
from analysis.paper.runs import Point, final_metric, mean_std, run_points
from models import build_model
from models.lc_vgg import LCVGGSettings
from mpbench.algorithm import BuildContext, Worker
from mpbench.config import OptimizerSpec
from mpbench.data.base import DataInfo
from mpbench.transport import Transport

REPO = Path(__file__).resolve().parents[3]
CIFAR10 = DataInfo("cifar10", "classification", (3, 32, 32), num_classes=10)


def lc3_counts() -> list[dict]:
    """(parameters, FLOP) of each sub-model and the main model of the `lc3` preset's split."""
    preset = OmegaConf.load(REPO / "experiments" / "experiment" / "lc3.yaml")
    torch.manual_seed(0)
    model = build_model("lc_vgg", LCVGGSettings(), CIFAR10)
    worker = Worker(0, 1, torch.device("cpu"), torch.float32, Transport(0, 1, timeout_s=10))
    settings = LocalCriticSettings(groups=int(preset.gpus), balance=tuple(preset.algorithm.balance), runtime="emulated")
    facts = LocalCritic(BuildContext(model, worker, OptimizerSpec(name="sgd", lr=0.1), settings,
                                     torch.zeros(2, 3, 32, 32))).facts()
    counted = [(f"sub-model {k}", m) for k, m in enumerate(facts["sub_models"], start=1)]
    return [{"network": name, "FLOP (M)": m["flop_lc_rule"] / 1e6, "parameters (M)": m["parameters"] / 1e6}
            for name, m in counted + [("main model", facts["main_model"])]]


def table5(scale: str, results: Path) -> Ours:
    return Ours(pd.DataFrame(lc3_counts()), how="counted",
                scale_note="the paper's network and critics, counted, not trained: the same scale")


# Critic positions: LC (1) after conv 5; LC (3) and the 3-module baselines after conv 2, 5, 8
# (the lc1, lc3 presets); LC (5) after every two convs (lc5).
SPLITS = {1: "[5,7]", 3: "[2,3,3,4]", 5: "[2,2,2,2,2,2]"}
PRESET = "local_critic"  # experiments/experiment/paper/local_critic.yaml: every LC table's runs


def split(algorithm: str, modules: int) -> tuple[str, ...]:
    return (f"algorithm={algorithm}", f"algorithm.groups={modules + 1}", f"algorithm.balance={SPLITS[modules]}",
            "algorithm.runtime=emulated")


BP = Point("BP", ("algorithm=backprop",))
LC3 = Point("LC (3)", split("local_critic", 3))  # also Table 2's [1,1,1], 3's 1/1, 4's and 6's LC
TABLE1_POINTS = [BP, Point("DNI (3)", split("dni", 3)), Point("critic training (3)", split("critic_training", 3)),
                 Point("LC (1)", split("local_critic", 1)), LC3, Point("LC (5)", split("local_critic", 5)),
                 Point("DGL (3)", split("dgl", 3))]


@dataclass(frozen=True)
class LCScale:
    """How far an LC table's runs are from the paper's (full width, 128-filter critics, 80k
    iterations, 5 runs). The learning rate drops at 1/2 and 3/4 of the run, as the paper's at
    40k and 60k of 80k. The paper's BN momentum (0.003, its TF decay 0.997) leaves the running
    statistics 30% at their initial values after 400 steps, so that eval-mode accuracy says
    little (BP: 21% with it); the quick scale uses PyTorch's 0.1."""

    width_divisor: int
    critic_width: int  # narrowed with the network, so a critic's size relative to it stays the paper's
    steps: int
    seeds: tuple[int, ...]
    bn_momentum: float
    eval_batches: int = 40  # x 128 test images

    def overrides(self) -> list[str]:
        return [f"++model.width_divisor={self.width_divisor}", f"++model.critic_width={self.critic_width}",
                f"++model.bn_momentum={self.bn_momentum}", f"steps={self.steps}", f"eval_every={self.steps}",
                f"eval_batches={self.eval_batches}",
                f"optimizer.milestones=[{self.steps // 2},{3 * self.steps // 4}]"]

    def note(self) -> str:
        return (f"width / {self.width_divisor} with {self.critic_width}-filter critics, {self.steps} iterations "
                f"(the paper: full width, 128 filters, 80k), BatchNorm momentum {self.bn_momentum} (the paper: 0.003), "
                f"{len(self.seeds)} seed(s), final accuracy on {self.eval_batches * 128} test images "
                f"(the paper: 5 runs on all 10k)")


LC_SCALES = {"quick": LCScale(8, 16, 400, (0,), 0.1), "full": LCScale(2, 64, 20000, (0, 1, 2), 0.003)}


def run_lc_points(points: list[Point], scale: str, results: Path) -> tuple[Path, list[str]]:
    """Run `points` at `scale` into the runs directory every LC table shares (so that LC (3),
    which five tables show, trains once); returns it and the commands."""
    runs_dir = results.parent / "local_critic_runs" / scale
    return runs_dir, run_points(PRESET, points, LC_SCALES[scale].overrides(), list(LC_SCALES[scale].seeds), runs_dir)


def accuracy_rows(runs_dir: Path, points: list[Point], scale: str, key: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per point: `key` = its label, final test accuracy (%) mean and std over the seeds."""
    values, missing = final_metric(runs_dir, points, list(LC_SCALES[scale].seeds), "eval_accuracy", scale=100.0)
    rows = [{key: label, "accuracy (%)": mean_std(v)[0], "std": mean_std(v)[1]} for label, v in values.items()]
    return pd.DataFrame(rows), missing


def table1(scale: str, results: Path) -> Ours:
    runs_dir, commands = run_lc_points(TABLE1_POINTS, scale, results)
    rows, missing = accuracy_rows(runs_dir, TABLE1_POINTS, scale, "method")
    return Ours(rows, how="measured", scale_note=LC_SCALES[scale].note(), commands=commands, missing=missing)


def value(ours: pd.DataFrame, key: str, label: str, column: str = "accuracy (%)") -> float | None:
    row = ours[ours[key] == label]
    return None if row.empty or pd.isna(row[column].iloc[0]) else float(row[column].iloc[0])


def table1_claims() -> tuple[Claim, ...]:
    def accuracy(ours: pd.DataFrame, *methods: str) -> dict[str, float | None]:
        return {m: value(ours, "method", m) for m in methods}

    def dni_far_below(paper, ours):
        return ordered(accuracy(ours, "critic training (3)", "DNI (3)"), noise=5 * noise(ours["std"]))

    def lc_at_most_bp(paper, ours):
        return ordered(accuracy(ours, "BP", "LC (3)"), noise=noise(ours["std"]), or_equal=True)

    def critic_training_near_lc(paper, ours):
        return close(*accuracy(ours, "critic training (3)", "LC (3)").values(), tolerance=noise(ours["std"]))

    def lc5_lowest(paper, ours):
        lc = accuracy(ours, "LC (1)", "LC (3)")
        best = max(lc, key=lambda m: -1 if lc[m] is None else lc[m])
        return ordered({best: lc[best], **accuracy(ours, "LC (5)")}, noise=noise(ours["std"]))

    return (Claim("DNI (3) far below critic training (3) (by more than 5 x the noise)", dni_far_below),
            Claim("critic training (3) close to LC (3) (within the noise)", critic_training_near_lc),
            Claim("LC (3) at most BP", lc_at_most_bp),
            Claim("LC (5) the lowest of the LC variants", lc5_lowest))


register(PaperTable(
    name="lc_table1",
    title="Local Critic Training, Table 1: accuracy of BP, DNI, critic training and LC (plus DGL)",
    comparison="reduced scale, one recipe for every method (the paper's), final test accuracy",
    budgets={"quick": "lc_vgg width / 8, critics 16 filters, 400 iterations, 1 seed: about 10 minutes on 2 CPU cores",
             "full": "lc_vgg width / 2, critics 64 filters, 20k iterations, 3 seeds (mean ± std): hours on one GPU "
                     "(not run here)"},
    ours=table1,
    claims=table1_claims(),
))


register(PaperTable(
    name="lc_table5",
    title="Local Critic Training, Table 5: sub-model sizes and costs",
    comparison="exact: counted by the paper's rule on the project's models",
    budgets={"quick": "seconds (counted, nothing trained)", "full": "the same as quick"},
    ours=table5,
    claims=(Claim("Every count is the paper's, within half a unit of its 2nd printed decimal (millions)",
                  equal_to_paper(["FLOP (M)", "parameters (M)"], decimals=2)),),
))
