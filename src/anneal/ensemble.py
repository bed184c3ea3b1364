"""Recompute the snapshot-ensemble table of a finished run from its directory:

    python -m anneal.ensemble RUN_DIR [--data-root DIR] [--device cpu|cuda]

A run directory is untrusted input: nothing in it is imported, executed or unpickled. The network and the data
are rebuilt from the run's record (a registered name of one of anneal's own classes and plain values), looked up
in anneal's registries; snapshots load with weights_only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from anneal.data import DATASETS, ImageData
from anneal.errors import ConfigError, DataError
from anneal.evaluation import evaluate_snapshots
from anneal.models import NETWORKS
from anneal.record import Part, RunFiles, RunRecord, UnreadableRun, plain, read_json, results_format
from anneal.storage import save_json

# how runs made before run.json named the same classes in their config.yaml: exact strings, never a prefix
LEGACY_TARGETS = {f"anneal.models.{n}": n for n in NETWORKS} | {f"anneal.data.{n}": n for n in DATASETS}


def legacy_part(config: dict[str, Any], group: str) -> Part:
    """A part from a legacy run's config.yaml, by exact `_target_` string."""
    node = config.get(group)
    if not isinstance(node, dict) or node.get("_target_") not in LEGACY_TARGETS:
        target = node.get("_target_") if isinstance(node, dict) else node
        raise ConfigError(f"{group}._target_", target, f"not one of anneal's own classes ({sorted(LEGACY_TARGETS)})")
    settings = {k: v for k, v in node.items() if not k.startswith("_") and k != "compile"}
    if not all(plain(v) for v in settings.values()):
        raise ConfigError(group, settings, "the settings of a network or data module must be plain values")
    return Part(LEGACY_TARGETS[node["_target_"]], settings)


def parts_of(files: RunFiles) -> tuple[Part, Part, Any]:
    """(network, data, ensemble.max_members) as the run recorded them; from config.yaml for a run made before
    run.json."""
    if files.record.is_file():
        record = RunRecord.load(files)
        if record.network is None or record.data is None:
            raise UnreadableRun(
                f"{files.record}: no network and data recorded (the run stopped before it built them, or anneal did "
                "not start it: a RunRecorder run's own network cannot be rebuilt here)"
            )
        return record.network, record.data, record.arm.settings.get("ensemble.max_members")
    try:
        config = yaml.safe_load(files.config.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UnreadableRun(f"{files.config}: not a readable run config ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise UnreadableRun(f"{files.config}: not a run's config")
    ensemble = config.get("ensemble")
    max_members = ensemble.get("max_members") if isinstance(ensemble, dict) else None
    return legacy_part(config, "model"), legacy_part(config, "data"), max_members


def build(part: Part, registry: Mapping[str, type], what: str, **extra: Any) -> Any:
    cls = registry.get(part.name)
    if cls is None:
        raise ConfigError(what, part.name, f"not one of anneal's own {what}s: {sorted(registry)}")
    if not all(plain(v) for v in part.settings.values()):
        raise ConfigError(what, part.settings, "the settings of a network or data module must be plain values")
    try:
        return cls(**(part.settings | extra))
    except TypeError as error:  # a setting the class does not take
        raise ConfigError(what, part.name, f"cannot be built from the recorded settings ({error})") from None


def evaluate_run_dir(run_dir: Path, data_root: str | None = None, device: str = "cpu") -> list[dict]:
    """Re-evaluate the snapshots of a finished run and update its ensemble files and results.json."""
    files = RunFiles(run_dir)
    network_part, data_part, max_members = parts_of(files)
    if max_members is not None and not (isinstance(max_members, int) and max_members >= 1):
        raise UnreadableRun(f"{files.directory}: ensemble.max_members={max_members!r} is not an integer >= 1")
    if data_root:
        data_part = Part(data_part.name, data_part.settings | {"root": data_root})
    results: dict[str, Any] = {}
    if files.results.exists():
        try:
            loaded = read_json(files.results)
        except ValueError as error:
            raise UnreadableRun(f"{files.results}: {error}") from None
        results = loaded if isinstance(loaded, dict) else {}
        try:
            results_format(results)  # every format so far keeps `snapshots`; a newer one is refused
        except ValueError as error:
            raise UnreadableRun(f"{files.results}: {error}") from None
    snapshots = results.get("snapshots") or [
        {"file": files.relative(p), "epoch": None, "step": None} for p in sorted(files.snapshots.glob("snapshot_*.pt"))
    ]
    if not isinstance(snapshots, list) or not all(
        isinstance(s, dict) and isinstance(s.get("file"), str) for s in snapshots
    ):
        raise UnreadableRun(f"{files.results}: 'snapshots' is not a list of snapshot entries")
    for snapshot in snapshots:  # a recorded file name must stay inside the run directory
        path = (files.directory / snapshot["file"]).resolve()
        if not path.is_relative_to(files.snapshots.resolve()):
            raise UnreadableRun(f"{files.results}: snapshot {snapshot['file']!r} is outside {files.snapshots}")
    if not snapshots:
        raise UnreadableRun(f"no snapshots in {files.snapshots}")
    datamodule: ImageData = build(data_part, DATASETS, "data module")
    network = build(network_part, NETWORKS, "network", num_classes=datamodule.num_classes)
    batches = datamodule.batches("test")
    rows, evaluated = evaluate_snapshots(
        network.to(device), snapshots, max_members, run_dir, batches, torch.device(device)
    )
    save_json(results | evaluated, files.results)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", help="override data.root of the run (where cifar-10-batches-py is)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        evaluate_run_dir(args.run_dir, args.data_root, args.device)
    except (ConfigError, DataError, UnreadableRun) as error:
        print(f"python -m anneal.ensemble: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
