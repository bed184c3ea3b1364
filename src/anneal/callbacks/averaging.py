"""Weight averaging, SWA and EMA, on torch.optim.swa_utils: an AveragedModel of the network, updated
after the optimizer steps a policy (`should_update`) picks, evaluated beside the trained network.

Not Lightning's WeightAveraging: it swaps the average in for validation and overwrites the trained
weights at the end, while anneal validates and tests the SGD network and reports the average beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn, update_bn

from anneal.errors import ConfigError, require
from anneal.evaluation import classification_metrics, predict
from anneal.module import lr_scheduler
from anneal.schedules import LrSwitch, fraction_or_epochs, has_cycles
from anneal.storage import save_tensors

log = logging.getLogger(__name__)


class WeightAverage(L.Callback):
    """Base: keeps `average` (an AveragedModel), updated after step s when should_update(s).
    Its state (the averaged weights, n_averaged, the last update) lives in checkpoints."""

    prefix = "avg"

    def __init__(self, start: float, epochs: float, *, start_key: str, bn_update: bool, use_buffers: bool,
                 multi_avg_fn=None):
        require(start >= 0, start_key, start, "must be >= 0 (epochs, or a fraction of training if < 1)")
        self.start, self.epochs = start, epochs
        require(self.start_epochs < epochs, start_key, start,
                f"must start before the end of training (trainer.max_epochs={epochs})")
        self.bn_update, self.use_buffers, self.multi_avg_fn = bn_update, use_buffers, multi_avg_fn
        self.average: AveragedModel | None = None
        self.last_step, self.start_step = 0, 0
        self._pending_state: dict | None = None

    @property
    def start_epochs(self) -> float:
        return fraction_or_epochs(self.start, self.epochs)

    def should_update(self, step: int) -> bool:
        raise NotImplementedError

    def on_fit_start(self, trainer, pl_module):
        # created here, after Lightning moved the network to its device, so updates never cross devices
        if self.average is None:
            self.average = AveragedModel(pl_module.plain_network, multi_avg_fn=self.multi_avg_fn,
                                         use_buffers=self.use_buffers)
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_start(self, trainer, pl_module):
        self.start_step = lr_scheduler(trainer).clock.step_at(self.start_epochs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step > self.last_step and step >= self.start_step and self.should_update(step):
            self.average.update_parameters(pl_module.plain_network)
            self.last_step = step

    def state_dict(self) -> dict:
        return {"average": None if self.average is None else self.average.state_dict(), "last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        if self.average is None:  # checkpoints are restored before on_fit_start creates the average
            self._pending_state = state
            return
        self.average.load_state_dict(state["average"])
        self.last_step, self._pending_state = state["last_step"], None

    def evaluate(self, trainer: L.Trainer, module, datamodule) -> dict:
        """BN statistics recomputed with one pass over the training data (no augmentation, the whole set
        on every rank), then the averaged network on val (if held out) and test; its weights saved."""
        p = self.prefix
        n = 0 if self.average is None else int(self.average.n_averaged.item())
        if n == 0:
            log.warning("averaging=%s: no weights were averaged (start at epoch %g)", p, self.start_epochs)
            return {f"{p}/n_averaged": 0}
        network, device = self.average.module, module.device
        results: dict = {f"{p}/n_averaged": n}
        if self.bn_update:
            train = datamodule.batches("train")  # unsharded: every rank sees the whole training set
            update_bn(train, network, device=device)
            results[f"{p}/bn_update_images"] = len(train.images)
        if trainer.world_size > 1:  # DDP keeps the replicas equal, so their averages must be equal too
            sums = torch.stack([t.double().sum() for t in network.state_dict().values()])
            gathered = trainer.strategy.all_gather(sums)
            results[f"{p}/identical_on_ranks"] = bool((gathered == gathered[0]).all())
        for split in [s for s in ("val", "test") if s in datamodule.splits]:
            metrics = classification_metrics(*predict(network, datamodule.batches(split), device))
            results |= {f"{p}/{split}/acc": metrics["acc"], f"{p}/{split}/loss": metrics["nll"]}
        if trainer.is_global_zero:
            save_tensors(network.state_dict(), Path(trainer.default_root_dir) / f"{p}.pt")
        for logger in trainer.loggers:
            logger.log_metrics(results, step=trainer.global_step)
        log.info("%s model (%d weights averaged): test acc %.4f", p, n, results[f"{p}/test/acc"])
        return results


class SWA(WeightAverage):
    """Stochastic weight averaging (Izmailov et al. 2018): the equal-weight mean of the weights after
    every `swa_freq`-th optimizer step from `swa_start` on, or after each cycle end (swa_freq="cycle").
    swa_lr null leaves the schedule alone; a value switches to it at swa_start (annealed over
    anneal_epochs), shown in the lr preview like any other part of the schedule."""

    prefix = "swa"

    def __init__(self, swa_start: float = 0.75, swa_freq: int | str = 1, swa_lr: float | None = None,
                 anneal_epochs: float = 5.0, epochs: float = 1.0, bn_update: bool = True):
        # the multi-tensor mean: AveragedModel's default falls back to a per-tensor loop on CPUs (2-3x slower)
        super().__init__(swa_start, epochs, start_key="averaging.swa_start", bn_update=bn_update, use_buffers=False,
                         multi_avg_fn=get_swa_multi_avg_fn())
        require(swa_freq == "cycle" or (isinstance(swa_freq, int) and swa_freq >= 1), "averaging.swa_freq",
                swa_freq, "an integer >= 1 (optimizer steps) or 'cycle'")
        require(swa_lr is None or swa_lr > 0, "averaging.swa_lr", swa_lr, "must be > 0, or null to keep the schedule")
        require(anneal_epochs >= 0, "averaging.anneal_epochs", anneal_epochs, "must be >= 0")
        if swa_freq == "cycle" and swa_lr is not None:
            raise ConfigError("averaging.swa_freq=cycle averages at the schedule's cycle ends, but averaging.swa_lr="
                              f"{swa_lr} replaces the schedule by a constant lr after swa_start: set swa_lr=null")
        self.swa_freq, self.swa_lr, self.anneal_epochs = swa_freq, swa_lr, anneal_epochs

    def lr_switch(self) -> LrSwitch | None:
        return None if self.swa_lr is None else LrSwitch(self.start_epochs, self.swa_lr, self.anneal_epochs)

    def check(self, schedule, clock) -> None:
        if self.swa_freq == "cycle" and not has_cycles(schedule):
            raise ConfigError("averaging.swa_freq=cycle needs a schedule with cycles (sgdr, snapshot, cyclic, "
                              "adaptive_sgdr); this one has no cycle end within training")

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self._scheduler = lr_scheduler(trainer)

    def should_update(self, step):
        if self.swa_freq == "cycle":
            return step in self._scheduler.cycle_end_steps()
        return (step - self.start_step) % self.swa_freq == 0


class EMA(WeightAverage):
    """Exponential moving average of the weights and buffers: avg <- decay * avg + (1 - decay) * w,
    after every `every_n_steps`-th optimizer step from `start` on."""

    prefix = "ema"

    def __init__(self, decay: float = 0.999, every_n_steps: int = 1, start: float = 0.0, epochs: float = 1.0,
                 bn_update: bool = False):
        require(0 < decay < 1, "averaging.decay", decay, "must be in (0, 1)")
        require(isinstance(every_n_steps, int) and every_n_steps >= 1, "averaging.every_n_steps", every_n_steps,
                "must be an integer >= 1")
        super().__init__(start, epochs, start_key="averaging.start", bn_update=bn_update, use_buffers=True,
                         multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay, self.every_n_steps = decay, every_n_steps

    def should_update(self, step):
        return step % self.every_n_steps == 0
