"""run.json: what a run is and how it went, written when the run takes its directory (before any check or
training) and updated when it ends. It is what the report, W&B's grouping, the ensemble CLI and a cluster's
study read to know a run without executing anything from its directory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anneal.record.files import RunFiles
from anneal.record.identity import Arm
from anneal.storage import save_json

FORMAT = 1
STATUSES = ("started", "finished", "failed", "stopped")
PARTS = ("network", "data")


class UnreadableRun(ValueError):
    """A run directory's record cannot be read; the message names the file and says why."""


@dataclass
class Part:
    """A network or a data module as the run built it: a registered name of anneal's own (`LeNet5`) or the import
    path of a class of the user's package (`mypkg.nets.Net`, which the ensemble CLI imports only from packages the
    user allows), and plain keyword values: all that the ensemble CLI needs to build it again."""

    name: str
    settings: dict[str, Any]

    @classmethod
    def from_json(cls, entry: object, what: str) -> Part:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ValueError(f"'{what}' is not a {{name, settings}} object")
        settings = entry.get("settings", {})
        if not isinstance(settings, Mapping):
            raise ValueError(f"'{what}.settings' is not an object")
        return cls(entry["name"], dict(settings))


def plain(value: object) -> bool:
    """What a network's or a data module's recorded setting may be: a number, a string, a flag, null, or a list of
    them (never a mapping: nothing a class is built from here nests, and a `_target_` inside one must not pass)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and all(plain(v) for v in value)


@dataclass
class RunRecord:
    arm: Arm
    seed: Any
    overrides: list[str]
    status: str = "started"
    sweep: dict[str, Any] | None = None  # {"dir", "name", "job"} for a job of a multirun
    network: Part | None = None
    data: Part | None = None
    label: str = ""  # the arm's label against its options' defaults (W&B's group)
    error: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # one per start: the first and every resume

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["arm"] = self.arm.to_json()
        return {"format": FORMAT, **document}

    def save(self, files: RunFiles) -> Path:
        return save_json(self.to_json(), files.record)

    @classmethod
    def from_json(cls, document: object) -> RunRecord:
        if not isinstance(document, Mapping):
            raise ValueError(f"it holds a {type(document).__name__}, not an object")
        arm = document.get("arm")
        if not isinstance(arm, Mapping) or not all(isinstance(arm.get(k), Mapping) for k in ("options", "settings")):
            raise ValueError("'arm' is not an {options, settings} object")
        if not isinstance(arm.get("data") or {}, Mapping):
            raise ValueError("'arm.data' is not an object")
        overrides = document.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ValueError("'overrides' is not a list of strings")
        status = document.get("status")
        if status not in STATUSES:
            raise ValueError(f"'status' is {status!r}, not one of {STATUSES}")
        sweep, attempts = document.get("sweep"), document.get("attempts", [])
        if sweep is not None and not isinstance(sweep, Mapping):
            raise ValueError("'sweep' is not an object")
        if not isinstance(attempts, list):
            raise ValueError("'attempts' is not a list")
        parts = {k: Part.from_json(document[k], k) if document.get(k) is not None else None for k in PARTS}
        error, label = document.get("error"), document.get("label", "")
        return cls(
            Arm(dict(arm["options"]), dict(arm["settings"]), dict(arm.get("data") or {})),
            document.get("seed"),
            list(overrides),
            status,
            dict(sweep) if sweep is not None else None,
            parts["network"],
            parts["data"],
            label if isinstance(label, str) else "",
            error if isinstance(error, str) else None,
            [dict(a) for a in attempts if isinstance(a, Mapping)],
        )

    @classmethod
    def load(cls, files: RunFiles) -> RunRecord:
        try:
            return cls.from_json(read_json(files.record))
        except ValueError as error:
            raise UnreadableRun(f"{files.record}: {error}") from None


def read_json(path: Path) -> Any:
    """A JSON file's value; a ValueError that says why it cannot be read."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not readable JSON ({type(error).__name__}: {error})") from None


def results_of(files: RunFiles) -> dict[str, Any]:
    """A run's results.json as a mapping; UnreadableRun naming the file and why, where it cannot be read (its
    format is checked by its readers: `results_format`)."""
    try:
        results = read_json(files.results)
    except ValueError as error:
        raise UnreadableRun(f"{files.results}: {error}") from None
    if not isinstance(results, dict):
        raise UnreadableRun(f"{files.results}: it holds a {type(results).__name__}, not an object")
    return results
