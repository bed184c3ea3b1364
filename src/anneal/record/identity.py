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
    "trainer": ARM,  # the length, precision, devices (world size), accumulation, validation cadence ...
    "trainer._target_": BOOKKEEPING,
    "trainer.accelerator": BOOKKEEPING,  # the same run on another device
    "trainer.strategy": BOOKKEEPING,  # how devices talk; `devices` decides the arithmetic
    "trainer.deterministic": BOOKKEEPING,  # reproducibility of the same computation
    "trainer.default_root_dir": BOOKKEEPING,
    "trainer.enable_progress_bar": BOOKKEEPING,
    "trainer.enable_model_summary": BOOKKEEPING,
    "trainer.enable_checkpointing": BOOKKEEPING,
    "trainer.log_every_n_steps": BOOKKEEPING,
    "trainer.num_sanity_val_steps": BOOKKEEPING,
    "trainer.plugins": BOOKKEEPING,
    "trainer.profiler": BOOKKEEPING,
    "trainer.barebones": BOOKKEEPING,
    "trainer.benchmark": BOOKKEEPING,
    "trainer.limit_test_batches": BOOKKEEPING,
    "trainer.limit_val_batches": BOOKKEEPING,
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

    @property
    def id(self) -> str:
        text = json.dumps({"options": self.options, "settings": self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def values(self) -> dict[str, Any]:
        """Options and settings as one mapping: group name -> option, key -> value. A group chosen empty (`none`)
        is also a setting, `{}`: its option's name stands for it."""
        merged = {**self.options, **self.settings}
        merged.update((group, option) for group, option in self.options.items() if group in self.settings)
        return merged

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "options": self.options, "settings": self.settings}


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


def describe(values: Mapping[str, Any], keys: Iterable[str]) -> str:
    """`sgdr T_0=2 T_mult=2`: group options by name (`group=none` for an empty one), then settings."""
    keys = [k for k in keys if k in values]
    names = short_keys(k for k in keys if k not in GROUP_CLASSES)
    parts = []
    for key in keys:
        value = values[key]
        if key in GROUP_CLASSES:
            parts.append(f"{key}={value}" if value in ("none", None) else str(value))
        else:
            parts.append(f"{names[key]}={format_value(value)}")
    return " ".join(parts)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def label_against(arm: Arm, default_options: Mapping[str, Any], option_defaults: Arm) -> str:
    """A label of an arm that needs no other arm: its options that are not the config's default options, and its
    settings whose values differ from those its options set (`option_defaults`: the arm's options, no overrides).
    The same arm always gets the same label, however its command line was spelt."""
    options = [g for g, o in arm.options.items() if default_options.get(g) != o]
    settings = [k for k, v in arm.settings.items() if option_defaults.settings.get(k, object()) != v]
    return describe(arm.values(), options + settings) or "defaults"
