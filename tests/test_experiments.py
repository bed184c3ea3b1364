"""Every experiment preset composes with the real config, states what it reproduces, and runs a step."""

import json
import subprocess
import sys

import pytest
from conftest import CONF, FAST, ROOT, accuracy_by_hand, compose_config
from hydra.utils import instantiate

from anneal.run import run

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
BUDGET_ARMS = ("cosine", "linear", "wsd", "schedulefree", "lawa")


def schedule_of(cfg):
    """The preset's lr schedule as the run builds it (per epoch, peak optimizer.lr)."""
    epochs = cfg.trainer.max_epochs
    return instantiate(cfg.schedule)(peak=cfg.optimizer.lr, total=epochs)


def test_the_reference_studies_have_presets_that_compose_what_they_reproduce(tmp_path):
    """Each reference study's preset composes the network, the schedule, its cycles and the averaging or
    ensemble of the published setup (SGDR: Loshchilov & Hutter 2017; Snapshot Ensembles: Huang et al. 2017;
    SWA: Izmailov et al. 2018); a change of a config group or of the schedules' arithmetic breaks one."""
    assert {
        "snapshot_vs_exp_snapshot",
        "snapshot_vs_exp_baseline",
        "sgdr_study_restarts",
        "sgdr_study_cosine",
        "sgdr_study_step",
        "warmup_cosine_lenet",
        "swa_sgd",
        "swa_cyclic",
        "sgdr_wrn28_10",
        "snapshot_wrn",
        "swa_wrn28_10",
    } <= set(PRESETS)
    checked = ["sgdr_wrn28_10", "snapshot_wrn", "snapshot_vs_exp_snapshot", "snapshot_vs_exp_baseline", "swa_wrn28_10"]
    checked += ["swa_sgd", "swa_cyclic", "warmup_cosine_lenet"]
    preset = {name: compose_config(f"experiment={name}", output_dir=tmp_path) for name in checked}

    sgdr = preset["sgdr_wrn28_10"]  # WRN-28-10, restarts after 10, 20, 40, 80 epochs: the budget ends a cycle
    assert (sgdr.model.depth, sgdr.model.widen_factor) == (28, 10)
    assert schedule_of(sgdr).cycle_ends() == pytest.approx([10, 30, 70, 150])
    assert sgdr.ensemble._target_.endswith("SnapshotEnsemble")

    snapshot = preset["snapshot_wrn"]  # M = 5 equal cosine cycles over 200 epochs, a snapshot at each end
    assert schedule_of(snapshot).cycle_ends() == pytest.approx([40, 80, 120, 160, 200])
    assert snapshot.ensemble._target_.endswith("SnapshotEnsemble") and snapshot.model.depth == 28
    assert schedule_of(preset["snapshot_vs_exp_snapshot"]).cycle_ends() == pytest.approx([20, 40, 60])
    assert not schedule_of(preset["snapshot_vs_exp_baseline"]).cycle_ends()  # the baseline: no snapshots

    swa = preset["swa_wrn28_10"]  # the reference code: lr 0.1, down to swa_lr = 0.05 by epoch 161 (of 300)
    assert (swa.model.depth, swa.model.widen_factor) == (28, 10) and swa.averaging._target_.endswith("SWA")
    ramp = schedule_of(swa)
    assert ramp(0) == pytest.approx(0.1) and ramp(161) == pytest.approx(swa.averaging.swa_lr) == pytest.approx(0.05)
    assert swa.averaging.swa_start == 161 and swa.trainer.max_epochs == 300
    for name in ("swa_sgd", "swa_cyclic"):
        assert preset[name].averaging._target_.endswith("SWA"), name
    warmup = preset["warmup_cosine_lenet"]  # 500 warmup steps of 800
    assert warmup.warmup._target_.endswith("LinearWarmup") and (warmup.warmup.steps, warmup.trainer.max_steps) == (
        500,
        800,
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_runs_one_step(preset, tmp_path, monkeypatch):
    text = (CONF / "experiment" / f"{preset}.yaml").read_text()
    assert text.startswith("# @package _global_") and ("Published" in text or "reports no final number" in text)
    cfg = compose_config(f"experiment={preset}", output_dir=tmp_path)
    assert cfg.tags  # shows up in W&B
    small = [
        "data=synthetic",
        "data.train_size=64",
        "data.test_size=16",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        f"data.val_size={16 if cfg.data.val_size else 0}",
        "++trainer.fast_dev_run=1",
        *FAST,
    ]
    if cfg.model._target_.endswith("WideResNet"):
        small += [
            "model.depth=10",
            "model.widen_factor=1",
        ]  # the preset's WRN is a GPU job; one CPU step of a small one
    cfg = compose_config(f"experiment={preset}", *small, output_dir=tmp_path)
    by_hand = accuracy_by_hand(monkeypatch)
    returned = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 1 and returned == results[cfg.optimized_metric]  # what a sweeper is given
    assert by_hand == [pytest.approx(results["test/acc"], abs=1e-6)]  # the network it trained, on the batch tested


def test_sgdr_study_cases_differ_only_where_the_study_does(tmp_path):
    restarts, cosine, step = (
        compose_config(f"experiment=sgdr_study_{c}", output_dir=tmp_path) for c in ("restarts", "cosine", "step")
    )
    for cfg in (restarts, cosine, step):
        assert (cfg.trainer.max_epochs, cfg.optimizer.lr, cfg.data.val_size) == (150, 0.01, 5000)
        assert cfg.model.depth == 28 and cfg.model.widen_factor == 5
    assert (restarts.schedule.T_0, restarts.schedule.T_mult, restarts.schedule.compression) == (10, 2, 5)
    assert (cosine.schedule.T_0, cosine.schedule.T_mult, cosine.schedule.compression) == (120, 1, 100)
    assert list(step.schedule.milestones) == ["50%", "75%"] and step.schedule.gamma == 0.1


def test_budget_study_arms_differ_only_in_how_the_lr_ends(tmp_path):
    arms = {e: compose_config(f"experiment=budget_{e}", output_dir=tmp_path) for e in BUDGET_ARMS}
    for cfg in arms.values():
        assert cfg.model._target_ == "anneal.models.LeNet5" and cfg.data.batch_size == 128
        assert (cfg.trainer.max_epochs, cfg.warmup.epochs, cfg.optimizer.weight_decay) == (20, 1, 5e-4)
    assert [arms[e].schedule._target_.rsplit(".", 1)[-1] for e in BUDGET_ARMS] == [
        "Cosine",
        "LinearDecay",
        "WarmupStableDecay",
        "Constant",
        "Constant",
    ]
    assert arms["cosine"].schedule.lr_min == "10%" and arms["linear"].schedule.lr_min == 0
    assert arms["wsd"].branch.budgets == [10] and arms["wsd"].schedule.shape == "1-sqrt"
    assert arms["schedulefree"].optimizer._target_ == "schedulefree.SGDScheduleFree"
    assert arms["lawa"].averaging._target_ == "anneal.callbacks.LAWA"
    assert {arms[e].optimizer.lr for e in BUDGET_ARMS if e != "schedulefree"} == {0.05}


@pytest.mark.slow  # every panel composed and drawn: .ci/run runs it
def test_the_schedule_gallery_draws_from_the_real_config(tmp_path):
    """docs/schedules.png, the README's picture, comes from this script: every panel composes."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "schedule_gallery.py"), "--out", str(tmp_path / "gallery.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "gallery.png").stat().st_size > 100_000
