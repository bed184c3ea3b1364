"""Every option of every config group composes with the real config and builds what it names."""

import pytest
import torch
from conftest import CONF, compose_config
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from anneal.config import build_network, instantiate_optional
from anneal.data import ImageData
from anneal.record import GROUP_CLASSES, Arm, arm_of, flatten, unclassified
from anneal.schedules import Clock, LrRecipe, Schedule

GROUPS = ["data", "model", "optimizer", "schedule", "warmup", "averaging", "ensemble", "logger", "trainer", "callbacks"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)
    schedules = {o for g, o in OPTIONS if g == "schedule"}
    assert schedules == {
        "constant",
        "step",
        "multistep",
        "exp",
        "cosine",
        "sgdr",
        "snapshot",
        "cyclic",
        "onecycle",
        "adaptive_sgdr",
        "plateau",
        "ramp_down",
        "linear",
        "wsd",
    }


@pytest.mark.parametrize("group, option", OPTIONS)
def test_option_composes_and_builds(group, option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_config(f"{group}={option}", output_dir=tmp_path)
    node = cfg[group]
    if group == "data":
        assert isinstance(instantiate(node), ImageData)
    elif group == "model":
        network = build_network(cfg, num_classes=10).network
        assert network(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    elif group == "optimizer":
        optimizer = instantiate(node)(params=[torch.zeros(1, requires_grad=True)])
        assert optimizer.defaults["lr"] == node.lr
    elif group == "schedule":
        schedule = instantiate(node)(peak=cfg.optimizer.lr, total=cfg.trainer.max_epochs)
        assert isinstance(schedule, Schedule) and schedule(0) > 0
    elif group == "warmup":
        recipe = LrRecipe(schedule=instantiate(cfg.schedule), warmup=instantiate(node))
        assert recipe.build(cfg.optimizer.lr, Clock(10, 10 * cfg.trainer.max_epochs)).describe()
    elif group in ("averaging", "ensemble") or group == "logger":
        assert (instantiate_optional(node) is None) == (option == "none")
    elif group == "trainer":
        if option == "gpu" and not torch.cuda.is_available():
            assert node.precision == "bf16-mixed" and node.accelerator == "gpu"
        else:
            assert instantiate(node).max_epochs == 30
    elif group == "callbacks":
        built = [instantiate_optional(n) for n in (node or {}).values()]
        assert all(c is not None for c in built)


def test_overrides_from_the_readme_compose(tmp_path):
    cfg = compose_config(
        "schedule=sgdr",
        "warmup=linear",
        "averaging=swa",
        "ensemble=snapshot",
        "model=wrn",
        "schedule.T_0=1",
        "schedule.T_mult=2",
        "optimizer.lr=0.1",
        "model.depth=16",
        "model.widen_factor=4",
        "averaging.swa_freq=cycle",
        output_dir=tmp_path,
    )
    assert (cfg.schedule.T_0, cfg.model.depth, cfg.averaging.swa_freq, cfg.trainer.max_epochs) == (1, 16, "cycle", 30)
    swa = instantiate_optional(compose_config("averaging=swa", output_dir=tmp_path).averaging)
    swa.use_plan(LrRecipe(schedule=instantiate(cfg.schedule)).build(cfg.optimizer.lr, Clock(10, 300)))
    assert swa.start_epochs == 0.75 * 30  # swa_start 75% of the run's 30 epochs
    assert cfg.data.root  # CIFAR10_ROOT or ./data


def every_composed_config():
    """Every option of every group (and every preset), composed with the rest of the defaults."""
    groups = [p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for group in groups:
            for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
                yield f"{group}={option}", compose("train", overrides=[f"{group}={option}", "output_dir=."])


def test_every_config_key_and_group_is_classified_as_arm_seed_or_bookkeeping():
    """One table says what each setting is to a run (what it computes, its seed, or bookkeeping): a new key
    must be classified on purpose, or it would silently split or pool the arms of a study."""
    for choice, cfg in every_composed_config():
        keys = flatten(OmegaConf.to_container(cfg, resolve=False))
        assert unclassified(keys) == [], f"{choice}: classify these in anneal.record.identity.CLASSES"
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
    assert groups == set(GROUP_CLASSES)


def arm_for(*overrides: str) -> Arm:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "output_dir=."], return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    task = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "hydra"})
    return arm_of(OmegaConf.to_container(task, resolve=True), choices)


def test_an_arm_is_what_the_run_computes_however_the_command_line_spells_it():
    preset = arm_for("experiment=swa_sgd")
    spelled_out = arm_for(
        "model=lenet_conv4",
        "averaging=swa",
        "trainer.max_epochs=40",
        "averaging.swa_lr=0.01",
        "averaging.anneal_epochs=2",
        "tags=[swa,swa-sgd]",
    )
    assert preset.id == spelled_out.id and preset == spelled_out
    assert arm_for("logger=csv", "seed=3", "data.root=/elsewhere", "trainer=cpu").id == arm_for().id
    assert arm_for("schedule=sgdr", "schedule.T_0=5").id != arm_for("schedule=sgdr").id
    assert arm_for("schedule=sgdr", "schedule.T_0=10").id == arm_for("schedule=sgdr").id  # its default, written out
    assert arm_for("schedule=sgdr", "schedule.T_0=10.0").id == arm_for("schedule=sgdr").id  # the same number
    assert arm_for("data.batch_size=64").id != arm_for().id
