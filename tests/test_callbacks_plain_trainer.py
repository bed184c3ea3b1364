"""Every anneal callback in a plain Lightning Trainer, around a module and a data module written here (not anneal's
Classifier or data), with and without an anneal lr scheduler, against a hand computation from the weights, lrs and
losses the module records at every step."""

import copy
import csv
import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from anneal.callbacks import EMA, LAWA, SWA, BranchPoints, History, LrSchedulePlot, SnapshotEnsemble, StepCurves
from anneal.errors import ConfigError
from anneal.schedules import SGDR, Clock, Constant, Cosine, LrRecipe, ScheduleLR, WarmupStableDecay
from anneal.storage import load_tensors

SPE = 8  # 64 training samples / 8 per batch
PEAK = 0.1


class Data(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(128, 4, generator=generator)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # three classes
        self.train, self.val, self.test = (TensorDataset(x[a:b], y[a:b]) for a, b in ((0, 64), (64, 96), (96, 128)))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=8)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=16)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=16)


class Net(L.LightningModule):
    """A user's module: no `network` attribute (the callbacks average and save the module itself); it records the
    weights after every optimizer step, and the lr and loss of every step."""

    def __init__(self, schedule=None, epochs=4):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        self.schedule, self.epochs = schedule, epochs
        self.after_step, self.lrs, self.losses = {}, {}, {}

    def forward(self, x):
        return self.layers(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.lrs[self.global_step] = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.losses[self.global_step] = loss.item()
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log_dict({"val_loss": F.cross_entropy(logits, y), "val_acc": (logits.argmax(1) == y).float().mean()})

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.after_step[self.global_step] = {k: v.detach().clone() for k, v in self.layers.state_dict().items()}

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=PEAK, momentum=0.9)
        if self.schedule is None:
            return optimizer
        plan = LrRecipe(schedule=self.schedule).build(PEAK, Clock(SPE, SPE * self.epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": ScheduleLR(optimizer, plan), "interval": "step"}}


def fit(tmp_path, callbacks, schedule=None, epochs=4, **trainer):
    module = Net(schedule, epochs)
    trainer, data = fit_module(tmp_path, module, callbacks, epochs, **trainer)
    return trainer, module, data


def fit_module(tmp_path, module, callbacks, epochs, logger=False, **trainer):
    data = Data()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        **trainer,
    )
    trainer.fit(module, datamodule=data)
    return trainer, data


def mean_at(module, steps):
    """The mean of the recorded weights after the given steps, keyed like the averaged module's parameters."""
    floats = [k for k, v in module.after_step[1].items() if v.is_floating_point()]
    return {f"layers.{k}": torch.stack([module.after_step[s][k] for s in steps]).mean(0) for k in floats}


def assert_parameters(network, expected):
    parameters = dict(network.named_parameters())
    assert parameters
    for key, value in parameters.items():
        torch.testing.assert_close(value.detach(), expected[key], rtol=0, atol=1e-6)


SCHEDULES = {"no anneal scheduler": None, "anneal scheduler": partial(Cosine)}


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_swa_averages_from_its_share_of_training(tmp_path, schedule):
    swa = SWA(swa_start="75%", swa_freq=1)
    _, module, _ = fit(tmp_path, [swa], schedule)
    steps = range(3 * SPE, 4 * SPE + 1)  # 75% of 32 steps: from step 24 on, after every step
    assert (swa.start_step, int(swa.average.n_averaged)) == (24, len(steps))
    assert_parameters(swa.average.module, mean_at(module, steps))


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_swa_once_per_epoch_averages_at_the_epoch_ends_after_its_start(tmp_path, schedule):
    swa = SWA(swa_start="50%", swa_freq="epoch")
    _, module, _ = fit(tmp_path, [swa], schedule)
    assert int(swa.average.n_averaged) == 3
    assert_parameters(swa.average.module, mean_at(module, [16, 24, 32]))


def test_swa_per_cycle_averages_at_the_anneal_schedules_cycle_ends(tmp_path):
    swa = SWA(swa_start="50%", swa_freq="cycle")  # SGDR with 1-epoch cycles over 3 epochs: ends at 8, 16, 24
    _, module, _ = fit(tmp_path, [swa], partial(SGDR, T_0=1), epochs=3)
    assert int(swa.average.n_averaged) == 2  # from epoch 1.5 on
    assert_parameters(swa.average.module, mean_at(module, [16, 24]))


def test_swa_lr_is_switched_in_the_modules_anneal_schedule(tmp_path):
    swa = SWA(swa_start="50%", swa_lr=0.01, anneal_epochs=1)
    _, module, _ = fit(tmp_path, [swa], partial(Constant))

    def by_hand(step):  # the peak, then half a cosine to swa_lr over one epoch (8 steps) from step 16, then swa_lr
        if step < 16:
            return PEAK
        progress = min((step - 16) / SPE, 1.0)
        return 0.01 + (PEAK - 0.01) * 0.5 * (1 + math.cos(math.pi * progress))

    assert sorted(module.lrs) == list(range(32))
    for step, lr in module.lrs.items():
        assert lr == pytest.approx(by_hand(step), rel=1e-12, abs=1e-15), step
    assert_parameters(swa.average.module, mean_at(module, range(16, 33)))


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_ema_starts_at_its_share_of_training(tmp_path, schedule):
    ema = EMA(decay=0.9, start="50%")
    _, module, _ = fit(tmp_path, [ema], schedule)
    floats = {k: v.double() for k, v in module.after_step[16].items() if v.is_floating_point()}
    expected = floats  # the first update copies the weights
    for step in range(17, 33):
        expected = {k: 0.9 * v + 0.1 * module.after_step[step][k].double() for k, v in expected.items()}
    assert int(ema.average.n_averaged) == 17
    averaged = ema.average.module.layers.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key].double(), value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_lawa_is_the_mean_of_the_last_k_points_after_its_start(tmp_path, schedule):
    lawa = LAWA(k=3, every="4 steps", start="50%", bn_update=False)
    _, module, _ = fit(tmp_path, [lawa], schedule)
    assert [w["step"] for w in lawa.window] == [24, 28, 32]  # points at 16, 20, ... 32; the last three kept
    network, n = lawa.averaged(module)
    assert n == 3
    assert_parameters(network, mean_at(module, [24, 28, 32]))


def test_snapshots_land_at_the_cycle_ends_and_the_ensemble_averages_their_softmax(tmp_path):
    snapshots = SnapshotEnsemble(output_dir=tmp_path / "out")
    trainer, module, data = fit(tmp_path, [snapshots], partial(SGDR, T_0=1), epochs=3)
    assert [s["step"] for s in snapshots.snapshots] == [8, 16, 24]
    members = []
    for snapshot in snapshots.snapshots:
        saved = load_tensors(tmp_path / "out" / snapshot["file"])
        for key, value in module.after_step[snapshot["step"]].items():
            assert torch.equal(saved[f"layers.{key}"], value)
        member = copy.deepcopy(module)
        member.load_state_dict(saved)
        members.append(member.eval())
    x, y = data.test.tensors
    with torch.no_grad():
        probs = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
    results = snapshots.results(trainer, module)
    assert results["ensemble/test/acc"] == pytest.approx((probs.argmax(1) == y).float().mean().item(), abs=1e-7)
    assert (tmp_path / "out" / "ensemble.csv").is_file()


def test_branch_points_are_saved_where_each_budgets_cooldown_starts(tmp_path):
    branches = BranchPoints([3], output_dir=tmp_path / "out")
    fit(tmp_path, [branches], partial(WarmupStableDecay, cooldown=1), epochs=4)
    saved = torch.load(tmp_path / "out" / "branches" / "budget_3.ckpt", weights_only=False)
    assert saved["global_step"] == 16  # a 3-epoch run's 1-epoch cooldown starts after epoch 2


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_history_writes_what_was_trained(tmp_path, schedule):
    history = History(output_dir=tmp_path / "out")
    _, module, _ = fit(tmp_path, [history], schedule, epochs=3)
    with open(tmp_path / "out" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(1, 8), (2, 16), (3, 24)]
    for epoch, row in enumerate(rows):
        steps = range(epoch * SPE, (epoch + 1) * SPE)
        assert float(row["lr"]) == pytest.approx(module.lrs[steps[-1]], rel=1e-12)
        assert float(row["train_loss"]) == pytest.approx(sum(module.losses[s] for s in steps) / SPE, rel=1e-5)
        assert {"val_loss", "val_acc"} <= set(row)
    assert history.total_epochs == 3


class Captured(Logger):
    name, version = "captured", 0

    def __init__(self):
        super().__init__()
        self.logged = []

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_step_curves_log_the_lr_and_loss_of_every_step(tmp_path, schedule):
    logger = Captured()
    _, module, _ = fit(tmp_path, [StepCurves()], schedule, epochs=2, logger=logger, log_every_n_steps=2)
    lrs = {step: m["lr-SGD"] for step, m in logger.logged if "lr-SGD" in m}
    losses = {step: m["train/loss_step"] for step, m in logger.logged if "train/loss_step" in m}
    assert lrs == module.lrs
    assert sorted(losses) == list(range(1, 16, 2))
    for step, loss in losses.items():
        assert loss == pytest.approx(module.losses[step], rel=1e-6)


def test_the_lr_plot_draws_the_modules_plan(tmp_path):
    fit(tmp_path, [LrSchedulePlot(output_dir=tmp_path / "out")], partial(Cosine), epochs=2)
    with open(tmp_path / "out" / "lr_schedule.csv") as f:
        rows = list(csv.DictReader(f))
    plan = LrRecipe(schedule=partial(Cosine)).build(PEAK, Clock(SPE, 2 * SPE))
    assert [float(r["lr"]) for r in rows[:16]] == pytest.approx([plan.lr(s) for s in range(16)], rel=1e-9)
    assert (tmp_path / "out" / "lr_schedule.png").is_file()


@pytest.mark.parametrize(
    ("callback", "missing"),
    [
        (lambda: SWA(swa_freq="cycle", swa_start=0), "cycle ends"),
        (lambda: SWA(swa_lr=0.01), "swa_lr"),
        (lambda: SnapshotEnsemble(), "cycle ends"),
        (lambda: BranchPoints([2]), "cooldown start"),
        (lambda: LrSchedulePlot(), "the lr plan"),
    ],
)
def test_what_needs_an_anneal_scheduler_refuses_before_the_first_step_without_one(tmp_path, callback, missing):
    module = Net()
    with pytest.raises(ConfigError, match=missing) as refused:
        fit_module(tmp_path, module, [callback()], epochs=4)
    assert module.after_step == {}  # no training step was taken
    assert "\n" not in str(refused.value) and "ScheduleLR" in str(refused.value)


def test_a_plan_that_counts_other_steps_than_the_trainer_is_refused(tmp_path):
    module = Net(partial(Cosine), epochs=5)  # its plan: 40 steps; the trainer takes 32
    with pytest.raises(ConfigError, match="8 optimizer steps per epoch and 40 in all, the Trainer takes 8 and 32"):
        fit_module(tmp_path, module, [SWA()], epochs=4)
    assert module.after_step == {}


def test_a_start_past_the_end_of_a_plain_trainers_training_is_refused(tmp_path):
    module = Net()
    with pytest.raises(ConfigError, match="before the end of training"):
        fit_module(tmp_path, module, [EMA(start=3)], epochs=2)
    assert module.after_step == {}


def test_a_plain_trainer_resumed_from_a_checkpoint_averages_exactly_as_without_the_break(tmp_path):
    """SWA (its lr switch composed into the module's plan again on resume) and EMA, resumed after epoch 2."""

    def run(ckpt_path=None):
        callbacks = [SWA(swa_start="25%", swa_lr=0.02, anneal_epochs=1), EMA(decay=0.9, start="25%")]
        saver = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
        module = Net(partial(Cosine), epochs=4)
        trainer = L.Trainer(
            max_epochs=4,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp_path,
            callbacks=[*callbacks, saver],
        )
        trainer.fit(module, datamodule=Data(), ckpt_path=ckpt_path, weights_only=True)
        return callbacks, module

    (swa, ema), whole = run()
    (swa_resumed, ema_resumed), resumed = run(tmp_path / "ckpt" / "epoch=1-step=16.ckpt")
    assert sorted(resumed.lrs) == list(range(16, 32))
    assert all(resumed.lrs[s] == whole.lrs[s] for s in resumed.lrs)
    for reference, again in ((swa, swa_resumed), (ema, ema_resumed)):
        assert int(again.average.n_averaged) == int(reference.average.n_averaged)
        for (key, value), other in zip(
            reference.average.module.state_dict().items(), again.average.module.state_dict().values()
        ):
            assert torch.equal(value, other), key
