"""Weight averaging, SWA and EMA, on torch.optim.swa_utils: an AveragedModel of the network, updated
after the optimizer steps a policy (`should_update`) picks, evaluated beside the trained network.

Not Lightning's WeightAveraging: it swaps the average in for validation and overwrites the trained
weights at the end, while anneal validates and tests the SGD network and reports the average beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn

from anneal.bn_update import checked_images, recompute_bn
from anneal.callbacks.base import RunCallback
from anneal.errors import ConfigError, require
from anneal.evaluation import classification_metrics, predict
from anneal.record import Evaluation, Metric, RunFiles, accuracy, count, loss, seconds
from anneal.schedules import LrPlan, LrSwitch, Span
from anneal.storage import save_tensors

log = logging.getLogger(__name__)


class WeightAverage(RunCallback):
    """Base: keeps `average` (an AveragedModel), updated after step s when should_update(s), from `start`
    (epochs, 'N steps' or 'P%' of training) on. Its state (the averaged weights, the last update) lives in
    checkpoints."""

    prefix = "avg"
    title = "averaged"  # how tables and figures name this average: "SWA"

    bn_update_images: int | float | None = None  # the images of BatchNorm's pass (None: the whole training set)

    def __init__(self, start: Span, *, start_key: str, bn_update: bool, use_buffers: bool, multi_avg_fn: Any = None):
        self.start, self.start_key = start, start_key
        self.bn_update, self.use_buffers, self.multi_avg_fn = bn_update, use_buffers, multi_avg_fn
        self.average: AveragedModel | None = None
        self.last_step, self.start_step = 0, 0
        self.start_epochs = 0.0
        self._pending_state: dict[str, Any] | None = None

    def use_plan(self, plan: LrPlan) -> None:
        self.plan = plan
        total = plan.clock.total_epochs
        self.start_epochs = self.start.epochs(total, plan.clock)
        require(
            self.start_epochs < total,
            self.start_key,
            str(self.start),
            f"must start before the end of training ({total:g} epochs)",
        )
        self.start_step = self.start_step_of(plan)
        self.check_against(plan)
        planned = self.updates_planned()
        if planned is not None and planned < 2:
            raise ConfigError(
                self.start_key,
                str(self.start),
                text=(
                    f"{{key}}={self.start} is invalid here: the average would be updated {planned} time(s) in this run "
                    f"(from epoch {self.start_epochs:g} of {total:g}) and needs 2 or more: start earlier or average "
                    f"more often"
                ),
            )

    def check_against(self, plan: LrPlan) -> None:
        """This average's own settings against the plan, before the count of its updates is checked."""

    def updates_planned(self) -> int | None:
        """How many times training will update the average (None: it depends on what the run measures)."""
        raise NotImplementedError

    def marks(self) -> list[tuple[float, str]]:
        return [(self.start_epochs, f"{self.title} starts")]

    def start_step_of(self, plan: LrPlan) -> int:
        return plan.clock.step_at(self.start.epochs(plan.clock.total_epochs, plan.clock))

    def past_differs(self, old: LrPlan, new: LrPlan, step: int) -> str | None:
        was, now = self.start_step_of(old), self.start_step_of(new)
        if was != now and min(was, now) <= step:
            return f"{self.start_key}={self.start} would start averaging at step {now} instead of {was}"
        return None

    def should_update(self, step: int) -> bool:
        raise NotImplementedError

    def declare(self, evaluation: Evaluation) -> list[Metric]:
        p, name = self.prefix, self.title
        found = [count(f"{p}/n_averaged", f"{name}: weights averaged")]
        if self.bn_update:
            found.append(count(f"{p}/bn_update_images", f"{name}: images of the BatchNorm update"))
            found.append(seconds(f"{p}/bn_update_seconds", f"{name}: seconds of the BatchNorm update"))
        for split in evaluation.splits:
            title = "test" if split == "test" else "validation"
            # the averaged network is what an averaging run is for: its test accuracy is the run's headline
            found.append(accuracy(f"{p}/{split}/acc", f"{name} {title} accuracy", headline=2 * (split == "test")))
            found.append(loss(f"{p}/{split}/loss", f"{name} {title} loss"))
        return found

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # created here, after Lightning moved the network to its device, so updates never cross devices
        if self.average is None:
            self.average = AveragedModel(
                pl_module.network, multi_avg_fn=self.multi_avg_fn, use_buffers=self.use_buffers
            )
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step > self.last_step and step >= self.start_step and self.should_update(step):
            self.update(pl_module.network, step)
            self.last_step = step

    def update(self, network: nn.Module, step: int) -> None:
        assert self.average is not None
        self.average.update_parameters(network)

    def averaged(self, module: Any) -> tuple[nn.Module, int]:
        """The averaged network, and how many weights it averages (0: none yet)."""
        if self.average is None:
            return module.network, 0
        return self.average.module, int(self.average.n_averaged.item())

    def state_dict(self) -> dict[str, Any]:
        return {"average": None if self.average is None else self.average.state_dict(), "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is None:  # checkpoints are restored before on_fit_start creates the average
            self._pending_state = state
            return
        self.average.load_state_dict(state["average"])
        self.last_step, self._pending_state = state["last_step"], None

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any) -> dict[str, Any]:
        """BN statistics recomputed with one pass over the training data (no augmentation, the whole set, or
        bn_update_images drawn with the run's seed, on every rank; none for a network without BatchNorm), then the
        averaged network on val (if held out) and test; its weights saved."""
        p = self.prefix
        network, n = self.averaged(module)
        if n == 0:
            log.warning("averaging=%s: no weights were averaged (start at epoch %g)", p, self.start_epochs)
            return {f"{p}/n_averaged": 0}
        device = module.device
        results: dict[str, Any] = {f"{p}/n_averaged": n}
        if self.bn_update:
            train = datamodule.batches("train")  # unsharded: every rank sees the same images
            images, spent = recompute_bn(network, train, device, self.bn_update_images, datamodule.seed)
            results |= {f"{p}/bn_update_images": images, f"{p}/bn_update_seconds": spent}
        if trainer.world_size > 1:  # DDP keeps the replicas equal, so their averages must be equal too
            sums = torch.stack([t.double().sum() for t in network.state_dict().values()])
            gathered = trainer.strategy.all_gather(sums)
            results[f"{p}/identical_on_ranks"] = bool((gathered == gathered[0]).all())
        for split in [s for s in ("val", "test") if s in datamodule.splits]:
            metrics = classification_metrics(*predict(network, datamodule.batches(split), device))
            results |= {f"{p}/{split}/acc": metrics["acc"], f"{p}/{split}/loss": metrics["nll"]}
        if trainer.is_global_zero:
            save_tensors(network.state_dict(), RunFiles(Path(trainer.default_root_dir)).averaged(p))
        log.info("%s model (%d weights averaged): test acc %.4f", p, n, results[f"{p}/test/acc"])
        return results


_swa_mean = get_swa_multi_avg_fn()


def swa_mean(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
    """torch's multi-tensor SWA mean for float tensors; integer buffers (BatchNorm's batch counter, which
    torch's function cannot divide) take the current value."""
    if averaged[0].is_floating_point():
        _swa_mean(averaged, current, num_averaged)
    else:
        for a, c in zip(averaged, current):
            a.copy_(c)


class SWA(WeightAverage):
    """Stochastic weight averaging (Izmailov et al. 2018): the equal-weight mean of the weights after every
    `swa_freq`-th optimizer step from `swa_start` on, after every epoch (swa_freq="epoch", the paper's),
    or after each cycle end of the schedule (swa_freq="cycle"). swa_lr null leaves the schedule alone; a
    value switches to it at swa_start (annealed over anneal_epochs), shown in the lr preview like any other
    part of the schedule. Without bn_update, BatchNorm statistics are averaged too.

    With swa_start in optimizer steps ('N steps') it is torchcontrib's automatic mode: the lr is swa_lr from
    step swa_start on, and the weights are averaged after every step n with n > swa_start and n % swa_freq == 0.
    In epochs, averages are taken at swa_start and every swa_freq steps after it."""

    prefix, title = "swa", "SWA"
    FREQUENCIES = ("epoch", "cycle")

    def __init__(
        self,
        swa_start: float | str = "75%",
        swa_freq: int | str = 1,
        swa_lr: float | None = None,
        anneal_epochs: float = 5.0,
        bn_update: bool = True,
        bn_update_images: int | float | None = None,
    ):
        # a multi-tensor mean: AveragedModel's default falls back to a per-tensor loop on CPUs (2-3x slower)
        super().__init__(
            Span.parse(swa_start, "swa_start", shares=True),
            start_key="swa_start",
            bn_update=bn_update,
            use_buffers=not bn_update,
            multi_avg_fn=swa_mean,
        )
        self.bn_update_images = checked_images(bn_update_images)
        require(
            swa_freq in self.FREQUENCIES or (isinstance(swa_freq, int) and swa_freq >= 1),
            "swa_freq",
            swa_freq,
            "an integer >= 1 (optimizer steps), 'epoch' or 'cycle'",
        )
        require(swa_lr is None or swa_lr > 0, "swa_lr", swa_lr, "must be > 0, or null to keep the schedule")
        require(anneal_epochs >= 0, "anneal_epochs", anneal_epochs, "must be >= 0")
        if swa_freq == "cycle" and swa_lr is not None:
            raise ConfigError(
                "swa_freq",
                swa_freq,
                text=f"{{key}}=cycle averages at the schedule's cycle ends, but "
                f"swa_lr={swa_lr} replaces the schedule by a constant lr after swa_start: set swa_lr=null",
            )
        self.swa_freq, self.swa_lr, self.anneal_epochs = swa_freq, swa_lr, anneal_epochs

    def lr_switch(self) -> LrSwitch | None:
        return None if self.swa_lr is None else LrSwitch(self.start, self.swa_lr, self.anneal_epochs)

    def check_against(self, plan: LrPlan) -> None:
        total = plan.clock.total_epochs
        if self.swa_lr is not None and self.start_epochs + self.anneal_epochs > total + 1e-9:
            raise ConfigError(
                "anneal_epochs",
                self.anneal_epochs,
                text=(
                    f"{{key}}={self.anneal_epochs:g} is invalid here: the ramp to swa_lr={self.swa_lr:g} from "
                    f"swa_start (epoch {self.start_epochs:g}) would end after training ({total:g} epochs); at most "
                    f"{total - self.start_epochs:g} epochs (or lower swa_start)"
                ),
            )
        if self.swa_freq != "cycle" or plan.schedule.cycles_follow_metric:
            return
        ends = [e for e in plan.cycle_ends() if e >= self.start_epochs]
        if not ends:
            raise ConfigError(
                "swa_freq",
                "cycle",
                text=(
                    f"{{key}}=cycle is invalid here: no cycle of the schedule ends at or after swa_start "
                    f"({self.start_epochs:g} epochs), so nothing would be averaged; cycle ends: "
                    f"{plan.cycle_ends() or 'none'}. Lower swa_start or use a schedule with cycles"
                ),
            )

    def updates_planned(self) -> int | None:
        total, start = self.plan.clock.total_steps, self.start_step
        if self.swa_freq == "cycle":
            if self.plan.schedule.cycles_follow_metric:
                return None
            return sum(1 for end in self.plan.cycle_end_steps() if max(start, 1) <= end <= total)
        if self.swa_freq == "epoch":
            return every(start, total, self.plan.clock.steps_per_epoch)
        assert isinstance(self.swa_freq, int)
        if self.start.unit == "steps":  # torchcontrib's automatic mode: steps after swa_start, multiples of swa_freq
            return total // self.swa_freq - start // self.swa_freq
        return every(start, total, self.swa_freq)

    def should_update(self, step: int) -> bool:
        if self.swa_freq == "cycle":
            return step in self.plan.cycle_end_steps()
        if self.swa_freq == "epoch":
            return (step - self.start_step) % self.plan.clock.steps_per_epoch == 0
        assert isinstance(self.swa_freq, int)
        if self.start.unit == "steps":
            return step > self.start_step and step % self.swa_freq == 0
        return (step - self.start_step) % self.swa_freq == 0


class EMA(WeightAverage):
    """Exponential moving average of the weights and buffers: avg <- decay * avg + (1 - decay) * w, after every
    `every_n_steps`-th optimizer step from `start` on; the first update copies the weights. warmup=true forgets the
    first, poor weights fast: the n-th update after the first uses min(decay, (1 + n) / (10 + n)) (0.18, 0.25, ...),
    TensorFlow's ExponentialMovingAverage(num_updates) warmup, as in timm's ModelEmaV3 (whose default is a power
    form) and Tarvainen & Valpola 2017's mean teacher (min(1 − 1 / (n + 1), decay))."""

    prefix, title = "ema", "EMA"

    def __init__(
        self,
        decay: float = 0.999,
        every_n_steps: int = 1,
        start: float | str = 0.0,
        bn_update: bool = False,
        warmup: bool = False,
        bn_update_images: int | float | None = None,
    ):
        require(0 < decay < 1, "decay", decay, "must be in (0, 1)")
        require(
            isinstance(every_n_steps, int) and every_n_steps >= 1,
            "every_n_steps",
            every_n_steps,
            "must be an integer >= 1",
        )
        require(isinstance(warmup, bool), "warmup", warmup, "true or false")
        super().__init__(
            Span.parse(start, "start", shares=True),
            start_key="start",
            bn_update=bn_update,
            use_buffers=True,
            multi_avg_fn=self.warmed if warmup else get_ema_multi_avg_fn(decay),
        )
        self.every_n_steps, self.decay, self.warmup = every_n_steps, decay, warmup
        self.bn_update_images = checked_images(bn_update_images)
        self.updates = 0  # taken so far (kept in Python: reading the average's count would wait for the device)

    def decay_at(self, n: int) -> float:  # the n-th update after the first, n >= 1
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def warmed(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        get_ema_multi_avg_fn(self.decay_at(self.updates))(averaged, current, num_averaged)

    def update(self, network: nn.Module, step: int) -> None:
        super().update(network, step)
        self.updates += 1

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.average is not None and self._pending_state is None:
            self.updates = int(self.average.n_averaged.item())

    def updates_planned(self) -> int | None:
        return every(self.start_step, self.plan.clock.total_steps, self.every_n_steps)

    def should_update(self, step: int) -> bool:
        return (step - self.start_step) % self.every_n_steps == 0


def every(start: int, total: int, interval: int) -> int:
    """How many optimizer steps s in [max(start, 1), total] have (s - start) % interval == 0: the updates of an
    average taken every `interval` steps from `start` (a step is counted once it has been taken)."""
    first = start if start >= 1 else start + interval * -(-(1 - start) // interval)
    return 0 if first > total else (total - first) // interval + 1
