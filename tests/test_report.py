"""Studies from runs: arms from what each run recorded, means and spreads over seeds, paired and unpaired
comparisons, tables, figures, report.md, the CLI, hostile input, the W&B study run.

The run directories here are written with the record's own writers (tests/fabricate.py), so every number is
known; the real path (train.py sweeps pooled by the report) is in tests/test_sweeps.py."""

import fcntl
import math
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, read_rows
from fabricate import arm, make_legacy_run, make_run
from omegaconf import OmegaConf
from scipy import stats

from anneal.report.__main__ import main
from anneal.report.figures import budget_lines
from anneal.report.outputs import write_report, write_sweep_files
from anneal.report.statistics import paired, spread, t_quantile, welch
from anneal.report.sweep import SweepSummary

# (T_0, T_mult) -> test/acc of seeds 0, 1, 2; the arms' means are 0.93, 0.83, 0.95 (the best) and 0.94
ACCURACIES = {
    (1, 1): [0.90, 0.92, 0.97],
    (1, 2): [0.80, 0.82, 0.87],
    (5, 1): [0.95, 0.95, 0.95],
    (5, 2): [0.91, 0.93, 0.98],
}


def grid_sweep(sweep):
    job = 0
    for (t0, tm), accs in ACCURACIES.items():
        for seed, acc in enumerate(accs):
            make_run(sweep / str(job), arm({"schedule.T_0": t0, "schedule.T_mult": tm}), seed, {"test/acc": acc})
            job += 1
    return sweep


@pytest.mark.parametrize(("df", "textbook"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)])
def test_student_t_quantile_matches_the_textbook_table(df, textbook):
    assert t_quantile(df) == pytest.approx(textbook, abs=5e-4)


def test_spread_is_the_mean_the_sample_std_and_the_t_interval():
    s = spread([0.90, 0.92, 0.97])  # deviations -0.03, -0.01, 0.04: sum of squares 0.0026 over n - 1 = 2
    assert s.n == 3 and s.mean == pytest.approx(0.93, rel=1e-12)
    assert s.std == pytest.approx(0.036055512754640, rel=1e-9)  # sqrt(0.0013)
    assert s.ci95 == pytest.approx(4.302652729749 * 0.036055512754640 / 1.7320508075689, rel=1e-9)
    assert spread([0.5]).std is None and spread([0.5]).ci95 is None


def test_the_paired_difference_is_the_mean_of_per_seed_differences_with_its_t_interval():
    a = {0: 0.60, 1: 0.65, 2: 0.58, 3: 0.62}
    b = {0: 0.57, 1: 0.61, 2: 0.56, 3: 0.58, 9: 0.99}  # seed 9 has no partner: left out
    d = paired(a, b)
    differences = [0.03, 0.04, 0.02, 0.04]  # by hand
    mean = sum(differences) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in differences) / 3)
    assert d.n == 4 and d.diff == pytest.approx(mean, abs=1e-12)
    assert d.ci95 == pytest.approx(stats.t.ppf(0.975, 3) * sd / 2, rel=1e-9)
    assert d.p == pytest.approx(stats.ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)]).pvalue, rel=1e-9)
    # unpaired, the same numbers hide the difference in the spread between seeds (Welch)
    w = welch(list(a.values()), [b[s] for s in range(4)])
    assert w.diff == pytest.approx(mean, abs=1e-12)
    assert w.p == pytest.approx(stats.ttest_ind(list(a.values()), [b[s] for s in range(4)], equal_var=False).pvalue)
    assert w.ci95 > 3 * d.ci95 and w.p > 10 * d.p
    assert paired({0: 0.5}, {1: 0.5}) is None


def test_a_seeded_grid_sweep_becomes_one_row_per_arm_with_exact_statistics(tmp_path):
    sweep = grid_sweep(tmp_path / "sweep")
    _, paths = write_sweep_files(sweep)
    rows = read_rows(sweep / "study.csv")
    assert [r["arm"] for r in rows] == ["T_0=1 T_mult=1", "T_0=1 T_mult=2", "T_0=5 T_mult=1", "T_0=5 T_mult=2"]
    columns = list(rows[0])
    assert columns[:4] == ["arm", "arm_id", "schedule.T_0", "schedule.T_mult"]
    assert {"headline_mean", "test/acc_mean", "test/acc_std", "test/acc_ci95", "wall_seconds_mean"} <= set(columns)
    assert [(r["schedule.T_0"], r["schedule.T_mult"]) for r in rows] == [("1", "1"), ("1", "2"), ("5", "1"), ("5", "2")]
    assert [(r["n"], r["failed"], r["headline_metric"]) for r in rows] == [("3", "0", "test/acc")] * 4
    first = rows[0]
    assert float(first["test/acc_mean"]) == pytest.approx(0.93, rel=1e-12)
    assert float(first["test/acc_std"]) == pytest.approx(0.036055512754640, rel=1e-9)
    assert float(first["test/acc_ci95"]) == pytest.approx(0.089566858950302, rel=1e-9)
    assert float(first["test/loss_mean"]) == pytest.approx(2 - 0.93, rel=1e-12)
    assert float(rows[2]["test/acc_std"]) == pytest.approx(0, abs=1e-12)  # identical seeds
    diffs = [float(r["headline_diff_to_best"]) for r in rows]
    assert diffs == pytest.approx([-0.02, -0.12, 0.0, -0.01], abs=1e-12)
    # paired over the 3 seeds each arm shares with the best (T_0=5 T_mult=1: 0.95 on every seed)
    assert [int(r["headline_paired_n"]) for r in rows] == [3, 3, 3, 3]
    mine = ACCURACIES[(1, 2)]
    expected = stats.ttest_rel(mine, [0.95] * 3)
    assert float(rows[1]["headline_paired_diff"]) == pytest.approx(-0.12, abs=1e-12)
    assert float(rows[1]["headline_paired_p"]) == pytest.approx(expected.pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, 2) * stats.tstd([m - 0.95 for m in mine]) / math.sqrt(3)
    assert float(rows[1]["headline_paired_ci95"]) == pytest.approx(half, rel=1e-9)
    study_md = (sweep / "study.md").read_text()
    assert "| T_0=5 T_mult=1 | 3 | 95.00 ± 0.00 (± 0.00) | best |" in study_md
    assert "−" not in study_md.split("\n")[0] and "paired Δ to best (pp)" in study_md
    assert "| -12.00 ± 8.96 (p=0.029, Holm p=0.086) | -12.00 ± 8.96 (n=3, p=0.029, Holm p=0.086) |" in study_md
    for name in ("study_heatmap.png", "study_curves.png", "summary.png"):
        assert paths[name] == sweep / name and (sweep / name).stat().st_size > 10_000
        assert (sweep / name).with_suffix(".svg").read_text().startswith("<?xml")
    summary = read_rows(sweep / "summary.csv")
    assert len(summary) == 12 and {r["status"] for r in summary} == {"finished"}
    assert summary[0]["arm"] == "T_0=1 T_mult=1" and summary[0]["seed"] == "0"


def test_methods_at_several_budgets_are_drawn_against_the_budget(tmp_path):
    """Arms that differ only in trainer.max_epochs are one method at several budgets: one line each, with the
    mean and t interval of its seeds at each budget; the grid study above varies no budget and draws none."""
    accuracies = {("cosine", 10): [0.60, 0.62], ("cosine", 20): [0.70, 0.71], ("wsd", 10): [0.61, 0.65]}
    for (schedule, budget), accs in accuracies.items():
        for seed, acc in enumerate(accs):
            the_arm = arm({"trainer.max_epochs": budget, "schedule._target_": schedule}, {"schedule": schedule})
            make_run(tmp_path / "runs" / f"{schedule}_{budget}_{seed}", the_arm, seed, {"test/acc": acc})
    study, paths = write_report(sorted((tmp_path / "runs").iterdir()), tmp_path / "report")
    half = stats.t.ppf(0.975, 1) * stats.tstd([60, 62]) / math.sqrt(2)
    lines = budget_lines(study)
    assert set(lines) == {"cosine", "wsd"}
    assert [b for b, _, _ in lines["cosine"]] == [10, 20] and lines["wsd"][0][0] == 10
    assert lines["cosine"][0][1:] == pytest.approx((61.0, half), rel=1e-9)
    assert lines["cosine"][1][1] == pytest.approx(70.5, rel=1e-9)
    assert paths["budgets.png"].stat().st_size > 10_000
    assert "![against the training budget](budgets.png)" in (tmp_path / "report" / "report.md").read_text()
    _, grid_paths = write_sweep_files(grid_sweep(tmp_path / "grid"))
    assert "budgets.png" not in grid_paths


def test_an_empty_group_is_labelled_by_its_option(tmp_path):
    """averaging=none is also recorded as the setting `averaging: {}`; the label names the option, not `{}`."""
    plain = arm({"averaging": {}}, {"averaging": "none"})
    lawa = arm({"averaging._target_": "anneal.callbacks.LAWA", "averaging.k": 5}, {"averaging": "lawa"})
    for i, the_arm in enumerate((plain, lawa)):
        make_run(tmp_path / "runs" / str(i), the_arm, 0, {"test/acc": 0.5 + i / 10})
    study, _ = write_report(sorted((tmp_path / "runs").iterdir()), tmp_path / "report")
    assert sorted(a.label for a in study.arms) == ["averaging=none", "lawa"]


def test_runs_pool_by_their_arm_not_by_their_command_line(tmp_path):
    """A single run of an arm joins the sweep's arm of the same settings; a changed default splits an arm."""
    sweep = grid_sweep(tmp_path / "sweep")
    extra = make_run(tmp_path / "extra", arm({"schedule.T_0": 5, "schedule.T_mult": 2}), 3, {"test/acc": 0.90})
    changed = arm({"schedule.T_0": 5, "schedule.T_mult": 2, "schedule.lr_min": 1e-4})  # another default
    other = make_run(tmp_path / "other", changed, 0, {"test/acc": 0.5})
    out = tmp_path / "out"
    assert main([str(sweep), str(extra), str(other), "--out", str(out)]) == 0
    rows = {r["arm"]: r for r in read_rows(out / "study.csv")}
    assert rows["T_0=5 T_mult=2 lr_min=1e-05"]["n"] == "4"  # three seeds of the sweep, one separate run
    assert float(rows["T_0=5 T_mult=2 lr_min=1e-05"]["test/acc_mean"]) == pytest.approx((0.91 + 0.93 + 0.98 + 0.90) / 4)
    assert rows["T_0=5 T_mult=2 lr_min=0.0001"]["n"] == "1"


def test_the_headline_compares_an_ensemble_with_a_baseline_and_shows_the_gain_over_the_trained_network(tmp_path):
    """The snapshot post's comparison: the ensemble of a snapshot run against the exp-decay baseline's final
    network, each arm on its own headline, paired over seeds; and the ensemble's gain over its own last network."""
    baseline = arm({"schedule._target_": "anneal.schedules.Exponential"}, {"schedule": "exp"})
    snapshot = arm({"ensemble._target_": "anneal.callbacks.SnapshotEnsemble"}, {"ensemble": "snapshot"})
    for seed, (b, last, ens) in enumerate([(0.59, 0.58, 0.61), (0.60, 0.58, 0.62), (0.60, 0.59, 0.62)]):
        make_run(tmp_path / "baseline" / str(seed), baseline, seed, {"test/acc": b})
        make_run(tmp_path / "snapshot" / str(seed), snapshot, seed, {"test/acc": last, "ensemble/test/acc": ens})
    out = tmp_path / "out"
    assert main([str(tmp_path / "baseline"), str(tmp_path / "snapshot"), "--out", str(out)]) == 0
    rows = read_rows(out / "study.csv")
    assert [r["headline_metric"] for r in rows] == ["test/acc", "ensemble/test/acc"]
    assert [r["arm"] for r in rows] == ["exp ensemble=none", "sgdr snapshot"]
    assert float(rows[0]["headline_paired_diff"]) == pytest.approx(-(0.02 + 0.02 + 0.02) / 3, abs=1e-12)
    assert float(rows[1]["headline_gain_mean"]) == pytest.approx((0.03 + 0.04 + 0.03) / 3, abs=1e-12)
    study_md = (out / "study.md").read_text()
    assert "headline: snapshot ensemble test accuracy / test accuracy (%)" in study_md
    assert "headline: headline" not in study_md
    assert "headline − test acc (pp)" in study_md and "| 3.33 ± 0.58 (± 1.43) |" in study_md
    # --metric still compares everything on one key
    assert (
        main([str(tmp_path / "baseline"), str(tmp_path / "snapshot"), "--out", str(out), "--metric", "test/acc"]) == 0
    )
    assert [float(r["test/acc_diff_to_best"]) for r in read_rows(out / "study.csv")] == pytest.approx([0, -0.04 / 3])


def test_failed_running_and_lost_jobs_are_listed_and_counted_per_arm(tmp_path):
    sweep = tmp_path / "sweep"
    a50, a1 = arm({"schedule.T_0": 50}), arm({"schedule.T_0": 1})
    make_run(sweep / "0", a50, 0, status="failed", error="ensemble=snapshot needs a schedule with cycles")
    make_run(sweep / "1", a50, 1, {"test/acc": 0.6})
    make_run(sweep / "2", a1, 0, {"test/acc": 0.7})
    make_run(sweep / "3", a1, 1, status="started")
    (sweep / "3" / ".anneal.lock").write_text("999999 elsewhere\n")  # a killed job's lock: nobody holds it
    make_run(sweep / "4", a1, 2, status="started")
    with open(sweep / "4" / ".anneal.lock", "w") as held:  # a live job holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main([str(sweep)]) == 0  # the report of one sweep goes into it
    summary = read_rows(sweep / "summary.csv")
    assert [(r["job"], r["status"]) for r in summary] == [
        ("0", "failed"),
        ("1", "finished"),
        ("2", "finished"),
        ("3", "lost"),
        ("4", "running"),
    ]
    assert "needs a schedule with cycles" in summary[0]["reason"] and "held by no process" in summary[3]["reason"]
    rows = read_rows(sweep / "study.csv")
    assert [(r["arm"], r["n"], r["failed"], r["running"], r["lost"]) for r in rows] == [
        ("T_0=50", "1", "1", "0", "0"),
        ("T_0=1", "1", "0", "1", "1"),
    ]
    assert rows[0]["test/acc_std"] == "" and rows[0]["test/acc_ci95"] == ""  # one run: no spread
    header = (sweep / "study.md").read_text().splitlines()[0]
    assert "failed" in header and "running" in header and "lost" in header


def test_runs_from_before_run_json_are_read_and_what_they_lack_is_said(tmp_path):
    config = {"seed": 0, "mode": "train", "schedule": {"_target_": "anneal.schedules.SGDR", "T_0": 1}}
    choices = {"schedule": "sgdr", "model": "lenet", "logger": "csv"}
    old = [
        make_legacy_run(
            tmp_path / "old" / str(s), choices, config | {"seed": s}, [f"seed={s}"], {"test/acc": 0.5, "seed": s}
        )
        for s in (0, 1)
    ]
    failed = make_legacy_run(tmp_path / "old" / "2", choices, config | {"seed": 2}, ["seed=2"], None)
    out = tmp_path / "out"
    assert main([str(tmp_path / "old"), "--out", str(out)]) == 0
    (row,) = read_rows(out / "study.csv")
    assert row["n"] == "2" and row["failed"] == "1" and row["headline_metric"] == "test/acc"
    notes = (out / "study.md").read_text()
    assert "run.json" in notes and "metric declarations" in notes and "a resolved config" in notes
    assert old and failed


def test_hostile_and_broken_input_is_one_line_naming_the_file(tmp_path, capsys):
    good = make_run(tmp_path / "good", arm(), 0, {"test/acc": 0.5})
    listed = make_run(tmp_path / "listed", arm(), 1, {"test/acc": 0.5})
    (listed / "results.json").write_text("[1, 2]")
    corrupt = make_run(tmp_path / "corrupt", arm(), 2, {"test/acc": 0.5})
    (corrupt / "results.json").write_text('{"test/acc": 0.')
    tagged = make_legacy_run(tmp_path / "tagged", {}, {"seed": 0}, [], None)
    (tagged / ".hydra" / "hydra.yaml").write_text("!!python/object/apply:os.system ['touch pwned']\n")
    out = tmp_path / "out"
    assert main([str(good), str(good), str(listed), str(corrupt), str(tagged), "--out", str(out)]) == 0
    summary = {r["job"]: r for r in read_rows(out / "summary.csv")}
    assert summary["good"]["status"] == "finished" and len(summary) == 4  # the same directory twice: once
    assert summary["listed"]["status"] == "unreadable" and "holds a list" in summary["listed"]["reason"]
    assert str(corrupt / "results.json") in summary["corrupt"]["reason"]
    assert summary["tagged"]["status"] == "unreadable" and not (ROOT / "pwned").exists()
    assert read_rows(out / "study.csv")[0]["n"] == "1"
    capsys.readouterr()
    assert main([str(good), "--out", str(out), "--metric", "test/acc_typo"]) == 2
    error = capsys.readouterr().err
    assert "--metric test/acc_typo is not a metric of these runs: one of headline, " in error and "test/acc" in error
    assert main([str(good), "--out", str(good / "results.json")]) == 2
    assert "is a file" in capsys.readouterr().err
    stray = tmp_path / "stray"
    (stray / "0").mkdir(parents=True)
    (stray / "1").mkdir()
    assert main([str(stray)]) == 2 and "neither a run directory" in capsys.readouterr().err
    assert sorted(p.name for p in stray.iterdir()) == ["0", "1"]  # nothing written into it
    assert main([str(good), str(listed)]) == 2 and "give --out" in capsys.readouterr().err


def test_labels_from_a_run_directory_are_data_in_the_markdown(tmp_path):
    run = make_run(tmp_path / "a", arm({"model.note": "x|y\nz"}), 0, {"test/acc": 0.5})
    other = make_run(tmp_path / "b", arm({"model.note": "w"}), 0, {"test/acc": 0.6})
    out = tmp_path / "out"
    assert main([str(run), str(other), "--out", str(out)]) == 0
    table = (out / "study.md").read_text()
    assert "| note=x\\|y z |" in table and all(line.count("|") >= 5 for line in table.splitlines()[:4])


def test_the_sweep_callback_logs_a_wandb_study_run_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = grid_sweep(tmp_path / "sweep")
    config = OmegaConf.create(
        {
            "optimized_metric": "test/acc",
            "logger": {"_target_": "anneal.loggers.wandb_logger", "project": "anneal", "group": None, "mode": "auto"},
            "hydra": {"sweep": {"dir": str(sweep)}},
        }
    )
    SweepSummary().on_multirun_end(config)
    (run,) = (sweep / "wandb").glob("offline-run-*")
    assert list(run.glob("files/media/table/study/table_*.table.json"))
    assert list(run.glob("files/media/images/study/heatmap_*.png"))
    assert (sweep / "study.csv").is_file() and (sweep / "study_heatmap.png").is_file()


def test_concurrent_writers_leave_a_study_of_every_finished_job(tmp_path):
    """Jobs finishing at once on different processes (a cluster's nodes) each rewrite the sweep's study: under the
    sweep's lock the last writer has seen every job."""
    sweep = grid_sweep(tmp_path / "sweep")
    script = (
        "import sys; from pathlib import Path; from anneal.report.outputs import write_sweep_files; "
        "write_sweep_files(Path(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    writers = [subprocess.Popen([sys.executable, "-c", script, str(sweep)], env=env) for _ in range(4)]
    assert [w.wait(timeout=300) for w in writers] == [0] * 4
    rows = read_rows(sweep / "study.csv")
    assert [r["n"] for r in rows] == ["3"] * 4
    assert not list(sweep.glob(".*.tmp"))


def test_watch_rewrites_the_study_as_jobs_end_and_stops_when_none_runs(tmp_path):
    """A cluster's sweep on shared storage: `--watch` marks a job that holds its lock as running, rewrites the
    study when the job ends, and stops once no job runs."""
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", arm({"schedule.T_0": 1}), 0, {"test/acc": 0.5})
    make_run(sweep / "1", arm({"schedule.T_0": 1}), 1, status="started")
    lock = open(sweep / "1" / ".anneal.lock", "w")  # noqa: SIM115 (held until the job "ends")
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "anneal.report", str(sweep), "--watch", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = watcher.stdout.readline()
        assert "1 finished, 1 running" in first
        assert [r["status"] for r in read_rows(sweep / "summary.csv")] == ["finished", "running"]
        shutil.rmtree(sweep / "1")  # the job ends: its finished directory replaces the one that ran
        make_run(sweep / "1", arm({"schedule.T_0": 1}), 1, {"test/acc": 0.7})
        lock.close()
        assert watcher.wait(timeout=120) == 0
        assert "2 finished" in watcher.stdout.read()
    finally:
        watcher.kill()
    (row,) = read_rows(sweep / "study.csv")
    assert row["n"] == "2" and float(row["test/acc_mean"]) == pytest.approx(0.6)
