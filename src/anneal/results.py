"""A run's results after its final evaluation: every producer's numbers gathered with their declarations (each
key from exactly one producer: `record.assembly`), results.json written (rank 0), the final numbers sent to the
loggers, the metric a sweeper optimizes returned."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger

from anneal.callbacks import RunCallback
from anneal.data import ImageData
from anneal.errors import TrainingStopped
from anneal.module import Classifier
from anneal.record import Evaluation, Metric, RunFiles, assembly, results_document
from anneal.storage import save_json

log = logging.getLogger("anneal")


def evaluation_of(datamodule: ImageData) -> Evaluation:
    """What a run on this data evaluates: the splits scored at the end, the one scored after every epoch."""
    splits = ("val", "test") if datamodule.val_size > 0 else ("test",)
    return Evaluation(splits, datamodule.heldout)


def declarations(module: Classifier, callbacks: Sequence[L.Callback], evaluation: Evaluation) -> list[Metric]:
    """Every metric the run's producers will report, as they declare them (before training: a key two producers
    declare stops the run here)."""
    parts = [(type(module).__name__, module.declare(evaluation))]
    parts += [(type(c).__name__, c.declare(evaluation)) for c in callbacks if isinstance(c, RunCallback)]
    return assembly.declarations(parts)


def gather(
    module: Classifier,
    datamodule: ImageData,
    callbacks: Sequence[L.Callback],
    scores: dict[str, float],
    info: dict[str, Any],
) -> list[tuple[str, dict[str, Any]]]:
    """The values of results.json of a finished run by producer: what it ran (info), the final scores, then every
    callback's results (`assembly.merged` makes them one mapping)."""
    trainer = module.trainer
    run = {"data": datamodule.describe(), "num_classes": datamodule.num_classes, **info}
    run["dataset"] = datamodule.identity  # name, sizes and content fingerprint: the arm holds it too
    parts = [("the run", run), (type(module).__name__, module.results() | scores)]
    for callback in callbacks:
        if isinstance(callback, RunCallback):
            parts.append((type(callback).__name__, callback.results(trainer, module, datamodule)))
    return parts


def record_results(
    files: RunFiles,
    values: dict[str, Any],
    declared: list[Metric],
    trainer: L.Trainer,
    loggers: Sequence[Logger],
    curves: set[str],
) -> dict[str, Any]:
    """Write results.json (rank 0) with the declarations, and send the final numbers to the loggers: W&B's run
    summary; for the others one row at the last step, without what their per-epoch `curves` already hold."""
    document = results_document(values, declared)
    headline = document["headline"]
    if trainer.is_global_zero:
        save_json(document, files.results)
        log.info(
            "%s %.4f (%s, %s); results in %s",
            headline,
            document.get(headline, float("nan")),
            document["data"],
            document.get("schedule"),
            files.results,
        )
    numbers = {k: document[k] for k in document["metrics"]}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if trainer.is_global_zero:
                logger.experiment.summary.update({**numbers, "headline": headline})
        else:
            logger.log_metrics({k: v for k, v in numbers.items() if k not in curves}, step=trainer.global_step)
        logger.finalize("success")
    return document


def optimized(document: dict[str, Any], key: str) -> float:
    """The metric returned to a sweeper (its presence was checked before training)."""
    if key not in document["metrics"]:
        raise TrainingStopped(
            f"optimized_metric={key} was not produced by this run; results.json holds {sorted(document['metrics'])}"
        )
    return float(document[key])
