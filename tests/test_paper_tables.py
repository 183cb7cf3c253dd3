"""The paper-table command (analysis/paper/): registry, claim checks, rendering, reuse, bad input,
and the two tables that need no training, exactly."""

import json

import pandas as pd
import pytest

from analysis.paper import registry
from analysis.paper.__main__ import main
from analysis.paper.claims import (FAILS, HOLDS, ONE_SEED_NOISE, UNRESOLVED, Verdict, all_of, close, equal_to_paper, noise,
                                   ordered)
from analysis.paper.tables import decoupled, dgl_dni_cnn, hyparflow, local_critic, local_loss, ouroboros
from analysis.paper.tables.local_critic import TABLE1_POINTS, LCScale, table1_claims
from analysis.paper.tables.local_critic_ablations import (CRITIC_CONVS, table2_claims, table3_claims, table4_claims,
                                                          table6_claims)
from analysis.paper.registry import Ours, Published
from analysis.paper.render import RECORD, side_by_side, update_record
from analysis.paper.runs import Point, check_runs_dir, final_metric, run_points
from mpbench.errors import ConfigError


def test_every_table_has_its_published_numbers_budgets_and_claims(capsys):
    assert {"lc_table1", "lc_table5", "zero_bubble_rates"} <= set(registry.TABLES)
    for table in registry.TABLES.values():
        published = table.published()
        assert published.source and published.caption and published.key and published.values
        assert set(published.key) <= set(published.rows.columns)
        assert len(published.rows) > 0 or "prints no numbers" in published.caption  # ouroboros_k: claims only
        assert set(table.budgets) == set(registry.SCALES) and table.claims
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    for table in registry.TABLES.values():
        assert table.name in listing and table.budgets["quick"] in listing and table.budgets["full"] in listing


# ---------------------------------------------------------------- claim checks


def test_ordered_holds_fails_or_cannot_tell_against_the_noise():
    assert ordered({"a": 10.0, "b": 8.0, "c": 5.0}, noise=1.0).status == HOLDS
    assert ordered({"a": 10.0, "b": 12.0}, noise=1.0).status == FAILS
    assert ordered({"a": 10.0, "b": 9.5}, noise=1.0).status == UNRESOLVED  # right way, within the noise
    assert ordered({"a": 10.0, "b": 10.5}, noise=1.0).status == UNRESOLVED  # wrong way, within the noise
    assert ordered({"a": 10.0, "b": None}, noise=1.0).status == UNRESOLVED
    assert ordered({"a": 1.0, "b": 2.0}, noise=0.0, descending=False).status == HOLDS
    assert ordered({"a": 10.0, "b": 10.5}, noise=1.0, or_equal=True).status == HOLDS
    assert ordered({"a": 10.0, "b": 12.0}, noise=1.0, or_equal=True).status == FAILS


def test_a_claim_of_several_parts_and_the_noise_floor():
    hold, fail, unsure = Verdict(HOLDS, "a"), Verdict(FAILS, "b"), Verdict(UNRESOLVED, "c")
    assert all_of([hold, hold]).status == HOLDS and all_of([hold, unsure]).status == UNRESOLVED
    assert all_of([unsure, fail, hold]) == Verdict(FAILS, "c; b; a")
    assert noise(pd.Series([None, 0.3, 0.7])) == 0.7 and noise(pd.Series([None])) == ONE_SEED_NOISE


def test_close_and_equal_to_paper():
    assert close(91.0, 92.5, tolerance=2.0).status == HOLDS
    assert close(91.0, 94.5, tolerance=2.0).status == FAILS
    assert close(None, 94.5, tolerance=2.0).status == UNRESOLVED
    paper = pd.DataFrame({"k": [1, 2], "x": [0.2431, 0.1585]})
    assert equal_to_paper(["x"], 4)(paper, pd.DataFrame({"k": [1, 2], "x": [0.24314, 0.15846]})).status == HOLDS
    verdict = equal_to_paper(["x"], 4)(paper, pd.DataFrame({"k": [1, 2], "x": [0.2431, 0.1586]}))
    assert verdict.status == FAILS and "row 2" in verdict.numbers
    assert equal_to_paper(["x"], 4)(paper, pd.DataFrame({"k": [1, 2], "x": [0.2431, float("nan")]})).status == FAILS


def table1_rows(accuracy: dict, std: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "accuracy (%)": a, "std": (std or {}).get(m)} for m, a in accuracy.items()])


PAPER_LIKE = {"BP": 60.0, "DNI (3)": 30.0, "critic training (3)": 55.0, "LC (1)": 57.0, "LC (3)": 56.0,
              "LC (5)": 50.0, "DGL (3)": 54.0}


def verdicts(rows: pd.DataFrame) -> list[str]:
    return [claim.check(None, rows).status for claim in table1_claims()]


def test_lc_table1_claims_on_hand_made_records():
    assert verdicts(table1_rows(PAPER_LIKE)) == [HOLDS] * 4
    # DNI as good as critic training; LC (3) far above BP; LC (5) the best LC
    contrary = {**PAPER_LIKE, "DNI (3)": 70.0, "LC (3)": 70.0, "LC (5)": 80.0}
    assert verdicts(table1_rows(contrary)) == [FAILS, FAILS, FAILS, FAILS]
    # gaps inside the one-seed noise floor decide nothing; a missing run neither
    near = {**PAPER_LIKE, "LC (5)": PAPER_LIKE["LC (1)"] - ONE_SEED_NOISE / 2, "DNI (3)": None}
    assert verdicts(table1_rows(near))[0] == UNRESOLVED and verdicts(table1_rows(near))[3] == UNRESOLVED
    # with repeats, their largest std is the noise: LC (5) 7 points under LC (1) is within 3 x 2.5
    spread = {m: 8.0 for m in PAPER_LIKE}
    assert verdicts(table1_rows(PAPER_LIKE, spread))[3] == UNRESOLVED


def claim_statuses(claims, rows: pd.DataFrame) -> list[str]:
    return [claim.check(None, rows).status for claim in claims]


def test_lc_table2_and_table3_claims_on_hand_made_records():
    def table2(accuracy: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"critic convs": CRITIC_CONVS, "accuracy (%)": accuracy, "std": [None] * 7})

    #                 [1,1,1] [3,3,3] [5,5,5] [3,2,1] [1,2,3] [5,4,3] [3,4,5]
    assert claim_statuses(table2_claims(), table2([60, 59, 50, 58, 59, 57, 56])) == [HOLDS, HOLDS]
    assert claim_statuses(table2_claims(), table2([60, 65, 56, 58, 59, 57, 57])) == [FAILS, UNRESOLVED]
    assert claim_statuses(table2_claims(), table2([60, 59, 58, 52, 59, 57, 56])) == [HOLDS, FAILS]

    def table3(accuracy: list[float | None]) -> pd.DataFrame:
        return pd.DataFrame({"critic updates": [f"1/{k}" for k in range(1, 6)], "accuracy (%)": accuracy,
                             "std": [None] * 5})

    assert claim_statuses(table3_claims(), table3([60, 57, 54, 51, 48])) == [HOLDS, HOLDS]
    assert claim_statuses(table3_claims(), table3([60, 59, 54, 51, 48])) == [UNRESOLVED, HOLDS]  # a step < 2
    assert claim_statuses(table3_claims(), table3([50, 57, 54, 51, 60])) == [FAILS, FAILS]
    assert claim_statuses(table3_claims(), table3([60, 57, 54, 51, None])) == [UNRESOLVED, UNRESOLVED]


def test_lc_table4_and_table6_claims_on_hand_made_records():
    def table4(bp: list[float], lc: list[float | None]) -> pd.DataFrame:
        return pd.DataFrame({"sub-model": [1, 2, 3], "BP sub (%)": bp, "BP std": [0.5] * 3, "LC sub (%)": lc,
                             "LC std": [0.5] * 3})

    assert claim_statuses(table4_claims(), table4([40, 55, 60], [55, 60, 65])) == [HOLDS, UNRESOLVED]  # gaps 15, 5, 5
    assert claim_statuses(table4_claims(), table4([40, 55, 60], [55, 60, 62])) == [HOLDS, HOLDS]
    assert claim_statuses(table4_claims(), table4([40, 55, 60], [55, 50, 62])) == [FAILS, FAILS]
    assert claim_statuses(table4_claims(), table4([40, 55, 60], [55, None, 62]))[0] == UNRESOLVED

    def table6(flop: list[float | None], accuracy: list[float], std=(None,) * 4) -> pd.DataFrame:
        return pd.DataFrame({"inference": ["threshold 0.9", "threshold 0.95", "main model", "ensemble of the sub-models"],
                             "FLOP (M)": flop, "accuracy (%)": accuracy, "std": list(std)})

    assert claim_statuses(table6_claims(), table6([2.9, 3.0, 15.7, None], [58, 59, 60, 61])) == [HOLDS, HOLDS, HOLDS]
    assert claim_statuses(table6_claims(), table6([2.9, 16.0, 15.7, None], [50, 52, 60, 55])) == [FAILS, FAILS, FAILS]


def test_local_loss_claim_and_the_authors_schedule_scaled_to_the_run():
    def rows(bp: float, pred: float | None, std=(None, None)) -> pd.DataFrame:
        return pd.DataFrame({"method": ["global BP", "local pred"], "test error (%)": [bp, pred], "std": list(std)})

    claim = local_loss.pred_near_bp
    assert claim(None, rows(12.0, 12.8)).status == HOLDS
    assert claim(None, rows(12.0, 14.0)).status == FAILS
    assert claim(None, rows(12.0, 14.0, std=(0.2, 0.7))).status == HOLDS  # tolerance 3 x 0.7 = 2.1 > 2.0
    assert claim(None, rows(12.0, None)).status == UNRESOLVED
    scale = local_loss.SCALES["full"]
    assert scale.steps == 200 * local_loss.STEPS_PER_EPOCH
    assert f"optimizer.milestones=[{100 * 469},{150 * 469},{175 * 469},{round(0.94 * 200 * 469)}]" in scale.overrides()


def test_ouroboros_claims_on_hand_made_records():
    def rows(bpc: dict, ppl: dict | None = None, speedup: dict | None = None, sim: dict | None = None):
        names = ["K=1 (backprop)", "K=2", "K=3", "K=4", "K=5", "K=3, H", "K=3, R"]
        return pd.DataFrame({"configuration": names, ouroboros.BPC: [bpc.get(n) for n in names],
                             ouroboros.PPL: [(ppl or {}).get(n) for n in names],
                             ouroboros.SPEEDUP: [(speedup or {}).get(n) for n in names],
                             ouroboros.SIM_SPEEDUP: [(sim or {}).get(n) for n in names]})

    good = rows({"K=1 (backprop)": 2.50, "K=2": 2.52, "K=3": 2.40, "K=4": 2.54, "K=5": 2.53, "K=3, H": 3.5},
                {"K=1 (backprop)": 300.0, "K=3": 310.0, "K=5": 314.0}, {"K=3": 1.2}, {"K=3": 1.3, "K=5": 1.8})
    assert claim_statuses(registry.TABLES["ouroboros_k"].claims, good) == [HOLDS] * 4  # H's 3.5 is an ablation, not a claim
    bad = rows({"K=1 (backprop)": 2.50, "K=2": 2.52, "K=5": 2.70}, {"K=1 (backprop)": 300.0, "K=3": 330.0},
               {"K=3": 0.9}, {"K=3": 1.1, "K=5": 0.95})
    assert claim_statuses(registry.TABLES["ouroboros_k"].claims, bad) == [FAILS] * 4
    missing = rows({"K=1 (backprop)": None, "K=2": 2.5})
    assert claim_statuses(registry.TABLES["ouroboros_k"].claims, missing) == [UNRESOLVED] * 4


def test_ddg_fr_k_claims_on_hand_made_records():
    def rows(error: dict, epoch: dict | None = None) -> pd.DataFrame:
        keys = [("backprop", 1)] + [(m, k) for m in ("DDG", "FR", "DGL", "data parallel") for k in (2, 3, 4)]
        return pd.DataFrame([{"method": m, "K": k, decoupled.ERROR: error.get((m, k)), "std": None,
                              decoupled.EPOCH: (epoch or {}).get((m, k)), decoupled.SIM_EPOCH: None} for m, k in keys])

    paper_like = {("backprop", 1): 40.0, **{(m, k): 40.5 for m in ("DDG", "FR") for k in (2, 3, 4)},
                  ("DGL", 2): 42.0, ("DGL", 3): 46.0, ("DGL", 4): 50.0}
    timing = {("backprop", 1): 30.0, ("DDG", 2): 29.0}
    assert claim_statuses(registry.TABLES["ddg_fr_k"].claims, rows(paper_like, timing)) == [HOLDS] * 3
    contrary = {**paper_like, ("FR", 4): 45.0, ("DGL", 3): 38.0}
    assert claim_statuses(registry.TABLES["ddg_fr_k"].claims,
                          rows(contrary, {**timing, ("DDG", 2): 15.0})) == [FAILS, FAILS, FAILS]
    assert claim_statuses(registry.TABLES["ddg_fr_k"].claims, rows({})) == [UNRESOLVED] * 3


def test_hyparflow_rows_take_the_best_configuration_and_keep_measured_and_simulated_apart(tmp_path):
    Config, deep, shallow, node = hyparflow.Config, hyparflow.DEEP, hyparflow.SHALLOW, hyparflow.NODE_SPEED
    scale = hyparflow.Scale(10, (2,), (2, 128, 512), (2, 8), (2, 8))

    def rates(hybrid_gain: float, efficiency: float, shallow_gain: float, node_factor: float = 1.0) -> dict:
        rate = {}
        runs = [(False, deep, (2,), hybrid_gain, 1.0, 1.0), (False, shallow, (2,), shallow_gain, 1.0, 1.0),
                (True, deep, (2, 128, 512), hybrid_gain, 1.0, 1.0), (True, shallow, (2, 8), shallow_gain, 1.0, 1.0),
                (True, deep, (2, 128, 512), hybrid_gain, node, node_factor)]  # the paper's node: its own column
        for simulate, workload, counts, gain, speed, factor in runs:
            rate[(simulate, Config(workload, 1, 1, speed))] = 10.0
            for n in counts:
                rate[(simulate, Config(workload, n, 1, speed))] = 10.0 * n * efficiency * factor
                for p in (2, 8):
                    if p <= n:  # 8 partitions a little behind 2: the best is named
                        rate[(simulate, Config(workload, n, p, speed))] = 10.0 * n * gain * factor * (1.0 if p == 2 else 0.9)
        return rate

    rows = pd.DataFrame(hyparflow.speedup_rows(rates(1.2, 0.9, 0.5), scale))
    first = rows.iloc[0]
    assert (first["workload"], first["comparison"], first["workers"]) == (deep, hyparflow.OVER_DP, hyparflow.NOT_STATED)
    assert first[hyparflow.SPEEDUP] == pytest.approx(1.2 / 0.9) and first[hyparflow.CONFIG] == "2 partitions x 1 replicas on 2"
    over_512 = rows[(rows["comparison"] == hyparflow.OVER_ONE) & (rows["workers"] == "512")].iloc[0]
    assert over_512[hyparflow.SIM_SPEEDUP] == pytest.approx(512 * 1.2)
    assert over_512[hyparflow.SIM_CONFIG] == "2 partitions x 256 replicas on 512"
    assert pd.isna(over_512[hyparflow.SPEEDUP])  # nothing measured at 512 workers: no number in the measured column
    claims = registry.TABLES["hyparflow_scaling"].claims
    assert claim_statuses(claims, rows) == [HOLDS] * 6  # ResNet-110's best hybrid on 8 workers: 8 x 0.5 = 4x >= 3.1x
    slow_nodes = pd.DataFrame(hyparflow.speedup_rows(rates(1.2, 0.9, 0.5, node_factor=0.5), scale))
    over_512 = slow_nodes[(slow_nodes["comparison"] == hyparflow.OVER_ONE) & (slow_nodes["workers"] == "512")].iloc[0]
    assert over_512[hyparflow.NODE_SPEEDUP] == pytest.approx(256 * 1.2)  # only the paper's-node column moves
    assert over_512[hyparflow.SIM_SPEEDUP] == pytest.approx(512 * 1.2)
    assert claim_statuses(claims, slow_nodes) == [HOLDS] * 3 + [FAILS] * 2 + [HOLDS]
    rows = pd.DataFrame(hyparflow.speedup_rows(rates(1.2, 0.9, 0.3), scale))
    assert claim_statuses(claims, rows)[-1] == FAILS  # 8 x 0.3 = 2.4x
    rows = pd.DataFrame(hyparflow.speedup_rows(rates(0.6, 0.7, 0.5), scale))  # hybrid slower than DP; 0.7 x 128 < 110
    assert claim_statuses(claims, rows)[:5] == [FAILS] * 5
    empty = pd.DataFrame(hyparflow.speedup_rows({}, scale))
    assert claim_statuses(claims, empty) == [UNRESOLVED] * 6
    assert hyparflow.draw(rates(1.2, 0.9, 0.5), tmp_path / "figure.png").stat().st_size > 0


# ---------------------------------------------------------------- rendering


def test_paper_and_ours_are_never_in_one_column_and_ours_says_how():
    published = Published("a paper", "a caption", ["p"], pd.DataFrame({"p": [2, 4], "rate": [0.5, 0.25]}))
    ours = Ours(pd.DataFrame({"p": [4, 8], "rate": [0.26, 0.1]}), how="simulated", scale_note="same")
    table = side_by_side(published, ours)
    assert list(table.columns) == ["p", "rate (paper)", "rate (ours, simulated)"]
    assert table["p"].tolist() == [2, 4, 8]  # the paper's rows in its order, then ours alone
    assert table["rate (paper)"].isna().tolist() == [False, False, True]
    assert table["rate (ours, simulated)"].isna().tolist() == [True, False, False]
    with pytest.raises(ValueError):
        Ours(pd.DataFrame(), how="guessed", scale_note="")
    # a table with measured and simulated numbers: each column says which
    published = Published("a paper", "a caption", ["k"], pd.DataFrame(columns=["k", "speed-up", "sim speed-up"]))
    both = Ours(pd.DataFrame({"k": [2], "speed-up": [1.3], "sim speed-up": [1.4]}), scale_note="same",
                how={"speed-up": "measured", "sim speed-up": "simulated"})
    table = side_by_side(published, both)
    assert list(table.columns) == ["k", "speed-up (paper)", "speed-up (ours, measured)", "sim speed-up (paper)",
                                   "sim speed-up (ours, simulated)"]
    assert table["sim speed-up (ours, simulated)"].tolist() == [1.4] and both.hows == "measured and simulated"
    with pytest.raises(ValueError):
        Ours(pd.DataFrame(), how={"a": "measured", "b": "guessed"}, scale_note="")


def test_the_record_keeps_one_section_per_table(tmp_path):
    record = tmp_path / "REPRODUCTION.md"
    update_record(record, "a", "first a\n")
    update_record(record, "b", "only b\n")
    update_record(record, "a", "second a\n")
    text = record.read_text()
    assert text.startswith("# Reproducing") and "second a" in text and "first a" not in text and "only b" in text
    assert text.index("second a") < text.index("only b")


# ---------------------------------------------------------------- exact tables, end to end


@pytest.mark.parametrize("name, how", [("zero_bubble_rates", "simulated"), ("lc_table5", "counted")])
def test_exact_tables_reproduce_the_paper(tmp_path, name, how):
    record = tmp_path / "REPRODUCTION.md"
    assert main([name, "--results", str(tmp_path), "--record", str(record)]) == 0
    out = tmp_path / "paper" / name
    claims = json.loads((out / "claims.json").read_text())
    assert [c["verdict"] for c in claims["claims"]] == [HOLDS] * len(claims["claims"])
    assert claims["scale"] == "quick" and claims["commit"] and claims["device"] and claims["commands"]
    table = pd.read_csv(out / "table.csv")
    values = [c for c in table.columns if c not in registry.TABLES[name].published().key]
    assert values and all(c.endswith("(paper)") or c.endswith(f"(ours, {how})") for c in values)
    assert f"(ours, {how})" in (out / "table.md").read_text() and f"<!-- table {name} -->" in record.read_text()


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert main(["no_such_table", "--no-record"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "lc_table1" in err[0]
    assert main(["lc_table5", "--scale", "huge", "--no-record", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scale" in err[0] and "quick" in err[0]


# ---------------------------------------------------------------- runs: reused, and refused when foreign

TINY = ["++model.width_divisor=64", "++model.bn_momentum=0.1", "steps=2", "eval_every=2", "eval_batches=1", "batch_size=8",
        "threads_per_worker=1", "optimizer.milestones=[1,2]"]


def test_a_second_invocation_runs_nothing_new_and_a_foreign_directory_is_refused(tmp_path, shared_data_dir,
                                                                                  monkeypatch):
    monkeypatch.setenv("MPBENCH_DATA_DIR", str(shared_data_dir))
    points = [TABLE1_POINTS[0], TABLE1_POINTS[4]]  # BP and LC (3)
    runs_dir = tmp_path / "runs-quick"
    run_points("local_critic", points, TINY, [0], runs_dir)
    summaries = {p.slug: runs_dir / f"{p.slug}_s0" / "summary.json" for p in points}
    first = {slug: path.read_text() for slug, path in summaries.items()}
    values, missing = final_metric(runs_dir, points, [0], "eval_accuracy", scale=100.0)
    assert not missing and all(len(v) == 1 and 0 <= v[0] <= 100 for v in values.values())
    run_points("local_critic", points, TINY, [0], runs_dir)
    assert {slug: path.read_text() for slug, path in summaries.items()} == first  # nothing ran again
    assert sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) == sorted(f"{p.slug}_s0" for p in points)
    skipped = runs_dir / f"{TABLE1_POINTS[1].slug}_s0"  # refused before its config was written: not foreign
    skipped.mkdir()
    (skipped / "summary.json").write_text(json.dumps({"status": "skipped", "reason": "batch_size=8 ..."}))
    check_runs_dir("local_critic", [TABLE1_POINTS[1]], TINY, [0], runs_dir)
    with pytest.raises(ConfigError, match="holds a run of another config.*steps"):
        check_runs_dir("local_critic", points, [*TINY[:2], "steps=3", *TINY[3:]], [0], runs_dir)
    values, missing = final_metric(runs_dir, [Point("DGL (3)", ())], [0], "eval_accuracy")
    assert missing == ["DGL (3) seed 0 (not run)"]


@pytest.mark.slow
def test_lc_tables_4_and_6_read_the_shared_lc3_run_which_trains_once(tmp_path, shared_data_dir, monkeypatch):
    """Tables 4 and 6 read LC (3)'s sub-model accuracies and exits from its summary; both, with
    Table 4's backprop sub-models, share one runs directory, so LC (3) trains once."""
    monkeypatch.setenv("MPBENCH_DATA_DIR", str(shared_data_dir))

    class Tiny(LCScale):
        def overrides(self) -> list[str]:
            return TINY

    monkeypatch.setitem(local_critic.LC_SCALES, "quick", Tiny(64, 4, 2, (0,), 0.1, eval_batches=1))
    assert main(["lc_table6", "--results", str(tmp_path), "--no-record"]) == 0
    lc3 = tmp_path / "paper" / "local_critic_runs" / "quick" / "lc_3_s0" / "summary.json"
    first = lc3.read_text()
    assert main(["lc_table4", "--results", str(tmp_path), "--no-record"]) == 0
    assert lc3.read_text() == first  # not trained again

    table6 = pd.read_csv(tmp_path / "paper" / "lc_table6" / "table.csv").set_index("inference")
    facts = json.loads(first)["algorithm_facts_per_worker"][0]
    ours = "accuracy (%) (ours, measured)"
    assert table6.loc["threshold 0.95", ours] == pytest.approx(100 * facts["progressive_inference"]["0.95"]["accuracy"])
    assert table6.loc["ensemble of the sub-models", ours] == pytest.approx(
        100 * facts["ensemble_accuracy"]["sub_models"])
    assert table6.loc["main model", ours] == pytest.approx(100 * json.loads(first)["final"]["eval_accuracy"])
    assert table6.loc["main model", "FLOP (M) (ours, measured)"] == pytest.approx(
        facts["main_model"]["flop_lc_rule"] / 1e6)

    table4 = pd.read_csv(tmp_path / "paper" / "lc_table4" / "table.csv").set_index("sub-model")
    assert table4["LC sub (%) (ours, measured)"].tolist() == pytest.approx(
        [100 * a for a in facts["sub_model_accuracy"]])
    for k in (1, 2, 3):
        bp_sub = json.loads((lc3.parents[1] / f"bp_sub_{k}_s0" / "summary.json").read_text())
        assert bp_sub["algorithm"] == "sub_model_backprop" and bp_sub["status"] == "ok"
        assert table4.loc[k, "BP sub (%) (ours, measured)"] == pytest.approx(100 * bp_sub["final"]["eval_accuracy"])


def test_the_record_the_command_rewrites_does_not_make_the_commit_dirty(tmp_path):
    """Each table's section says the commit it was made at; rewriting docs/REPRODUCTION.md (the
    command's own output, table after table) is no change to the code, any other file is."""
    import subprocess

    from mpbench.records import git_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                       capture_output=True)

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "REPRODUCTION.md").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    (tmp_path / "docs" / "REPRODUCTION.md").write_text("b\n")
    assert git_commit(tmp_path)["dirty"] and not git_commit(tmp_path, besides=(RECORD,))["dirty"]
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, besides=(RECORD,))["dirty"]


def test_dgl_dni_cnn_claims_on_hand_made_records():
    def rows(accuracy: dict, std: dict | None = None) -> pd.DataFrame:
        return pd.DataFrame([{"method": m, "test accuracy (%)": a, "std": (std or {}).get(m)}
                             for m, a in accuracy.items()])

    claims = registry.TABLES["dgl_dni_cnn"].claims
    paper_like = {"BP": 84.5, "DGL": 85.0, "cDNI": 80.0, "DNI": 65.0}
    assert claim_statuses(claims, rows(paper_like)) == [HOLDS] * 3
    # DGL far below BP, cDNI above both, DNI above cDNI
    contrary = {"BP": 84.5, "DGL": 75.0, "cDNI": 88.0, "DNI": 92.0}
    assert claim_statuses(claims, rows(contrary)) == [FAILS] * 3
    # gaps inside the one-seed noise floor decide nothing; a missing run neither
    near = {"BP": 84.5, "DGL": None, "cDNI": 84.5 - ONE_SEED_NOISE / 2, "DNI": 84.5 - ONE_SEED_NOISE}
    assert claim_statuses(claims, rows(near)) == [UNRESOLVED] * 3
    # with repeats, their largest std is the noise: DGL 4 points under BP is within a std of 5
    assert claim_statuses(claims, rows({**paper_like, "DGL": 80.5}, {"BP": 5.0}))[0] == HOLDS


def test_dgl_dni_cnn_has_both_budgets_and_every_point_composes_into_a_run():
    from omegaconf import OmegaConf

    from analysis.paper.runs import point_config
    from mpbench.config import run_spec_from

    table = registry.TABLES["dgl_dni_cnn"]
    assert set(table.budgets) == set(registry.SCALES) and table.published().rows["method"].tolist() == [
        "BP", "DGL", "cDNI", "DNI"]
    for name, scale in dgl_dni_cnn.SCALES.items():
        runs = {p.label: run_spec_from(OmegaConf.create(point_config(dgl_dni_cnn.PRESET, p, scale.overrides(), 0)))
                for p in dgl_dni_cnn.points(scale.width)}
        assert list(runs) == table.published().rows["method"].tolist()
        for label, spec in runs.items():
            assert (spec.model, spec.model_settings.width, spec.batch_size, spec.steps) == (
                "dgl_cnn", scale.width, 256, scale.steps), (name, label)
            assert (spec.optimizer.name, spec.optimizer.lr, spec.optimizer.schedule) == ("adam", 3e-5, "constant")
        assert (runs["DGL"].algorithm_settings.groups, runs["DGL"].algorithm_settings.balance) == (3, (1, 1, 2))
        for dni in ("DNI", "cDNI"):
            s = runs[dni].algorithm_settings
            assert (s.groups, s.synthesizer_lr, s.synthesizer_width, s.runtime) == (4, 3e-5, scale.width, "emulated")
            assert s.conditioned == (dni == "cDNI")
    assert dgl_dni_cnn.SCALES["full"].steps == 1500 * dgl_dni_cnn.STEPS_PER_EPOCH
