"""anneal: learning-rate schedules, warmup, snapshot ensembles and weight averaging on CIFAR-10, composed with Hydra
and trained with Lightning. `python train.py` is the entry point (see README.md); the parts also work in a project
of your own:

- `anneal.lr_scheduler`: any of anneal's schedules (with a warmup and SWA's lr switch) as a per-step torch lr
  scheduler, in one call; `anneal.preview_lr` draws it.
- `anneal.callbacks`: SWA, EMA, LAWA, snapshot ensembles and the per-epoch history as Lightning callbacks.
- `anneal.record` and `python -m anneal.report`: a run's record, and the study that pools runs by arm and seed.

Importing `anneal` is cheap: torch and Lightning are imported with the first part that needs them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# the package's one version number: pyproject.toml reads it from here (`[tool.setuptools.dynamic]`)
__version__ = "0.2.0"

# the parts of the package reachable as `anneal.NAME`, by the module that defines each (imported when first used)
PARTS = {
    "lr_scheduler": "anneal.schedules.scheduler",
    "ScheduleLR": "anneal.schedules.plan",
    "LrPlan": "anneal.schedules.plan",
    "preview_lr": "anneal.preview",
    "ConfigError": "anneal.errors",
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports them when first used
    from anneal.errors import ConfigError
    from anneal.preview import preview_lr
    from anneal.schedules.plan import LrPlan, ScheduleLR
    from anneal.schedules.scheduler import lr_scheduler

__all__ = ["ConfigError", "LrPlan", "ScheduleLR", "__version__", "lr_scheduler", "preview_lr"]


def __getattr__(name: str) -> Any:
    if name not in PARTS:
        raise AttributeError(f"module 'anneal' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(PARTS[name]), name)  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *PARTS})
