"""The run record: the contract between the code that writes a run directory and everything that reads it.

- `RunFiles`: the name of every file in a run directory.
- `Metric`, `Evaluation`: each number in results.json as its producer declares it (better direction, headline).
- `Arm`, `CLASSES`: what a run is: the options and resolved settings that change what it computes, apart from
  its seed and from bookkeeping, classified in one table.
- `RunRecord`: run.json, written before training, read by the report, W&B naming and the ensemble CLI."""

from anneal.record.document import Part, RunRecord, UnreadableRun, plain, read_json
from anneal.record.files import RunFiles
from anneal.record.identity import (
    ARM,
    BOOKKEEPING,
    CLASSES,
    GROUP_CLASSES,
    SEED,
    Arm,
    arm_of,
    classify,
    describe,
    flatten,
    format_value,
    label_against,
    short_keys,
    unclassified,
)
from anneal.record.metrics import (
    LEGACY,
    Evaluation,
    Metric,
    accuracy,
    count,
    declared_metrics,
    headline_key,
    headline_of,
    loss,
    results_document,
    seconds,
)

__all__ = [
    "ARM",
    "BOOKKEEPING",
    "CLASSES",
    "GROUP_CLASSES",
    "LEGACY",
    "SEED",
    "Arm",
    "Evaluation",
    "Metric",
    "Part",
    "RunFiles",
    "RunRecord",
    "UnreadableRun",
    "accuracy",
    "arm_of",
    "classify",
    "count",
    "declared_metrics",
    "describe",
    "flatten",
    "format_value",
    "headline_key",
    "headline_of",
    "label_against",
    "loss",
    "plain",
    "read_json",
    "results_document",
    "seconds",
    "short_keys",
    "unclassified",
]
