"""Multiruns: one directory, results.json and W&B run per job, a summary per sweep; launchers and Optuna."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import CONF, read_rows, run_cli, run_main
from hydra import compose, initialize_config_dir

SMALL = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def test_two_by_two_sweep_has_four_jobs_a_summary_and_grouped_wandb_runs(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "schedule=sgdr",
        "schedule.T_0=1,2",
        "schedule.T_mult=1,2",
        *SMALL,
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep}",
        env={"WANDB_API_KEY": None},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    groups = set()
    for job in jobs:
        assert "test/acc" in json.loads((job / "results.json").read_text())
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1  # its own W&B run, finished
        groups.add(yaml.safe_load((job / "config.yaml").read_text())["logger"]["group"])
    assert len(groups) == 4  # one W&B group per arm
    rows = read_rows(sweep / "study.csv")
    assert {(r["schedule.T_0"], r["schedule.T_mult"]) for r in rows} == {("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")}
    assert all(0 <= float(r["headline_mean"]) <= 1 for r in rows)
    assert (sweep / "summary.md").is_file() and (sweep / "summary.png").stat().st_size > 10_000


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=1,2",
        *SMALL,
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(sweep.glob("*/results.json"))) == 2 and (sweep / "summary.csv").is_file()


def test_optuna_search_maximizes_the_returned_metric(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_main(
        "-m",
        "hparams_search=sgdr_optuna",
        "hydra.sweeper.n_trials=2",
        *SMALL,
        "data.val_size=64",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"schedule.T_0", "schedule.T_mult", "optimizer.lr"}
    values = [json.loads(p.read_text())["val/acc"] for p in sweep.glob("*/results.json")]
    assert best["best_value"] == max(values)


def test_the_slurm_launcher_requeues_a_preempted_job_as_a_resume_with_its_settings(tmp_path):
    """Without SLURM: the launcher the config builds is anneal's requeueing one, and on submitit's preemption signal
    it hands back a submission of the same launcher, settings and task, counted as one more requeue (the job then
    resumes from its last.ckpt: test_cluster runs that part for real), leaving the running job's count alone."""
    from hydra.utils import instantiate

    from anneal.launchers import RequeueingLauncher, SubmititJob

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", f"output_dir={tmp_path}"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert isinstance(launcher, RequeueingLauncher) and launcher._EXECUTOR == "slurm"

    def task(config):
        return config

    launcher.task_function = SubmititJob(task, separate_stderr=False)
    submission = launcher.checkpoint("job config")
    requeued = submission.function
    assert requeued is not launcher and requeued.params == launcher.params
    assert requeued.task_function == SubmititJob(task, separate_stderr=False, requeues=1)
    assert launcher.task_function.requeues == 0 and submission.args == ("job config",)
    assert requeued.checkpoint().function.task_function.requeues == 2  # each preemption counts once more


def test_a_failing_job_does_not_stop_the_other_jobs_and_the_summary_is_written(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_main(
        "-m",
        "schedule=sgdr",
        "schedule.T_0=50,1",
        "schedule.T_mult=1",
        "ensemble=snapshot",
        *[o for o in SMALL if not o.startswith("trainer.max_epochs")],
        "trainer.max_epochs=2",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )  # the first job (T_0=50) has no cycle end in its 2 epochs: it fails
    assert done.returncode != 0 and "ensemble=snapshot needs a schedule with cycles" in done.stderr
    assert not (sweep / "0" / "results.json").exists() and (sweep / "1" / "results.json").is_file()
    rows = read_rows(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["arm"]) for r in rows] == [("0", "failed", "T_0=50"), ("1", "finished", "T_0=1")]
    assert "ensemble=snapshot needs a schedule with cycles" in rows[0]["reason"]
    assert rows[0]["test/acc"] == "" and 0 <= float(rows[1]["test/acc"]) <= 1
    arms = [(r["arm"], r["n"], r["failed"]) for r in read_rows(sweep / "study.csv")]
    assert arms == [("T_0=50", "0", "1"), ("T_0=1", "1", "0")]


def test_a_seeded_sweep_gets_a_study_of_its_arms_with_the_mean_over_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    two_epochs = [o for o in SMALL if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=2"]
    done = run_main(
        "-m",
        "schedule=sgdr",
        "schedule.T_0=1,2",
        "seed=0,1",
        *two_epochs,
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    rows = read_rows(sweep / "study.csv")
    arms = [(r["arm"], r["n"], r["failed"]) for r in rows]
    assert arms == [("T_0=1", "2", "0"), ("T_0=2", "2", "0")]
    for row in rows:
        accs = [r["test/acc"] for r in results if r["arm"] == row["arm_id"]]
        assert len(accs) == 2 and float(row["test/acc_mean"]) == pytest.approx(sum(accs) / 2, abs=1e-12)
    assert "± " in (sweep / "study.md").read_text()
    assert (sweep / "study_curves.png").stat().st_size > 10_000  # the lr curves at least (history.csv may be absent)


@pytest.mark.slow  # seven runs through the CLI: a minute (test_report pools made-up runs by arm)
def test_two_sweeps_and_a_single_run_pool_into_the_arms_of_what_they_ran(tmp_path):
    """The README's flow: a T_0 x T_mult x seed sweep, then one more seed of an arm run on its own with T_mult
    left at its default (2), then a second sweep of another seed: the report pools each run into the arm of the
    settings it ran with, whatever its command line said; `logger` and an `experiment` spelled out do not split
    arms; a default that another version of the config changes does."""
    tiny = [*SMALL[:3], "data.batch_size=64", "trainer.max_epochs=1", *SMALL[4:], "schedule=sgdr"]
    first, second, single = tmp_path / "first", tmp_path / "second", tmp_path / "single"
    done = run_cli(
        "-m", *tiny, "schedule.T_0=1,2", "schedule.T_mult=1,2", "seed=0,1", "logger=csv", f"hydra.sweep.dir={first}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli(*tiny, "schedule.T_0=2", "seed=2", "logger=none", f"hydra.run.dir={single}")
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli(
        "-m", *tiny, "schedule.T_0=2", "schedule.T_mult=2", "seed=3", "logger=csv", f"hydra.sweep.dir={second}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the same arm as T_0=1 T_mult=1 of the first sweep, under another version of the config whose sgdr
    # default lr_min differs: not the same computation, so not the same arm
    changed = tmp_path / "changed_conf"
    shutil.copytree(CONF, changed)
    sgdr = (CONF / "schedule" / "sgdr.yaml").read_text()
    assert "lr_min: 1.0e-5" in sgdr
    (changed / "schedule" / "sgdr.yaml").write_text(sgdr.replace("lr_min: 1.0e-5", "lr_min: 2.0e-5"))
    other = tmp_path / "other"
    done = run_cli(
        "--config-path",
        str(changed),
        *tiny,
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "seed=0",
        "logger=csv",
        f"hydra.run.dir={other}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "anneal.report",
            str(first),
            str(single),
            str(second),
            str(other),
            str(first),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["arm"]: r for r in read_rows(out / "study.csv")}
    assert rows["T_0=2 T_mult=2 lr_min=1e-05"]["n"] == "4"  # seeds 0, 1 (first), 2 (single), 3 (second)
    assert rows["T_0=1 T_mult=1 lr_min=1e-05"]["n"] == "2" and rows["T_0=1 T_mult=1 lr_min=2e-05"]["n"] == "1"
    assert len(rows) == 5 and sum(int(r["n"]) for r in rows.values()) == 11  # the first sweep given twice: once
    assert {int(r["schedule.T_0"]) for r in rows.values()} == {1, 2}
    assert "schedule.lr_min" in read_rows(out / "study.csv")[0]
