"""A run's identity from its composed config: its arm (Hydra's choice of option in each group and the resolved
settings that change what it computes), its seed, its place in a sweep, and the label W&B groups it by."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from anneal.data import DATASETS
from anneal.models import NETWORKS
from anneal.record import GROUP_CLASSES, Arm, Part, RunFiles, RunRecord, UnreadableRun, arm_of
from anneal.record.labels import name_arm, overridden_keys

log = logging.getLogger(__name__)


def choices_of(cfg: DictConfig) -> dict[str, Any]:
    """The option chosen in each config group, as Hydra composed it (none known outside a Hydra app)."""
    if HydraConfig.initialized():
        return dict(HydraConfig.get().runtime.choices)
    return {}


def resolved(cfg: DictConfig) -> dict[str, Any]:
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


def arm_of_config(cfg: DictConfig) -> Arm:
    return arm_of(resolved(cfg), choices_of(cfg))


def overrides_of() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def sweep_of() -> dict[str, Any] | None:
    """{"dir", "name", "job"} for a job of a multirun."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return None
    sweep_dir = Path(HydraConfig.get().sweep.dir).resolve()
    return {"dir": str(sweep_dir), "name": sweep_dir.name, "job": HydraConfig.get().job.num}


def searchpath_override() -> list[str]:
    """The run's `hydra.searchpath` (config directories of the user's own, whose options the arm may name), for a
    compose that must find the same options."""
    paths = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []
    quoted = ",".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in paths)
    return [f"hydra.searchpath=[{quoted}]"] if paths else []


def arm_label(arm: Arm, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The arm against the defaults of its own options, and by every arm setting its command line set (in a
    sweep: every swept setting, default or not, as the sweep's report names them), from the config tree the
    running app composes; outside a Hydra app (nothing to compose) the arm's id alone."""
    if not GlobalHydra.instance().is_initialized():
        return arm.id
    common = ["output_dir=.", *searchpath_override()]
    try:
        default = compose("train", overrides=common, return_hydra_config=True)
        defaults_of_options = compose("train", overrides=[*(f"{g}={o}" for g, o in arm.options.items()), *common])
    except Exception as error:  # a config tree other than anneal's: the label is a courtesy, the id is the name
        log.debug("no arm label: %s", error)
        return arm.id
    default_options = {g: o for g, o in default.hydra.runtime.choices.items() if g in GROUP_CLASSES}
    option_defaults = arm_of(resolved(defaults_of_options), arm.options)
    return name_arm(arm, overridden_keys(overrides), default_options, option_defaults) or "defaults"


def arm_label_soon(arm: Arm, overrides: list[str] | tuple[str, ...] = ()) -> Future[str]:
    """arm_label, computed on a thread while the run builds its data and network: composing the defaults twice
    takes a few tenths of a second, which a job would otherwise wait before its first step."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arm-label")
    future = executor.submit(arm_label, arm, overrides)
    executor.shutdown(wait=False)
    return future


def wandb_group(record: RunRecord) -> str:
    """W&B's group for the run: its arm, readable and unique (`sgdr T_0=2 · 3f9a2c1b07`)."""
    label = record.label if len(record.label) <= 100 else record.label[:99] + "…"
    return label if label == record.arm.id else f"{label} · {record.arm.id}"


def class_name(cls: type) -> str:
    """One of anneal's own networks or data modules by its registered name; a class of the user's own package
    (`model._target_=mypkg.Net`) by its import path, which the ensemble CLI imports only from packages the user
    allows (a class of the same name as one of anneal's is never taken for it)."""
    name = cls.__name__
    return name if NETWORKS.get(name) is cls or DATASETS.get(name) is cls else f"{cls.__module__}.{cls.__qualname__}"


def part(node: DictConfig, built: object, drop: tuple[str, ...] = (), **extra: Any) -> Part:
    """A network or data module as built: its class's name (`class_name`) and the plain values it was built from."""
    settings = {k: v for k, v in resolved(node).items() if not k.startswith("_") and k not in drop}
    return Part(class_name(type(built)), settings | extra)


def name_wandb_run(cfg: DictConfig, record: RunRecord) -> None:
    """W&B groups a run with the other seeds of its arm and names it after the arm and the seed
    (`sgdr T_0=2 seed=1`), unless logger.group / logger.name are set; a job of a sweep is tagged with it."""
    if not (cfg.logger and "group" in cfg.logger):
        return
    if cfg.logger.group is None:
        cfg.logger.group = wandb_group(record)
    if cfg.logger.get("name") is None:
        cfg.logger.name = f"{record.label} seed={record.seed}" if record.label != record.arm.id else None
    if record.sweep and "tags" in cfg.logger:
        cfg.logger.tags = [*(cfg.logger.tags or []), f"sweep-{record.sweep['name']}"[:64]]


def wandb_config(cfg: DictConfig, record: RunRecord) -> dict[str, Any]:
    """The config W&B shows and filters by: the resolved settings with their types, each group's option by name,
    the arm (id and label), the seed and the sweep."""
    return resolved(cfg) | {
        "options": choices_of(cfg),
        "arm": record.arm.id,
        "arm_label": record.label,
        "sweep": record.sweep["name"] if record.sweep else None,
    }


def start_record(cfg: DictConfig, files: RunFiles, save: bool = True) -> RunRecord:
    """run.json for a run starting now (its label comes later: `arm_label_soon`); a resume adds an attempt to the
    run's record."""
    arm = arm_of_config(cfg)
    attempt = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "overrides": overrides_of(), "mode": cfg.mode}
    previous = None
    if cfg.ckpt_path is not None and files.record.is_file():
        try:
            previous = RunRecord.load(files)
        except UnreadableRun as error:
            log.warning("%s; starting a new record", error)
    record = RunRecord(
        arm=arm,
        seed=cfg.seed,
        overrides=previous.overrides if previous else overrides_of(),
        sweep=previous.sweep if previous else sweep_of(),
        attempts=[*(previous.attempts if previous else []), attempt],
    )
    if save:
        record.save(files)
    return record
