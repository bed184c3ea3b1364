"""The run record: the contract between the code that writes a run directory and everything that reads it.

- `RunFiles`: the name of every file in a run directory.
- `Metric`, `Evaluation`: each number in results.json as its producer declares it (better direction, headline).
- `Arm`, `CLASSES`: what a run is: the options and resolved settings that change what it computes, apart from
  its seed and from bookkeeping, classified in one table.
- `RunRecord`: run.json, written before training, read by the report, W&B naming and the ensemble CLI.
- `assembly`: results.json from its producers' declarations and values, one producer per key.
- `RunRecorder`: the run record of a Lightning run anneal did not start (imported with Lightning on first use)."""

from typing import TYPE_CHECKING, Any

from anneal.record.assembly import ProducedTwice
from anneal.record.document import Part, RunRecord, UnreadableRun, plain, read_json, results_of
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
    short_keys,
    unclassified,
)
from anneal.record.metrics import (
    LEGACY,
    RESULTS_FORMAT,
    Evaluation,
    Metric,
    accuracy,
    count,
    declared_metrics,
    headline_key,
    headline_of,
    loss,
    results_document,
    results_format,
    seconds,
)

if TYPE_CHECKING:
    from anneal.record.recorder import RunRecorder


def __getattr__(name: str) -> Any:
    """RunRecorder is a Lightning callback: Lightning is imported when it is first asked for, not by every
    reader of a run directory (the report)."""
    if name == "RunRecorder":
        from anneal.record.recorder import RunRecorder

        globals()["RunRecorder"] = RunRecorder  # once imported, an attribute as any other (pdoc reads the module's)
        return RunRecorder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARM",
    "BOOKKEEPING",
    "CLASSES",
    "GROUP_CLASSES",
    "LEGACY",
    "RESULTS_FORMAT",
    "SEED",
    "Arm",
    "Evaluation",
    "Metric",
    "Part",
    "ProducedTwice",
    "RunFiles",
    "RunRecord",
    "RunRecorder",
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
    "loss",
    "plain",
    "read_json",
    "results_document",
    "results_format",
    "results_of",
    "seconds",
    "short_keys",
    "unclassified",
]
