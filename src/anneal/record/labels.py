"""How an arm is named, in the report and in W&B alike: by its options and settings that make it what it is. The
report names the arms of a study by what varies between them; a run names its own arm (W&B's group) by what
differs from the defaults and by what its command line set, which in a sweep is every swept setting. Both go
through `name_arm`, so the settings a report names an arm by are named by its W&B group too (`T_mult=2` of a
sweep over T_mult, though 2 is SGDR's default)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anneal.record.identity import Arm, describe

UNSET = object()


def overridden_keys(overrides: Iterable[str]) -> list[str]:
    """The config keys a Hydra command line set: `schedule.T_mult=2` → schedule.T_mult, `+x.y=1` and `++x.y=1`
    → x.y, `schedule=sgdr` → schedule; a deletion (`~key`) sets nothing."""
    keys = []
    for override in overrides:
        if override.startswith("~") or "=" not in override:
            continue
        keys.append(override.split("=", 1)[0].lstrip("+").split("@", 1)[0])
    return keys


def name_arm(
    arm: Arm,
    named: Iterable[str] = (),
    default_options: Mapping[str, Any] | None = None,
    option_defaults: Arm | None = None,
) -> str:
    """The arm by its options and settings in `named` and, where the defaults are given (the config's default
    options, and the settings its own options set without overrides), by every option and setting that differs
    from them: `sgdr T_0=1 T_mult=2`. Empty where nothing names it."""
    named = list(named)
    values = arm.values()
    if default_options is None or option_defaults is None:  # a study: the named keys, in their given order
        return describe(values, named)
    options = [g for g, o in arm.options.items() if default_options.get(g) != o or g in named]
    settings = [k for k, v in arm.settings.items() if option_defaults.settings.get(k, UNSET) != v or k in named]
    return describe(values, options + settings)
