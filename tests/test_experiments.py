"""Every experiment preset composes with the real config, states what it reproduces, and runs a step."""

import subprocess
import sys

import pytest
from conftest import CONF, FAST, ROOT, compose_config

from anneal.run import run

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
BUDGET_ARMS = ("cosine", "linear", "wsd", "schedulefree", "lawa")


def test_the_reference_studies_have_presets():
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


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_runs_one_step(preset, tmp_path):
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
    assert 0 <= run(cfg) <= 1


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
