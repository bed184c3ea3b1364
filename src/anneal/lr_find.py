"""The LR range test (Smith 2017) on Lightning's LR finder: raise the lr every mini-batch from min_lr to
max_lr (exponentially or linearly), record the smoothed loss, stop when it diverges.

Suggestions: `lr_find/suggestion` is where the smoothed loss falls fastest against log(lr).
`lr_find/range` follows Smith's rule for cyclical schedules: the upper end is where the smoothed loss
stops falling (its minimum), the lower end where its final descent into that minimum begins."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from anneal.module import Classifier
from anneal.record import Metric, RunFiles, count, results_document
from anneal.storage import save_json

log = logging.getLogger(__name__)


def smoothed(losses: list[float], beta: float = 0.98) -> list[float]:
    """The bias-corrected running average of the losses (Smith 2017, as in fastai): the average after step k
    (from 1) divided by 1 - beta ** k. Computed here from the raw losses: Lightning's finder records only its
    own average, whose correction is one step off (its first point is about half the loss)."""
    average, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**k))
    return out


class RecordingClassifier(Classifier):
    """The Classifier, recording the training loss of every optimizer step as the step computed it. (Module
    hooks, not a callback: Lightning's finder runs with its own callback alone.)"""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.step_losses: list[float] = []

    def check_clock(self) -> None:
        """Lightning's finder runs its own number of steps, not the plan's."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:  # the batches the finder records
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.step_losses.append(float(loss))


def steepest_descent(lrs: list[float], losses: list[float], skip_begin: int = 10) -> float | None:
    """The lr where the smoothed loss falls fastest per decade of lr, before its minimum. (Lightning's
    suggestion differentiates against the lr itself, so noise among the tiny first lrs wins.)"""
    best = min(range(len(losses)), key=losses.__getitem__)
    if best - skip_begin < 2:
        return None
    window = slice(skip_begin, best + 1)
    slopes = np.gradient(np.asarray(losses[window]), np.log10(lrs[window]))
    return lrs[skip_begin + int(np.argmin(slopes))]


def suggested_range(lrs: list[float], losses: list[float], fall: float = 0.1) -> tuple[float, float]:
    """[lr where the final descent begins, lr at the minimum of the smoothed loss]: scanning back from the
    minimum, the descent begins where the loss is `fall` of the way down from its plateau (the median
    loss before the minimum), so noise at the start of the test does not move it."""
    best = min(range(len(losses)), key=losses.__getitem__)
    plateau = statistics.median(losses[: best + 1])
    threshold = losses[best] + (1 - fall) * (plateau - losses[best])
    start = best
    while start > 0 and losses[start - 1] < threshold:
        start -= 1
    return lrs[start], lrs[best]


def plot(lrs, losses, suggestion, lr_range, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="tab:blue", label="smoothed training loss")
    ax.axvspan(*lr_range, color="tab:green", alpha=0.15, label=f"range [{lr_range[0]:.2g}, {lr_range[1]:.2g}]")
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", ls="--", label=f"steepest descent: lr = {suggestion:.3g}")
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=110)
    return path


METRICS: list[Metric] = [
    count("lr_find/suggestion", "LR range test: lr of the steepest descent"),
    count("lr_find/steps", "LR range test: steps"),
]


def lr_find(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: RecordingClassifier,
    datamodule: L.LightningDataModule,
    files: RunFiles,
) -> float | None:
    settings = cfg.lr_find
    finder = Tuner(trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        num_training=settings.num_training,
        mode=settings.mode,
        early_stop_threshold=settings.early_stop_threshold,
        update_attr=False,
    )
    assert finder is not None
    lrs = finder.results["lr"][: len(module.step_losses)]
    losses = smoothed(module.step_losses[: len(lrs)])
    suggestion = steepest_descent(lrs, losses)
    lr_range = suggested_range(lrs, losses)
    png = plot(
        lrs,
        losses,
        suggestion,
        lr_range,
        files.lr_find_png,
        f"LR range test: {len(lrs)} steps, {settings.mode}, {datamodule.name}",
    )
    results = {
        "lr_find/suggestion": suggestion,
        "lr_find/range": list(lr_range),
        "lr_find/steps": len(lrs),
        "lr_find/mode": settings.mode,
        "data": datamodule.name,
        "seed": cfg.seed,
    }
    if trainer.is_global_zero:
        save_json(results_document(results, METRICS), files.results)
        save_json({"lr": lrs, "smoothed_loss": losses}, files.lr_find_curve)
    for logger in trainer.loggers:
        for step, (lr, smoothed_loss) in enumerate(zip(lrs, losses)):  # the curve as data, not only its picture
            logger.log_metrics({"lr_find/lr": lr, "lr_find/smoothed_loss": smoothed_loss}, step=step)
        logger.log_metrics(
            {
                "lr_find/suggestion": suggestion or float("nan"),
                "lr_find/range_min": lr_range[0],
                "lr_find/range_max": lr_range[1],
            },
            step=len(lrs),
        )
        if isinstance(logger, WandbLogger):
            logger.log_image("lr_find", images=[str(png)], step=len(lrs))
        logger.finalize("success")
    advice = (
        "no steepest-descent point (too few steps)"
        if suggestion is None
        else f"steepest descent at lr = {suggestion:.3g}  ->  optimizer.lr={suggestion:.3g}"
    )
    message = (
        f"LR range test ({len(lrs)} steps): {advice}\n"
        f"  range [{lr_range[0]:.3g}, {lr_range[1]:.3g}]  ->  schedule=cyclic schedule.lr_min={lr_range[0]:.3g} "
        f"optimizer.lr={lr_range[1]:.3g}  or  schedule=sgdr optimizer.lr={lr_range[1]:.3g}\n  picture: {png}"
    )
    log.info(message)
    print(message)
    return suggestion
