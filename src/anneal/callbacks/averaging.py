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
from torch.optim.swa_utils import AveragedModel, get_swa_multi_avg_fn

from anneal.bn_update import checked_images, recompute_bn
from anneal.callbacks.base import RunCallback, network_of
from anneal.callbacks.data_access import data_of, heldout_batches, training_batches
from anneal.errors import ConfigError, require
from anneal.evaluation import classification_metrics, predict
from anneal.record import Evaluation, Metric, RunFiles, accuracy, count, loss, seconds
from anneal.schedules import Clock, LrPlan, LrSwitch, Span
from anneal.storage import save_tensors

log = logging.getLogger(__name__)


class WeightAverage(RunCallback):
    """Base: keeps `average` (an AveragedModel), updated after step s when should_update(s), from `start`
    (epochs, 'N steps' or 'P%' of training) on. Its state (the averaged weights, the last update) lives in
    checkpoints."""

    prefix = "avg"
    title = "averaged"  # how tables and figures name this average: "SWA"

    bn_update_images: int | float | None = None  # the images of BatchNorm's pass (None: the whole training set)

    def __init__(
        self,
        start: Span,
        *,
        start_key: str,
        bn_update: bool,
        use_buffers: bool,
        multi_avg_fn: Any = None,
        output_dir: str | Path | None = None,
    ):
        self.start, self.start_key, self.output_dir = start, start_key, None if output_dir is None else Path(output_dir)
        self.bn_update, self.use_buffers, self.multi_avg_fn = bn_update, use_buffers, multi_avg_fn
        self.average: AveragedModel | None = None
        self.last_step, self.start_step = 0, 0
        self.start_epochs = 0.0
        self._pending_state: dict[str, Any] | None = None

    def use_clock(self, clock: Clock) -> None:
        super().use_clock(clock)
        total = clock.total_epochs
        self.start_epochs = self.start.epochs(total, clock)
        require(
            self.start_epochs < total,
            self.start_key,
            str(self.start),
            f"must start before the end of training ({total:g} epochs)",
        )
        self.start_step = self.start_step_at(clock)
        self.check_against(clock)
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

    def check_against(self, clock: Clock) -> None:
        """This average's own settings against the run's clock (and plan, if any: `self.plan`), before the count of
        its updates is checked."""

    def updates_planned(self) -> int | None:
        """How many times training will update the average (None: it depends on what the run measures)."""
        raise NotImplementedError

    def marks(self) -> list[tuple[float, str]]:
        return [(self.start_epochs, f"{self.title} starts")]

    def start_step_of(self, plan: LrPlan) -> int:
        return self.start_step_at(plan.clock)

    def start_step_at(self, clock: Clock) -> int:
        return clock.step_at(self.start.epochs(clock.total_epochs, clock))

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
        super().on_fit_start(trainer, pl_module)
        # created here, after Lightning moved the network to its device, so updates never cross devices
        if self.average is None:
            self.average = AveragedModel(
                network_of(pl_module), multi_avg_fn=self.multi_avg_fn, use_buffers=self.use_buffers
            )
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step > self.last_step and step >= self.start_step and self.should_update(step):
            self.update(network_of(pl_module), step)
            self.last_step = step

    def update(self, network: nn.Module, step: int) -> None:
        assert self.average is not None
        self.average.update_parameters(network)

    def averaged(self, module: Any) -> tuple[nn.Module, int]:
        """The averaged network, and how many weights it averages (0: none yet)."""
        if self.average is None:
            return network_of(module), 0
        return self.average.module, int(self.average.n_averaged.item())

    def state_dict(self) -> dict[str, Any]:
        return {"average": None if self.average is None else self.average.state_dict(), "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is None:  # checkpoints are restored before on_fit_start creates the average
            self._pending_state = state
            return
        self.average.load_state_dict(state["average"])
        self.last_step, self._pending_state = state["last_step"], None

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        """BN statistics recomputed with one pass over the training data (anneal's data: no augmentation, the whole
        set or bn_update_images drawn with the run's seed, on every rank; another data module: its
        train_dataloader, up to bn_update_images images; none for a network without BatchNorm), then the averaged
        network on val (if held out) and test; its weights saved."""
        p = self.prefix
        network, n = self.averaged(module)
        if n == 0:
            log.warning("averaging=%s: no weights were averaged (start at epoch %g)", p, self.start_epochs)
            return {f"{p}/n_averaged": 0}
        device = module.device
        results: dict[str, Any] = {f"{p}/n_averaged": n}
        if self.bn_update:
            train = training_batches(trainer, datamodule)
            seed = getattr(data_of(trainer, datamodule), "seed", 0)
            images, spent = recompute_bn(network, train, device, self.bn_update_images, seed)
            results |= {f"{p}/bn_update_images": images, f"{p}/bn_update_seconds": spent}
        if trainer.world_size > 1:  # DDP keeps the replicas equal, so their averages must be equal too
            sums = torch.stack([t.double().sum() for t in network.state_dict().values()])
            gathered = trainer.strategy.all_gather(sums)
            results[f"{p}/identical_on_ranks"] = bool((gathered == gathered[0]).all())
        for split, batches in heldout_batches(trainer, datamodule).items():
            metrics = classification_metrics(*predict(network, batches, device))
            results |= {f"{p}/{split}/acc": metrics["acc"], f"{p}/{split}/loss": metrics["nll"]}
        if trainer.is_global_zero:
            save_tensors(network.state_dict(), RunFiles(self.output_folder(trainer)).averaged(p))
        scores = ", ".join(f"{k.removeprefix(p + '/')} {v:.4f}" for k, v in results.items() if k.endswith("/acc"))
        log.info("%s model (%d weights averaged): %s", p, n, scores or "no held-out data to score it on")
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
        output_dir: str | Path | None = None,
        bn_update_images: int | float | None = None,
    ):
        # a multi-tensor mean: AveragedModel's default falls back to a per-tensor loop on CPUs (2-3x slower)
        super().__init__(
            Span.parse(swa_start, "swa_start", shares=True),
            start_key="swa_start",
            bn_update=bn_update,
            use_buffers=not bn_update,
            multi_avg_fn=swa_mean,
            output_dir=output_dir,
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

    def use_plan(self, plan: LrPlan) -> None:
        if (switch := self.lr_switch()) is not None:  # composed into the plan here, whoever hands it over
            plan.add_switch(switch)
        super().use_plan(plan)

    def check_against(self, clock: Clock) -> None:
        total = clock.total_epochs
        if self.swa_lr is not None:
            self.refuse_without_plan(f"a plan to switch the lr to swa_lr={self.swa_lr:g} in")
        if self.swa_freq == "cycle":
            self.refuse_without_plan("the schedule's cycle ends (swa_freq='cycle')")
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
        plan = self.plan
        if self.swa_freq != "cycle" or plan is None or plan.schedule.cycles_follow_metric:
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
        assert self.clock is not None
        total, start = self.clock.total_steps, self.start_step
        if self.swa_freq == "cycle":
            assert self.plan is not None
            if self.plan.schedule.cycles_follow_metric:
                return None
            return sum(1 for end in self.plan.cycle_end_steps() if max(start, 1) <= end <= total)
        if self.swa_freq == "epoch":
            return every(start, total, self.clock.steps_per_epoch)
        assert isinstance(self.swa_freq, int)
        if self.start.unit == "steps":  # torchcontrib's automatic mode: steps after swa_start, multiples of swa_freq
            return total // self.swa_freq - start // self.swa_freq
        return every(start, total, self.swa_freq)

    def should_update(self, step: int) -> bool:
        if self.swa_freq == "cycle":
            assert self.plan is not None
            return step in self.plan.cycle_end_steps()
        if self.swa_freq == "epoch":
            assert self.clock is not None
            return (step - self.start_step) % self.clock.steps_per_epoch == 0
        assert isinstance(self.swa_freq, int)
        if self.start.unit == "steps":
            return step > self.start_step and step % self.swa_freq == 0
        return (step - self.start_step) % self.swa_freq == 0


def every(start: int, total: int, interval: int) -> int:
    """How many optimizer steps s in [max(start, 1), total] have (s - start) % interval == 0: the updates of an
    average taken every `interval` steps from `start` (a step is counted once it has been taken)."""
    first = start if start >= 1 else start + interval * -(-(1 - start) // interval)
    return 0 if first > total else (total - first) // interval + 1
