"""What a run's numbers mean: each metric in results.json is declared once, by the code that produces it, with
the direction that is better and whether it is the number an arm stands for (its headline). results.json
carries the declarations, so that every reader (the report, W&B's summary, a sweeper's `optimized_metric`)
reads them from the run instead of guessing from a metric's name."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)
BETTER = ("higher", "lower")

# results.json's format: 1 (no `format` key) carried the declarations without `column` and `producer`; older
# files carried none (read with LEGACY below). A reader reads every format up to its own and refuses a newer one.
RESULTS_FORMAT = 2


@dataclass(frozen=True)
class Evaluation:
    """What a run evaluates, which decides what it can report: the splits scored after training, and the split
    scored after every epoch (None when that evaluation is off)."""

    splits: tuple[str, ...] = ("test",)
    every_epoch: str | None = "test"


@dataclass(frozen=True)
class Metric:
    """A number in results.json. `better`: "higher", "lower", or None for a count or a size that is never ranked.
    `percent`: a fraction, shown as a percentage. `headline` > 0 makes it a candidate for the number an arm stands
    for; the run's highest wins (the ensemble's accuracy 3, an averaged network's 2, the trained network's 1).
    `column`: a number readers compare arms by, so the report's tables give it a column (every headline candidate
    has one). `producer`: who reported it (set when results.json is assembled: `assembly.py`)."""

    key: str
    better: str | None = "higher"
    percent: bool = False
    label: str = ""
    headline: int = 0
    column: bool = False
    producer: str = ""

    def __post_init__(self) -> None:
        if self.better not in (*BETTER, None):
            raise ValueError(f"metric {self.key}: better must be one of {BETTER} or None, not {self.better!r}")

    @property
    def name(self) -> str:
        """How a table or figure names it: its label, with the unit."""
        return f"{self.label or self.key}{' (%)' if self.percent else ''}"

    @property
    def in_tables(self) -> bool:
        """Whether the report's tables show it: a headline candidate, or declared a column."""
        return self.column or self.headline > 0

    def shown(self, value: float) -> float:
        return value * 100 if self.percent else value

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "key"}

    @classmethod
    def from_json(cls, key: str, entry: object) -> Metric:
        """A declaration as results.json holds it; one of format 1 (no `column`, no `producer`) takes the column
        anneal gave that key then (LEGACY), so that old runs show in the same tables."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"the declaration of {key} is a {type(entry).__name__}, not an object")
        better, percent, label, headline = (entry.get(k) for k in ("better", "percent", "label", "headline"))
        if better not in (*BETTER, None) or not isinstance(percent, bool) or not isinstance(label, str):
            raise ValueError(f"the declaration of {key} is malformed: {dict(entry)}")
        if not isinstance(headline, int) or isinstance(headline, bool):
            raise ValueError(f"the declaration of {key} has a non-integer headline: {headline!r}")
        column = entry.get("column", key in LEGACY and LEGACY[key].column)
        producer = entry.get("producer", "")
        if not isinstance(column, bool) or not isinstance(producer, str):
            raise ValueError(f"the declaration of {key} is malformed: {dict(entry)}")
        return cls(key, better, percent, label, headline, column, producer)


def accuracy(key: str, label: str, headline: int = 0, column: bool = False) -> Metric:
    return Metric(key, "higher", percent=True, label=label, headline=headline, column=column)


def loss(key: str, label: str, column: bool = False) -> Metric:
    return Metric(key, "lower", label=label, column=column)


def count(key: str, label: str) -> Metric:
    return Metric(key, None, label=label)


def seconds(key: str, label: str, column: bool = False) -> Metric:
    return Metric(key, "lower", label=label, column=column)


def headline_of(declared: Iterable[Metric]) -> Metric | None:
    """The declared metric with the highest headline rank (the first of equals), if any is a candidate."""
    candidates = [m for m in declared if m.headline > 0]
    return max(candidates, key=lambda m: m.headline) if candidates else None


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


INFO = ("seed", "num_classes")  # numbers that say what the run was, not what it measured


def results_document(values: Mapping[str, Any], declared: Iterable[Metric]) -> dict[str, Any]:
    """results.json: its format, the run's values, then `metrics` (the declaration of every metric it holds) and
    `headline` (the key of the number the run stands for). A number no producer declared is kept without a
    direction."""
    declarations = {m.key: m for m in declared}
    present = {k: m for k, m in declarations.items() if is_number(values.get(k)) and math.isfinite(values[k])}
    undeclared = [k for k, v in values.items() if is_number(v) and k not in declarations and k not in INFO]
    if undeclared:
        log.warning("results without a metric declaration (never ranked): %s", ", ".join(undeclared))
    headline = headline_of(present.values())
    document = {"format": RESULTS_FORMAT, **values}
    document["metrics"] = {k: m.to_json() for k, m in present.items()}
    document["headline"] = headline.key if headline else None
    return document


# What anneal's runs reported before results.json carried declarations: each key as its producer declared it
# then, so that older runs are read with the same meaning (keys not listed here stay undeclared).
LEGACY: dict[str, Metric] = {
    m.key: m
    for m in [
        accuracy("test/acc", "test accuracy", headline=1),
        loss("test/loss", "test loss", column=True),
        accuracy("val/acc", "validation accuracy", column=True),
        loss("val/loss", "validation loss"),
        accuracy("test/acc_best", "best test accuracy in an epoch", column=True),
        accuracy("val/acc_best", "best validation accuracy in an epoch", column=True),
        count("test/acc_best_epoch", "epoch of the best test accuracy"),
        count("val/acc_best_epoch", "epoch of the best validation accuracy"),
        accuracy("ensemble/test/acc", "snapshot ensemble test accuracy", headline=3),
        accuracy("snapshots/test/acc_mean", "single snapshots' mean test accuracy"),
        count("snapshots/test/acc_std", "single snapshots' test accuracy std"),
        *(
            m
            for prefix, name in (("swa", "SWA"), ("ema", "EMA"), ("lawa", "LAWA"))
            for m in (
                accuracy(f"{prefix}/test/acc", f"{name} test accuracy", headline=2),
                loss(f"{prefix}/test/loss", f"{name} test loss"),
                accuracy(f"{prefix}/val/acc", f"{name} validation accuracy"),
                loss(f"{prefix}/val/loss", f"{name} validation loss"),
                count(f"{prefix}/n_averaged", f"{name}: weights averaged"),
                count(f"{prefix}/bn_update_images", f"{name}: images of the BatchNorm update"),
            )
        ),
        count("epochs", "epochs"),
        count("steps", "optimizer steps"),
        count("params", "trainable parameters"),
        count("num_classes", "classes"),
        seconds("wall_seconds", "training and evaluation time (s)", column=True),
        seconds("time_to_first_step", "time to the first step (s)"),
        count("lr_find/suggestion", "LR range test: suggested lr"),
        count("lr_find/steps", "LR range test: steps"),
    ]
}


def results_format(results: Mapping[str, Any]) -> int:
    """The format of a results.json (1 where it names none); a ValueError for one this anneal cannot read."""
    found = results.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found <= RESULTS_FORMAT:
        raise ValueError(
            f"results.json of format {found!r}: this anneal reads formats 1 to {RESULTS_FORMAT} (a newer anneal "
            "wrote it?)"
        )
    return found


def declared_metrics(results: Mapping[str, Any]) -> tuple[dict[str, Metric], bool]:
    """The declarations of a results.json of any format: its own, or (for a run older than them) anneal's
    declarations of the keys it reported then. Returns (declarations, whether they came from the run itself)."""
    results_format(results)
    own = results.get("metrics")
    if own is None:
        return {k: LEGACY[k] for k, v in results.items() if k in LEGACY and is_number(v)}, False
    if not isinstance(own, Mapping):
        raise ValueError(f"'metrics' is a {type(own).__name__}, not an object of declarations")
    return {str(k): Metric.from_json(str(k), entry) for k, entry in own.items()}, True


def headline_key(results: Mapping[str, Any], declared: Mapping[str, Metric]) -> str | None:
    """The key of the run's headline: as the run recorded it, else the declared candidate with the highest rank."""
    recorded = results.get("headline")
    if isinstance(recorded, str) and recorded in declared:
        return recorded
    best = headline_of(m for k, m in declared.items() if is_number(results.get(k)))
    return best.key if best else None
