"""Comparisons within a budget (and within --within settings), Holm-adjusted p-values against a best arm picked
after the fact, and how many seeds a comparison needs, on fabricated run records whose numbers are known."""

import math

import pytest
from conftest import read_rows
from fabricate import arm, make_run
from scipy import stats

from anneal.report.__main__ import main
from anneal.report.outputs import write_report
from anneal.report.statistics import holm, seeds_for

# (schedule, epochs) -> test/acc of seeds 0, 1, 2: at 10 epochs wsd is best, at 20 cosine is (and beats all)
BUDGET = {
    ("cosine", 10): [0.60, 0.62, 0.61],
    ("wsd", 10): [0.63, 0.66, 0.64],
    ("constant", 10): [0.55, 0.59, 0.56],
    ("cosine", 20): [0.70, 0.71, 0.73],
    ("wsd", 20): [0.69, 0.71, 0.70],
}


def budget_study(root):
    for (schedule, epochs), accs in BUDGET.items():
        the_arm = arm({"trainer.max_epochs": epochs, "schedule._target_": schedule}, {"schedule": schedule})
        for seed, acc in enumerate(accs):
            make_run(root / f"{schedule}_{epochs}_{seed}", the_arm, seed, {"test/acc": acc})
    return sorted(root.iterdir())


def by_arm(rows):
    return {r["arm"]: r for r in rows}


def test_each_arm_is_compared_with_the_best_arm_of_its_own_budget(tmp_path):
    study, _ = write_report(budget_study(tmp_path / "runs"), tmp_path / "report")
    assert study.within == ["trainer.max_epochs"]
    rows = by_arm(read_rows(tmp_path / "report" / "study.csv"))
    best = {"cosine max_epochs=10": "wsd max_epochs=10", "constant max_epochs=10": "wsd max_epochs=10"}
    best |= {"wsd max_epochs=20": "cosine max_epochs=20"}
    for label, winner in best.items():
        assert rows[label]["best_arm"] == winner
        schedule, epochs = label.split()[0], int(label.split("=")[1])
        mine, theirs = BUDGET[(schedule, epochs)], BUDGET[(winner.split()[0], epochs)]
        expected = stats.ttest_rel(mine, theirs)
        assert float(rows[label]["headline_paired_diff"]) == pytest.approx(sum(mine) / 3 - sum(theirs) / 3, abs=1e-12)
        assert float(rows[label]["headline_paired_p"]) == pytest.approx(expected.pvalue, rel=1e-9)
        unpaired = stats.ttest_ind(mine, theirs, equal_var=False)
        assert float(rows[label]["headline_diff_p"]) == pytest.approx(unpaired.pvalue, rel=1e-9)
    assert rows["cosine max_epochs=10"]["compared_within"] == "max_epochs=10"
    # the best arm of each budget: no difference to itself, so no interval and no p-value
    for label in ("wsd max_epochs=10", "cosine max_epochs=20"):
        row = rows[label]
        assert row["best_arm"] == label and float(row["headline_diff_to_best"]) == 0
        assert row["headline_diff_ci95"] == row["headline_diff_p"] == row["headline_paired_p"] == ""
        assert row["headline_paired_ci95"] == row["headline_diff_p_holm"] == row["headline_seeds_needed"] == ""
    text = (tmp_path / "report" / "study.md").read_text()
    assert "compared with the best arm of its own max_epochs (trainer.max_epochs)" in text
    assert "| wsd max_epochs=10 | 3 | 64.33 ± 1.53 (± 3.79) | — | best |  |  |" in text
    assert "| cosine max_epochs=10 | 3 | 61.00 ± 1.00 (± 2.48) | wsd max_epochs=10 | -3.33" in text


def test_p_values_against_the_picked_best_are_holm_adjusted_within_each_family(tmp_path):
    study, _ = write_report(budget_study(tmp_path / "runs"), tmp_path / "report")
    rows = by_arm(read_rows(tmp_path / "report" / "study.csv"))
    # the 10-epoch family has two comparisons with its best: Holm multiplies the smaller p by 2, the larger by 1,
    # and keeps the order (by hand, from scipy's own p-values)
    p_cos = stats.ttest_rel(BUDGET[("cosine", 10)], BUDGET[("wsd", 10)]).pvalue
    p_const = stats.ttest_rel(BUDGET[("constant", 10)], BUDGET[("wsd", 10)]).pvalue
    low, high = sorted([p_cos, p_const])
    by_hand = {low: min(1, 2 * low), high: max(min(1, 2 * low), min(1, high))}
    assert float(rows["cosine max_epochs=10"]["headline_paired_p_holm"]) == pytest.approx(by_hand[p_cos], rel=1e-9)
    assert float(rows["constant max_epochs=10"]["headline_paired_p_holm"]) == pytest.approx(by_hand[p_const], rel=1e-9)
    # the 20-epoch family has one comparison: nothing to adjust
    assert rows["wsd max_epochs=20"]["headline_paired_p_holm"] == rows["wsd max_epochs=20"]["headline_paired_p"]
    assert "Holm p: adjusted (Holm 1979)" in (tmp_path / "report" / "study.md").read_text()


def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.02, 0.04, 0.30 (m = 4): 0.04, max(0.04, 0.06), max(0.06, 0.08), max(0.08, 0.30)
    assert holm([0.04, 0.30, 0.01, 0.02]) == pytest.approx([0.08, 0.30, 0.04, 0.06], abs=1e-15)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1 and monotone
    assert holm([]) == []


def seeds_by_hand(sd, target):
    """The definition, literally: the least n >= 2 with t(0.975, n - 1) * sd / sqrt(n) <= target."""
    n = 2
    while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > target:
        n += 1
    return n


@pytest.mark.parametrize(("sd", "target"), [(1.0, 0.5), (0.3, 0.5), (3.6, 0.5), (2.0, 0.25), (0.1, 1.0)])
def test_seeds_for_a_target_interval_is_the_least_n_of_the_t_interval(sd, target):
    assert seeds_for(sd, target) == seeds_by_hand(sd, target)


def test_seeds_for_against_the_textbook_t_table():
    # sd 1 pp, target ± 0.5 pp: n = 17 gives 2.120 / √17 = 0.514 (too wide); n = 18 gives 2.110 / √18 = 0.497
    assert seeds_for(1.0, 0.5) == 18
    assert seeds_for(0.0, 0.5) == 2
    with pytest.raises(ValueError, match="positive"):
        seeds_for(1.0, 0)


def test_the_seeds_column_plans_from_the_observed_paired_spread(tmp_path):
    write_report(budget_study(tmp_path / "runs"), tmp_path / "report", target_ci=0.25)
    rows = by_arm(read_rows(tmp_path / "report" / "study.csv"))
    differences = [100 * (a - b) for a, b in zip(BUDGET[("cosine", 10)], BUDGET[("wsd", 10)])]  # in pp
    expected = seeds_by_hand(stats.tstd(differences), 0.25)
    assert int(rows["cosine max_epochs=10"]["headline_seeds_needed"]) == expected
    assert float(rows["cosine max_epochs=10"]["target_ci"]) == 0.25
    text = (tmp_path / "report" / "study.md").read_text()
    assert "seeds for ± 0.25 pp" in text and f"| {expected} |" in text


def test_within_a_named_setting_each_model_gets_its_own_best(tmp_path, capsys):
    accuracies = {("lenet", "cosine"): [0.60, 0.61], ("lenet", "wsd"): [0.62, 0.64]}
    accuracies |= {("resnet20", "cosine"): [0.90, 0.92], ("resnet20", "wsd"): [0.89, 0.90]}
    for (model, schedule), accs in accuracies.items():
        the_arm = arm({"schedule._target_": schedule, "model._target_": model}, {"schedule": schedule, "model": model})
        for seed, acc in enumerate(accs):
            make_run(tmp_path / "runs" / f"{model}_{schedule}_{seed}", the_arm, seed, {"test/acc": acc})
    runs = [str(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert main([*runs, "--out", str(tmp_path / "report"), "--within", "model"]) == 0
    rows = by_arm(read_rows(tmp_path / "report" / "study.csv"))
    assert rows["lenet cosine"]["best_arm"] == "lenet wsd" and rows["resnet20 wsd"]["best_arm"] == "resnet20 cosine"
    assert float(rows["lenet cosine"]["headline_diff_to_best"]) == pytest.approx(-0.025, abs=1e-12)
    assert "compared with the best arm of its own model" in (tmp_path / "report" / "study.md").read_text()
    # without --within, the lenet arms are compared with the best resnet arm
    assert main([*runs, "--out", str(tmp_path / "all")]) == 0
    assert {r["best_arm"] for r in read_rows(tmp_path / "all" / "study.csv")} == {"resnet20 cosine"}
    capsys.readouterr()
    assert main([*runs, "--out", str(tmp_path / "bad"), "--within", "modle"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--within modle is not a setting" in error and "model" in error
    assert main([*runs, "--out", str(tmp_path / "bad"), "--target-ci", "0"]) == 2
    assert "--target-ci 0.0: a positive half-width" in capsys.readouterr().err
