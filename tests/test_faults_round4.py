"""Faults found by the fourth round of probing (issue 27): a cooldown branched inside an epoch, trainer settings
that change what a run computes, the data a run used, hostile numbers in results.json."""

import inspect
import json
import pickle
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import lightning
import pytest
import torch
from conftest import FAST, ROOT, compose_config, read_rows, run_cli, write_cifar_layout
from fabricate import arm, make_run

from anneal.branch import main as branch
from anneal.callbacks import BranchPoints
from anneal.config.identity import arm_of_config
from anneal.data import CIFAR10
from anneal.errors import ConfigError, within
from anneal.record import ARM, BOOKKEEPING, CLASSES, classify, describe
from anneal.report.__main__ import main as report
from anneal.run import run
from anneal.schedules import Clock, LinearWarmup, LrRecipe, ScheduleLR, WarmupStableDecay

WSD_8_STEPS = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",  # 8 steps an epoch
    "model=lenet",
    "schedule=wsd",
    "warmup=linear",
    "warmup.epochs=1",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    *FAST,
]


def logged(run_dir: Path) -> list[dict]:
    """Every row the CSV logger wrote, without the wall-clock columns, over every version (a resume's too)."""
    rows = []
    for path in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        rows += [{k: v for k, v in r.items() if v != "" and "seconds" not in k} for r in read_rows(path)]
    return rows


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_a_cooldown_branched_inside_an_epoch_is_the_run_of_its_budget_from_scratch(tmp_path):
    stable, scratch = tmp_path / "stable", tmp_path / "scratch"
    done = run_cli(
        *WSD_8_STEPS, "trainer.max_epochs=6", "branch=cooldowns", "branch.budgets=[3]", f"hydra.run.dir={stable}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the 3-epoch run's cooldown begins at 1 + 0.8 * 2 = 2.6 epochs, inside step 21 of 8-step epochs: its lr is
    # already below the peak at step 21, which the 6-epoch run still trains at the peak
    points = json.loads((stable / "results.json").read_text())["branch_points"]
    assert [(p["budget"], p["step"]) for p in points] == [(3, 21)]
    done = subprocess.run(
        [sys.executable, "-m", "anneal.branch", str(stable)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_cli(*WSD_8_STEPS, "trainer.max_epochs=3", f"hydra.run.dir={scratch}").returncode == 0
    branch = stable / "branches" / "budget_3"
    a, b = (json.loads((d / "results.json").read_text()) for d in (branch, scratch))
    for key in ("test/acc", "test/loss", "steps", "epochs", "arm"):
        assert a[key] == b[key], key
    assert without_seconds(read_rows(branch / "history.csv")) == without_seconds(read_rows(scratch / "history.csv"))
    assert read_rows(branch / "lr_schedule.csv") == read_rows(scratch / "lr_schedule.csv")
    # every lr the optimizer trained with, as logged: the branch logs the steps from 21 on, the run from scratch all
    lr_of = lambda rows: {r["step"]: r["lr-SGD"] for r in rows if "lr-SGD" in r}  # noqa: E731
    from_scratch, branched = lr_of(logged(scratch)), lr_of(logged(branch))
    assert sorted(map(int, branched)) == list(range(21, 24))
    assert branched == {s: lr for s, lr in from_scratch.items() if int(s) >= 21}


def test_a_resume_under_another_plan_trains_its_first_step_at_that_plans_lr():
    """Any resume whose plan differs from the saved run's after its last step (`resume_changes=[trainer.max_epochs]`):
    restored in Lightning's order (the optimizer, then the scheduler), the coming step's lr is the new plan's."""
    recipe = LrRecipe(schedule=partial(WarmupStableDecay, cooldown="20%", shape="linear"))
    long, short = (recipe.build(0.1, Clock.of_length(8, max_epochs=epochs)) for epochs in (6, 3))
    assert long.lr(21) == 0.1 and short.lr(21) < 0.1  # the 3-epoch cooldown began at step 19.2
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = ScheduleLR(optimizer, long)
    for _ in range(21):
        optimizer.step()
        scheduler.step()
    saved = optimizer.state_dict(), scheduler.state_dict()
    resumed = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = ScheduleLR(resumed, short)
    resumed.load_state_dict(saved[0])
    scheduler.load_state_dict(saved[1])
    assert resumed.param_groups[0]["lr"] == short.lr(21) and scheduler.get_last_lr() == [short.lr(21)]
    resumed.step()
    scheduler.step()
    assert resumed.param_groups[0]["lr"] == short.lr(22)


# --- every trainer setting is classified on purpose -----------------------------------------------------------------


def test_every_argument_of_lightnings_trainer_is_classified_on_purpose():
    arguments = [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]
    assert [a for a in arguments if f"trainer.{a}" not in CLASSES] == []  # not by the `trainer` prefix alone
    for measured in ("limit_test_batches", "limit_val_batches", "val_check_interval", "check_val_every_n_epoch"):
        assert classify(f"trainer.{measured}") == ARM
    for computed in ("accumulate_grad_batches", "gradient_clip_val", "precision", "devices", "num_nodes"):
        assert classify(f"trainer.{computed}") == ARM
    for same in ("deterministic", "log_every_n_steps", "enable_progress_bar", "accelerator", "detect_anomaly"):
        assert classify(f"trainer.{same}") == BOOKKEEPING


@pytest.mark.parametrize(
    "setting, computes",
    [
        ("+trainer.limit_test_batches=1", True),  # tested on one batch, not the test set
        ("+trainer.limit_val_batches=1", True),  # what a plateau schedule is fed
        ("+trainer.val_check_interval=0.5", True),
        ("+trainer.gradient_clip_val=1.0", True),
        ("trainer.precision=bf16-mixed", True),
        ("+trainer.detect_anomaly=true", False),
        ("trainer.log_every_n_steps=1", False),
    ],
)
def test_a_trainer_setting_that_changes_what_a_run_computes_makes_another_arm(tmp_path, setting, computes):
    plain = arm_of_config(compose_config(output_dir=tmp_path))
    changed = arm_of_config(compose_config(setting, output_dir=tmp_path))
    assert (plain.id != changed.id) == computes


# --- the data a run used --------------------------------------------------------------------------------------------


def test_the_data_a_run_loaded_is_known_by_its_content_not_its_path(tmp_path):
    first = write_cifar_layout(tmp_path / "first")
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    smaller = write_cifar_layout(tmp_path / "smaller", per_file=40)
    relabelled = write_cifar_layout(tmp_path / "relabelled")
    identities = {}
    for name, root in (("first", first), ("copy", copy), ("smaller", smaller)):
        data = CIFAR10(root=str(root), download=False)
        data.setup()
        identities[name] = data.identity
    assert identities["first"] == identities["copy"]
    assert identities["first"]["train"] == 300 and identities["smaller"]["train"] == 200
    assert identities["first"]["test"] == 50 and identities["first"]["name"] == "CIFAR-10"
    assert identities["smaller"]["fingerprint"] != identities["first"]["fingerprint"]
    # the same sizes, one label changed: other data
    batch = relabelled / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(batch.read_bytes())
    entry["labels"][0] = (entry["labels"][0] + 1) % 10
    batch.write_bytes(pickle.dumps(entry, protocol=4))
    data = CIFAR10(root=str(relabelled), download=False)
    data.setup()
    assert data.identity["fingerprint"] != identities["first"]["fingerprint"]


def test_runs_on_other_data_are_other_arms_and_the_same_data_by_another_path_pools(tmp_path):
    first = write_cifar_layout(tmp_path / "first", per_file=20, test=20)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    other = write_cifar_layout(tmp_path / "other", per_file=16, test=20)
    small = ["data=cifar10", "data.download=false", "data.batch_size=50", "model=lenet", "trainer.max_epochs=1", *FAST]
    for name, root, seed in (("first", first, 0), ("copy", copy, 1), ("other", other, 0)):
        run(compose_config(*small, f"data.root={root}", f"seed={seed}", output_dir=tmp_path / "runs" / name))
    results = {n: json.loads((tmp_path / "runs" / n / "results.json").read_text()) for n in ("first", "copy", "other")}
    assert results["first"]["data"] == "CIFAR-10: 100 train / 20 test images"
    assert results["other"]["data"] == "CIFAR-10: 80 train / 20 test images"
    assert results["first"]["arm"] == results["copy"]["arm"] != results["other"]["arm"]
    record = json.loads((tmp_path / "runs" / "first" / "run.json").read_text())
    assert record["arm"]["id"] == results["first"]["arm"] and record["arm"]["data"] == results["first"]["dataset"]
    out = tmp_path / "report"
    assert report([str(tmp_path / "runs" / n) for n in ("first", "copy", "other")] + ["--out", str(out)]) == 0
    assert sorted(r["n"] for r in read_rows(out / "study.csv")) == ["1", "2"]


# --- hostile numbers in results.json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, reason",
    [
        (1e308, "outside [0, 1]"),
        (5.0, "outside [0, 1]"),
        (-0.1, "outside [0, 1]"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("0.9", "not a number"),
        (True, "not a number"),
        (None, "not a number"),
    ],
)
def test_a_declared_metric_that_cannot_be_a_measurement_makes_its_run_unreadable(tmp_path, value, reason):
    for seed, acc in enumerate([0.5, 0.6]):
        make_run(tmp_path / "sweep" / str(seed), arm(), seed, {"test/acc": acc})
    hostile = make_run(tmp_path / "sweep" / "2", arm(), 2, {"test/acc": 0.7})
    results = json.loads((hostile / "results.json").read_text())
    results["test/acc"] = value
    (hostile / "results.json").write_text(json.dumps(results).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    out = tmp_path / "out"
    assert report([str(tmp_path / "sweep"), "--out", str(out)]) == 0
    summary = {r["job"]: r for r in read_rows(out / "summary.csv")}
    assert summary["2"]["status"] == "unreadable"
    assert str(hostile / "results.json") in summary["2"]["reason"] and "test/acc is " in summary["2"]["reason"]
    assert reason in summary["2"]["reason"]
    (row,) = read_rows(out / "study.csv")
    assert row["n"] == "2" and float(row["headline_mean"]) == pytest.approx(0.55)


def test_a_huge_loss_is_unreadable_not_a_traceback(tmp_path):
    for seed in range(2):
        make_run(tmp_path / "sweep" / str(seed), arm(), seed, {"test/acc": 0.5})
    results = json.loads((tmp_path / "sweep" / "1" / "results.json").read_text())
    (tmp_path / "sweep" / "1" / "results.json").write_text(json.dumps(results | {"test/loss": 1e308}))
    out = tmp_path / "out"
    assert report([str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert "beyond any measurement" in {r["job"]: r for r in read_rows(out / "summary.csv")}["1"]["reason"]


def test_seeds_spelt_otherwise_are_one_seed_and_a_run_reached_twice_counts_once(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", arm(), 0, {"test/acc": 0.5})
    for job, seed in ((1, "0"), (2, 0.0)):  # seed 0 again: a repeat, left out
        make_run(sweep / str(job), arm(), seed, {"test/acc": 0.9})
    make_run(sweep / "3", arm(), 1, {"test/acc": 0.7})
    (sweep / "4").symlink_to(sweep / "3", target_is_directory=True)  # the same run again, through a link
    out = tmp_path / "out"
    assert report([str(sweep), "--out", str(out)]) == 0
    (row,) = read_rows(out / "study.csv")
    assert row["n"] == "2"
    assert len(read_rows(out / "summary.csv")) == 4
    assert "2 run(s) repeat a seed" in (out / "study.md").read_text()
    make_run(tmp_path / "odd" / "0", arm(), "zero", {"test/acc": 0.5})
    assert report([str(tmp_path / "odd"), "--out", str(tmp_path / "out2")]) == 0
    (only,) = read_rows(tmp_path / "out2" / "summary.csv")
    assert only["status"] == "unreadable" and "the seed 'zero' is not a whole number" in only["reason"]


def test_a_study_of_lost_runs_only_says_none_finished(tmp_path):
    make_run(tmp_path / "sweep" / "0", arm(), 0, status="started")
    out = tmp_path / "out"
    assert report([str(tmp_path / "sweep"), "--out", str(out)]) == 0
    text = (out / "study.md").read_text()
    assert "headline: headline" not in text and "headline: no run finished" in text


# --- rough edges ----------------------------------------------------------------------------------------------------

SMALL_SYNTHETIC = ["data=synthetic", "data.train_size=64", "data.test_size=32", "data.batch_size=32", "model=lenet"]


def test_lightnings_lr_monitor_only_reads_the_lr_and_is_accepted_with_a_logger(tmp_path):
    monitor = "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor"
    run(compose_config(*SMALL_SYNTHETIC, "trainer.max_epochs=1", monitor, *FAST, output_dir=tmp_path / "csv"))
    assert json.loads((tmp_path / "csv" / "results.json").read_text())["steps"] == 2
    quiet = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none"]
    with pytest.raises(ConfigError, match="LearningRateMonitor sends the lr to a logger"):
        run(compose_config(*SMALL_SYNTHETIC, monitor, *quiet, output_dir=tmp_path / "none"))


def branched_run(directory: Path) -> Path:
    """A finished run with a branch point for a 3-epoch run whose branch has finished."""
    make_run(directory, arm(), 0, {"test/acc": 0.5})
    (directory / "branches" / "budget_3").mkdir(parents=True)
    (directory / "branches" / "budget_3.ckpt").write_bytes(b"")
    (directory / "branches" / "budget_3" / "results.json").write_text("{}")
    return directory


def test_the_branch_command_says_what_it_cannot_do_in_one_line(tmp_path, capsys):
    branched = branched_run(tmp_path / "branched")
    assert branch([str(branched), "--budgets", "3,3"]) == 0
    assert capsys.readouterr().out.count("finished already") == 1  # a budget given twice, once
    assert branch([str(branched), "--", "trainer.max_epochs=5"]) == 2
    error = capsys.readouterr().err
    assert "trainer.max_epochs=5 is invalid after --" in error and "--budgets" in error
    plain = make_run(tmp_path / "plain", arm(), 0, {"test/acc": 0.5})
    assert branch([str(plain)]) == 2
    assert "no branch points saved (train with branch=cooldowns branch.budgets=[...])" in capsys.readouterr().err


def test_branch_budgets_that_cannot_be_are_named_as_budgets(tmp_path):
    with pytest.raises(ConfigError, match=r"^budgets=3 is invalid: a list of training lengths"):
        BranchPoints(budgets=3)  # type: ignore[arg-type]
    wsd = ["schedule=wsd", "warmup=linear", "warmup.epochs=1", "trainer.max_epochs=4", "branch=cooldowns"]
    with pytest.raises(ConfigError) as error:
        run(compose_config(*SMALL_SYNTHETIC, *wsd, "branch.budgets=[1]", *FAST, output_dir=tmp_path))
    assert str(error.value).startswith("branch.budgets=1 is invalid: a run of 1 epochs with this run's settings")


def test_a_cooldown_and_a_warmup_in_steps_are_refused_with_what_to_write():
    for cooldown in (-2, 0, "0%"):
        with pytest.raises(ConfigError, match=r"must be > 0"), within("schedule"):
            WarmupStableDecay(peak=0.1, total=10, cooldown=cooldown)
    with pytest.raises(ConfigError) as error, within("warmup"):
        LinearWarmup(epochs=5, steps=5)
    assert "a warmup in steps is 'warmup.steps=5 warmup.epochs=null'" in str(error.value)
    assert LinearWarmup(epochs=None, steps=5).duration(Clock(10, 100)) == 0.5


def test_labels_name_the_group_where_an_option_name_could_mislead():
    assert describe({"schedule": "wsd", "warmup": "linear"}, ["schedule", "warmup"]) == "wsd warmup=linear"
    both = {"schedule": "snapshot", "ensemble": "snapshot", "model": "lenet"}
    assert describe(both, list(both)) == "schedule=snapshot ensemble=snapshot lenet"


def test_a_bad_setting_is_printed_once(tmp_path):
    done = run_cli(*SMALL_SYNTHETIC, "schedule=wsd", "schedule.cooldown=-2", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.count("schedule.cooldown=-2 is invalid") == 1, done.stderr[-2000:]
    assert "schedule.cooldown=-2 is invalid" in (tmp_path / "train.log").read_text()  # and kept in the run's log
