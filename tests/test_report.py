"""Studies from runs: arms, means and spreads over seeds, tables, figures, report.md, the CLI and the W&B run.

The run and sweep directories here are fabricated in the formats train.py writes, so every number is known."""

import json
import math

import pytest
import yaml
from conftest import read_rows
from omegaconf import OmegaConf

from anneal.report.__main__ import main
from anneal.report.outputs import write_sweep_files
from anneal.report.statistics import spread, student_t_cdf, student_t_quantile
from anneal.report.sweep import SweepSummary

# (T_0, T_mult) -> test/acc of seeds 0, 1, 2; the arms' means are 0.93, 0.83, 0.95 (the best) and 0.94
ACCURACIES = {
    ("1", "1"): [0.90, 0.92, 0.97],
    ("1", "2"): [0.80, 0.82, 0.87],
    ("5", "1"): [0.95, 0.95, 0.95],
    ("5", "2"): [0.91, 0.93, 0.98],
}


def make_run(directory, overrides, results=None, epochs=3):
    """A run directory as train.py leaves it; results=None: a failed job (Hydra's overrides.yaml only)."""
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if results is None:
        return directory
    acc = results["test/acc"]
    full = {"data": "SYNTHETIC", "model": "LeNet5", "seed": 0, "schedule": "sgdr", "test/loss": 2 - acc}
    full |= {"wall_seconds": 10.0, "epochs": epochs, "ensemble": [{"test/acc": acc}], "overrides": overrides}
    (directory / "results.json").write_text(json.dumps(full | results))
    history = ["epoch,step,lr,train/loss,train/acc,val/loss,val/acc,seconds"]
    history += [f"{e},{10 * (e + 1)},0.1,1.0,0.5,1.0,{acc * (e + 1) / epochs},1.5" for e in range(epochs)]
    (directory / "history.csv").write_text("\n".join(history) + "\n")
    steps = range(10 * epochs + 1)
    lr = ["step,epoch,lr"] + [f"{s},{s / 10},{0.05 * (1 + math.cos(math.pi * (s % 10) / 10))}" for s in steps]
    (directory / "lr_schedule.csv").write_text("\n".join(lr) + "\n")
    return directory


def make_sweep(sweep, jobs):
    """Numbered job directories, in the order Hydra runs them; jobs are (overrides, results or None)."""
    for number, (overrides, results) in enumerate(jobs):
        make_run(sweep / str(number), overrides, results)
    return sweep


def grid_sweep(sweep):
    common = ["schedule=sgdr", "trainer.enable_progress_bar=false", "logger.mode=offline"]
    return make_sweep(
        sweep,
        [
            ([*common, f"schedule.T_0={t0}", f"schedule.T_mult={tm}", f"seed={seed}"], {"test/acc": acc, "seed": seed})
            for (t0, tm), accs in ACCURACIES.items()
            for seed, acc in enumerate(accs)
        ],
    )


@pytest.mark.parametrize(
    ("df", "textbook"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (10**6, 1.960)]
)
def test_student_t_quantile_matches_the_textbook_table(df, textbook):
    assert student_t_quantile(0.975, df) == pytest.approx(textbook, abs=5e-4)
    assert student_t_quantile(0.025, df) == pytest.approx(-textbook, abs=5e-4)
    assert student_t_cdf(student_t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-9)


def test_spread_is_the_mean_the_sample_std_and_the_t_interval():
    s = spread([0.90, 0.92, 0.97])  # deviations -0.03, -0.01, 0.04: sum of squares 0.0026 over n - 1 = 2
    assert s.n == 3 and s.mean == pytest.approx(0.93, rel=1e-12)
    assert s.std == pytest.approx(0.036055512754640, rel=1e-9)  # sqrt(0.0013)
    assert s.ci95 == pytest.approx(4.302652729749 * 0.036055512754640 / 1.7320508075689, rel=1e-9)
    assert spread([0.5]).std is None and spread([0.5]).ci95 is None


def test_a_seeded_grid_sweep_becomes_one_row_per_arm_with_exact_statistics(tmp_path):
    sweep = grid_sweep(tmp_path / "sweep")
    _, paths = write_sweep_files(sweep)
    rows = read_rows(sweep / "study.csv")
    assert [r["arm"] for r in rows] == [  # the sweep's order, not the ranking
        "schedule.T_0=1 schedule.T_mult=1",
        "schedule.T_0=1 schedule.T_mult=2",
        "schedule.T_0=5 schedule.T_mult=1",
        "schedule.T_0=5 schedule.T_mult=2",
    ]
    columns = list(rows[0])
    assert columns[:5] == ["arm", "schedule.T_0", "schedule.T_mult", "n", "failed"]
    assert columns[-1] == "test/acc_diff_to_best" and "seed_mean" not in columns
    statistics = {"test/acc_mean", "test/acc_std", "test/acc_ci95", "ensemble/test/acc_mean", "wall_seconds_mean"}
    assert statistics <= set(columns)
    assert [(r["n"], r["failed"]) for r in rows] == [("3", "0")] * 4
    first = rows[0]
    assert float(first["test/acc_mean"]) == pytest.approx(0.93, rel=1e-12)
    assert float(first["test/acc_std"]) == pytest.approx(0.036055512754640, rel=1e-9)
    assert float(first["test/acc_ci95"]) == pytest.approx(0.089566858950302, rel=1e-9)
    assert float(first["test/loss_mean"]) == pytest.approx(2 - 0.93, rel=1e-12)
    assert float(rows[2]["test/acc_std"]) == pytest.approx(0, abs=1e-12)  # identical seeds
    diffs = [float(r["test/acc_diff_to_best"]) for r in rows]
    assert diffs == pytest.approx([-0.02, -0.12, 0.0, -0.01], abs=1e-12)

    study_md = (sweep / "study.md").read_text()
    assert "93.00 ± 3.61 (± 8.96)" in study_md and "best" in study_md
    assert "sample standard deviation" in study_md and "Student-t 95%" in study_md
    for name in ("study_heatmap.png", "study_curves.png", "summary.png"):
        assert paths[name] == sweep / name and (sweep / name).stat().st_size > 10_000
    summary = read_rows(sweep / "summary.csv")
    assert len(summary) == 12 and {r["status"] for r in summary} == {"ok"}
    assert "trainer.enable_progress_bar" not in summary[0] and "logger.mode" not in summary[0]


def test_runs_of_two_separate_sweeps_are_two_arms_in_one_report(tmp_path):
    arms = {"baseline": [0.70, 0.72, 0.74], "snapshot": [0.75, 0.77, 0.79]}
    sweeps = [
        make_sweep(
            tmp_path / name,
            [
                ([f"experiment=snapshot_vs_exp_{name}", f"seed={seed}"], {"test/acc": acc, "seed": seed})
                for seed, acc in enumerate(accs)
            ],
        )
        for name, accs in arms.items()
    ]
    out = tmp_path / "report"
    assert main([*map(str, sweeps), "--out", str(out)]) == 0
    rows = read_rows(out / "study.csv")
    assert [r["arm"] for r in rows] == ["experiment=snapshot_vs_exp_baseline", "experiment=snapshot_vs_exp_snapshot"]
    assert [r["experiment"] for r in rows] == ["snapshot_vs_exp_baseline", "snapshot_vs_exp_snapshot"]
    assert [float(r["test/acc_mean"]) for r in rows] == pytest.approx([0.72, 0.77])
    assert [float(r["test/acc_diff_to_best"]) for r in rows] == pytest.approx([-0.05, 0.0])
    report = (out / "report.md").read_text()
    assert str(sweeps[0]) in report and str(sweeps[1]) in report
    assert "![curves](study_curves.png)" in report and "[study.csv](study.csv)" in report
    assert not (out / "study_heatmap.png").exists()  # one swept setting: no grid to draw
    assert (out / "study_curves.png").stat().st_size > 10_000
    jobs = [r["job"] for r in read_rows(out / "summary.csv")]
    assert jobs == ["baseline/0", "baseline/1", "baseline/2", "snapshot/0", "snapshot/1", "snapshot/2"]


def test_failed_jobs_are_listed_in_the_summary_and_counted_per_arm(tmp_path):
    sweep = make_sweep(
        tmp_path / "sweep",
        [
            (["schedule.T_0=50", "seed=0"], None),  # no results.json: failed
            (["schedule.T_0=50", "seed=1"], {"test/acc": 0.6}),
            (["schedule.T_0=1", "seed=0"], {"test/acc": 0.7}),
            (["schedule.T_0=1", "seed=1"], {"test/acc": 0.8}),
        ],
    )
    assert main([str(sweep)]) == 0  # the report of one directory goes into it
    summary = read_rows(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["schedule.T_0"]) for r in summary] == [
        ("0", "failed", "50"),
        ("1", "ok", "50"),
        ("2", "ok", "1"),
        ("3", "ok", "1"),
    ]
    assert summary[0]["test/acc"] == "" and summary[1]["test/acc"] == "0.6"
    rows = read_rows(sweep / "study.csv")
    assert [(r["arm"], r["n"], r["failed"]) for r in rows] == [
        ("schedule.T_0=50", "1", "1"),
        ("schedule.T_0=1", "2", "0"),
    ]
    assert rows[0]["test/acc_std"] == "" and rows[0]["test/acc_ci95"] == ""  # one run: no spread
    assert "failed" in (sweep / "study.md").read_text().splitlines()[0]
    assert "![curves](study_curves.png)" in (sweep / "report.md").read_text()


def test_single_run_directories_and_a_lower_is_better_metric(tmp_path, capsys):
    runs = [make_run(tmp_path / f"run{seed}", [f"seed={seed}"], {"test/acc": 0.5 + seed / 10}) for seed in (0, 1)]
    other = make_run(tmp_path / "adamw", ["optimizer=adamw"], {"test/acc": 0.9})
    out = tmp_path / "out"
    assert main([*map(str, runs), "--out", str(out)]) == 0
    (row,) = read_rows(out / "study.csv")
    assert row["arm"] == "run0 + run1" and row["n"] == "2"  # one arm: named after its directories
    assert float(row["test/acc_mean"]) == pytest.approx(0.55)
    printed = capsys.readouterr().out
    assert "2 runs (2 finished) in 1 arms" in printed and f"wrote {out / 'report.md'}" in printed

    assert main([str(runs[0]), str(other), "--out", str(out), "--metric", "test/loss"]) == 0
    rows = read_rows(out / "study.csv")
    assert [r["arm"] for r in rows] == ["run0", "optimizer=adamw"]  # run0 has no optimizer override
    assert [float(r["test/loss_diff_to_best"]) for r in rows] == pytest.approx([0.4, 0.0])  # lower loss is better
    assert main([str(tmp_path / "missing")]) == 2


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
