"""anneal.lr_scheduler: every schedule and warmup of the config groups as a per-step torch scheduler in one call,
with the lr `python train.py` gives the same option at every step, in a plain loop and in Lightning."""

import math

import lightning as L
import pytest
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf
from torch import nn

import anneal
from anneal.config import build_callbacks, build_plan, build_trainer
from anneal.config.keys import instantiate
from anneal.schedules import ScheduleLR
from anneal.schedules.options import SCHEDULES, WARMUPS

EPOCHS, STEPS_PER_EPOCH = 40, 3
# a synthetic data module of 24 training images in batches of 8 (3 optimizer steps per epoch) and a validation split,
# which the adaptive schedules need
DATA = ["data=synthetic", "data.train_size=32", "data.val_size=8", "data.test_size=8", "data.batch_size=8"]
SCHEDULE_OPTIONS = sorted(p.stem for p in (CONF / "schedule").glob("*.yaml"))
WARMUP_OPTIONS = sorted(p.stem for p in (CONF / "warmup").glob("*.yaml"))


@pytest.fixture(scope="module")
def config_plan(tmp_path_factory):
    """The lr plan `python train.py` builds for some overrides (config.build.build_plan, as run.py calls it), and its
    peak. One Hydra, data module and trainer for all (the plan reads only the trainer's length, and the data module's
    batches)."""
    output_dir = tmp_path_factory.mktemp("config_plan")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        common = compose("train", overrides=[*DATA, f"trainer.max_epochs={EPOCHS}", f"output_dir={output_dir}"])
        datamodule, trainer = instantiate(common.data), build_trainer(common, [])

        def plan_of(*overrides):
            cfg = compose("train", overrides=[*DATA, *overrides, f"output_dir={output_dir}"])
            callbacks = build_callbacks(cfg)
            return build_plan(cfg, trainer, datamodule, callbacks, cfg.optimizer.lr), cfg.optimizer.lr

        yield plan_of


def one_call(peak, schedule, **settings):
    network = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=peak)
    return anneal.lr_scheduler(optimizer, schedule, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, **settings)


# the held-out metric fed after every epoch: rising accuracy for adaptive SGDR (it triggers at epoch 5), a loss that
# stops improving at epoch 10 for the plateau schedule (it reduces twice)
FEEDS = {
    "val/acc": lambda epoch: min(0.8 + 0.01 * epoch, 0.99),
    "val/loss": lambda epoch: max(1.0 - 0.05 * epoch, 0.5),
}


def lrs(plan):
    """The lr at every step of the run; after each epoch, an adaptive schedule is fed its metric."""
    out = []
    for step in range(plan.clock.total_steps):
        out.append(plan.lr(step))
        if plan.monitor is not None and (step + 1) % plan.clock.steps_per_epoch == 0:
            plan.observe(step + 1, FEEDS[plan.monitor]((step + 1) // plan.clock.steps_per_epoch))
    return out


def test_the_option_table_is_the_config_groups_option_files():
    assert sorted(SCHEDULES) == SCHEDULE_OPTIONS and sorted(WARMUPS) == WARMUP_OPTIONS
    for group, table in (("schedule", SCHEDULES), ("warmup", WARMUPS)):
        for name, option in table.items():
            node = OmegaConf.load(CONF / group / f"{name}.yaml")  # (plain files: no defaults list, no interpolation)
            settings = {k: v for k, v in OmegaConf.to_container(node).items() if not k.startswith("_")}
            assert get_object(node._target_) is option.target, name
            assert settings == dict(option.defaults), name


@pytest.mark.parametrize("warmup", WARMUP_OPTIONS)
@pytest.mark.parametrize("schedule", SCHEDULE_OPTIONS)
def test_every_schedule_and_warmup_has_the_lr_of_the_config_path_at_every_step(config_plan, schedule, warmup):
    plan, peak = config_plan(f"schedule={schedule}", f"warmup={warmup}")
    scheduler = one_call(peak, schedule, warmup=warmup)
    assert isinstance(scheduler, ScheduleLR) and scheduler.plan.clock == plan.clock
    assert scheduler.plan.describe() == plan.describe()
    assert lrs(scheduler.plan) == lrs(plan)  # exactly: the same computation
    assert scheduler.plan.cycle_ends() == plan.cycle_ends()


# settings other than the options' own, each as the config path and the one call spell it
CHANGED = [
    (
        [
            "schedule=sgdr",
            "schedule.T_0=3",
            "schedule.T_mult=1.5",
            "schedule.lr_min=10%",
            "schedule.cycle_decay=0.8",
            "schedule.decay_lr_min=true",
        ],
        {"schedule": "sgdr", "T_0": 3, "T_mult": 1.5, "lr_min": "10%", "cycle_decay": 0.8, "decay_lr_min": True},
    ),
    (
        ["schedule=cyclic", "schedule.step_size='5 steps'", "schedule.mode=triangular2"],
        {"schedule": "cyclic", "step_size": "5 steps", "mode": "triangular2"},
    ),
    (
        ["schedule=multistep", "schedule.milestones=[10,20]", "schedule.interval=epoch"],
        {"schedule": "multistep", "milestones": [10, 20], "interval": "epoch"},
    ),
    (
        ["schedule=wsd", "schedule.cooldown=10", "schedule.shape=cosine", "warmup=linear", "warmup.epochs=2"],
        {"schedule": "wsd", "cooldown": 10, "shape": "cosine", "warmup": "linear", "warmup_epochs": 2},
    ),
    (
        [
            "schedule=snapshot",
            "schedule.cycles=4",
            "warmup=linear",
            "warmup.epochs=null",
            "warmup.steps=7",
            "warmup.start_lr=0.01",
        ],
        {"schedule": "snapshot", "cycles": 4, "warmup": "linear", "warmup_steps": 7, "warmup_start_lr": 0.01},
    ),
    (
        ["schedule=cosine", "warmup=exponential", "warmup.epochs=2", "warmup.start_lr=0.001", "optimizer.lr=0.05"],
        {"schedule": "cosine", "warmup": "exponential", "warmup_epochs": 2, "warmup_start_lr": 0.001},
    ),
    (
        ["schedule=plateau", "schedule.patience=2", "schedule.factor=0.5", "schedule.cooldown=1"],
        {"schedule": "plateau", "patience": 2, "factor": 0.5, "cooldown": 1},
    ),
    (
        ["schedule=adaptive_sgdr", "schedule.T_0=2", "schedule.compression=0"],
        {"schedule": "adaptive_sgdr", "T_0": 2, "compression": 0},
    ),
    # SWA's switch to a constant lr: in the config, the averaging callback contributes it
    (
        [
            "schedule=sgdr",
            "averaging=swa",
            "averaging.swa_lr=0.01",
            "averaging.swa_start=30",
            "averaging.anneal_epochs=2",
        ],
        {"schedule": "sgdr", "swa_lr": 0.01, "swa_start": 30, "swa_anneal_epochs": 2},
    ),
    (
        ["schedule=cosine", "averaging=swa", "averaging.swa_lr=0.02", "averaging.swa_start='60 steps'"],
        {"schedule": "cosine", "swa_lr": 0.02, "swa_start": "60 steps"},
    ),
]


@pytest.mark.parametrize(("overrides", "arguments"), CHANGED, ids=[" ".join(o) for o, _ in CHANGED])
def test_changed_settings_have_the_lr_of_the_config_path(config_plan, overrides, arguments):
    plan, peak = config_plan(*overrides)
    scheduler = one_call(peak, **arguments)
    assert scheduler.plan.describe() == plan.describe()
    assert lrs(scheduler.plan) == lrs(plan)


def test_in_a_plain_loop_the_optimizer_takes_the_plans_lr_at_every_step():
    network = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.2, momentum=0.9)
    scheduler = anneal.lr_scheduler(
        optimizer, "sgdr", epochs=6, steps_per_epoch=5, warmup="linear", warmup_epochs=1, T_0=2, T_mult=1.5
    )
    seen = []
    for _ in range(30):
        seen.append(optimizer.param_groups[0]["lr"])
        network(torch.randn(3, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([scheduler.plan.lr(s) for s in range(30)], rel=1e-12)
    assert seen[0] == 0.0 and max(seen) == pytest.approx(0.2)  # warmed up from 0 to the optimizer's lr
    assert scheduler.plan.cycle_ends() == [3.0, 6.0] and scheduler.plan.lr_at(3.0) == pytest.approx(0.2)


def test_an_adaptive_schedule_learns_from_observe_in_a_plain_loop(config_plan):
    plan, peak = config_plan("schedule=plateau", "schedule.patience=1")
    network = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=peak)
    scheduler = anneal.lr_scheduler(optimizer, "plateau", epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, patience=1)
    seen = []
    for step in range(EPOCHS * STEPS_PER_EPOCH):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        if (step + 1) % STEPS_PER_EPOCH == 0:  # after each epoch's validation
            scheduler.observe(FEEDS["val/loss"]((step + 1) // STEPS_PER_EPOCH))
    assert seen == pytest.approx(lrs(plan), rel=1e-12)
    assert min(seen) < peak / 10  # it did reduce


def steps_with(scheduler_of, steps, resume_at=None):
    """The lrs of `steps` steps; with resume_at, the scheduler and optimizer are saved there (weights-only, as a
    checkpoint) and loaded into new ones."""
    torch.manual_seed(0)
    network = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = scheduler_of(optimizer)
    seen = []
    for step in range(steps):
        if step == resume_at:
            saved = {"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save(saved, path := f"{scheduler_of.tmp}/state.pt")
            saved = torch.load(path, weights_only=True)
            optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
            scheduler = scheduler_of(optimizer)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        if (step + 1) % 4 == 0 and scheduler.plan.monitor:
            scheduler.observe(1.0)  # never improves: the plateau schedule reduces (and must remember it)
    return seen


@pytest.mark.parametrize("schedule", ["sgdr", "plateau"])
def test_the_state_dict_round_trip_resumes_exactly(tmp_path, schedule):
    def scheduler_of(optimizer):
        return anneal.lr_scheduler(
            optimizer, schedule, epochs=10, steps_per_epoch=4, warmup="linear", warmup_steps=3, **settings
        )

    settings = {"T_0": 2} if schedule == "sgdr" else {"patience": 1}
    scheduler_of.tmp = tmp_path
    assert steps_with(scheduler_of, 40, resume_at=17) == steps_with(scheduler_of, 40)
    assert len(set(steps_with(scheduler_of, 40))) > 3


class Regression(L.LightningModule):
    """A module of the user's own: its scheduler is anneal's, returned from configure_optimizers."""

    def __init__(self, **schedule):
        super().__init__()
        self.layer, self.schedule, self.lrs, self.losses = nn.Linear(4, 1), schedule, [], iter([3, 2, 2, 2, 2])

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.optimizers().param_groups[0]["lr"])
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self):
        if self.lr_schedulers().plan.monitor:  # what an adaptive schedule needs: its metric after each validation
            self.lr_schedulers().observe(float(next(self.losses)))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        loader = self.trainer.datamodule.train_dataloader()  # README.md's recipe
        steps_per_epoch = math.ceil(len(loader) / self.trainer.accumulate_grad_batches)
        scheduler = anneal.lr_scheduler(
            optimizer, epochs=self.trainer.max_epochs, steps_per_epoch=steps_per_epoch, **self.schedule
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Points(L.LightningDataModule):
    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(20, 4), torch.randn(20, 1))
        return torch.utils.data.DataLoader(data, batch_size=4)  # 5 steps per epoch

    def val_dataloader(self):
        return self.train_dataloader()


def quiet_trainer(tmp_path, **settings) -> L.Trainer:
    """A CPU Trainer that writes nothing but what the test asks for."""
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return L.Trainer(accelerator="cpu", enable_model_summary=False, default_root_dir=tmp_path, **quiet, **settings)


@pytest.mark.parametrize(
    "schedule",
    [
        {"schedule": "sgdr", "T_0": 1, "T_mult": 2, "warmup": "linear", "warmup_steps": 2},
        {"schedule": "plateau", "patience": 0, "factor": 0.5},
    ],
    ids=["sgdr", "plateau"],
)
def test_as_lightnings_configure_optimizers_it_sets_the_lr_of_every_step(tmp_path, schedule):
    module = Regression(**schedule)
    trainer = quiet_trainer(tmp_path, max_epochs=4, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=Points())
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, ScheduleLR) and len(module.lrs) == 20
    if schedule["schedule"] == "sgdr":
        assert module.lrs == pytest.approx([scheduler.plan.lr(s) for s in range(20)], rel=1e-12)
        assert module.lrs[0] == 0.0 and scheduler.plan.cycle_end_steps() == {7, 17}
    else:  # loss 3, 2, 2, 2: no improvement after the second epoch, patience 0: halved after epochs 3 and 4
        assert module.lrs == pytest.approx([0.1] * 15 + [0.05] * 5, rel=1e-12)


def test_with_gradient_accumulation_the_plan_counts_the_optimizer_steps_lightning_takes(tmp_path):
    module = Regression(schedule="cosine")
    # 5 batches an epoch: 3 optimizer steps (the last after one batch)
    trainer = quiet_trainer(tmp_path, max_epochs=3, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, datamodule=Points())
    plan = trainer.lr_scheduler_configs[0].scheduler.plan
    assert trainer.global_step == plan.clock.total_steps == 9
    assert module.optimizers().param_groups[0]["lr"] == pytest.approx(plan.lr(9)) == pytest.approx(0.0)


def test_preview_lr_draws_the_plan_and_writes_every_steps_lr(tmp_path):
    scheduler = one_call(0.1, "snapshot", cycles=4, warmup="linear", warmup_epochs=2)
    png = anneal.preview_lr(scheduler, tmp_path / "pictures" / "lr.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "pictures" / "lr.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,lr" and len(rows) == 1 + EPOCHS * STEPS_PER_EPOCH
    assert math.isclose(float(rows[50].split(",")[2]), scheduler.plan.lr(49), rel_tol=1e-9)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"schedule": "sgdrr"}, "schedule='sgdrr' is invalid: one of adaptive_sgdr, constant, cosine,"),
        ({"warmup": "cos"}, "warmup='cos' is invalid: one of none, linear, exponential"),
        ({"T_00": 5}, "T_00=5 is invalid: not a setting of schedule='sgdr': its settings are T_0, T_mult, lr_min"),
        ({"T_0": -1}, "T_0=-1 is invalid: must be > 0 epochs"),
        ({"lr_min": "200%"}, "lr_min='200%' is invalid: must be in [0, the peak lr 0.1]"),
        ({"warmup_epochs": 1}, "warmup_epochs=1 is invalid: not a setting of warmup='none'"),
        ({"warmup": "linear", "warmup_epochs": 0}, "warmup_epochs=0 is invalid: must be > 0"),
        ({"warmup": "linear", "warmup_start_lr": -1}, "warmup_start_lr=-1 is invalid: must be >= 0"),
        ({"warmup": "linear", "warmup_epochs": 50}, "warmup of 50 epochs is invalid: it must be shorter than training"),
        ({"swa_start": 30}, "swa_start=30 is invalid: it shapes the switch to swa_lr: set swa_lr too"),
        ({"swa_lr": 0.01, "swa_start": 39}, "swa_anneal_epochs=5 is invalid: the ramp to swa_lr from swa_start"),
        ({"swa_lr": -1}, "swa_lr=-1 is invalid: must be > 0"),
        ({"swa_lr": 0.01, "swa_start": 0.5}, "swa_start=0.5 is invalid: is ambiguous"),
        ({"epochs": None}, "epochs=None is invalid: give the length of training: epochs or steps"),
        ({"epochs": 2.5}, "epochs=2.5 is invalid: an integer >= 1, or None"),
        ({"steps_per_epoch": 0}, "steps_per_epoch=0 is invalid: an integer >= 1"),
        ({"schedule": 42}, "schedule=42 is invalid: one of adaptive_sgdr"),
        ({"T_0": "ten"}, "schedule settings are invalid: '>' not supported"),
        ({"warmup": "linear", "warmup_epochs": "one"}, "warmup settings are invalid: '>' not supported"),
    ],
)
def test_a_bad_name_or_setting_is_one_line_naming_the_argument(arguments, message):
    network = nn.Linear(2, 2)
    given = {"schedule": "sgdr", "epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH} | arguments
    with pytest.raises(anneal.ConfigError) as error:
        anneal.lr_scheduler(torch.optim.SGD(network.parameters(), lr=0.1), **given)
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)


def test_a_schedule_class_of_ones_own_takes_its_settings(tmp_path):
    from dataclasses import dataclass

    from anneal.schedules import Curve

    @dataclass(frozen=True)
    class Halving(Curve):
        every: float = 10.0

        def lr(self, t):
            return self.peak * 0.5 ** math.floor(t / self.every)

    scheduler = one_call(0.1, Halving, every=5, warmup="linear", warmup_epochs=1)
    assert scheduler.plan.lr_at(1 + 5) == pytest.approx(0.05) and scheduler.plan.lr_at(0.5) == pytest.approx(0.05)
    with pytest.raises(anneal.ConfigError, match=r"^schedule settings are invalid: .*unexpected keyword.*'evry'"):
        one_call(0.1, Halving, evry=5)


def test_importing_anneal_is_light_and_its_version_is_the_packages():
    import importlib.metadata
    import subprocess
    import sys

    script = "import sys, anneal; print(anneal.__version__, sorted({'torch', 'lightning'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == [anneal.__version__, "[]"], done.stderr[-2000:]
    assert importlib.metadata.version("anneal") == anneal.__version__  # pyproject.toml reads it from anneal
