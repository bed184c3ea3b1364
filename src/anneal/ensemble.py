"""Recompute the snapshot-ensemble table of a finished run from its directory:

    python -m anneal.ensemble RUN_DIR [--data-root DIR] [--device cpu|cuda] [--allow-module PACKAGE ...]

A run directory is untrusted input: nothing in it is executed or unpickled, and nothing it names is imported
unless you allow it. The network and the data are rebuilt from the run's record (a class and plain values): one
of anneal's own classes by its registered name, or a class of your own package (`model._target_=mypkg.Net`) by
its import path, imported only from a package you allow with --allow-module mypkg (or ANNEAL_ALLOW_MODULES=mypkg,
comma-separated) and only if it is a network (an nn.Module) or a data module (anneal.data.ImageData). Snapshots
load with weights_only."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from anneal.data import DATASETS, ImageData
from anneal.errors import ConfigError, DataError
from anneal.evaluation import evaluate_snapshots
from anneal.models import NETWORKS
from anneal.record import Part, RunFiles, RunRecord, UnreadableRun, plain, read_json, results_format
from anneal.storage import save_json

# how runs made before run.json named the same classes in their config.yaml: exact strings, never a prefix
LEGACY_TARGETS = {f"anneal.models.{n}": n for n in NETWORKS} | {f"anneal.data.{n}": n for n in DATASETS}
ALLOW_VARIABLE = "ANNEAL_ALLOW_MODULES"
PUBLIC_NAMES = {nn.Module: "torch.nn.Module", ImageData: "anneal.data.ImageData"}  # what a rebuilt class must be
DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")  # no part private (a leading _)


def allowed_modules(flags: list[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The packages whose classes a run directory may name: --allow-module flags and ANNEAL_ALLOW_MODULES."""
    names = [*flags, *(n.strip() for n in environ.get(ALLOW_VARIABLE, "").split(",") if n.strip())]
    for name in names:
        if not DOTTED.fullmatch(name):
            raise ConfigError("--allow-module", name, "a module or package name (mypkg, mypkg.nets)")
    return tuple(names)


def import_allowed(name: str, allowed: tuple[str, ...], base: type, what: str) -> type:
    """The class `name` (mypkg.nets.Net) from a module under an allowed package, if it is a `base`. Nothing is
    imported unless the name lies under an allowed package; nothing but the class is looked up, nothing is called."""
    if not DOTTED.fullmatch(name):
        raise ConfigError(what, name, "not a class's import path (private names are never imported)")
    if not any(name.startswith(f"{package}.") for package in allowed):
        raise ConfigError(
            what,
            name,
            f"not one of anneal's own {what}s and not from a package you allowed: if you trust it, run again with "
            f"--allow-module {name.split('.')[0]} (or {ALLOW_VARIABLE}={name.split('.')[0]})",
        )
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module; the rest is the class
        module_name = ".".join(parts[:end])
        if not any(module_name == p or module_name.startswith(f"{p}.") for p in allowed):
            break
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # (this prefix is no module: a shorter one may hold the class)
            raise ConfigError(what, name, f"its module cannot be imported ({error})") from None
        for attribute in parts[end:]:
            found = getattr(found, attribute, None)
        if found is None:
            break
        if isinstance(found, type) and issubclass(found, base):
            return found
        raise ConfigError(what, name, f"not a {what} class (a subclass of {PUBLIC_NAMES[base]})")
    raise ConfigError(what, name, "no such class in the allowed packages")


def legacy_part(config: dict[str, Any], group: str, allowed: tuple[str, ...] = ()) -> Part:
    """A part from a legacy run's config.yaml, by exact `_target_` string (a class of an allowed package too)."""
    node = config.get(group)
    target = node.get("_target_") if isinstance(node, dict) else node
    mine = isinstance(target, str) and any(target.startswith(f"{package}.") for package in allowed)
    if not isinstance(node, dict) or (target not in LEGACY_TARGETS and not mine):
        raise ConfigError(f"{group}._target_", target, f"not one of anneal's own classes ({sorted(LEGACY_TARGETS)})")
    settings = {k: v for k, v in node.items() if not k.startswith("_") and k != "compile"}
    if not all(plain(v) for v in settings.values()):
        raise ConfigError(group, settings, "the settings of a network or data module must be plain values")
    assert isinstance(target, str)
    return Part(LEGACY_TARGETS.get(target, target), settings)


def parts_of(files: RunFiles, allowed: tuple[str, ...] = ()) -> tuple[Part, Part, Any]:
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
    return legacy_part(config, "model", allowed), legacy_part(config, "data", allowed), max_members


def build(
    part: Part, registry: Mapping[str, type], what: str, allowed: tuple[str, ...], base: type, **extra: Any
) -> Any:
    """The recorded network or data module: anneal's own by registered name, else a class of an allowed package."""
    cls = registry.get(part.name)
    if cls is None and "." not in part.name:
        raise ConfigError(what, part.name, f"not one of anneal's own {what}s: {sorted(registry)}")
    if not all(plain(v) for v in part.settings.values()):  # checked before anything is imported
        raise ConfigError(what, part.settings, "the settings of a network or data module must be plain values")
    if cls is None:
        cls = import_allowed(part.name, allowed, base, what)
    if not all(plain(v) for v in part.settings.values()):
        raise ConfigError(what, part.settings, "the settings of a network or data module must be plain values")
    try:
        return cls(**(part.settings | extra))
    except TypeError as error:  # a setting the class does not take
        raise ConfigError(what, part.name, f"cannot be built from the recorded settings ({error})") from None


def evaluate_run_dir(
    run_dir: Path, data_root: str | None = None, device: str = "cpu", allowed: tuple[str, ...] = ()
) -> list[dict]:
    """Re-evaluate the snapshots of a finished run and update its ensemble files and results.json. `allowed`: the
    packages (`mypkg`) whose network or data module classes the run's record may name."""
    files = RunFiles(run_dir)
    network_part, data_part, max_members = parts_of(files, allowed)
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
    datamodule: ImageData = build(data_part, DATASETS, "data module", allowed, ImageData)
    network = build(network_part, NETWORKS, "network", allowed, nn.Module, num_classes=datamodule.num_classes)
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
    parser.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="PACKAGE",
        help=f"a package whose network or data module the run may name (repeatable; also {ALLOW_VARIABLE})",
    )
    args = parser.parse_args(argv)
    try:
        allowed = allowed_modules(args.allow_module, os.environ)
        evaluate_run_dir(args.run_dir, args.data_root, args.device, allowed)
    except (ConfigError, DataError, UnreadableRun) as error:
        print(f"python -m anneal.ensemble: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
