"""A callback the fault tests add by config (`+callbacks.fault._target_=faults.Fault`; train_process puts tests/
on PYTHONPATH): the `at`-th time this rank passes `hook`, it sends `action` (SIGTERM, SIGINT, SIGKILL) to this
process (`target=self`) or to its process group (`target=group`, every DDP rank), or raises (`action=raise`).

A hook is one of Lightning's callback hooks or one of anneal's own phases, which happen outside Lightning's
hooks; the callback reaches those by wrapping the function each one calls (in this process only). The phases
that write a file are interrupted with the file written to its temporary name, before the rename."""

from __future__ import annotations

import importlib
import os
import signal
import time
from collections import Counter
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

LIGHTNING_HOOKS = [
    "setup",
    "on_fit_start",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
    "on_validation_start",
    "on_validation_epoch_start",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "on_validation_end",
    "on_train_epoch_end",
    "on_save_checkpoint",
    "on_train_end",
    "on_fit_end",
    "on_test_start",
    "on_test_epoch_start",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_test_epoch_end",
    "on_test_end",
    "teardown",
]
# anneal's phases outside Lightning's hooks: the function each calls, as (module, name)
CALLED = {
    "swa_bn_update": ("anneal.callbacks.averaging", "recompute_bn"),
    "swa_evaluation": ("anneal.callbacks.averaging", "predict"),
    "ensemble_evaluation": ("anneal.callbacks.snapshots", "evaluate_snapshots"),
}
# anneal's file writes, all through storage.atomic_write: the phase, by the name of the file written
WRITTEN = {
    "snapshot_write": "snapshot_",
    "checkpoint_write": "last.ckpt",
    "history_write": "history.csv",
    "results_write": "results.json",
}
ANNEAL_PHASES = [*CALLED, *WRITTEN]
ACTIONS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL, "raise": None}


class FaultInjected(RuntimeError):
    pass


class Fault(L.Callback):
    def __init__(self, hook: str, action: str, at: int = 1, rank: int = 0, target: str = "self") -> None:
        if hook not in LIGHTNING_HOOKS + ANNEAL_PHASES or action not in ACTIONS or target not in ("self", "group"):
            raise ValueError(f"no such fault: hook={hook} action={action} target={target}")
        self.hook, self.action, self.at, self.rank, self.target = hook, action, at, rank, target
        self.passed: Counter[str] = Counter()
        if hook in CALLED:
            module = importlib.import_module(CALLED[hook][0])
            setattr(module, CALLED[hook][1], self.before(hook, getattr(module, CALLED[hook][1])))
        if hook in WRITTEN:
            storage = importlib.import_module("anneal.storage")
            storage.atomic_write = self.mid_write(hook, storage.atomic_write)

    def passing(self, hook: str) -> None:
        self.passed[hook] += 1
        if hook != self.hook or self.passed[hook] != self.at or getattr(rank_zero_only, "rank", 0) != self.rank:
            return
        if self.action == "raise":
            raise FaultInjected(f"fault injected at {hook} ({self.at})")
        if self.target == "group":
            os.killpg(os.getpgrp(), ACTIONS[self.action])
        else:
            os.kill(os.getpid(), ACTIONS[self.action])
        time.sleep(0.5)  # the signal lands here, inside the hook or phase

    def before(self, hook: str, function: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.passing(hook)
            return function(*args, **kwargs)

        return wrapped

    def mid_write(self, hook: str, atomic_write: Any) -> Any:
        def wrapped(path: Any, write: Any) -> Any:
            if not str(os.path.basename(path)).startswith(WRITTEN[hook]):
                return atomic_write(path, write)

            def write_then_fault(f: Any) -> None:
                write(f)
                f.flush()
                self.passing(hook)

            return atomic_write(path, write_then_fault)

        return wrapped


def _passing_method(hook: str) -> Any:
    def method(self: Fault, *args: Any, **kwargs: Any) -> None:
        self.passing(hook)

    method.__name__ = hook
    return method


for _hook in LIGHTNING_HOOKS:
    setattr(Fault, _hook, _passing_method(_hook))
