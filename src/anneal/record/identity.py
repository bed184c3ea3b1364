"""What a run is: its arm (every setting that changes what it computes, with each group's option by name) and
its seed. Runs of one arm with different seeds are the replicates a study pools; anything else about a run is
bookkeeping (where it runs, how it logs, how often it saves). The one table below classifies every config key;
a test composes every option of every group and checks that each key is in it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ARM, SEED, BOOKKEEPING = "arm", "seed", "bookkeeping"

# Config keys by what they are to a run. A key takes the class of its longest listed prefix; a key under no
# prefix (a setting added with `+`) counts as part of the arm: a study may then split an arm, never pool two.
CLASSES: dict[str, str] = {
    "mode": ARM,  # a range test is not a training run
    "lr_find": ARM,  # the range test's settings (bookkeeping for a training run: see `classify`)
    "seed": SEED,
    "data": ARM,  # the data set, its split, batch size and augmentation
    "data.seed": SEED,  # = seed
    "data.root": BOOKKEEPING,  # where the files are
    "data.download": BOOKKEEPING,
    "data.download_timeout": BOOKKEEPING,
    "data.eval_batch_size": BOOKKEEPING,  # evaluation batches: the same numbers
    "data.device": BOOKKEEPING,  # where the uint8 images live
    "data.test_every_epoch": BOOKKEEPING,  # an extra curve; training does not see it
    "model": ARM,
    "model.compile": BOOKKEEPING,  # the same network, compiled
    "optimizer": ARM,
    "schedule": ARM,
    "warmup": ARM,
    "averaging": ARM,
    "ensemble": ARM,
    # Every argument of lightning.Trainer is listed (a test checks it against Trainer's signature): none may take
    # its class from the `trainer` prefix by accident.
    "trainer": ARM,  # a Trainer argument a newer Lightning adds: split an arm rather than pool two
    "trainer._target_": BOOKKEEPING,
    # -- what a run computes: its length, its arithmetic, what it trains on and what it measures
    "trainer.max_epochs": ARM,  # the length (the plan follows it)
    "trainer.min_epochs": ARM,  # may lengthen the run
    "trainer.max_steps": ARM,
    "trainer.min_steps": ARM,
    "trainer.max_time": ARM,  # stops training by the clock on the wall: the length depends on it
    "trainer.fast_dev_run": ARM,  # a smoke test of a few batches, not the run
    "trainer.overfit_batches": ARM,  # trains on a few batches
    "trainer.limit_train_batches": ARM,  # the batches an epoch trains on
    "trainer.limit_val_batches": ARM,  # what the held-out curve, its best epoch and an adaptive schedule see
    "trainer.limit_test_batches": ARM,  # what the final test measures
    "trainer.val_check_interval": ARM,  # when an adaptive schedule (plateau, adaptive SGDR) is fed
    "trainer.check_val_every_n_epoch": ARM,  # the same, and which epochs the best held-out epoch is chosen from
    "trainer.accumulate_grad_batches": ARM,  # the batch an optimizer step sees, and the step count
    "trainer.gradient_clip_val": ARM,
    "trainer.gradient_clip_algorithm": ARM,
    "trainer.precision": ARM,  # the arithmetic (bf16 and fp32 train different networks)
    "trainer.devices": ARM,  # the world size: the global batch and the step count
    "trainer.num_nodes": ARM,  # the same
    "trainer.sync_batchnorm": ARM,  # BatchNorm's statistics over every rank's batch, not one rank's
    "trainer.callbacks": BOOKKEEPING,  # replaced by anneal's own (the callbacks, averaging, ensemble groups)
    "trainer.logger": BOOKKEEPING,  # replaced by the logger group
    # -- the same computation, run, watched or checked in another way
    "trainer.accelerator": BOOKKEEPING,  # the same run on another device
    "trainer.strategy": BOOKKEEPING,  # how devices talk; `devices` decides the arithmetic
    "trainer.deterministic": BOOKKEEPING,  # reproducibility of the same computation
    "trainer.benchmark": BOOKKEEPING,  # cuDNN's choice among algorithms for the same convolutions
    "trainer.inference_mode": BOOKKEEPING,  # evaluation without autograd: the same numbers
    "trainer.detect_anomaly": BOOKKEEPING,  # a check that stops a broken run, not another computation
    "trainer.use_distributed_sampler": BOOKKEEPING,  # anneal's batches shard themselves, Lightning's sampler unused
    "trainer.reload_dataloaders_every_n_epochs": BOOKKEEPING,  # a reload serves the same seeded batches
    "trainer.limit_predict_batches": BOOKKEEPING,  # anneal never predicts
    "trainer.num_sanity_val_steps": BOOKKEEPING,  # batches evaluated before training, seen by nothing
    "trainer.default_root_dir": BOOKKEEPING,
    "trainer.enable_progress_bar": BOOKKEEPING,
    "trainer.enable_model_summary": BOOKKEEPING,
    "trainer.enable_checkpointing": BOOKKEEPING,
    "trainer.log_every_n_steps": BOOKKEEPING,
    "trainer.plugins": BOOKKEEPING,  # anneal's: atomic checkpoint files (the precision is `precision`)
    "trainer.profiler": BOOKKEEPING,
    "trainer.barebones": BOOKKEEPING,
    "trainer.model_registry": BOOKKEEPING,
    "trainer.enable_autolog_hparams": BOOKKEEPING,  # what the loggers are sent
    "logger": BOOKKEEPING,
    "callbacks": BOOKKEEPING,  # checkpoints, progress, curves, guards
    "branch": BOOKKEEPING,  # where the run saves its state for cooldowns branched from it: not what it computes
    "tags": BOOKKEEPING,
    "ckpt_path": BOOKKEEPING,  # a resumed run is the same run
    "resume_changes": BOOKKEEPING,
    "optimized_metric": BOOKKEEPING,
    "output_dir": BOOKKEEPING,
    "hydra": BOOKKEEPING,  # Hydra's own settings, when a config carries them
}

# Config groups whose chosen option (by name) is part of the arm. The others choose bookkeeping (loggers,
# callbacks), a preset of settings whose values the arm holds anyway (experiment), or a device (trainer).
GROUP_CLASSES: dict[str, str] = {
    "data": ARM,
    "model": ARM,
    "optimizer": ARM,
    "schedule": ARM,
    "warmup": ARM,
    "averaging": ARM,
    "ensemble": ARM,
    "trainer": BOOKKEEPING,
    "logger": BOOKKEEPING,
    "callbacks": BOOKKEEPING,
    "branch": BOOKKEEPING,
    "experiment": BOOKKEEPING,
    "hparams_search": BOOKKEEPING,
}


def listed_class(key: str) -> str | None:
    """The class of the longest listed prefix of `key`, None if no prefix is listed."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        if (found := CLASSES.get(".".join(parts[:end]))) is not None:
            return found
    return None


def classify(key: str, mode: str = "train") -> str:
    if key.split(".")[0] == "lr_find" and mode != "lr_find":
        return BOOKKEEPING
    return listed_class(key) or ARM


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are values."""
    if isinstance(node, Mapping) and node:
        return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def canonical(value: Any) -> Any:
    """A value as the identity compares it: 5.0 and 5 are the same number; tuples are lists."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Arm:
    """An arm: the option chosen in each arm group and the resolved value of every arm setting."""

    options: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    # the data the run loaded, by content (name, sizes, fingerprint: `anneal.data.identity`); empty until the data
    # is loaded, and in runs recorded before anneal recorded it
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        identity: dict[str, Any] = {"options": self.options, "settings": self.settings}
        if self.data:  # (an arm without it keeps the id it always had)
            identity["data"] = self.data
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def values(self) -> dict[str, Any]:
        """Options and settings as one mapping: group name -> option, key -> value. A group chosen empty (`none`)
        is also a setting, `{}`: its option's name stands for it. The data, when known, as `dataset`."""
        merged = {**self.options, **self.settings}
        merged.update((group, option) for group, option in self.options.items() if group in self.settings)
        if self.data:
            merged["dataset"] = describe_data(self.data)
        return merged

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "options": self.options, "settings": self.settings} | (
            {"data": self.data} if self.data else {}
        )


def describe_data(data: Mapping[str, Any]) -> str:
    """`CIFAR-10 5170/1017 3f2a9c01`: name, training / test images, the start of the content's fingerprint."""
    return f"{data.get('name')} {data.get('train')}/{data.get('test')} {str(data.get('fingerprint'))[:8]}"


def arm_of(config: Mapping[str, Any], choices: Mapping[str, Any]) -> Arm:
    """The arm of a resolved config (a plain mapping) run with Hydra's group choices."""
    mode = str(config.get("mode", "train"))
    settings = {k: canonical(v) for k, v in sorted(flatten(config).items()) if classify(k, mode) == ARM}
    options = {g: str(o) for g, o in sorted(choices.items()) if GROUP_CLASSES.get(g) == ARM and o is not None}
    return Arm(options, settings)


def seed_of(config: Mapping[str, Any]) -> Any:
    return config.get("seed")


def unclassified(keys: Iterable[str]) -> list[str]:
    """Config keys under no listed prefix: each must be classified on purpose (the test of every option)."""
    return sorted(k for k in keys if listed_class(k) is None)


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Each key by its last part (`T_0`) where no other key shares it, else in full (`schedule.lr_min`)."""
    keys = list(keys)
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


# groups whose option a label names with the group: a warmup's shape (`linear`, `exponential`) reads as a schedule
NAMED_GROUPS = ("warmup",)


def describe(values: Mapping[str, Any], keys: Iterable[str]) -> str:
    """`sgdr T_0=2 T_mult=2`: group options by name, with the group where the name alone could mislead (`group=none`,
    `warmup=linear`, an option name two groups share: `schedule=snapshot ensemble=snapshot`), then settings."""
    keys = [k for k in keys if k in values]
    names = short_keys(k for k in keys if k not in GROUP_CLASSES)
    chosen = [values[k] for k in keys if k in GROUP_CLASSES]
    parts = []
    for key in keys:
        value = values[key]
        if key in GROUP_CLASSES:
            named = value in ("none", None) or key in NAMED_GROUPS or chosen.count(value) > 1
            parts.append(f"{key}={value}" if named else str(value))
        else:
            parts.append(f"{names[key]}={format_value(value)}")
    return " ".join(parts)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)
