"""Every invalid setting is rejected before the first training step, naming the key and what is allowed."""

import pytest
from conftest import FAST, compose_config, run_cli, run_main

from anneal.errors import ConfigError
from anneal.module import Classifier
from anneal.run import run

DATA = ["data=synthetic", "data.train_size=500", "data.test_size=100"]
INVALID = [
    (["schedule=sgdr", "schedule.T_0=0"], "schedule.T_0"),
    (["schedule=sgdr", "schedule.T_0=-2"], "schedule.T_0"),
    (["schedule=sgdr", "schedule.T_mult=0.5"], "schedule.T_mult"),
    (["schedule=sgdr", "schedule.lr_min=-1e-3"], "schedule.lr_min"),
    (["schedule=sgdr", "schedule.lr_min=0.5"], "schedule.lr_min"),  # above the peak optimizer.lr=0.05
    (["schedule=sgdr", "schedule.cycle_decay=0"], "schedule.cycle_decay"),
    (["warmup=linear", "warmup.epochs=30"], "warmup"),  # as long as training
    (["warmup=linear", "warmup.epochs=40"], "warmup"),
    (["warmup=linear", "warmup.epochs=null", "warmup.steps=100000"], "warmup"),
    (["schedule=step", "schedule.step_size=0"], "schedule.step_size"),
    (["schedule=step", "schedule.gamma=0"], "schedule.gamma"),
    (["schedule=step", "schedule.gamma=1.0"], "schedule.gamma"),
    (["schedule=multistep", "schedule.milestones=[10,50]"], "schedule.milestones"),
    (["schedule=multistep", "schedule.milestones=[20,10]"], "schedule.milestones"),
    (["schedule=exp", "schedule.k=-0.1"], "schedule.k"),
    (["schedule=snapshot", "schedule.cycles=0"], "schedule.cycles"),
    (["schedule=snapshot", "schedule.cycles=31"], "schedule.cycles"),  # more cycles than epochs
    (["schedule=cyclic", "schedule.step_size=0"], "schedule.step_size"),
    (["schedule=cyclic", "schedule.mode=sawtooth"], "schedule.mode"),
    (["schedule.interval=batch"], "schedule.interval"),
    (["schedule=adaptive_sgdr"], "data.val_size"),  # no validation split to watch
    (["schedule=adaptive_sgdr", "data.val_size=100", "schedule.compression=0.5"], "schedule.compression"),
    (["averaging=swa", "averaging.swa_start=-1"], "averaging.swa_start"),
    (["averaging=swa", "averaging.swa_start=30"], "averaging.swa_start"),  # at the end of training
    (["averaging=swa", "averaging.swa_freq=0"], "averaging.swa_freq"),
    (["averaging=swa", "averaging.swa_lr=-0.05"], "averaging.swa_lr"),
    (["averaging=swa", "averaging.swa_freq=cycle"], "averaging.swa_freq"),  # the default cosine has no cycles
    (["averaging=ema", "averaging.decay=1.5"], "averaging.decay"),
    (["averaging=ema", "averaging.every_n_steps=0"], "averaging.every_n_steps"),
    (["ensemble=snapshot"], "ensemble=snapshot"),  # cosine: no cycles
    (["schedule=sgdr", "ensemble=snapshot", "ensemble.max_members=0"], "ensemble.max_members"),
    (["data.batch_size=0"], "data.batch_size"),
    (["data.val_size=-1"], "data.val_size"),
    (["data.val_size=500"], "data.val_size"),  # the whole training set
    (["trainer.max_epochs=0"], "trainer.max_epochs"),
    (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.lr=-0.1"], "optimizer.lr"),
    (["model=wrn", "model.depth=20"], "model.depth"),
    (["mode=fit"], "mode"),
    (["optimized_metric=swa/test/acc"], "optimized_metric"),  # no averaging=swa in this run
    (["optimized_metric=val/acc"], "optimized_metric"),  # no validation split
    (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
    (["ckpt_path=last"], "ckpt_path"),  # a new run directory has no checkpoint yet
    # types and names, each one line naming the key, the value and what is allowed
    (["optimizer.lr=abc"], "optimizer.lr"),
    (["optimizer.lr=null"], "optimizer.lr"),
    (["optimizer.momentum=-0.9"], "optimizer.momentum"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay"),
    (["seed=abc"], "seed"),
    (["schedule=sgdr", "schedule.T_0=null"], "schedule.T_0"),
    (["schedule=sgdr", "schedule.T_0=abc"], "schedule.T_0"),
    (["schedule=sgdr", "+schedule.T0=5"], "schedule.T0"),  # a typo: not a setting of SGDR
    (["averaging=swa", "averaging.swa_start=0.5"], "averaging.swa_start"),  # ambiguous: 50% or half an epoch?
    (["averaging=swa", "averaging.swa_start=3weeks"], "averaging.swa_start"),
    (["ensemble=snapshot", "schedule=sgdr", "ensemble.include_final=maybe"], "ensemble.include_final"),
    (["data.augment=3"], "data.augment"),
    (["data.eval_batch_size=0"], "data.eval_batch_size"),
    (["mode=lr_find", "lr_find.mode=foo"], "lr_find.mode"),
    (["mode=lr_find", "lr_find.num_training=0"], "lr_find.num_training"),
    (["mode=lr_find", "lr_find.min_lr=1", "lr_find.max_lr=0.1"], "lr_find.max_lr"),
    (["trainer.accelerator=gpu"], "trainer.accelerator"),  # no GPU here
    (["trainer.max_epochs=null"], "trainer.max_epochs"),  # and no max_steps: training would not end
    (["trainer.max_steps=0"], "trainer.max_steps"),
    (["schedule=plateau"], "data.val_size"),  # a held-out metric to watch
    (["schedule=plateau", "data.val_size=100", "schedule.monitor=test/acc"], "schedule.monitor"),
    (["schedule=cyclic", "schedule.step_size=2000.5steps"], "schedule.step_size"),
    # what a run would not deliver: an ensemble or an average of one, a ramp that never reaches swa_lr
    (["schedule=sgdr", "warmup=linear", "ensemble=snapshot"], "ensemble=snapshot would ensemble 1 snapshot"),
    (["averaging=swa", "averaging.swa_start=29.5", "averaging.swa_freq=epoch"], "averaging.swa_start"),
    (["experiment=swa_sgd", "model=lenet", "trainer.max_epochs=4"], "averaging.anneal_epochs=2 is invalid here"),
    (["data.test_every_epoch=false", "optimized_metric=test/acc_best"], "optimized_metric"),
    # Lightning's callbacks that would take the lr out of the plan
    (
        ["+callbacks.x._target_=lightning.pytorch.callbacks.StochasticWeightAveraging", "+callbacks.x.swa_lrs=0.01"],
        "callbacks.x is invalid: Lightning's StochasticWeightAveraging",
    ),
    (["schedule=wsd", "schedule.cooldown=31"], "schedule.cooldown"),  # longer than the run
    (["schedule=wsd", "warmup=linear", "warmup.epochs=5", "schedule.cooldown=26"], "schedule.cooldown"),
    (["schedule=wsd", "schedule.shape=exp"], "schedule.shape"),
    (["schedule=wsd", "schedule.lr_min=150%"], "schedule.lr_min"),
    (["schedule=linear", "schedule.lr_min=0.1"], "schedule.lr_min"),  # above the peak optimizer.lr=0.05
    (["schedule=cosine", "schedule.lr_min=tenpercent"], "schedule.lr_min"),
    (["averaging=lawa", "averaging.k=0"], "averaging.k"),
    (["averaging=lawa", "averaging.every=31"], "averaging.every"),  # no point within training
    (["averaging=lawa", "averaging.every=0steps"], "averaging.every"),
    (["optimizer=sgd_schedulefree"], "schedule=Cosine is invalid with optimizer=SGDScheduleFree"),  # decays
    (["optimizer=adamw_schedulefree", "schedule=wsd"], "schedule=WarmupStableDecay is invalid with optimizer="),
    (["optimizer=sgd_schedulefree", "schedule=constant", "averaging=swa"], "averaging=SWA is invalid with optimizer"),
    (["optimizer=sgd_schedulefree", "schedule=constant", "averaging=lawa"], "averaging=LAWA is invalid"),
    (["optimizer=sgd_schedulefree", "schedule=constant", "optimizer.warmup_steps=100"], "optimizer.warmup_steps"),
    (["optimizer=sgd_schedulefree", "schedule=constant", "optimizer.momentum=1.0"], "optimizer settings"),
    (["optimizer=sgd_schedulefree", "schedule=constant", "ensemble=snapshot"], "ensemble=snapshot needs"),
]


@pytest.mark.parametrize("overrides, key", INVALID, ids=[" ".join(o) for o, _ in INVALID])
def test_invalid_setting_is_rejected_before_training(overrides, key, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran before the bad setting was reported")

    monkeypatch.setattr(Classifier, "training_step", no_training)
    cfg = compose_config(*DATA, *overrides, *FAST, output_dir=tmp_path)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as error:
        run(cfg)
    assert "invalid" in str(error.value) or "needs" in str(error.value)
    assert "\n" not in str(error.value)  # one line
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "results.json").exists()


def test_cli_reports_a_bad_setting_in_one_line_before_training(tmp_path):
    """The real process for exit code 2 (the other refusals run train.py's main in-process). No clock: a
    shared machine's start-up time says nothing; what was not done before the refusal does."""
    done = run_cli(*DATA, "schedule=sgdr", "schedule.T_mult=0.5", "logger=none", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("anneal: error: schedule.T_mult=0.5 is invalid: must be >= 1")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.yaml").exists()


def test_a_rejected_run_leaves_no_wandb_run(tmp_path):
    done = run_cli(
        "data.root=" + str(tmp_path / "nothing"),
        "data.download=false",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2 and "data.download=false" in done.stderr
    assert not (tmp_path / "run" / "wandb").exists()


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            ["optimizer.lr=abc"],
            "anneal: error: optimizer.lr='abc' is invalid: the peak learning rate: a number > 0 "
            "(that a float32 can hold)",
        ),
        (["schedule=sgdr", "schedule.T_0=null"], "anneal: error: schedule.T_0=None is invalid: must be a number"),
        (["seed=abc"], "anneal: error: seed='abc' is invalid: an integer"),
    ],
)
def test_cli_type_errors_are_one_line_with_exit_code_2(tmp_path, overrides, line):
    done = run_main(*DATA, *overrides, "logger=none", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == line
