"""Schedule-free SGD and AdamW (Defazio et al. 2024, the `schedulefree` package): every evaluation runs at the
average x with BatchNorm recomputed there, training at y is never disturbed by it, and a resume is exact."""

import copy
import json
import os
import signal
from functools import partial

import lightning as L
import pytest
import schedulefree
import torch
from conftest import FAST, compose_config
from torch.optim.swa_utils import update_bn

from anneal.callbacks import LastCheckpoint, SnapshotEnsemble
from anneal.data import Synthetic
from anneal.interrupts import Interrupted
from anneal.module import Classifier, is_schedule_free
from anneal.run import run
from anneal.schedules import SGDR, Clock, Constant, LinearWarmup, LrRecipe
from anneal.storage import load_tensors

SPE = 8  # 256 training images / 32 per batch


class TinyBN(torch.nn.Sequential):
    def __init__(self):
        super().__init__(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(32, 10),
        )


class Observe(L.Callback):
    """What the optimizer and the network hold at every training step and every evaluation."""

    def __init__(self):
        self.train_modes, self.eval_modes, self.lrs, self.z, self.y = [], [], [], {}, {}
        self.evaluated = []  # (stage, global step, the network's state while it is evaluated)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        group = trainer.optimizers[0].param_groups[0]
        self.train_modes.append(group["train_mode"])
        self.lrs.append(group["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        optimizer, step = trainer.optimizers[0], trainer.global_step
        self.z[step] = {n: optimizer.state[p]["z"].clone() for n, p in pl_module.network.named_parameters()}
        self.y[step] = {k: v.clone() for k, v in pl_module.network.state_dict().items()}

    def _evaluating(self, trainer, pl_module, stage, batch_idx):
        self.eval_modes.append(trainer.optimizers[0].param_groups[0]["train_mode"])
        if batch_idx == 0:
            state = {k: v.clone() for k, v in pl_module.network.state_dict().items()}
            self.evaluated.append((stage, trainer.global_step, state))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._evaluating(trainer, pl_module, "val", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._evaluating(trainer, pl_module, "test", batch_idx)


def fit(tmp_path, callbacks, *, epochs=4, optimizer=None, network=None, warmup=None, validate=True, ckpt_path=None):
    L.seed_everything(0)
    data = Synthetic(train_size=256, test_size=64, batch_size=32, seed=0)
    recipe = LrRecipe(schedule=Constant, warmup=warmup) if warmup else LrRecipe(schedule=Constant)
    plan = recipe.build(0.5, Clock(SPE, SPE * epochs))
    optimizer = optimizer or partial(schedulefree.SGDScheduleFree, lr=0.5, momentum=0.9, weight_decay=5e-4)
    module = Classifier(network or TinyBN(), optimizer, plan, heldout="test")
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, L.pytorch.callbacks.Checkpoint) for c in callbacks),
        check_val_every_n_epoch=1 if validate else 10_000,
        num_sanity_val_steps=2 if validate else 0,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    return trainer, module, data


def schedule_free_average(observe: Observe, step: int) -> dict:
    """x after `step` steps as the paper defines it, from the recorded iterates z and lrs alone: the mean of
    z_1..z_step weighted by (the largest lr so far) ** 2 (the package's weight_lr_power=2, r=0)."""
    weights, largest = [], 0.0
    for lr in observe.lrs[:step]:
        largest = max(largest, lr)
        weights.append(largest**2)
    total = sum(weights)
    names = observe.z[1].keys()
    return {n: sum(w * observe.z[s + 1][n].double() for s, w in enumerate(weights)) / total for n in names}


@pytest.mark.parametrize(
    "optimizer",
    [
        partial(schedulefree.SGDScheduleFree, lr=0.5, momentum=0.9, weight_decay=5e-4),
        partial(schedulefree.AdamWScheduleFree, lr=0.01, betas=(0.9, 0.999), weight_decay=0.05),
    ],
    ids=["sgd", "adamw"],
)
def test_every_evaluation_runs_at_the_schedule_free_average(tmp_path, optimizer):
    observe = Observe()
    trainer, module, data = fit(tmp_path, [observe], optimizer=optimizer, warmup=LinearWarmup(epochs=1))
    trainer.test(module, datamodule=data, verbose=False)
    assert observe.train_modes == [True] * 4 * SPE  # every training step in train mode
    assert observe.eval_modes and not any(observe.eval_modes)  # every evaluated batch in eval mode
    peak = optimizer.keywords["lr"]
    assert observe.lrs[:SPE] == pytest.approx([peak * s / SPE for s in range(SPE)])  # the warmup group's ramp
    assert observe.lrs[SPE:] == [peak] * 3 * SPE
    assert [(stage, step) for stage, step, _ in observe.evaluated] == [
        ("val", 0),  # the sanity check, before any step
        *[("val", e * SPE) for e in range(1, 5)],
        ("test", 4 * SPE),
    ]
    for stage, step, state in observe.evaluated[1:]:
        expected = schedule_free_average(observe, step)
        for name, x in expected.items():
            torch.testing.assert_close(state[name].double(), x, rtol=1e-5, atol=1e-6)
        y = observe.y[step]["0.weight"]
        assert (state["0.weight"] - y).abs().max() > 1e-3, (stage, step)  # not the gradient point
        # BatchNorm statistics recomputed at x over the unaugmented training set, not y's running ones
        network = copy.deepcopy(module.network)
        network.load_state_dict(state)
        update_bn(data.batches("train"), network)
        torch.testing.assert_close(state["1.running_mean"], network.state_dict()["1.running_mean"])
        assert not torch.allclose(state["1.running_mean"], observe.y[step]["1.running_mean"])
    # after every evaluation, training is back at y: the final weights are the last step's
    assert all(torch.equal(v, observe.y[4 * SPE][k]) for k, v in module.network.state_dict().items())


def test_evaluating_does_not_change_training(tmp_path):
    def network():  # with dropout: the BatchNorm pass at x must not draw from training's random stream
        torch.manual_seed(1)
        layers = list(TinyBN())
        return torch.nn.Sequential(*layers[:5], torch.nn.Dropout(0.3), layers[5])

    _, evaluated, _ = fit(tmp_path / "a", [], validate=True, network=network())
    _, never, _ = fit(tmp_path / "b", [], validate=False, network=network())
    for (key, value), other in zip(evaluated.network.state_dict().items(), never.network.state_dict().values()):
        assert torch.equal(value, other), key
    for a, b in zip(evaluated.schedule_free.state.values(), never.schedule_free.state.values()):
        assert torch.equal(a["z"], b["z"])


def test_a_checkpoint_holds_the_gradient_point_and_a_reload_continues_exactly(tmp_path):
    """Checkpoints are written outside evaluations: the network's state is y, the optimizer's holds z and its
    train mode; a run reloaded from the end of epoch 2 (after an evaluation) ends bit for bit as one never stopped."""
    observe = Observe()
    fit(tmp_path / "a", [observe, LastCheckpoint(str(tmp_path / "a" / "checkpoints"))])
    stopped = Observe()
    fit(tmp_path / "b", [stopped, LastCheckpoint(str(tmp_path / "b" / "checkpoints"))], epochs=2)
    checkpoint = load_tensors(tmp_path / "b" / "checkpoints" / "last.ckpt")
    network = {k.removeprefix("network."): v for k, v in checkpoint["state_dict"].items() if k.startswith("network.")}
    assert network.keys() == stopped.y[2 * SPE].keys()
    assert all(torch.equal(v, stopped.y[2 * SPE][k]) for k, v in network.items())
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["train_mode"] is True
    # the 4-epoch run, reloaded from the 2-epoch run's last checkpoint
    resumed = Observe()
    fit(
        tmp_path / "b",
        [resumed, LastCheckpoint(str(tmp_path / "b" / "checkpoints"))],
        ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"),
    )
    for key, value in resumed.y[4 * SPE].items():
        assert torch.equal(value, observe.y[4 * SPE][key]), key
    final = [state for stage, step, state in resumed.evaluated if step == 4 * SPE][-1]
    reference = [state for stage, step, state in observe.evaluated if step == 4 * SPE][-1]
    assert all(torch.equal(v, reference[k]) for k, v in final.items())


def test_snapshots_save_the_evaluated_weights(tmp_path):
    """No schedule with cycles is allowed with a schedule-free optimizer in a run, so the snapshot path is driven
    here directly: what a snapshot saves is x, with its BatchNorm statistics, and training goes on at y."""
    observe = Observe()
    trainer, module, _ = fit(tmp_path, [observe], epochs=2)
    snapshots = SnapshotEnsemble(include_final=True)
    snapshots.use_plan(LrRecipe(schedule=partial(SGDR, T_0=1)).build(0.5, Clock(SPE, 2 * SPE)))
    snapshots.on_fit_start(trainer, module)
    snapshots.on_train_end(trainer, module)  # the snapshot of the final weights
    saved = load_tensors(tmp_path / snapshots.snapshots[0]["file"])
    for name, x in schedule_free_average(observe, 2 * SPE).items():
        torch.testing.assert_close(saved[name].double(), x, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, observe.y[2 * SPE][k]) for k, v in module.network.state_dict().items())


def test_only_schedule_free_optimizers_are_detected():
    params = [torch.zeros(1, requires_grad=True)]
    assert is_schedule_free(schedulefree.SGDScheduleFree(params)) and is_schedule_free(
        schedulefree.AdamWScheduleFree(params)
    )
    assert not is_schedule_free(torch.optim.SGD(params, lr=0.1)) and not is_schedule_free(torch.optim.AdamW(params))


def test_the_warmup_group_drives_the_averaging_weights_as_the_packages_own_warmup_does():
    """schedulefree weighs each iterate by the largest lr so far, read from the param group at every step: an lr
    set per step by a scheduler (anneal's warmup) enters the average exactly as its own warmup_steps ramp does."""
    torch.manual_seed(0)
    start = torch.nn.Linear(5, 3)
    inputs, targets = torch.randn(40, 5), torch.randn(40, 3)

    def train(make):
        model = copy.deepcopy(start)
        optimizer, scheduler = make(model.parameters())
        optimizer.train()
        for step in range(40):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(inputs[step : step + 1]), targets[step : step + 1]).backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
        optimizer.eval()
        return [p.detach().clone() for p in model.parameters()]

    own = train(lambda p: (schedulefree.SGDScheduleFree(p, lr=0.1, warmup_steps=10), None))

    def driven(p):
        optimizer = schedulefree.SGDScheduleFree(p, lr=0.1, warmup_steps=0)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min((k + 1) / 10, 1.0))

    assert all(torch.equal(a, b) for a, b in zip(own, train(driven)))


class SigtermAtStep(L.Callback):
    """Sends this process SIGTERM after optimizer step `step`, as a cluster's preemption would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_mid_epoch_then_resume_gives_the_uninterrupted_run(tmp_path):
    settings = [
        "data=synthetic",
        "data.train_size=288",
        "data.val_size=32",
        "data.test_size=32",
        "data.batch_size=32",
        "model=wrn",
        "model.depth=10",
        "model.widen_factor=1",  # BatchNorm throughout
        "optimizer=sgd_schedulefree",
        "schedule=constant",
        "warmup=linear",
        "warmup.epochs=1",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        *FAST,
    ]
    run(compose_config(*settings, output_dir=tmp_path / "reference"))
    stop = ["+callbacks.stop._target_=test_schedulefree.SigtermAtStep", "+callbacks.stop.step=11"]  # mid-epoch 2
    with pytest.raises(Interrupted):
        run(compose_config(*settings, *stop, output_dir=tmp_path / "stopped"))
    assert load_tensors(tmp_path / "stopped" / "checkpoints" / "last.ckpt")["global_step"] == 11
    run(compose_config(*settings, "ckpt_path=last", output_dir=tmp_path / "stopped"))
    expected = json.loads((tmp_path / "reference" / "results.json").read_text())
    resumed = json.loads((tmp_path / "stopped" / "results.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "val/acc_best", "steps"):
        assert resumed[key] == expected[key], key
    final = [load_tensors(tmp_path / d / "checkpoints" / "last.ckpt") for d in ("reference", "stopped")]
    for key, value in final[0]["state_dict"].items():
        assert torch.equal(value, final[1]["state_dict"][key]), key
    z = [[s["z"] for s in f["optimizer_states"][0]["state"].values()] for f in final]
    assert all(torch.equal(a, b) for a, b in zip(*z))
