"""An arm is named by the same settings in W&B's group and in the report (one function, `name_arm`), and the
notebook's per-run table shows each run's headline value."""

import pytest
from conftest import CONF
from fabricate import arm, make_run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from anneal.config.identity import arm_label
from anneal.record import arm_of
from anneal.record.labels import name_arm, overridden_keys
from anneal.report.study import labels, study_of, varying
from anneal.report.tables import per_run_rows

SWEEP = [(1, 1), (1, 2), (5, 1), (5, 2)]  # schedule.T_0 x schedule.T_mult; 2 is SGDR's default T_mult


def test_overridden_keys_are_the_keys_a_command_line_set():
    given = ["schedule=sgdr", "schedule.T_mult=2", "+extra.key=1", "++other=2", "~warmup", "seed=3", "data@x=y"]
    assert overridden_keys(given) == ["schedule", "schedule.T_mult", "extra.key", "other", "seed", "data"]


def test_wandb_group_and_report_name_each_arm_of_a_sweep_by_the_same_settings(tmp_path):
    """A sweep over T_mult = 1, 2: the report names the T_mult=2 arm `T_mult=2` (it varies); W&B's group, from
    the same function with the run's command line, names it too, though 2 is the option's default."""
    arms, wandb = [], []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for t0, tm in SWEEP:
            overrides = ["schedule=sgdr", f"schedule.T_0={t0}", f"schedule.T_mult={tm}", "seed=0"]
            cfg = compose("train", overrides=[*overrides, f"output_dir={tmp_path}"], return_hydra_config=True)
            choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
            plain = {
                k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                for k, v in cfg.items()
                if k != "hydra"
            }
            the_arm = arm_of(plain, choices)
            arms.append(the_arm)
            wandb.append(arm_label(the_arm, overrides))
            if tm == 2:  # against the defaults alone (the run's command line unknown), T_mult=2 goes unnamed
                assert "T_mult" not in arm_label(the_arm)
    report = labels(arms, varying(arms), ["?"] * len(arms))
    assert report == ["T_0=1 T_mult=1", "T_0=1 T_mult=2", "T_0=5 T_mult=1", "T_0=5 T_mult=2"]
    assert wandb == [f"sgdr {label}" for label in report]  # the same settings, after the option that is not default
    for report_label, wandb_label in zip(report, wandb):
        assert set(report_label.split()) <= set(wandb_label.split())
    assert name_arm(arms[1], ["schedule.T_mult"]) == "T_mult=2"  # the one function, as the report calls it


def test_the_per_run_table_shows_the_headline_value_and_which_metric_it_is(tmp_path):
    baseline = arm({"schedule._target_": "anneal.schedules.Exponential"}, {"schedule": "exp"})
    snapshot = arm({"ensemble._target_": "anneal.callbacks.SnapshotEnsemble"}, {"ensemble": "snapshot"})
    make_run(tmp_path / "baseline", baseline, 0, {"test/acc": 0.59})
    make_run(tmp_path / "snapshot", snapshot, 0, {"test/acc": 0.58, "ensemble/test/acc": 0.61})
    rows = per_run_rows(study_of([tmp_path / "baseline", tmp_path / "snapshot"]))
    assert [(r["headline"], r["headline metric"]) for r in rows] == [(0.59, "test/acc"), (0.61, "ensemble/test/acc")]
    assert rows[1]["test/acc (trained network)"] == pytest.approx(0.58)
    assert rows[1]["ensemble/test/acc"] == pytest.approx(0.61)
