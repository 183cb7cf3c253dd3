"""Lee, Hsieh, Lee, "Local Critic Training" (TNNLS 2022): Tables 2, 3, 4 and 6, the studies of
LC (3) (critics after conv 2, 5 and 8).

- `lc_table2`: conv layers per critic, [LC1, LC2, LC3] (`algorithm.critic_convs`);
- `lc_table3`: the critics updated once every k iterations (`algorithm.critic_every`);
- `lc_table4`: sub-model k of LC (3) against the same structure trained by backprop
  (`sub_model_backprop`), both on the same test images;
- `lc_table6`: progressive inference at thresholds 0.9 and 0.95, the main model, and the ensemble
  of the sub-models, all read from the LC (3) run (algorithms/local_learning/exits.py).

Every run is one of the LC tables' (local_critic.py: the paper's recipe at `LC_SCALES`, the runs
directory they share), so LC (3) trains once for all five tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.paper.claims import Claim, Verdict, all_of, close, noise, ordered
from analysis.paper.registry import Ours, PaperTable, register
from analysis.paper.runs import Point, algorithm_facts, final_metric, mean_std
from analysis.paper.tables.local_critic import LC3, LC_SCALES, SPLITS, accuracy_rows, run_lc_points, value

def budgets(runs: str, quick_minutes: int) -> dict[str, str]:
    return {"quick": f"as lc_table1's LC (3) (width / 8, critics 16 filters, 400 iterations, 1 seed), {runs}: "
                     f"about {quick_minutes} minutes on 2 CPU cores",
            "full": f"as lc_table1's LC (3) at full scale (width / 2, critics 64 filters, 20k iterations, 3 seeds), "
                    f"{runs}: hours on one GPU (not run here)"}


# ---------------------------------------------------------------- Table 2: conv layers per critic

CRITIC_CONVS = ["[1,1,1]", "[3,3,3]", "[5,5,5]", "[3,2,1]", "[1,2,3]", "[5,4,3]", "[3,4,5]"]
TABLE2_POINTS = [LC3.as_row("[1,1,1]")] + [
    Point(c, (*LC3.overrides, f"algorithm.critic_convs={c}"), run="lc_3_critic_convs_" + "_".join(c.strip("[]").split(",")))
    for c in CRITIC_CONVS[1:]]


def table2(scale: str, results: Path) -> Ours:
    runs_dir, commands = run_lc_points(TABLE2_POINTS, scale, results)
    rows, missing = accuracy_rows(runs_dir, TABLE2_POINTS, scale, "critic convs")
    return Ours(rows, how="measured", scale_note=LC_SCALES[scale].note(), commands=commands, missing=missing)


def table2_claims() -> tuple[Claim, ...]:
    def one_conv_enough(paper, ours):
        others = {c: value(ours, "critic convs", c) for c in CRITIC_CONVS[1:]}
        best = max(others, key=lambda c: -1 if others[c] is None else others[c])
        return ordered({"[1,1,1]": value(ours, "critic convs", "[1,1,1]"), best: others[best]},
                       noise=noise(ours["std"]), or_equal=True)

    def deepest_lowest(paper, ours):
        others = {c: value(ours, "critic convs", c) for c in CRITIC_CONVS if c != "[5,5,5]"}
        worst = min(others, key=lambda c: float("inf") if others[c] is None else others[c])
        return ordered({worst: others[worst], "[5,5,5]": value(ours, "critic convs", "[5,5,5]")},
                       noise=noise(ours["std"]))

    return (Claim("one conv per critic is enough: no deeper critic beats [1,1,1] by more than the noise",
                  one_conv_enough),
            Claim("[5,5,5] the lowest (below the next lowest by more than the noise)", deepest_lowest))


# ---------------------------------------------------------------- Table 3: critic update frequency

EVERY = range(1, 6)
TABLE3_POINTS = [LC3.as_row("1/1")] + [Point(f"1/{k}", (*LC3.overrides, f"algorithm.critic_every={k}"),
                                             run=f"lc_3_critics_every_{k}") for k in EVERY[1:]]


def table3(scale: str, results: Path) -> Ours:
    runs_dir, commands = run_lc_points(TABLE3_POINTS, scale, results)
    rows, missing = accuracy_rows(runs_dir, TABLE3_POINTS, scale, "critic updates")
    return Ours(rows, how="measured", scale_note=LC_SCALES[scale].note(), commands=commands, missing=missing)


def table3_claims() -> tuple[Claim, ...]:
    def accuracy(ours, *ks):
        return {f"1/{k}": value(ours, "critic updates", f"1/{k}") for k in ks}

    return (Claim("accuracy falls as the critics update less often (1/1 > 1/2 > ... > 1/5, each step above the noise)",
                  lambda paper, ours: ordered(accuracy(ours, *EVERY), noise=noise(ours["std"]))),
            Claim("updating the critics every iteration beats every 5th (1/1 > 1/5)",
                  lambda paper, ours: ordered(accuracy(ours, 1, 5), noise=noise(ours["std"]))))


# ---------------------------------------------------------------- Table 4: LC sub-models vs BP sub-models

SUB_MODELS = (1, 2, 3)
BP_SUB_POINTS = [Point(f"BP sub {k}", ("algorithm=sub_model_backprop", f"algorithm.sub_model={k}", "algorithm.groups=4",
                                       f"algorithm.balance={SPLITS[3]}")) for k in SUB_MODELS]


def sub_model_accuracy(runs_dir: Path, seeds: list[int]) -> tuple[list[list[float]], list[str]]:
    """Per sub-model k, LC (3)'s held-out accuracy (%) of groups 1..k + critic k, one per seed."""
    per_k: list[list[float]] = [[] for _ in SUB_MODELS]
    missing = []
    for seed in seeds:
        facts = algorithm_facts(runs_dir, LC3, seed, "sub_model_accuracy")
        if facts is None:
            missing.append(f"LC (3) seed {seed} (no ok run with sub-model accuracies)")
            continue
        for k, accuracy in enumerate(facts["sub_model_accuracy"]):
            per_k[k].append(100.0 * accuracy)
    return per_k, missing


def table4(scale: str, results: Path) -> Ours:
    runs_dir, commands = run_lc_points([LC3, *BP_SUB_POINTS], scale, results)
    seeds = list(LC_SCALES[scale].seeds)
    bp, missing = accuracy_rows(runs_dir, BP_SUB_POINTS, scale, "label")
    lc, lc_missing = sub_model_accuracy(runs_dir, seeds)
    rows = [{"sub-model": k, "BP sub (%)": bp["accuracy (%)"].iloc[i], "BP std": bp["std"].iloc[i],
             "LC sub (%)": mean_std(lc[i])[0], "LC std": mean_std(lc[i])[1]} for i, k in enumerate(SUB_MODELS)]
    return Ours(pd.DataFrame(rows), how="measured", commands=commands, missing=missing + lc_missing,
                scale_note=LC_SCALES[scale].note() + "; LC's sub-models read from its LC (3) run, at its last evaluation")


def _gaps(ours: pd.DataFrame) -> dict[str, float | None]:
    return {f"sub {k}": (None if pd.isna(row["LC sub (%)"]) or pd.isna(row["BP sub (%)"])
                         else float(row["LC sub (%)"] - row["BP sub (%)"]))
            for k, (_, row) in zip(SUB_MODELS, ours.iterrows())}


def every_lc_sub_model_above(paper, ours: pd.DataFrame) -> Verdict:
    """LC sub k > BP sub k for each k: holds if every one holds, fails if any fails."""
    verdicts = [ordered({f"LC sub {k}": row["LC sub (%)"] if pd.notna(row["LC sub (%)"]) else None,
                         f"BP sub {k}": row["BP sub (%)"] if pd.notna(row["BP sub (%)"]) else None},
                        noise=noise(pd.concat([ours["BP std"], ours["LC std"]])))
                for k, (_, row) in zip(SUB_MODELS, ours.iterrows())]
    return all_of(verdicts)


def table4_claims() -> tuple[Claim, ...]:
    def gap_shrinks(paper, ours):
        return ordered(_gaps(ours), noise=noise(pd.concat([ours["BP std"], ours["LC std"]])))

    return (Claim("each LC sub-model beats the BP sub-model of the same shape (by more than the noise)",
                  every_lc_sub_model_above),
            Claim("the gap (LC sub - BP sub) is largest at sub-model 1 and shrinks with k", gap_shrinks))


# ---------------------------------------------------------------- Table 6: progressive inference and ensembles

THRESHOLDS = ("0.9", "0.95")


def table6(scale: str, results: Path) -> Ours:
    runs_dir, commands = run_lc_points([LC3], scale, results)
    seeds = list(LC_SCALES[scale].seeds)
    names = [*(f"threshold {t}" for t in THRESHOLDS), "main model", "ensemble of the sub-models"]
    flop: dict[str, list[float]] = {name: [] for name in names}
    accuracy: dict[str, list[float]] = {name: [] for name in names}
    accuracy["main model"], missing = (lambda v, m: (v[LC3.label], m))(
        *final_metric(runs_dir, [LC3], seeds, "eval_accuracy", scale=100.0))
    for seed in seeds:
        facts = algorithm_facts(runs_dir, LC3, seed, "progressive_inference")
        if facts is None:
            missing.append(f"LC (3) seed {seed} (no ok run with exits)")
            continue
        for t in THRESHOLDS:
            flop[f"threshold {t}"].append(facts["progressive_inference"][t]["flop_exit_model"] / 1e6)
            accuracy[f"threshold {t}"].append(100.0 * facts["progressive_inference"][t]["accuracy"])
        flop["main model"].append(facts["main_model"]["flop_lc_rule"] / 1e6)
        accuracy["ensemble of the sub-models"].append(100.0 * facts["ensemble_accuracy"]["sub_models"])
    rows = [{"inference": name, "FLOP (M)": mean_std(flop[name])[0], "accuracy (%)": mean_std(accuracy[name])[0],
             "std": mean_std(accuracy[name])[1]} for name in names]
    note = (LC_SCALES[scale].note() + "; FLOP counted by the paper's rule on our narrower network, whose critics' "
            "FC layers shrink less than its convs (sub-model 1 costs more than the main model here, a sixth of it "
            "in the paper), so the cost claim is a property of the scale")
    return Ours(pd.DataFrame(rows), how="measured", scale_note=note, commands=commands, missing=missing)


def table6_claims() -> tuple[Claim, ...]:
    def row(ours, name, column="accuracy (%)"):
        return value(ours, "inference", name, column)

    def exit_cheaper(paper, ours):
        return ordered({"main model": row(ours, "main model", "FLOP (M)"),
                        "threshold 0.95": row(ours, "threshold 0.95", "FLOP (M)")}, noise=0.0)

    def exit_near_main(paper, ours):
        return close(row(ours, "threshold 0.95"), row(ours, "main model"), tolerance=noise(ours["std"]))

    def ensemble_at_least_main(paper, ours):
        return ordered({"ensemble": row(ours, "ensemble of the sub-models"), "main model": row(ours, "main model")},
                       noise=noise(ours["std"]), or_equal=True)

    return (Claim("progressive inference at 0.95 costs less than the main model (FLOP of the exit model)",
                  exit_cheaper),
            Claim("progressive inference at 0.95 is as accurate as the main model (within the noise)", exit_near_main),
            Claim("the ensemble of the sub-models at least as accurate as the main model", ensemble_at_least_main))


register(PaperTable(
    name="lc_table2",
    title="Local Critic Training, Table 2: conv layers per critic in LC (3)",
    comparison="reduced scale, LC (3) with the paper's recipe, final test accuracy",
    budgets=budgets("6 runs besides LC (3)", 8),
    ours=table2,
    claims=table2_claims(),
))

register(PaperTable(
    name="lc_table3",
    title="Local Critic Training, Table 3: how often the critics are updated",
    comparison="reduced scale, LC (3) with the paper's recipe, final test accuracy",
    budgets=budgets("4 runs besides LC (3)", 5),
    ours=table3,
    claims=table3_claims(),
))

register(PaperTable(
    name="lc_table4",
    title="Local Critic Training, Table 4: LC's sub-models against the same structures trained by backprop",
    comparison="reduced scale, one recipe for both (the paper's), final test accuracy on the same test images",
    budgets=budgets("3 backprop sub-model runs besides LC (3)", 3),
    ours=table4,
    claims=table4_claims(),
))

register(PaperTable(
    name="lc_table6",
    title="Local Critic Training, Table 6: progressive inference and the ensemble of sub-models",
    comparison="reduced scale, read from the LC (3) run (no training of its own), final test accuracy",
    budgets=budgets("nothing besides LC (3)", 2),
    ours=table6,
    claims=table6_claims(),
))
